//! Stochastic target-based surrogates, SSO (P34; Lavington, Vaswani, Babanezhad, Schmidt, Le Roux, "Target-based
//! Surrogates for Stochastic Optimization"), following the official code
//! (WilderLavington/Target-Based-Surrogates-For-Stochastic-Optimization, `optimizers/sgd_fmdopt.py` and
//! `optimizers/lsopt.py`).
//!
//! Each outer step takes the model's outputs f_t = f(θ_t) on a batch and one expensive gradient G = ∂ℓ/∂f at f_t
//! (the loss summed over examples, the official reduction), then takes `inner` cheap steps on the surrogate
//!
//!   s(θ) = mean over the batch's output entries of [ G ⊙ (f(θ) − f_t) / η + (f(θ) − f_t)² ]
//!
//! on the same batch (the official form: its minimiser in output space is f_t − G/(2η); the official code drops
//! the constant −G·f_t/η, which changes no gradient). The inner solver is the official stochastic line search
//! (LSOpt): the step starts at `init_step` (10) each outer step, grows by expand^(b/n) before each inner step,
//! and backtracks by `beta` (0.9) until s(θ − αg) ≤ s(θ) − c α‖g‖² (c = 0.1), at most 100 times or until
//! α < 1e-6, after which the step is taken anyway (as the official code does). `solver=optimizer` takes the inner
//! steps with the run's own optimizer instead. η is constant or grows as η√t (`schedule=sqrt`, the official
//! "stochastic" schedule). inner = 1 with a small η is close to SGD on the loss.

use crate::nn::{Param, Sequential};
use crate::optim::Optimizer;
use crate::{Error, Result, Spec};
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use std::fmt;
use std::str::FromStr;

/// How η changes with the outer step t (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtaSchedule {
    /// η.
    Constant,
    /// η √t (the official "stochastic" schedule).
    Sqrt,
}

/// What takes the inner steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InnerSolver {
    /// The official Armijo line search on the surrogate.
    LineSearch,
    /// The run's optimizer (its state carries across outer steps).
    Optimizer,
}

/// SSO's settings: `inner=10,eta=1,schedule=constant|sqrt,solver=ls|optimizer,init_step=10,c=0.1,beta=0.9,expand=2`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SsoSpec {
    /// m: surrogate steps per outer step.
    pub inner: usize,
    /// η of the surrogate (the official code's 1/stepsize).
    pub eta: f64,
    pub schedule: EtaSchedule,
    pub solver: InnerSolver,
    /// The line search's first step of every outer step.
    pub init_step: f64,
    /// Armijo constant.
    pub c: f64,
    /// Backtracking factor.
    pub beta: f64,
    /// Growth factor of the step before each inner step (raised to batch/n).
    pub expand: f64,
}

/// The largest number of inner steps.
pub const MAX_INNER: usize = 100_000;
/// The line search's backtracking limits (official: 100 tries, or a step below 1e-6).
pub const MAX_BACKTRACKS: usize = 100;
pub const MIN_STEP: f64 = 1e-6;

impl SsoSpec {
    /// η at outer step `t` (1-based).
    pub fn eta_at(&self, t: u64) -> f64 {
        match self.schedule {
            EtaSchedule::Constant => self.eta,
            EtaSchedule::Sqrt => self.eta * (t.max(1) as f64).sqrt(),
        }
    }
}

