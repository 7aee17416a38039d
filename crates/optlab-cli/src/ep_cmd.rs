//! `optlab ep`: holomorphic equilibrium propagation with Jacobian homeostasis (P31) on the embedded digits.
//! `grad-check` compares the EP estimates with the exact gradient over N, β and the weight asymmetry; `train`
//! trains the network by an EP estimate or by the exact gradient.

use crate::plot::line_chart;
use crate::rl_run::{resolve_run, resumable, Due, Session};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use optlab::ep::check::{sweep, CheckConfig};
use optlab::ep::grad::Estimator;
use optlab::ep::train::{EpConfig, EpTrainer, EpochReport, Rule};
use optlab::experiment::report::Series;
use optlab::train::run_dir::RunDirLock;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct EpArgs {
    #[command(subcommand)]
    pub what: EpWhat,
}

#[derive(Subcommand, Debug)]
pub enum EpWhat {
    /// The EP gradient estimate against the exact gradient (recurrent backpropagation) on a digits batch.
    #[command(
        after_help = "Example:\n  optlab ep grad-check --ns 0,1,2,4 --betas 0.05,0.5 --angles 0,45,90 --out runs/ep-check\n\nThe network: 64 -> state layers --layers (the last is the output) with learnt feedback weights rotated from\nthe forward ones by --angles degrees (0 symmetric, 90 independent), u <- G(sigma(u)), sigma(z) = 1/(1+e^(2-4z)),\n--t1 free steps, --t2 steps per nudge. N = 0 is the exact derivative, 1 classic EP, N >= 2 the holomorphic\nestimate from nudges beta e^(2 pi i k/N). With --homeostasis-steps each angle is also checked after that many\nsteps of gradient descent on the homeostatic penalty. Reports the cosine and norm ratio of the weight\ngradients and the mean per-sample cosine in neuron space; writes DIR/summary.json and cosine.png."
    )]
    GradCheck(GradCheckArgs),
    /// Train on the digits by an EP estimate or by the exact gradient.
    #[command(
        after_help = "Examples:\n  optlab ep train --n 2 --beta 0.5 --angle 0 --out runs/ep-sym\n  optlab ep train --n 2 --angle 90 --homeostasis 1 --out runs/ep-homeo\n  optlab ep train --rule rbp --angle 90 --out runs/rbp\n  optlab ep train --rule bp --out runs/bp\n\nThe digits split 80/20 by --seed. Writes DIR/metrics.jsonl (per epoch: train loss, test accuracy, the\nestimate's cosine and norm ratio against the exact gradient on the epoch's last batch, the asymmetry\n|K - B^T|^2/D), summary.json and accuracy.png."
    )]
    Train(TrainArgs),
}

#[derive(Args, Debug)]
pub struct GradCheckArgs {
    #[arg(long, value_delimiter = ',', default_values_t = vec![128, 10])]
    layers: Vec<usize>,
    #[arg(long, value_delimiter = ',', default_values_t = vec![0, 1, 2, 4, 6])]
    ns: Vec<usize>,
    #[arg(long, value_delimiter = ',', default_values_t = vec![0.05, 0.5])]
    betas: Vec<f64>,
    #[arg(long, value_delimiter = ',', default_values_t = vec![0.0, 45.0, 90.0])]
    angles: Vec<f64>,
    #[arg(long, default_value_t = 200)]
    homeostasis_steps: usize,
    /// The fraction of the asymmetry K - B^T each homeostasis step removes in expectation (step eta D/4).
    #[arg(long, default_value_t = 0.25)]
    homeostasis_lr: f64,
    #[arg(long, default_value_t = 50)]
    batch_size: usize,
    #[arg(long, default_value_t = 150)]
    t1: usize,
    #[arg(long, default_value_t = 20)]
    t2: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct TrainArgs {
    /// ep (an EP estimate), rbp (the exact gradient at the fixed point) or bp (the paper's baseline:
    /// backpropagation through --t2 steps from the fixed point).
    #[arg(long, default_value = "ep")]
    rule: String,
    /// Nudges N (0 exact derivative, 1 classic EP, >= 2 holomorphic).
    #[arg(long, default_value_t = 2)]
    n: usize,
    #[arg(long, default_value_t = 0.5)]
    beta: f64,
    #[arg(long, default_value_t = 0.0)]
    angle: f64,
    /// Homeostasis weight lambda (0: off).
    #[arg(long, default_value_t = 0.0)]
    homeostasis: f64,
    /// Gaussian probes per sample for the homeostasis estimate.
    #[arg(long, default_value_t = 5)]
    probes: usize,
    #[arg(long, value_delimiter = ',', default_values_t = vec![128, 10])]
    layers: Vec<usize>,
    #[arg(long, default_value_t = 150)]
    t1: usize,
    #[arg(long, default_value_t = 20)]
    t2: usize,
    #[arg(long, default_value_t = 50)]
    batch_size: usize,
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    #[arg(long, default_value = "sgd:lr=0.01,momentum=0.9")]
    optimizer: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Epochs between checkpoints.
    #[arg(long, default_value_t = 1)]
    checkpoint_every: u64,
    /// Checkpoint and stop after this many epochs (continue with --resume).
    #[arg(long)]
    stop_after: Option<u64>,
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in DIR from its latest checkpoint (its recorded flags).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["rule", "n", "beta", "angle", "homeostasis", "probes", "layers", "t1", "t2", "batch_size", "epochs", "optimizer", "seed", "checkpoint_every", "out"])]
    resume: Option<PathBuf>,
    #[arg(long)]
    #[serde(skip)]
    json: bool,
    #[arg(long)]
    #[serde(skip)]
    quiet: bool,
}

