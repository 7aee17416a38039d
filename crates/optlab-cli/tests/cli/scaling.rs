//! `optlab scaling fit|predict|check`.

use crate::common::{fails_with, is_png, optlab, run, text, tmp};

/// `scaling fit` on curves of a known law (P38), `scaling predict` of a held-out schedule, `scaling check` of real
/// runs, and their errors.
#[test]
fn scaling_fit_predict_check() {
    use optlab::anneal_law::{schedule_lrs, AnnealLaw};
    let d = tmp("scaling");
    std::fs::create_dir_all(&d).unwrap();
    let truth = AnnealLaw {
        l0: 1.0,
        a: 0.3,
        alpha: 0.6,
        c: 0.4,
        lambda: 0.999,
    };
    let mut curve_args = Vec::new();
    for (name, spec) in [("constant", "constant"), ("cosine", "cosine:warmup=50")] {
        let lrs = schedule_lrs(spec, 3000, 1e-3).unwrap();
        let loss = truth.curve(&lrs);
        let mut csv = String::from("step,lr,loss\n");
        for (k, (lr, l)) in lrs.iter().zip(&loss).enumerate() {
            // Losses every 10 steps only: the others are left empty.
            let l = if (k + 1) % 10 == 0 {
                format!("{l}")
            } else {
                String::new()
            };
            csv.push_str(&format!("{},{lr},{l}\n", k + 1));
        }
        let p = d.join(format!("{name}.csv"));
        std::fs::write(&p, csv).unwrap();
        curve_args.push("--curve".to_string());
        curve_args.push(p.display().to_string());
    }
    let fit = d.join("fit.json");
    let mut args: Vec<String> = vec!["scaling".into(), "fit".into()];
    args.extend(curve_args);
    args.extend(["--out".into(), fit.display().to_string()]);
    let o = optlab().args(&args).output().unwrap();
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(is_png(&fit.with_extension("png")));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&fit).unwrap()).unwrap();
    for (k, want) in [("l0", 1.0), ("a", 0.3), ("alpha", 0.6), ("c", 0.4)] {
        let got = v["law"][k].as_f64().unwrap();
        assert!((got - want).abs() / want < 1e-3, "{k}: {got}");
    }
    assert_eq!(v["peak_lr"].as_f64(), Some(1e-3));
    let pred = d.join("pred.csv");
    let o = run(&[
        "scaling",
        "predict",
        "--params",
        fit.to_str().unwrap(),
        "--schedule",
        "linear:warmup=50",
        "--schedule",
        "constant",
        "--steps",
        "3000",
        "--out",
        pred.to_str().unwrap(),
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains("1. linear:warmup=50") && out.contains("2. constant"),
        "{out}"
    );
    let o = run(&[
        "scaling",
        "predict",
        "--params",
        fit.to_str().unwrap(),
        "--schedule",
        "constant",
        "--steps",
        "3000",
        "--out",
        d.join("pred2.csv").to_str().unwrap(),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["final_loss"][0]["schedule"], "constant");
    let csv = std::fs::read_to_string(&pred).unwrap();
    let last: f64 = csv
        .lines()
        .last()
        .unwrap()
        .split(',')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let want = *truth
        .curve(&schedule_lrs("linear:warmup=50", 3000, 1e-3).unwrap())
        .last()
        .unwrap();
    assert!((last - want).abs() / want < 1e-3, "{last} vs {want}");
    assert!(is_png(&pred.with_extension("png")));
    // Two short real runs, checked against the law (the numbers are not the point: the run loading is).
    let mut run_args = vec![
        "scaling".to_string(),
        "check".into(),
        "--params".into(),
        fit.display().to_string(),
    ];
    for s in ["constant", "linear"] {
        let r = d.join(s);
        let o = run(&[
            "train",
            "--steps",
            "60",
            "--schedule",
            s,
            "--quiet",
            "--out",
            r.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{:?}", text(&o));
        run_args.extend(["--run".into(), r.display().to_string()]);
    }
    run_args.extend(["--bin".into(), "5".into()]);
    let o = optlab().args(&run_args).output().unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains("| MAPE %") && out.contains("ranking by final loss"),
        "{out}"
    );
    run_args.push("--json".into());
    let o = optlab().args(&run_args).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["runs"].as_array().unwrap().len(), 2);
    assert_eq!(v["runs"][0]["points"].as_u64(), Some(12));
    // Errors.
    let p = fit.to_str().unwrap();
    fails_with(
        &[
            "scaling",
            "predict",
            "--params",
            p,
            "--schedule",
            "cosin",
            "--steps",
            "10",
            "--out",
            "/tmp/x.csv",
        ],
        "available: constant",
    );
    fails_with(
        &[
            "scaling",
            "predict",
            "--params",
            p,
            "--schedule",
            "linear",
            "--steps",
            "10",
            "--lr=-1",
            "--out",
            "/tmp/x.csv",
        ],
        "must be positive",
    );
    fails_with(
        &["scaling", "fit", "--out", "/tmp/x.json"],
        "--run DIR or --curve",
    );
    let bad = d.join("bad.csv");
    std::fs::write(&bad, "step,lr,loss\n1,0.1,1\n3,0.1,1\n").unwrap();
    fails_with(
        &[
            "scaling",
            "fit",
            "--curve",
            bad.to_str().unwrap(),
            "--out",
            "/tmp/x.json",
        ],
        "step 3 after step 1",
    );
    fails_with(
        &[
            "scaling",
            "predict",
            "--params",
            bad.to_str().unwrap(),
            "--schedule",
            "linear",
            "--steps",
            "10",
            "--out",
            "/tmp/x.csv",
        ],
        "not a law written by",
    );
    std::fs::remove_dir_all(&d).unwrap();
}
