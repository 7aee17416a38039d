//! A differentiable Levenberg–Marquardt solver (P08's hard-constraint layer solves one per expert): w*(θ) =
//! argmin_w ½‖r(w, θ)‖² for small w (the K combination weights of the basis functions), with
//! - the forward pass by LM — the Jacobian ∂r/∂w as K columns by the double-VJP trick, a dense damped Gauss–Newton
//!   step (JᵀJ + μ diag(JᵀJ)) δ = −Jᵀr, μ divided by 3 on success and multiplied by 2 otherwise (Nielsen-style);
//! - the backward pass by implicit differentiation of the stationarity ∇_w ½‖r‖² = 0 ([`crate::implicit`]), not
//!   by unrolling the iterations: [`lm`] returns w* as a node of θ's graph whose backward solves with the exact
//!   Hessian JᵀJ + Σ rᵢ∇²rᵢ.
//!
//! [`lm_batch`] solves independent problems (the experts of a mixture) in parallel.

use crate::implicit::linear::{SolveOptions, Solver};
use crate::implicit::Optimality;
use crate::{Error, Result};
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor, Var};
use faer::linalg::solvers::Solve;
use faer::Mat;
use rayon::prelude::*;
use std::sync::Arc;

/// r(w, θ): the residual vector (any shape, flattened) of weights w (1-D) given θ.
pub type ResidualFn = Arc<dyn Fn(&Tensor, &Tensor) -> Result<Tensor> + Send + Sync>;

/// LM settings.
#[derive(Debug, Clone, Copy)]
pub struct LmOptions {
    pub max_iter: usize,
    /// Stop at ‖Jᵀr‖∞ ≤ gtol ...
    pub gtol: f64,
    /// ... or when a step changes ½‖r‖² by less than ftol relative.
    pub ftol: f64,
    /// Initial damping.
    pub mu: f64,
}

impl Default for LmOptions {
    fn default() -> Self {
        LmOptions {
            max_iter: 100,
            gtol: 1e-10,
            ftol: 1e-15,
            mu: 1e-3,
        }
    }
}

/// What a solve did.
#[derive(Debug, Clone, Copy)]
pub struct LmStats {
    pub iterations: usize,
    /// ½‖r‖² at the end.
    pub cost: f64,
    /// ‖Jᵀr‖∞ at the end.
    pub gradient: f64,
    /// Stopped on gtol or ftol (not on max_iter or a failed damping search).
    pub converged: bool,
    /// The largest diagonal entry of JᵀJ at the end: the scale of the backward's ridge.
    pub curvature: f64,
}

fn flat64(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.flatten_all()?.to_dtype(DType::F64)?.to_vec1()?)
}

/// r and J = ∂r/∂w (m × K) at w.
fn residual_and_jacobian(
    r: &ResidualFn,
    w: &[f64],
    theta: &Tensor,
) -> Result<(Vec<f64>, Mat<f64>)> {
    crate::require_second_order()?;
    let k = w.len();
    let wv = Var::from_tensor(&Tensor::from_slice(w, k, theta.device())?.to_dtype(theta.dtype())?)?;
    let res = r(wv.as_tensor(), theta)?.flatten_all()?;
    let m = res.elem_count();
    let values = flat64(&res)?;
    // Jᵀu as a graph in u; column j of J is ∂⟨Jᵀu, e_j⟩/∂u.
    let u = Var::from_tensor(&res.detach().zeros_like()?)?;
    let jtu = res.mul(u.as_tensor())?.sum_all()?.backward()?;
    let Some(jtu) = jtu.get(wv.as_tensor()) else {
        return Err(Error::invalid(
            "the residual does not depend on the weights",
        ));
    };
    let mut cols = Vec::with_capacity(k);
    for j in 0..k {
        let g = jtu.get(j)?.backward()?;
        cols.push(match g.get(u.as_tensor()) {
            Some(c) => flat64(c)?,
            None => vec![0.0; m],
        });
    }
    Ok((values, Mat::from_fn(m, k, |i, j| cols[j][i])))
}

