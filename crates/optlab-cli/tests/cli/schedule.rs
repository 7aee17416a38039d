//! `optlab hparams` and `optlab schedule plot`.

use crate::common::{argv, fails_with, is_png, run, text, tmp};

#[test]
fn hparams_and_schedule_plot() {
    let o = run(&argv(
        "hparams --params 1e9 --tokens 1e11 --seq-len 2048 --json",
    ));
    assert!(o.status.success(), "{}", text(&o).1);
    let v: serde_json::Value = serde_json::from_str(text(&o).0.trim()).unwrap();
    let lr = v["lr"].as_f64().unwrap();
    assert!((lr - 1.79 * 1e9f64.powf(-0.713) * 1e11f64.powf(0.307)).abs() < 1e-12);
    assert_eq!(v["batch_sequences"], serde_json::json!(541.0));
    let o = run(&argv(
        "hparams --scale-batch --lr 0.1 --from 32 --to 128 --optimizer sgd --json",
    ));
    let v: serde_json::Value = serde_json::from_str(text(&o).0.trim()).unwrap();
    assert!((v["scaled_lr"].as_f64().unwrap() - 0.4).abs() < 1e-15);
    fails_with(
        &["hparams", "--params=-1", "--tokens", "1e9"],
        "params=-1 must be a positive number",
    );
    fails_with(
        &[
            "hparams",
            "--scale-batch",
            "--lr",
            "0.1",
            "--from",
            "0",
            "--to",
            "8",
        ],
        "batch sizes >= 1",
    );
    let d = tmp("sched");
    std::fs::create_dir_all(&d).unwrap();
    let png = d.join("lr.png");
    let o = run(&[
        "schedule",
        "plot",
        "wsd:warmup=10,decay_frac=0.5",
        "cosine",
        "--steps",
        "100",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    assert!(is_png(&png));
    let csv = std::fs::read_to_string(d.join("lr.csv")).unwrap();
    assert_eq!(csv.lines().count(), 101);
    assert!(
        csv.lines().nth(51).unwrap().starts_with("50,1,"),
        "{}",
        csv.lines().nth(51).unwrap()
    );
    fails_with(
        &[
            "schedule",
            "plot",
            "cosin",
            "--steps",
            "10",
            "--out",
            png.to_str().unwrap(),
        ],
        "unknown schedule 'cosin'",
    );
    std::fs::remove_dir_all(&d).unwrap();
}
