//! Randomized smoothing certificates (P03; Cohen et al.'s CERTIFY): the smoothed classifier
//! g(x) = argmax_c P(f(x + σε) = c), ε ~ N(0, I), is certified at x with l2 radius σ·Φ⁻¹(p_A) whenever the
//! one-sided Clopper–Pearson lower bound p_A of the top class's probability is above 1/2.
//!
//! Soundness: the top class is chosen on n0 samples and its probability estimated on n fresh ones, so with
//! probability at least 1 − α the reported radius is not above the true one. One configuration, chosen before the
//! data, is used (no selection over many settings on the same samples).

use crate::rng::{rng_for, Normals, Stream};
use crate::{Error, Result};
use rayon::prelude::*;
use serde::Serialize;
use statrs::distribution::{Beta, ContinuousCDF, Normal};

/// CERTIFY's settings (Cohen et al.'s defaults).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SmoothingConfig {
    /// Noise level, in the units of the inputs.
    pub sigma: f64,
    /// Samples to choose the top class.
    pub n0: u64,
    /// Samples to estimate its probability.
    pub n: u64,
    /// Failure probability of the certificate.
    pub alpha: f64,
    pub seed: u64,
}

impl Default for SmoothingConfig {
    fn default() -> Self {
        SmoothingConfig {
            sigma: 0.25,
            n0: 100,
            n: 100_000,
            alpha: 0.001,
            seed: 0,
        }
    }
}

impl SmoothingConfig {
    fn validate(&self) -> Result<()> {
        if !(self.sigma.is_finite() && self.sigma > 0.0) {
            return Err(Error::invalid(format!(
                "sigma={} must be positive",
                self.sigma
            )));
        }
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return Err(Error::invalid(format!(
                "alpha={} must be in (0, 1)",
                self.alpha
            )));
        }
        if self.n0 == 0 || self.n == 0 {
            return Err(Error::invalid("n0 and n must be at least 1"));
        }
        Ok(())
    }
}

/// One input's certificate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Certificate {
    /// The smoothed prediction, or `None` when CERTIFY abstains.
    pub class: Option<usize>,
    /// Certified l2 radius (0 when abstaining).
    pub radius: f64,
    /// The Clopper–Pearson lower bound of the top class's probability.
    pub p_lower: f64,
    /// Samples (of n) that gave the top class.
    pub top_count: u64,
}

/// The one-sided (1 − α) Clopper–Pearson lower confidence bound of a binomial proportion with `k` successes in
/// `n` trials: the α quantile of Beta(k, n − k + 1) (0 when k = 0).
pub fn clopper_pearson_lower(k: u64, n: u64, alpha: f64) -> f64 {
    if k == 0 {
        return 0.0;
    }
    Beta::new(k as f64, (n - k + 1) as f64)
        .map(|b| b.inverse_cdf(alpha))
        .unwrap_or(0.0)
}

/// Folds `step` over `count` noisy copies x + σε of `x` (ε ~ N(0, I)), in parallel chunks of 1000 with their own
/// random streams (seed, input `index`, `phase`), merging the chunk states with `merge`: the same result for any
/// thread count.
#[allow(clippy::too_many_arguments)]
pub(crate) fn noisy_fold<A: Send>(
    x: &[f64],
    sigma: f64,
    seed: u64,
    count: u64,
    index: u64,
    phase: u64,
    init: impl Fn() -> A + Sync,
    step: impl Fn(&mut A, &[f64]) + Sync,
    merge: impl Fn(A, A) -> A + Sync + Send,
) -> A {
    const CHUNK: u64 = 1000;
    let chunks = count.div_ceil(CHUNK);
    (0..chunks)
        .into_par_iter()
        .map(|c| {
            let mut rng = rng_for(seed, Stream::Probe, (index << 24) | (phase << 23) | c);
            let mut z = Normals::default();
            let mut acc = init();
            let mut noisy = vec![0.0; x.len()];
            for _ in 0..CHUNK.min(count - c * CHUNK) {
                for (o, xi) in noisy.iter_mut().zip(x) {
                    *o = xi + sigma * z.next(&mut rng);
                }
                step(&mut acc, &noisy);
            }
            acc
        })
        .reduce(&init, &merge)
}

/// Class counts of `classify` on `count` noisy copies of `x` (stream `phase` of input `index`).
fn sample_counts(
    classify: &(dyn Fn(&[f64]) -> usize + Sync),
    x: &[f64],
    classes: usize,
    count: u64,
    cfg: &SmoothingConfig,
    index: u64,
    phase: u64,
) -> Vec<u64> {
    noisy_fold(
        x,
        cfg.sigma,
        cfg.seed,
        count,
        index,
        phase,
        || vec![0u64; classes],
        |counts, noisy| {
            let k = classify(noisy);
            if k < classes {
                counts[k] += 1;
            }
        },
        |mut a, b| {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
            a
        },
    )
}

/// CERTIFY for input `x` (number `index` of a data set, which selects its random streams).
pub fn certify(
    classify: &(dyn Fn(&[f64]) -> usize + Sync),
    x: &[f64],
    classes: usize,
    cfg: &SmoothingConfig,
    index: u64,
) -> Result<Certificate> {
    cfg.validate()?;
    if classes == 0 {
        return Err(Error::invalid(
            "the classifier must have at least one class",
        ));
    }
    let select = sample_counts(classify, x, classes, cfg.n0, cfg, index, 0);
    let top = (0..classes)
        .max_by_key(|&c| (select[c], std::cmp::Reverse(c)))
        .unwrap_or(0);
    let counts = sample_counts(classify, x, classes, cfg.n, cfg, index, 1);
    let p_lower = clopper_pearson_lower(counts[top], cfg.n, cfg.alpha);
    if p_lower < 0.5 {
        return Ok(Certificate {
            class: None,
            radius: 0.0,
            p_lower,
            top_count: counts[top],
        });
    }
    let std_normal = Normal::new(0.0, 1.0).map_err(|e| Error::invalid(e.to_string()))?;
    Ok(Certificate {
        class: Some(top),
        radius: cfg.sigma * std_normal.inverse_cdf(p_lower),
        p_lower,
        top_count: counts[top],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clopper_pearson_by_hand() {
        // k = n: the bound solves p^n = alpha.
        let b = clopper_pearson_lower(100, 100, 0.001);
        assert!((b - 0.001f64.powf(0.01)).abs() < 1e-9, "{b}");
        assert_eq!(clopper_pearson_lower(0, 100, 0.05), 0.0);
        // Monotone in k.
        assert!(clopper_pearson_lower(60, 100, 0.05) < clopper_pearson_lower(70, 100, 0.05));
    }
}
