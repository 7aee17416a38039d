//! `optlab dp run`: DP-GD, DP-SGD, DIFF2 (P09) and private SpiderBoost (P21) over in-process workers and, with
//! the `mpi` feature, over MPI ranks started by `mpirun` (the same bits as the in-process workers).

use crate::common::{argv, fails_with, is_png, ok, tmp};

fn read(p: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn dp_run_writes_a_run_directory() {
    for (algo, extra) in [
        ("diff2", "--workers 2"),
        ("spider", "--batch 100"),
        ("dp-sgd", ""),
        ("dp-gd", "--model mlp:hidden=4,act=tanh --n 200"),
    ] {
        let out = tmp(&format!("dp-{algo}"));
        let s: serde_json::Value = serde_json::from_str(&ok(&argv(&format!(
            "dp run --algo {algo} --epsilon 2 --rounds 20 --eval-every 5 {extra} --out {} --json",
            out.display()
        ))))
        .unwrap();
        let eps = s["epsilon"].as_f64().unwrap();
        assert!(eps > 1.98 && eps <= 2.0, "{algo}: {eps}");
        let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
        assert_eq!(metrics.lines().count(), 5, "{metrics}");
        let first: serde_json::Value =
            serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
        assert!(
            s["final_loss"].as_f64().unwrap() < first["loss"].as_f64().unwrap(),
            "{algo}: {s}"
        );
        assert!(is_png(&out.join("grad_norm.png")));
        let c = read(&out.join("config.json"));
        assert_eq!(c["algo"], algo);
        let p = read(&out.join("params.json"));
        let dim = if algo == "dp-gd" {
            64 * 4 + 4 + 4 * 10 + 10
        } else {
            65
        };
        assert_eq!(p["last"].as_array().unwrap().len(), dim);
        assert_eq!(p["output"].as_array().unwrap().len(), dim);
    }
}

#[test]
fn dp_run_warns_when_delta_is_not_below_one_over_n() {
    let out = tmp("dp-delta");
    let o = crate::common::run(&argv(&format!(
        "dp run --algo dp-gd --epsilon 2 --delta 0.01 --n 200 --rounds 2 --out {} --json",
        out.display()
    )));
    let (_, err) = crate::common::text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("warning: delta 0.01 is not below 1/n = 5.00e-3 (200 examples)"),
        "{err}"
    );
}

#[test]
fn dp_run_bad_input_is_one_line() {
    let out = tmp("dp-bad");
    let o = out.display();
    for (args, want) in [
        (
            format!("dp run --algo sgd --epsilon 1 --out {o}"),
            "unknown private method `sgd`",
        ),
        (
            format!("dp run --algo diff2 --epsilon 0 --out {o}"),
            "epsilon must be finite and > 0",
        ),
        (
            format!("dp run --algo diff2 --epsilon 1 --delta 1 --out {o}"),
            "delta must lie in (0, 1)",
        ),
        (
            format!("dp run --algo diff2 --epsilon 1 --clip 0 --out {o}"),
            "clip must be > 0",
        ),
        (
            format!("dp run --algo diff2 --out {o}"),
            "--epsilon E or the noise as --noise S",
        ),
        (
            format!("dp run --algo diff2 --epsilon 1 --workers 300 --out {o}"),
            "5 per worker",
        ),
        (
            format!("dp run --algo diff2 --epsilon 1 --n 0 --out {o}"),
            "--n must lie in 1..=1797",
        ),
        (
            format!("dp run --algo diff2 --epsilon 1e-9 --out {o}"),
            "out of reach",
        ),
        (
            format!("dp run --algo diff2 --epsilon 1 --model logreg:mu=1 --out {o}"),
            "unknown setting `mu=1`",
        ),
        (
            format!("dp run --algo diff2 --epsilon 1 --model cnn:channels=4,norm=bn --out {o}"),
            "GroupNorm",
        ),
        (
            format!("dp run --algo diff2 --epsilon 1 --data linreg:n=100 --out {o}"),
            "class labels",
        ),
    ] {
        fails_with(&argv(&args), want);
    }
}

#[cfg(feature = "mpi")]
mod mpi {
    use super::*;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    fn mpirun(ranks: usize, line: &str) -> Command {
        let mut c = Command::new("mpirun");
        // Root in CI containers; more ranks than cores on a 2-core machine.
        c.args([
            "--allow-run-as-root",
            "--oversubscribe",
            "-n",
            &ranks.to_string(),
        ])
        .arg(env!("CARGO_BIN_EXE_optlab"))
        .args(argv(line))
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        // Containers often forbid the cross-memory attach of Open MPI's shared-memory transport.
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none");
        c
    }

    #[test]
    fn mpi_ranks_equal_in_process_workers_bit_for_bit() {
        for (ranks, algo) in [(2, "diff2"), (4, "spider")] {
            let line = format!(
                "dp run --algo {algo} --epsilon 3 --rounds 30 --eval-every 10 --batch 200 --n 600"
            );
            let local = tmp(&format!("dp-local-{ranks}"));
            ok(&argv(&format!(
                "{line} --workers {ranks} --out {}",
                local.display()
            )));
            let remote = tmp(&format!("dp-mpi-{ranks}"));
            let o = mpirun(
                ranks,
                &format!("{line} --distributed --out {}", remote.display()),
            )
            .output()
            .expect("mpirun (scripts/test installs openmpi-bin)");
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            // Only rank 0 prints.
            assert_eq!(
                String::from_utf8_lossy(&o.stdout)
                    .matches("epsilon")
                    .count(),
                5
            );
            assert_eq!(
                std::fs::read(local.join("params.json")).unwrap(),
                std::fs::read(remote.join("params.json")).unwrap(),
                "{ranks} ranks"
            );
            assert_eq!(read(&remote.join("config.json"))["workers"], ranks);
        }
    }

