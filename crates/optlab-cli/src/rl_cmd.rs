//! `optlab rl train`: reinforcement learning on optlab's environments. Built so far: TD3 on Pendulum-v1.

use crate::plot::{line_chart, Series};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use optlab::rl::pendulum::Pendulum;
use optlab::rl::td3::{self, Td3Config};
use optlab::tensor_io::write_atomic;
use optlab::train::run_dir::RunDirLock;
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct RlArgs {
    #[command(subcommand)]
    pub what: RlWhat,
}

#[derive(Subcommand, Debug)]
pub enum RlWhat {
    /// Train an agent: episode returns to DIR/episodes.jsonl, DIR/summary.json (mean return of the last 10
    /// episodes, time) and DIR/returns.png.
    #[command(
        after_help = "Examples:\n  optlab rl train --env pendulum --algo td3 --steps 30000 --seed 0 --out runs/td3\n\nBuilt so far: td3 on pendulum (CleanRL's hyperparameters: MLPs 256-256, Adam 3e-4, batch 256, gamma 0.99,\ntau 0.005, exploration noise 0.1, policy noise 0.2 clipped at 0.5, actor every 2 updates; 2000 random warm-up steps)."
    )]
    Train(TrainArgs),
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The environment: pendulum.
    #[arg(long, default_value = "pendulum")]
    env: String,
    /// The algorithm: td3.
    #[arg(long, default_value = "td3")]
    algo: String,
    /// Environment steps.
    #[arg(long, default_value_t = 30_000)]
    steps: u64,
    /// Random-action warm-up steps before learning.
    #[arg(long, default_value_t = 2_000)]
    learning_starts: u64,
    /// Hidden widths of the actor and critics, e.g. 256-256.
    #[arg(long, default_value = "256-256")]
    hidden: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    out: PathBuf,
    /// The summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(a: RlArgs) -> Result<()> {
    match a.what {
        RlWhat::Train(t) => train(t),
    }
}

fn train(a: TrainArgs) -> Result<()> {
    if a.env != "pendulum" {
        bail!(
            "rl train: env '{}' is not available for td3; available: pendulum",
            a.env
        );
    }
    if a.algo != "td3" {
        bail!("rl train: algo '{}' is not built; available: td3", a.algo);
    }
    let hidden = a
        .hidden
        .split('-')
        .map(|v| v.trim().parse::<usize>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| {
            anyhow::anyhow!("--hidden {} is not a list of widths like 256-256", a.hidden)
        })?;
    let cfg = Td3Config {
        total_steps: a.steps,
        learning_starts: a.learning_starts,
        hidden,
        seed: a.seed,
        ..Default::default()
    };
    cfg.check()?;
    let _lock = RunDirLock::acquire(&a.out)?;
    let path = a.out.join("episodes.jsonl");
    let mut log =
        std::fs::File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
    let mut write_err = None;
    let quiet = a.json;
    let mut env = Pendulum::default();
    let run = td3::train(&mut env, &cfg, |e| {
        if let Err(err) = writeln!(log, "{}", json!({"step": e.step, "return": e.ret})) {
            write_err.get_or_insert(err);
        }
        if !quiet {
            eprintln!("step {:>7}  return {:>9.2}", e.step, e.ret);
        }
    })?;
    if let Some(e) = write_err {
        return Err(e).context(format!("cannot write {}", path.display()));
    }
    let last: Vec<f64> = run.episodes.iter().rev().take(10).map(|e| e.ret).collect();
    let mean_last10 = last.iter().sum::<f64>() / last.len().max(1) as f64;
    let summary = json!({
        "env": "Pendulum-v1", "algo": "td3", "steps": a.steps, "seed": a.seed, "episodes": run.episodes.len(),
        "mean_return_last_10": mean_last10, "seconds": run.seconds, "steps_per_s": a.steps as f64 / run.seconds,
    });
    write_atomic(
        &a.out.join("summary.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    line_chart(
        &a.out.join("returns.png"),
        "TD3 on Pendulum-v1: episode return",
        "environment step",
        "return",
        &[Series {
            name: String::new(),
            points: run
                .episodes
                .iter()
                .map(|e| (e.step as f64, e.ret))
                .collect(),
        }],
        false,
    )?;
    if a.json {
        println!("{summary}");
    } else {
        println!(
            "{} episodes in {:.1} s; mean return of the last 10: {mean_last10:.1}; wrote {}",
            run.episodes.len(),
            run.seconds,
            a.out.display()
        );
    }
    Ok(())
}
