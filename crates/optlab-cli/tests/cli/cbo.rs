//! `optlab cbo`.

use crate::common::{argv, fails_with, run, text};

#[test]
fn cbo_reports_success_and_rejects_bad_settings() {
    let args = [
        "cbo",
        "--function",
        "rastrigin",
        "--dim",
        "3",
        "--particles",
        "30",
        "--runs",
        "8",
        "--noise",
        "anisotropic",
        "--sigma",
        "10.1",
        "--alpha",
        "30",
        "--iters",
        "3000",
        "--init-lo=-3",
        "--init-hi",
        "3",
        "--json",
    ];
    let o = run(&args);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["runs"], 8);
    assert_eq!(v["evaluations_per_run"], 30.0 * 3000.0 + 1.0);
    assert!(v["success_rate"].as_f64().unwrap() >= 0.75, "{v}");
    // Same seed, same result.
    let again: serde_json::Value = serde_json::from_slice(&run(&args).stdout).unwrap();
    assert_eq!(again["final_points"], v["final_points"]);
    fails_with(
        &["cbo", "--function", "rastrign", "--dim", "3"],
        "available: rosenbrock",
    );
    fails_with(&argv("cbo --function beale --dim 3"), "exactly 2");
    fails_with(
        &[
            "cbo",
            "--function",
            "ackley",
            "--dim",
            "3",
            "--particles",
            "1",
        ],
        "particles=1",
    );
    fails_with(
        &[
            "cbo",
            "--function",
            "ackley",
            "--dim",
            "3",
            "--noise",
            "pink",
        ],
        "available: isotropic",
    );
    fails_with(
        &[
            "cbo",
            "--function",
            "ackley",
            "--dim",
            "3",
            "--method",
            "pso",
        ],
        "available: cbo, hopping",
    );
    fails_with(
        &["cbo", "--function", "ackley", "--dim", "3", "--dt=-1"],
        "dt=-1",
    );
}