/// Solves min_w ½‖r(w, θ)‖² by LM from w₀ (no graph: θ is read as data).
pub fn lm_solve(
    r: &ResidualFn,
    w0: &Tensor,
    theta: &Tensor,
    opts: &LmOptions,
) -> Result<(Tensor, LmStats)> {
    if w0.rank() != 1 {
        return Err(Error::Shape(format!(
            "LM: the weights must be 1-D, got {:?}",
            w0.dims()
        )));
    }
    if !(opts.mu > 0.0 && opts.gtol >= 0.0 && opts.ftol >= 0.0) || opts.max_iter == 0 {
        return Err(Error::invalid(format!(
            "LM: mu must be positive, gtol and ftol non-negative, max_iter at least 1 (got {opts:?})"
        )));
    }
    let theta = theta.detach();
    let mut w = flat64(w0)?;
    let k = w.len();
    let cost_of = |v: &[f64]| 0.5 * v.iter().map(|x| x * x).sum::<f64>();
    let (mut res, mut jac) = residual_and_jacobian(r, &w, &theta)?;
    let mut cost = cost_of(&res);
    let mut mu = opts.mu;
    let mut iterations = 0;
    let grad_of = |jac: &Mat<f64>, res: &[f64]| -> Vec<f64> {
        (0..k)
            .map(|j| (0..res.len()).map(|i| jac[(i, j)] * res[i]).sum())
            .collect()
    };
    let mut g = grad_of(&jac, &res);
    let ginf = |g: &[f64]| g.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    let mut converged = ginf(&g) <= opts.gtol;
    while iterations < opts.max_iter && !converged {
        if !cost.is_finite() {
            return Err(Error::NonFinite("LM: the residual is not finite".into()));
        }
        iterations += 1;
        let jtj = jac.transpose() * &jac;
        let mut accepted = false;
        for _ in 0..60 {
            let a = Mat::from_fn(k, k, |i, j| {
                jtj[(i, j)]
                    + if i == j {
                        mu * jtj[(i, i)].max(1e-12)
                    } else {
                        0.0
                    }
            });
            let rhs = Mat::from_fn(k, 1, |i, _| -g[i]);
            let d = a.partial_piv_lu().solve(&rhs);
            let trial: Vec<f64> = (0..k).map(|i| w[i] + d[(i, 0)]).collect();
            if trial.iter().any(|v| !v.is_finite()) {
                mu *= 2.0;
                continue;
            }
            let t = Tensor::from_slice(&trial, k, theta.device())?.to_dtype(theta.dtype())?;
            let trial_cost = cost_of(&flat64(&r(&t, &theta)?)?);
            if trial_cost < cost {
                let small = cost - trial_cost <= opts.ftol * cost.max(f64::MIN_POSITIVE);
                w = trial;
                (res, jac) = residual_and_jacobian(r, &w, &theta)?;
                cost = cost_of(&res);
                g = grad_of(&jac, &res);
                mu = (mu / 3.0).max(1e-15);
                accepted = true;
                converged = small || ginf(&g) <= opts.gtol;
                break;
            }
            mu *= 2.0;
        }
        if !accepted {
            break; // no damping reduces the cost: a (numerical) minimum
        }
    }
    let curvature = (0..k)
        .map(|j| (0..res.len()).map(|i| jac[(i, j)].powi(2)).sum::<f64>())
        .fold(0.0f64, f64::max);
    let out = Tensor::from_slice(&w, k, theta.device())?.to_dtype(w0.dtype())?;
    Ok((
        out,
        LmStats {
            iterations,
            cost,
            gradient: ginf(&g),
            converged,
            curvature,
        },
    ))
}

/// w*(θ) as a node of θ's graph: forward by LM, backward by implicit differentiation.
struct ImplicitLm {
    r: ResidualFn,
    w_star: Tensor,
    /// 1e-10 × max diag(JᵀJ): keeps directions the residual barely sees from blowing up the gradient (jaxopt's
    /// `ridge`); negligible against any curvature the solution has.
    ridge: f64,
}

impl CustomOp1 for ImplicitLm {
    fn name(&self) -> &'static str {
        "optlab-implicit-lm"
    }

    fn cpu_fwd(&self, _s: &CpuStorage, _l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let shape = self.w_star.shape().clone();
        let storage = match self.w_star.dtype() {
            DType::F32 => CpuStorage::F32(self.w_star.to_vec1::<f32>()?),
            DType::F64 => CpuStorage::F64(self.w_star.to_vec1::<f64>()?),
            other => candle_core::bail!("LM: weights must be f32 or f64, not {other:?}"),
        };
        Ok((storage, shape))
    }

    fn bwd(
        &self,
        theta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let r = self.r.clone();
        let stationary = Optimality::stationary(move |w: &Tensor, th: &Tensor| {
            Ok(r(w, th)?.sqr()?.sum_all()?.affine(0.5, 0.0)?)
        });
        let opts = SolveOptions {
            solver: if self.w_star.elem_count() <= 256 {
                Solver::Lu
            } else {
                Solver::NormalCg
            },
            // LU is exact up to the Hessian's conditioning: its residual check only refuses a singular system.
            tol: 1e-6,
            ridge: self.ridge,
            ..SolveOptions::default()
        };
        let g = stationary
            .vjp(
                &self.w_star,
                &theta.detach(),
                &grad.to_dtype(self.w_star.dtype())?,
                &opts,
            )
            .map_err(candle_core::Error::wrap)?;
        Ok(Some(g.to_dtype(theta.dtype())?))
    }
}

/// w* as a node of θ's graph (see [`ImplicitLm`]).
fn attach(
    r: &ResidualFn,
    theta: &Tensor,
    (w_star, stats): (Tensor, LmStats),
) -> Result<(Tensor, LmStats)> {
    let node = theta.apply_op1(ImplicitLm {
        r: r.clone(),
        w_star,
        ridge: 1e-10 * stats.curvature,
    })?;
    Ok((node, stats))
}

/// w*(θ) = argmin_w ½‖r(w, θ)‖² from w₀, differentiable in θ (see the module docs).
pub fn lm(
    r: &ResidualFn,
    w0: &Tensor,
    theta: &Tensor,
    opts: &LmOptions,
) -> Result<(Tensor, LmStats)> {
    attach(r, theta, lm_solve(r, w0, theta, opts)?)
}

/// Independent problems (r, w₀, θ) solved in parallel, each differentiable in its θ.
pub fn lm_batch(
    problems: &[(ResidualFn, Tensor, Tensor)],
    opts: &LmOptions,
) -> Result<Vec<(Tensor, LmStats)>> {
    // Forward solves in parallel; the graph nodes are attached afterwards, on this thread.
    let solved: Vec<Result<(Tensor, LmStats)>> = problems
        .par_iter()
        .map(|(r, w0, theta)| lm_solve(r, w0, theta, opts))
        .collect();
    problems
        .iter()
        .zip(solved)
        .map(|((r, _, theta), s)| attach(r, theta, s?))
        .collect()
}
