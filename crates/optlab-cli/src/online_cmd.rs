//! `optlab online run|rate`: the regret of online learners on SEA sequences (P32) and the last-iterate rates of
//! composite stochastic mirror descent (P06).

use crate::plot::{line_chart, Series};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use optlab::online::csmd::{Csmd, GradientNoise};
use optlab::online::learners::LearnerConfig;
use optlab::online::problems::{self, LinearLoss};
use optlab::online::rates::{self, RateConfig, RateReport};
use optlab::online::regret::{self, RegretConfig, RegretReport};
use optlab::online::sea::SeaConfig;
use optlab::tensor_io::write_atomic;
use optlab::train::run_dir::RunDirLock;
use optlab::Spec;
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct OnlineArgs {
    #[command(subcommand)]
    pub what: OnlineWhat,
}

#[derive(Subcommand, Debug)]
pub enum OnlineWhat {
    /// Online learners against a SEA loss sequence (P32): regret against T over seeds, with the comparator
    /// computed exactly, next to the sequence's σ²_{1:T} and Σ²_{1:T}.
    #[command(
        after_help = "Examples:\n  optlab online run --learner ogd --learner oomd --sequence sea:sigma=0,Sigma=1,drift=adversarial --rounds 100000 --seeds 20 --out runs/sea\n  optlab online run --learner omd --learner ons --sequence sea:loss=logloss,sigma=0.1,Sigma=0.2,drift=periodic,dim=5 --rounds 10000 --out runs/portfolio --json\n\nLearners: ogd, omd, oomd (optimistic OMD, last gradient as hint), ons (online Newton step, log loss only),\neach as NAME[:step=adaptive|strong,delta=1,c=..,mirror=euclidean|entropic,gamma=0.125,eps=32,optimistic=false].\nSequence keys: loss=lsq|ridge|logloss, sigma, Sigma, drift=zero|periodic|adversarial, period=50, dim=10,\nradius=1, lambda=0.1 (ridge). Writes DIR/regret.json and DIR/regret.png."
    )]
    Run(RunArgs),
    /// Composite stochastic mirror descent (P06) on a problem with a known optimum: last-iterate (and averaged)
    /// suboptimality against the horizon, median and 95% quantile over seeds, fitted log-log slopes.
    #[command(
        after_help = "Examples:\n  optlab online rate --problem lad --horizons 100,1000,10000,100000 --seeds 100 --out runs/lad\n  optlab online rate --problem hinge --method csmd:rule=strong,mu=0.01,prox=l2,lambda=0.01 --out runs/hinge --json\n  optlab online rate --problem lad --noise student:dof=1.8,scale=1 --method csmd:rule=sqrt_T,p=1.5,eta=0.5 --out runs/heavy\n\nProblems: lad (least absolute deviations of doctor visits on the embedded RAND HIE covariates, n = 20190,\nd = 10) and hinge (digits 0-4 against 5-9, n = 1797, d = 65). The optimum of F + h over the method's domain\nis solved exactly by the conic solver. Method keys: rule=const|sqrt_T|sqrt_t|linear|strong, eta, mu, p,\nsmooth, mirror=euclidean|entropic, domain=free|box|ball|simplex (lo, hi, radius), prox=none|l1|l2, lambda.\nWrites DIR/rate.json and DIR/rate.png."
    )]
    Rate(RateArgs),
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// A learner spec; repeat the flag for several.
    #[arg(long, required = true)]
    learner: Vec<String>,
    /// The loss sequence, `sea:key=value,...`.
    #[arg(long, default_value = "sea")]
    sequence: String,
    #[arg(long, default_value_t = 10_000)]
    rounds: u64,
    #[arg(long, default_value_t = 20)]
    seeds: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    out: PathBuf,
    /// The report as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct RateArgs {
    /// lad or hinge[:lambda=0.01] (lambda sets the default method's L2 term).
    #[arg(long, default_value = "lad")]
    problem: String,
    /// The method, `csmd:key=value,...` (default: csmd:rule=sqrt_T,eta=0.5 for lad; the strongly convex
    /// csmd:rule=strong,mu=L,prox=l2,lambda=L for hinge).
    #[arg(long)]
    method: Option<String>,
    /// Extra gradient noise: none or student:dof=..,scale=.. (heavy tails).
    #[arg(long, default_value = "none")]
    noise: String,
    /// Horizons T, comma-separated and increasing.
    #[arg(long, value_delimiter = ',', default_values_t = vec![100u64, 300, 1000, 3000, 10000, 30000, 100000])]
    horizons: Vec<u64>,
    #[arg(long, default_value_t = 100)]
    seeds: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    json: bool,
}

