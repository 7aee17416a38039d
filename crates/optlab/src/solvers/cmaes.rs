//! CMA-ES, the (μ/μ_w, λ) covariance matrix adaptation evolution strategy with its default strategy parameters
//! (Hansen, "The CMA Evolution Strategy: A Tutorial", 2016): the derivative-free baseline P20 (DiffTactile)
//! compares its gradients with. Each generation samples λ points from N(m, σ²C), moves the mean to the weighted
//! mean of the best μ, adapts σ by the cumulative step-size path and C by the rank-one and rank-μ updates.
//!
//! ```
//! use optlab::solvers::cmaes::{cma_es, CmaConfig};
//! let rosenbrock = |x: &[f64]| (0..x.len() - 1)
//!     .map(|i| 100.0 * (x[i + 1] - x[i] * x[i]).powi(2) + (1.0 - x[i]).powi(2))
//!     .sum::<f64>();
//! let r = cma_es(&rosenbrock, &[0.0; 4], &CmaConfig { budget: 6000, ..CmaConfig::default() }).unwrap();
//! assert!(r.f < 1e-8, "{}", r.f);
//! ```

use crate::curvature::jacobi_eigen;
use crate::rng::{rng_for, Normals, Stream};
use crate::{Error, Result};
use rayon::prelude::*;

/// The run's settings; the strategy parameters follow from the dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct CmaConfig {
    /// The initial step size σ₀.
    pub sigma: f64,
    /// λ; `None` for the default 4 + ⌊3 ln n⌋.
    pub population: Option<usize>,
    /// The most function evaluations.
    pub budget: usize,
    pub seed: u64,
}

impl Default for CmaConfig {
    fn default() -> Self {
        CmaConfig {
            sigma: 0.5,
            population: None,
            budget: 1000,
            seed: 0,
        }
    }
}

/// The best point seen, and the best value after every generation against the evaluations spent.
#[derive(Debug, Clone, PartialEq)]
pub struct CmaResult {
    pub x: Vec<f64>,
    pub f: f64,
    pub evals: usize,
    pub history: Vec<(usize, f64)>,
}

/// The largest dimension accepted (the covariance is dense).
pub const MAX_DIM: usize = 1000;

