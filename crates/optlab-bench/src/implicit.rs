//! `optlab-bench implicit`: one ridge hypergradient by implicit differentiation (P10; n × d data, normal-equation
//! CG at each relative residual of `--tols`) and one data set distillation step, against jaxopt on CPU in the same run
//! when `python3 -c "import jax, jaxopt"` works. Both sides build the same deterministic data; the ridge
//! hypergradient's error is measured against a dense solve. The two stop CG differently (optlab on the system's own
//! residual, jaxopt on the normal equations' residual), so the comparison is made at equal error: at each error
//! jaxopt reaches, each side's fastest iterate at least that accurate, the runs of tolerances that stop at the same
//! iterate pooled into one median. optlab is timed twice: verified (the default: one more product measures the true
//! residual) and unverified (the solver's own residual decides, as in jaxopt).

use crate::harness::python_script as python;
use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use clap::Args;
use optlab::bilevel::hypergrad::{hypergradient_descent, ImplicitConfig, ImplicitProblem};
use optlab::implicit::linear::{solve, DenseMatrix, SolveOptions, Solver};
use optlab::implicit::Optimality;
use optlab::nn::loss::cross_entropy;
use optlab::nn::matmul::matmul;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct ImplicitBenchArgs {
    /// Ridge examples and features.
    #[arg(long, default_value_t = 5000)]
    pub n: usize,
    #[arg(long, default_value_t = 2000)]
    pub d: usize,
    /// Relative residuals of the hypergradient's linear solve, one timing each (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1e-2,1e-3,1e-4,1e-5,1e-6,1e-7,1e-8,1e-9"
    )]
    pub tols: Vec<f64>,
    /// Timed repetitions (the median is reported, after one warm-up).
    #[arg(long, default_value_t = 5)]
    pub repeat: usize,
    /// Distillation steps (the median of all but the first is reported).
    #[arg(long, default_value_t = 20)]
    pub distill_steps: usize,
    /// Skip jaxopt.
    #[arg(long)]
    pub no_python: bool,
    /// Print one JSON object instead of the tables.
    #[arg(long)]
    pub json: bool,
}

/// X_ij = sin(0.7 i + 1.3 j) + 0.1 cos(0.05 i j mod 2π), y_i = sin(0.3 i), for rows offset..offset+n.
fn data(n: usize, d: usize, offset: usize) -> Result<(Tensor, Tensor)> {
    let mut x = Vec::with_capacity(n * d);
    for i in offset..offset + n {
        for j in 0..d {
            let (fi, fj) = (i as f64, j as f64);
            x.push(
                (0.7 * fi + 1.3 * fj).sin()
                    + 0.1 * (0.05 * fi * fj).rem_euclid(std::f64::consts::TAU).cos(),
            );
        }
    }
    let y: Vec<f64> = (offset..offset + n)
        .map(|i| (0.3 * i as f64).sin())
        .collect();
    Ok((
        Tensor::from_vec(x, (n, d), &Device::Cpu)?,
        Tensor::from_vec(y, n, &Device::Cpu)?,
    ))
}

/// A relative error above this is not a usable hypergradient (jaxopt's loosest solves can stop before the first
/// iteration and return zero, error 1); such levels are listed but not compared.
const UNUSABLE: f64 = 0.1;

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// (hypergradient, median seconds) per distinct iterate: the timed runs of tolerances that stop at the same iterate
/// (the same hypergradient, bit for bit) pooled into one median. A minimum over several such medians would favour
/// whichever side's tolerance grid happens to land more often on one iterate.
fn pooled<'a>(runs: impl Iterator<Item = (&'a [f64], f64)>) -> Vec<(f64, f64)> {
    let mut groups: Vec<(f64, Vec<f64>)> = Vec::new();
    for (times, hyper) in runs {
        match groups.iter_mut().find(|g| g.0.to_bits() == hyper.to_bits()) {
            Some(g) => g.1.extend_from_slice(times),
            None => groups.push((hyper, times.to_vec())),
        }
    }
    groups.into_iter().map(|(h, t)| (h, median(t))).collect()
}

