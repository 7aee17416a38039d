//! `optlab convex-relu train`.

use crate::common::{argv, fails_with, run, text, tmp};

#[test]
fn convex_relu_train_writes_a_loadable_network() {
    let d = tmp("convex-relu");
    std::fs::create_dir_all(&d).unwrap();
    let csv = d.join("data.csv");
    let mut body = String::from("a,b,y\n");
    for k in 0..80 {
        let (a, b) = ((k as f64 * 0.37).sin(), (k as f64 * 0.91).cos());
        body.push_str(&format!("{a},{b},{}\n", (a - b).max(0.0)));
    }
    std::fs::write(&csv, body).unwrap();
    let out = d.join("run");
    let o = run(&[
        "convex-relu",
        "train",
        csv.to_str().unwrap(),
        "--patterns",
        "20",
        "--beta",
        "1e-3",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    let (so, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&so).unwrap();
    let (obj, loss) = (
        v["objective"].as_f64().unwrap(),
        v["network_loss"].as_f64().unwrap(),
    );
    assert!((obj - loss).abs() < 1e-3 * obj, "{v}");
    assert!(v["train_mse"].as_f64().unwrap() < 1e-3, "{v}");
    assert!(out.join("model.safetensors").exists() && out.join("solution.json").exists());
    std::fs::write(&csv, "a,b,y\n1,x,2\n").unwrap();
    let c = csv.to_str().unwrap();
    let o_dir = out.to_str().unwrap();
    fails_with(
        &argv(&format!("convex-relu train {c} --out {o_dir}")),
        "data.csv",
    );
    std::fs::write(&csv, "a,b,y\n1,NaN,2\n").unwrap();
    fails_with(
        &argv(&format!("convex-relu train {c} --out {o_dir}")),
        "data.csv",
    );
    std::fs::write(&csv, "a,y\n1,2\n2,3\n").unwrap();
    fails_with(
        &["convex-relu", "train", c, "--beta=-1", "--out", o_dir],
        "beta=-1",
    );
    fails_with(
        &["convex-relu", "train", c, "--patterns", "0", "--out", o_dir],
        "--patterns",
    );
    std::fs::remove_dir_all(&d).unwrap();
}
