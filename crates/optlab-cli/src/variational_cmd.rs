//! `optlab pde ritz` and `optlab pde spectral`: P22's nonlinear elliptic variational PDEs on [0, 1]^d, solved by
//! Deep Ritz with two-layer networks over a sweep of dimensions and widths (the width needed for a target error as
//! d grows) and by preconditioned gradient descent on a sine basis (the energy's geometric decay).

use crate::plot::{line_chart, Series};
use crate::progress::bar;
use crate::rl_run::{resolve_run, resumable, CONFIG};
use anyhow::{bail, Context, Result};
use clap::Args;
use optlab::pde::ritz::{Boundary, Ritz, RitzConfig};
use optlab::pde::spectral::{solve, SpectralConfig};
use optlab::pde::variational::{Lagrangian, Problem, Solution};
use optlab::tensor_io::write_atomic;
use optlab::train::run_dir::RunDirLock;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct RitzArgs {
    /// quartic[:gamma] (-Δu + γu³ = f) or plaplace[:q[:kappa]] (-div((1 + κ|∇u|^(q-2))∇u) = f).
    #[arg(long, default_value = "quartic")]
    lagrangian: String,
    /// The manufactured solution: additive (Σ sin(2πx_i)/√d) or product (Π sin(πx_i), zero on the boundary).
    #[arg(long, default_value = "additive")]
    solution: String,
    /// penalty[:weight] (β ∫ (u - g_β)² over the boundary, g_β the Robin data that keep u* exact) or ansatz
    /// (u = Π 4x_i(1-x_i) N(x); product only).
    #[arg(long, default_value = "penalty:10")]
    boundary: String,
    #[arg(long, value_delimiter = ',', default_values_t = vec![2])]
    dims: Vec<usize>,
    #[arg(long, value_delimiter = ',', default_values_t = vec![64])]
    widths: Vec<usize>,
    /// Interior points per step (fresh uniform draws).
    #[arg(long, default_value_t = 1024)]
    points: usize,
    #[arg(long, default_value_t = 256)]
    boundary_points: usize,
    /// The hidden weights' initial scale (times PyTorch's U(-1/√d, 1/√d)).
    #[arg(long, default_value_t = 4.0)]
    init_scale: f64,
    #[arg(long, default_value_t = 4000)]
    steps: usize,
    #[arg(long, default_value = "adam:lr=1e-2")]
    optimizer: String,
    /// The learning-rate schedule over --steps (as in optlab train).
    #[arg(long, default_value = "cosine")]
    schedule: String,
    /// The relative L2 error the width sweep asks for.
    #[arg(long, default_value_t = 0.05)]
    target: f64,
    #[arg(long, default_value_t = 8192)]
    test_points: usize,
    /// Steps between error measurements.
    #[arg(long, default_value_t = 100)]
    eval_every: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the sweep in DIR (its recorded flags), skipping the (d, width) runs it finished.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["lagrangian", "solution", "boundary", "dims", "widths", "points", "boundary_points", "init_scale", "steps", "optimizer", "schedule", "target", "test_points", "eval_every", "seed", "out"])]
    resume: Option<PathBuf>,
    #[arg(long)]
    #[serde(skip)]
    json: bool,
    #[arg(long)]
    #[serde(skip)]
    quiet: bool,
}

resumable!(RitzArgs: json, quiet);

#[derive(Args, Debug)]
pub struct SpectralArgs {
    #[arg(long, default_value = "quartic")]
    lagrangian: String,
    /// Dimension (1 to 3).
    #[arg(long, default_value_t = 2)]
    d: usize,
    /// Sine modes per axis K.
    #[arg(long, default_value_t = 8)]
    modes: usize,
    /// Gauss–Legendre points per axis.
    #[arg(long, default_value_t = 24)]
    points: usize,
    /// The step η of u ← u − η (I − Δ)⁻¹ DE(u) (default: 1/M, M bounding the preconditioned Hessian near u*).
    #[arg(long)]
    step: Option<f64>,
    #[arg(long, default_value_t = 60)]
    iterations: usize,
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

/// The record of one finished (d, width) run in DIR/runs.jsonl.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunRow {
    d: usize,
    width: usize,
    l2_error: f64,
    h1_error: f64,
    /// The smallest relative L2 error among the evaluations.
    best_l2_error: f64,
    energy: f64,
    seconds: f64,
    ms_per_step: f64,
}

const RUNS: &str = "runs.jsonl";

