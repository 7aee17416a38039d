//! The Lipschitz-variance-margin variant of randomized smoothing (LVM-RS, P03's follow-up by Delattre et al.): the
//! logits of every noisy copy are mapped to the simplex (softmax or sparsemax at a temperature t), the smoothed
//! class scores are estimated by their sample means, and empirical Bernstein bounds (Maurer & Pontil) replace
//! Clopper–Pearson: for scores in [0, 1], with probability 1 − δ the mean is off by at most
//! s·√(2 ln(2/δ)/n) + 7 ln(2/δ)/(3(n − 1)) in one direction (s the sample standard deviation).
//!
//! Certificate: A = argmax_c (m_c − shift_c), p_A = m_A − shift_A, p_B = max_{c≠A} (m_c + shift_c); the radius is
//! the larger of σ/2·(Φ⁻¹(p_A) − Φ⁻¹(p_B)) (Φ⁻¹ of a Gaussian-smoothed [0, 1] function is 1/σ-Lipschitz) and
//! (p_A − p_B)/(√2 L) with L = 1/(σ√π) (the margin of two smoothed scores is √2 L-Lipschitz); abstain when
//! p_A ≤ p_B.
//!
//! Soundness: every class gets a lower and an upper bound, so δ = α/(2K) per bound (the reference code uses
//! α/K with the runner-up chosen by its mean; taking the largest upper bound over all other classes and both
//! directions is what makes the selection of A and B on the same samples valid). Several (map, temperature)
//! configurations are searched with Bonferroni's correction (α/m each); the paper's best-of-all-configurations on
//! the same samples without correction is available only as a labelled replication mode.

use super::smoothing::noisy_fold;
use crate::{Error, Result};
use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal};

/// How logits become class scores in the simplex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SimplexMap {
    #[serde(rename = "softmax")]
    Softmax,
    #[serde(rename = "sparsemax")]
    Sparsemax,
}

impl SimplexMap {
    /// `softmax` or `sparsemax`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "softmax" => Ok(SimplexMap::Softmax),
            "sparsemax" => Ok(SimplexMap::Sparsemax),
            other => Err(Error::invalid(format!(
                "map `{other}`: available: softmax, sparsemax"
            ))),
        }
    }

    /// The scores of `logits / t`, written to `out`.
    pub fn apply(&self, logits: &[f64], t: f64, out: &mut [f64]) {
        let z = logits.iter().map(|v| v / t);
        match self {
            SimplexMap::Softmax => {
                let m = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max) / t;
                let mut sum = 0.0;
                for (o, v) in out.iter_mut().zip(z) {
                    *o = (v - m).exp();
                    sum += *o;
                }
                out.iter_mut().for_each(|o| *o /= sum);
            }
            SimplexMap::Sparsemax => {
                // Euclidean projection onto the simplex: p = max(z − τ, 0).
                let mut s: Vec<f64> = z.clone().collect();
                s.sort_by(|a, b| b.total_cmp(a));
                let (mut cum, mut tau) = (0.0, 0.0);
                for (k, v) in s.iter().enumerate() {
                    cum += v;
                    let t_k = (cum - 1.0) / (k + 1) as f64;
                    if *v > t_k {
                        tau = t_k;
                    }
                }
                for (o, v) in out.iter_mut().zip(z) {
                    *o = (v - tau).max(0.0);
                }
            }
        }
    }
}

/// How several configurations are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Selection {
    /// The best radius with α split evenly over the configurations (sound).
    #[serde(rename = "bonferroni")]
    Bonferroni,
    /// The best radius with the full α for each configuration on the same samples (the paper's selection; NOT a
    /// valid certificate at level α).
    #[serde(rename = "replication")]
    Replication,
}

/// LVM-RS settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LvmConfig {
    pub sigma: f64,
    pub n: u64,
    pub alpha: f64,
    pub seed: u64,
    /// (map, temperature) configurations; one by default (softmax, t = 1).
    pub configs: Vec<(SimplexMap, f64)>,
    pub selection: Selection,
}

impl Default for LvmConfig {
    fn default() -> Self {
        LvmConfig {
            sigma: 0.25,
            n: 100_000,
            alpha: 0.001,
            seed: 0,
            configs: vec![(SimplexMap::Softmax, 1.0)],
            selection: Selection::Bonferroni,
        }
    }
}

/// A search grid: both maps at temperatures 0.1 … 10 (14 configurations).
pub fn default_grid() -> Vec<(SimplexMap, f64)> {
    let ts = [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0];
    [SimplexMap::Softmax, SimplexMap::Sparsemax]
        .into_iter()
        .flat_map(|m| ts.iter().map(move |&t| (m, t)))
        .collect()
}

/// One input's LVM-RS certificate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LvmCertificate {
    pub class: Option<usize>,
    pub radius: f64,
    /// Lower bound of the top class's smoothed score and upper bound of the runner-up's.
    pub p_lower: f64,
    pub p_runner_upper: f64,
    /// The configuration that gave the radius.
    pub map: SimplexMap,
    pub temperature: f64,
    pub selection: Selection,
}

/// Empirical Bernstein half-width for n samples in [0, 1] with sample variance `var` at failure probability δ.
pub fn bernstein_shift(var: f64, n: u64, delta: f64) -> f64 {
    let (n, l) = (n as f64, (2.0 / delta).ln());
    (2.0 * var.max(0.0) * l / n).sqrt() + 7.0 * l / (3.0 * (n - 1.0))
}

