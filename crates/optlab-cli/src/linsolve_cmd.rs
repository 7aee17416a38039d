//! `optlab linsolve`: P18's deep conjugate direction method on the 2-D Poisson problem. `train` fits the direction
//! network on Ritz-vector right-hand sides of one grid (checkpointed, resumable); `bench` solves the same
//! right-hand sides by CG, IC(0)-PCG and DCDM on larger grids, with and without obstacles.

use crate::plot::{image_row, line_chart};
use crate::rl_run::{resolve_run, resumable, Due, Session};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use optlab::experiment::report::Series;
use optlab::linsolve::dcdm::{dcdm, NetDirection, PoissonSystem, TrainConfig, Trainer};
use optlab::linsolve::krylov::{cg, Stop};
use optlab::linsolve::net::DirectionNet;
use optlab::linsolve::poisson::Grid;
use optlab::linsolve::ritz::{ritz_rhs, RitzConfig};
use optlab::linsolve::run::{bench, test_rhs, BenchConfig, Rhs};
use optlab::train::snapshot::Writer;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct LinsolveArgs {
    #[command(subcommand)]
    pub what: LinsolveWhat,
}

#[derive(Subcommand, Debug)]
pub enum LinsolveWhat {
    /// Train DCDM's direction network on one grid (unsupervised: the residual after one step along its output).
    #[command(
        after_help = "Examples:\n  optlab linsolve train --grid 32 --steps 2000 --out runs/dcdm32\n  optlab linsolve train --grid 32 --obstacles 4 --optimizer adam:lr=1e-3 --out runs/dcdm32-obst\n  optlab linsolve train --resume runs/dcdm32\n\nThe right-hand sides are sums of --ritz-vectors Ritz vectors of the grid's Laplacian (Lanczos from A g) with\nN(0, 1) weights, the m/2 + theta of smallest Ritz value weighted 9x, normalized (the reference's\ndatasetcreate.py; theta defaults to m/20). Loss: mean over the batch of |b - A q (q.b)/(q.A q)|^2 with\nq = f(b). The network (2-D version of the reference's N = 64 model: 15 residual 3x3 convolutions with one\naverage pool, --filters channels) is fully convolutional and serves every even grid side. Writes\nDIR/config.toml, metrics.jsonl, model.safetensors, summary.json (with DCDM and CG iterations to 1e-4 on 5\nGaussian right-hand sides of the training grid) and loss.png; checkpoints every --checkpoint-every steps."
    )]
    Train(TrainArgs),
    /// Compare CG, IC(0)-PCG and DCDM (with --model) on the same right-hand sides: iterations and seconds to
    /// each tolerance.
    #[command(
        after_help = "Examples:\n  optlab linsolve bench --model runs/dcdm32 --sides 64,128 --obstacles 0,4 --out runs/bench\n  optlab linsolve bench --sides 256 --count 5 --json\n\nEvery solve starts from x = 0 and runs to the smallest --tols; the iterations and seconds to each\ntolerance are means over the right-hand sides that reached it. CG and PCG report the recurrence residual,\nDCDM the true one (as the reference). Right-hand sides: gaussian (N(0, 1) on the fluid cells) or ritz (drawn\nas the training set, from the test grid's Ritz vectors). Writes DIR/summary.json, residuals-<side>-<obstacles>.png\n(the first right-hand side's residual history per method) and fields.png (solid cells and CG's solution)."
    )]
    Bench(BenchArgs),
}

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct TrainArgs {
    /// Grid side n (n x n unknowns; even).
    #[arg(long, default_value_t = 32)]
    grid: usize,
    /// Solid disks placed in the grid (seeded by --seed).
    #[arg(long, default_value_t = 0)]
    obstacles: usize,
    /// Channels of the network's convolutions.
    #[arg(long, default_value_t = 16)]
    filters: usize,
    /// Lanczos steps m (Ritz vectors).
    #[arg(long, default_value_t = 256)]
    ritz_vectors: usize,
    /// theta: m/2 + theta low-end Ritz vectors weighted 9x (default m/20).
    #[arg(long)]
    theta: Option<usize>,
    /// Training right-hand sides.
    #[arg(long, default_value_t = 2000)]
    samples: usize,
    #[arg(long, default_value_t = 2000)]
    steps: usize,
    #[arg(long, default_value_t = 10)]
    batch_size: usize,
    #[arg(long, default_value = "adam:lr=1e-4")]
    optimizer: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 500)]
    checkpoint_every: u64,
    /// Checkpoint and stop after this many steps (continue with --resume).
    #[arg(long)]
    stop_after: Option<u64>,
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in DIR from its latest checkpoint (its recorded flags).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["grid", "obstacles", "filters", "ritz_vectors", "theta", "samples", "steps", "batch_size", "optimizer", "seed", "checkpoint_every", "out"])]
    resume: Option<PathBuf>,
    #[arg(long)]
    #[serde(skip)]
    json: bool,
    #[arg(long)]
    #[serde(skip)]
    quiet: bool,
}

