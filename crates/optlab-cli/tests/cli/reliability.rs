//! Run directories two processes cannot corrupt, resumes that refuse what they cannot honour, sizes checked
//! before allocating, analyses that refuse what they cannot identify, and messages that name the real cause.

use crate::common::{argv, fails_with, ok, optlab, tmp};
use std::path::Path;
use std::process::Stdio;

/// Starts the same command twice at once; both outputs.
fn race(args: &[String]) -> [std::process::Output; 2] {
    let spawn = || {
        optlab()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()]
}

/// Steps of the training records of a run's metrics.jsonl.
fn logged_steps(dir: &Path) -> Vec<u64> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "train")
        .filter_map(|v| v["step"].as_u64())
        .collect()
}

/// Two processes on one new directory, and two resumes of one run, started together: one works, the other is
/// refused naming the holder, and the directory holds one run's records.
#[test]
fn racing_writers_cannot_corrupt_a_run_directory() {
    let out = tmp("race");
    let d = out.join("run");
    let ds = d.to_str().unwrap();
    for trial in 0..3 {
        let _ = std::fs::remove_dir_all(&d);
        let outs = race(&argv(&format!(
            "train --steps 300 --checkpoint-every 50 --out {ds} --quiet"
        )));
        let won = outs.iter().filter(|o| o.status.success()).count();
        assert_eq!(won, 1, "trial {trial}: {won} processes succeeded");
        let lost = outs.iter().find(|o| !o.status.success()).unwrap();
        let err = String::from_utf8_lossy(&lost.stderr);
        assert_eq!(lost.status.code(), Some(1), "{err}");
        assert!(
            err.contains("is writing this run directory") || err.contains("already holds a run"),
            "trial {trial}: {err}"
        );
        let steps = logged_steps(&d);
        assert_eq!(
            steps,
            (1..=300).collect::<Vec<_>>(),
            "trial {trial}: one run's records"
        );
    }
    // Two resumes of a stopped run.
    let _ = std::fs::remove_dir_all(&d);
    ok(&argv(&format!(
        "train --steps 400 --stop-after 100 --checkpoint-every 50 --out {ds} --quiet"
    )));
    let outs = race(&argv(&format!("train --resume {ds} --quiet")));
    assert!(outs.iter().any(|o| o.status.success()));
    for o in outs.iter().filter(|o| !o.status.success()) {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("is writing this run directory"), "{err}");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["steps"], 400);
    assert_eq!(logged_steps(&d), (1..=400).collect::<Vec<_>>());
    std::fs::remove_dir_all(&out).unwrap();
}

/// The checkpoint index is checked against the run: a cursor past the data, a zero batch, a path outside the run
/// directory and non-finite metrics are refused with one line, never a panic.
#[test]
fn resume_refuses_an_index_that_is_not_the_runs() {
    let out = tmp("index");
    let d = out.join("run");
    let ds = d.to_str().unwrap();
    ok(&argv(&format!(
        "train --steps 60 --stop-after 20 --checkpoint-every 10 --out {ds} --quiet"
    )));
    let latest = d.join("checkpoints/latest.json");
    let good = std::fs::read_to_string(&latest).unwrap();
    let v: serde_json::Value = serde_json::from_str(&good).unwrap();
    for (key, value, says) in [
        (
            "cursor",
            serde_json::json!(1_000_000),
            "cursor 1000000 is past",
        ),
        ("batch_size", serde_json::json!(0), "batch size 0"),
        ("dir", serde_json::json!("../../etc"), "refused"),
        (
            "step",
            serde_json::json!(999),
            "names `step-000000020`, not `step-000000999`",
        ),
        (
            "best_val_accuracy",
            serde_json::json!(7.5),
            "best validation accuracy 7.5",
        ),
        ("time_s", serde_json::json!(-3.0), "must be finite"),
    ] {
        let mut bad = v.clone();
        bad[key] = value;
        std::fs::write(&latest, bad.to_string()).unwrap();
        fails_with(&["train", "--resume", ds], says);
    }
    // A step past the run, with a directory name to match.
    let mut past = v.clone();
    past["step"] = serde_json::json!(999);
    past["dir"] = serde_json::json!("step-000000999");
    std::fs::write(&latest, past.to_string()).unwrap();
    fails_with(
        &["train", "--resume", ds],
        "step 999 is outside the run's 1..=60",
    );
    std::fs::write(&latest, "{ not json").unwrap();
    fails_with(&["train", "--resume", ds], "invalid checkpoint index");
    std::fs::write(&latest, &good).unwrap();
    ok(&argv(&format!("train --resume {ds} --quiet")));
    std::fs::remove_dir_all(&out).unwrap();
}

