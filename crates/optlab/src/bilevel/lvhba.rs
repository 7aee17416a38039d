//! LV-HBA (P13, "Constrained Bi-Level Optimization: Proximal Lagrangian Value function Approach and Hessian-free
//! Algorithm"; official code SUSTech-Optimization/LV-HBA) for min_{x,y} F(x, y) subject to y solving
//! min_y f(x, y) s.t. g(x, y) ≤ 0 (or = 0). The lower level is replaced by its proximal Lagrangian value function
//! v(x, y) = min_θ max_λ f(x, θ) + λᵀg(x, θ) + ‖θ − y‖²/(2γ₁) − ‖λ − z‖²/(2γ₂), and one loop runs, per iteration k
//! with the penalty c_k = c̲ (k+1)^p:
//!
//! 1. (θ, λ) ← (θ, λ) − η (∇_θ[f + λᵀg](x, θ) + (θ − y)/γ₁, −g(x, θ) + (λ − z)/γ₂), θ projected, λ clipped;
//! 2. (x, y) ← Proj_C((x, y) − α d) with d_x = ∇ₓF/c_k + ∇ₓf(x, y) − ∇ₓ[f + λᵀg](x, θ) and
//!    d_y = ∇ᵧF/c_k + ∇ᵧf(x, y) − (y − θ)/γ₁ (at the new θ, λ);
//! 3. z ← clip(z + β (λ − z)/γ₂).
//!
//! Only first derivatives: no Hessian, no inner loop. The order of the updates and the defaults are the official
//! toy script's.

use super::{CurvePoint, Progress};
use crate::{Error, Result};
use candle_core::Tensor;

/// Whether the multipliers are clipped to [0, u] (inequality constraints, the paper) or to [−u, u] (equality
/// constraints written as g = 0, as the official toy script treats 1ᵀx + 1ᵀy = 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Constraints {
    Inequality,
    Equality,
}

/// A bilevel problem with a constrained lower level, over flat vectors.
pub trait ConstrainedBilevel {
    /// The starting (x, y, θ).
    fn init(&self) -> Result<(Tensor, Tensor, Tensor)>;
    /// The upper objective F(x, y).
    fn upper(&self, x: &Tensor, y: &Tensor) -> Result<Tensor>;
    /// The lower objective f(x, y).
    fn lower(&self, x: &Tensor, y: &Tensor) -> Result<Tensor>;
    /// The lower constraints g(x, y), a vector (≤ 0, or = 0).
    fn constraints(&self, x: &Tensor, y: &Tensor) -> Result<Tensor>;
    /// Inequality or equality constraints.
    fn kind(&self) -> Constraints;
    /// Projection of (x, y) onto the feasible set C of the upper variables (the identity by default).
    fn project(&self, x: Tensor, y: Tensor) -> Result<(Tensor, Tensor)> {
        Ok((x, y))
    }
    /// Projection of θ onto the lower variables' set Y (the identity by default).
    fn project_theta(&self, theta: Tensor) -> Result<Tensor> {
        Ok(theta)
    }
}

/// LV-HBA's settings; defaults are the official toy script's.
#[derive(Debug, Clone, PartialEq)]
pub struct LvHbaConfig {
    /// Step α of (x, y).
    pub alpha: f64,
    /// Step β of z.
    pub beta: f64,
    /// Step η of (θ, λ).
    pub eta: f64,
    /// The proximal parameters γ₁ (θ towards y) and γ₂ (λ towards z).
    pub gamma1: f64,
    pub gamma2: f64,
    /// Multipliers and z are clipped to |·| ≤ u.
    pub u: f64,
    /// The penalty c_k = c̲ (k+1)^p.
    pub c_bar: f64,
    pub c_power: f64,
    /// Starting multipliers λ and z (every entry).
    pub lambda0: f64,
    pub z0: f64,
}

impl Default for LvHbaConfig {
    fn default() -> Self {
        LvHbaConfig {
            alpha: 0.008,
            beta: 0.02,
            eta: 0.01,
            gamma1: 10.0,
            gamma2: 10.0,
            u: 1000.0,
            c_bar: 0.025,
            c_power: 0.3,
            lambda0: 1.0,
            z0: 1.0,
        }
    }
}

impl LvHbaConfig {
    /// Refuses settings that cannot be honoured.
    pub fn check(&self) -> Result<()> {
        for (k, v) in [
            ("alpha", self.alpha),
            ("beta", self.beta),
            ("eta", self.eta),
            ("gamma1", self.gamma1),
            ("gamma2", self.gamma2),
            ("u", self.u),
            ("c_bar", self.c_bar),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::invalid(format!(
                    "lv-hba: {k}={v} must be positive and finite"
                )));
            }
        }
        if !(self.c_power.is_finite()
            && self.c_power >= 0.0
            && self.lambda0.is_finite()
            && self.z0.is_finite())
        {
            return Err(Error::invalid(format!(
                "lv-hba: p={} must be non-negative, lambda0={} and z0={} finite",
                self.c_power, self.lambda0, self.z0
            )));
        }
        Ok(())
    }
}

