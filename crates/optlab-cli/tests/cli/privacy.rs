//! `optlab privacy` and `optlab train --privacy` (DP-SGD).

use crate::common::{argv, fails_with, ok, run, text, tmp};

#[test]
fn privacy_accountant_commands() {
    let v: serde_json::Value = serde_json::from_str(&ok(&argv(
        "privacy epsilon --q 0.04 --sigma 1.5 --steps 2250 --delta 1e-5 --json",
    )))
    .unwrap();
    assert!((v["epsilon"].as_f64().unwrap() - 7.32911117143).abs() < 1e-9);
    assert_eq!(v["order"], 3.9);
    let n: serde_json::Value = serde_json::from_str(&ok(&argv(
        "privacy noise --epsilon 8 --delta 1e-5 --q 0.04 --steps 2000 --json",
    )))
    .unwrap();
    assert_eq!(n["sigma"], 1.356201171875);
    assert!(n["epsilon"].as_f64().unwrap() <= 8.0);
    let t = ok(&argv(
        "privacy epsilon --q 0.01 --sigma 1 --steps 1000 --delta 1e-5",
    ));
    assert!(t.starts_with("epsilon = 2.10136"), "{t}");
}

#[test]
fn private_training_reports_epsilon() {
    let out = tmp("dp-train");
    let o = run(&argv(&format!(
        "train --privacy epsilon=3,delta=1e-5,clip=1.0 --optimizer sgd:lr=0.5 --model mlp:hidden=16 --steps 20 --batch-size 64 --out {}",
        out.display()
    )));
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("DP-SGD: noise multiplier"), "{stderr}");
    assert!(stdout.contains("privacy: epsilon"), "{stdout}");
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let eps = s["privacy"]["epsilon"].as_f64().unwrap();
    assert!(eps > 2.9 && eps <= 3.0, "{eps}");
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert!(metrics.lines().next().unwrap().contains("\"epsilon\""));
    let cfg = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(
        cfg.contains("privacy = \"epsilon=3,delta=0.00001,clip=1\""),
        "{cfg}"
    );
    // A delta at or above 1/N is allowed with a warning.
    let o = run(&argv(&format!(
        "train --privacy noise=1,delta=0.1,clip=1 --model mlp:hidden=8 --steps 2 --quiet --out {}",
        tmp("dp-warn").display()
    )));
    let (_, stderr) = text(&o);
    assert!(
        o.status.success() && stderr.contains("warning: privacy: delta 0.1 is not below 1/N"),
        "{stderr}"
    );
}

#[test]
fn privacy_bad_input_is_one_line() {
    fails_with(
        &argv("privacy epsilon --q 0.04 --sigma 1.5 --steps 10 --delta 0"),
        "delta must lie in (0, 1)",
    );
    fails_with(
        &argv("privacy epsilon --q 1.5 --sigma 1.5 --steps 10 --delta 1e-5"),
        "sampling rate q must lie in [0, 1]",
    );
    fails_with(
        &argv("privacy noise --epsilon 0 --delta 1e-5 --q 0.01 --steps 10"),
        "target epsilon must be finite and > 0",
    );
    fails_with(
        &argv("privacy noise --epsilon 1e-9 --delta 1e-5 --q 1 --steps 100000"),
        "out of reach",
    );
    let out = tmp("dp-bad");
    for (spec, want) in [
        ("epsilon=-1,delta=1e-5", "epsilon must be finite and > 0"),
        ("epsilon=3,delta=2", "delta must lie in (0, 1)"),
        ("noise=1,delta=1e-5,clip=0", "clip must be > 0"),
    ] {
        fails_with(
            &argv(&format!(
                "train --privacy {spec} --steps 2 --out {}",
                out.display()
            )),
            want,
        );
    }
    fails_with(
        &argv(&format!(
            "train --privacy epsilon=3,delta=1e-5 --model cnn:channels=4,norm=bn --steps 2 --out {}",
            out.display()
        )),
        "use GroupNorm",
    );
    fails_with(
        &argv(&format!(
            "train --task charlm --privacy epsilon=3,delta=1e-5 --schedule constant --steps 2 --out {}",
            out.display()
        )),
        "DP-SGD trains supervised models",
    );
}
