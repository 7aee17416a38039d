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
    after_help = "Examples:\n  optlab compare --optimizer sgd:lr=0.1,momentum=0.9 --optimizer adamw:lr=1e-3 --schedule cosine:warmup=20 --epochs 10 --out cmp\n  optlab compare --task charlm --model transformer:norm=ln --model transformer:norm=pn --model transformer:norm=bn --seed 0,1,2 --out p12\n\nEvery model runs with every optimizer and every seed. With several seeds the report gives mean ± std and the\ncurves are averaged over seeds. A run whose loss becomes NaN is reported as diverged; the others go on."
)]
pub struct CompareArgs {
    /// An optimizer spec; repeat the flag for each optimizer to compare [default: the task's].
    #[arg(long = "optimizer")]
    pub optimizers: Vec<String>,
    /// A model spec; repeat the flag for each model to compare [default: the task's].
    #[arg(long = "model")]
    pub models: Vec<String>,
    /// supervised (default) or charlm (see `optlab train --help`); sets the defaults of the other flags.
    #[arg(long)]
    pub task: Option<String>,
    /// Learning-rate schedule applied to every run [default: the task's].
    #[arg(long)]
    pub schedule: Option<String>,
    /// Data spec (see `optlab train --help`) [default: the task's].
    #[arg(long)]
    pub data: Option<String>,
    /// Passes over the training split [default: the task's].
    #[arg(long)]
    pub epochs: Option<u64>,
    /// Optimizer steps (overrides --epochs).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Examples per step [default: the task's].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Evaluate every N steps (0: every epoch) [default: the task's].
    #[arg(long)]
    pub eval_every: Option<u64>,
    /// Seeds, comma-separated (same data, split, init and batches across configurations for one seed).
    #[arg(
        long = "seed",
        alias = "seeds",
        value_delimiter = ',',
        default_value = "0"
    )]
    pub seeds: Vec<u64>,
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
        models: Vec::new(),
        task: None,
        schedule: None,
        data: None,
        epochs: Some(a.epochs),
        steps: None,
        batch_size: None,
        eval_every: None,
        seeds: vec![0],
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

/// One compared configuration: its label and the outcome of each seed's run.
struct Outcome {
    label: String,
    runs: Vec<(u64, PathBuf, std::result::Result<Summary, String>)>,
}

impl Outcome {
    /// `f` of every run that finished.
    fn values(&self, f: &dyn Fn(&Summary) -> Option<f64>) -> Vec<f64> {
        self.runs
            .iter()
            .filter_map(|(_, _, r)| r.as_ref().ok().and_then(f))
            .collect()
    }

    /// Runs that diverged.
    fn diverged(&self) -> usize {
        self.runs.iter().filter(|(_, _, r)| r.is_err()).count()
    }
}

