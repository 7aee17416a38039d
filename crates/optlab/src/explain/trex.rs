//! T-Rex (P07): from a base counterfactual x_c of class c, gradient ascent on the Stability R (steps of length
//! `step` along ∇R/(‖∇R‖ + 1e-7)), each iterate projected onto the ℓ2 ball of radius `radius` around x_c and into
//! the bounds (the data box; frozen features keep their values), while the Stability computed before the step is below τ and for at most `max_steps` steps; the
//! result is the last iterate still classified c. As the official `batch_trex_search` (which draws fresh noise
//! for every evaluation of R); defaults from its `main.py`: τ = 0.75, σ = 0.05, K = 1000, 20 steps, step 0.01,
//! radius 1.

use super::stability::{gaussian_noise, stability_and_gradient};
use super::{predict, probabilities, rows, Bounds};
use crate::nn::Sequential;
use crate::rng::Rng;
use crate::{Error, Result};
use candle_core::Tensor;

/// T-Rex's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TrexConfig {
    /// The Stability to reach.
    pub tau: f64,
    pub sigma: f64,
    /// Samples per Stability evaluation.
    pub k: usize,
    pub max_steps: usize,
    pub step: f32,
    /// The ℓ2 radius around the base counterfactual.
    pub radius: f32,
}

impl Default for TrexConfig {
    fn default() -> Self {
        TrexConfig {
            tau: 0.75,
            sigma: 0.05,
            k: 1000,
            max_steps: 20,
            step: 0.01,
            radius: 1.0,
        }
    }
}

impl TrexConfig {
    fn check(&self) -> Result<()> {
        let ok = self.tau.is_finite()
            && self.sigma.is_finite()
            && self.sigma > 0.0
            && self.k > 0
            && self.step.is_finite()
            && self.step > 0.0
            && self.radius.is_finite()
            && self.radius > 0.0;
        if ok {
            Ok(())
        } else {
            Err(Error::invalid(
                "trex: finite tau, sigma > 0, K >= 1, step and radius > 0",
            ))
        }
    }
}

/// What T-Rex returns.
#[derive(Debug, Clone, PartialEq)]
pub struct TrexResult {
    pub counterfactual: Vec<f32>,
    /// The counterfactual class c.
    pub class: usize,
    /// The Stability at each step, computed before the step.
    pub stability: Vec<f64>,
    /// Whether the last computed Stability reached τ.
    pub reached: bool,
}

/// T-Rex from the base counterfactual `start` (a d-vector), every iterate within `bounds` (frozen features keep
/// `start`'s values); `noise(step)` gives the `[K, d]` perturbations of each step's Stability ([`trex`] draws
/// them from a generator).
pub fn trex_with(
    net: &Sequential,
    start: &[f32],
    cfg: &TrexConfig,
    bounds: &Bounds,
    noise: &mut dyn FnMut(usize) -> Result<Tensor>,
) -> Result<TrexResult> {
    cfg.check()?;
    let d = start.len();
    bounds.check(d)?;
    if d == 0 || start.iter().any(|v| !v.is_finite()) {
        return Err(Error::invalid("trex: the start must be finite values"));
    }
    let class = predict(net, start, d)?[0];
    let mut delta = start.to_vec();
    let mut best = start.to_vec();
    let mut history = Vec::new();
    // The official loop starts from an objective of 0 (so a τ <= 0 returns the start).
    let mut objective = 0.0;
    while objective < cfg.tau && history.len() < cfg.max_steps {
        let n = noise(history.len())?;
        if n.dims2()? != (cfg.k, d) {
            return Err(Error::Shape(format!(
                "trex: the noise is {:?}, not [{}, {d}]",
                n.dims(),
                cfg.k
            )));
        }
        let (r, g) = stability_and_gradient(net, &delta, &n, class)?;
        let norm = g.iter().map(|v| v * v).sum::<f32>().sqrt() + 1e-7;
        let moved: Vec<f32> = (0..d)
            .map(|j| delta[j] + cfg.step * (g[j] / norm) - start[j])
            .collect();
        let len = moved.iter().map(|v| v * v).sum::<f32>().sqrt() + 1e-7;
        let coeff = (cfg.radius / len).clamp(0.0, 1.0);
        delta = (0..d)
            .map(|j| bounds.project(j, start[j] + moved[j] * coeff, start[j]))
            .collect();
        if predict(net, &delta, d)?[0] == class {
            best.clone_from(&delta);
        }
        objective = r;
        history.push(r);
    }
    Ok(TrexResult {
        counterfactual: best,
        class,
        reached: objective >= cfg.tau,
        stability: history,
    })
}

/// T-Rex with the perturbations drawn from `rng` (fresh for every step, as the official code draws them).
pub fn trex(
    net: &Sequential,
    start: &[f32],
    cfg: &TrexConfig,
    bounds: &Bounds,
    rng: &mut Rng,
) -> Result<TrexResult> {
    let (k, d, sigma) = (cfg.k, start.len(), cfg.sigma);
    trex_with(net, start, cfg, bounds, &mut |_| {
        gaussian_noise(k, d, sigma, rng)
    })
}

/// The class-c probability of a d-vector (for reports).
pub fn class_probability(net: &Sequential, x: &[f32], class: usize) -> Result<f64> {
    let p: Vec<Vec<f32>> = probabilities(net, &rows(x, 1, x.len())?)?.to_vec2()?;
    p[0].get(class)
        .map(|v| *v as f64)
        .ok_or_else(|| Error::invalid(format!("class {class} of a {}-class model", p[0].len())))
}
