//! `optlab eval`: a run's model, or its state dict imported as a PyTorch nn.Sequential, applied to data.

use crate::common::{argv, fails_with, run, text, tmp};

fn json(args: &[&str]) -> serde_json::Value {
    let o = run(args);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{args:?}: {stderr}");
    serde_json::from_str(stdout.trim()).unwrap()
}

#[test]
fn eval_a_run_and_its_imported_state_dict() {
    let out = tmp("eval");
    let dir = out.join("run");
    let d = dir.to_str().unwrap();
    let o = run(&argv(&format!("train --epochs 2 --out {d} --quiet")));
    assert!(o.status.success(), "{}", text(&o).1);
    // Without --data: the run's own validation split, as the run measured it.
    let own = json(&["eval", d, "--json"]);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    let (l, want) = (
        own["loss"].as_f64().unwrap(),
        summary["val_loss"].as_f64().unwrap(),
    );
    assert!((l - want).abs() < 1e-5 * want, "{l} vs {want}");
    assert_eq!(own["accuracy"], summary["val_accuracy"]);
    // The same weights read as a PyTorch state dict give the same predictions on the whole data set.
    let preds = out.join("preds.csv");
    let a = json(&[
        "eval",
        d,
        "--data",
        "digits",
        "--out",
        preds.to_str().unwrap(),
        "--json",
    ]);
    let model = dir.join("model.safetensors");
    let b = json(&[
        "eval",
        model.to_str().unwrap(),
        "--data",
        "digits",
        "--json",
    ]);
    assert_eq!(a["accuracy"], b["accuracy"]);
    let (la, lb) = (a["loss"].as_f64().unwrap(), b["loss"].as_f64().unwrap());
    assert!((la - lb).abs() < 1e-5 * lb, "{la} vs {lb}");
    let csv = std::fs::read_to_string(&preds).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1798);
    assert!(
        lines[0].starts_with("index,label,predicted,p_0"),
        "{}",
        lines[0]
    );
    // Bad requests: one clear line each.
    let m = model.to_str().unwrap();
    fails_with(&["eval", m], "needs --data");
    fails_with(
        &["eval", m, "--data", "moons"],
        "2 features, the network takes 64",
    );
    fails_with(
        &argv(&format!("eval {d} --data mons")),
        "unknown data set 'mons'",
    );
    let part = out.join("part");
    let p = part.to_str().unwrap();
    let o = run(&argv(&format!(
        "train --epochs 2 --stop-after 3 --out {p} --quiet"
    )));
    assert!(o.status.success());
    fails_with(&["eval", p], "has not finished");
    std::fs::remove_dir_all(&out).unwrap();
}
