//! Estimators on a [`HessianOperator`]: Hutchinson's trace and diagonal, power iteration, Lanczos with full
//! reorthogonalization, and stochastic Lanczos quadrature (SLQ, P36) for the spectral density.

use super::eigen::jacobi_eigen;
use super::HessianOperator;
use crate::rng::{normal, rng_for, Rng, Stream};
use crate::{Error, Result};
use rand::Rng as _;

/// The distribution of random probe vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Entries ±1 with probability ½ (lowest variance for the trace).
    Rademacher,
    /// Entries N(0, 1).
    Gaussian,
    /// The standard basis vectors e_1..e_n in turn (exact, n products; for small problems and tests).
    Basis,
}

impl Probe {
    fn draw(self, n: usize, k: usize, rng: &mut Rng) -> Vec<f64> {
        match self {
            Probe::Rademacher => (0..n)
                .map(|_| if rng.gen::<bool>() { 1.0 } else { -1.0 })
                .collect(),
            Probe::Gaussian => (0..n).map(|_| normal(rng)).collect(),
            Probe::Basis => (0..n).map(|i| if i == k % n { 1.0 } else { 0.0 }).collect(),
        }
    }
}

/// A Monte-Carlo estimate with its standard error.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Estimate {
    pub mean: f64,
    /// Standard error of the mean (sample standard deviation / sqrt(samples)); 0 for exact estimates.
    pub stderr: f64,
    pub samples: usize,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

fn check_probes(probes: usize) -> Result<()> {
    if probes == 0 {
        return Err(Error::invalid("at least one probe vector is needed"));
    }
    Ok(())
}

/// The number of probes actually used: `Probe::Basis` always takes the n basis vectors.
fn probe_count(kind: Probe, probes: usize, n: usize) -> usize {
    if kind == Probe::Basis {
        n
    } else {
        probes
    }
}

/// Hutchinson's estimator tr(H) ≈ mean of vᵀHv over `probes` probe vectors (`Probe::Basis`: exact, n products).
pub fn hutchinson_trace(
    op: &dyn HessianOperator,
    probes: usize,
    kind: Probe,
    seed: u64,
) -> Result<Estimate> {
    check_probes(probes)?;
    let n = op.dim();
    let probes = probe_count(kind, probes, n);
    let mut rng = rng_for(seed, Stream::Probe, 0);
    let mut samples = Vec::with_capacity(probes);
    for k in 0..probes {
        let v = kind.draw(n, k, &mut rng);
        samples.push(dot(&v, &op.hvp(&v)?));
    }
    if kind == Probe::Basis {
        return Ok(Estimate {
            mean: samples.iter().sum(),
            stderr: 0.0,
            samples: probes,
        });
    }
    let mean = samples.iter().sum::<f64>() / probes as f64;
    let stderr = if probes > 1 {
        let var = samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (probes - 1) as f64;
        (var / probes as f64).sqrt()
    } else {
        f64::INFINITY
    };
    Ok(Estimate {
        mean,
        stderr,
        samples: probes,
    })
}

/// Hutchinson's diagonal estimate diag(H) ≈ mean of v ⊙ Hv (Rademacher or Gaussian probes).
pub fn hutchinson_diagonal(
    op: &dyn HessianOperator,
    probes: usize,
    kind: Probe,
    seed: u64,
) -> Result<Vec<f64>> {
    check_probes(probes)?;
    let n = op.dim();
    let mut rng = rng_for(seed, Stream::Probe, 1);
    let probes = probe_count(kind, probes, n);
    let mut acc = vec![0.0; n];
    for k in 0..probes {
        let v = kind.draw(n, k, &mut rng);
        let hv = op.hvp(&v)?;
        for i in 0..n {
            acc[i] += v[i] * hv[i];
        }
    }
    let count = if kind == Probe::Basis {
        1.0
    } else {
        probes as f64
    };
    Ok(acc.into_iter().map(|a| a / count).collect())
}

