//! BO-REP (P05, "Bilevel Optimization under Unbounded Smoothness"; official code
//! MingruiLiu-ML-Lab/Bilevel-Optimization-under-Unbounded-Smoothness, `bo_rep.py`) for stochastic problems
//! min_x f(x, y*(x)) with y*(x) = argmin_y g(x, y), g strongly convex in y, and its baselines in the same loop:
//!
//! - BO-REP: the lower level y is refined at the start (`refine` SGD steps, the paper's initialization refinement)
//!   and then updated only every `interval` upper steps, by `warm` SGD steps warm-started from the last y (periodic
//!   updates); z tracks (∇²ᵧᵧg)⁻¹∇ᵧf by one step z ← z − ν(∇²ᵧᵧg·z − ∇ᵧf) per upper step; the hypergradient
//!   ∇ₓf − ∇²ₓᵧg·z uses exact mixed second derivatives (double backward); the upper update is normalized momentum
//!   ([`crate::optim::nsgd`]: m ← βm + (1−β)·hypergradient, x ← x − η·m/‖m‖). With `normalized=false` the upper
//!   update is the same momentum without the normalization (the official `--grad_normalized False`).
//! - StocBiO (Ji, Yang & Liang 2021): `inner_steps` lower SGD steps every upper step and the hypergradient through a
//!   truncated Neumann series, v = η_N Σ_{q<Q} (I − η_N ∇²ᵧᵧg)^q ∇ᵧf, then x ← x − η(∇ₓf − ∇²ₓᵧg·v).
//!
//! Second derivatives need [`crate::require_second_order`].

use super::{CurvePoint, Progress};
use crate::nn::Param;
use crate::optim::{grads_for, OptimizerSpec};
use crate::{Error, Result};
use candle_core::{Tensor, Var};

/// Which minibatch an oracle call uses: a fresh draw (numbered, so runs are reproducible) or all the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    Draw(u64),
    Full,
}

/// A stochastic bilevel problem over flat parameter vectors x (upper) and y (lower).
pub trait StochasticBilevel {
    /// The starting (x, y).
    fn init(&self) -> Result<(Tensor, Tensor)>;
    /// The upper objective f(x, y) (a scalar).
    fn upper(&self, x: &Tensor, y: &Tensor, batch: Batch) -> Result<Tensor>;
    /// The lower objective g(x, y) (a scalar, strongly convex in y).
    fn lower(&self, x: &Tensor, y: &Tensor, batch: Batch) -> Result<Tensor>;
}

/// BO-REP's settings (defaults: the official code's β, ν, interval and warm start; the step sizes suit the digits
/// hyper-representation task).
#[derive(Debug, Clone, PartialEq)]
pub struct BoRepConfig {
    /// The upper step length η (normalized: the distance x moves per step).
    pub lr: f64,
    /// Momentum β.
    pub beta: f64,
    /// Normalized momentum (BO-REP) or plain momentum (the unnormalized variant).
    pub normalized: bool,
    /// The lower level's SGD step.
    pub inner_lr: f64,
    /// The z step ν.
    pub nu: f64,
    /// Update y every `interval` upper steps ...
    pub interval: usize,
    /// ... by this many SGD steps.
    pub warm: usize,
    /// SGD steps on y before the first upper step (initialization refinement).
    pub refine: usize,
}

impl Default for BoRepConfig {
    fn default() -> Self {
        BoRepConfig {
            lr: 0.05,
            beta: 0.9,
            normalized: true,
            inner_lr: 0.5,
            nu: 0.01,
            interval: 3,
            warm: 3,
            refine: 30,
        }
    }
}

/// StocBiO's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct StocBioConfig {
    /// The upper SGD step.
    pub lr: f64,
    pub inner_lr: f64,
    /// Lower SGD steps per upper step.
    pub inner_steps: usize,
    /// Neumann terms Q.
    pub neumann_terms: usize,
    /// The Neumann series' scale η_N (below 1/L of ∇²ᵧᵧg).
    pub neumann_lr: f64,
}

impl Default for StocBioConfig {
    fn default() -> Self {
        StocBioConfig {
            lr: 0.1,
            inner_lr: 0.5,
            inner_steps: 1,
            neumann_terms: 5,
            neumann_lr: 0.1,
        }
    }
}

/// A stochastic bilevel algorithm.
#[derive(Debug, Clone)]
pub enum Algorithm {
    BoRep(BoRepConfig),
    StocBio(StocBioConfig),
}