impl FromStr for SsoSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let mut sp = Spec::parse(&format!("sso:{s}"))?;
        let schedule = match sp.string("schedule", "constant").as_str() {
            "constant" => EtaSchedule::Constant,
            "sqrt" => EtaSchedule::Sqrt,
            other => {
                return Err(crate::spec::unknown_name(
                    "sso schedule",
                    other,
                    &["constant", "sqrt"],
                ))
            }
        };
        let solver = match sp.string("solver", "ls").as_str() {
            "ls" => InnerSolver::LineSearch,
            "optimizer" => InnerSolver::Optimizer,
            other => {
                return Err(crate::spec::unknown_name(
                    "sso solver",
                    other,
                    &["ls", "optimizer"],
                ))
            }
        };
        let spec = SsoSpec {
            inner: sp.usize("inner", 10)?,
            eta: sp.f64("eta", 1.0)?,
            schedule,
            solver,
            init_step: sp.f64("init_step", 10.0)?,
            c: sp.f64("c", 0.1)?,
            beta: sp.f64("beta", 0.9)?,
            expand: sp.f64("expand", 2.0)?,
        };
        sp.finish()?;
        if !(1..=MAX_INNER).contains(&spec.inner) {
            return Err(Error::invalid(format!(
                "sso: inner must be in 1..={MAX_INNER}, got {}",
                spec.inner
            )));
        }
        for (name, v) in [
            ("eta", spec.eta),
            ("init_step", spec.init_step),
            ("c", spec.c),
        ] {
            if v <= 0.0 {
                return Err(Error::invalid(format!("sso: {name} must be > 0, got {v}")));
            }
        }
        if !(spec.beta > 0.0 && spec.beta < 1.0) {
            return Err(Error::invalid(format!(
                "sso: beta must be in (0, 1), got {}",
                spec.beta
            )));
        }
        if spec.expand < 1.0 {
            return Err(Error::invalid(format!(
                "sso: expand must be >= 1, got {}",
                spec.expand
            )));
        }
        Ok(spec)
    }
}

impl fmt::Display for SsoSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "inner={},eta={},schedule={},solver={},init_step={},c={},beta={},expand={}",
            self.inner,
            self.eta,
            match self.schedule {
                EtaSchedule::Constant => "constant",
                EtaSchedule::Sqrt => "sqrt",
            },
            match self.solver {
                InnerSolver::LineSearch => "ls",
                InnerSolver::Optimizer => "optimizer",
            },
            self.init_step,
            self.c,
            self.beta,
            self.expand
        )
    }
}

crate::spec::serde_via_string!(SsoSpec);

/// One outer step's target: the batch's inputs, the outputs f_t and the loss gradient G at f_t.
pub struct Target {
    x: Tensor,
    f_t: Tensor,
    g: Tensor,
}

/// The outer step at θ_t: the mean loss of the batch, its gradient in the parameters (logged like any step's),
/// and the target. `loss` is the run's mean loss over `terms` terms (predictions for the cross-entropy, elements
/// for the squared error); G is its derivative in the outputs times `terms`, the derivative of the summed loss
/// (the official code's reduction='sum').
pub fn outer(
    model: &Sequential,
    x: Tensor,
    y: &Tensor,
    terms: usize,
    loss: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
) -> Result<(f64, GradStore, Target)> {
    let out = model.forward_mode(&x, true)?;
    let f_t = out.detach();
    let fv = Var::from_tensor(&f_t)?;
    let l = loss(fv.as_tensor(), y)?;
    let loss_v = l.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    let dl = l.backward()?;
    let g_mean = dl
        .get(fv.as_tensor())
        .ok_or_else(|| Error::invalid("sso: the loss does not depend on the model's outputs"))?
        .detach();
    // ∇θ L(θ_t) = J(θ_t)ᵀ ∂L/∂f: one backward of ⟨∂L/∂f, f(θ)⟩.
    let grads = out.mul(&g_mean)?.sum_all()?.backward()?;
    let g = g_mean.affine(terms.max(1) as f64, 0.0)?;
    Ok((loss_v, grads, Target { x, f_t, g }))
}