/// A resume continues exactly what was recorded: an edited config.toml is refused with the keys named (a lowered
/// step budget included); a finished run is reported complete and left untouched.
#[test]
fn resume_continues_exactly_what_was_recorded() {
    let out = tmp("recorded");
    let d = out.join("run");
    let ds = d.to_str().unwrap();
    ok(&argv(&format!(
        "train --steps 40 --stop-after 20 --checkpoint-every 10 --out {ds} --quiet"
    )));
    let cfg = d.join("config.toml");
    let recorded = std::fs::read_to_string(&cfg).unwrap();
    let edit = |from: &str, to: &str| {
        assert!(recorded.contains(from), "{recorded}");
        std::fs::write(&cfg, recorded.replace(from, to)).unwrap();
    };
    edit("optimizer = \"adamw:", "optimizer = \"sgd:lr=0.1,\" #");
    fails_with(&["train", "--resume", ds], "optimizer: recorded");
    edit("steps = 40", "steps = 10");
    fails_with(&["train", "--resume", ds], "steps: recorded 40, now 10");
    // The same configuration written another way (a config.toml of an earlier version kept specs as typed).
    let short = recorded
        .lines()
        .map(|l| {
            if l.starts_with("optimizer = ") {
                "optimizer = \"adamw:lr=0.001\""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&cfg, short).unwrap();
    ok(&argv(&format!("train --resume {ds} --quiet")));
    let files = [
        "summary.json",
        "metrics.jsonl",
        "model.safetensors",
        "config.toml",
    ];
    let before: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(d.join(f)).unwrap())
        .collect();
    let stdout = ok(&argv(&format!("train --resume {ds} --quiet")));
    assert!(
        stdout.contains("holds a complete run (40 steps); nothing to do"),
        "{stdout}"
    );
    let after: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(d.join(f)).unwrap())
        .collect();
    assert!(before == after, "a finished run was changed by --resume");
    std::fs::remove_dir_all(&out).unwrap();
}

/// A run whose batch exceeds its data resumes; a directory whose run died before its first checkpoint starts
/// over; a resume where no run is creates nothing.
#[test]
fn resume_and_restart_edge_cases() {
    let out = tmp("edges");
    let d = out.join("run");
    let ds = d.to_str().unwrap();
    ok(&argv(&format!(
        "train --data moons:n=50 --batch-size 64 --steps 12 --stop-after 6 --checkpoint-every 3 --out {ds} --quiet"
    )));
    ok(&argv(&format!("train --resume {ds} --quiet")));
    let dead = out.join("dead");
    std::fs::create_dir_all(&dead).unwrap();
    std::fs::write(dead.join("config.toml"), "steps = 1\n").unwrap();
    ok(&argv(&format!(
        "train --steps 2 --out {} --quiet",
        dead.display()
    )));
    let none = out.join("none");
    fails_with(
        &argv(&format!("train --resume {}", none.display())),
        "no run here",
    );
    assert!(!none.exists());
    std::fs::remove_dir_all(&out).unwrap();
}

/// Sizes are checked before allocating: absurd widths, particle counts, horizons, contexts and pattern counts
/// are refused with the estimate and the memory available; --max-memory overrides the machine's figure.
#[test]
fn sizes_are_checked_before_allocating() {
    let out = tmp("sizes");
    let o = out.to_str().unwrap();
    fails_with(
        &["train", "--model", "mlp:hidden=100000000000", "--out", o],
        "of memory, but the machine has",
    );
    fails_with(
        &["--max-memory", "1M", "train", "--steps", "1", "--out", o],
        "--max-memory allows 1.0 MB",
    );
    fails_with(&["--max-memory", "lots", "papers"], "memory size `lots`");
    fails_with(
        &argv(&format!("train --optimizer mfac:ngrads=100000 --out {o}")),
        "100001 optimizer buffers each",
    );
    fails_with(
        &argv(&format!(
            "train --data gaussians:classes=10000000000,dim=8 --out {o}"
        )),
        "the data set `gaussians",
    );
    fails_with(
        &["train", "--data", "moons:n=100000000000000", "--out", o],
        "the data set `moons:n=100000000000000",
    );
    fails_with(
        &[
            "train",
            "--task",
            "charlm",
            "--data",
            "text:context=100000",
            "--steps",
            "1",
            "--out",
            o,
        ],
        "use smaller widths, a shorter context",
    );
    fails_with(
        &[
            "cbo",
            "--function",
            "rastrigin",
            "--dim",
            "10",
            "--particles",
            "100000000000",
        ],
        "particles",
    );
    std::fs::remove_dir_all(&out).ok();
}

