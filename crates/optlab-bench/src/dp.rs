//! `optlab-bench dp`: the cost of privacy and of distribution. (1) One DP-SGD step (per-sample norms, flat
//! clipping at 1, noise multiplier 1, SGD) as a multiple of one plain SGD step on the same MLP and batch, next to
//! opacus's multiple (GradSampleModule + DPOptimizer) in the same run. (2) With `--ranks`, one epoch of
//! data-parallel training under `mpirun -n R optlab train --distributed` for each R, with the bytes each rank
//! sends per step (needs mpirun and an optlab binary built with `--features optlab-cli/mpi` beside this one).

use crate::harness::best_ms;
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use clap::Args;
use optlab::nn::loss::cross_entropy;
use optlab::nn::{ModelSpec, Sequential};
use optlab::optim::from_spec;
use optlab::privacy::dp_sgd::{private_gradient, Clipping, DpSgdStep, ExampleLoss};

#[derive(Args, Debug)]
pub struct DpBenchArgs {
    /// Timed steps per repetition (best of 3 repetitions is reported).
    #[arg(long, default_value_t = 30)]
    pub steps: usize,
    /// Rank counts for the data-parallel epoch, e.g. 1,2,4.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub ranks: Vec<usize>,
    /// Only the step case with this name (all cases when absent).
    #[arg(long)]
    pub case: Option<String>,
    /// Skip the data-parallel epochs.
    #[arg(long)]
    pub no_epochs: bool,
    /// Epochs of the data-parallel run (digits, MLP 64-128-10, batch 64); the time per epoch is reported.
    #[arg(long, default_value_t = 20)]
    pub epochs: usize,
    #[command(flatten)]
    pub torch: crate::harness::TorchSide,
    /// Print one JSON object instead of the tables.
    #[arg(long)]
    pub json: bool,
}

struct Case {
    name: &'static str,
    dims: &'static [usize],
    batch: usize,
}

const CASES: &[Case] = &[
    Case {
        name: "mlp-64-128-10/b64",
        dims: &[64, 128, 10],
        batch: 64,
    },
    Case {
        name: "mlp-784-1024-1024-10/b256",
        dims: &[784, 1024, 1024, 10],
        batch: 256,
    },
];

/// (plain, private) ms per step.
fn optlab_ms(c: &Case, steps: usize) -> Result<(f64, f64)> {
    let hidden: Vec<String> = c.dims[1..c.dims.len() - 1]
        .iter()
        .map(|d| d.to_string())
        .collect();
    let spec = ModelSpec::parse(&format!("mlp:hidden={},act=relu", hidden.join("-")))?;
    let out = *c.dims.last().expect("dims");
    let model = Sequential::new(&spec, &c.dims[..1], out, 0, DType::F32)?;
    let x = Tensor::randn(0f32, 1.0, (c.batch, c.dims[0]), &Device::Cpu)?;
    let y = Tensor::from_vec(
        (0..c.batch).map(|i| (i % out) as u32).collect::<Vec<u32>>(),
        c.batch,
        &Device::Cpu,
    )?;
    let params = model.params();
    let mut opt = from_spec("sgd:lr=0.01")?;
    let plain = best_ms(steps, || {
        let grads = cross_entropy(&model.forward_mode(&x, true)?, &y)?.backward()?;
        opt.step(&params, &grads)?;
        Ok(())
    })?;
    let dp = DpSgdStep {
        clip: 1.0,
        clipping: Clipping::Flat,
        noise_multiplier: 1.0,
        expected_batch: c.batch as f64,
    };
    let mut rng = optlab::rng::rng_for(0, optlab::rng::Stream::PrivacyNoise, 0);
    let private = best_ms(steps, || {
        let g = private_gradient(&model, &x, &y, ExampleLoss::CrossEntropy, &dp, &mut rng)?;
        opt.step(&params, &g.grads)?;
        Ok(())
    })?;
    Ok((plain, private))
}