resumable!(TrainArgs: stop_after, json, quiet);

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// A run directory of `optlab linsolve train` (or a model.safetensors); without it, only CG and IC-PCG.
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, value_delimiter = ',', default_values_t = vec![64, 128])]
    sides: Vec<usize>,
    #[arg(long, value_delimiter = ',', default_values_t = vec![0, 4])]
    obstacles: Vec<usize>,
    /// Right-hand sides per grid.
    #[arg(long, default_value_t = 20)]
    count: usize,
    /// gaussian or ritz.
    #[arg(long, default_value = "gaussian")]
    rhs: String,
    #[arg(long, value_delimiter = ',', default_values_t = vec![1e-4, 1e-6])]
    tols: Vec<f64>,
    #[arg(long, default_value_t = 2000)]
    max_iters: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
    #[arg(long)]
    quiet: bool,
}

pub fn run(a: LinsolveArgs) -> Result<()> {
    match a.what {
        LinsolveWhat::Train(t) => train(t),
        LinsolveWhat::Bench(b) => bench_cmd(b),
    }
}

fn grid_of(side: usize, obstacles: usize, seed: u64) -> Result<Grid> {
    if !side.is_multiple_of(2) {
        bail!("--grid {side}: DCDM's network pools by 2, so the grid side must be even");
    }
    Ok(Grid::with_obstacles(side, obstacles, seed)?)
}

