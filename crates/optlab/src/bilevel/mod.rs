//! Bilevel optimization: min_x f(x, y*(x)) where y*(x) solves a lower-level problem in y.
//!
//! - [`hypergrad`]: hypergradient descent through implicit differentiation of the lower level's optimality
//!   condition (P10, [`crate::implicit`]), with its applications on the embedded digits: per-feature regularization
//!   strengths ([`hparam`]) and data set distillation ([`distill`]);
//! - [`borep`]: BO-REP (P05) for stochastic problems whose upper level is not Lipschitz-smooth, with the StocBiO and
//!   unnormalized baselines, on a hyper-representation task ([`hyper_rep`]);
//! - [`lvhba`]: LV-HBA (P13), single-loop and Hessian-free, for lower levels with constraints, on the paper's toy
//!   problem ([`toy`]) and SVM cost selection ([`svm`]).
//!
//! Every solver reports an [`Outcome`]: the upper objective along the run and the final metrics.

pub mod borep;
pub mod data;
pub mod distill;
pub mod hparam;
pub mod hyper_rep;
pub mod hypergrad;
pub mod lvhba;
pub mod method;
pub mod svm;
pub mod toy;

use serde::Serialize;
use std::collections::BTreeMap;

/// One point of the upper objective's curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CurvePoint {
    /// Upper-level step (0 = before the first).
    pub step: usize,
    /// The upper objective (the validation loss of the problems here).
    pub upper: f64,
}

/// What a bilevel run produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// The problem and method, as given.
    pub problem: String,
    pub method: String,
    pub curve: Vec<CurvePoint>,
    /// Final metrics by name (losses, accuracies, errors), in f64.
    pub metrics: BTreeMap<String, f64>,
    /// Wall time of the run, seconds.
    pub seconds: f64,
}

/// Called after every upper step with (step, steps, upper objective); returning an error stops the run.
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize, f64);

pub use method::{Method, Problem};

/// A finished run: its outcome and, for `distill`, the images `[10, 64]`.
#[derive(Debug, Clone)]
pub struct Run {
    pub outcome: Outcome,
    pub images: Option<candle_core::Tensor>,
}