pub fn run(a: OnlineArgs) -> Result<()> {
    match a.what {
        OnlineWhat::Run(r) => run_regret(r),
        OnlineWhat::Rate(r) => run_rate(r),
    }
}

fn run_regret(a: RunArgs) -> Result<()> {
    let seq = SeaConfig::from_spec(&mut Spec::parse(&a.sequence)?)?;
    let learners = a
        .learner
        .iter()
        .map(|s| LearnerConfig::from_spec(&mut Spec::parse(s)?))
        .collect::<optlab::Result<Vec<_>>>()?;
    let cfg = RegretConfig {
        rounds: a.rounds,
        seeds: a.seeds,
        seed: a.seed,
    };
    cfg.check(&seq)?;
    let _lock = RunDirLock::acquire(&a.out)?;
    let t0 = std::time::Instant::now();
    let report = regret::regret(&seq, &learners, &cfg)?;
    let seconds = t0.elapsed().as_secs_f64();
    let body = json!({"report": report, "seconds": seconds});
    write_atomic(
        &a.out.join("regret.json"),
        serde_json::to_string_pretty(&body)?.as_bytes(),
    )?;
    plot_regret(&a.out, &report)?;
    if a.json {
        println!("{body}");
    } else {
        println!(
            "{} rounds x {} seeds in {seconds:.2} s ({})",
            report.rounds, report.seeds, a.sequence
        );
        for c in &report.curves {
            let last = c.points.last().expect("a checkpoint");
            println!(
                "{:<44} regret {:>10.4} (q90 {:>10.4})  slope {:>6.3}  regret/(sqrt(sigma2)+sqrt(Sigma2)) {:.3}",
                c.learner, last.median, last.q90, c.slope, c.ratio_to_bound
            );
        }
        if let Some(last) = report.curves.first().and_then(|c| c.points.last()) {
            println!(
                "sigma2_1:T = {:.4e}, Sigma2_1:T = {:.4e} (mean over seeds); wrote {}",
                last.sigma2_sum,
                last.variation_sum,
                a.out.join("regret.json").display()
            );
        }
    }
    Ok(())
}

fn plot_regret(dir: &Path, r: &RegretReport) -> Result<()> {
    let series: Vec<Series> = r
        .curves
        .iter()
        .map(|c| Series {
            name: c.learner.clone(),
            points: c
                .points
                .iter()
                .map(|p| ((p.t as f64).log10(), p.median))
                .collect(),
        })
        .collect();
    line_chart(
        &dir.join("regret.png"),
        "median regret over seeds",
        "log10 T",
        "regret",
        &series,
        true,
    )
    .context("cannot draw regret.png")
}

/// The problem, its default method and the noise.
fn rate_problem(a: &RateArgs) -> Result<(LinearLoss, String)> {
    let mut spec = Spec::parse(&a.problem)?;
    let (f, default) = match spec.name.as_str() {
        "lad" => (
            problems::lad_randhie()?,
            "csmd:rule=sqrt_T,eta=0.5".to_string(),
        ),
        "hinge" => {
            let l = spec.f64("lambda", 0.01)?;
            if l <= 0.0 {
                bail!("hinge: lambda must be > 0, got {l}");
            }
            (
                problems::hinge_digits()?,
                format!("csmd:rule=strong,mu={l},prox=l2,lambda={l}"),
            )
        }
        other => {
            return Err(optlab::spec::unknown_name("problem", other, &["lad", "hinge"]).into())
        }
    };
    spec.finish()?;
    Ok((f, a.method.clone().unwrap_or(default)))
}

