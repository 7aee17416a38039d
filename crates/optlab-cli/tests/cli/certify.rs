//! `optlab certify`.

use crate::common::{argv, fails_with, run, text, tmp};

#[test]
fn certify_radii_of_a_linear_classifier() {
    use candle_core::{Device, Tensor};
    let d = tmp("certify");
    std::fs::create_dir_all(&d).unwrap();
    let p = d.join("lin.safetensors");
    // Logits (w.x + b, -(w.x + b)) with w = (0.6, -0.8): class 0 iff w.x + b > 0, true radius |w.x + b|.
    let t = |v: Vec<f32>, s: &[usize]| Tensor::from_vec(v, s, &Device::Cpu).unwrap();
    let tensors = vec![
        (
            "0.weight".to_string(),
            t(vec![0.6, -0.8, -0.6, 0.8], &[2, 2]),
        ),
        ("0.bias".to_string(), t(vec![0.1, -0.1], &[2])),
    ];
    optlab::tensor_io::write_safetensors(&p, &tensors, None).unwrap();
    let csv = d.join("x.csv");
    std::fs::write(&csv, "a,b,y\n0.2,-0.1,0\n-0.5,0.5,1\n0.0,0.125,0\n").unwrap();
    let (ps, cs) = (p.to_str().unwrap(), csv.to_str().unwrap());
    let o = run(&argv(&format!(
        "certify {ps} --sigma 0.25 --n 2000 --alpha 0.001 --inputs {cs} --label y --json"
    )));
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let r = &v["results"];
    assert_eq!(
        (r[0]["class"].as_u64(), r[1]["class"].as_u64()),
        (Some(0), Some(1))
    );
    let rad0 = r[0]["radius"].as_f64().unwrap();
    assert!(rad0 > 0.2 && rad0 <= 0.3, "{v}"); // true radius 0.3
                                               // On the decision boundary: abstain.
    assert!(r[2]["class"].is_null() && r[2]["radius"] == 0.0, "{v}");
    assert_eq!(v["certified_correct"], 2);
    fails_with(
        &[
            "certify", ps, "--sigma", "0.25", "--inputs", cs, "--label", "z",
        ],
        "no column named `z`",
    );
    fails_with(
        &["certify", ps, "--sigma", "0.25", "--inputs", cs],
        "3 feature columns",
    );
    fails_with(
        &["certify", ps, "--sigma=-1", "--inputs", cs, "--label", "y"],
        "sigma=-1",
    );
    // LVM-RS: one configuration, the Bonferroni search, and the labelled replication mode.
    for (extra, sound) in [
        (vec![], true),
        (vec!["--search"], true),
        (vec!["--replication"], false),
    ] {
        let mut args = vec![
            "certify", ps, "--sigma", "0.25", "--n", "2000", "--alpha", "0.001", "--inputs", cs,
            "--label", "y", "--method", "lvm", "--json",
        ];
        args.extend(extra.iter().copied());
        let o = run(&args);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["sound"], sound, "{v}");
        let r = &v["results"];
        assert_eq!(r[0]["class"].as_u64(), Some(0), "{v}");
        let rad = r[0]["radius"].as_f64().unwrap();
        assert!(rad > 0.05 && rad <= 0.3, "{v}");
        assert!(r[2]["class"].is_null(), "{v}");
    }
    fails_with(
        &[
            "certify", ps, "--sigma", "0.25", "--inputs", cs, "--label", "y", "--search",
        ],
        "belong to --method lvm",
    );
    fails_with(
        &[
            "certify", ps, "--sigma", "0.25", "--inputs", cs, "--label", "y", "--method", "lvm",
            "--map", "max",
        ],
        "available: softmax, sparsemax",
    );
    std::fs::remove_dir_all(&d).unwrap();
}
