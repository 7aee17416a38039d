//! `optlab lipschitz`.

use crate::common::{argv, fails_with, run, text, tmp};

#[test]
fn lipschitz_naive_bound_and_bad_models() {
    use candle_core::{Device, Tensor};
    let d = tmp("lipschitz");
    std::fs::create_dir_all(&d).unwrap();
    let p = d.join("m.safetensors");
    let t = |v: Vec<f32>, s: &[usize]| Tensor::from_vec(v, s, &Device::Cpu).unwrap();
    let tensors = vec![
        (
            "0.weight".to_string(),
            t(vec![1.0, -2.0, 0.5, 3.0], &[2, 2]),
        ),
        ("0.bias".to_string(), t(vec![0.1, -0.1], &[2])),
        ("2.weight".to_string(), t(vec![1.0, 1.0], &[1, 2])),
    ];
    optlab::tensor_io::write_safetensors(&p, &tensors, None).unwrap();
    let ps = p.to_str().unwrap();
    let o = run(&argv(&format!("lipschitz {ps} --norm inf --json")));
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // Row sums 3 and 3.5, then 2: 7.
    assert_eq!(v["bound"].as_f64(), Some(7.0));
    assert_eq!(v["architecture"][1], "ReLU");
    fails_with(
        &["lipschitz", ps, "--method", "lipsd"],
        "available: naive, local, exact, lipsdp",
    );
    if cfg!(feature = "lipsdp") {
        fails_with(&["lipschitz", ps, "--method", "lipsdp"], "use --norm 2");
        let o = run(&argv(&format!(
            "lipschitz {ps} --method lipsdp --norm 2 --json"
        )));
        let (out, err) = text(&o);
        assert!(o.status.success(), "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let (b, naive) = (v["bound"].as_f64().unwrap(), v["naive"].as_f64().unwrap());
        // Both units active somewhere: the gradient (1.5, 1) has norm 1.803; the naive bound is 3.2566 * 1.4142.
        assert!(b >= 1.8027 && b <= naive * (1.0 + 1e-9), "{v}");
    } else {
        fails_with(
            &["lipschitz", ps, "--method", "lipsdp", "--norm", "2"],
            "--features lipsdp",
        );
    }
    let center = d.join("x.json");
    std::fs::write(&center, "[0.5, 0.25]").unwrap();
    let cs = center.to_str().unwrap();
    let o = run(&argv(&format!(
        "lipschitz {ps} --method exact --center {cs} --eps 0.01 --json"
    )));
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // Both hidden units active near (0.5, 0.25): gradient (1, -2) + (0.5, 3) = (1.5, 1), l1 norm 2.5.
    assert!((v["bound"].as_f64().unwrap() - 2.5).abs() < 1e-6, "{v}");
    // The local bound over a large box: above the exact constant, and branch and bound reaches it.
    let bound = |method: &str, extra: &[&str]| {
        let mut args = vec![
            "lipschitz",
            ps,
            "--method",
            method,
            "--center",
            cs,
            "--eps",
            "1",
            "--json",
        ];
        args.extend_from_slice(extra);
        let o = run(&args);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let exact = bound("exact", &[])["bound"].as_f64().unwrap();
    let local = bound("local", &["--timeout", "5"]);
    let phases = local["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 3, "{local}");
    assert!(
        phases[0]["bound"].as_f64().unwrap() >= exact,
        "{local} vs {exact}"
    );
    assert!(
        (local["bound"].as_f64().unwrap() - exact).abs() <= 1e-9 * exact,
        "{local} vs {exact}"
    );
    let relax = bound("local", &["--timeout", "0", "--relaxation", "recurjac"]);
    assert!(relax["bound"].as_f64().unwrap() >= exact);
    fails_with(
        &[
            "lipschitz",
            ps,
            "--method",
            "local",
            "--center",
            cs,
            "--relaxation",
            "x",
        ],
        "available: linear, recurjac",
    );
    fails_with(&["lipschitz", ps, "--method", "exact"], "needs --center");
    fails_with(
        &[
            "lipschitz",
            ps,
            "--method",
            "exact",
            "--center",
            cs,
            "--eps=-1",
        ],
        "eps=-1",
    );
    std::fs::write(&center, "[0.5]").unwrap();
    fails_with(
        &["lipschitz", ps, "--method", "exact", "--center", cs],
        "the network takes 2",
    );
    fails_with(&["lipschitz", ps, "--norm", "3"], "available: inf, 2");
    let bytes = std::fs::read(&p).unwrap();
    let bad = d.join("bad.safetensors");
    std::fs::write(&bad, &bytes[..bytes.len() - 7]).unwrap();
    fails_with(&["lipschitz", bad.to_str().unwrap()], "bad.safetensors");
    let mut with_bn = tensors.clone();
    with_bn.push(("1.running_var".to_string(), t(vec![1.0, 1.0], &[2])));
    optlab::tensor_io::write_safetensors(&bad, &with_bn, None).unwrap();
    fails_with(&["lipschitz", bad.to_str().unwrap()], "running_var");
    std::fs::remove_dir_all(&d).unwrap();
}
