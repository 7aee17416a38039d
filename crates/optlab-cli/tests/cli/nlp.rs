//! `optlab nlp` (P19).

use crate::common::{argv, fails_with, ok};
use serde_json::json;

#[test]
fn nlp_solve_and_suite() {
    let v: serde_json::Value =
        serde_json::from_str(&ok(&argv("nlp solve --problem hs40 --json"))).unwrap();
    assert_eq!(v["problem"], "HS40");
    assert_eq!(v["status"], "converged");
    assert!(v["kkt"].as_f64().unwrap() <= 1e-4);
    assert!((v["objective"].as_f64().unwrap() + 0.25).abs() < 1e-5);
    assert!(v["sketch_steps"].as_u64().unwrap() > 0);
    assert!(v["method"]
        .as_str()
        .unwrap()
        .starts_with("adasketch:sketch=kaczmarz"));
    let exact: serde_json::Value = serde_json::from_str(&ok(&argv(
        "nlp solve --problem HS28 --method newton --json",
    )))
    .unwrap();
    assert_eq!(exact["sketch_steps"], 0);
    assert_eq!(exact["iterations"], 1);
    let free: serde_json::Value = serde_json::from_str(&ok(&argv(
        "nlp solve --problem hs40 --method adasketch:hessian=products --json",
    )))
    .unwrap();
    assert_eq!(
        (&free["status"], &free["matrix_free"]),
        (&json!("converged"), &json!(true))
    );
    assert!(free["hessian_products"].as_u64().unwrap() > 0 && v["hessian_products"] == 0);
    assert!((free["objective"].as_f64().unwrap() + 0.25).abs() < 1e-5);
    let text = ok(&argv(
        "nlp solve --problem BT9 --method adasketch:sketch=block2",
    ));
    assert!(
        text.contains("converged") && text.contains("published"),
        "{text}"
    );

    let lr: serde_json::Value = serde_json::from_str(&ok(&argv(
        "nlp solve --problem logreg-eq --method newton --seed 1 --json",
    )))
    .unwrap();
    assert_eq!((lr["n"].as_u64(), lr["m"].as_u64()), (Some(64), Some(11)));
    assert_eq!(lr["status"], "converged");
    assert!(lr["published"].is_null());
    assert!(lr["method"]
        .as_str()
        .unwrap()
        .contains("reduced_hessian_tol=1e-2"));

    let suite: serde_json::Value =
        serde_json::from_str(&ok(&argv("nlp suite --method newton --json"))).unwrap();
    let results = suite["results"].as_array().unwrap();
    assert!(results.len() >= 29);
    assert_eq!(
        suite["solved"].as_u64().unwrap() as usize,
        results.len() - 2
    );
    let table = ok(&argv("nlp suite"));
    assert!(
        table.contains("singular constraint Jacobian") && table.contains("solved 29 of 31"),
        "{table}"
    );
}

#[test]
fn nlp_bad_input_is_one_line() {
    fails_with(&argv("nlp solve --problem HS999"), "unknown problem");
    fails_with(
        &argv("nlp solve --problem HS28 --method adasketch:sketch=sparse"),
        "unknown sketch",
    );
    fails_with(
        &argv("nlp solve --problem HS28 --method adasketch:beta=0.7"),
        "0 < beta < 0.5",
    );
    fails_with(
        &argv("nlp solve --problem HS28 --method adasketch:lr=1"),
        "unknown key",
    );
    fails_with(
        &argv("nlp suite --method sqp"),
        "unknown constrained method",
    );
    fails_with(
        &argv("nlp solve --problem HS28 --method adasketch:hessian=sparse"),
        "use auto, dense or products",
    );
    fails_with(
        &argv("nlp solve --problem HS28 --method newton:hessian=products"),
        "needs a sketch",
    );
}
