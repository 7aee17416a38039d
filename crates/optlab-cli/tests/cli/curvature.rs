//! `optlab curvature`: of a test function and of a run.

use crate::common::{argv, fails_with, is_png, run, text, tmp};

#[test]
fn curvature_of_a_function_and_of_a_run() {
    let o = run(&argv(
        "curvature --function rosenbrock --at=1,1 --lr 0.001 --json",
    ));
    assert!(o.status.success(), "{}", text(&o).1);
    let v: serde_json::Value = serde_json::from_str(text(&o).0.trim()).unwrap();
    // H = [[802, -400], [-400, 200]]: eigenvalues 1001.6006..., 0.3994; trace 1002.
    assert!(
        (v["lambda_max"].as_f64().unwrap() - 1_001.600_639_232_512).abs() < 1e-6,
        "{v}"
    );
    assert!((v["trace"].as_f64().unwrap() - 1002.0).abs() < 1e-9);
    assert_eq!(v["gd_stable"], true);
    assert_eq!(v["products"], "analytic");
    let o = run(&argv(
        "curvature --function rosenbrock --at=1,1 --lr 0.01 --json",
    ));
    let v: serde_json::Value = serde_json::from_str(text(&o).0.trim()).unwrap();
    assert_eq!(v["gd_stable"], false);

    let d = tmp("curv");
    let o = run(&[
        "train",
        "--model",
        "mlp:hidden=16",
        "--optimizer",
        "sgd:lr=0.1",
        "--steps",
        "50",
        "--out",
        d.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    let png = d.join("slq.png");
    let o = run(&[
        "curvature",
        "--run",
        d.to_str().unwrap(),
        "--batch",
        "64",
        "--probes",
        "20",
        "--slq-plot",
        png.to_str().unwrap(),
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains("lambda_max")
            && out.contains("GD  criterion")
            && out.contains("Hessian-vector products by r-operator"),
        "{out}"
    );
    assert!(is_png(&png));
    fails_with(
        &["curvature", "--function", "beale", "--at=1,2,3"],
        "exactly 2",
    );
    fails_with(&["curvature", "--run", "/nonexistent-run"], "config.toml");
    std::fs::remove_dir_all(&d).unwrap();
}
