//! `optlab cbo`: consensus-based optimization (P23) of a test function over many seeded runs.

use anyhow::{bail, Result};
use clap::Args;
use optlab::functions::TestFunction;
use optlab::solvers::cbo::{
    cbo_runs, consensus_hopping, is_success, CboConfig, CboResult, HoppingConfig, Noise,
};
use rayon::prelude::*;
use std::time::Instant;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples (the first is CBXpy's success benchmark, which it reports as 100/100):\n  optlab cbo --function rastrigin --dim 20 --particles 40 --runs 100 --noise anisotropic --sigma 10.1 --alpha 30 --iters 5000 --init-lo=-3 --init-hi 3 --json\n  optlab cbo --function rastrigin --dim 5 --runs 20 --method hopping --particles 200 --alpha 0.05 --sigma 1 --iters 2000 --init-lo 2 --init-hi 3\n\nDefaults are CBXpy's (N=20, dt=0.01, lambda=1, sigma=5.1, alpha=1 growing x1.05 per step up to 1e5, isotropic,\n1000 iterations, x0 ~ U[-1,1]^d). A run succeeds when its final consensus point is within --tol of the minimiser in\nthe max norm (the JSON also gives the rate by the best evaluated particle, CBXpy's criterion)."
)]
pub struct CboArgs {
    /// Objective: rosenbrock, rastrigin, ackley, beale, quadratic, logistic.
    #[arg(long)]
    pub function: String,
    #[arg(long)]
    pub dim: usize,
    /// cbo (particle dynamics) or hopping (consensus hopping from the centre of the initial box).
    #[arg(long, default_value = "cbo")]
    pub method: String,
    /// Particles (cbo) or samples per hop (hopping).
    #[arg(long, default_value_t = 20)]
    pub particles: usize,
    /// Independent seeded runs (in parallel).
    #[arg(long, default_value_t = 1)]
    pub runs: u64,
    /// isotropic or anisotropic.
    #[arg(long, default_value = "isotropic")]
    pub noise: String,
    #[arg(long, default_value_t = 5.1)]
    pub sigma: f64,
    #[arg(long, default_value_t = 1.0)]
    pub alpha: f64,
    /// Multiply alpha by this every step (up to --alpha-max), CBXpy's default scheduler; 1 keeps it fixed.
    #[arg(long, default_value_t = 1.05)]
    pub alpha_factor: f64,
    #[arg(long, default_value_t = 1e5)]
    pub alpha_max: f64,
    #[arg(long, default_value_t = 0.01)]
    pub dt: f64,
    #[arg(long, default_value_t = 1.0)]
    pub lambda: f64,
    #[arg(long, default_value_t = 1000)]
    pub iters: u64,
    /// Compute the consensus from a mini-batch of this many particles each step (only they move, unless
    /// --move-all).
    #[arg(long)]
    pub batch: Option<usize>,
    /// With --batch: move every particle towards the batch's consensus.
    #[arg(long)]
    pub move_all: bool,
    #[arg(long, default_value_t = -1.0, allow_negative_numbers = true)]
    pub init_lo: f64,
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub init_hi: f64,
    /// Hopping: shrink the spread by this factor every --shrink-every hops.
    #[arg(long, default_value_t = 0.98)]
    pub shrink: f64,
    #[arg(long, default_value_t = 10)]
    pub shrink_every: u64,
    /// Success radius in the max norm.
    #[arg(long, default_value_t = 0.25)]
    pub tol: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// One JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: CboArgs) -> Result<()> {
    let f = TestFunction::parse(&a.function)?;
    f.check_dim(a.dim)?;
    if a.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let objective = move |x: &[f64]| f.eval_plain(x).unwrap_or(f64::NAN);
    let start = Instant::now();
    let results: Vec<CboResult> = match a.method.as_str() {
        "cbo" => {
            let cfg = CboConfig {
                particles: a.particles,
                dt: a.dt,
                lambda: a.lambda,
                sigma: a.sigma,
                alpha: a.alpha,
                alpha_factor: a.alpha_factor,
                alpha_max: a.alpha_max,
                noise: Noise::parse(&a.noise)?,
                batch: a.batch,
                partial: !a.move_all,
                max_iters: a.iters,
                init: (a.init_lo, a.init_hi),
            };
            cbo_runs(&objective, a.dim, &cfg, a.seed, a.runs)?
        }
        "hopping" => {
            let cfg = HoppingConfig {
                samples: a.particles,
                alpha: a.alpha,
                sigma: a.sigma,
                shrink: a.shrink,
                shrink_every: a.shrink_every,
                max_iters: a.iters,
            };
            let x0 = vec![0.5 * (a.init_lo + a.init_hi); a.dim];
            (0..a.runs)
                .into_par_iter()
                .map(|r| consensus_hopping(&objective, &x0, &cfg, a.seed, r))
                .collect::<optlab::Result<Vec<_>>>()?
        }
        other => bail!("--method {other}: available: cbo, hopping"),
    };
    let seconds = start.elapsed().as_secs_f64();
    let minimiser = f.minimiser(a.dim);
    let successes = minimiser.as_ref().map(|m| {
        results
            .iter()
            .filter(|r| is_success(&r.x, m, a.tol))
            .count()
    });
    // CBXpy's benchmark counts a run by its best evaluated particle.
    let best_successes = minimiser.as_ref().map(|m| {
        results
            .iter()
            .filter(|r| is_success(&r.best_x, m, a.tol))
            .count()
    });
    let n = results.len() as f64;
    let mean_f = results.iter().map(|r| r.f).sum::<f64>() / n;
    let best = results
        .iter()
        .map(|r| r.best_f)
        .fold(f64::INFINITY, f64::min);
    let evals = results.iter().map(|r| r.evaluations).sum::<u64>() as f64 / n;
    let iters_per_s = (a.iters as f64 * n) / seconds.max(1e-12);
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "function": f.name(), "dim": a.dim, "method": a.method, "runs": a.runs,
                "successes": successes, "success_rate": successes.map(|s| s as f64 / n),
                "success_rate_best_particle": best_successes.map(|s| s as f64 / n),
                "tol": a.tol, "mean_final_f": mean_f, "best_f": best,
                "evaluations_per_run": evals, "iterations": a.iters,
                "seconds": seconds, "iterations_per_second": iters_per_s,
                "final_points": results.iter().map(|r| &r.x).collect::<Vec<_>>(),
            })
        );
    } else {
        match successes {
            Some(s) => println!(
                "{}: {s}/{} runs within {} of the minimiser (max norm)",
                f.name(),
                a.runs,
                a.tol
            ),
            None => println!("{}: no known minimiser; success not defined", f.name()),
        }
        println!(
            "mean final f {mean_f:.3e}, best f {best:.3e}, {evals:.0} evaluations per run, {seconds:.2} s ({iters_per_s:.0} iterations/s over all runs)"
        );
    }
    Ok(())
}
