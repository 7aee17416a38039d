//! Hypergradient descent through implicit differentiation (P10): each upper step solves the lower level to its
//! optimality condition (inexact Newton, warm-started), differentiates the upper objective through the solution
//! with [`Optimality::vjp_from`] (its linear solve warm-started from the previous step's adjoint) and steps θ with
//! any registered optimizer (Adam by default, as jaxopt's examples).

use super::{CurvePoint, Progress};
use crate::implicit::linear::SolveOptions;
use crate::implicit::Optimality;
use crate::nn::Param;
use crate::optim::{grads_for, OptimizerSpec};
use crate::{Error, Result};
use candle_core::{Tensor, Var};

/// How to run hypergradient descent.
#[derive(Debug, Clone)]
pub struct ImplicitConfig {
    /// The linear solves: the hypergradient's and each Newton step's.
    pub solve: SolveOptions,
    /// Upper steps.
    pub steps: usize,
    /// The upper optimizer.
    pub outer: OptimizerSpec,
    /// The lower level counts as solved at ‖F‖ ≤ this.
    pub inner_tol: f64,
    /// Newton steps allowed per lower-level solve.
    pub inner_steps: usize,
}

impl Default for ImplicitConfig {
    fn default() -> Self {
        ImplicitConfig {
            solve: SolveOptions::default(),
            steps: 100,
            outer: "adam:lr=0.05".parse().expect("a registered optimizer"),
            inner_tol: 1e-9,
            inner_steps: 50,
        }
    }
}

/// The upper objective as a function of the lower solution.
pub type UpperFn<'a> = Box<dyn Fn(&Tensor) -> Result<Tensor> + 'a>;

/// A bilevel problem for the implicit route: the lower level's optimality condition F(w, θ) = 0 and the upper
/// objective of the lower solution w.
pub struct ImplicitProblem<'a> {
    pub optimality: Optimality<'a>,
    /// The upper objective at w (a scalar tensor, differentiable in w).
    pub upper: UpperFn<'a>,
    /// Solves the lower level at θ from a warm start (`None`: inexact Newton on the optimality condition, for a
    /// smooth one; see [`Optimality::inexact_newton`]).
    pub inner: Option<InnerFn<'a>>,
}

/// A lower-level solver: (θ, warm start) to a solution.
pub type InnerFn<'a> = Box<dyn Fn(&Tensor, &Tensor) -> Result<Tensor> + 'a>;

/// The end of a run: the upper variables, the last lower solution and the upper objective along the way.
#[derive(Debug, Clone)]
pub struct ImplicitRun {
    pub theta: Tensor,
    pub w: Tensor,
    pub curve: Vec<CurvePoint>,
}

/// The upper objective at w and its gradient in w.
pub fn value_and_grad(
    upper: &dyn Fn(&Tensor) -> Result<Tensor>,
    w: &Tensor,
) -> Result<(f64, Tensor)> {
    let wv = Var::from_tensor(&w.detach())?;
    let value = upper(wv.as_tensor())?;
    let grads = value.backward()?;
    let g = match grads.get(wv.as_tensor()) {
        Some(g) => g.detach(),
        None => w.zeros_like()?,
    };
    let value = value
        .to_dtype(candle_core::DType::F64)?
        .to_scalar::<f64>()?;
    Ok((value, g))
}

/// Runs `cfg.steps` upper steps from (θ₀, w₀); the curve has the upper objective before each step and after the
/// last.
pub fn hypergradient_descent(
    problem: &ImplicitProblem<'_>,
    theta0: &Tensor,
    w0: &Tensor,
    cfg: &ImplicitConfig,
    mut progress: Option<Progress<'_>>,
) -> Result<ImplicitRun> {
    let theta = Var::from_tensor(&theta0.detach())?;
    let params = [Param {
        name: "theta".into(),
        var: theta.clone(),
    }];
    let mut outer = cfg.outer.build();
    let mut w = w0.detach();
    // The last step's adjoint: the next linear solve starts from it.
    let mut adjoint = None;
    let mut curve = Vec::with_capacity(cfg.steps.min(1 << 16) + 1);
    for step in 0..=cfg.steps {
        let th = theta.as_tensor().detach();
        w = match &problem.inner {
            Some(solve) => solve(&th, &w),
            None => problem.optimality.inexact_newton(
                &w,
                &th,
                &cfg.solve,
                cfg.inner_steps,
                cfg.inner_tol,
            ),
        }
        .map_err(|e| Error::invalid(format!("the lower level at upper step {step}: {e}")))?;
        let (value, v) = value_and_grad(&*problem.upper, &w)?;
        if !value.is_finite() {
            return Err(Error::NonFinite(format!(
                "the upper objective is {value} at upper step {step}; lower the upper learning rate"
            )));
        }
        curve.push(CurvePoint { step, upper: value });
        if let Some(p) = progress.as_mut() {
            p(step, cfg.steps, value);
        }
        if step == cfg.steps {
            break;
        }
        let (hyper, u) = problem
            .optimality
            .vjp_from(&w, &th, &v, adjoint.as_ref(), &cfg.solve)?;
        adjoint = Some(u);
        outer.step(&params, &grads_for(&params, &[hyper])?)?;
    }
    Ok(ImplicitRun {
        theta: theta.as_tensor().detach(),
        w,
        curve,
    })
}
