//! `optlab distill`: a short f-distillation of the exact 1-D teacher writes its run directory, one from a
//! `diffusion train` teacher runs, and bad input is one error line.

use crate::common::{argv, fails_with, is_png, ok, tmp};

#[test]
fn distill_writes_a_generator_and_its_report() {
    let root = tmp("distill");
    let out = root.join("js");
    let s: serde_json::Value = serde_json::from_str(&ok(&argv(&format!(
        "distill --target line --divergence js --steps 30 --pretrain 20 --critic-steps 1 --batch-size 64 --out {} \
         --quiet --json",
        out.display()
    ))))
    .unwrap();
    assert_eq!(s["divergence"], "js");
    assert_eq!(s["generator"], "mlp:hidden=128-128,act=relu");
    assert!(s["energy_distance"].as_f64().unwrap().is_finite(), "{s}");
    assert_eq!(s["modes"]["modes"], 2);
    let split = s["modes"]["split_tv"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&split), "{s}");
    for f in ["generator.safetensors", "metrics.jsonl", "summary.json"] {
        assert!(out.join(f).exists(), "{f}");
    }
    assert!(is_png(&out.join("samples.png")) && is_png(&out.join("loss.png")));
    // A trained teacher.
    let teacher = root.join("teacher");
    ok(&argv(&format!(
        "diffusion train --target line --steps 20 --n 100 --model mlp:hidden=16 --out {} --quiet",
        teacher.display()
    )));
    ok(&argv(&format!(
        "distill --teacher {} --steps 5 --pretrain 5 --critic-steps 1 --batch-size 32 --out {} --quiet",
        teacher.display(),
        root.join("from-run").display()
    )));
    let o = root.join("bad");
    let o = o.display();
    for (line, want) in [
        (
            format!("distill --divergence tv --out {o}"),
            "unknown divergence 'tv'",
        ),
        (
            format!("distill --target moons --out {o}"),
            "unknown target 'moons'",
        ),
        (
            format!("distill --target ring:decay=1.5 --out {o}"),
            "decay = 1.5 must lie in (0, 1]",
        ),
        (
            format!("distill --target grid:decay=0.1 --out {o}"),
            "below 1e-6",
        ),
        (
            format!("distill --steps 0 --out {o}"),
            "steps, critic_steps >= 1",
        ),
        (
            format!("distill --batch-size 1 --out {o}"),
            "batch_size >= 2",
        ),
        (format!("distill --gan-weight=-1 --out {o}"), "gan_weight"),
        (
            format!("distill --generator transformer --out {o}"),
            "the generator must be an mlp",
        ),
        (
            format!("distill --generator mlp:act=swish --out {o}"),
            "unknown activation 'swish'",
        ),
        (
            format!("distill --generator-optimizer sgd:lr=-1 --out {o}"),
            "lr",
        ),
        (
            format!(
                "distill --teacher {} --out {o}",
                root.join("missing").display()
            ),
            "cannot read",
        ),
    ] {
        fails_with(&argv(&line), want);
    }
}
