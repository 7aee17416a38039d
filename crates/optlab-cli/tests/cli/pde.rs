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
        ("--constraint hard --basis mlp", 1),
        ("--constraint hard --grid 16 --modes 4", 1),
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
            "pde train --constraint hard --basis fourier --out {out}"
        )),
        "unknown --basis",
    );
    // The FNO's default 32 x 32 grid has 1024 nodes.
    fails_with(
        &argv(&format!(
            "pde train --constraint hard --points 2000 --out {out}"
        )),
        "1024 nodes",
    );
    fails_with(
        &argv(&format!(
            "pde train --constraint hard --modes 17 --out {out}"
        )),
        "modes",
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

/// P22: a two-dimension, two-width Deep Ritz sweep that stops after its first run and resumes (the finished run
/// kept, the rest done), and the spectral solver's geometric energy decay.
#[test]
fn pde_ritz_sweep_resumes_and_spectral_decays_geometrically() {
    let d = tmp("pde_ritz");
    let out = d.to_str().unwrap();
    let flags = format!(
        "pde ritz --dims 1,2 --widths 4,8 --steps 40 --points 64 --boundary-points 16 --test-points 256 --eval-every 20 --out {out} --json"
    );
    let v: serde_json::Value = serde_json::from_str(&ok(&argv(&flags))).unwrap();
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    for r in runs {
        let e = r["l2_error"].as_f64().unwrap();
        assert!(e.is_finite() && e > 0.0 && e < 2.0, "{r}");
    }
    for f in ["error_vs_width.png", "summary.json", "curve-d2-w8.csv"] {
        assert!(d.join(f).exists(), "{f}");
    }
    // A crash after the first run: keep its line, drop the rest, resume.
    let log = std::fs::read_to_string(d.join("runs.jsonl")).unwrap();
    let first = log.lines().next().unwrap().to_string();
    std::fs::write(d.join("runs.jsonl"), format!("{first}\n{{\"d\": 1, \"wid")).unwrap();
    let again: serde_json::Value =
        serde_json::from_str(&ok(&argv(&format!("pde ritz --resume {out} --json")))).unwrap();
    assert_eq!(again["runs"].as_array().unwrap().len(), 4);
    assert_eq!(
        again["runs"][0], v["runs"][0],
        "the finished run is kept as it was"
    );
    // The same seed gives the same runs.
    for i in 1..4 {
        assert_eq!(again["runs"][i]["l2_error"], v["runs"][i]["l2_error"]);
    }
    std::fs::remove_dir_all(&d).unwrap();

    let s: serde_json::Value = serde_json::from_str(&ok(&argv(
        "pde spectral --d 2 --modes 6 --points 18 --iterations 25 --step 0.5 --json",
    )))
    .unwrap();
    let rate = s["rate"].as_f64().unwrap();
    assert!(rate > 0.0 && rate < 0.7, "{s}");
    assert!(s["l2_error"].as_f64().unwrap() < 1e-6, "{s}");
    let rows = s["rows"].as_array().unwrap();
    assert!(rows
        .windows(2)
        .all(|w| w[1]["energy"].as_f64() <= w[0]["energy"].as_f64()));
    fails_with(
        &argv("pde spectral --lagrangian plaplace:4 --step 5 --iterations 5"),
        "energy rose",
    );
    fails_with(
        &argv("pde ritz --dims 2 --boundary ansatz --out /tmp/x"),
        "ansatz imposes u = 0",
    );
}
