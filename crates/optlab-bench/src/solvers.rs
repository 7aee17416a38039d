//! `optlab-bench solvers`: CBO iterations per second against CBXpy, and CoLiDE/DAGMA wall time against the
//! official Python code, on the same problems in the same run (where those are installed).

use crate::harness::python_script as python;
use anyhow::Result;
use clap::Args;
use optlab::functions::TestFunction;
use optlab::solvers::cbo::{cbo_runs, is_success, CboConfig, Noise};
use optlab::solvers::dag::accuracy;
use optlab::solvers::dag::colide::{cores_used, fit, official_postprocess, DagOptions, Score};
use std::time::Instant;

#[derive(Args, Debug)]
pub struct SolversBenchArgs {
    /// CBO runs (Rastrigin d=20, N=40, anisotropic, sigma 10.1, alpha 30, dt 0.01, x0 ~ U[-3,3]^20).
    #[arg(long, default_value_t = 100)]
    pub cbo_runs: u64,
    #[arg(long, default_value_t = 5000)]
    pub cbo_iters: u64,
    /// CoLiDE problem: variables, graph, seed and noise of the official simulator.
    #[arg(long, default_value_t = 20)]
    pub dag_d: usize,
    #[arg(long, default_value = "er2")]
    pub dag_graph: String,
    #[arg(long, default_value = "nv")]
    pub dag_noise: String,
    #[arg(long, default_value_t = 0)]
    pub dag_seed: u64,
    /// Skip the Python side (CBXpy and the official CoLiDE).
    #[arg(long)]
    pub no_python: bool,
    /// Print one JSON object instead of the tables.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: SolversBenchArgs) -> Result<()> {
    anyhow::ensure!(
        a.cbo_runs >= 1 && a.cbo_iters >= 1,
        "--cbo-runs and --cbo-iters must be at least 1"
    );
    // CBO.
    let cfg = CboConfig {
        particles: 40,
        sigma: 10.1,
        alpha: 30.0,
        noise: Noise::Anisotropic,
        max_iters: a.cbo_iters,
        init: (-3.0, 3.0),
        ..CboConfig::default()
    };
    let f = |x: &[f64]| TestFunction::Rastrigin.eval_plain(x).unwrap_or(f64::NAN);
    let t = Instant::now();
    let runs = cbo_runs(&f, 20, &cfg, 0, a.cbo_runs)?;
    let secs = t.elapsed().as_secs_f64();
    let ok = runs
        .iter()
        .filter(|r| is_success(&r.x, &[0.0; 20], 0.25))
        .count();
    let ours_ips = (a.cbo_iters * a.cbo_runs) as f64 / secs;
    let cbx = python(
        "cbo_cbxpy.py",
        &[
            "--runs".into(),
            a.cbo_runs.to_string(),
            "--iters".into(),
            a.cbo_iters.to_string(),
        ],
        a.no_python,
    );
    // CoLiDE / DAGMA on the official simulator's data (so only where the official code runs): per variant, optlab's
    // seconds and accuracy with the official run's JSON line.
    let mut dag = Vec::new();
    for (variant, score) in [
        ("ev", Score::ColideEv),
        ("nv", Score::ColideNv),
        ("dagma", Score::Dagma),
    ] {
        let args: Vec<String> = [
            "--d",
            &a.dag_d.to_string(),
            "--graph",
            &a.dag_graph,
            "--seed",
            &a.dag_seed.to_string(),
            "--noise",
            &a.dag_noise,
            "--variant",
            variant,
            "--emit-cov",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let Some(off) = python("colide_official.py", &args, a.no_python) else {
            dag.push((variant, None));
            continue;
        };
        let cov: Vec<Vec<f64>> = serde_json::from_value(off["cov"].clone())?;
        let d = cov.len();
        let mut truth = vec![vec![0.0; d]; d];
        for e in off["b_true"].as_array().into_iter().flatten() {
            truth[e[0].as_u64().unwrap_or(0) as usize][e[1].as_u64().unwrap_or(0) as usize] =
                e[2].as_f64().unwrap_or(0.0);
        }
        let t = Instant::now();
        let w = official_postprocess(
            &fit(&cov, score, &DagOptions::for_score(score))?.w,
            score,
            0.3,
        );
        let secs = t.elapsed().as_secs_f64();
        dag.push((variant, Some((secs, accuracy(&truth, &w), off))));
    }
    let cbx_s = cbx.as_ref().and_then(|v| v["seconds"].as_f64());
    let cbx_ips = cbx
        .as_ref()
        .and_then(|v| v["iterations_per_second"].as_f64());
    if a.json {
        let dag: Vec<_> = dag
            .iter()
            .map(|(variant, r)| {
                let ours = r.as_ref().map(|(secs, ..)| secs * 1e3);
                let off = r.as_ref().map(|(.., off)| off);
                let off_ms = off.and_then(|o| o["seconds"].as_f64()).map(|s| s * 1e3);
                serde_json::json!({
                    "variant": variant,
                    "optlab_ms": ours,
                    "optlab_shd": r.as_ref().map(|(_, m, _)| m.shd),
                    "optlab_tpr": r.as_ref().map(|(_, m, _)| m.tpr),
                    "official_ms": off_ms,
                    "official_shd": off.and_then(|o| o["shd"].as_u64()),
                    "official_tpr": off.and_then(|o| o["tpr"].as_f64()),
                    "ratio_optlab_over_official": crate::harness::ratio(ours, off_ms),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "bench": "solvers",
                "cbo": {
                    "runs": a.cbo_runs,
                    "iterations": a.cbo_iters,
                    "optlab_ms": secs * 1e3,
                    "optlab_iterations_per_s": ours_ips,
                    "optlab_successes": ok,
                    "cbxpy_ms": cbx_s.map(|s| s * 1e3),
                    "cbxpy_iterations_per_s": cbx_ips,
                    "cbxpy_success_rate": cbx.as_ref().and_then(|v| v["success_rate"].as_f64()),
                    // Time per iteration: the inverse of the iterations/s ratio.
                    "ratio_optlab_over_cbxpy": crate::harness::ratio(Some(1.0 / ours_ips), cbx_ips.map(|r| 1.0 / r)),
                },
                "dag": {
                    "graph": a.dag_graph,
                    "d": a.dag_d,
                    "optlab_cores": cores_used(a.dag_d),
                    "noise": a.dag_noise,
                    "seed": a.dag_seed,
                    "cases": dag,
                },
            })
        );
        return Ok(());
    }
    println!(
        "CBO, Rastrigin d=20, N=40, anisotropic, {} runs x {} iterations (iterations/s counts every run's steps)",
        a.cbo_runs, a.cbo_iters
    );
    println!(
        "{:<8} {:>10} {:>14} {:>10}",
        "", "seconds", "iterations/s", "success"
    );
    println!(
        "{:<8} {:>10.2} {:>14.0} {:>9}/{}",
        "optlab", secs, ours_ips, ok, a.cbo_runs
    );
    match &cbx {
        Some(v) => {
            let (s, ips) = (cbx_s.unwrap_or(f64::NAN), cbx_ips.unwrap_or(f64::NAN));
            println!(
                "{:<8} {:>10.2} {:>14.0} {:>10.2}",
                "CBXpy",
                s,
                ips,
                v["success_rate"].as_f64().unwrap_or(f64::NAN)
            );
            println!("optlab is {:.1}x CBXpy's iterations/s", ours_ips / ips);
        }
        None => println!("CBXpy    n/a (pip install cbx, or --no-python)"),
    }
    println!(
        "\nCoLiDE/DAGMA, {} d={} {} noise, seed {}, n=1000 (the official simulator's data; official code single-threaded BLAS; optlab on {} core{})",
        a.dag_graph,
        a.dag_d,
        a.dag_noise,
        a.dag_seed,
        cores_used(a.dag_d),
        if cores_used(a.dag_d) == 1 { "" } else { "s" }
    );
    println!(
        "{:<10} {:>12} {:>6} {:>6} {:>14} {:>6} {:>6} {:>8}",
        "variant", "optlab s", "SHD", "TPR", "official s", "SHD", "TPR", "speedup"
    );
    for (variant, r) in &dag {
        let Some((secs, m, off)) = r else {
            println!("{variant:<10} n/a: the official code (vendored, see tools/reference/colide_fixtures.py) is needed for the shared data");
            continue;
        };
        let off_s = off["seconds"].as_f64().unwrap_or(f64::NAN);
        println!(
            "{variant:<10} {secs:>12.3} {:>6} {:>6.3} {off_s:>14.3} {:>6} {:>6.3} {:>7.1}x",
            m.shd,
            m.tpr,
            off["shd"].as_u64().unwrap_or(0),
            off["tpr"].as_f64().unwrap_or(f64::NAN),
            off_s / secs
        );
    }
    Ok(())
}
