//! `optlab sim tactile identify|optimize` and `optlab sim hertz`: P20's differentiable tactile core. System
//! identification and trajectory optimisation by gradients through the simulator against CMA-ES on the same
//! budget of simulations; the force–indentation curve against Hertz's line contact.

use crate::plot::{line_chart, Series};
use crate::progress::bar;
use crate::summary::report;
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use optlab::sim::fem::Law;
use optlab::sim::fem::Pad;
use optlab::sim::mesh::Mesh;
use optlab::sim::statics::{hertz_curve, HertzSetup};
use optlab::sim::tasks::{
    identify, knot_path, optimize, Comparison, Identify, Optimize, Scene, Search,
};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args, Debug)]
pub struct SimArgs {
    #[command(subcommand)]
    pub what: SimWhat,
}

#[derive(Subcommand, Debug)]
pub enum SimWhat {
    /// The tactile sensor: an elastomer pad pressed and slid on by a rigid indenter; the reading is the surface
    /// markers' displacements and the indenter force.
    Tactile(TactileArgs),
    /// The force–indentation curve of a cylinder pressed into a linear-elastic body (static equilibria by
    /// Newton-CG) against Hertz's line contact: load, indentation and contact half-width.
    Hertz(HertzArgs),
}

#[derive(Args, Debug)]
pub struct TactileArgs {
    #[command(subcommand)]
    pub what: TactileWhat,
}

#[derive(Subcommand, Debug)]
pub enum TactileWhat {
    /// Recover Young's modulus and the friction coefficient from a recording of a press-and-slide, by gradient
    /// descent through the simulator and by CMA-ES on the same budget.
    Identify(IdentifyArgs),
    /// Find the press-and-slide (knots of the indenter's path) whose reading matches a target's, by gradient
    /// descent through the simulator and by CMA-ES on the same budget.
    Optimize(OptimizeArgs),
}

/// The sensor and the search, shared by both experiments.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// The pad's material: neo-hookean or linear.
    #[arg(long, default_value = "neo-hookean")]
    material: String,
    /// The pad's cells across and deep (the pad is 2 x 0.5).
    #[arg(long, value_delimiter = ',', default_values_t = vec![16, 4])]
    cells: Vec<usize>,
    /// Time step and steps per run (the default sensor: 5e-4 and 3000).
    #[arg(long, default_value_t = 5e-4)]
    dt: f64,
    #[arg(long, default_value_t = 3000)]
    steps: usize,
    /// Gradient steps; CMA-ES gets 3 simulations per step (what one gradient costs).
    #[arg(long)]
    iterations: Option<usize>,
    /// The gradient descent's optimizer (over the search coordinates) and schedule.
    #[arg(long)]
    optimizer: Option<String>,
    #[arg(long, default_value = "cosine")]
    schedule: String,
    /// CMA-ES's initial step size in the search coordinates.
    #[arg(long)]
    sigma: Option<f64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
    #[arg(long)]
    quiet: bool,
}

#[derive(Args, Debug)]
pub struct IdentifyArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The Young's modulus and friction the recording is made with.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1.0, 0.5])]
    truth: Vec<f64>,
    /// The starting guess of Young's modulus and friction.
    #[arg(long, value_delimiter = ',', default_values_t = vec![2.5, 0.2])]
    start: Vec<f64>,
    /// Gaussian noise on the recording, as a fraction of its RMS.
    #[arg(long, default_value_t = 0.0)]
    noise: f64,
}

#[derive(Args, Debug)]
pub struct OptimizeArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Knots of the piecewise-linear path.
    #[arg(long, default_value_t = 5)]
    knots: usize,
    /// The target motion's press depth (below first touch) and slide.
    #[arg(long, value_delimiter = ',', default_values_t = vec![0.06, 0.4])]
    target: Vec<f64>,
    /// The starting motion's press depth and slide.
    #[arg(long, value_delimiter = ',', default_values_t = vec![0.03, 0.0])]
    start: Vec<f64>,
}