/// The end of a run and its path.
#[derive(Debug, Clone)]
pub struct LvHbaRun {
    pub x: Tensor,
    pub y: Tensor,
    pub theta: Tensor,
    pub lambda: Tensor,
    pub z: Tensor,
    /// F(x, y) before the first iteration and after each.
    pub curve: Vec<CurvePoint>,
}

fn grads2(
    h: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
    a: &Tensor,
    b: &Tensor,
) -> Result<(Tensor, Tensor)> {
    super::borep::gradients(h, a, b)
}

fn clip(t: &Tensor, lo: f64, hi: f64) -> Result<Tensor> {
    Ok(t.clamp(lo, hi)?)
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?)
}

/// Called after each iteration with (k, x, y).
pub type Observe<'a> = &'a mut dyn FnMut(usize, &Tensor, &Tensor) -> Result<()>;

/// Runs `iterations` LV-HBA iterations; `observe(k, x, y)` is called after each (for problem-specific curves).
pub fn solve(
    p: &dyn ConstrainedBilevel,
    cfg: &LvHbaConfig,
    iterations: usize,
    mut observe: Option<Observe<'_>>,
    mut progress: Option<Progress<'_>>,
) -> Result<LvHbaRun> {
    cfg.check()?;
    let (mut x, mut y, theta0) = p.init()?;
    let mut theta = theta0;
    let m = p.constraints(&x, &theta)?.flatten_all()?.elem_count();
    let lo = match p.kind() {
        Constraints::Inequality => 0.0,
        Constraints::Equality => -cfg.u,
    };
    let full =
        |v: f64| -> Result<Tensor> { Ok(Tensor::full(v, m, x.device())?.to_dtype(x.dtype())?) };
    let mut lambda = clip(&full(cfg.lambda0)?, lo, cfg.u)?;
    let mut z = clip(&full(cfg.z0)?, lo, cfg.u)?;
    let upper = |x: &Tensor, y: &Tensor| -> Result<f64> { scalar(&p.upper(x, y)?) };
    let mut curve = vec![CurvePoint {
        step: 0,
        upper: upper(&x, &y)?,
    }];
    for k in 0..iterations {
        let ck = cfg.c_bar * ((k + 1) as f64).powf(cfg.c_power);
        // 1. (θ, λ) at (x, θ, λ, z) of iteration k.
        let lag = |lam: &Tensor| {
            let lam = lam.clone();
            move |x: &Tensor, th: &Tensor| -> Result<Tensor> {
                let g = p.constraints(x, th)?.flatten_all()?;
                Ok(p.lower(x, th)?.add(&g.mul(&lam)?.sum_all()?)?)
            }
        };
        let (_, d_theta) = grads2(lag(&lambda), &x, &theta)?;
        let d_theta = d_theta.add(&theta.sub(&y)?.affine(1.0 / cfg.gamma1, 0.0)?)?;
        let g_val = p.constraints(&x, &theta)?.flatten_all()?;
        let d_lambda = g_val
            .neg()?
            .add(&lambda.sub(&z)?.affine(1.0 / cfg.gamma2, 0.0)?)?;
        theta = p.project_theta(theta.sub(&d_theta.affine(cfg.eta, 0.0)?)?)?;
        lambda = clip(&lambda.sub(&d_lambda.affine(cfg.eta, 0.0)?)?, lo, cfg.u)?;
        // 2. (x, y) at the new θ, λ.
        let (fx_up, fy_up) = grads2(|x, y| p.upper(x, y), &x, &y)?;
        let (fx_low, fy_low) = grads2(|x, y| p.lower(x, y), &x, &y)?;
        let (lx_theta, _) = grads2(lag(&lambda), &x, &theta)?;
        let dx = fx_up.affine(1.0 / ck, 0.0)?.add(&fx_low)?.sub(&lx_theta)?;
        let dy = fy_up
            .affine(1.0 / ck, 0.0)?
            .add(&fy_low)?
            .sub(&y.sub(&theta)?.affine(1.0 / cfg.gamma1, 0.0)?)?;
        (x, y) = p.project(
            x.sub(&dx.affine(cfg.alpha, 0.0)?)?,
            y.sub(&dy.affine(cfg.alpha, 0.0)?)?,
        )?;
        // 3. z towards λ.
        z = clip(
            &z.add(&lambda.sub(&z)?.affine(cfg.beta / cfg.gamma2, 0.0)?)?,
            lo,
            cfg.u,
        )?;
        let value = upper(&x, &y)?;
        if !value.is_finite() {
            return Err(Error::NonFinite(format!(
                "lv-hba: the upper objective is {value} after iteration {}: the run diverged (lower alpha or eta)",
                k + 1
            )));
        }
        curve.push(CurvePoint {
            step: k + 1,
            upper: value,
        });
        if let Some(o) = observe.as_mut() {
            o(k + 1, &x, &y)?;
        }
        if let Some(pr) = progress.as_mut() {
            pr(k + 1, iterations, value);
        }
    }
    Ok(LvHbaRun {
        x,
        y,
        theta,
        lambda,
        z,
        curve,
    })
}
