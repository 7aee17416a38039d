//! `optlab dag simulate|fit`.

use crate::common::{argv, fails_with, run, text, tmp};

#[test]
fn dag_simulate_and_fit() {
    let d = tmp("dag");
    std::fs::create_dir_all(&d).unwrap();
    let (data, truth, w) = (d.join("data.csv"), d.join("truth.csv"), d.join("W.csv"));
    let (ds, ts, ws) = (
        data.to_str().unwrap(),
        truth.to_str().unwrap(),
        w.to_str().unwrap(),
    );
    let o = run(&argv(&format!(
        "dag simulate --graph er2 --d 8 --n 500 --noise nv --seed 3 --out {ds} --truth {ts}"
    )));
    assert!(o.status.success(), "{:?}", text(&o));
    let o = run(&argv(&format!(
        "dag fit {ds} --variant nv --out {ws} --truth {ts} --json"
    )));
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["metrics"]["tpr"].as_f64().unwrap() >= 0.7, "{v}");
    assert_eq!(std::fs::read_to_string(&w).unwrap().lines().count(), 9);
    let bad = d.join("bad.csv");
    let b = bad.to_str().unwrap();
    for (body, want) in [
        ("a,b\n1,x\n2,3\n", "not a number"),
        ("a,b\n1,NaN\n2,3\n", "finite"),
        ("a,b\n1,2\n1,3\n1,4\n", "column a is constant"),
        ("a\n1\n2\n", "at least 2 variables"),
        ("a,b\n1,2,3\n", "3 values"),
    ] {
        std::fs::write(&bad, body).unwrap();
        fails_with(&argv(&format!("dag fit {b} --out {ws}")), want);
    }
    fails_with(
        &["dag", "fit", ds, "--variant", "xx", "--out", ws],
        "available: ev, nv, dagma",
    );
    fails_with(
        &[
            "dag", "simulate", "--graph", "tree3", "--d", "5", "--out", ds,
        ],
        "erK or sfK",
    );
    std::fs::remove_dir_all(&d).unwrap();
}
