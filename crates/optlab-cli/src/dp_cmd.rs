//! `optlab dp run`: DP-GD, DP-SGD, DIFF2 (P09) and private SpiderBoost (P21) on a finite sum held by workers,
//! in-process (`--workers W`) or one per MPI rank (`mpirun -n R optlab dp run --distributed ...`).

use crate::plot::{line_chart, Series};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use optlab::data::{load_spec, Dataset};
use optlab::nn::ModelSpec;
use optlab::privacy::dp_methods::{self, Algo, DpBudget, DpConfig, DpOutcome, RoundRecord};
use optlab::privacy::finite_sum::{FiniteSum, LogisticNonconvex, ModelSum};
use optlab::tensor_io::write_atomic;
use optlab::train::run_dir::RunDirLock;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct DpArgs {
    #[command(subcommand)]
    pub what: DpWhat,
}

#[derive(Subcommand, Debug)]
pub enum DpWhat {
    /// A private first-order method on a data set: the loss and squared gradient norm ‖∇F‖² of the iterates
    /// (measured on all data, as the papers report), ε spent, per-round communication.
    #[command(
        after_help = "Examples:\n  optlab dp run --algo diff2 --epsilon 3 --out runs/diff2\n  optlab dp run --algo dp-gd --model logreg:lambda=0.01 --n 800 --epsilon 1 --out runs/dpgd --json\n  optlab dp run --algo spider --model mlp:hidden=16,act=tanh --batch 128 --workers 4 --out runs/spider\n  mpirun -n 4 optlab dp run --algo diff2 --distributed --out runs/mpi\n\nWrites DIR/config.json, DIR/metrics.jsonl (one evaluation per line), DIR/summary.json,\nDIR/params.json (the last and the output iterate) and DIR/grad_norm.png. The objective is the\ndata's mean loss plus the model's regularizer (logreg: lambda * sum x^2/(1+x^2)); --n keeps a\nseeded random subset of n examples."
    )]
    Run(Box<RunArgs>),
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// dp-gd, dp-sgd, diff2 (P09) or spider (P21, private SpiderBoost).
    #[arg(long)]
    algo: String,
    /// The data set (a spec as for `optlab train --data`).
    #[arg(long, default_value = "digits")]
    data: String,
    /// Keep a seeded random subset of this many examples.
    #[arg(long)]
    n: Option<usize>,
    /// `logreg[:lambda=L]` (binary: lower half of the classes against the upper half; default lambda 0.001) or
    /// a trainer model such as `mlp:hidden=16,act=tanh` (trained in f64).
    #[arg(long, default_value = "logreg")]
    model: String,
    /// Target ε for the whole run (the noise is calibrated); exclusive with --noise.
    #[arg(long, conflicts_with = "noise")]
    epsilon: Option<f64>,
    /// The noise multiplier σ of every round instead of a target ε.
    #[arg(long)]
    noise: Option<f64>,
    #[arg(long, default_value_t = 1e-5)]
    delta: f64,
    /// Gradient steps.
    #[arg(long, default_value_t = 200)]
    rounds: u64,
    #[arg(long, default_value_t = 0.5)]
    lr: f64,
    /// C1: the clip radius of per-example gradients (`inf`: none).
    #[arg(long, default_value_t = 1.0)]
    clip: f64,
    /// C2: differences are clipped to C2 * ||x_r - x_{r-1}|| (`inf`: none).
    #[arg(long, default_value_t = 1.0)]
    diff_clip: f64,
    /// Rounds between full-gradient anchors (DIFF2's T, SpiderBoost's q).
    #[arg(long, default_value_t = 10)]
    period: u64,
    /// Expected examples per sampled round (DP-SGD, SpiderBoost's differences), over all workers.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// The anchors' share of the privacy budget when calibrating from --epsilon.
    #[arg(long, default_value_t = 0.8)]
    anchor_share: f64,
    /// In-process workers, each with its own shard of the data.
    #[arg(long, default_value_t = 1, conflicts_with = "distributed")]
    workers: usize,
    /// One worker per MPI rank (start with mpirun); rank 0 writes DIR and prints.
    #[arg(long)]
    distributed: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Rounds between evaluations of the loss and gradient norm.
    #[arg(long, default_value_t = 10)]
    eval_every: u64,
    #[arg(long)]
    out: PathBuf,
    /// The summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// `logreg[:lambda=L]`, or a trainer model.
enum Objective {
    Logreg { lambda: f64 },
    Model(ModelSpec),
}

fn parse_objective(s: &str) -> Result<Objective> {
    if let Some(rest) = s.strip_prefix("logreg") {
        let mut lambda = 1e-3;
        let rest = rest.strip_prefix(':').unwrap_or(rest);
        for kv in rest.split(',').filter(|k| !k.is_empty()) {
            match kv.split_once('=') {
                Some(("lambda", v)) => {
                    lambda = v
                        .parse()
                        .with_context(|| format!("logreg: lambda `{v}` is not a number"))?
                }
                _ => anyhow::bail!("logreg: unknown setting `{kv}`; valid: lambda=L"),
            }
        }
        return Ok(Objective::Logreg { lambda });
    }
    Ok(Objective::Model(ModelSpec::parse(s)?))
}