fn train(t: TrainArgs) -> Result<()> {
    let (t, out) = resolve_run(t, "linsolve train")?;
    if t.stop_after == Some(0) {
        bail!("--stop-after must be at least 1 step");
    }
    let cfg = TrainConfig {
        steps: t.steps,
        batch_size: t.batch_size,
        optimizer: t.optimizer.clone(),
        seed: t.seed,
    };
    optlab::optim::from_spec(&cfg.optimizer)?;
    let grid = grid_of(t.grid, t.obstacles, t.seed)?;
    let net = DirectionNet::new(t.filters, t.seed)?;
    let system = PoissonSystem::new(grid)?;
    let ritz = RitzConfig {
        vectors: t.ritz_vectors,
        theta: t.theta,
        samples: t.samples,
        seed: t.seed,
    };
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let config = toml::to_string(&TrainArgs {
        resume: None,
        out: Some(out.clone()),
        stop_after: None,
        ..t.clone()
    })
    .context("recording the flags")?;
    let mut s = Session::open(
        &out,
        t.resume.is_some(),
        &config,
        "metrics.jsonl",
        "dcdm",
        t.steps as u64,
        t.checkpoint_every,
        t.stop_after,
        t.quiet,
    )?;
    s.bar.set_message("Lanczos and the training set");
    let data = ritz_rhs(&system.matrix, &system.grid.fluid_mask(), &ritz)?;
    let mut trainer = Trainer::new(&net, &system, &data, cfg)?;
    if let Some(r) = &s.resume {
        let tensors = r.tensors("model")?;
        for p in net.params() {
            let v = tensors.get(&p.name).with_context(|| {
                format!("{}: the checkpoint lacks {}", r.dir().display(), p.name)
            })?;
            p.var.set(v)?;
        }
        trainer.opt = r.optimizer("optimizer", net.params(), r.step)?;
        trainer.step = r.step as usize;
    }
    s.bar.set_position(trainer.step as u64);
    let mut window = std::collections::VecDeque::new();
    while trainer.step < t.steps {
        let loss = trainer.step()?;
        let step = trainer.step as u64;
        window.push_back(loss);
        if window.len() > 50 {
            window.pop_front();
        }
        if step.is_multiple_of(10) || step == 1 {
            s.line(&json!({"step": step, "loss": loss}))?;
            s.bar.set_position(step);
            let mean = window.iter().sum::<f64>() / window.len() as f64;
            s.bar.set_message(format!("loss {mean:.4}"));
        }
        let save = |w: &mut Writer| {
            let named: Vec<_> = net
                .params()
                .iter()
                .map(|p| (p.name.clone(), p.tensor().clone()))
                .collect();
            w.tensors("model", &named)?;
            w.optimizer("optimizer", trainer.opt.as_ref(), net.params())
        };
        if trainer.step < t.steps && s.checkpoint_if_due(step, save)? == Due::Stop {
            s.stopped_after(&format!("step {step} of {}", t.steps), "linsolve train");
            return Ok(());
        }
    }
    s.bar.finish_and_clear();
    net.save(&out.join("model.safetensors"))?;
    // A quick check on the training grid: iterations to 1e-4 on 5 Gaussian right-hand sides.
    let stop = Stop {
        tol: 1e-4,
        max_iters: 300,
    };
    let bs = test_rhs(&system, Rhs::Gaussian, 5, t.seed)?;
    let dir = NetDirection {
        net: &net,
        system: &system,
    };
    let (mut it_dcdm, mut it_cg) = (Vec::new(), Vec::new());
    for b in &bs {
        it_dcdm.push(dcdm(&system.matrix, b, &dir, stop)?.iterations);
        it_cg.push(cg(&system.matrix, b, stop)?.iterations);
    }
    let last: Vec<f64> = window.iter().copied().collect();
    let summary = json!({
        "grid": t.grid, "obstacles": t.obstacles, "filters": t.filters, "steps": t.steps, "seed": t.seed,
        "optimizer": t.optimizer, "samples": t.samples, "ritz_vectors": t.ritz_vectors,
        "final_loss": last.iter().sum::<f64>() / last.len().max(1) as f64,
        "check": {"tol": 1e-4, "dcdm_iterations": it_dcdm, "cg_iterations": it_cg},
        "seconds": s.seconds(),
    });
    optlab::tensor_io::write_atomic(
        &out.join("summary.json"),
        format!("{summary:#}\n").as_bytes(),
    )?;
    loss_plot(&out)?;
    if t.json {
        println!("{summary}");
    } else {
        let mean = |v: &[usize]| v.iter().sum::<usize>() as f64 / v.len() as f64;
        println!(
            "DCDM network on {0}x{0} ({1} obstacles): loss {2:.4}; iterations to 1e-4 on the training grid: DCDM {3:.1}, CG {4:.1} ({5:.0} s); {6}",
            t.grid, t.obstacles, summary["final_loss"].as_f64().unwrap_or(f64::NAN), mean(&it_dcdm),
            mean(&it_cg), s.seconds(), out.display()
        );
    }
    Ok(())
}

fn loss_plot(out: &Path) -> Result<()> {
    let text = std::fs::read_to_string(out.join("metrics.jsonl"))?;
    let points = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v["step"].as_f64()?, v["loss"].as_f64()?)))
        .collect();
    line_chart(
        &out.join("loss.png"),
        "DCDM training",
        "step",
        "|b - A q (q.b)/(q.A q)|^2",
        &[Series {
            name: String::new(),
            points,
        }],
        true,
    )
}