pub fn run(a: ImplicitBenchArgs) -> Result<()> {
    anyhow::ensure!(
        a.n >= 1
            && a.d >= 1
            && a.repeat >= 1
            && a.distill_steps >= 2
            && !a.tols.is_empty()
            && a.tols.iter().all(|t| *t > 0.0 && t.is_finite()),
        "--n, --d, --repeat and every --tols value must be positive, --distill-steps at least 2 (the first step is left out)"
    );
    optlab::memory::check(
        "the ridge benchmark's data",
        (2 * a.n * a.d + 2 * a.d * a.d) as f64 * 8.0,
        "lower --n or --d",
    )?;
    let (x, y) = data(a.n, a.d, 0)?;
    let (xv, yv) = data(a.n, a.d, a.n)?;
    let n = a.n as f64;
    // The inner solution and the exact hypergradient by CG on the materialised system (not timed).
    let gram = x.t()?.matmul(&x)?.affine(1.0 / n, 0.0)?;
    let a_mat = DenseMatrix::new(a.d, gram.flatten_all()?.to_vec1::<f64>()?)?;
    let exact_opts = SolveOptions {
        solver: Solver::Cg,
        tol: 1e-13,
        max_iter: 20 * a.d,
        ridge: 1.0,
        verify: true,
    };
    let xty: Vec<f64> = x
        .t()?
        .matmul(&y.unsqueeze(1)?)?
        .squeeze(1)?
        .affine(1.0 / n, 0.0)?
        .to_vec1()?;
    let w: Vec<f64> = solve(&a_mat, &xty, &exact_opts)?.x;
    let w = Tensor::from_vec(w, a.d, &Device::Cpu)?;
    let v = xv
        .t()?
        .matmul(
            &xv.matmul(&w.unsqueeze(1)?)?
                .squeeze(1)?
                .sub(&yv)?
                .unsqueeze(1)?,
        )?
        .squeeze(1)?
        .affine(1.0 / n, 0.0)?;
    let neg_v: Vec<f64> = v.neg()?.to_vec1()?;
    let u = solve(&a_mat, &neg_v, &exact_opts)?.x;
    let exact: f64 = w.to_vec1::<f64>()?.iter().zip(&u).map(|(a, b)| a * b).sum();
    let f = Optimality::root(|w: &Tensor, th: &Tensor| {
        let r = matmul(&x, &w.unsqueeze(1)?)?.squeeze(1)?.sub(&y)?;
        let g = matmul(&x.t()?, &r.unsqueeze(1)?)?
            .squeeze(1)?
            .affine(1.0 / n, 0.0)?;
        Ok(g.add(&w.broadcast_mul(&th.exp()?)?)?)
    });
    let theta = Tensor::zeros(1, DType::F64, &Device::Cpu)?;
    // (tol, seconds of each run, hypergradient) per tolerance: verified (the default), then unverified (the
    // solver's own residual decides, as in jaxopt).
    let mut modes = [Vec::new(), Vec::new()];
    for (mode, verify) in modes.iter_mut().zip([true, false]) {
        for &tol in &a.tols {
            let opts = SolveOptions {
                solver: Solver::NormalCg,
                tol,
                max_iter: 10_000,
                ridge: 0.0,
                verify,
            };
            let mut times = Vec::new();
            let mut hyper = f64::NAN;
            for rep in 0..=a.repeat {
                let t = Instant::now();
                hyper = f.vjp(&w, &theta, &v, &opts)?.to_vec1::<f64>()?[0];
                if rep > 0 {
                    times.push(t.elapsed().as_secs_f64());
                }
            }
            mode.push((tol, times, hyper));
        }
    }
    let [ours, unverified] = modes;
    // The floor per normal-CG iteration: one product with XᵀX... as two passes over X (A·p and Aᵀ·q are each two).
    let p = Tensor::ones(a.d, DType::F64, &Device::Cpu)?.unsqueeze(1)?;
    let t = Instant::now();
    for _ in 0..5 {
        let _ = matmul(&x.t()?, &matmul(&x, &p)?)?;
    }
    let pass = t.elapsed().as_secs_f64() / 5.0;

    // Distillation step on the first 1000 digits (the first image of each class as the synthetic set), with the
    // products of `optlab bilevel --problem distill` (optlab's matmul, which differentiates tracked operands only).
    let digits = optlab::data::digits()?;
    let idx: Vec<usize> = (0..1000).collect();
    let (xr, yr) = digits.batch(&idx, DType::F64, &Device::Cpu)?;
    let labels: Vec<u32> = yr.to_vec1()?;
    let first: Vec<usize> = (0..10u32)
        .map(|c| labels.iter().position(|&l| l == c).unwrap_or(0))
        .collect();
    let s0 = xr.index_select(
        &Tensor::new(
            first.iter().map(|&i| i as u32).collect::<Vec<_>>(),
            &Device::Cpu,
        )?,
        0,
    )?;
    let ones = |m: usize| Tensor::ones((m, 1), DType::F64, &Device::Cpu);
    let xr1 = Tensor::cat(&[&xr, &ones(1000)?], 1)?;
    let cls = Tensor::arange(0u32, 10, &Device::Cpu)?;
    let problem = ImplicitProblem {
        optimality: Optimality::stationary(|w: &Tensor, s: &Tensor| {
            let logits = matmul(&Tensor::cat(&[s, &ones(10)?], 1)?, w)?;
            Ok(cross_entropy(&logits, &cls)?.add(&w.sqr()?.sum_all()?.affine(0.005, 0.0)?)?)
        }),
        upper: Box::new(|w| cross_entropy(&matmul(&xr1, w)?, &yr)),
        inner: None,
    };
    let cfg = ImplicitConfig {
        steps: a.distill_steps,
        outer: "sgd:lr=0.05".parse()?,
        solve: SolveOptions {
            solver: Solver::Cg,
            ..SolveOptions::default()
        },
        ..ImplicitConfig::default()
    };
    let w0 = Tensor::zeros((65, 10), DType::F64, &Device::Cpu)?;
    let mut stamps = vec![Instant::now()];
    let mut tick = |_: usize, _: usize, _: f64| stamps.push(Instant::now());
    let run = hypergradient_descent(&problem, &s0, &w0, &cfg, Some(&mut tick))?;
    // Step k's time: from the value after step k−1 to the value after step k (the first, a cold start, left out).
    let step_times: Vec<f64> = stamps
        .windows(2)
        .skip(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    let distill = median(step_times);
    anyhow::ensure!(
        run.curve.len() == a.distill_steps + 1,
        "the distillation run stopped early"
    );

    let digits_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../optlab/data/digits.csv.gz");
    let jax = python(
        "implicit_jaxopt.py",
        &[
            "--n".into(),
            a.n.to_string(),
            "--d".into(),
            a.d.to_string(),
            "--tols".into(),
            a.tols
                .iter()
                .map(f64::to_string)
                .collect::<Vec<_>>()
                .join(","),
            "--repeat".into(),
            a.repeat.to_string(),
            "--digits".into(),
            digits_path.into(),
            "--distill-steps".into(),
            a.distill_steps.to_string(),
        ],
        a.no_python,
    );
    let err = |h: f64| (h - exact).abs() / exact.abs();
    // (seconds of each run, hypergradient) per tolerance.
    let jax_runs: Vec<(Vec<f64>, f64)> = jax
        .as_ref()
        .and_then(|j| j["runs"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let times = r["times"].as_array().map_or_else(Vec::new, |t| {
                t.iter().filter_map(serde_json::Value::as_f64).collect()
            });
            (times, r["hypergradient"].as_f64().unwrap_or(f64::NAN))
        })
        .collect();
    // Equal accuracy: at each error level jaxopt reached, the fastest iterate of each side at most that wrong, in
    // seconds (optlab's infinite when none is); None past UNUSABLE.
    let (mine_pooled, bare_pooled, jax_pooled) = (
        pooled(ours.iter().map(|r| (r.1.as_slice(), r.2))),
        pooled(unverified.iter().map(|r| (r.1.as_slice(), r.2))),
        pooled(jax_runs.iter().map(|r| (r.0.as_slice(), r.1))),
    );
    let mut levels: Vec<f64> = jax_pooled
        .iter()
        .map(|r| err(r.0))
        .filter(|e| e.is_finite())
        .collect();
    levels.sort_by(f64::total_cmp);
    levels.dedup_by(|a, b| (*a - *b).abs() <= 0.01 * b.abs());
    let fastest = |runs: &[(f64, f64)], e: f64| {
        runs.iter()
            .filter(|r| err(r.0) <= e * 1.01)
            .map(|r| r.1)
            .fold(f64::INFINITY, f64::min)
    };
    // (error level, (optlab, optlab unverified, jaxopt) seconds).
    type Level = (f64, Option<(f64, f64, f64)>);
    let equal: Vec<Level> = levels
        .into_iter()
        .map(|e| {
            if e > UNUSABLE {
                return (e, None);
            }
            let (m, b, j) = (
                fastest(&mine_pooled, e),
                fastest(&bare_pooled, e),
                fastest(&jax_pooled, e),
            );
            (e, Some((m, b, j)))
        })
        .collect();
    let jax_pass = jax.as_ref().and_then(|j| j["product_seconds"].as_f64());
    let jax_distill = jax
        .as_ref()
        .and_then(|j| j["distill_seconds_per_step"].as_f64());
    if a.json {
        use crate::harness::ratio;
        let ms = |s: f64| Some(s * 1e3).filter(|m| m.is_finite());
        // Per tolerance the two sides stop at different errors, so the ratio is only given at equal error.
        let ridge: Vec<_> = ours
            .iter()
            .enumerate()
            .map(|(i, (tol, times, hyper))| {
                let theirs = jax_runs.get(i);
                let bare = &unverified[i];
                serde_json::json!({
                    "tol": tol,
                    "optlab_ms": median(times.clone()) * 1e3,
                    "optlab_rel_error": err(*hyper),
                    "optlab_unverified_ms": median(bare.1.clone()) * 1e3,
                    "optlab_unverified_rel_error": err(bare.2),
                    "jaxopt_ms": theirs.and_then(|r| ms(median(r.0.clone()))),
                    "jaxopt_rel_error": theirs.map(|r| err(r.1)),
                })
            })
            .collect();
        let equal: Vec<_> = equal
            .iter()
            .map(|&(e, times)| {
                let (mine, bare, theirs) =
                    times.map_or((None, None, None), |(m, b, t)| (ms(m), ms(b), ms(t)));
                serde_json::json!({
                    "max_rel_error": e,
                    "compared": times.is_some(),
                    "optlab_ms": mine,
                    "optlab_unverified_ms": bare,
                    "jaxopt_ms": theirs,
                    "ratio_optlab_over_jaxopt": ratio(mine, theirs),
                    "ratio_unverified_over_jaxopt": ratio(bare, theirs),
                })
            })
            .collect();
        let jax_pass = jax_pass.map(|s| s * 1e3);
        let jax_distill = jax_distill.map(|s| s * 1e3);
        println!(
            "{}",
            serde_json::json!({
                "bench": "implicit",
                "n": a.n,
                "d": a.d,
                "ridge": ridge,
                "equal_error": equal,
                "product": {
                    "optlab_ms": pass * 1e3,
                    "jax_ms": jax_pass,
                    "ratio_optlab_over_jax": ratio(Some(pass * 1e3), jax_pass),
                },
                "distill": {
                    "optlab_ms_per_step": distill * 1e3,
                    "jaxopt_ms_per_step": jax_distill,
                    "ratio_optlab_over_jaxopt": ratio(Some(distill * 1e3), jax_distill),
                },
            })
        );
        return Ok(());
    }
    println!(
        "Ridge hypergradient, n={} d={} (f64, CPU), normal-equation CG to relative residual tol; error against a dense solve",
        a.n, a.d
    );
    println!("(unverified: the solver's own residual decides, as in jaxopt; verified, the default, spends one more product on the true residual)");
    println!(
        "{:<8} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "tol", "optlab s", "unverified s", "rel. error", "jaxopt s", "rel. error"
    );
    for (i, (tol, times, hyper)) in ours.iter().enumerate() {
        let theirs = jax_runs.get(i).map_or("n/a".to_string(), |(t, h)| {
            format!("{:>12.4} {:>12.2e}", median(t.clone()), err(*h))
        });
        println!(
            "{:<8.0e} {:>12.4} {:>12.4} {:>12.2e} {}",
            tol,
            median(times.clone()),
            median(unverified[i].1.clone()),
            err(*hyper),
            theirs
        );
    }
    for &(e, times) in &equal {
        match times {
            None => println!(
                "at error ≤ {e:.2e}: not compared (a hypergradient that far off is no use to an optimizer)"
            ),
            Some((mine, bare, theirs)) if mine.is_finite() => println!(
                "at error ≤ {e:.2e}: optlab {mine:.4} s (unverified {bare:.4} s), jaxopt {theirs:.4} s: optlab / jaxopt {:.2}x (unverified {:.2}x)",
                mine / theirs,
                bare / theirs
            ),
            Some(_) => println!(
                "at error ≤ {e:.2e}: no optlab run that accurate (add a smaller --tols value)"
            ),
        }
    }
    if jax.is_none() {
        println!("jaxopt   n/a (pip install jax jaxopt, or --no-python)");
    }
    println!(
        "one XᵀX·p product (two passes over X): optlab {:.4} s, jax {}",
        pass,
        jax_pass.map_or("n/a".into(), |s| format!("{s:.4} s"))
    );
    println!("\nDistillation step (1000 digits, 10 synthetic images, inner logistic regression to ‖∇‖ ≤ 1e-9, CG 1e-10)");
    println!("{:<8} {:>14}", "", "s per step");
    println!("{:<8} {:>14.5}", "optlab", distill);
    match jax_distill {
        Some(s) => {
            println!("{:<8} {:>14.5}", "jaxopt", s);
            println!(
                "optlab takes {:.2}x jaxopt's time (jaxopt: L-BFGS inner solver, jit-compiled)",
                distill / s
            );
        }
        None => println!("jaxopt   n/a"),
    }
    Ok(())
}
