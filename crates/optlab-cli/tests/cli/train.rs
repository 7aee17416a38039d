//! `optlab train`: the run directory, resume after a real kill, stop-after then resume.

use crate::common::{fails_with, is_png, ok, optlab, run, text, tmp};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

#[test]
fn train_writes_the_run_directory() {
    let out = tmp("train");
    let o = run(&[
        "train",
        "--optimizer",
        "sgd:lr=0.1,momentum=0.9",
        "--schedule",
        "cosine:warmup=10",
        "--epochs",
        "2",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.contains("val accuracy"), "{stdout}");
    for f in [
        "config.toml",
        "metrics.jsonl",
        "summary.json",
        "model.safetensors",
        "optimizer.safetensors",
        "optimizer.json",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    assert!(is_png(&out.join("plots/loss.png")) && is_png(&out.join("plots/accuracy.png")));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["steps"], 46);
    // The resolved config reproduces the run.
    let cfg = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(
        cfg.contains("steps = 46") && cfg.contains("momentum=0.9"),
        "{cfg}"
    );
    std::fs::remove_dir_all(&out).unwrap();
}

fn checkpoint_step(dir: &Path) -> Option<u64> {
    let t = std::fs::read_to_string(dir.join("checkpoints/latest.json")).ok()?;
    serde_json::from_str::<serde_json::Value>(&t).ok()?["step"].as_u64()
}

fn model_bits(p: &Path) -> Vec<u8> {
    // The safetensors header holds only names, shapes and fixed metadata; equal files mean equal tensors.
    std::fs::read(p).unwrap()
}

#[test]
fn killed_run_resumes_bit_identically() {
    let args = |dir: &Path| -> Vec<String> {
        [
            "train",
            "--model",
            "mlp:hidden=256-256",
            "--optimizer",
            "adamw:lr=1e-3",
            "--steps",
            "2500",
            "--checkpoint-every",
            "50",
            "--batch-size",
            "64",
            "--quiet",
            "--out",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([dir.to_str().unwrap().to_string()])
        .collect()
    };
    let full = tmp("full");
    let o = optlab().args(args(&full)).output().unwrap();
    assert!(o.status.success(), "{}", text(&o).1);

    let killed = tmp("killed");
    let mut child = optlab()
        .args(args(&killed))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while checkpoint_step(&killed).unwrap_or(0) < 200 {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no checkpoint appeared"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at = checkpoint_step(&killed).unwrap();
    assert!(
        at < 2500 && !killed.join("summary.json").exists(),
        "the run was not interrupted (checkpoint {at})"
    );
    eprintln!("killed after checkpoint {at}");

    let o = run(&["train", "--resume", killed.to_str().unwrap(), "--quiet"]);
    assert!(o.status.success(), "{}", text(&o).1);
    assert_eq!(
        model_bits(&full.join("model.safetensors")),
        model_bits(&killed.join("model.safetensors"))
    );
    assert_eq!(
        model_bits(&full.join("optimizer.safetensors")),
        model_bits(&killed.join("optimizer.safetensors"))
    );
    std::fs::remove_dir_all(&full).unwrap();
    std::fs::remove_dir_all(&killed).unwrap();
}

#[test]
fn stop_after_then_resume() {
    let out = tmp("stop");
    let o = run(&[
        "train",
        "--steps",
        "30",
        "--stop-after",
        "12",
        "--checkpoint-every",
        "5",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let (stdout, _) = text(&o);
    assert!(o.status.success());
    assert!(
        stdout.contains("stopped after step 12 of 30") && stdout.contains("--resume"),
        "{stdout}"
    );
    let o = run(&["train", "--resume", out.to_str().unwrap(), "--quiet"]);
    assert!(o.status.success(), "{}", text(&o).1);
    assert!(out.join("summary.json").exists());
    fails_with(
        &["train", "--resume", out.to_str().unwrap(), "--epochs", "3"],
        "drop the other flags",
    );
    std::fs::remove_dir_all(&out).unwrap();
}

/// SSO (P34) in the trainer: a run stopped after 4 of 8 outer steps and resumed ends with the same model bits as
/// the run done in one go; SSO with an option it cannot honour is refused in one line.
#[test]
fn sso_run_resumes_bit_identically() {
    let common =
        "train --data digits-binary --model mlp:hidden=8 --batch-size 200 --steps 8 --quiet";
    for (k, extra) in [
        "--optimizer sgd:lr=0.1 --sso inner=3,eta=0.5",
        "--optimizer adam:lr=0.01 --sso inner=2,eta=0.5,solver=optimizer",
    ]
    .iter()
    .enumerate()
    {
        let base = format!("{common} {extra}");
        let full = tmp(&format!("sso-full-{k}"));
        let part = tmp(&format!("sso-part-{k}"));
        ok(&crate::common::argv(&format!(
            "{base} --out {}",
            full.display()
        )));
        ok(&crate::common::argv(&format!(
            "{base} --stop-after 4 --checkpoint-every 2 --out {}",
            part.display()
        )));
        ok(&["train", "--resume", part.to_str().unwrap(), "--quiet"]);
        let a = std::fs::read(full.join("model.safetensors")).unwrap();
        let b = std::fs::read(part.join("model.safetensors")).unwrap();
        assert!(
            a == b,
            "{extra}: the resumed SSO run differs from the uninterrupted one"
        );
        let config = std::fs::read_to_string(full.join("config.toml")).unwrap();
        assert!(config.contains("sso = \"inner="), "{config}");
        std::fs::remove_dir_all(&full).unwrap();
        std::fs::remove_dir_all(&part).unwrap();
    }
    let base = format!("{common} --sso inner=3,eta=0.5");
    fails_with(
        &crate::common::argv(&format!(
            "{base} --clip-grad-norm 1 --out {}",
            tmp("sso-clip").display()
        )),
        "sso",
    );
}
