//! `optlab nlp`: equality-constrained nonlinear programs (P19, AdaSketch-Newton) on the built-in CUTEst test set.

use anyhow::Result;
use clap::{Args, Subcommand};
use optlab::constrained::adasketch::{solve, AdaSketchConfig, Outcome};
use optlab::constrained::logreg::ConstrainedLogreg;
use optlab::constrained::problems;
use optlab::constrained::Nlp;
use serde_json::json;

#[derive(Args, Debug)]
pub struct NlpArgs {
    #[command(subcommand)]
    pub what: NlpWhat,
}

#[derive(Subcommand, Debug)]
pub enum NlpWhat {
    /// Solve one problem of the test set: status, objective against the published optimum, KKT residual, iterations,
    /// sketch steps, time.
    #[command(after_help = concat!(
        "Examples:\n  optlab nlp solve --problem HS28\n  optlab nlp solve --problem HS40 --method adasketch:hessian=products\n  optlab nlp solve --problem logreg-eq --seed 1\n  optlab nlp solve --problem HS40 --method adasketch:sketch=gaussian --json\n  optlab nlp solve --problem BT9 --method newton\n\n",
        "Methods:\n  adasketch[:sketch=kaczmarz|gaussian|blockK|exact,max_iter=10000,tol=1e-4,eta1=1,eta2=0.1,delta=0.1,xi_b=0.1,\n            beta=0.1,nu=1.5,max_sketch_steps=100000,reduced_hessian_tol=1e-6,seed=0,hessian=auto|dense|products]\n            (P19; the official defaults; hessian=products runs matrix-free, on Hessian-vector products only)\n  newton[:...]   the deterministic variant: the same method with an exact KKT solve"
    ))]
    Solve {
        /// A problem of the set (`optlab nlp suite` lists them), case-insensitive, or logreg-eq: logistic regression
        /// on the digits (even against odd) under 10 random linear constraints and ‖w‖ = 1, the paper's experiment.
        #[arg(long)]
        problem: String,
        #[arg(long, default_value = "adasketch")]
        method: String,
        /// The seed of logreg-eq's random constraints.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Every problem of the set with one method: a table of status, iterations, sketch steps, objective error and
    /// time, and the number solved.
    #[command(after_help = concat!(
        "Examples:\n  optlab nlp suite\n  optlab nlp suite --method adasketch:hessian=products\n  optlab nlp suite --method newton --json\n\n",
        "Methods:\n  adasketch[:sketch=kaczmarz|gaussian|blockK|exact,...,hessian=auto|dense|products]   (P19)\n  newton[:...]   exact KKT solves"
    ))]
    Suite {
        #[arg(long, default_value = "adasketch")]
        method: String,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
}

fn record(p: &dyn Nlp, published: Option<f64>, o: &Outcome) -> serde_json::Value {
    json!({
        "problem": p.name(), "n": p.n(), "m": p.m(), "status": o.status.as_str(), "converged": o.converged(),
        "objective": o.objective, "published": published,
        "objective_error": published.map(|f| (o.objective - f).abs()),
        "kkt": o.kkt, "infeasibility": o.infeasibility, "iterations": o.iterations,
        "sketch_steps": o.sketch_steps, "matrix_free": o.matrix_free, "hessian_products": o.hessian_products,
        "seconds": o.seconds, "x": o.x, "lambda": o.lambda,
    })
}

pub fn run(a: NlpArgs) -> Result<()> {
    match a.what {
        NlpWhat::Solve {
            problem,
            method,
            seed,
            json,
        } => {
            let mut cfg: AdaSketchConfig = method.parse()?;
            let (p, published): (Box<dyn Nlp>, Option<f64>) =
                if problem.eq_ignore_ascii_case("logreg-eq") {
                    // The official logistic-regression runs test the reduced Hessian against 1e-2.
                    if !method.contains("reduced_hessian_tol") {
                        cfg.reduced_hessian_tol = 1e-2;
                    }
                    (Box::new(ConstrainedLogreg::digits(seed)?), None)
                } else {
                    let p = problems::by_name(&problem)?;
                    let f = p.fstar;
                    (Box::new(p), Some(f))
                };
            let o = solve(&*p, &cfg)?;
            if json {
                let mut r = record(&*p, published, &o);
                r["method"] = json!(cfg.to_string());
                r["kkt_history"] = json!(o.kkt_history);
                println!("{r}");
            } else {
                let products = if o.matrix_free {
                    format!(
                        ", {} Hessian-vector products (matrix-free)",
                        o.hessian_products
                    )
                } else {
                    String::new()
                };
                println!(
                    "{} (n = {}, m = {}) by {}: {} after {} iterations, {} sketch steps{products}, {:.3} s",
                    p.name(),
                    p.n(),
                    p.m(),
                    cfg.sketch,
                    o.status.as_str(),
                    o.iterations,
                    o.sketch_steps,
                    o.seconds
                );
                let published =
                    published.map_or(String::new(), |f| format!(" (published {f:.10})"));
                println!(
                    "f = {:.10}{published}, KKT residual {:.2e}, ‖c‖ {:.2e}",
                    o.objective, o.kkt, o.infeasibility
                );
            }
        }
        NlpWhat::Suite { method, json } => {
            let cfg: AdaSketchConfig = method.parse()?;
            let all = problems::all();
            let mut rows = Vec::new();
            if !json {
                println!(
                    "{:<11} {:>3} {:>3} {:<29} {:>6} {:>10} {:>10} {:>9} {:>9}",
                    "problem", "n", "m", "status", "iters", "sketch", "|f - f*|", "KKT", "seconds"
                );
            }
            for p in &all {
                let o = solve(p, &cfg)?;
                if !json {
                    println!(
                        "{:<11} {:>3} {:>3} {:<29} {:>6} {:>10} {:>10.2e} {:>9.2e} {:>9.4}",
                        p.name,
                        p.n(),
                        p.m(),
                        o.status.as_str(),
                        o.iterations,
                        o.sketch_steps,
                        (o.objective - p.fstar).abs(),
                        o.kkt,
                        o.seconds
                    );
                }
                rows.push(record(p, Some(p.fstar), &o));
            }
            let solved = rows.iter().filter(|r| r["converged"] == true).count();
            if json {
                println!(
                    "{}",
                    json!({"method": cfg.to_string(), "solved": solved, "problems": rows.len(), "results": rows})
                );
            } else {
                println!("solved {solved} of {} ({})", rows.len(), cfg);
            }
        }
    }
    Ok(())
}
