//! `optlab demo`: the report with its table and plots.

use crate::common::{is_png, run, text, tmp};

#[test]
fn demo_writes_a_report_with_table_and_plots() {
    let out = tmp("demo");
    let o = run(&[
        "demo",
        "--out",
        out.to_str().unwrap(),
        "--epochs",
        "3",
        "--quiet",
    ]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.contains("report:"), "{stdout}");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("| optimizer | final train loss | val loss | val accuracy"),
        "{md}"
    );
    for name in [
        "sgd", "adam:", "adamw", "adagrad", "rmsprop", "lion", "diffgrad", "adamp", "sgdp", "nsgd",
    ] {
        assert!(
            md.contains(&format!("`{name}")),
            "{name} missing from the report"
        );
    }
    assert!(is_png(&out.join("loss.png")) && is_png(&out.join("accuracy.png")));
    std::fs::remove_dir_all(&out).unwrap();
}