fn load_net(path: &Path) -> Result<DirectionNet> {
    let file = if path.is_dir() {
        path.join("model.safetensors")
    } else {
        path.to_path_buf()
    };
    Ok(DirectionNet::load(&file)?)
}

fn bench_cmd(a: BenchArgs) -> Result<()> {
    let net = a.model.as_deref().map(load_net).transpose()?;
    let cfg = BenchConfig {
        sides: a.sides.clone(),
        obstacles: a.obstacles.clone(),
        count: a.count,
        rhs: a.rhs.parse::<Rhs>()?,
        tols: a.tols.clone(),
        max_iters: a.max_iters,
        seed: a.seed,
    };
    let b = crate::progress::bar("bench", a.quiet);
    b.set_length((cfg.sides.len() * cfg.obstacles.len()) as u64);
    let mut k = 0;
    let report = bench(net.as_ref(), &cfg, &mut |side, obst| {
        b.set_position(k);
        b.set_message(format!("{side}x{side}, {obst} obstacles"));
        k += 1;
    })?;
    b.finish_and_clear();
    let summary = json!({
        "model": a.model, "rhs": cfg.rhs, "count": cfg.count, "max_iters": cfg.max_iters, "seed": cfg.seed,
        "rows": report.rows,
    });
    if let Some(out) = &a.out {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        let _lock = optlab::train::run_dir::RunDirLock::acquire(out)?;
        optlab::tensor_io::write_atomic(
            &out.join("summary.json"),
            format!("{summary:#}\n").as_bytes(),
        )?;
        for c in report.curves.chunks(if net.is_some() { 3 } else { 2 }) {
            let series: Vec<Series> = c
                .iter()
                .map(|c| Series {
                    name: c.method.clone(),
                    points: c
                        .residuals
                        .iter()
                        .enumerate()
                        .map(|(i, r)| (i as f64, r / c.residuals[0]))
                        .collect(),
                })
                .collect();
            line_chart(
                &out.join(format!("residuals-{}-{}.png", c[0].side, c[0].obstacles)),
                &format!("{0}x{0} grid, {1} obstacles", c[0].side, c[0].obstacles),
                "iteration",
                "|r| / |r0|",
                &series,
                true,
            )?;
        }
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        let side = report.fields.iter().map(|f| f.side).min().unwrap_or(0);
        for f in report.fields.iter().filter(|f| f.side == side) {
            images.push(
                f.solid
                    .iter()
                    .map(|&s| if s { 0.0 } else { 0.85 })
                    .collect(),
            );
            labels.push(format!("{} obstacles", f.obstacles));
            let (lo, hi) = f
                .solution
                .iter()
                .fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
            images.push(
                f.solution
                    .iter()
                    .map(|v| (v - lo) / (hi - lo).max(1e-300))
                    .collect(),
            );
            labels.push("solution".into());
        }
        if !images.is_empty() {
            image_row(
                &out.join("fields.png"),
                &images,
                side,
                (256 / side).max(1) as u32,
                &labels,
            )?;
        }
    }
    if a.json {
        println!("{summary}");
        return Ok(());
    }
    println!(
        "{:<8} {:>6} {:>5} {:>8} {:>8} {:>10} {:>10}",
        "method", "grid", "obst", "tol", "reached", "iterations", "seconds"
    );
    for r in &report.rows {
        let (it, sec) = if r.reached == 0 {
            ("-".to_string(), "-".to_string())
        } else {
            (
                format!("{:.1}", r.mean_iterations),
                format!("{:.4}", r.mean_seconds),
            )
        };
        println!(
            "{:<8} {:>6} {:>5} {:>8.0e} {:>5}/{:<2} {it:>10} {sec:>10}",
            r.method, r.side, r.obstacles, r.tol, r.reached, r.count
        );
    }
    if let Some(out) = &a.out {
        println!("{}", out.display());
    }
    Ok(())
}