#[derive(Args, Debug)]
pub struct HertzArgs {
    #[arg(long, default_value_t = 1.0)]
    young: f64,
    #[arg(long, default_value_t = 0.3)]
    poisson: f64,
    #[arg(long, default_value_t = 1.0)]
    radius: f64,
    /// The body's half-width and depth.
    #[arg(long, default_value_t = 8.0)]
    size: f64,
    /// The mesh spacing near the contact (graded by 1.15 per cell away from it).
    #[arg(long, default_value_t = 0.01)]
    spacing: f64,
    /// The depth of the axis point the indentation is measured from.
    #[arg(long, default_value_t = 1.0)]
    reference: f64,
    /// The indenter's depths below first touch.
    #[arg(long, value_delimiter = ',', default_values_t = vec![0.002, 0.004, 0.006, 0.008, 0.01])]
    depths: Vec<f64>,
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

pub fn run(a: SimArgs) -> Result<()> {
    match a.what {
        SimWhat::Tactile(t) => match t.what {
            TactileWhat::Identify(i) => identify_cmd(i),
            TactileWhat::Optimize(o) => optimize_cmd(o),
        },
        SimWhat::Hertz(h) => hertz_cmd(h),
    }
}

fn pair(what: &str, v: &[f64]) -> Result<[f64; 2]> {
    match v {
        [a, b] => Ok([*a, *b]),
        _ => bail!("--{what} takes two numbers, not {}", v.len()),
    }
}

/// The default sensor with the command line's material, mesh and time stepping.
fn scene(c: &CommonArgs) -> Result<Scene> {
    let law = match c.material.as_str() {
        "neo-hookean" => Law::NeoHookean,
        "linear" => Law::Linear,
        m => bail!("unknown material {m:?}: use neo-hookean or linear"),
    };
    let [nx, ny] = match c.cells[..] {
        [nx, ny] => [nx, ny],
        _ => bail!("--cells takes two counts, across and deep"),
    };
    let mut s = Scene::sensor(law)?;
    let pad = &s.pad;
    s.pad = Pad::new(
        Mesh::rectangle(2.0, 0.5, nx, ny)?,
        pad.material,
        pad.density,
    )?
    .with_damping(pad.damping)?;
    if !(c.dt.is_finite() && c.dt > 0.0)
        || c.steps == 0
        || c.steps > optlab::sim::tactile::MAX_STEPS
    {
        bail!(
            "need --dt > 0 and 1 to {} --steps, not {} and {}",
            optlab::sim::tactile::MAX_STEPS,
            c.dt,
            c.steps
        );
    }
    s.dt = c.dt;
    s.steps = c.steps;
    Ok(s)
}

fn search(c: &CommonArgs, default: &Search) -> Search {
    Search {
        iterations: c.iterations.unwrap_or(default.iterations),
        optimizer: c
            .optimizer
            .clone()
            .unwrap_or_else(|| default.optimizer.clone()),
        schedule: c.schedule.clone(),
        sigma: c.sigma.unwrap_or(default.sigma),
        seed: c.seed,
    }
}

/// Runs one experiment with a progress bar over the gradient steps (CMA-ES follows).
fn with_progress(
    c: &CommonArgs,
    name: &str,
    iterations: usize,
    f: impl FnOnce(&mut dyn FnMut(usize, f64)) -> optlab::Result<Comparison>,
) -> Result<(Comparison, f64)> {
    let pb = bar(name, c.quiet || c.json);
    pb.set_length(iterations as u64 + 1);
    let t = Instant::now();
    let r = f(&mut |it, loss| {
        pb.set_position(it as u64 + 1);
        pb.set_message(format!("loss {loss:.3e}"));
    })?;
    pb.finish_and_clear();
    Ok((r, t.elapsed().as_secs_f64()))
}

fn convergence_chart(out: &Path, title: &str, r: &Comparison) -> Result<()> {
    let series = |name: &str, pts: &[optlab::sim::tasks::Point]| Series {
        name: name.into(),
        points: pts.iter().map(|p| (p.simulations as f64, p.loss)).collect(),
    };
    line_chart(
        &out.join("convergence.png"),
        title,
        "simulations",
        "reading mismatch",
        &[
            series("gradient descent", &r.gradient),
            series("CMA-ES (best so far)", &r.cma),
        ],
        true,
    )
}

/// The lowest loss gradient descent reached (its iterates need not improve monotonically; CMA-ES reports its
/// best point).
fn best_loss(r: &Comparison) -> f64 {
    r.gradient
        .iter()
        .map(|p| p.loss)
        .fold(f64::INFINITY, f64::min)
}

fn final_params(r: &Comparison) -> (Vec<f64>, Vec<f64>) {
    let gd = r
        .gradient
        .last()
        .map(|p| p.params.clone())
        .unwrap_or_default();
    let cma = r.cma.last().map(|p| p.params.clone()).unwrap_or_default();
    (gd, cma)
}

fn identify_cmd(a: IdentifyArgs) -> Result<()> {
    let s = scene(&a.common)?;
    let d = Identify::default();
    let cfg = Identify {
        truth: pair("truth", &a.truth)?,
        start: pair("start", &a.start)?,
        noise: a.noise,
        search: search(&a.common, &d.search),
    };
    let (r, seconds) = with_progress(&a.common, "identify", cfg.search.iterations, |p| {
        identify(&s, &cfg, p)
    })?;
    let (gd, cma) = final_params(&r);
    let rel = |p: &[f64]| -> Vec<f64> {
        p.iter()
            .zip(&r.truth)
            .map(|(v, t)| (v - t).abs() / t)
            .collect()
    };
    let (gd_loss, cma_loss) = (
        r.gradient.last().map_or(f64::NAN, |p| p.loss),
        r.cma.last().map_or(f64::NAN, |p| p.loss),
    );
    let summary = json!({
        "experiment": "identify", "material": a.common.material, "truth": r.truth, "start": r.start, "noise": a.noise,
        "iterations": cfg.search.iterations, "optimizer": cfg.search.optimizer, "schedule": cfg.search.schedule,
        "sigma": cfg.search.sigma, "seed": cfg.search.seed, "dt": s.dt, "steps": s.steps,
        "gradient": {"young": gd[0], "friction": gd[1], "relative_error": rel(&gd), "loss": gd_loss, "best_loss": best_loss(&r),
                     "simulations": r.gradient.last().map_or(0, |p| p.simulations)},
        "cma_es": {"young": cma[0], "friction": cma[1], "relative_error": rel(&cma), "loss": cma_loss,
                   "simulations": r.cma.last().map_or(0, |p| p.simulations)},
        "seconds": seconds, "history": {"gradient": r.gradient, "cma_es": r.cma},
    });
    let line = format!(
        "identify (truth E = {}, mu = {}; start {}, {}): gradient descent E = {:.4}, mu = {:.4} (loss {:.3e}, best {:.3e}); \
         CMA-ES E = {:.4}, mu = {:.4} (best loss {:.3e}); {} simulations each, {:.1} s",
        r.truth[0], r.truth[1], r.start[0], r.start[1], gd[0], gd[1], gd_loss, best_loss(&r), cma[0], cma[1], cma_loss,
        cfg.search.iterations * optlab::sim::tasks::GRADIENT_COST, seconds
    );
    report(
        a.common.out.as_deref(),
        a.common.json,
        &summary,
        &line,
        |out| convergence_chart(out, "system identification: reading mismatch", &r),
    )
}

fn optimize_cmd(a: OptimizeArgs) -> Result<()> {
    let s = scene(&a.common)?;
    let d = Optimize::default();
    let cfg = Optimize {
        knots: a.knots,
        target: pair("target", &a.target)?,
        start: pair("start", &a.start)?,
        search: search(&a.common, &d.search),
    };
    let (r, seconds) = with_progress(&a.common, "optimize", cfg.search.iterations, |p| {
        optimize(&s, &cfg, p)
    })?;
    let (gd, cma) = final_params(&r);
    let knot_error = |p: &[f64]| -> f64 {
        (p.iter()
            .zip(&r.truth)
            .map(|(v, t)| (v - t).powi(2))
            .sum::<f64>()
            / p.len().max(1) as f64)
            .sqrt()
    };
    let (gd_loss, cma_loss) = (
        r.gradient.last().map_or(f64::NAN, |p| p.loss),
        r.cma.last().map_or(f64::NAN, |p| p.loss),
    );
    let summary = json!({
        "experiment": "optimize", "material": a.common.material, "knots": cfg.knots, "target_motion": cfg.target,
        "start_motion": cfg.start, "target_knots": r.truth, "start_knots": r.start,
        "iterations": cfg.search.iterations, "optimizer": cfg.search.optimizer, "schedule": cfg.search.schedule,
        "sigma": cfg.search.sigma, "seed": cfg.search.seed, "dt": s.dt, "steps": s.steps,
        "start_loss": r.gradient.first().map(|p| p.loss),
        "gradient": {"knots": gd, "loss": gd_loss, "best_loss": best_loss(&r), "knot_rms_error": knot_error(&gd)},
        "cma_es": {"knots": cma, "loss": cma_loss, "knot_rms_error": knot_error(&cma)},
        "seconds": seconds, "history": {"gradient": r.gradient, "cma_es": r.cma},
    });
    let line = format!(
        "optimize ({} knots, target press {} slide {}): start loss {:.3e}; gradient descent {:.3e} (best {:.3e}; knot RMS error {:.4}); \
         CMA-ES best {:.3e} ({:.4}); {} simulations each, {:.1} s",
        cfg.knots, cfg.target[0], cfg.target[1], r.gradient.first().map_or(f64::NAN, |p| p.loss), gd_loss,
        best_loss(&r), knot_error(&gd), cma_loss, knot_error(&cma), cfg.search.iterations * optlab::sim::tasks::GRADIENT_COST, seconds
    );
    report(
        a.common.out.as_deref(),
        a.common.json,
        &summary,
        &line,
        |out| {
            convergence_chart(out, "trajectory optimisation: reading mismatch", &r)?;
            let path = |name: &str, k: &[f64]| Series {
                name: name.into(),
                points: knot_path(
                    &k.chunks(2).map(|c| [c[0], c[1]]).collect::<Vec<_>>(),
                    s.steps,
                )
                .iter()
                .map(|p| (p[0], p[1]))
                .collect(),
            };
            line_chart(
                &out.join("paths.png"),
                "the indenter's path (centre)",
                "x",
                "y",
                &[
                    path("target", &r.truth),
                    path("start", &r.start),
                    path("gradient descent", &gd),
                    path("CMA-ES", &cma),
                ],
                false,
            )
        },
    )
}

fn hertz_cmd(a: HertzArgs) -> Result<()> {
    let setup = HertzSetup {
        young: a.young,
        poisson: a.poisson,
        radius: a.radius,
        size: a.size,
        spacing: a.spacing,
        reference: a.reference,
        depths: a.depths.clone(),
    };
    let t = Instant::now();
    let curve = hertz_curve(&setup)?;
    let seconds = t.elapsed().as_secs_f64();
    let worst = |f: fn(&optlab::sim::statics::HertzPoint) -> (f64, f64)| {
        curve
            .iter()
            .map(|p| {
                let (s, h) = f(p);
                (s - h).abs() / h
            })
            .fold(0.0, f64::max)
    };
    let delta_error = worst(|p| (p.delta, p.delta_hertz));
    let width_error = worst(|p| (p.half_width, p.half_width_hertz));
    let summary = json!({
        "young": a.young, "poisson": a.poisson, "radius": a.radius, "size": a.size, "spacing": a.spacing,
        "reference": curve.first().map(|p| p.reference), "points": curve,
        "max_relative_error": {"indentation": delta_error, "half_width": width_error}, "seconds": seconds,
    });
    let line = format!(
        "Hertz check, {} depths: indentation within {:.2}% of Hertz's, contact half-width within {:.2}% ({:.1} s)",
        curve.len(),
        100.0 * delta_error,
        100.0 * width_error,
        seconds
    );
    report(a.out.as_deref(), a.json, &summary, &line, |out| {
        line_chart(
            &out.join("force_indentation.png"),
            "cylinder on an elastic body: load against indentation",
            "indentation (relative to the axis point at the reference depth)",
            "load per unit length",
            &[
                Series {
                    name: "finite elements".into(),
                    points: curve.iter().map(|p| (p.delta, p.force)).collect(),
                },
                Series {
                    name: "Hertz line contact".into(),
                    points: curve.iter().map(|p| (p.delta_hertz, p.force)).collect(),
                },
            ],
            false,
        )
    })
}
