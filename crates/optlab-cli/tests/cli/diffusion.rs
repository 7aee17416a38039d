//! `optlab diffusion`: a short training run writes its run directory and summary, its network samples and
//! reports its score error, the exact score samples the 25-mode grid, and bad input is one error line.

use crate::common::{argv, fails_with, is_png, ok, tmp};

#[test]
fn diffusion_train_sample_and_score_error() {
    let root = tmp("diffusion");
    let run = root.join("ring");
    let s: serde_json::Value = serde_json::from_str(&ok(&argv(&format!(
        "diffusion train --target ring --steps 300 --n 500 --model mlp:hidden=64-64,act=gelu --optimizer adam:lr=2e-3 \
         --out {} --quiet --json",
        run.display()
    ))))
    .unwrap();
    assert_eq!(s["steps"], 300);
    let errors = s["score_error"].as_array().unwrap();
    assert_eq!(errors.len(), 6);
    // The late-time score (nearly Gaussian) is learnt first.
    let late = &errors[4];
    assert!(
        late["error"].as_f64().unwrap() < 0.2 * late["exact_norm2"].as_f64().unwrap(),
        "{s}"
    );
    assert!(
        s["samples"]["modes"]["recalled"].as_u64().unwrap() >= 6,
        "{s}"
    );
    for f in [
        "loss.png",
        "samples.png",
        "model.safetensors",
        "metrics.jsonl",
        "config.toml",
    ] {
        assert!(run.join(f).exists(), "{f}");
    }
    assert!(is_png(&run.join("samples.png")));
    let r = run.display();
    let e: serde_json::Value = serde_json::from_str(&ok(&argv(&format!(
        "diffusion score-error {r} --n 200 --json"
    ))))
    .unwrap();
    assert_eq!(e["score_error"].as_array().unwrap().len(), 6);
    let png = root.join("em.png");
    let m: serde_json::Value = serde_json::from_str(&ok(&argv(&format!(
        "diffusion sample {r} --sampler em --steps 200 --n 300 --png {} --json",
        png.display()
    ))))
    .unwrap();
    assert!(
        m["samples_per_second"].as_f64().unwrap() > 0.0 && is_png(&png),
        "{m}"
    );
    // The exact score of the grid: every mode, nearly every sample on a mode.
    let g: serde_json::Value = serde_json::from_str(&ok(&argv(
        "diffusion sample --target grid --sampler heun --steps 60 --n 1000 --json",
    )))
    .unwrap();
    assert_eq!(g["modes"]["recalled"], 25, "{g}");
    assert!(g["modes"]["on_mode"].as_f64().unwrap() > 0.95, "{g}");

    let o = root.join("bad");
    let o = o.display();
    for (line, want) in [
        (
            format!("diffusion train --target moons --out {o}"),
            "unknown target 'moons'",
        ),
        (
            format!("diffusion train --target ring:modes=0 --out {o}"),
            "modes = 0",
        ),
        (
            format!("diffusion train --process vp:beta_max=0 --out {o}"),
            "beta_min < beta_max",
        ),
        (
            format!("diffusion train --process sde --out {o}"),
            "unknown process 'sde'",
        ),
        (format!("diffusion train --steps 0 --out {o}"), "at least 1"),
        (
            format!("diffusion train --n 0 --out {o}"),
            "n must be at least 1",
        ),
        (
            format!("diffusion train --optimizer adam:lr=nan --out {o}"),
            "lr",
        ),
        (
            "diffusion sample --target ring --sampler rk4".to_string(),
            "unknown sampler 'rk4'",
        ),
        (
            "diffusion sample --target ring --steps 0".to_string(),
            "at least one step",
        ),
        (
            "diffusion sample".to_string(),
            "a run directory or --target",
        ),
        (
            format!("diffusion sample {}", root.join("missing").display()),
            "cannot read",
        ),
        (
            format!("diffusion score-error {}", root.display()),
            "cannot read",
        ),
    ] {
        fails_with(&argv(&line), want);
    }
}

#[test]
fn diffusion_ntk_reports_the_kernel_and_the_networks() {
    let out = tmp("diffusion-ntk");
    let s: serde_json::Value = serde_json::from_str(&ok(&argv(&format!(
        "diffusion ntk --n 32 --widths 16,256 --steps 200 --test-points 100 --holdout 100 --out {} --quiet --json",
        out.display()
    ))))
    .unwrap();
    let curves = s["curves"].as_array().unwrap();
    assert_eq!(curves.len(), 3);
    assert_eq!(curves[0]["name"], "kernel");
    let k = &curves[0];
    assert!(
        k["best_error"].as_f64().unwrap() < k["score_error"][0].as_f64().unwrap(),
        "{k}"
    );
    // The complexity rule's stop, with the error there on every curve (within the networks' 200 steps).
    let rule = s["rule_step"].as_f64().unwrap();
    assert!((0.0..=200.0).contains(&rule), "{s}");
    assert!(s["noise_sd"].as_f64().unwrap() > 0.0, "{s}");
    assert!(
        curves.iter().all(|c| c["rule_error"].as_f64().is_some()),
        "{s}"
    );
    for f in ["summary.json", "score_error.png", "gap.png"] {
        assert!(out.join(f).exists(), "{f}");
    }
    let o = out.join("bad");
    let o = o.display();
    for (line, want) in [
        (
            format!("diffusion ntk --widths 15 --out {o}"),
            "must be even",
        ),
        (
            format!("diffusion ntk --widths x --out {o}"),
            "'x' is not a width",
        ),
        (format!("diffusion ntk --time 0 --out {o}"), "0 < time <= 1"),
        (
            format!("diffusion ntk --time 5e-324 --widths 16 --out {o}"),
            "overflow at time 5e-324",
        ),
        (
            format!("diffusion ntk --eta-factor 2 --out {o}"),
            "eta_factor < 2",
        ),
        (format!("diffusion ntk --n 1 --out {o}"), "n >= 2"),
        (format!("diffusion ntk --n 10000000 --out {o}"), "memory"),
    ] {
        fails_with(&argv(&line), want);
    }
}