fn build(obj: &Objective, shard: Dataset, seed: u64) -> optlab::Result<Box<dyn FiniteSum>> {
    Ok(match obj {
        Objective::Logreg { lambda } => Box::new(LogisticNonconvex::new(&shard, *lambda)?),
        Objective::Model(spec) => Box::new(ModelSum::new(spec, shard, seed)?),
    })
}

pub fn run(a: DpArgs) -> Result<()> {
    match a.what {
        DpWhat::Run(r) => run_method(*r),
    }
}

fn config(a: &RunArgs) -> Result<DpConfig> {
    let mut c = DpConfig::new(a.algo.parse::<Algo>()?);
    c.rounds = a.rounds;
    c.lr = a.lr;
    c.clip = a.clip;
    c.diff_clip = a.diff_clip;
    c.period = a.period;
    c.batch = a.batch;
    c.budget = match (a.epsilon, a.noise) {
        (_, Some(s)) => DpBudget::Noise(s),
        (Some(e), None) => DpBudget::Epsilon(e),
        (None, None) => {
            anyhow::bail!("dp: give the budget as --epsilon E or the noise as --noise S")
        }
    };
    c.delta = a.delta;
    c.anchor_share = a.anchor_share;
    c.seed = a.seed;
    c.eval_every = a.eval_every;
    c.validate()?;
    Ok(c)
}

fn load(a: &RunArgs) -> Result<Dataset> {
    let data = load_spec(&a.data, a.seed)?;
    Ok(match a.n {
        None => data,
        Some(n) if n == 0 || n > data.len() => {
            anyhow::bail!(
                "--n must lie in 1..={} (the examples of `{}`), got {n}",
                data.len(),
                a.data
            )
        }
        Some(n) => {
            let perm = optlab::rng::permutation(
                data.len(),
                &mut optlab::rng::rng_for(a.seed, optlab::rng::Stream::Split, 0x5e7),
            );
            data.subset(&perm[..n])
        }
    })
}

fn run_method(a: RunArgs) -> Result<()> {
    let cfg = config(&a)?;
    let obj = parse_objective(&a.model)?;
    let data = load(&a)?;
    let n = data.len();
    // Checked before any worker starts: the calibration (and its errors) are the same on every worker.
    let cal = dp_methods::calibrate(&cfg, n)?;
    if a.distributed {
        return run_mpi(&a, &cfg, &cal, &obj, &data);
    }
    optlab::distributed::shards(n, a.workers, dp_methods::MIN_EXAMPLES_PER_WORKER)?;
    let _lock = RunDirLock::acquire(&a.out)?;
    let mut log = start(&a, &cfg, n, a.workers, &cal)?;
    let log_mutex = std::sync::Mutex::new(&mut log);
    let t0 = std::time::Instant::now();
    let out = dp_methods::run_local(
        &data,
        a.workers,
        &cfg,
        |s| build(&obj, s, a.seed),
        |r| {
            if let Ok(mut l) = log_mutex.lock() {
                l.record(r, a.json);
            }
        },
    )?;
    let seconds = t0.elapsed().as_secs_f64();
    log.finish(&a, &cfg, n, a.workers, &out, seconds)
}

fn run_mpi(
    a: &RunArgs,
    cfg: &DpConfig,
    cal: &dp_methods::Calibration,
    obj: &Objective,
    data: &Dataset,
) -> Result<()> {
    let comm = crate::mpi_world::join()?;
    let (rank, workers) = (comm.rank(), comm.size());
    let n = data.len();
    let shard = dp_methods::shard(data, workers, rank, cfg.seed)?;
    let _lock = if rank == 0 {
        Some(RunDirLock::acquire(&a.out)?)
    } else {
        None
    };
    let mut log = if rank == 0 {
        Some(start(a, cfg, n, workers, cal)?)
    } else {
        None
    };
    let f = build(obj, shard, a.seed)?;
    let t0 = std::time::Instant::now();
    let out = dp_methods::run(comm.as_ref(), f.as_ref(), n, cfg, cal, |r| {
        if let Some(l) = log.as_mut() {
            l.record(r, a.json);
        }
    })?;
    let seconds = t0.elapsed().as_secs_f64();
    match log {
        Some(l) => l.finish(a, cfg, n, workers, &out, seconds),
        None => Ok(()),
    }
}

/// The run directory's metrics log and the terminal lines.
struct Log {
    metrics: std::fs::File,
    records: Vec<RoundRecord>,
}

