//! `optlab train|compare --task charlm`: the character-level language model.

use crate::common::{is_png, run, safetensors_keys, text, tmp};

/// The character-level language model end to end: `train --task charlm` writes a run directory whose accuracy is
/// per character, `compare` puts LayerNorm and PowerNorm side by side over two seeds.
#[test]
fn charlm_train_and_compare() {
    let out = tmp("charlm");
    let o = run(&[
        "train",
        "--task",
        "charlm",
        "--model",
        "transformer:layers=1,dim=16,heads=2,mlp=2,norm=pn,pn_warmup=5",
        "--data",
        "text:context=16",
        "--steps",
        "12",
        "--schedule",
        "constant",
        "--eval-every",
        "6",
        "--batch-size",
        "8",
        "--out",
        out.join("run").to_str().unwrap(),
        "--quiet",
    ]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.contains("val accuracy"), "{stdout}");
    let cfg = std::fs::read_to_string(out.join("run/config.toml")).unwrap();
    assert!(
        cfg.contains("task = \"charlm\"") && cfg.contains("norm=pn"),
        "{cfg}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run/summary.json")).unwrap())
            .unwrap();
    let acc = summary["val_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc), "{acc}");
    // Uniform guessing over 62 characters has loss ln 62 = 4.13; twelve steps already do better.
    assert!(summary["val_loss"].as_f64().unwrap() < 4.13, "{summary}");
    let st = safetensors_keys(&out.join("run/model.safetensors"));
    for k in [
        "0.tok.weight",
        "1.norm1.running_phi",
        "1.norm1.ema_gz",
        "1.norm1.iters",
        "3.weight",
    ] {
        assert!(st.iter().any(|s| s == k), "{k} missing from {st:?}");
    }
    // One right-padded line per example, with BatchNorm (padding out of its statistics and of the loss).
    let o = run(&[
        "train",
        "--task",
        "charlm",
        "--model",
        "transformer:layers=1,dim=16,heads=2,mlp=2,norm=bn",
        "--data",
        "text:context=32,unit=line",
        "--steps",
        "12",
        "--schedule",
        "constant",
        "--batch-size",
        "8",
        "--out",
        out.join("lines").to_str().unwrap(),
        "--quiet",
    ]);
    let (_, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("lines/summary.json")).unwrap())
            .unwrap();
    assert!(summary["val_loss"].as_f64().unwrap() < 3.9, "{summary}");
    let cmp = out.join("cmp");
    let o = run(&[
        "compare",
        "--task",
        "charlm",
        "--model",
        "transformer:layers=1,dim=16,heads=2,mlp=2,norm=ln",
        "--model",
        "transformer:layers=1,dim=16,heads=2,mlp=2,norm=pn",
        "--data",
        "text:context=16",
        "--steps",
        "20",
        "--schedule",
        "constant",
        "--eval-every",
        "10",
        "--batch-size",
        "8",
        "--seed",
        "0,1",
        "--out",
        cmp.to_str().unwrap(),
        "--quiet",
    ]);
    let (_, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    let md = std::fs::read_to_string(cmp.join("report.md")).unwrap();
    assert!(md.contains("| model | final train loss | val loss"), "{md}");
    assert!(md.contains(" ± "), "mean ± std over the seeds: {md}");
    assert!(md.contains("norm=pn` seed 1"), "{md}");
    for f in ["loss.png", "val_loss.png", "accuracy.png"] {
        assert!(is_png(&cmp.join(f)), "{f}");
    }
    std::fs::remove_dir_all(&out).unwrap();
}
