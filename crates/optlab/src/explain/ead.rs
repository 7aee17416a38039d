//! The base counterfactuals of P07's official code: its `IGD_L1` / `IGD_L2` run the elastic-net attack of Chen et
//! al. (2018) as the Adversarial Robustness Toolbox implements it (`art.attacks.evasion.ElasticNet`), untargeted,
//! on the model's class probabilities: FISTA on c·max(p_y − max_{j≠y} p_j + κ, 0)-style gradients plus
//! ‖x′ − x‖², with β-shrinkage towards x, a square-root decaying learning rate, and a binary search over c that
//! keeps, per point, the closest flipped iterate under the decision rule's distance. The official settings:
//! confidence κ = 0.5, learning rate 1e-3 (its `IterativeSearch` does not pass `eps_iter` on, so IGD's default
//! stands), 60 iterations, 9 binary-search steps, c₀ = 1e-3; β = 1 with the L1 rule, β = 0 with the L2 rule.
//!
//! Arithmetic is in f32 as ART's (its arrays are float32). One difference, on purpose: ART's shrinkage clips to
//! [0, 1] whatever the classifier's clip values; here it clips to each feature's box in [`Bounds`] (the same where
//! the box is [0, 1], as for the official data), and frozen (immutable) features keep their value.

use super::{argmax, probabilities, rows, Bounds};
use crate::nn::Sequential;
use crate::{Error, Result};
use candle_core::{Tensor, Var};

/// Which distance picks the best flipped iterate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionRule {
    L1,
    L2,
    /// β·L1 + L2.
    ElasticNet,
}

/// The attack's settings (ART's names).
#[derive(Debug, Clone, PartialEq)]
pub struct EadConfig {
    pub confidence: f32,
    pub learning_rate: f64,
    pub binary_search_steps: usize,
    pub max_iter: usize,
    pub beta: f32,
    pub initial_const: f64,
    pub rule: DecisionRule,
}

impl EadConfig {
    /// The official `IGD_L1`: β = 1, the L1 rule.
    pub fn l1() -> Self {
        EadConfig {
            beta: 1.0,
            rule: DecisionRule::L1,
            ..Self::l2()
        }
    }

    /// The official `IGD_L2`: β = 0, the L2 rule.
    pub fn l2() -> Self {
        EadConfig {
            confidence: 0.5,
            learning_rate: 1e-3,
            binary_search_steps: 9,
            max_iter: 60,
            beta: 0.0,
            initial_const: 1e-3,
            rule: DecisionRule::L2,
        }
    }

    fn check(&self) -> Result<()> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        let ok = self.confidence.is_finite()
            && self.beta.is_finite()
            && self.beta >= 0.0
            && positive(self.learning_rate)
            && positive(self.initial_const)
            && self.max_iter > 0
            && self.binary_search_steps > 0;
        if !ok {
            return Err(Error::invalid(
                "ead: finite confidence and beta >= 0, learning rate and initial constant > 0, at least one iteration and one search step",
            ));
        }
        Ok(())
    }
}

/// The counterfactual of each row of `x` (`[n, d]` f32, row-major) away from its class `original[i]`, every
/// iterate within `bounds` (one entry per value of `x`); a row the attack cannot flip comes back unchanged (ART's
/// behaviour: callers check the prediction).
pub fn elastic_net(
    net: &Sequential,
    x: &[f32],
    d: usize,
    original: &[usize],
    cfg: &EadConfig,
    bounds: &Bounds,
) -> Result<Vec<f32>> {
    cfg.check()?;
    bounds.check(x.len())?;
    let n = original.len();
    if d == 0 || x.len() != n * d {
        return Err(Error::Shape(format!(
            "ead: {} values are not {n} rows of {d}",
            x.len()
        )));
    }
    let mut c = vec![cfg.initial_const; n];
    let (mut c_lo, mut c_hi) = (vec![0.0f64; n], vec![1e11f64; n]);
    let mut o_best_dist = vec![f32::INFINITY; n];
    let mut o_best = x.to_vec();
    for _ in 0..cfg.binary_search_steps {
        let (best_dist, best_label, best) = search(net, x, d, original, &c, cfg, bounds)?;
        for i in 0..n {
            if best_dist[i] < o_best_dist[i] {
                o_best_dist[i] = best_dist[i];
                o_best[i * d..(i + 1) * d].copy_from_slice(&best[i * d..(i + 1) * d]);
            }
            // ART's constant update: a flip lowers the upper bound, else raise c (tenfold while unbounded).
            if best_label[i].is_some_and(|l| l != original[i]) {
                c_hi[i] = c_hi[i].min(c[i]);
                if c_hi[i] < 1e9 {
                    c[i] = (c_lo[i] + c_hi[i]) / 2.0;
                }
            } else {
                c_lo[i] = c_lo[i].max(c[i]);
                if c_hi[i] < 1e9 {
                    c[i] = (c_lo[i] + c_hi[i]) / 2.0;
                } else {
                    c[i] *= 10.0;
                }
            }
        }
    }
    Ok(o_best
        .iter()
        .enumerate()
        .map(|(j, v)| bounds.project(j, *v, x[j]))
        .collect())
}

