//! `optlab ep`: the gradient check reports every (angle, N, beta) cell with the symmetric network's estimate equal
//! to the exact gradient, a short training run writes its directory, and bad input is one error line.

use crate::common::{argv, fails_with, is_png, ok, tmp};

#[test]
fn ep_grad_check_and_train() {
    let root = tmp("ep");
    let out = root.join("check");
    let s: serde_json::Value = serde_json::from_str(&ok(&argv(&format!(
        "ep grad-check --layers 32,10 --ns 0,2,4 --betas 0.05 --angles 0,90 --homeostasis-steps 20 --batch-size 8 \
         --out {} --json",
        out.display()
    ))))
    .unwrap();
    let rows = s["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2 * 2 * 3, "{s}");
    let sym = rows
        .iter()
        .find(|r| r["angle"] == 0.0 && r["homeostasis"] == false && r["n"] == 0)
        .unwrap();
    assert!(sym["cosine"].as_f64().unwrap() > 0.9999, "{sym}");
    let asym = rows
        .iter()
        .find(|r| r["angle"] == 90.0 && r["homeostasis"] == false && r["n"] == 0)
        .unwrap();
    let homeo = rows
        .iter()
        .find(|r| r["angle"] == 90.0 && r["homeostasis"] == true && r["n"] == 0)
        .unwrap();
    assert!(
        homeo["asymmetry"].as_f64().unwrap() < asym["asymmetry"].as_f64().unwrap(),
        "{asym} {homeo}"
    );
    assert!(is_png(&out.join("cosine.png")));

    let run = root.join("train");
    let t: serde_json::Value = serde_json::from_str(&ok(&argv(&format!(
        "ep train --layers 16,10 --epochs 2 --t1 30 --t2 5 --out {} --quiet --json",
        run.display()
    ))))
    .unwrap();
    assert!(t["test_accuracy"].as_f64().unwrap() > 0.0, "{t}");
    assert_eq!(
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .count(),
        2
    );
    assert!(is_png(&run.join("accuracy.png")));

    // Stopped after epoch 1 and resumed: the same epochs (but for their timings) and the same weights.
    let part = root.join("part");
    let o = crate::common::run(&argv(&format!(
        "ep train --layers 16,10 --epochs 2 --t1 30 --t2 5 --homeostasis 0.5 --out {} --quiet --stop-after 1",
        part.display()
    )));
    let err = crate::common::text(&o).1;
    assert!(o.status.success(), "{err}");
    let how = format!(
        "stopped after epoch 1 of 2; continue with: optlab ep train --resume {}",
        part.display()
    );
    assert!(err.contains(&how), "{err}");
    assert!(!part.join("model.safetensors").exists());
    ok(&argv(&format!(
        "ep train --resume {} --quiet",
        part.display()
    )));
    let full = root.join("full");
    ok(&argv(&format!(
        "ep train --layers 16,10 --epochs 2 --t1 30 --t2 5 --homeostasis 0.5 --out {} --quiet",
        full.display()
    )));
    let epochs = |dir: &std::path::Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("seconds");
                v
            })
            .collect()
    };
    assert_eq!(epochs(&full), epochs(&part));
    assert_eq!(
        std::fs::read(full.join("model.safetensors")).unwrap(),
        std::fs::read(part.join("model.safetensors")).unwrap()
    );

    let o = root.join("bad");
    let o = o.display();
    for (line, want) in [
        (
            format!("ep train --rule hebb --out {o}"),
            "available: ep, rbp",
        ),
        (format!("ep train --beta 0 --out {o}"), "beta"),
        (
            format!("ep train --layers 0,10 --out {o}"),
            "no empty layer",
        ),
        (format!("ep train --epochs 0 --out {o}"), "at least 1"),
        (format!("ep train --optimizer sgd:lr=-1 --out {o}"), "lr"),
        ("ep grad-check --betas 0".to_string(), "beta"),
        (
            "ep grad-check --homeostasis-lr 0".to_string(),
            "learning rate",
        ),
        ("ep train --epochs 2".to_string(), "--out"),
        (
            format!("ep train --resume {}", root.join("missing").display()),
            "cannot read",
        ),
    ] {
        fails_with(&argv(&line), want);
    }
}