/// The eigenvalue of largest magnitude by power iteration, with the iterations used and whether the
/// relative change of the Rayleigh quotient fell below `tol`.
pub fn power_iteration(
    op: &dyn HessianOperator,
    max_iters: usize,
    tol: f64,
    seed: u64,
) -> Result<(f64, usize, bool)> {
    let n = op.dim();
    let mut rng = rng_for(seed, Stream::Probe, 2);
    let mut v = Probe::Gaussian.draw(n, 0, &mut rng);
    let nv = norm(&v);
    v.iter_mut().for_each(|x| *x /= nv);
    let mut lambda = 0.0;
    for it in 1..=max_iters {
        let w = op.hvp(&v)?;
        let new = dot(&v, &w);
        let nw = norm(&w);
        if nw == 0.0 {
            return Ok((0.0, it, true));
        }
        v = w.into_iter().map(|x| x / nw).collect();
        if it > 1 && (new - lambda).abs() <= tol * new.abs().max(f64::MIN_POSITIVE) {
            return Ok((new, it, true));
        }
        lambda = new;
    }
    Ok((lambda, max_iters, false))
}

/// The result of `m` Lanczos steps: the tridiagonal T (alphas on the diagonal, betas off it), its eigenvalues
/// (Ritz values, ascending) and the squared first components of its eigenvectors (Gauss quadrature weights).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Lanczos {
    pub alphas: Vec<f64>,
    pub betas: Vec<f64>,
    pub ritz_values: Vec<f64>,
    pub weights: Vec<f64>,
}

/// The diagonal (alphas) and off-diagonal (betas) of the Lanczos tridiagonal T, the orthonormal basis Q and the
/// norm of the last step's residual (the β that would follow T; about 0 on an invariant subspace).
pub(crate) type LanczosBasis = (Vec<f64>, Vec<f64>, Vec<Vec<f64>>, f64);

/// `m` Lanczos steps with full reorthogonalization from `start` (one basis vector per step); stops early on an
/// invariant subspace.
pub(crate) fn lanczos_basis(
    op: &dyn HessianOperator,
    m: usize,
    start: Vec<f64>,
) -> Result<LanczosBasis> {
    let n = op.dim();
    let m = m.min(n).max(1);
    let s = norm(&start);
    if s == 0.0 {
        return Err(Error::invalid("Lanczos needs a non-zero start vector"));
    }
    let mut qs: Vec<Vec<f64>> = vec![start.into_iter().map(|x| x / s).collect()];
    let (mut alphas, mut betas) = (Vec::with_capacity(m), Vec::with_capacity(m));
    let mut residual = 0.0;
    for j in 0..m {
        let mut w = op.hvp(&qs[j])?;
        let a = dot(&w, &qs[j]);
        alphas.push(a);
        // Full reorthogonalization (twice is enough): keeps the Ritz values free of spurious copies.
        for _ in 0..2 {
            for q in &qs {
                let c = dot(&w, q);
                w.iter_mut().zip(q).for_each(|(x, y)| *x -= c * y);
            }
        }
        let b = norm(&w);
        residual = b;
        if j + 1 == m {
            break;
        }
        let scale = alphas.iter().map(|a| a.abs()).fold(0.0, f64::max).max(1.0);
        if b <= 1e-12 * scale {
            break; // an invariant subspace: T is exact
        }
        betas.push(b);
        qs.push(w.into_iter().map(|x| x / b).collect());
    }
    Ok((alphas, betas, qs, residual))
}

/// The eigenvalues (ascending) and eigenvectors (columns) of the symmetric tridiagonal matrix with `alphas` on
/// the diagonal and `betas` beside it.
pub(crate) fn tridiagonal_eigen(
    alphas: &[f64],
    betas: &[f64],
) -> Result<(Vec<f64>, faer::Mat<f64>)> {
    let k = alphas.len();
    let t = faer::Mat::from_fn(k, k, |i, j| {
        if i == j {
            alphas[i]
        } else if i.abs_diff(j) == 1 {
            betas[i.min(j)]
        } else {
            0.0
        }
    });
    let e = t.self_adjoint_eigen(faer::Side::Lower).map_err(|e| {
        Error::invalid(format!(
            "eigendecomposition of the Lanczos tridiagonal: {e:?}"
        ))
    })?;
    let values = (0..k).map(|c| e.S().column_vector()[c]).collect();
    Ok((values, e.U().to_owned()))
}