/// Seconds per epoch and bytes per step and rank of `mpirun -n ranks optlab train --distributed`.
fn epoch(ranks: usize, epochs: usize) -> Result<(f64, f64)> {
    let me = std::env::current_exe()?;
    let optlab = me.with_file_name("optlab");
    anyhow::ensure!(optlab.exists(), "no optlab binary beside {}", me.display());
    let dir = std::env::temp_dir().join(format!("optlab-bench-dp-{}-{ranks}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let o = std::process::Command::new("mpirun")
        .args([
            "--allow-run-as-root",
            "--oversubscribe",
            "-n",
            &ranks.to_string(),
        ])
        .arg(&optlab)
        .args([
            "train",
            "--model",
            "mlp:hidden=128",
            "--optimizer",
            "sgd:lr=0.1",
            "--batch-size",
            "64",
            "--epochs",
            &epochs.to_string(),
            "--quiet",
            "--distributed",
            "--out",
        ])
        .arg(&dir)
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        .output()
        .context("mpirun (Debian: openmpi-bin)")?;
    anyhow::ensure!(
        o.status.success(),
        "{}",
        String::from_utf8_lossy(&o.stderr).trim()
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    let bytes = stdout
        .lines()
        .find_map(|l| l.strip_prefix("distributed: "))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|l| l.split(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json"))?)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok((
        s["wall_time_s"].as_f64().unwrap_or(f64::NAN) / epochs as f64,
        bytes,
    ))
}

pub fn run(a: DpBenchArgs) -> Result<()> {
    anyhow::ensure!(
        a.steps >= 1 && a.epochs >= 1,
        "--steps and --epochs must be at least 1"
    );
    let cases: Vec<&Case> = CASES
        .iter()
        .filter(|c| a.case.as_deref().is_none_or(|n| n == c.name))
        .collect();
    anyhow::ensure!(
        !cases.is_empty(),
        "no case named {:?} (cases: {})",
        a.case.as_deref().unwrap_or(""),
        CASES.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
    );
    let ours: Vec<(f64, f64)> = cases
        .iter()
        .map(|c| optlab_ms(c, a.steps))
        .collect::<Result<_>>()?;
    let names = serde_json::json!(cases
        .iter()
        .map(|c| serde_json::json!({"name": c.name, "dims": c.dims, "batch": c.batch}))
        .collect::<Vec<_>>());
    let torch = a.torch.run(
        "dp_step_opacus.py",
        &[names.to_string(), a.steps.to_string()],
    );
    let mut rows = Vec::new();
    for (c, (plain, private)) in cases.iter().zip(&ours) {
        let t = torch.as_ref().map(|v| &v[c.name]);
        let tp = t.and_then(|t| t["plain_ms"].as_f64());
        let tq = t.and_then(|t| t["private_ms"].as_f64());
        rows.push(serde_json::json!({
            "case": c.name, "optlab_plain_ms": plain, "optlab_private_ms": private,
            "optlab_private_over_plain": private / plain,
            "opacus_plain_ms": tp, "opacus_private_ms": tq,
            "opacus_private_over_plain": tp.zip(tq).map(|(p, q)| q / p),
            "optlab_private_over_opacus_private": tq.map(|q| private / q),
        }));
    }
    let mut epochs = Vec::new();
    for &r in a.ranks.iter().filter(|_| !a.no_epochs) {
        match epoch(r, a.epochs) {
            Ok((s, b)) => epochs.push(serde_json::json!({"ranks": r, "seconds_per_epoch": s, "bytes_per_step_per_rank": b})),
            Err(e) => {
                eprintln!("warning: the {r}-rank epoch was skipped: {e:#}");
                break;
            }
        }
    }
    if a.json {
        println!(
            "{}",
            serde_json::json!({"bench": "dp", "steps": rows, "epochs": epochs})
        );
        return Ok(());
    }
    println!("optlab-bench dp: one DP-SGD step (flat clip 1, noise 1, SGD) against one SGD step; best of 3 x {} steps", a.steps);
    println!(
        "{:<28} {:>10} {:>10} {:>8} {:>12} {:>12} {:>8}",
        "case", "plain ms", "DP ms", "DP/plain", "opacus plain", "opacus DP", "DP/plain"
    );
    let f = |v: &serde_json::Value, k: &str, p: usize| {
        v[k].as_f64().map_or("n/a".into(), |x| format!("{x:.p$}"))
    };
    let ratio =
        |v: &serde_json::Value, k: &str| v[k].as_f64().map_or("n/a".into(), |x| format!("{x:.2}x"));
    for r in &rows {
        println!(
            "{:<28} {:>10} {:>10} {:>8} {:>12} {:>12} {:>8}",
            r["case"].as_str().unwrap_or(""),
            f(r, "optlab_plain_ms", 3),
            f(r, "optlab_private_ms", 3),
            ratio(r, "optlab_private_over_plain"),
            f(r, "opacus_plain_ms", 3),
            f(r, "opacus_private_ms", 3),
            ratio(r, "opacus_private_over_plain"),
        );
    }
    if !epochs.is_empty() {
        println!(
            "\ndata-parallel epoch (digits, MLP 64-128-10, batch 64, SGD; mpirun on this machine's {} cores)",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        println!(
            "{:>6} {:>14} {:>22}",
            "ranks", "s per epoch", "bytes/step per rank"
        );
        for e in &epochs {
            println!(
                "{:>6} {:>14.4} {:>22.0}",
                e["ranks"],
                e["seconds_per_epoch"].as_f64().unwrap_or(f64::NAN),
                e["bytes_per_step_per_rank"].as_f64().unwrap_or(0.0)
            );
        }
    }
    Ok(())
}