/// Runs `method` on `problem` for `steps` upper steps (`None`: the problem's default) with the digits split and
/// starting point of `seed`.
pub fn run(
    problem: Problem,
    method: &Method,
    steps: Option<usize>,
    seed: u64,
    progress: Option<Progress<'_>>,
) -> crate::Result<Run> {
    problem.check(method)?;
    match (problem, method) {
        (Problem::RidgeHparam | Problem::LogregHparam, Method::Implicit(spec)) => {
            let model = if problem == Problem::RidgeHparam {
                hparam::Model::Ridge
            } else {
                hparam::Model::Logreg
            };
            let mut cfg = hparam::HparamConfig::new(model);
            cfg.seed = seed;
            spec.apply(&mut cfg.implicit, steps)?;
            Ok(Run {
                outcome: hparam::run(&cfg, progress)?,
                images: None,
            })
        }
        (Problem::Distill, Method::Implicit(spec)) => {
            let mut cfg = distill::DistillConfig {
                seed,
                ..Default::default()
            };
            spec.apply(&mut cfg.implicit, steps)?;
            let d = distill::run(&cfg, progress)?;
            Ok(Run {
                outcome: d.outcome,
                images: Some(d.images),
            })
        }
        (Problem::HyperRep, Method::BoRep(_) | Method::StocBio(_)) => {
            let alg = match method {
                Method::BoRep(c) => borep::Algorithm::BoRep(c.clone()),
                _ => match method {
                    Method::StocBio(c) => borep::Algorithm::StocBio(c.clone()),
                    _ => return Err(crate::Error::invalid("hyper-rep takes bo-rep or stocbio")),
                },
            };
            let task = hyper_rep::HyperRep::new(hyper_rep::HyperRepConfig {
                seed,
                ..Default::default()
            })?;
            let start = std::time::Instant::now();
            let r = borep::solve(&task, &alg, steps.unwrap_or(300), progress)?;
            let (test_loss, test_accuracy) = task.test_metrics(&r.x, &r.y)?;
            let mut metrics = std::collections::BTreeMap::new();
            let last = r.curve.last().map_or(f64::NAN, |c| c.upper);
            let best = r
                .curve
                .iter()
                .map(|c| c.upper)
                .fold(f64::INFINITY, f64::min);
            metrics.insert("val_loss_final".to_string(), last);
            metrics.insert("val_loss_min".to_string(), best);
            metrics.insert("val_accuracy".to_string(), task.val_accuracy(&r.x, &r.y)?);
            metrics.insert("test_loss".to_string(), test_loss);
            metrics.insert("test_accuracy".to_string(), test_accuracy);
            Ok(Run {
                outcome: Outcome {
                    problem: problem.to_string(),
                    method: method.to_string(),
                    curve: r.curve,
                    metrics,
                    seconds: start.elapsed().as_secs_f64(),
                },
                images: None,
            })
        }
        (Problem::ToyConstrained, Method::LvHba(spec)) => {
            let cfg = spec.apply(problem.lvhba_defaults());
            let start = std::time::Instant::now();
            let mut errors = Vec::new();
            let mut observe = |_: usize, x: &candle_core::Tensor, _: &candle_core::Tensor| {
                errors.push(toy::Toy::relative_error(x)?);
                Ok(())
            };
            let r = lvhba::solve(
                &toy::Toy,
                &cfg,
                steps.unwrap_or(1500),
                Some(&mut observe),
                progress,
            )?;
            let (best_at, best) =
                errors
                    .iter()
                    .enumerate()
                    .fold(
                        (0, f64::INFINITY),
                        |b, (i, &e)| if e < b.1 { (i + 1, e) } else { b },
                    );
            let mut metrics = std::collections::BTreeMap::new();
            metrics.insert("rel_error_x".to_string(), toy::Toy::relative_error(&r.x)?);
            metrics.insert("rel_error_x_min".to_string(), best);
            metrics.insert("rel_error_x_min_at".to_string(), best_at as f64);
            metrics.insert(
                "upper_final".to_string(),
                r.curve.last().map_or(f64::NAN, |c| c.upper),
            );
            Ok(Run {
                outcome: Outcome {
                    problem: problem.to_string(),
                    method: format!("lv-hba:{}", lvhba_spec(&cfg)),
                    curve: r.curve,
                    metrics,
                    seconds: start.elapsed().as_secs_f64(),
                },
                images: None,
            })
        }
        (Problem::SvmHparam, _) => {
            let task = svm::SvmTask::new((3, 8), seed)?;
            let start = std::time::Instant::now();
            let (c, y, curve, name) = match method {
                Method::LvHba(spec) => {
                    let cfg = spec.apply(problem.lvhba_defaults());
                    let r = lvhba::solve(&task, &cfg, steps.unwrap_or(1000), None, progress)?;
                    (r.x, r.y, r.curve, format!("lv-hba:{}", lvhba_spec(&cfg)))
                }
                Method::Implicit(spec) => {
                    let mut cfg = hypergrad::ImplicitConfig {
                        steps: 50,
                        outer: "adam:lr=0.1".parse()?,
                        // The KKT system is not symmetric and GMRES stalls on it: dense LU (495 unknowns).
                        solve: crate::implicit::linear::SolveOptions {
                            solver: crate::implicit::linear::Solver::Lu,
                            ..Default::default()
                        },
                        ..Default::default()
                    };
                    spec.apply(&mut cfg, steps)?;
                    let (c, v, curve) = task.implicit_route(&cfg, progress)?;
                    (c, v, curve, format!("implicit:solver={}", cfg.solve.solver))
                }
                Method::Grid { lo, hi, points } => {
                    let (c, v, loss) = task.grid_search(*lo, *hi, *points)?;
                    let curve = vec![CurvePoint {
                        step: 0,
                        upper: loss,
                    }];
                    (c, v, curve, method.to_string())
                }
                other => {
                    return Err(crate::Error::invalid(format!(
                        "--problem svm-hparam cannot be solved by {}",
                        other.name()
                    )))
                }
            };
            let mut metrics = task.metrics(&c, &y)?;
            // The chosen costs judged by the exact lower-level solution (LV-HBA's y is its own iterate).
            let exact = task.solve_lower(&c, None)?;
            for (k, v) in task.metrics(&c, &exact)? {
                if !k.starts_with("log_cost") {
                    metrics.insert(format!("{k}_exact_lower"), v);
                }
            }
            Ok(Run {
                outcome: Outcome {
                    problem: problem.to_string(),
                    method: name,
                    curve,
                    metrics,
                    seconds: start.elapsed().as_secs_f64(),
                },
                images: None,
            })
        }
        (_, m) => Err(crate::Error::invalid(format!(
            "--problem {problem} cannot be solved by {}",
            m.name()
        ))),
    }
}

/// LV-HBA's settings as spec keys.
fn lvhba_spec(c: &lvhba::LvHbaConfig) -> String {
    format!(
        "alpha={},beta={},eta={},gamma1={},gamma2={},u={},c={},p={},lambda0={},z0={}",
        c.alpha, c.beta, c.eta, c.gamma1, c.gamma2, c.u, c.c_bar, c.c_power, c.lambda0, c.z0
    )
}
