//! P18's training right-hand sides (the reference's `src/datasetcreate.py`): `m` Lanczos steps on A from
//! A·g (g Gaussian on the fluid cells) give Ritz pairs; each sample is Σ_k c_k v_k over the Ritz vectors with
//! c_k ~ N(0, 1), the `m/2 + θ` of smallest Ritz value weighted 9x (the low end of the spectrum, which CG resolves
//! last), normalized to unit length. Ritz values below 1e-8 (a null space) are skipped as in the reference.

use super::csr::{norm, Csr};
use crate::curvature::{lanczos_basis, tridiagonal_eigen, HessianOperator};
use crate::rng::{normal, rng_for, Stream};
use crate::{Error, Result};

/// A symmetric sparse matrix is an operator for Lanczos.
impl HessianOperator for Csr {
    fn dim(&self) -> usize {
        self.n
    }
    fn hvp(&self, v: &[f64]) -> Result<Vec<f64>> {
        Ok(self.matvec(v))
    }
}

/// How the training set is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RitzConfig {
    /// Lanczos steps m (the number of Ritz vectors); the reference uses 10000 of 262144 unknowns.
    pub vectors: usize,
    /// θ: the low-end Ritz vectors weighted 9x number m/2 + θ. `None`: m/20 (the reference's 500 of 10000).
    pub theta: Option<usize>,
    /// Right-hand sides drawn.
    pub samples: usize,
    pub seed: u64,
}

impl Default for RitzConfig {
    fn default() -> Self {
        RitzConfig {
            vectors: 256,
            theta: None,
            samples: 2000,
            seed: 0,
        }
    }
}

/// Ritz values (ascending) and their unit Ritz vectors.
pub struct RitzPairs {
    pub values: Vec<f64>,
    pub vectors: Vec<Vec<f64>>,
}

/// `m` Ritz pairs of A from the reference's start vector A·g, g Gaussian where `mask` is 1.
pub fn ritz_pairs(a: &Csr, mask: &[f64], m: usize, seed: u64) -> Result<RitzPairs> {
    if m < 2 || mask.len() != a.n {
        return Err(Error::invalid(format!(
            "Ritz vectors: need at least 2 Lanczos steps and a mask of {} cells (got {m} steps, {} cells)",
            a.n,
            mask.len()
        )));
    }
    crate::memory::check(
        "the Lanczos basis",
        2.0 * m.min(a.n) as f64 * a.n as f64 * 8.0,
        "use fewer Ritz vectors or a smaller grid",
    )?;
    let mut rng = rng_for(seed, Stream::Data, 180);
    let g: Vec<f64> = mask.iter().map(|&w| w * normal(&mut rng)).collect();
    ritz_pairs_from(a, a.matvec(&g), m)
}

/// `m` Ritz pairs of A from the Lanczos start vector `start`.
pub fn ritz_pairs_from(a: &Csr, start: Vec<f64>, m: usize) -> Result<RitzPairs> {
    if start.len() != a.n {
        return Err(Error::Shape(format!(
            "Ritz vectors: a start vector of {} values for {} unknowns",
            start.len(),
            a.n
        )));
    }
    let (alphas, betas, q, _) = lanczos_basis(a, m, start)?;
    let k = alphas.len();
    let (values, u) = tridiagonal_eigen(&alphas, &betas)?;
    let vectors = (0..k)
        .map(|c| {
            let mut v = vec![0.0; a.n];
            for (j, qj) in q.iter().enumerate() {
                let w = u[(j, c)];
                v.iter_mut().zip(qj).for_each(|(v, q)| *v += w * q);
            }
            v
        })
        .collect();
    Ok(RitzPairs { values, vectors })
}

/// `cfg.samples` unit right-hand sides (row-major, `samples × n`, f32 as the network trains on them).
pub fn ritz_rhs(a: &Csr, mask: &[f64], cfg: &RitzConfig) -> Result<Vec<f32>> {
    if cfg.samples == 0 {
        return Err(Error::invalid("Ritz data: samples must be at least 1"));
    }
    crate::memory::check(
        "the training right-hand sides",
        cfg.samples as f64 * a.n as f64 * 4.0,
        "use fewer samples or a smaller grid",
    )?;
    let pairs = ritz_pairs(a, mask, cfg.vectors, cfg.seed)?;
    let skip = pairs.values.iter().take_while(|&&v| v < 1e-8).count();
    let kept = &pairs.vectors[skip..];
    let m = pairs.vectors.len();
    let cut = (m / 2 + cfg.theta.unwrap_or(m / 20)).min(kept.len());
    let mut rng = rng_for(cfg.seed, Stream::Data, 181);
    let mut out = Vec::with_capacity(cfg.samples * a.n);
    let mut b = vec![0.0; a.n];
    for _ in 0..cfg.samples {
        b.iter_mut().for_each(|x| *x = 0.0);
        for (k, v) in kept.iter().enumerate() {
            let c = normal(&mut rng) * if k < cut { 9.0 } else { 1.0 };
            b.iter_mut().zip(v).for_each(|(b, v)| *b += c * v);
        }
        let nb = norm(&b);
        out.extend(b.iter().map(|x| (x / nb) as f32));
    }
    Ok(out)
}
