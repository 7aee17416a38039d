//! End-to-end tests of the `optlab` binary: the demo report, train/resume after a real kill, help texts, and
//! one clear error (non-zero exit, no panic) for each kind of bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn optlab() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_optlab"));
    c.env_remove("CANDLE_GRAD_DO_NOT_DETACH"); // the binary sets it itself
    c
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("optlab-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn run(args: &[&str]) -> Output {
    optlab().args(args).output().expect("spawn optlab")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

fn is_png(p: &Path) -> bool {
    std::fs::read(p)
        .map(|b| b.len() > 1000 && b.starts_with(b"\x89PNG\r\n\x1a\n"))
        .unwrap_or(false)
}

/// A clean failure: non-zero exit, one `error:` line, no panic.
fn fails_with(args: &[&str], want: &str) {
    let o = run(args);
    let (_, err) = text(&o);
    assert!(!o.status.success(), "{args:?} should fail");
    assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: expected one error line, got {err}"
    );
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(want),
        "{args:?}: {err}"
    );
}

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

#[test]
fn curvature_of_a_function_and_of_a_run() {
    let o = run(&[
        "curvature",
        "--function",
        "rosenbrock",
        "--at=1,1",
        "--lr",
        "0.001",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    let v: serde_json::Value = serde_json::from_str(text(&o).0.trim()).unwrap();
    // H = [[802, -400], [-400, 200]]: eigenvalues 1001.6006..., 0.3994; trace 1002.
    assert!(
        (v["lambda_max"].as_f64().unwrap() - 1_001.600_639_232_512).abs() < 1e-6,
        "{v}"
    );
    assert!((v["trace"].as_f64().unwrap() - 1002.0).abs() < 1e-9);
    assert_eq!(v["gd_stable"], true);
    let o = run(&[
        "curvature",
        "--function",
        "rosenbrock",
        "--at=1,1",
        "--lr",
        "0.01",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(text(&o).0.trim()).unwrap();
    assert_eq!(v["gd_stable"], false);

    let d = tmp("curv");
    let o = run(&[
        "train",
        "--model",
        "mlp:hidden=16",
        "--optimizer",
        "sgd:lr=0.1",
        "--steps",
        "50",
        "--out",
        d.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    let png = d.join("slq.png");
    let o = run(&[
        "curvature",
        "--run",
        d.to_str().unwrap(),
        "--batch",
        "64",
        "--probes",
        "20",
        "--slq-plot",
        png.to_str().unwrap(),
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains("lambda_max") && out.contains("GD  criterion"),
        "{out}"
    );
    assert!(is_png(&png));
    fails_with(
        &["curvature", "--function", "beale", "--at=1,2,3"],
        "exactly 2",
    );
    fails_with(&["curvature", "--run", "/nonexistent-run"], "config.toml");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn hparams_and_schedule_plot() {
    let o = run(&[
        "hparams",
        "--params",
        "1e9",
        "--tokens",
        "1e11",
        "--seq-len",
        "2048",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    let v: serde_json::Value = serde_json::from_str(text(&o).0.trim()).unwrap();
    let lr = v["lr"].as_f64().unwrap();
    assert!((lr - 1.79 * 1e9f64.powf(-0.713) * 1e11f64.powf(0.307)).abs() < 1e-12);
    assert_eq!(v["batch_sequences"], serde_json::json!(541.0));
    let o = run(&[
        "hparams",
        "--scale-batch",
        "--lr",
        "0.1",
        "--from",
        "32",
        "--to",
        "128",
        "--optimizer",
        "sgd",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(text(&o).0.trim()).unwrap();
    assert!((v["scaled_lr"].as_f64().unwrap() - 0.4).abs() < 1e-15);
    fails_with(
        &["hparams", "--params=-1", "--tokens", "1e9"],
        "params=-1 must be a positive number",
    );
    fails_with(
        &[
            "hparams",
            "--scale-batch",
            "--lr",
            "0.1",
            "--from",
            "0",
            "--to",
            "8",
        ],
        "batch sizes >= 1",
    );
    let d = tmp("sched");
    std::fs::create_dir_all(&d).unwrap();
    let png = d.join("lr.png");
    let o = run(&[
        "schedule",
        "plot",
        "wsd:warmup=10,decay_frac=0.5",
        "cosine",
        "--steps",
        "100",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    assert!(is_png(&png));
    let csv = std::fs::read_to_string(d.join("lr.csv")).unwrap();
    assert_eq!(csv.lines().count(), 101);
    assert!(
        csv.lines().nth(51).unwrap().starts_with("50,1,"),
        "{}",
        csv.lines().nth(51).unwrap()
    );
    fails_with(
        &[
            "schedule",
            "plot",
            "cosin",
            "--steps",
            "10",
            "--out",
            png.to_str().unwrap(),
        ],
        "unknown schedule 'cosin'",
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn bad_input_gives_one_clear_error() {
    let d = tmp("bad");
    std::fs::create_dir_all(&d).unwrap();
    let csv = d.join("bad.csv");
    std::fs::write(&csv, "a,b,label\n1,2,0\n3,oops,1\n").unwrap();
    let trunc = d.join("trunc.safetensors");
    std::fs::write(&trunc, b"\x10\x00\x00\x00\x00\x00\x00\x00{\"x\":").unwrap();
    let toml = d.join("run.toml");
    std::fs::write(&toml, "epochs = 2\nbatch_sise = 3\n").unwrap();
    let out = d.join("o");
    let o = out.to_str().unwrap();
    fails_with(
        &["train", "--optimizer", "adamx", "--out", o],
        "unknown optimizer 'adamx'; available: sgd, adam, adamw",
    );
    fails_with(
        &["train", "--optimizer", "sgd:lr=-0.1", "--out", o],
        "lr=-0.1 is invalid; it must be >= 0",
    );
    fails_with(
        &["train", "--optimizer", "adam:beta2=1.5", "--out", o],
        "beta2=1.5 is invalid",
    );
    fails_with(
        &[
            "train",
            "--optimizer",
            "sgd:lr=0.1,momentun=0.9",
            "--out",
            o,
        ],
        "unknown key 'momentun'",
    );
    fails_with(
        &["train", "--schedule", "cosin", "--out", o],
        "unknown schedule 'cosin'",
    );
    fails_with(
        &[
            "train",
            "--data",
            &format!("csv:path={}", csv.display()),
            "--out",
            o,
        ],
        "line 3, column 'b': 'oops' is not a number",
    );
    fails_with(
        &["train", "--data", "csv:path=/nonexistent.csv", "--out", o],
        "/nonexistent.csv",
    );
    fails_with(
        &[
            "train",
            "--data",
            &format!("safetensors:path={}", trunc.display()),
            "--out",
            o,
        ],
        "not a valid safetensors file",
    );
    fails_with(
        &["train", "--config", toml.to_str().unwrap(), "--out", o],
        "batch_sise",
    );
    fails_with(
        &["train", "--model", "cnn", "--data", "moons", "--out", o],
        "not a square image",
    );
    fails_with(
        &["train", "--batch-size", "0", "--out", o],
        "batch_size must be at least 1",
    );
    fails_with(&["train", "--resume", d.to_str().unwrap()], "config.toml");
    // Normalization layers: a group count that does not divide the channels; zero-width layers.
    fails_with(
        &[
            "train",
            "--model",
            "cnn:channels=4-8,norm=gn+ws,groups=3",
            "--out",
            o,
        ],
        "groups=3 must divide every channel count [4, 8]",
    );
    fails_with(
        &[
            "train",
            "--model",
            "resnet:channels=4-8,norm=bcn+ws,groups=3",
            "--out",
            o,
        ],
        "groups=3 must divide",
    );
    fails_with(
        &["train", "--model", "cnn:channels=0-8", "--out", o],
        "positive channel counts",
    );
    fails_with(
        &["train", "--model", "mlp:hidden=64-0", "--out", o],
        "hidden widths must be positive",
    );
    fails_with(
        &[
            "train",
            "--task",
            "charlm",
            "--model",
            "transformer:dim=0",
            "--out",
            o,
        ],
        "must be positive",
    );
    // The language-model task: a transformer needs a text, a text needs the task; bad model specs.
    fails_with(
        &["train", "--model", "transformer", "--out", o],
        "--task charlm",
    );
    fails_with(
        &["train", "--task", "charlm", "--data", "digits", "--out", o],
        "task=charlm trains a transformer",
    );
    fails_with(
        &[
            "train",
            "--task",
            "charlm",
            "--model",
            "transformer:dim=30,heads=4",
            "--out",
            o,
        ],
        "heads=4 must divide dim=30",
    );
    fails_with(
        &["train", "--task", "chat", "--out", o],
        "unknown task 'chat'; available: supervised, charlm",
    );
    fails_with(
        &[
            "train",
            "--task",
            "charlm",
            "--data",
            "text:path=/nonexistent.txt",
            "--out",
            o,
        ],
        "/nonexistent.txt",
    );
    fails_with(
        &["train", "--model", "mlp:param=mup,base=0", "--out", o],
        "positive base width",
    );
    fails_with(
        &[
            "train",
            "--model",
            "mlp:param=mup",
            "--optimizer",
            "nsgd",
            "--out",
            o,
        ],
        "mup_rule",
    );
    fails_with(
        &["mup", "lr-sweep", "--model", "cnn", "--out", o],
        "available for mlp and transformer",
    );
    fails_with(
        &["mup", "coord-check", "--widths", "0", "--out", o],
        "positive width",
    );
    std::fs::remove_dir_all(&d).unwrap();
}

/// The character-level language model end to end: `train --task charlm` writes a run directory whose accuracy is
/// per character, `compare` puts LayerNorm and PowerNorm side by side over two seeds.
#[test]
fn charlm_train_and_compare() {
    let out = tmp("charlm");
    let o = run(&[
        "train",
        "--task",
        "charlm",
        "--model",
        "transformer:layers=1,dim=16,heads=2,mlp=2,norm=pn,pn_warmup=5",
        "--data",
        "text:context=16",
        "--steps",
        "12",
        "--schedule",
        "constant",
        "--eval-every",
        "6",
        "--batch-size",
        "8",
        "--out",
        out.join("run").to_str().unwrap(),
        "--quiet",
    ]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.contains("val accuracy"), "{stdout}");
    let cfg = std::fs::read_to_string(out.join("run/config.toml")).unwrap();
    assert!(
        cfg.contains("task = \"charlm\"") && cfg.contains("norm=pn"),
        "{cfg}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run/summary.json")).unwrap())
            .unwrap();
    let acc = summary["val_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc), "{acc}");
    // Uniform guessing over 62 characters has loss ln 62 = 4.13; twelve steps already do better.
    assert!(summary["val_loss"].as_f64().unwrap() < 4.13, "{summary}");
    let st = safetensors_keys(&out.join("run/model.safetensors"));
    for k in [
        "0.tok.weight",
        "1.norm1.running_phi",
        "1.norm1.ema_gz",
        "1.norm1.iters",
        "3.weight",
    ] {
        assert!(st.iter().any(|s| s == k), "{k} missing from {st:?}");
    }
    // One right-padded line per example, with BatchNorm (padding out of its statistics and of the loss).
    let o = run(&[
        "train",
        "--task",
        "charlm",
        "--model",
        "transformer:layers=1,dim=16,heads=2,mlp=2,norm=bn",
        "--data",
        "text:context=32,unit=line",
        "--steps",
        "12",
        "--schedule",
        "constant",
        "--batch-size",
        "8",
        "--out",
        out.join("lines").to_str().unwrap(),
        "--quiet",
    ]);
    let (_, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("lines/summary.json")).unwrap())
            .unwrap();
    assert!(summary["val_loss"].as_f64().unwrap() < 3.9, "{summary}");
    let cmp = out.join("cmp");
    let o = run(&[
        "compare",
        "--task",
        "charlm",
        "--model",
        "transformer:layers=1,dim=16,heads=2,mlp=2,norm=ln",
        "--model",
        "transformer:layers=1,dim=16,heads=2,mlp=2,norm=pn",
        "--data",
        "text:context=16",
        "--steps",
        "20",
        "--schedule",
        "constant",
        "--eval-every",
        "10",
        "--batch-size",
        "8",
        "--seed",
        "0,1",
        "--out",
        cmp.to_str().unwrap(),
        "--quiet",
    ]);
    let (_, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    let md = std::fs::read_to_string(cmp.join("report.md")).unwrap();
    assert!(md.contains("| model | final train loss | val loss"), "{md}");
    assert!(md.contains(" ± "), "mean ± std over the seeds: {md}");
    assert!(md.contains("norm=pn` seed 1"), "{md}");
    for f in ["loss.png", "val_loss.png", "accuracy.png"] {
        assert!(is_png(&cmp.join(f)), "{f}");
    }
    std::fs::remove_dir_all(&out).unwrap();
}

fn safetensors_keys(p: &Path) -> Vec<String> {
    let b = std::fs::read(p).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let h: serde_json::Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
    h.as_object().unwrap().keys().cloned().collect()
}

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

#[test]
fn help_explains_flags_with_examples() {
    for (args, want) in [
        (vec!["--help"], "optlab demo"),
        (vec!["train", "--help"], "optlab train --resume"),
        (vec!["demo", "--help"], "optlab demo --out"),
        (vec!["compare", "--help"], "optlab compare --optimizer"),
        (vec!["bench", "train", "--help"], "--no-torch"),
        (
            vec!["mup", "coord-check", "--help"],
            "optlab mup coord-check",
        ),
        (vec!["mup", "lr-sweep", "--help"], "optlab mup lr-sweep"),
        (vec!["train", "--help"], "--task charlm"),
    ] {
        let o = run(&args);
        let (out, _) = text(&o);
        assert!(o.status.success() && out.contains(want), "{args:?}: {out}");
    }
}

/// `scaling fit` on curves of a known law (P38), `scaling predict` of a held-out schedule, `scaling check` of real
/// runs, and their errors.
#[test]
fn scaling_fit_predict_check() {
    use optlab::anneal_law::{schedule_lrs, AnnealLaw};
    let d = tmp("scaling");
    std::fs::create_dir_all(&d).unwrap();
    let truth = AnnealLaw {
        l0: 1.0,
        a: 0.3,
        alpha: 0.6,
        c: 0.4,
        lambda: 0.999,
    };
    let mut curve_args = Vec::new();
    for (name, spec) in [("constant", "constant"), ("cosine", "cosine:warmup=50")] {
        let lrs = schedule_lrs(spec, 3000, 1e-3).unwrap();
        let loss = truth.curve(&lrs);
        let mut csv = String::from("step,lr,loss\n");
        for (k, (lr, l)) in lrs.iter().zip(&loss).enumerate() {
            // Losses every 10 steps only: the others are left empty.
            let l = if (k + 1) % 10 == 0 {
                format!("{l}")
            } else {
                String::new()
            };
            csv.push_str(&format!("{},{lr},{l}\n", k + 1));
        }
        let p = d.join(format!("{name}.csv"));
        std::fs::write(&p, csv).unwrap();
        curve_args.push("--curve".to_string());
        curve_args.push(p.display().to_string());
    }
    let fit = d.join("fit.json");
    let mut args: Vec<String> = vec!["scaling".into(), "fit".into()];
    args.extend(curve_args);
    args.extend(["--out".into(), fit.display().to_string()]);
    let o = optlab().args(&args).output().unwrap();
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(is_png(&fit.with_extension("png")));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&fit).unwrap()).unwrap();
    for (k, want) in [("l0", 1.0), ("a", 0.3), ("alpha", 0.6), ("c", 0.4)] {
        let got = v["law"][k].as_f64().unwrap();
        assert!((got - want).abs() / want < 1e-3, "{k}: {got}");
    }
    assert_eq!(v["peak_lr"].as_f64(), Some(1e-3));
    let pred = d.join("pred.csv");
    let o = run(&[
        "scaling",
        "predict",
        "--params",
        fit.to_str().unwrap(),
        "--schedule",
        "linear:warmup=50",
        "--schedule",
        "constant",
        "--steps",
        "3000",
        "--out",
        pred.to_str().unwrap(),
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains("1. linear:warmup=50") && out.contains("2. constant"),
        "{out}"
    );
    let o = run(&[
        "scaling",
        "predict",
        "--params",
        fit.to_str().unwrap(),
        "--schedule",
        "constant",
        "--steps",
        "3000",
        "--out",
        d.join("pred2.csv").to_str().unwrap(),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["final_loss"][0]["schedule"], "constant");
    let csv = std::fs::read_to_string(&pred).unwrap();
    let last: f64 = csv
        .lines()
        .last()
        .unwrap()
        .split(',')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let want = *truth
        .curve(&schedule_lrs("linear:warmup=50", 3000, 1e-3).unwrap())
        .last()
        .unwrap();
    assert!((last - want).abs() / want < 1e-3, "{last} vs {want}");
    assert!(is_png(&pred.with_extension("png")));
    // Two short real runs, checked against the law (the numbers are not the point: the run loading is).
    let mut run_args = vec![
        "scaling".to_string(),
        "check".into(),
        "--params".into(),
        fit.display().to_string(),
    ];
    for s in ["constant", "linear"] {
        let r = d.join(s);
        let o = run(&[
            "train",
            "--steps",
            "60",
            "--schedule",
            s,
            "--quiet",
            "--out",
            r.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{:?}", text(&o));
        run_args.extend(["--run".into(), r.display().to_string()]);
    }
    run_args.extend(["--bin".into(), "5".into()]);
    let o = optlab().args(&run_args).output().unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains("| MAPE %") && out.contains("ranking by final loss"),
        "{out}"
    );
    run_args.push("--json".into());
    let o = optlab().args(&run_args).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["runs"].as_array().unwrap().len(), 2);
    assert_eq!(v["runs"][0]["points"].as_u64(), Some(12));
    // Errors.
    let p = fit.to_str().unwrap();
    fails_with(
        &[
            "scaling",
            "predict",
            "--params",
            p,
            "--schedule",
            "cosin",
            "--steps",
            "10",
            "--out",
            "/tmp/x.csv",
        ],
        "available: constant",
    );
    fails_with(
        &[
            "scaling",
            "predict",
            "--params",
            p,
            "--schedule",
            "linear",
            "--steps",
            "10",
            "--lr=-1",
            "--out",
            "/tmp/x.csv",
        ],
        "must be positive",
    );
    fails_with(
        &["scaling", "fit", "--out", "/tmp/x.json"],
        "--run DIR or --curve",
    );
    let bad = d.join("bad.csv");
    std::fs::write(&bad, "step,lr,loss\n1,0.1,1\n3,0.1,1\n").unwrap();
    fails_with(
        &[
            "scaling",
            "fit",
            "--curve",
            bad.to_str().unwrap(),
            "--out",
            "/tmp/x.json",
        ],
        "step 3 after step 1",
    );
    fails_with(
        &[
            "scaling",
            "predict",
            "--params",
            bad.to_str().unwrap(),
            "--schedule",
            "linear",
            "--steps",
            "10",
            "--out",
            "/tmp/x.csv",
        ],
        "not a law written by",
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn cbo_reports_success_and_rejects_bad_settings() {
    let args = [
        "cbo",
        "--function",
        "rastrigin",
        "--dim",
        "3",
        "--particles",
        "30",
        "--runs",
        "8",
        "--noise",
        "anisotropic",
        "--sigma",
        "10.1",
        "--alpha",
        "30",
        "--iters",
        "3000",
        "--init-lo=-3",
        "--init-hi",
        "3",
        "--json",
    ];
    let o = run(&args);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["runs"], 8);
    assert_eq!(v["evaluations_per_run"], 30.0 * 3000.0 + 1.0);
    assert!(v["success_rate"].as_f64().unwrap() >= 0.75, "{v}");
    // Same seed, same result.
    let again: serde_json::Value = serde_json::from_slice(&run(&args).stdout).unwrap();
    assert_eq!(again["final_points"], v["final_points"]);
    fails_with(
        &["cbo", "--function", "rastrign", "--dim", "3"],
        "available: rosenbrock",
    );
    fails_with(&["cbo", "--function", "beale", "--dim", "3"], "exactly 2");
    fails_with(
        &[
            "cbo",
            "--function",
            "ackley",
            "--dim",
            "3",
            "--particles",
            "1",
        ],
        "particles=1",
    );
    fails_with(
        &[
            "cbo",
            "--function",
            "ackley",
            "--dim",
            "3",
            "--noise",
            "pink",
        ],
        "available: isotropic",
    );
    fails_with(
        &[
            "cbo",
            "--function",
            "ackley",
            "--dim",
            "3",
            "--method",
            "pso",
        ],
        "available: cbo, hopping",
    );
    fails_with(
        &["cbo", "--function", "ackley", "--dim", "3", "--dt=-1"],
        "dt=-1",
    );
}

#[test]
fn convex_relu_train_writes_a_loadable_network() {
    let d = tmp("convex-relu");
    std::fs::create_dir_all(&d).unwrap();
    let csv = d.join("data.csv");
    let mut body = String::from("a,b,y\n");
    for k in 0..80 {
        let (a, b) = ((k as f64 * 0.37).sin(), (k as f64 * 0.91).cos());
        body.push_str(&format!("{a},{b},{}\n", (a - b).max(0.0)));
    }
    std::fs::write(&csv, body).unwrap();
    let out = d.join("run");
    let o = run(&[
        "convex-relu",
        "train",
        csv.to_str().unwrap(),
        "--patterns",
        "20",
        "--beta",
        "1e-3",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    let (so, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&so).unwrap();
    let (obj, loss) = (
        v["objective"].as_f64().unwrap(),
        v["network_loss"].as_f64().unwrap(),
    );
    assert!((obj - loss).abs() < 1e-3 * obj, "{v}");
    assert!(v["train_mse"].as_f64().unwrap() < 1e-3, "{v}");
    assert!(out.join("model.safetensors").exists() && out.join("solution.json").exists());
    std::fs::write(&csv, "a,b,y\n1,x,2\n").unwrap();
    let c = csv.to_str().unwrap();
    let o_dir = out.to_str().unwrap();
    fails_with(&["convex-relu", "train", c, "--out", o_dir], "data.csv");
    std::fs::write(&csv, "a,b,y\n1,NaN,2\n").unwrap();
    fails_with(&["convex-relu", "train", c, "--out", o_dir], "data.csv");
    std::fs::write(&csv, "a,y\n1,2\n2,3\n").unwrap();
    fails_with(
        &["convex-relu", "train", c, "--beta=-1", "--out", o_dir],
        "beta=-1",
    );
    fails_with(
        &["convex-relu", "train", c, "--patterns", "0", "--out", o_dir],
        "--patterns",
    );
    std::fs::remove_dir_all(&d).unwrap();
}

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
    let o = run(&[
        "dag", "simulate", "--graph", "er2", "--d", "8", "--n", "500", "--noise", "nv", "--seed",
        "3", "--out", ds, "--truth", ts,
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = run(&[
        "dag",
        "fit",
        ds,
        "--variant",
        "nv",
        "--out",
        ws,
        "--truth",
        ts,
        "--json",
    ]);
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
        fails_with(&["dag", "fit", b, "--out", ws], want);
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

#[test]
fn lipschitz_naive_bound_and_bad_models() {
    use candle_core::{Device, Tensor};
    let d = tmp("lipschitz");
    std::fs::create_dir_all(&d).unwrap();
    let p = d.join("m.safetensors");
    let t = |v: Vec<f32>, s: &[usize]| Tensor::from_vec(v, s, &Device::Cpu).unwrap();
    let tensors = vec![
        (
            "0.weight".to_string(),
            t(vec![1.0, -2.0, 0.5, 3.0], &[2, 2]),
        ),
        ("0.bias".to_string(), t(vec![0.1, -0.1], &[2])),
        ("2.weight".to_string(), t(vec![1.0, 1.0], &[1, 2])),
    ];
    optlab::tensor_io::write_safetensors(&p, &tensors, None).unwrap();
    let ps = p.to_str().unwrap();
    let o = run(&["lipschitz", ps, "--norm", "inf", "--json"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // Row sums 3 and 3.5, then 2: 7.
    assert_eq!(v["bound"].as_f64(), Some(7.0));
    assert_eq!(v["architecture"][1], "ReLU");
    fails_with(
        &["lipschitz", ps, "--method", "lipsd"],
        "available: naive, local, exact, lipsdp",
    );
    if cfg!(feature = "lipsdp") {
        fails_with(&["lipschitz", ps, "--method", "lipsdp"], "use --norm 2");
        let o = run(&[
            "lipschitz",
            ps,
            "--method",
            "lipsdp",
            "--norm",
            "2",
            "--json",
        ]);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let (b, naive) = (v["bound"].as_f64().unwrap(), v["naive"].as_f64().unwrap());
        // Both units active somewhere: the gradient (1.5, 1) has norm 1.803; the naive bound is 3.2566 * 1.4142.
        assert!(b >= 1.8027 && b <= naive * (1.0 + 1e-9), "{v}");
    } else {
        fails_with(
            &["lipschitz", ps, "--method", "lipsdp", "--norm", "2"],
            "--features lipsdp",
        );
    }
    let center = d.join("x.json");
    std::fs::write(&center, "[0.5, 0.25]").unwrap();
    let cs = center.to_str().unwrap();
    let o = run(&[
        "lipschitz",
        ps,
        "--method",
        "exact",
        "--center",
        cs,
        "--eps",
        "0.01",
        "--json",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // Both hidden units active near (0.5, 0.25): gradient (1, -2) + (0.5, 3) = (1.5, 1), l1 norm 2.5.
    assert!((v["bound"].as_f64().unwrap() - 2.5).abs() < 1e-6, "{v}");
    // The local bound over a large box: above the exact constant, and branch and bound reaches it.
    let bound = |method: &str, extra: &[&str]| {
        let mut args = vec![
            "lipschitz",
            ps,
            "--method",
            method,
            "--center",
            cs,
            "--eps",
            "1",
            "--json",
        ];
        args.extend_from_slice(extra);
        let o = run(&args);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let exact = bound("exact", &[])["bound"].as_f64().unwrap();
    let local = bound("local", &["--timeout", "5"]);
    let phases = local["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 3, "{local}");
    assert!(
        phases[0]["bound"].as_f64().unwrap() >= exact,
        "{local} vs {exact}"
    );
    assert!(
        (local["bound"].as_f64().unwrap() - exact).abs() <= 1e-9 * exact,
        "{local} vs {exact}"
    );
    let relax = bound("local", &["--timeout", "0", "--relaxation", "recurjac"]);
    assert!(relax["bound"].as_f64().unwrap() >= exact);
    fails_with(
        &[
            "lipschitz",
            ps,
            "--method",
            "local",
            "--center",
            cs,
            "--relaxation",
            "x",
        ],
        "available: linear, recurjac",
    );
    fails_with(&["lipschitz", ps, "--method", "exact"], "needs --center");
    fails_with(
        &[
            "lipschitz",
            ps,
            "--method",
            "exact",
            "--center",
            cs,
            "--eps=-1",
        ],
        "eps=-1",
    );
    std::fs::write(&center, "[0.5]").unwrap();
    fails_with(
        &["lipschitz", ps, "--method", "exact", "--center", cs],
        "the network takes 2",
    );
    fails_with(&["lipschitz", ps, "--norm", "3"], "available: inf, 2");
    let bytes = std::fs::read(&p).unwrap();
    let bad = d.join("bad.safetensors");
    std::fs::write(&bad, &bytes[..bytes.len() - 7]).unwrap();
    fails_with(&["lipschitz", bad.to_str().unwrap()], "bad.safetensors");
    let mut with_bn = tensors.clone();
    with_bn.push(("1.running_var".to_string(), t(vec![1.0, 1.0], &[2])));
    optlab::tensor_io::write_safetensors(&bad, &with_bn, None).unwrap();
    fails_with(&["lipschitz", bad.to_str().unwrap()], "running_var");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn certify_radii_of_a_linear_classifier() {
    use candle_core::{Device, Tensor};
    let d = tmp("certify");
    std::fs::create_dir_all(&d).unwrap();
    let p = d.join("lin.safetensors");
    // Logits (w.x + b, -(w.x + b)) with w = (0.6, -0.8): class 0 iff w.x + b > 0, true radius |w.x + b|.
    let t = |v: Vec<f32>, s: &[usize]| Tensor::from_vec(v, s, &Device::Cpu).unwrap();
    let tensors = vec![
        (
            "0.weight".to_string(),
            t(vec![0.6, -0.8, -0.6, 0.8], &[2, 2]),
        ),
        ("0.bias".to_string(), t(vec![0.1, -0.1], &[2])),
    ];
    optlab::tensor_io::write_safetensors(&p, &tensors, None).unwrap();
    let csv = d.join("x.csv");
    std::fs::write(&csv, "a,b,y\n0.2,-0.1,0\n-0.5,0.5,1\n0.0,0.125,0\n").unwrap();
    let (ps, cs) = (p.to_str().unwrap(), csv.to_str().unwrap());
    let o = run(&[
        "certify", ps, "--sigma", "0.25", "--n", "2000", "--alpha", "0.001", "--inputs", cs,
        "--label", "y", "--json",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let r = &v["results"];
    assert_eq!(
        (r[0]["class"].as_u64(), r[1]["class"].as_u64()),
        (Some(0), Some(1))
    );
    let rad0 = r[0]["radius"].as_f64().unwrap();
    assert!(rad0 > 0.2 && rad0 <= 0.3, "{v}"); // true radius 0.3
                                               // On the decision boundary: abstain.
    assert!(r[2]["class"].is_null() && r[2]["radius"] == 0.0, "{v}");
    assert_eq!(v["certified_correct"], 2);
    fails_with(
        &[
            "certify", ps, "--sigma", "0.25", "--inputs", cs, "--label", "z",
        ],
        "no column named `z`",
    );
    fails_with(
        &["certify", ps, "--sigma", "0.25", "--inputs", cs],
        "3 feature columns",
    );
    fails_with(
        &["certify", ps, "--sigma=-1", "--inputs", cs, "--label", "y"],
        "sigma=-1",
    );
    // LVM-RS: one configuration, the Bonferroni search, and the labelled replication mode.
    for (extra, sound) in [
        (vec![], true),
        (vec!["--search"], true),
        (vec!["--replication"], false),
    ] {
        let mut args = vec![
            "certify", ps, "--sigma", "0.25", "--n", "2000", "--alpha", "0.001", "--inputs", cs,
            "--label", "y", "--method", "lvm", "--json",
        ];
        args.extend(extra.iter().copied());
        let o = run(&args);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["sound"], sound, "{v}");
        let r = &v["results"];
        assert_eq!(r[0]["class"].as_u64(), Some(0), "{v}");
        let rad = r[0]["radius"].as_f64().unwrap();
        assert!(rad > 0.05 && rad <= 0.3, "{v}");
        assert!(r[2]["class"].is_null(), "{v}");
    }
    fails_with(
        &[
            "certify", ps, "--sigma", "0.25", "--inputs", cs, "--label", "y", "--search",
        ],
        "belong to --method lvm",
    );
    fails_with(
        &[
            "certify", ps, "--sigma", "0.25", "--inputs", cs, "--label", "y", "--method", "lvm",
            "--map", "max",
        ],
        "available: softmax, sparsemax",
    );
    std::fs::remove_dir_all(&d).unwrap();
}