/// Questions the data cannot answer are refused: an annealing law from constant-lr curves (C unidentifiable), a
/// flat curve, Lanczos with no step, a classifier with one class, a validation split with no example.
#[test]
fn unanswerable_questions_are_refused() {
    let out = tmp("unanswerable");
    std::fs::create_dir_all(&out).unwrap();
    let csv = |name: &str, lr: &dyn Fn(usize) -> f64, loss: &dyn Fn(usize) -> f64| {
        let p = out.join(name);
        let mut s = String::from("step,lr,loss\n");
        for k in 1..=200 {
            s.push_str(&format!("{k},{},{}\n", lr(k), loss(k)));
        }
        std::fs::write(&p, s).unwrap();
        p.to_str().unwrap().to_string()
    };
    let constant = csv("constant.csv", &|_| 1e-3, &|k| {
        2.0 + 1.0 / (k as f64).sqrt()
    });
    let fit = out.join("fit.json");
    let f = fit.to_str().unwrap();
    fails_with(
        &["scaling", "fit", "--curve", &constant, "--out", f],
        "C cannot be identified",
    );
    let flat = csv("flat.csv", &|k| 1e-3 * (1.0 - k as f64 / 300.0), &|_| 2.5);
    fails_with(
        &["scaling", "fit", "--curve", &flat, "--out", f],
        "flat curve",
    );
    fails_with(
        &[
            "curvature",
            "--function",
            "rosenbrock",
            "--at=1,1",
            "--lanczos-steps",
            "0",
        ],
        "--lanczos-steps 0",
    );
    let one = out.join("one.csv");
    std::fs::write(&one, "a,y\n1,0\n2,0\n3,0\n4,0\n5,0\n").unwrap();
    let data = format!("csv:path={}", one.display());
    let o = out.join("r");
    fails_with(
        &["train", "--data", &data, "--out", o.to_str().unwrap()],
        "at least two classes",
    );
    fails_with(
        &[
            "train",
            "--data",
            "moons:n=20",
            "--val-frac",
            "0.01",
            "--out",
            o.to_str().unwrap(),
        ],
        "leaves no validation example",
    );
    std::fs::remove_dir_all(&out).unwrap();
}

/// Messages name the real cause: a short run writes its files and plots what it has; an overflowing start is
/// not blamed on the learning rate; huge values are not called constant; a zero ADMM penalty names rho.
#[test]
fn messages_name_the_real_cause() {
    let out = tmp("messages");
    let d = out.join("short");
    let stdout = ok(&[
        "train",
        "--steps",
        "3",
        "--log-every",
        "10",
        "--out",
        d.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(stdout.contains("run directory"), "{stdout}");
    assert!(d.join("summary.json").exists() && d.join("model.safetensors").exists());
    std::fs::create_dir_all(&out).unwrap();
    let huge = out.join("huge.csv");
    // Finite in f32, but the first layers' outputs overflow.
    std::fs::write(
        &huge,
        "a,b,y\n3e38,3e38,0\n-3e38,3e38,1\n3e38,-3e38,0\n-3e38,-3e38,1\n3e38,3e38,1\n",
    )
    .unwrap();
    let data = format!("csv:path={}", huge.display());
    fails_with(
        &[
            "train",
            "--data",
            &data,
            "--val-frac",
            "0",
            "--quiet",
            "--out",
            out.join("h").to_str().unwrap(),
        ],
        "at the initial parameters, before any update",
    );
    let big = out.join("big.csv");
    std::fs::write(&big, "a,b,c\n1e200,2,3\n-1e200,5,1\n3e200,1,2\n").unwrap();
    fails_with(
        &[
            "dag",
            "fit",
            big.to_str().unwrap(),
            "--out",
            out.join("w.csv").to_str().unwrap(),
        ],
        "rescale the data",
    );
    let reg = out.join("reg.csv");
    std::fs::write(&reg, "a,b,y\n1,2,0.5\n2,1,0.1\n3,3,0.9\n0,1,0.2\n").unwrap();
    fails_with(
        &[
            "convex-relu",
            "train",
            reg.to_str().unwrap(),
            "--rho",
            "0",
            "--out",
            out.join("c").to_str().unwrap(),
        ],
        "rho=0 must be positive",
    );
    std::fs::remove_dir_all(&out).unwrap();
}