pub fn compare(a: CompareArgs) -> Result<()> {
    let base = TrainConfig::for_task(a.task.as_deref().unwrap_or("supervised"))?;
    let models = if a.models.is_empty() {
        vec![base.model.clone()]
    } else {
        a.models.clone()
    };
    let optimizers = if a.optimizers.is_empty() {
        vec![base.optimizer.clone()]
    } else {
        a.optimizers.clone()
    };
    anyhow::ensure!(!a.seeds.is_empty(), "give at least one seed");
    let label = |m: &str, o: &str| match (models.len() > 1, optimizers.len() > 1) {
        (true, true) => format!("{m} | {o}"),
        (true, false) => m.to_string(),
        _ => o.to_string(),
    };
    let runs_dir = a.out.join("runs");
    if runs_dir.exists() {
        std::fs::remove_dir_all(&runs_dir)
            .with_context(|| format!("cannot clear {}", runs_dir.display()))?;
    }
    std::fs::create_dir_all(&runs_dir)
        .with_context(|| format!("cannot create {}", runs_dir.display()))?;
    // Build every trainer first so a typo in the last spec fails before any training.
    let mut planned = Vec::new();
    for m in &models {
        for o in &optimizers {
            let i = planned.len();
            let mut trainers = Vec::new();
            for &seed in &a.seeds {
                let mut cfg = TrainConfig {
                    model: m.clone(),
                    optimizer: o.clone(),
                    seed,
                    ..base.clone()
                };
                if let Some(v) = &a.data {
                    cfg.data = v.clone();
                }
                if let Some(v) = &a.schedule {
                    cfg.schedule = v.clone();
                }
                if let Some(v) = a.batch_size {
                    cfg.batch_size = v;
                }
                if let Some(v) = a.eval_every {
                    cfg.eval_every = v;
                }
                if let Some(e) = a.epochs {
                    (cfg.epochs, cfg.steps) = (Some(e), None);
                }
                if a.steps.is_some() {
                    cfg.steps = a.steps;
                }
                let t = Trainer::new(cfg).with_context(|| label(m, o))?;
                let name = if models.len() > 1 { m } else { o };
                let dir = runs_dir.join(slug(i, name));
                let dir = if a.seeds.len() > 1 {
                    dir.join(format!("seed{seed}"))
                } else {
                    dir
                };
                trainers.push((seed, dir, t));
            }
            planned.push((label(m, o), trainers));
        }
    }
    if !a.quiet {
        let t = &planned[0].1[0].2;
        eprintln!(
            "optlab compare: {} configurations x {} seeds, {} on {}, {} steps each -> {}",
            planned.len(),
            a.seeds.len(),
            t.model().describe(),
            t.config().data,
            t.total_steps(),
            a.out.display()
        );
    }
    let batch = planned[0].1[0].2.config().batch_size;
    let mut outcomes = Vec::new();
    for (label, trainers) in planned {
        let mut runs = Vec::new();
        for (seed, dir, mut t) in trainers {
            let name = label.split(':').next().unwrap_or(&label).to_string();
            let mut progress = Progress::new(&name, a.quiet);
            let r = match t.run(Some(&dir), &mut [&mut progress]) {
                Ok(s) => {
                    plot_run(&dir)?;
                    Ok(s)
                }
                Err(optlab::Error::NonFinite(msg)) => Err(msg),
                Err(e) => return Err(e).with_context(|| format!("training {label}")),
            };
            runs.push((seed, dir, r));
        }
        outcomes.push(Outcome { label, runs });
    }
    let kind = match (models.len() > 1, optimizers.len() > 1) {
        (true, true) => "model | optimizer",
        (true, false) => "model",
        _ => "optimizer",
    };
    write_report(&a, kind, batch, &outcomes)?;
    println!("report: {}", a.out.join("report.md").display());
    println!(
        "plots:  {} {} {}",
        a.out.join("loss.png").display(),
        a.out.join("val_loss.png").display(),
        a.out.join("accuracy.png").display()
    );
    Ok(())
}

/// Pointwise mean over runs of curves sampled at the same steps (the shortest run's length).
fn mean_curve(curves: &[Vec<(f64, f64)>]) -> Vec<(f64, f64)> {
    let n = curves.iter().map(Vec::len).min().unwrap_or(0);
    (0..n)
        .map(|i| {
            let y = curves.iter().map(|c| c[i].1).sum::<f64>() / curves.len() as f64;
            (curves[0][i].0, y)
        })
        .collect()
}

/// `mean ± std` (sample std) of the values, or the value alone for one run; `-` for none.
fn mean_std(v: &[f64]) -> String {
    match v.len() {
        0 => "-".into(),
        1 => format!("{:.4}", v[0]),
        n => {
            let m = v.iter().sum::<f64>() / n as f64;
            let s = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
            format!("{m:.4} ± {s:.4}")
        }
    }
}

