//! `optlab bilevel`.

use crate::common::{argv, fails_with, is_png, ok, tmp};

#[test]
fn bilevel_distill_writes_curve_metrics_and_images() {
    let d = tmp("bilevel_distill");
    let out = d.to_str().unwrap();
    let json = ok(&argv(&format!(
        "bilevel --problem distill --steps 3 --out {out} --json"
    )));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let curve = v["curve"].as_array().unwrap();
    assert_eq!(curve.len(), 4);
    let first = curve[0]["upper"].as_f64().unwrap();
    let last = curve[3]["upper"].as_f64().unwrap();
    assert!(last < first, "the upper objective fell: {first} -> {last}");
    assert!(v["metrics"]["val_accuracy_distilled"].as_f64().unwrap() > 0.0);
    assert_eq!(v["method"], "implicit:solver=cg");
    for f in ["curve.png", "images.png"] {
        assert!(is_png(&d.join(f)), "{f}");
    }
    let csv = std::fs::read_to_string(d.join("curve.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5);
    let images = std::fs::read_to_string(d.join("images.csv")).unwrap();
    assert_eq!(images.lines().count(), 10);
    assert!(images.lines().all(|l| l.split(',').count() == 64));
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["problem"], "distill");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn bilevel_ridge_hparam_with_each_solver_name() {
    let d = tmp("bilevel_ridge");
    let out = d.to_str().unwrap();
    let mut finals = Vec::new();
    for solver in ["cg", "gmres", "bicgstab"] {
        let json = ok(&argv(&format!(
            "bilevel --problem ridge-hparam --method implicit:solver={solver} --steps 2 --out {out} --json"
        )));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            v["metrics"]["val_loss_before"],
            v["metrics"]["val_loss_grid"]
        );
        finals.push(v["metrics"]["val_loss_after"].as_f64().unwrap());
    }
    // The same hypergradients, whatever the solver (to its tolerance).
    assert!(
        finals
            .iter()
            .all(|f| (f - finals[0]).abs() < 1e-7 * finals[0]),
        "{finals:?}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn bilevel_hyper_rep_by_each_method() {
    let d = tmp("bilevel_hr");
    let out = d.to_str().unwrap();
    for method in ["bo-rep", "bo-rep:normalized=false,lr=0.5", "stocbio:q=2"] {
        let json = ok(&argv(&format!(
            "bilevel --problem hyper-rep --method {method} --steps 4 --out {out} --json"
        )));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["curve"].as_array().unwrap().len(), 5, "{method}");
        let acc = v["metrics"]["test_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc), "{method}: {acc}");
        assert!(v["method"]
            .as_str()
            .unwrap()
            .starts_with(method.split(':').next().unwrap()));
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn bilevel_constrained_problems() {
    let d = tmp("bilevel_constrained");
    let out = d.to_str().unwrap();
    // The official toy's first iterations (tests/lvhba.rs checks all 1500 against the official script).
    let v: serde_json::Value = serde_json::from_str(&ok(&argv(&format!(
        "bilevel --problem toy-constrained --steps 20 --out {out} --json"
    ))))
    .unwrap();
    assert!(v["method"].as_str().unwrap().contains("z0=-1"), "{v}");
    assert!(v["metrics"]["rel_error_x"].as_f64().unwrap().is_finite());
    for method in ["lv-hba", "implicit", "grid:points=2"] {
        let v: serde_json::Value = serde_json::from_str(&ok(&argv(&format!(
            "bilevel --problem svm-hparam --method {method} --steps 3 --out {out} --json"
        ))))
        .unwrap();
        let acc = v["metrics"]["test_accuracy_exact_lower"].as_f64().unwrap();
        assert!(acc > 0.9, "{method}: {acc}");
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn bilevel_bad_input_is_one_clear_error() {
    let d = tmp("bilevel_bad");
    let out = d.to_str().unwrap();
    for (args, want) in [
        (
            "--problem maml",
            "unknown bilevel problem 'maml'; available: ridge-hparam",
        ),
        (
            "--problem distill --method newton",
            "unknown bilevel method 'newton'",
        ),
        (
            "--problem distill --method implicit:tol=0",
            "tol=0 must be positive",
        ),
        (
            "--problem distill --method implicit:lr=-0.1",
            "lr=-0.1 must be positive",
        ),
        (
            "--problem distill --method implicit:solver=qr",
            "unknown linear solver 'qr'",
        ),
        ("--problem distill --method implicit:step=2", "step"),
        (
            "--problem hyper-rep --method implicit",
            "solved by: bo-rep, stocbio",
        ),
        ("--problem distill --method bo-rep", "solved by: implicit"),
        (
            "--problem hyper-rep --method bo-rep:beta=1",
            "beta=1 must be in [0, 1)",
        ),
        ("--problem hyper-rep --method stocbio:q=0", "at least 1"),
        (
            "--problem toy-constrained --method implicit",
            "solved by: lv-hba",
        ),
        (
            "--problem svm-hparam --method lv-hba:eta=-1",
            "eta=-1 must be positive",
        ),
        ("--problem svm-hparam --method grid:points=1", "at least 2"),
        // A solver that cannot reach its tolerance is an error, not a wrong gradient.
        (
            "--problem distill --method implicit:max_iter=1 --steps 1",
            "did not converge",
        ),
    ] {
        fails_with(&argv(&format!("bilevel {args} --out {out}")), want);
    }
    std::fs::remove_dir_all(&d).ok();
}