impl Algorithm {
    /// Refuses settings that cannot be honoured.
    pub fn check(&self) -> Result<()> {
        let bad = |what: &str, v: f64| {
            Err(Error::invalid(format!(
                "{what} must be positive and finite, got {v}"
            )))
        };
        match self {
            Algorithm::BoRep(c) => {
                for (k, v) in [("lr", c.lr), ("inner_lr", c.inner_lr), ("nu", c.nu)] {
                    if !(v.is_finite() && v > 0.0) {
                        return bad(&format!("bo-rep: {k}"), v);
                    }
                }
                if !(0.0..1.0).contains(&c.beta) {
                    return Err(Error::invalid(format!(
                        "bo-rep: beta={} must be in [0, 1)",
                        c.beta
                    )));
                }
                if c.interval == 0 || c.warm == 0 {
                    return Err(Error::invalid(
                        "bo-rep: interval and warm must be at least 1",
                    ));
                }
            }
            Algorithm::StocBio(c) => {
                for (k, v) in [
                    ("lr", c.lr),
                    ("inner_lr", c.inner_lr),
                    ("neumann_lr", c.neumann_lr),
                ] {
                    if !(v.is_finite() && v > 0.0) {
                        return bad(&format!("stocbio: {k}"), v);
                    }
                }
                if c.inner_steps == 0 || c.neumann_terms == 0 {
                    return Err(Error::invalid(
                        "stocbio: inner_steps and q must be at least 1",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The end of a run.
#[derive(Debug, Clone)]
pub struct StochasticRun {
    pub x: Tensor,
    pub y: Tensor,
    /// The full upper objective before each upper step and after the last.
    pub curve: Vec<CurvePoint>,
}

fn var(t: &Tensor) -> Result<Var> {
    Ok(Var::from_tensor(&t.detach())?)
}

fn grad_or_zero(g: &candle_core::backprop::GradStore, v: &Var) -> Result<Tensor> {
    Ok(match g.get(v.as_tensor()) {
        Some(t) => t.detach(),
        None => v.as_tensor().zeros_like()?,
    })
}

/// (∇ₓh, ∇ᵧh) of a scalar h(x, y) at (x, y).
pub fn gradients(
    h: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
    x: &Tensor,
    y: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let (xv, yv) = (var(x)?, var(y)?);
    let g = h(xv.as_tensor(), yv.as_tensor())?.backward()?;
    Ok((grad_or_zero(&g, &xv)?, grad_or_zero(&g, &yv)?))
}

/// (∇²ᵧᵧg·z, ∇²ₓᵧg·z) at (x, y): the gradient of ⟨∇ᵧg, z⟩ in y and in x, by one double backward.
pub fn second_order_products(
    g: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
    x: &Tensor,
    y: &Tensor,
    z: &Tensor,
) -> Result<(Tensor, Tensor)> {
    crate::require_second_order()?;
    let (xv, yv) = (var(x)?, var(y)?);
    let first = g(xv.as_tensor(), yv.as_tensor())?.backward()?;
    let Some(gy) = first.get(yv.as_tensor()) else {
        return Ok((y.zeros_like()?, x.zeros_like()?));
    };
    let second = crate::grad_of_inner([(gy, z)])?.expect("one pair");
    Ok((grad_or_zero(&second, &yv)?, grad_or_zero(&second, &xv)?))
}

/// One step of BO-REP's linear-system variable: z − ν(∇²ᵧᵧg·z − ∇ᵧf), whose fixed point is (∇²ᵧᵧg)⁻¹∇ᵧf.
pub fn z_update(hyy_z: &Tensor, fy: &Tensor, z: &Tensor, nu: f64) -> Result<Tensor> {
    Ok(z.sub(&hyy_z.sub(fy)?.affine(nu, 0.0)?)?)
}

/// Draw numbers for minibatches: every oracle call takes the next one.
struct Draws(u64);

impl Draws {
    fn next(&mut self) -> Batch {
        self.0 += 1;
        Batch::Draw(self.0)
    }
}

fn sgd_on_lower(
    p: &dyn StochasticBilevel,
    x: &Tensor,
    y: &mut Tensor,
    lr: f64,
    steps: usize,
    draws: &mut Draws,
) -> Result<()> {
    for _ in 0..steps {
        let b = draws.next();
        let (_, gy) = gradients(|x, y| p.lower(x, y, b), x, y)?;
        *y = y.sub(&gy.affine(lr, 0.0)?)?;
    }
    Ok(())
}

fn full_upper(p: &dyn StochasticBilevel, x: &Tensor, y: &Tensor, step: usize) -> Result<f64> {
    let v = p
        .upper(x, y, Batch::Full)?
        .to_dtype(candle_core::DType::F64)?
        .to_scalar::<f64>()?;
    if !v.is_finite() {
        return Err(Error::NonFinite(format!(
            "the upper objective is {v} at upper step {step}: the run diverged (lower the upper learning rate)"
        )));
    }
    Ok(v)
}

/// Runs `alg` for `steps` upper steps. A diverged run (non-finite upper objective) is an error naming the step.
pub fn solve(
    p: &dyn StochasticBilevel,
    alg: &Algorithm,
    steps: usize,
    mut progress: Option<Progress<'_>>,
) -> Result<StochasticRun> {
    alg.check()?;
    let (x0, mut y) = p.init()?;
    let x = Var::from_tensor(&x0)?;
    let params = [Param {
        name: "x".into(),
        var: x.clone(),
    }];
    // BO-REP's upper update is normalized momentum (nsgd); its unnormalized variant keeps the same momentum
    // m = βm + (1−β)g from m = 0 (the official code's manual momentum) and steps x ← x − η·m; StocBiO is plain SGD.
    let mut momentum: Option<(Tensor, f64)> = None;
    let outer: OptimizerSpec = match alg {
        Algorithm::BoRep(c) if c.normalized => {
            format!("nsgd:lr={},beta={},eps=1e-10", c.lr, c.beta).parse()?
        }
        Algorithm::BoRep(c) => {
            momentum = Some((x0.zeros_like()?, c.beta));
            format!("sgd:lr={}", c.lr).parse()?
        }
        Algorithm::StocBio(c) => format!("sgd:lr={}", c.lr).parse()?,
    };
    let mut outer = outer.build();
    let mut draws = Draws(0);
    let mut z = y.zeros_like()?;
    let mut curve = Vec::with_capacity(steps.min(1 << 16) + 1);
    if let Algorithm::BoRep(c) = alg {
        sgd_on_lower(p, x.as_tensor(), &mut y, c.inner_lr, c.refine, &mut draws)?;
    }
    for step in 0..=steps {
        let xt = x.as_tensor().detach();
        let value = full_upper(p, &xt, &y, step)?;
        curve.push(CurvePoint { step, upper: value });
        if let Some(pr) = progress.as_mut() {
            pr(step, steps, value);
        }
        if step == steps {
            break;
        }
        let hyper = match alg {
            Algorithm::BoRep(c) => {
                if step % c.interval == 0 {
                    sgd_on_lower(p, &xt, &mut y, c.inner_lr, c.warm, &mut draws)?;
                }
                let (lb, ub) = (draws.next(), draws.next());
                let (fx, fy) = gradients(|x, y| p.upper(x, y, ub), &xt, &y)?;
                let (hyy_z, _) = second_order_products(|x, y| p.lower(x, y, lb), &xt, &y, &z)?;
                z = z_update(&hyy_z, &fy, &z, c.nu)?;
                let (_, hxy_z) = second_order_products(|x, y| p.lower(x, y, lb), &xt, &y, &z)?;
                fx.sub(&hxy_z)?
            }
            Algorithm::StocBio(c) => {
                sgd_on_lower(p, &xt, &mut y, c.inner_lr, c.inner_steps, &mut draws)?;
                let (lb, ub) = (draws.next(), draws.next());
                let (fx, fy) = gradients(|x, y| p.upper(x, y, ub), &xt, &y)?;
                let mut term = fy.clone();
                let mut sum = fy;
                for _ in 1..c.neumann_terms {
                    let (h, _) = second_order_products(|x, y| p.lower(x, y, lb), &xt, &y, &term)?;
                    term = term.sub(&h.affine(c.neumann_lr, 0.0)?)?;
                    sum = sum.add(&term)?;
                }
                let v = sum.affine(c.neumann_lr, 0.0)?;
                let (_, hxy_v) = second_order_products(|x, y| p.lower(x, y, lb), &xt, &y, &v)?;
                fx.sub(&hxy_v)?
            }
        };
        let direction = match momentum.as_mut() {
            Some((m, beta)) => {
                *m = m
                    .affine(*beta, 0.0)?
                    .add(&hyper.affine(1.0 - *beta, 0.0)?)?;
                m.clone()
            }
            None => hyper,
        };
        outer.step(&params, &grads_for(&params, &[direction])?)?;
    }
    Ok(StochasticRun {
        x: x.as_tensor().detach(),
        y,
        curve,
    })
}
