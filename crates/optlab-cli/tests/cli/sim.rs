//! `optlab sim` (P20).

use crate::common::{argv, fails_with, is_png, ok, tmp};

#[test]
fn sim_tactile_identify_and_optimize_write_their_reports() {
    let d = tmp("sim_tactile");
    let out = d.to_str().unwrap();
    let v: serde_json::Value = serde_json::from_str(&ok(&argv(&format!(
        "sim tactile identify --iterations 4 --steps 600 --out {out} --json"
    ))))
    .unwrap();
    assert_eq!(v["experiment"], "identify");
    let start = v["history"]["gradient"][0]["loss"].as_f64().unwrap();
    let cma = v["cma_es"]["loss"].as_f64().unwrap();
    assert!(start > 0.0 && cma < start, "{v}");
    assert_eq!(v["history"]["gradient"].as_array().unwrap().len(), 5);
    assert_eq!(v["gradient"]["simulations"], 12);
    assert!(v["cma_es"]["simulations"].as_u64().unwrap() <= 12);
    assert!(is_png(&d.join("convergence.png")));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("summary.json")).unwrap()).unwrap();
    assert_eq!(saved["truth"], v["truth"]);

    let v: serde_json::Value = serde_json::from_str(&ok(&argv(&format!(
        "sim tactile optimize --iterations 3 --steps 600 --knots 4 --out {out} --json"
    ))))
    .unwrap();
    assert_eq!(v["target_knots"].as_array().unwrap().len(), 8);
    assert_eq!(v["gradient"]["knots"].as_array().unwrap().len(), 8);
    assert!(v["gradient"]["loss"].as_f64().unwrap().is_finite());
    for f in ["convergence.png", "paths.png"] {
        assert!(is_png(&d.join(f)), "{f}");
    }
    // The text line names both methods.
    let line = ok(&argv(
        "sim tactile identify --iterations 2 --steps 300 --quiet",
    ));
    assert!(
        line.contains("gradient descent") && line.contains("CMA-ES"),
        "{line}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn sim_hertz_follows_the_line_contact() {
    let d = tmp("sim_hertz");
    let out = d.to_str().unwrap();
    let v: serde_json::Value = serde_json::from_str(&ok(&argv(&format!(
        "sim hertz --spacing 0.02 --depths 0.006,0.01 --out {out} --json"
    ))))
    .unwrap();
    assert!(
        v["max_relative_error"]["indentation"].as_f64().unwrap() < 0.02,
        "{v}"
    );
    assert_eq!(v["points"].as_array().unwrap().len(), 2);
    assert!(is_png(&d.join("force_indentation.png")));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn sim_bad_input_is_one_line() {
    fails_with(
        &argv("sim tactile identify --material rubber"),
        "unknown material",
    );
    fails_with(&argv("sim tactile identify --cells 16"), "--cells");
    fails_with(
        &argv("sim tactile identify --truth 0,0.5"),
        "Young's modulus",
    );
    fails_with(
        &argv("sim tactile identify --start 1,0 --iterations 1 --steps 10"),
        "must be > 0",
    );
    fails_with(
        &argv("sim tactile identify --sigma 0 --iterations 1 --steps 10"),
        "sigma",
    );
    fails_with(&argv("sim tactile optimize --knots 2"), "knots");
    fails_with(&argv("sim tactile optimize --target 0.5,0"), "press depths");
    fails_with(
        &argv("sim tactile identify --dt 1 --steps 10"),
        "below 1/damping",
    );
    fails_with(&argv("sim hertz --spacing 1e-9"), "coarser spacing");
    fails_with(&argv("sim hertz --depths 0.7"), "depths");
}