    /// Runs a job, kills one rank once `ready` exists, and returns mpirun's exit status and stderr (the test
    /// fails if the job outlives the rank by a minute).
    fn kill_one_rank(cmd: Command, ready: &std::path::Path) -> (std::process::ExitStatus, String) {
        signal_one_rank(cmd, ready, "-9")
    }

    /// As [`kill_one_rank`] with any signal (`-STOP` stalls a rank without killing it).
    fn signal_one_rank(
        mut cmd: Command,
        ready: &std::path::Path,
        signal: &str,
    ) -> (std::process::ExitStatus, String) {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mpirun");
        let deadline = Instant::now() + Duration::from_secs(60);
        // The ranks are mpirun's children; kill one once both run.
        let children = |pid: u32| -> Vec<u32> {
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        };
        let victim = loop {
            let c = children(child.id());
            if c.len() >= 2 && ready.exists() {
                break c[1];
            }
            assert!(Instant::now() < deadline, "the ranks did not start");
            std::thread::sleep(Duration::from_millis(20));
        };
        Command::new("kill")
            .args([signal, &victim.to_string()])
            .status()
            .unwrap();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "the job hung after a rank was killed"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        (status, err)
    }

    #[test]
    fn data_parallel_training_equals_accumulation_and_survives_a_kill() {
        let common =
            "train --model mlp:hidden=32 --optimizer adamw:lr=1e-3 --batch-size 64 --quiet";
        for ranks in [2, 4] {
            let acc = tmp(&format!("train-acc-{ranks}"));
            ok(&argv(&format!(
                "{common} --steps 30 --accumulate {ranks} --out {}",
                acc.display()
            )));
            let par = tmp(&format!("train-mpi-{ranks}"));
            let o = mpirun(
                ranks,
                &format!("{common} --steps 30 --distributed --out {}", par.display()),
            )
            .output()
            .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            assert_eq!(
                std::fs::read(acc.join("model.safetensors")).unwrap(),
                std::fs::read(par.join("model.safetensors")).unwrap(),
                "{ranks} ranks against --accumulate {ranks}"
            );
        }
        // DP-SGD over 2 ranks: the same epsilon as one process.
        let dp = tmp("train-mpi-dp");
        let o = mpirun(
            2,
            &format!(
                "{common} --steps 10 --privacy epsilon=2,delta=1e-5,clip=1 --distributed --out {}",
                dp.display()
            ),
        )
        .output()
        .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let eps = read(&dp.join("summary.json"))["privacy"]["epsilon"]
            .as_f64()
            .unwrap();
        assert!(eps > 1.9 && eps <= 2.0, "{eps}");
        // A rank killed mid-run stops the job; resuming on the same ranks finishes it with the weights of an
        // uninterrupted run.
        let steps = "--steps 3000 --checkpoint-every 25";
        let whole = tmp("train-mpi-whole");
        let o = mpirun(
            2,
            &format!("{common} {steps} --distributed --out {}", whole.display()),
        )
        .output()
        .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let cut = tmp("train-mpi-killed");
        let (status, err) = kill_one_rank(
            mpirun(
                2,
                &format!("{common} {steps} --distributed --out {}", cut.display()),
            ),
            &cut.join("checkpoints").join("latest.json"),
        );
        assert!(
            !status.success() && err.contains("exited on signal 9"),
            "{err}"
        );
        assert!(
            !cut.join("summary.json").exists(),
            "the run should not have finished"
        );
        let o = mpirun(
            2,
            &format!("train --resume {} --distributed --quiet", cut.display()),
        )
        .output()
        .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(
            std::fs::read(whole.join("model.safetensors")).unwrap(),
            std::fs::read(cut.join("model.safetensors")).unwrap()
        );
    }

    #[test]
    fn a_stalled_rank_times_out_with_a_clear_error() {
        let out = tmp("train-mpi-stall");
        let mut cmd = mpirun(
            2,
            &format!(
                "train --model mlp:hidden=32 --steps 100000000 --checkpoint-every 10 --quiet --distributed --out {}",
                out.display()
            ),
        );
        cmd.env("OPTLAB_COLLECTIVE_TIMEOUT", "2");
        let (status, err) =
            signal_one_rank(cmd, &out.join("checkpoints").join("latest.json"), "-STOP");
        assert!(!status.success());
        assert!(
            err.contains("error: distributed: rank 0 waited more than 2 s for the other ranks"),
            "{err}"
        );
    }

    #[test]
    fn a_killed_rank_stops_the_job_with_a_clear_error() {
        let out = tmp("dp-mpi-kill");
        let mut cmd = mpirun(
            2,
            &format!(
                "dp run --algo diff2 --noise 1 --rounds 100000000 --eval-every 100000 --out {}",
                out.display()
            ),
        );
        cmd.arg("--distributed");
        let (status, err) = kill_one_rank(cmd, &out.join("metrics.jsonl"));
        assert!(!status.success());
        assert!(err.contains("exited on signal 9"), "{err}");
    }
}