/// s(θ) at the current parameters: the mean over output entries of G ⊙ (f − f_t)/η + (f − f_t)².
fn surrogate(model: &Sequential, t: &Target, eta: f64) -> Result<Tensor> {
    let d = model.forward_mode(&t.x, true)?.sub(&t.f_t)?;
    Ok(t.g
        .mul(&d)?
        .affine(1.0 / eta, 0.0)?
        .add(&d.sqr()?)?
        .mean_all()?)
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// What the inner steps did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InnerReport {
    /// Inner steps taken (fewer than m when the surrogate's gradient vanished).
    pub steps: usize,
    /// The surrogate at the last inner iterate (0 at θ_t).
    pub surrogate: f64,
    /// The last accepted line-search step (NaN with the optimizer).
    pub step_size: f64,
}

/// The inner steps on the target's surrogate: the official line search, or `opt` with `solver=optimizer`.
/// `batch_share` is b/n (the line search's growth exponent).
pub fn inner(
    spec: &SsoSpec,
    model: &Sequential,
    params: &[Param],
    target: &Target,
    outer_step: u64,
    batch_share: f64,
    opt: &mut dyn Optimizer,
) -> Result<InnerReport> {
    let eta = spec.eta_at(outer_step);
    let grow = spec.expand.powf(batch_share);
    let mut step = spec.init_step;
    let mut last = 0.0;
    for j in 0..spec.inner {
        let s = surrogate(model, target, eta)?;
        let s0 = scalar(&s)?;
        let grads = s.backward()?;
        if spec.solver == InnerSolver::Optimizer {
            opt.step(params, &grads)?;
            last = s0;
            continue;
        }
        let g: Vec<Option<Tensor>> = params
            .iter()
            .map(|p| grads.get(p.tensor()).cloned())
            .collect();
        let mut gnorm2 = 0.0;
        for gi in g.iter().flatten() {
            gnorm2 += scalar(&gi.sqr()?.sum_all()?)?;
        }
        let saved: Vec<Tensor> = params
            .iter()
            .map(|p| p.tensor().copy())
            .collect::<candle_core::Result<_>>()?;
        let set = |alpha: f64| -> Result<()> {
            for ((p, s), gi) in params.iter().zip(&saved).zip(&g) {
                if let Some(gi) = gi {
                    p.var.set(&s.sub(&gi.affine(alpha, 0.0)?)?)?;
                }
            }
            Ok(())
        };
        let mut alpha = step * grow;
        for tries in 1..=MAX_BACKTRACKS {
            set(alpha)?;
            let s1 = scalar(&surrogate(model, target, eta)?)?;
            if s1 <= s0 - spec.c * alpha * gnorm2 {
                last = s1;
                break;
            }
            alpha *= spec.beta;
            if tries == MAX_BACKTRACKS || alpha < MIN_STEP {
                // The official code takes the last, shrunken step anyway.
                set(alpha)?;
                last = scalar(&surrogate(model, target, eta)?)?;
                break;
            }
        }
        step = alpha;
        // The official loop stops once the batch gradient has vanished (after taking that step).
        if gnorm2.sqrt() <= 1e-6 {
            return Ok(InnerReport {
                steps: j + 1,
                surrogate: last,
                step_size: step,
            });
        }
    }
    Ok(InnerReport {
        steps: spec.inner,
        surrogate: last,
        step_size: if spec.solver == InnerSolver::LineSearch {
            step
        } else {
            f64::NAN
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_refuse() {
        let s: SsoSpec = "inner=5,eta=2,schedule=sqrt".parse().unwrap();
        assert_eq!(
            (s.inner, s.eta, s.init_step, s.c, s.beta, s.expand),
            (5, 2.0, 10.0, 0.1, 0.9, 2.0)
        );
        assert_eq!(s.eta_at(4), 4.0);
        assert_eq!(s.to_string().parse::<SsoSpec>().unwrap(), s);
        for bad in [
            "inner=0",
            "eta=0",
            "beta=1",
            "solver=adam",
            "schedule=cosine",
            "m=3",
            "expand=0.5",
        ] {
            assert!(bad.parse::<SsoSpec>().is_err(), "{bad}");
        }
    }
}