resumable!(TrainArgs: stop_after, json, quiet);

pub fn run(a: EpArgs) -> Result<()> {
    match a.what {
        EpWhat::GradCheck(g) => grad_check(g),
        EpWhat::Train(t) => train_cmd(t),
    }
}

fn grad_check(a: GradCheckArgs) -> Result<()> {
    let cfg = CheckConfig {
        layers: a.layers.clone(),
        ns: a.ns.clone(),
        betas: a.betas.clone(),
        angles: a.angles.clone(),
        homeostasis_steps: a.homeostasis_steps,
        homeostasis_lr: a.homeostasis_lr,
        batch_size: a.batch_size,
        t1: a.t1,
        t2: a.t2,
        seed: a.seed,
    };
    let rows = sweep(&cfg, &mut |_| {})?;
    let summary = json!({"layers": a.layers, "t1": a.t1, "t2": a.t2, "batch_size": a.batch_size, "seed": a.seed, "rows": rows});
    if let Some(out) = &a.out {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        let _lock = RunDirLock::acquire(out)?;
        optlab::tensor_io::write_atomic(
            &out.join("summary.json"),
            format!("{summary:#}\n").as_bytes(),
        )?;
        let mut series: Vec<Series> = Vec::new();
        for r in rows.iter().filter(|r| r.n > 0) {
            let name = format!(
                "angle {}{} beta {}",
                r.angle,
                if r.homeostasis { " +homeo" } else { "" },
                r.beta
            );
            let point = (r.n as f64, (1.0 - r.agreement.cosine).max(1e-16));
            match series.iter_mut().find(|s| s.name == name) {
                Some(s) => s.points.push(point),
                None => series.push(Series {
                    name,
                    points: vec![point],
                }),
            }
        }
        if !series.is_empty() {
            line_chart(
                &out.join("cosine.png"),
                "EP estimate vs the exact gradient",
                "nudges N",
                "1 - cosine",
                &series,
                true,
            )?;
        }
    }
    if a.json {
        println!("{summary}");
        return Ok(());
    }
    println!(
        "{:>6} {:>6} {:>10} {:>10} {:>3} {:>6} {:>10} {:>10} {:>12}",
        "angle", "homeo", "asymmetry", "fp resid", "N", "beta", "cosine", "norm", "neuron cos"
    );
    for r in &rows {
        println!(
            "{:>6} {:>6} {:>10.4} {:>10.1e} {:>3} {:>6} {:>10.6} {:>10.4} {:>12.6}",
            r.angle,
            r.homeostasis,
            r.asymmetry,
            r.fixed_point_residual,
            r.n,
            r.beta,
            r.agreement.cosine,
            r.agreement.norm_ratio,
            r.agreement.neuron_cosine
        );
    }
    Ok(())
}

