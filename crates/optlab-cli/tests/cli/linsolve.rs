//! `optlab linsolve`: a tiny DCDM training run writes its run directory and resumes byte for byte after
//! --stop-after; bench compares CG, IC-PCG and DCDM on two grids and writes its plots; bad input is one error line.

use crate::common::{argv, fails_with, is_png, ok, tmp};

fn train_flags(out: &std::path::Path) -> String {
    format!(
        "linsolve train --grid 8 --obstacles 1 --ritz-vectors 16 --samples 24 --steps 30 --batch-size 4 --filters 4 \
         --optimizer adam:lr=3e-3 --checkpoint-every 10 --out {} --quiet",
        out.display()
    )
}

#[test]
fn linsolve_train_resumes_bit_exactly_and_bench_compares_the_methods() {
    let root = tmp("linsolve");
    let full = root.join("full");
    let s: serde_json::Value =
        serde_json::from_str(&ok(&argv(&format!("{} --json", train_flags(&full))))).unwrap();
    assert_eq!(s["steps"], 30);
    assert_eq!(s["check"]["dcdm_iterations"].as_array().unwrap().len(), 5);
    assert!(s["final_loss"].as_f64().unwrap() < 1.0, "{s}");
    for f in [
        "config.toml",
        "metrics.jsonl",
        "model.safetensors",
        "summary.json",
    ] {
        assert!(full.join(f).exists(), "{f}");
    }
    assert!(is_png(&full.join("loss.png")));

    let part = root.join("part");
    ok(&argv(&format!("{} --stop-after 10", train_flags(&part))));
    assert!(!part.join("model.safetensors").exists());
    ok(&argv(&format!(
        "linsolve train --resume {} --quiet",
        part.display()
    )));
    for f in ["metrics.jsonl", "model.safetensors"] {
        assert_eq!(
            std::fs::read(full.join(f)).unwrap(),
            std::fs::read(part.join(f)).unwrap(),
            "{f} differs after the resume"
        );
    }

    let out = root.join("bench");
    let b: serde_json::Value = serde_json::from_str(&ok(&argv(&format!(
        "linsolve bench --model {} --sides 8,16 --obstacles 0,2 --count 3 --max-iters 500 --out {} --quiet --json",
        full.display(),
        out.display()
    ))))
    .unwrap();
    let rows = b["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2 * 2 * 3 * 2, "{b}");
    for r in rows.iter().filter(|r| r["method"] != "dcdm") {
        assert_eq!(r["reached"], 3, "{r}");
    }
    for f in ["residuals-8-0.png", "residuals-16-2.png", "fields.png"] {
        assert!(is_png(&out.join(f)), "{f}");
    }
    // CG alone on an odd grid.
    let t = ok(&argv(
        "linsolve bench --sides 9 --obstacles 0 --count 1 --quiet",
    ));
    assert!(t.contains("ic-pcg") && !t.contains("dcdm"), "{t}");

    // A directory whose config.toml holds other flags.
    let foreign = root.join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("config.toml"), "beta = 0.5\n").unwrap();
    let o = root.join("bad");
    let o = o.display();
    for (line, want) in [
        (
            format!("linsolve train --resume {}", foreign.display()),
            "not the flags of optlab linsolve train (missing field",
        ),
        (format!("linsolve train --grid 7 --out {o}"), "must be even"),
        (
            format!("linsolve train --grid 8 --obstacles 200 --out {o}"),
            "at most one per cell",
        ),
        (
            format!("linsolve train --grid 8 --filters 0 --out {o}"),
            "filters",
        ),
        (
            format!("linsolve train --grid 8 --optimizer adam:lr=-1 --out {o}"),
            "lr",
        ),
        ("linsolve train --grid 8".to_string(), "--out"),
        (
            format!("linsolve train --resume {}", root.join("missing").display()),
            "cannot read",
        ),
        (
            format!(
                "linsolve bench --model {} --sides 9",
                root.join("missing").display()
            ),
            "missing",
        ),
        (
            format!("linsolve bench --model {} --sides 9", full.display()),
            "must be even",
        ),
        ("linsolve bench --sides 8 --tols 2".to_string(), "tolerance"),
        (
            "linsolve bench --sides 8 --rhs smooth".to_string(),
            "available: gaussian, ritz",
        ),
        (
            "linsolve bench --sides 8 --max-iters 0".to_string(),
            "max_iters",
        ),
    ] {
        fails_with(&argv(&line), want);
    }
}