fn finished(dir: &Path) -> Result<Vec<RunRow>> {
    let path = dir.join(RUNS);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(Vec::new());
    };
    // A line cut by a crash is dropped (that run is redone).
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

pub fn ritz(a: RitzArgs) -> Result<()> {
    let resuming = a.resume.is_some();
    let (a, out) = resolve_run(a, "pde ritz")?;
    let lagrangian = Lagrangian::parse(&a.lagrangian)?;
    let solution = Solution::parse(&a.solution)?;
    let boundary = Boundary::parse(&a.boundary)?;
    if a.dims.is_empty() || a.widths.is_empty() {
        bail!("--dims and --widths need at least one value each");
    }
    if !(a.target.is_finite() && a.target > 0.0) {
        bail!(
            "--target must be a positive relative error, not {}",
            a.target
        );
    }
    if a.eval_every == 0 || a.steps == 0 {
        bail!("--steps and --eval-every must be at least 1");
    }
    let cells: Vec<(usize, usize)> = a
        .dims
        .iter()
        .flat_map(|&d| a.widths.iter().map(move |&w| (d, w)))
        .collect();
    // Every cell is checked before any runs: a bad value fails at once, not after an hour.
    for &(d, width) in &cells {
        let problem = Problem::new(d, lagrangian, solution)?;
        Ritz::new(problem, config(&a, boundary, width))?;
    }
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let _lock = RunDirLock::acquire(&out)?;
    if !resuming {
        write_atomic(&out.join(CONFIG), toml::to_string(&a)?.as_bytes())?;
        write_atomic(&out.join(RUNS), b"")?;
    }
    let mut rows = finished(&out)?;
    let progress = bar("pde ritz", a.quiet || a.json);
    progress.set_length((cells.len() * a.steps) as u64);
    progress.set_position((rows.len() * a.steps) as u64);
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(out.join(RUNS))?;
    for &(d, width) in &cells {
        if rows.iter().any(|r| r.d == d && r.width == width) {
            continue;
        }
        let problem = Problem::new(d, lagrangian, solution)?;
        let mut t = Ritz::new(problem, config(&a, boundary, width))?;
        let start = std::time::Instant::now();
        let mut curve = String::from("step,energy,l2_error,h1_error\n");
        let (mut best, mut energy) = (f64::INFINITY, f64::NAN);
        let mut evals: Vec<(f64, f64)> = Vec::new();
        while t.step < a.steps {
            energy = t.step()?;
            if t.step % a.eval_every == 0 || t.step == a.steps {
                let (l2, h1) = t.errors()?;
                best = best.min(l2);
                evals.push((t.step as f64, l2));
                curve.push_str(&format!("{},{energy},{l2},{h1}\n", t.step));
                progress.set_message(format!("d {d} width {width}: L2 {l2:.3e}"));
            }
            progress.inc(1);
        }
        let seconds = start.elapsed().as_secs_f64();
        let (l2, h1) = t.errors()?;
        write_atomic(
            &out.join(format!("curve-d{d}-w{width}.csv")),
            curve.as_bytes(),
        )?;
        let row = RunRow {
            d,
            width,
            l2_error: l2,
            h1_error: h1,
            best_l2_error: best,
            energy,
            seconds,
            ms_per_step: 1e3 * seconds / a.steps as f64,
        };
        writeln!(log, "{}", serde_json::to_string(&row)?)?;
        log.flush()?;
        rows.push(row);
    }
    progress.finish_and_clear();
    report(&a, &out, &rows)
}

fn config(a: &RitzArgs, boundary: Boundary, width: usize) -> RitzConfig {
    RitzConfig {
        width,
        boundary,
        points: a.points,
        boundary_points: a.boundary_points,
        init_scale: a.init_scale,
        steps: a.steps,
        optimizer: a.optimizer.clone(),
        schedule: a.schedule.clone(),
        test_points: a.test_points,
        seed: a.seed,
    }
}

/// The smallest width of dimension `d` whose final relative L2 error meets the target.
fn width_needed(rows: &[RunRow], d: usize, target: f64) -> Option<usize> {
    rows.iter()
        .filter(|r| r.d == d && r.l2_error <= target)
        .map(|r| r.width)
        .min()
}