/// One FISTA run at the constants `c`: per row, the smallest decision-rule distance of a flipped iterate, its
/// label and the iterate.
#[allow(clippy::type_complexity)]
fn search(
    net: &Sequential,
    x: &[f32],
    d: usize,
    original: &[usize],
    c: &[f64],
    cfg: &EadConfig,
    bounds: &Bounds,
) -> Result<(Vec<f32>, Vec<Option<usize>>, Vec<f32>)> {
    let n = original.len();
    let mut best_dist = vec![f32::INFINITY; n];
    let mut best_label = vec![None; n];
    let mut best = x.to_vec();
    let mut x_adv = x.to_vec();
    let mut y_adv = x.to_vec();
    for it in 0..cfg.max_iter {
        let lr = (cfg.learning_rate * (1.0 - it as f64 / cfg.max_iter as f64).sqrt()) as f32;
        let grad = loss_gradient(net, x, &y_adv, d, original, c, cfg.confidence)?;
        let next: Vec<f32> = (0..n * d)
            .map(|j| shrink(y_adv[j] - lr * grad[j], x[j], cfg.beta, bounds, j))
            .collect();
        let momentum = (it as f64 / (it as f64 + 3.0)) as f32;
        for j in 0..n * d {
            y_adv[j] = next[j] + momentum * (next[j] - x_adv[j]);
        }
        x_adv = next;
        let labels = super::predict(net, &x_adv, d)?;
        for i in 0..n {
            let (l1, l2) = x_adv[i * d..(i + 1) * d]
                .iter()
                .zip(&x[i * d..(i + 1) * d])
                .fold((0.0f32, 0.0f32), |(a, b), (p, q)| {
                    (a + (q - p).abs(), b + (q - p) * (q - p))
                });
            let dist = match cfg.rule {
                DecisionRule::L1 => l1,
                DecisionRule::L2 => l2,
                DecisionRule::ElasticNet => cfg.beta * l1 + l2,
            };
            if dist < best_dist[i] && labels[i] != original[i] {
                best_dist[i] = dist;
                best_label[i] = Some(labels[i]);
                best[i * d..(i + 1) * d].copy_from_slice(&x_adv[i * d..(i + 1) * d]);
            }
        }
    }
    Ok((best_dist, best_label, best))
}

/// ART's projected shrinkage-thresholding of z towards x by β, into feature j's box (a frozen feature keeps x).
fn shrink(z: f32, x: f32, beta: f32, bounds: &Bounds, j: usize) -> f32 {
    let diff = z - x;
    if bounds.frozen[j] {
        x
    } else if diff > beta {
        (z - beta).min(bounds.hi[j])
    } else if diff < -beta {
        (z + beta).max(bounds.lo[j])
    } else {
        x
    }
}

/// ART's untargeted gradient: c·(∇p_y − ∇p_j*) + 2(x′ − x), with j* the most probable other class, zeroed for
/// rows already past the margin (p_y − p_j* + κ < 0).
fn loss_gradient(
    net: &Sequential,
    x: &[f32],
    x_adv: &[f32],
    d: usize,
    original: &[usize],
    c: &[f64],
    confidence: f32,
) -> Result<Vec<f32>> {
    let n = original.len();
    let v = Var::from_tensor(&rows(x_adv, n, d)?)?;
    let probs = probabilities(net, v.as_tensor())?;
    let p: Vec<Vec<f32>> = probs.to_vec2()?;
    let classes = p.first().map_or(0, Vec::len);
    if original.iter().any(|&y| y >= classes) {
        return Err(Error::invalid(format!(
            "ead: a class outside the model's {classes}"
        )));
    }
    // The most probable class other than y: ART masks y with (min − 1).
    let other: Vec<usize> = p
        .iter()
        .zip(original)
        .map(|(r, &y)| {
            let lowest = r.iter().cloned().fold(f32::INFINITY, f32::min);
            let masked: Vec<f32> = r
                .iter()
                .enumerate()
                .map(|(j, &v)| if j == y { lowest - 1.0 } else { v })
                .collect();
            argmax(&masked)
        })
        .collect();
    // ∇(p_y − p_j*) row by row: one backward of Σ_i (p_i[y_i] − p_i[j*_i]).
    let sign: Vec<f32> = (0..n * classes)
        .map(|k| {
            let (i, j) = (k / classes, k % classes);
            (j == original[i]) as u8 as f32 - (j == other[i]) as u8 as f32
        })
        .collect();
    let w = Tensor::from_vec(sign, (n, classes), &candle_core::Device::Cpu)?;
    let g = probs.mul(&w)?.sum_all()?.backward()?;
    let grad: Vec<f32> = match g.get(v.as_tensor()) {
        Some(t) => t.flatten_all()?.to_vec1()?,
        None => vec![0.0; n * d],
    };
    let mut out = vec![0.0f32; n * d];
    for i in 0..n {
        let past = p[i][original[i]] - p[i][other[i]] + confidence < 0.0;
        for k in 0..d {
            let j = i * d + k;
            out[j] = if past {
                0.0
            } else {
                (grad[j] as f64 * c[i]) as f32 + 2.0 * (x_adv[j] - x[j])
            };
        }
    }
    Ok(out)
}