fn train_cmd(a: TrainArgs) -> Result<()> {
    let (a, out) = resolve_run(a, "ep train")?;
    if a.stop_after == Some(0) {
        bail!("--stop-after must be at least 1 epoch");
    }
    let rule = match a.rule.as_str() {
        "ep" => Rule::Ep {
            estimator: Estimator::from_n(a.n),
            beta: a.beta,
        },
        "rbp" => Rule::Rbp,
        "bp" => Rule::Bptt,
        other => bail!("--rule {other}: available: ep, rbp, bp"),
    };
    if let Rule::Ep { estimator, beta } = rule {
        if estimator != Estimator::Exact && !(beta.is_finite() && beta > 0.0) {
            bail!("--beta must be a positive number, not {beta}");
        }
    }
    optlab::optim::from_spec(&a.optimizer)?;
    let cfg = EpConfig {
        layers: a.layers.clone(),
        rule,
        t1: a.t1,
        t2: a.t2,
        angle: a.angle,
        homeostasis: a.homeostasis,
        probes: a.probes,
        batch_size: a.batch_size,
        epochs: a.epochs,
        optimizer: a.optimizer.clone(),
        seed: a.seed,
    };
    let mut t = EpTrainer::new(cfg)?;
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let config = toml::to_string(&TrainArgs {
        resume: None,
        stop_after: None,
        ..a.clone()
    })
    .context("recording the flags")?;
    let mut s = Session::open(
        &out,
        a.resume.is_some(),
        &config,
        "metrics.jsonl",
        "ep",
        a.epochs as u64,
        a.checkpoint_every,
        a.stop_after,
        a.quiet,
    )?;
    if let Some(r) = &s.resume {
        t.load(r)?;
    }
    s.bar.set_position(t.epoch as u64);
    while t.epoch < a.epochs {
        let r = t.run_epoch()?;
        s.line(&json!(r))?;
        s.bar.set_position(r.epoch as u64);
        s.bar.set_message(format!(
            "acc {:.3} cos {:.3}",
            r.test_accuracy, r.agreement.cosine
        ));
        let epoch = t.epoch as u64;
        if t.epoch < a.epochs && s.checkpoint_if_due(epoch, |w| t.save(w))? == Due::Stop {
            s.stopped_after(&format!("epoch {epoch} of {}", a.epochs), "ep train");
            return Ok(());
        }
    }
    s.bar.finish_and_clear();
    let named: Vec<(String, candle_core::Tensor)> = t
        .params()
        .iter()
        .map(|p| (p.name.clone(), p.tensor().clone()))
        .collect();
    optlab::tensor_io::write_safetensors(&out.join("model.safetensors"), &named, None)?;
    let text = std::fs::read_to_string(out.join("metrics.jsonl"))?;
    let reports: Vec<EpochReport> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let last = reports.last().context("no epoch ran")?;
    let summary = json!({
        "rule": a.rule, "n": a.n, "beta": a.beta, "angle": a.angle, "homeostasis": a.homeostasis, "layers": a.layers,
        "epochs": a.epochs, "seed": a.seed, "test_accuracy": last.test_accuracy, "agreement": last.agreement,
        "asymmetry": last.asymmetry, "fixed_point_residual": last.fixed_point_residual, "seconds": s.seconds(),
    });
    optlab::tensor_io::write_atomic(
        &out.join("summary.json"),
        format!("{summary:#}\n").as_bytes(),
    )?;
    let pts =
        |f: &dyn Fn(&EpochReport) -> f64| reports.iter().map(|r| (r.epoch as f64, f(r))).collect();
    line_chart(
        &out.join("accuracy.png"),
        "EP on the digits",
        "epoch",
        "value",
        &[
            Series {
                name: "test accuracy".into(),
                points: pts(&|r| r.test_accuracy),
            },
            Series {
                name: "cosine to the gradient".into(),
                points: pts(&|r| r.agreement.cosine),
            },
        ],
        false,
    )?;
    if a.json {
        println!("{summary}");
    } else {
        let rule = match a.rule.as_str() {
            "ep" => format!("ep (N {}, beta {})", a.n, a.beta),
            "bp" => format!("bp (through {} steps)", a.t2),
            other => other.to_string(),
        };
        println!(
            "{rule}, angle {}, homeostasis {}: test accuracy {:.3}, cosine to the exact gradient {:.4}, asymmetry {:.4} ({:.0} s); {}",
            a.angle, a.homeostasis, last.test_accuracy, last.agreement.cosine, last.asymmetry,
            s.seconds(), out.display()
        );
    }
    Ok(())
}