fn lanczos_from(op: &dyn HessianOperator, m: usize, start: Vec<f64>) -> Result<Lanczos> {
    let (alphas, betas, _, _) = lanczos_basis(op, m, start)?;
    let k = alphas.len();
    let mut t = vec![0.0; k * k];
    for i in 0..k {
        t[i * k + i] = alphas[i];
        if i + 1 < k {
            t[i * k + i + 1] = betas[i];
            t[(i + 1) * k + i] = betas[i];
        }
    }
    let e = jacobi_eigen(&t, k);
    let weights = (0..k).map(|c| e.vectors[c].powi(2)).collect();
    Ok(Lanczos {
        alphas,
        betas,
        ritz_values: e.values,
        weights,
    })
}

/// `m` steps of Lanczos with full reorthogonalization from a seeded Gaussian start.
pub fn lanczos(op: &dyn HessianOperator, m: usize, seed: u64) -> Result<Lanczos> {
    let mut rng = rng_for(seed, Stream::Probe, 3);
    let start = Probe::Gaussian.draw(op.dim(), 0, &mut rng);
    lanczos_from(op, m, start)
}

/// A spectral density as weighted nodes (the Ritz values of every probe, weights summing to 1).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SpectralDensity {
    pub nodes: Vec<f64>,
    pub weights: Vec<f64>,
}

impl SpectralDensity {
    /// ∫ λ^p dμ(λ), an estimate of tr(H^p)/n (exact for p ≤ 2m-1 with `Probe::Basis` probes).
    pub fn moment(&self, p: i32) -> f64 {
        self.nodes
            .iter()
            .zip(&self.weights)
            .map(|(x, w)| w * x.powi(p))
            .sum()
    }

    /// The density smoothed by Gaussians of width `sigma`, on `points` grid points spanning the nodes.
    pub fn smoothed(&self, points: usize, sigma: f64) -> Vec<(f64, f64)> {
        let lo = self.nodes.iter().copied().fold(f64::MAX, f64::min) - 3.0 * sigma;
        let hi = self.nodes.iter().copied().fold(f64::MIN, f64::max) + 3.0 * sigma;
        let c = 1.0 / (sigma * (2.0 * std::f64::consts::PI).sqrt());
        (0..points)
            .map(|i| {
                let x = lo + (hi - lo) * i as f64 / (points.max(2) - 1) as f64;
                let d = self
                    .nodes
                    .iter()
                    .zip(&self.weights)
                    .map(|(l, w)| w * c * (-(x - l).powi(2) / (2.0 * sigma * sigma)).exp())
                    .sum();
                (x, d)
            })
            .collect()
    }
}

/// Stochastic Lanczos quadrature (P36): `probes` Lanczos runs of `m` steps from probe vectors; each run's
/// Ritz values with weights (first eigenvector components)², averaged over probes.
pub fn slq_density(
    op: &dyn HessianOperator,
    m: usize,
    probes: usize,
    kind: Probe,
    seed: u64,
) -> Result<SpectralDensity> {
    check_probes(probes)?;
    let n = op.dim();
    let probes = probe_count(kind, probes, n);
    let mut rng = rng_for(seed, Stream::Probe, 4);
    let (mut nodes, mut weights) = (Vec::new(), Vec::new());
    for k in 0..probes {
        let l = lanczos_from(op, m, kind.draw(n, k, &mut rng))?;
        nodes.extend(l.ritz_values);
        weights.extend(l.weights.into_iter().map(|w| w / probes as f64));
    }
    Ok(SpectralDensity { nodes, weights })
}