fn parse_noise(s: &str) -> Result<GradientNoise> {
    let mut spec = Spec::parse(s)?;
    let noise = match spec.name.as_str() {
        "none" => GradientNoise::None,
        "student" => GradientNoise::student_t(spec.f64("dof", 2.0)?, spec.f64("scale", 1.0)?)?,
        other => {
            return Err(optlab::spec::unknown_name("noise", other, &["none", "student"]).into())
        }
    };
    spec.finish()?;
    Ok(noise)
}

fn run_rate(a: RateArgs) -> Result<()> {
    let cfg = RateConfig {
        horizons: a.horizons.clone(),
        seeds: a.seeds,
        seed: a.seed,
    };
    cfg.check()?;
    let noise = parse_noise(&a.noise)?;
    let (f, method) = rate_problem(&a)?;
    let mut csmd = Csmd::from_spec(&mut Spec::parse(&method)?)?;
    csmd.noise = noise;
    let _lock = RunDirLock::acquire(&a.out)?;
    let t0 = std::time::Instant::now();
    let (f_star, x_star) = problems::optimum(&f, &csmd.geometry)?;
    let solve_seconds = t0.elapsed().as_secs_f64();
    let t1 = std::time::Instant::now();
    let report = rates::measure(&f, &csmd, f_star, &cfg)?;
    let seconds = t1.elapsed().as_secs_f64();
    let body = json!({
        "problem": a.problem, "noise": a.noise, "n": f.len(), "dim": f.dim,
        "x_star": x_star, "solve_seconds": solve_seconds, "seconds": seconds, "report": report,
    });
    write_atomic(
        &a.out.join("rate.json"),
        serde_json::to_string_pretty(&body)?.as_bytes(),
    )?;
    plot_rate(&a.out, &a.problem, &report)?;
    if a.json {
        println!("{body}");
        return Ok(());
    }
    println!(
        "{} (n = {}, d = {}), f* = {f_star:.10} by the conic solver in {solve_seconds:.2} s; {} seeds in {seconds:.1} s",
        a.problem,
        f.len(),
        f.dim,
        report.seeds
    );
    println!("{}", report.method);
    println!(
        "{:>9} {:>12} {:>12} {:>12} {:>12}",
        "T", "last med", "last q95", "avg med", "avg q95"
    );
    for p in &report.points {
        println!(
            "{:>9} {:>12.4e} {:>12.4e} {:>12.4e} {:>12.4e}",
            p.horizon, p.last.median, p.last.q95, p.average.median, p.average.q95
        );
    }
    let theory = report
        .theory_slope
        .map_or("none".to_string(), |s| format!("{s:.3} up to log factors"));
    println!(
        "log-log slope: last {:.3}, average {:.3}, theory {theory}; wrote {}",
        report.last_slope,
        report.average_slope,
        a.out.join("rate.json").display()
    );
    Ok(())
}

fn plot_rate(dir: &Path, problem: &str, r: &RateReport) -> Result<()> {
    let pts = |pick: fn(&rates::RatePoint) -> f64| -> Vec<(f64, f64)> {
        r.points
            .iter()
            .map(|p| ((p.horizon as f64).log10(), pick(p)))
            .collect()
    };
    let mut series = vec![
        Series {
            name: format!("last iterate, median (slope {:.2})", r.last_slope),
            points: pts(|p| p.last.median),
        },
        Series {
            name: "last iterate, 95% quantile".into(),
            points: pts(|p| p.last.q95),
        },
        Series {
            name: format!("average iterate, median (slope {:.2})", r.average_slope),
            points: pts(|p| p.average.median),
        },
    ];
    if let (Some(s), Some(first)) = (r.theory_slope, r.points.first()) {
        let t0 = first.horizon as f64;
        series.push(Series {
            name: format!("theory T^{s:.2} through the first median"),
            points: r
                .points
                .iter()
                .map(|p| {
                    (
                        (p.horizon as f64).log10(),
                        first.last.median * (p.horizon as f64 / t0).powf(s),
                    )
                })
                .collect(),
        });
    }
    line_chart(
        &dir.join("rate.png"),
        &format!("{problem}: F(x) + h(x) - f*"),
        "log10 T",
        "suboptimality",
        &series,
        true,
    )
    .context("cannot draw rate.png")
}
