//! `optlab compare` and `optlab demo`: several optimizers on one task, one report.

use crate::plot::{line_chart, plot_run, run_curves, smooth, Series};
use crate::progress::Progress;
use anyhow::{Context, Result};
use clap::Args;
use optlab::train::{Summary, TrainConfig, Trainer};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The demo's optimizers: every method the library has, with settings that suit the digits MLP.
pub const DEMO_OPTIMIZERS: &[&str] = &[
    "sgd:lr=0.1",
    "sgd:lr=0.1,momentum=0.9,nesterov=true",
    "adam:lr=1e-3",
    "adamw:lr=1e-3,weight_decay=0.01",
    "adagrad:lr=0.05",
    "rmsprop:lr=1e-3",
    "lion:lr=1e-3",
    "diffgrad:lr=3e-3",
    "adamp:lr=3e-3",
    "sgdp:lr=0.1,momentum=0.9",
    "nsgd:lr=0.1",
    "adagradnorm:lr=0.5",
    "adahessian:lr=0.15",
];

#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  optlab demo --out demo-report   # then open demo-report/report.md"
)]
pub struct DemoArgs {
    /// Report directory.
    #[arg(long, default_value = "demo-report")]
    pub out: PathBuf,
    /// Passes over the digits training split per optimizer.
    #[arg(long, default_value_t = 20)]
    pub epochs: u64,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  optlab compare --optimizer sgd:lr=0.1,momentum=0.9 --optimizer adamw:lr=1e-3 --schedule cosine:warmup=20 --epochs 10 --out cmp"
)]
pub struct CompareArgs {
    /// An optimizer spec; repeat the flag for each optimizer to compare.
    #[arg(long = "optimizer", required = true)]
    pub optimizers: Vec<String>,
    /// Learning-rate schedule applied to every run.
    #[arg(long, default_value = "constant")]
    pub schedule: String,
    /// Data spec (see `optlab train --help`).
    #[arg(long, default_value = "digits")]
    pub data: String,
    /// Model spec.
    #[arg(long, default_value = "mlp:hidden=128,act=relu")]
    pub model: String,
    /// Passes over the training split.
    #[arg(long, default_value_t = 20)]
    pub epochs: u64,
    /// Examples per step.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Seed shared by all runs (same data, split, init and batches).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Report directory.
    #[arg(long, default_value = "compare-report")]
    pub out: PathBuf,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

pub fn demo(a: DemoArgs) -> Result<()> {
    compare(CompareArgs {
        optimizers: DEMO_OPTIMIZERS.iter().map(|s| s.to_string()).collect(),
        schedule: "constant".into(),
        data: "digits".into(),
        model: "mlp:hidden=128,act=relu".into(),
        epochs: a.epochs,
        batch_size: 64,
        seed: 0,
        out: a.out,
        quiet: a.quiet,
    })
}

fn slug(i: usize, spec: &str) -> String {
    let s: String = spec
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{i:02}-{}", s.chars().take(60).collect::<String>())
}

pub fn compare(a: CompareArgs) -> Result<()> {
    let runs_dir = a.out.join("runs");
    if runs_dir.exists() {
        std::fs::remove_dir_all(&runs_dir)
            .with_context(|| format!("cannot clear {}", runs_dir.display()))?;
    }
    std::fs::create_dir_all(&runs_dir)
        .with_context(|| format!("cannot create {}", runs_dir.display()))?;
    // Build every trainer first so a typo in the last spec fails before any training.
    let mut trainers = Vec::new();
    for (i, spec) in a.optimizers.iter().enumerate() {
        let cfg = TrainConfig {
            data: a.data.clone(),
            model: a.model.clone(),
            optimizer: spec.clone(),
            schedule: a.schedule.clone(),
            epochs: Some(a.epochs),
            batch_size: a.batch_size,
            seed: a.seed,
            ..TrainConfig::default()
        };
        let t = Trainer::new(cfg).with_context(|| format!("optimizer {}", i + 1))?;
        trainers.push((spec.clone(), runs_dir.join(slug(i, spec)), t));
    }
    if !a.quiet {
        let t = &trainers[0].2;
        eprintln!(
            "optlab compare: {} optimizers, {} on {}, {} steps each -> {}",
            trainers.len(),
            t.model().describe(),
            a.data,
            t.total_steps(),
            a.out.display()
        );
    }
    let mut results: Vec<(String, PathBuf, Summary)> = Vec::new();
    for (spec, dir, mut t) in trainers {
        let name = spec.split(':').next().unwrap_or(&spec).to_string();
        let mut progress = Progress::new(&name, a.quiet);
        let s = t
            .run(Some(&dir), &mut [&mut progress])
            .with_context(|| format!("training with {spec}"))?;
        plot_run(&dir)?;
        results.push((spec, dir, s));
    }
    write_report(&a, &results)?;
    println!("report: {}", a.out.join("report.md").display());
    println!(
        "plots:  {} {}",
        a.out.join("loss.png").display(),
        a.out.join("accuracy.png").display()
    );
    Ok(())
}

fn write_report(a: &CompareArgs, results: &[(String, PathBuf, Summary)]) -> Result<()> {
    let mut loss = Vec::new();
    let mut acc = Vec::new();
    for (spec, dir, _) in results {
        let c = run_curves(dir)?;
        loss.push(Series {
            name: spec.clone(),
            points: smooth(&c.train_loss, 0.9),
        });
        acc.push(Series {
            name: spec.clone(),
            points: c.val_accuracy,
        });
    }
    line_chart(
        &a.out.join("loss.png"),
        "Training loss (smoothed)",
        "step",
        "loss",
        &loss,
        true,
    )?;
    if acc.iter().any(|s| !s.points.is_empty()) {
        line_chart(
            &a.out.join("accuracy.png"),
            "Validation accuracy",
            "step",
            "accuracy",
            &acc,
            false,
        )?;
    }
    let first = &results[0].2;
    let mut md = String::new();
    writeln!(md, "# optlab compare\n")?;
    writeln!(
        md,
        "Data `{}`, model `{}` ({} parameters), schedule `{}`, {} steps of batch {}, seed {}.\n",
        first.data,
        first.model,
        first.num_params,
        first.schedule,
        first.steps,
        a.batch_size,
        a.seed
    )?;
    writeln!(md, "| optimizer | final train loss | val loss | val accuracy | best val accuracy | time (s) | samples/s |")?;
    writeln!(md, "|---|---|---|---|---|---|---|")?;
    let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.4}"));
    for (spec, _, s) in results {
        writeln!(
            md,
            "| `{spec}` | {:.4} | {} | {} | {} | {:.2} | {:.0} |",
            s.final_train_loss,
            f(s.val_loss),
            f(s.val_accuracy),
            f(s.best_val_accuracy),
            s.wall_time_s,
            s.samples_per_s
        )?;
    }
    writeln!(
        md,
        "\n![training loss](loss.png)\n\n![validation accuracy](accuracy.png)\n"
    )?;
    writeln!(
        md,
        "Each run's directory (config, metrics, model, optimizer state, plots) is under `runs/`."
    )?;
    for (spec, dir, _) in results {
        writeln!(md, "- `{spec}`: `{}`", rel(dir, &a.out))?;
    }
    let path = a.out.join("report.md");
    std::fs::write(&path, md).with_context(|| format!("cannot write {}", path.display()))?;
    print!("{}", table_only(results));
    Ok(())
}

fn rel(p: &Path, base: &Path) -> String {
    p.strip_prefix(base).unwrap_or(p).display().to_string()
}

fn table_only(results: &[(String, PathBuf, Summary)]) -> String {
    let mut s = format!(
        "{:<45} {:>10} {:>10} {:>8}\n",
        "optimizer", "train loss", "val acc", "time s"
    );
    for (spec, _, r) in results {
        let _ = writeln!(
            s,
            "{:<45} {:>10.4} {:>10} {:>8.2}",
            spec,
            r.final_train_loss,
            r.val_accuracy.map_or("-".into(), |v| format!("{v:.4}")),
            r.wall_time_s
        );
    }
    s
}