fn report(a: &RitzArgs, out: &Path, rows: &[RunRow]) -> Result<()> {
    let mut dims = a.dims.clone();
    dims.dedup();
    let needed: Vec<serde_json::Value> = dims
        .iter()
        .map(|&d| json!({"d": d, "width": width_needed(rows, d, a.target)}))
        .collect();
    let summary = json!({
        "lagrangian": a.lagrangian, "solution": a.solution, "boundary": a.boundary, "steps": a.steps,
        "points": a.points, "init_scale": a.init_scale, "optimizer": a.optimizer, "schedule": a.schedule, "target": a.target, "seed": a.seed,
        "runs": rows, "width_needed": needed,
    });
    write_atomic(
        &out.join("summary.json"),
        format!("{summary:#}\n").as_bytes(),
    )?;
    let series: Vec<Series> = dims
        .iter()
        .map(|&d| Series {
            name: format!("d = {d}"),
            points: rows
                .iter()
                .filter(|r| r.d == d)
                .map(|r| ((r.width as f64).log2(), r.l2_error))
                .collect(),
        })
        .collect();
    line_chart(
        &out.join("error_vs_width.png"),
        &format!(
            "Deep Ritz, {} / {}: relative L2 error",
            a.lagrangian, a.solution
        ),
        "log2 width",
        "relative L2 error",
        &series,
        true,
    )?;
    let reached: Vec<(f64, f64)> = dims
        .iter()
        .filter_map(|&d| width_needed(rows, d, a.target).map(|w| (d as f64, w as f64)))
        .collect();
    if !reached.is_empty() {
        line_chart(
            &out.join("width_needed.png"),
            &format!("width for relative L2 error <= {}", a.target),
            "dimension d",
            "width",
            &[Series {
                name: String::new(),
                points: reached,
            }],
            true,
        )?;
    }
    if a.json {
        println!("{summary}");
        return Ok(());
    }
    println!(
        "{:>4} {:>6} {:>10} {:>10} {:>10} {:>10}",
        "d", "width", "L2 error", "H1 error", "best L2", "ms/step"
    );
    for r in rows {
        println!(
            "{:>4} {:>6} {:>10.3e} {:>10.3e} {:>10.3e} {:>10.2}",
            r.d, r.width, r.l2_error, r.h1_error, r.best_l2_error, r.ms_per_step
        );
    }
    for &d in &dims {
        match width_needed(rows, d, a.target) {
            Some(w) => println!("d = {d}: width {w} reaches relative L2 error {}", a.target),
            None => println!(
                "d = {d}: no width tried reaches relative L2 error {}",
                a.target
            ),
        }
    }
    Ok(())
}

pub fn spectral(a: SpectralArgs) -> Result<()> {
    let problem = Problem::new(a.d, Lagrangian::parse(&a.lagrangian)?, Solution::Product)?;
    let cfg = SpectralConfig {
        modes: a.modes,
        points: a.points,
        step: a.step,
        iterations: a.iterations,
    };
    let r = solve(problem, cfg, &mut |_| {})?;
    let last = r.rows.last().context("no iterations")?;
    let summary = json!({
        "lagrangian": a.lagrangian, "d": a.d, "modes": a.modes, "points": a.points, "step": a.step,
        "iterations": a.iterations, "step_used": r.step, "rate": r.rate, "energy": last.energy, "l2_error": last.l2_error,
        "h1_error": last.h1_error, "rows": r.rows,
    });
    let line = format!(
        "preconditioned GD, {}, d = {}, K = {}, step {:.4}: {} iterations, energy {:.10}, relative L2 error {:.3e}, H1 {:.3e}, energy gap rate {}",
        a.lagrangian,
        a.d,
        a.modes,
        r.step,
        a.iterations,
        last.energy,
        last.l2_error,
        last.h1_error,
        r.rate.map_or("n/a (converged too fast to fit)".into(), |v| format!("{v:.4} per iteration"))
    );
    crate::summary::report(a.out.as_deref(), a.json, &summary, &line, |out| {
        let e_final = last.energy;
        line_chart(
            &out.join("energy.png"),
            &format!("preconditioned GD, {}, d = {}", a.lagrangian, a.d),
            "iteration",
            "E(u_t) - E(u_final), relative L2 error",
            &[
                Series {
                    name: "energy gap".into(),
                    points: r
                        .rows
                        .iter()
                        .map(|row| (row.iteration as f64, row.energy - e_final))
                        .collect(),
                },
                Series {
                    name: "L2 error".into(),
                    points: r
                        .rows
                        .iter()
                        .map(|row| (row.iteration as f64, row.l2_error))
                        .collect(),
                },
            ],
            true,
        )
    })
}
