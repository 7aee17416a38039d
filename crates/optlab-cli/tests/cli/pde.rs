//! `optlab pde` (P08).

use crate::common::{argv, fails_with, is_png, ok, tmp};

#[test]
fn pde_train_soft_hard_and_experts() {
    let d = tmp("pde_train");
    let out = d.to_str().unwrap();
    for (args, experts) in [
        ("--constraint soft", 1),
        ("--constraint hard", 1),
        ("--constraint hard --experts 2", 2),
    ] {
        let v: serde_json::Value = serde_json::from_str(&ok(&argv(&format!(
            "pde train {args} --steps 3 --out {out} --json"
        ))))
        .unwrap();
        assert_eq!(v["experts"], experts);
        let e = v["rel_l2"].as_f64().unwrap();
        assert!(e.is_finite() && e > 0.0, "{v}");
        assert!(v["seconds_per_step"].as_f64().unwrap() > 0.0);
        for f in ["curve.png", "field.png"] {
            assert!(is_png(&d.join(f)), "{f}");
        }
        let csv = std::fs::read_to_string(d.join("curve.csv")).unwrap();
        assert_eq!(csv.lines().count(), 4);
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn pde_bad_input_is_one_line() {
    let d = tmp("pde_bad");
    let out = d.to_str().unwrap();
    fails_with(
        &argv(&format!("pde train --constraint medium --out {out}")),
        "unknown --constraint",
    );
    fails_with(
        &argv(&format!(
            "pde train --pde burgers --constraint hard --out {out}"
        )),
        "unknown --pde",
    );
    fails_with(
        &argv(&format!(
            "pde train --constraint soft --experts 2 --out {out}"
        )),
        "hard constraint only",
    );
    fails_with(
        &argv(&format!(
            "pde train --constraint hard --experts 0 --out {out}"
        )),
        "experts",
    );
    fails_with(
        &argv(&format!("pde train --constraint hard --nu 0 --out {out}")),
        "--nu",
    );
    let _ = std::fs::remove_dir_all(&d);
}