fn start(
    a: &RunArgs,
    cfg: &DpConfig,
    n: usize,
    workers: usize,
    cal: &dp_methods::Calibration,
) -> Result<Log> {
    let conf = json!({
        "algo": cfg.algo.to_string(), "data": a.data, "n": n, "model": a.model, "rounds": cfg.rounds,
        "lr": cfg.lr, "clip": cfg.clip, "diff_clip": cfg.diff_clip, "period": cfg.period, "batch": cfg.batch,
        "epsilon_target": a.epsilon, "noise": a.noise, "delta": cfg.delta, "anchor_share": cfg.anchor_share,
        "workers": workers, "distributed": a.distributed, "seed": cfg.seed,
        "sigma_anchor": cal.sigma_anchor, "sigma_difference": cal.sigma_difference,
        "q_anchor": cal.q_anchor, "q_difference": cal.q_difference,
        "anchors": cal.anchors, "differences": cal.differences,
    });
    write_atomic(
        &a.out.join("config.json"),
        serde_json::to_string_pretty(&conf)?.as_bytes(),
    )?;
    if cfg.delta >= 1.0 / n as f64 {
        eprintln!(
            "warning: delta {} is not below 1/n = {:.2e} ({n} examples); such a delta allows releasing an example outright",
            cfg.delta,
            1.0 / n as f64
        );
    }
    if !a.json {
        println!(
            "{} on {} ({n} examples, {workers} worker{}), {}: sigma {:.4} on anchors ({} rounds, q = {:.4}), {:.4} on differences ({} rounds, q = {:.4})",
            cfg.algo,
            a.data,
            if workers == 1 { "" } else { "s" },
            a.model,
            cal.sigma_anchor,
            cal.anchors,
            cal.q_anchor,
            cal.sigma_difference,
            cal.differences,
            cal.q_difference
        );
    }
    let metrics = std::fs::File::create(a.out.join("metrics.jsonl"))
        .with_context(|| format!("cannot write {}", a.out.join("metrics.jsonl").display()))?;
    Ok(Log {
        metrics,
        records: Vec::new(),
    })
}

impl Log {
    fn record(&mut self, r: &RoundRecord, quiet: bool) {
        let line = json!({"round": r.round, "loss": r.loss, "grad_norm_sq": r.grad_norm_sq, "epsilon": r.epsilon});
        // A full disk loses a log line, not the run; the summary is written atomically at the end.
        let _ = writeln!(self.metrics, "{line}");
        if !quiet {
            println!(
                "round {:>6}  loss {:.6}  |grad F|^2 {:.4e}  epsilon {:.4}",
                r.round, r.loss, r.grad_norm_sq, r.epsilon
            );
        }
        self.records.push(*r);
    }

    fn finish(
        self,
        a: &RunArgs,
        cfg: &DpConfig,
        n: usize,
        workers: usize,
        out: &DpOutcome,
        seconds: f64,
    ) -> Result<()> {
        let last = out
            .records
            .last()
            .copied()
            .expect("the last round is recorded");
        let summary = json!({
            "algo": cfg.algo.to_string(), "n": n, "workers": workers, "rounds": cfg.rounds,
            "epsilon": out.epsilon, "delta": cfg.delta,
            "sigma_anchor": out.calibration.sigma_anchor, "sigma_difference": out.calibration.sigma_difference,
            "final_loss": last.loss, "final_grad_norm_sq": last.grad_norm_sq,
            "output_round": out.output_round, "output_loss": out.output_record.loss,
            "output_grad_norm_sq": out.output_record.grad_norm_sq,
            "clipped_fraction": out.clipped_fraction, "bytes_per_round_per_worker": out.bytes_per_round,
            "seconds": seconds, "seconds_per_round": seconds / cfg.rounds as f64,
        });
        write_atomic(
            &a.out.join("summary.json"),
            serde_json::to_string_pretty(&summary)?.as_bytes(),
        )?;
        let params =
            json!({"last": out.last, "output": out.output, "output_round": out.output_round});
        write_atomic(&a.out.join("params.json"), params.to_string().as_bytes())?;
        plot(&a.out, cfg, &self.records)?;
        if a.json {
            println!("{summary}");
        } else {
            println!(
                "{}: |grad F|^2 {:.4e} (last iterate), {:.4e} at the output (round {}); epsilon {:.4} at delta {:e}; {:.2} ms per round; {} bytes per round and worker",
                cfg.algo,
                last.grad_norm_sq,
                out.output_record.grad_norm_sq,
                out.output_round,
                out.epsilon,
                cfg.delta,
                1e3 * seconds / cfg.rounds as f64,
                out.bytes_per_round
            );
        }
        Ok(())
    }
}

fn plot(dir: &Path, cfg: &DpConfig, records: &[RoundRecord]) -> Result<()> {
    line_chart(
        &dir.join("grad_norm.png"),
        &format!("{}: squared gradient norm", cfg.algo),
        "round",
        "|grad F|^2",
        &[Series {
            name: String::new(),
            points: records
                .iter()
                .map(|r| (r.round as f64, r.grad_norm_sq))
                .collect(),
        }],
        true,
    )
}
