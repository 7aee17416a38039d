//! `optlab optimize`: trajectories and the contour plot.

use crate::common::{fails_with, is_png, run, text, tmp};

#[test]
fn optimize_writes_trajectories_and_a_contour_plot() {
    let d = tmp("optimize");
    std::fs::create_dir_all(&d).unwrap();
    let (json, png) = (d.join("t.json"), d.join("t.png"));
    let o = run(&[
        "optimize",
        "--function",
        "rosenbrock",
        "--init=-1.5,2",
        "--optimizer",
        "adam:lr=0.05",
        "--optimizer",
        "lion:lr=0.01",
        "--steps",
        "600",
        "--out",
        json.to_str().unwrap(),
        "--plot",
        png.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let traj = v["trajectory"].as_array().unwrap();
    assert_eq!(traj.len(), 601);
    assert_eq!(traj[0], serde_json::json!([-1.5, 2.0]));
    assert_eq!(v["values"].as_array().unwrap().len(), 601);
    assert_eq!(v["runs"].as_array().unwrap().len(), 2);
    let f_end = v["values"][600].as_f64().unwrap();
    assert!(
        f_end < 0.1 * v["values"][0].as_f64().unwrap(),
        "adam should make progress: {f_end}"
    );
    assert!(is_png(&png));
    fails_with(
        &[
            "optimize",
            "--function",
            "himmelblau",
            "--init=0,0",
            "--optimizer",
            "sgd",
            "--out",
            json.to_str().unwrap(),
        ],
        "unknown function 'himmelblau'",
    );
    fails_with(
        &[
            "optimize",
            "--function",
            "beale",
            "--init=0,0,0",
            "--optimizer",
            "sgd",
            "--out",
            json.to_str().unwrap(),
        ],
        "exactly 2",
    );
    fails_with(
        &[
            "optimize",
            "--function",
            "quadratic",
            "--init=1,1",
            "--optimizer",
            "sgd:lr=5",
            "--steps",
            "2000",
            "--out",
            json.to_str().unwrap(),
        ],
        "diverged",
    );
    std::fs::remove_dir_all(&d).unwrap();
}
