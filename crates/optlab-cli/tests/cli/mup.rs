//! `optlab mup coord-check|lr-sweep`.

use crate::common::{is_png, run, text, tmp};

/// muP's checks from the command line: the coordinate check is flat under muP and grows under SP; the lr sweep
/// writes its table, plots and JSON.
#[test]
fn mup_coord_check_and_lr_sweep() {
    let out = tmp("mup");
    let o = run(&[
        "mup",
        "coord-check",
        "--widths",
        "32,64,128,256",
        "--base",
        "32",
        "--seed",
        "0,1",
        "--out",
        out.join("coord").to_str().unwrap(),
        "--json",
    ]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    let j: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let (sp, mup) = (
        j["max_abs_slope"]["sp"].as_f64().unwrap(),
        j["max_abs_slope"]["mup"].as_f64().unwrap(),
    );
    // SP's logits grow about linearly with width after two Adam steps; muP's activations stay put.
    assert!(sp > 0.6 && mup < 0.15, "slopes SP {sp}, muP {mup}");
    for f in ["coord_sp.png", "coord_mup.png"] {
        assert!(is_png(&out.join("coord").join(f)), "{f}");
    }
    let o = run(&[
        "mup",
        "lr-sweep",
        "--widths",
        "32,64",
        "--base",
        "32",
        "--lrs",
        "0.001,0.01,0.1",
        "--steps",
        "20",
        "--out",
        out.join("sweep").to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stdout.contains("spread of the optimum across widths"),
        "{stdout}"
    );
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("sweep/lr_sweep.json")).unwrap())
            .unwrap();
    assert_eq!(j["records"].as_array().unwrap().len(), 12);
    assert_eq!(j["best"].as_array().unwrap().len(), 4);
    for f in ["lr_sweep_sp.png", "lr_sweep_mup.png"] {
        assert!(is_png(&out.join("sweep").join(f)), "{f}");
    }
    std::fs::remove_dir_all(&out).unwrap();
}