/// LVM-RS for input `x` (number `index` of a data set) with a logit function of `classes` outputs.
pub fn certify_lvm(
    logits: &(dyn Fn(&[f64]) -> Vec<f64> + Sync),
    x: &[f64],
    classes: usize,
    cfg: &LvmConfig,
    index: u64,
) -> Result<LvmCertificate> {
    if !(cfg.sigma.is_finite() && cfg.sigma > 0.0) {
        return Err(Error::invalid(format!(
            "sigma={} must be positive",
            cfg.sigma
        )));
    }
    if !(cfg.alpha > 0.0 && cfg.alpha < 1.0) {
        return Err(Error::invalid(format!(
            "alpha={} must be in (0, 1)",
            cfg.alpha
        )));
    }
    if cfg.n < 2 || classes < 2 || cfg.configs.is_empty() {
        return Err(Error::invalid(
            "LVM-RS needs n >= 2 samples, at least 2 classes and one configuration",
        ));
    }
    if let Some((_, t)) = cfg
        .configs
        .iter()
        .find(|(_, t)| !(t.is_finite() && *t > 0.0))
    {
        return Err(Error::invalid(format!("temperature={t} must be positive")));
    }
    let m = cfg.configs.len();
    // Per configuration and class: sum and sum of squares of the scores.
    let (sums, sqs) = noisy_fold(
        x,
        cfg.sigma,
        cfg.seed,
        cfg.n,
        index,
        1,
        || (vec![0.0; m * classes], vec![0.0; m * classes]),
        |(s, q), noisy| {
            let z = logits(noisy);
            let mut p = vec![0.0; classes];
            for (i, (map, t)) in cfg.configs.iter().enumerate() {
                map.apply(&z[..classes.min(z.len())], *t, &mut p);
                for c in 0..classes {
                    s[i * classes + c] += p[c];
                    q[i * classes + c] += p[c] * p[c];
                }
            }
        },
        |(mut s, mut q), (s2, q2)| {
            s.iter_mut().zip(s2).for_each(|(a, b)| *a += b);
            q.iter_mut().zip(q2).for_each(|(a, b)| *a += b);
            (s, q)
        },
    );
    let alpha_cfg = match cfg.selection {
        Selection::Bonferroni => cfg.alpha / m as f64,
        Selection::Replication => cfg.alpha,
    };
    let delta = alpha_cfg / (2 * classes) as f64;
    let nf = cfg.n as f64;
    let std_normal = Normal::new(0.0, 1.0).map_err(|e| Error::invalid(e.to_string()))?;
    let mut best: Option<LvmCertificate> = None;
    for (i, &(map, t)) in cfg.configs.iter().enumerate() {
        let bounds: Vec<(f64, f64)> = (0..classes)
            .map(|c| {
                let mean = sums[i * classes + c] / nf;
                let var = (sqs[i * classes + c] - nf * mean * mean) / (nf - 1.0);
                let s = bernstein_shift(var, cfg.n, delta);
                ((mean - s).max(0.0), (mean + s).min(1.0))
            })
            .collect();
        let a = (0..classes)
            .max_by(|&p, &q| bounds[p].0.total_cmp(&bounds[q].0).then(q.cmp(&p)))
            .expect("classes");
        let pa = bounds[a].0;
        let pb = (0..classes)
            .filter(|&c| c != a)
            .map(|c| bounds[c].1)
            .fold(0.0, f64::max);
        let radius = if pa > pb {
            let phi = |p: f64| std_normal.inverse_cdf(p.clamp(1e-300, 1.0 - 1e-16));
            let gaussian = 0.5 * cfg.sigma * (phi(pa) - phi(pb));
            let lipschitz = (pa - pb) * cfg.sigma * (std::f64::consts::PI / 2.0).sqrt();
            gaussian.max(lipschitz)
        } else {
            0.0
        };
        let cert = LvmCertificate {
            class: (radius > 0.0).then_some(a),
            radius,
            p_lower: pa,
            p_runner_upper: pb,
            map,
            temperature: t,
            selection: cfg.selection,
        };
        if best.as_ref().is_none_or(|b| cert.radius > b.radius) {
            best = Some(cert);
        }
    }
    Ok(best.expect("one configuration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_land_in_the_simplex() {
        let z = [2.0, 1.0, -1.0, 0.5];
        let mut p = [0.0; 4];
        for map in [SimplexMap::Softmax, SimplexMap::Sparsemax] {
            for t in [0.1, 1.0, 10.0] {
                map.apply(&z, t, &mut p);
                assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
                assert!(p.iter().all(|v| *v >= 0.0));
            }
        }
        // Sparsemax by hand: z = (2, 1, -1, 0.5) at t = 1 projects to (1, 0, 0, 0) (τ = 1).
        SimplexMap::Sparsemax.apply(&z, 1.0, &mut p);
        assert_eq!(p, [1.0, 0.0, 0.0, 0.0]);
        // At t = 4: z/4 = (0.5, 0.25, -0.25, 0.125); τ = (0.5 + 0.25 + 0.125 − 1)/3 = −0.041667.
        SimplexMap::Sparsemax.apply(&z, 4.0, &mut p);
        let tau = (0.875 - 1.0) / 3.0;
        assert!(
            (p[0] - (0.5 - tau)).abs() < 1e-12
                && p[2] == 0.0
                && (p[3] - (0.125 - tau)).abs() < 1e-12
        );
    }

    #[test]
    fn bernstein_shrinks_with_n_and_variance() {
        assert!(bernstein_shift(0.25, 1000, 0.01) > bernstein_shift(0.25, 10_000, 0.01));
        assert!(bernstein_shift(0.0, 1000, 0.01) < bernstein_shift(0.1, 1000, 0.01));
        // Zero variance: only the 7 ln(2/δ)/(3(n−1)) term.
        let l = (2.0f64 / 0.01).ln();
        assert!((bernstein_shift(0.0, 1001, 0.01) - 7.0 * l / 3000.0).abs() < 1e-15);
    }
}