fn write_report(a: &CompareArgs, kind: &str, batch: usize, outcomes: &[Outcome]) -> Result<()> {
    let (mut loss, mut val, mut acc) = (Vec::new(), Vec::new(), Vec::new());
    for o in outcomes {
        let mut curves = Vec::new();
        for (_, dir, r) in &o.runs {
            if r.is_ok() {
                curves.push(run_curves(dir)?);
            }
        }
        let series = |f: &dyn Fn(&crate::plot::RunCurves) -> Vec<(f64, f64)>| Series {
            name: o.label.clone(),
            points: mean_curve(&curves.iter().map(f).collect::<Vec<_>>()),
        };
        loss.push(series(&|c| smooth(&c.train_loss, 0.9)));
        val.push(series(&|c| c.val_loss.clone()));
        acc.push(series(&|c| c.val_accuracy.clone()));
    }
    let seeds = if a.seeds.len() > 1 {
        format!(", mean over {} seeds", a.seeds.len())
    } else {
        String::new()
    };
    let charts = [
        (
            &loss,
            "loss.png",
            format!("Training loss (smoothed{seeds})"),
            "loss",
            true,
        ),
        (
            &val,
            "val_loss.png",
            format!("Validation loss{seeds}"),
            "loss",
            true,
        ),
        (
            &acc,
            "accuracy.png",
            format!("Validation accuracy{seeds}"),
            "accuracy",
            false,
        ),
    ];
    let mut drawn = Vec::new();
    for (series, file, title, y, log) in charts {
        // A run shorter than the logging interval has no training curve; draw what there is.
        if series.iter().any(|s| !s.points.is_empty()) {
            line_chart(&a.out.join(file), &title, "step", y, series, log)?;
            drawn.push(file);
        }
    }
    let first = outcomes
        .iter()
        .flat_map(|o| o.runs.iter())
        .find_map(|(_, _, r)| r.as_ref().ok());
    let mut md = String::new();
    writeln!(md, "# optlab compare\n")?;
    if let Some(f) = first {
        writeln!(
            md,
            "Data `{}`, schedule `{}`, {} steps of batch {}, seeds {:?}.\n",
            f.data, f.schedule, f.steps, batch, a.seeds
        )?;
    }
    writeln!(md, "| {kind} | final train loss | val loss | val accuracy | best val accuracy | time (s) | samples/s |")?;
    writeln!(md, "|---|---|---|---|---|---|---|")?;
    for o in outcomes {
        let col = |f: &dyn Fn(&Summary) -> Option<f64>| mean_std(&o.values(f));
        let diverged = o.diverged();
        let note = if diverged > 0 {
            format!(" ({diverged} of {} runs diverged)", o.runs.len())
        } else {
            String::new()
        };
        writeln!(
            md,
            "| `{}`{note} | {} | {} | {} | {} | {} | {} |",
            o.label,
            col(&|s| Some(s.final_train_loss)),
            col(&|s| s.val_loss),
            col(&|s| s.val_accuracy),
            col(&|s| s.best_val_accuracy),
            col(&|s| Some(s.wall_time_s)),
            col(&|s| Some(s.samples_per_s))
        )?;
    }
    writeln!(md)?;
    for f in &drawn {
        writeln!(
            md,
            "![{}]({f})\n",
            f.trim_end_matches(".png").replace('_', " ")
        )?;
    }
    writeln!(
        md,
        "Each run's directory (config, metrics, model, optimizer state, plots) is under `runs/`."
    )?;
    for o in outcomes {
        for (seed, dir, r) in &o.runs {
            let status = match r {
                Ok(_) => String::new(),
                Err(e) => format!(" — diverged: {e}"),
            };
            writeln!(
                md,
                "- `{}` seed {seed}: `{}`{status}",
                o.label,
                rel(dir, &a.out)
            )?;
        }
    }
    let path = a.out.join("report.md");
    std::fs::write(&path, md).with_context(|| format!("cannot write {}", path.display()))?;
    print!("{}", table_only(kind, outcomes));
    Ok(())
}

fn rel(p: &Path, base: &Path) -> String {
    p.strip_prefix(base).unwrap_or(p).display().to_string()
}

fn table_only(kind: &str, outcomes: &[Outcome]) -> String {
    let mut s = format!(
        "{:<45} {:>10} {:>10} {:>10} {:>8}\n",
        kind, "train loss", "val loss", "val acc", "time s"
    );
    for o in outcomes {
        let mean = |f: &dyn Fn(&Summary) -> Option<f64>| {
            let v = o.values(f);
            if v.is_empty() {
                "-".to_string()
            } else {
                format!("{:.4}", v.iter().sum::<f64>() / v.len() as f64)
            }
        };
        let _ = writeln!(
            s,
            "{:<45} {:>10} {:>10} {:>10} {:>8}{}",
            o.label,
            mean(&|r| Some(r.final_train_loss)),
            mean(&|r| r.val_loss),
            mean(&|r| r.val_accuracy),
            mean(&|r| Some(r.wall_time_s)),
            if o.diverged() > 0 {
                format!("  ({} diverged)", o.diverged())
            } else {
                String::new()
            }
        );
    }
    s
}