/// Minimises `f` from `x0`. A non-finite value counts as +∞ (the point is ranked last).
pub fn cma_es(
    f: &(dyn Fn(&[f64]) -> f64 + Sync),
    x0: &[f64],
    cfg: &CmaConfig,
) -> Result<CmaResult> {
    let n = x0.len();
    let lambda = cfg
        .population
        .unwrap_or(4 + (3.0 * (n as f64).ln()).floor() as usize);
    if n == 0 || n > MAX_DIM || x0.iter().any(|v| !v.is_finite()) {
        return Err(Error::invalid(format!(
            "cma-es: need 1 to {MAX_DIM} finite starting coordinates, not {n}"
        )));
    }
    if !(cfg.sigma.is_finite() && cfg.sigma > 0.0) || lambda < 2 || cfg.budget < lambda {
        return Err(Error::invalid(format!(
            "cma-es: need sigma > 0, a population >= 2 and a budget of at least one population, not sigma = {}, \
             lambda = {lambda}, budget = {}",
            cfg.sigma, cfg.budget
        )));
    }
    // Strategy parameters (the tutorial's Table 1).
    let nf = n as f64;
    let mu = lambda / 2;
    let raw: Vec<f64> = (1..=mu)
        .map(|i| ((lambda as f64 + 1.0) / 2.0).ln() - (i as f64).ln())
        .collect();
    let total: f64 = raw.iter().sum();
    let w: Vec<f64> = raw.iter().map(|v| v / total).collect();
    let mu_eff = 1.0 / w.iter().map(|v| v * v).sum::<f64>();
    let c_sigma = (mu_eff + 2.0) / (nf + mu_eff + 5.0);
    let d_sigma = 1.0 + 2.0 * (((mu_eff - 1.0) / (nf + 1.0)).sqrt() - 1.0).max(0.0) + c_sigma;
    let c_c = (4.0 + mu_eff / nf) / (nf + 4.0 + 2.0 * mu_eff / nf);
    let c_1 = 2.0 / ((nf + 1.3).powi(2) + mu_eff);
    let c_mu = (1.0 - c_1).min(2.0 * (mu_eff - 2.0 + 1.0 / mu_eff) / ((nf + 2.0).powi(2) + mu_eff));
    let chi_n = nf.sqrt() * (1.0 - 1.0 / (4.0 * nf) + 1.0 / (21.0 * nf * nf));

    let mut rng = rng_for(cfg.seed, Stream::Solver, 0);
    let mut normals = Normals::default();
    let mut m = x0.to_vec();
    let mut sigma = cfg.sigma;
    let mut c = vec![0.0; n * n];
    (0..n).for_each(|i| c[i * n + i] = 1.0);
    let (mut p_sigma, mut p_c) = (vec![0.0; n], vec![0.0; n]);
    let score = |x: &[f64]| {
        let v = f(x);
        if v.is_finite() {
            v
        } else {
            f64::INFINITY
        }
    };
    let mut best = (x0.to_vec(), score(x0));
    let mut evals = 1;
    let mut history = vec![(evals, best.1)];
    let mut generation = 0;
    while evals + lambda <= cfg.budget {
        let eig = jacobi_eigen(&c, n);
        let d: Vec<f64> = eig.values.iter().map(|v| v.max(0.0).sqrt()).collect();
        let b = &eig.vectors;
        // y_k = B D z_k, x_k = m + σ y_k.
        let ys: Vec<Vec<f64>> = (0..lambda)
            .map(|_| {
                let z: Vec<f64> = (0..n).map(|_| normals.next(&mut rng)).collect();
                (0..n)
                    .map(|i| (0..n).map(|j| b[i * n + j] * d[j] * z[j]).sum())
                    .collect()
            })
            .collect();
        let xs: Vec<Vec<f64>> = ys
            .iter()
            .map(|y| m.iter().zip(y).map(|(a, b)| a + sigma * b).collect())
            .collect();
        let values: Vec<f64> = xs.par_iter().map(|x| score(x)).collect();
        evals += lambda;
        let mut order: Vec<usize> = (0..lambda).collect();
        order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
        if values[order[0]] < best.1 {
            best = (xs[order[0]].clone(), values[order[0]]);
        }
        history.push((evals, best.1));
        // Mean.
        let mut y_w = vec![0.0; n];
        for (wi, &k) in w.iter().zip(&order) {
            for i in 0..n {
                y_w[i] += wi * ys[k][i];
            }
        }
        for i in 0..n {
            m[i] += sigma * y_w[i];
        }
        // Step-size path with C^{-1/2} y_w = B D⁻¹ Bᵀ y_w.
        let bt_y: Vec<f64> = (0..n)
            .map(|j| (0..n).map(|i| b[i * n + j] * y_w[i]).sum::<f64>() / d[j].max(1e-300))
            .collect();
        let a = (c_sigma * (2.0 - c_sigma) * mu_eff).sqrt();
        for i in 0..n {
            let ci: f64 = (0..n).map(|j| b[i * n + j] * bt_y[j]).sum();
            p_sigma[i] = (1.0 - c_sigma) * p_sigma[i] + a * ci;
        }
        let ps_norm = p_sigma.iter().map(|v| v * v).sum::<f64>().sqrt();
        sigma *= ((c_sigma / d_sigma) * (ps_norm / chi_n - 1.0)).exp();
        generation += 1;
        let h_sigma = ps_norm / (1.0 - (1.0 - c_sigma).powi(2 * generation)).sqrt()
            < (1.4 + 2.0 / (nf + 1.0)) * chi_n;
        let h = if h_sigma { 1.0 } else { 0.0 };
        let a_c = (c_c * (2.0 - c_c) * mu_eff).sqrt();
        for i in 0..n {
            p_c[i] = (1.0 - c_c) * p_c[i] + h * a_c * y_w[i];
        }
        // Covariance: rank one and rank μ.
        let keep = 1.0 - c_1 - c_mu + (1.0 - h) * c_1 * c_c * (2.0 - c_c);
        for i in 0..n {
            for j in 0..n {
                let rank_mu: f64 = w
                    .iter()
                    .zip(&order)
                    .map(|(wi, &k)| wi * ys[k][i] * ys[k][j])
                    .sum();
                c[i * n + j] = keep * c[i * n + j] + c_1 * p_c[i] * p_c[j] + c_mu * rank_mu;
            }
        }
        if !(sigma.is_finite() && sigma > 1e-300) || c.iter().any(|v| !v.is_finite()) {
            break;
        }
    }
    Ok(CmaResult {
        x: best.0,
        f: best.1,
        evals,
        history,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_solves_an_ill_conditioned_ellipsoid_and_refuses_nonsense() {
        // Condition number 1e6: only an adapted covariance makes this quick.
        let ellipsoid = |x: &[f64]| {
            let n = x.len() as f64;
            x.iter()
                .enumerate()
                .map(|(i, v)| 1e6f64.powf(i as f64 / (n - 1.0)) * (v - 1.0).powi(2))
                .sum::<f64>()
        };
        let cfg = CmaConfig {
            budget: 8000,
            ..CmaConfig::default()
        };
        let r = cma_es(&ellipsoid, &[0.0; 6], &cfg).unwrap();
        assert!(r.f < 1e-10, "{}", r.f);
        assert!(r.evals <= 8000 && r.history.windows(2).all(|w| w[1].1 <= w[0].1));
        // Same seed, same run.
        assert_eq!(r, cma_es(&ellipsoid, &[0.0; 6], &cfg).unwrap());
        assert!(cma_es(&ellipsoid, &[], &CmaConfig::default()).is_err());
        assert!(cma_es(
            &ellipsoid,
            &[0.0],
            &CmaConfig {
                sigma: 0.0,
                ..CmaConfig::default()
            }
        )
        .is_err());
        assert!(cma_es(
            &ellipsoid,
            &[0.0],
            &CmaConfig {
                budget: 2,
                ..CmaConfig::default()
            }
        )
        .is_err());
        // A NaN region is ranked last, not propagated.
        let holes = |x: &[f64]| {
            if x[0] < 0.0 {
                f64::NAN
            } else {
                (x[0] - 2.0).powi(2)
            }
        };
        let r = cma_es(
            &holes,
            &[1.0],
            &CmaConfig {
                budget: 500,
                ..CmaConfig::default()
            },
        )
        .unwrap();
        assert!((r.x[0] - 2.0).abs() < 1e-4, "{r:?}");
    }
}
