//! `optlab-bench nlp`: AdaSketch-Newton (P19; randomized Kaczmarz and the exact-solve variant) on the
//! equality-constrained CUTEst test set against scipy's `trust-constr` (exact derivatives from jax) in the same run:
//! success (KKT residual ≤ 1e-4; and the published optimum reached), iterations and time per problem.

use crate::harness::python_script as python;
use anyhow::Result;
use clap::Args;
use optlab::constrained::adasketch::{solve, AdaSketchConfig, Outcome};
use optlab::constrained::problems;
use optlab::constrained::sketch::Sketch;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct NlpBenchArgs {
    /// Timed runs per problem and method (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Skip scipy.
    #[arg(long)]
    pub no_python: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// One method's result on one problem: converged, at the published optimum, iterations, seconds.
type Run = (bool, bool, u64, f64);

fn timed(p: &problems::TestProblem, sketch: Sketch, repeat: usize) -> Result<(Outcome, f64)> {
    let cfg = AdaSketchConfig {
        sketch,
        ..AdaSketchConfig::default()
    };
    let mut times = Vec::new();
    let mut out = None;
    for _ in 0..repeat {
        let t = Instant::now();
        out = Some(solve(p, &cfg)?);
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok((out.expect("repeat >= 1"), times[times.len() / 2]))
}

pub fn run(a: NlpBenchArgs) -> Result<()> {
    anyhow::ensure!(a.repeat >= 1, "--repeat must be at least 1");
    let scipy = python(
        "nlp_scipy.py",
        &["--repeat".into(), a.repeat.to_string()],
        a.no_python,
    );
    let all = problems::all();
    let at_optimum =
        |f: f64, p: &problems::TestProblem| (f - p.fstar).abs() <= 1e-6 * p.fstar.abs().max(1.0);
    // Per problem: adasketch, newton and scipy's runs.
    let mut rows: Vec<(&str, Run, Run, Option<Run>)> = Vec::new();
    let (mut solved, mut faster, mut both) = ([0usize; 3], 0usize, 0usize);
    for p in &all {
        let (sk, sk_t) = timed(p, Sketch::Kaczmarz, a.repeat)?;
        let (ex, ex_t) = timed(p, Sketch::Exact, a.repeat)?;
        let theirs = scipy.as_ref().map(|j| &j["results"][p.name]);
        let sci = theirs.and_then(|r| {
            let (ok, f) = (r["success"].as_bool()?, r["objective"].as_f64()?);
            Some((
                ok,
                at_optimum(f, p),
                r["iterations"].as_u64()?,
                r["seconds"].as_f64()?,
            ))
        });
        solved[0] += sk.converged() as usize;
        solved[1] += ex.converged() as usize;
        if let Some((ok, _, _, s)) = sci {
            solved[2] += ok as usize;
            if ok && sk.converged() {
                both += 1;
                faster += (sk_t < s) as usize;
            }
        }
        let run = |o: &Outcome, t: f64| {
            (
                o.converged(),
                at_optimum(o.objective, p),
                o.iterations as u64,
                t,
            )
        };
        rows.push((p.name, run(&sk, sk_t), run(&ex, ex_t), sci));
    }
    // adasketch's time over scipy's where both solve the problem.
    let sk_over_scipy = |sk: &Run, sci: &Option<Run>| match sci {
        Some((true, _, _, s)) if sk.0 => Some(sk.3 / s),
        _ => None,
    };
    if a.json {
        let side = |r: &Run| serde_json::json!({"ok": r.0, "at_optimum": r.1, "iterations": r.2, "ms": r.3 * 1e3});
        let cases: Vec<_> = rows
            .iter()
            .map(|(name, sk, ex, sci)| {
                serde_json::json!({
                    "problem": name,
                    "optlab_adasketch": side(sk),
                    "optlab_newton": side(ex),
                    "scipy": sci.as_ref().map(side),
                    "ratio_optlab_adasketch_over_scipy": sk_over_scipy(sk, sci),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "bench": "nlp",
                "repeat": a.repeat,
                "scipy_version": scipy.as_ref().and_then(|j| j["scipy"].as_str()),
                "cases": cases,
                "solved": {
                    "of": all.len(),
                    "optlab_adasketch": solved[0],
                    "optlab_newton": solved[1],
                    "scipy": scipy.as_ref().map(|_| solved[2]),
                },
                "adasketch_faster_than_scipy": scipy.as_ref().map(|_| faster),
                "both_solved": scipy.as_ref().map(|_| both),
            })
        );
        return Ok(());
    }
    println!(
        "Equality-constrained CUTEst problems: success = KKT residual ≤ 1e-4 (* also within 1e-6 of the published optimum); median of {} runs",
        a.repeat
    );
    println!(
        "{:<11} {:>22} {:>22} {:>22} {:>10}",
        "problem", "adasketch (kaczmarz)", "newton (exact KKT)", "scipy trust-constr", "sk / scipy"
    );
    let cell = |&(ok, opt, it, s): &Run| {
        format!(
            "{}{} {:>4} it {:>8.4} s",
            if ok { "ok" } else { "--" },
            if ok && opt { "*" } else { " " },
            it,
            s
        )
    };
    for (name, sk, ex, sci) in &rows {
        let ratio = match (sk_over_scipy(sk, sci), sci) {
            (Some(r), _) => format!("{r:.2}x"),
            (None, Some(_)) => "-".into(),
            (None, None) => "n/a".into(),
        };
        println!(
            "{:<11} {:>22} {:>22} {:>22} {:>10}",
            name,
            cell(sk),
            cell(ex),
            sci.as_ref().map_or("n/a".into(), cell),
            ratio
        );
    }
    println!(
        "solved of {}: adasketch {}, newton {}, scipy {}",
        all.len(),
        solved[0],
        solved[1],
        if scipy.is_some() {
            solved[2].to_string()
        } else {
            "n/a".into()
        }
    );
    if scipy.is_some() {
        println!("adasketch faster than scipy on {faster} of the {both} problems both solve");
        if let Some(v) = scipy.as_ref().and_then(|j| j["scipy"].as_str()) {
            println!("(scipy {v}; derivatives by jax, compiled before timing)");
        }
    } else {
        println!("scipy    n/a (pip install scipy jax, or --no-python)");
    }
    Ok(())
}
