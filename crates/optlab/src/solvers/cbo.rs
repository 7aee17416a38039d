//! Consensus-based optimization (P23, "Gradient is All You Need?"; dynamics as in CBXpy): N particles drift
//! towards the consensus point
//!
//! c_α = Σ_i x_i·exp(-α f(x_i)) / Σ_i exp(-α f(x_i))   (a log-sum-exp, so large α is safe)
//!
//! and diffuse in proportion to their distance from it:
//!
//! x_i ← x_i − λ·dt·(x_i − c_α) + σ·√dt·‖x_i − c_α‖·ξ_i        (isotropic)
//! x_i ← x_i − λ·dt·(x_i − c_α) + σ·√dt·(x_i − c_α) ⊙ ξ_i      (anisotropic, scales to high dimension)
//!
//! with ξ_i standard normal (drawn a step at a time by the block ziggurat, [`fill_scaled_normals`]). The consensus
//! may be computed on a mini-batch of particles each step, and α grows geometrically (`alpha_factor`, CBXpy's
//! default scheduler ×1.05 per step up to 1e5). The paper's consensus hopping scheme — every step, the new iterate
//! is the consensus point of N samples drawn around the current one, with a shrinking spread — is
//! [`consensus_hopping`].
//!
//! ```
//! use optlab::solvers::cbo::{cbo, CboConfig, Noise};
//! let f = |x: &[f64]| x.iter().map(|v| (v - 1.0).powi(2)).sum::<f64>();
//! let cfg = CboConfig { noise: Noise::Anisotropic, alpha: 100.0, ..CboConfig::default() };
//! let r = cbo(&f, 3, &cfg, 0).unwrap();
//! assert!(r.x.iter().all(|v| (v - 1.0).abs() < 0.05));
//! ```

use crate::rng::{fill_scaled_normals, permutation, rng_for, Rng, Stream};
use crate::{Error, Result};
use rand::Rng as _;
use rayon::prelude::*;
use serde::Serialize;

/// The diffusion of the CBO dynamics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Noise {
    /// σ·√dt·‖x − c‖·ξ: one scale for all coordinates.
    Isotropic,
    /// σ·√dt·(x − c) ⊙ ξ: each coordinate by its own distance (dimension-independent rates).
    Anisotropic,
}

impl Noise {
    /// `isotropic` or `anisotropic`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "isotropic" => Ok(Noise::Isotropic),
            "anisotropic" => Ok(Noise::Anisotropic),
            other => Err(Error::invalid(format!(
                "noise `{other}`: available: isotropic, anisotropic"
            ))),
        }
    }
}

/// Settings of one CBO run; the defaults are CBXpy's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CboConfig {
    /// Particles N.
    pub particles: usize,
    pub dt: f64,
    /// Drift strength λ.
    pub lambda: f64,
    /// Diffusion strength σ.
    pub sigma: f64,
    /// Initial inverse temperature α of the consensus weights.
    pub alpha: f64,
    /// α is multiplied by this after every step (CBXpy's default scheduler: 1.05; 1 keeps it fixed) ...
    pub alpha_factor: f64,
    /// ... up to this value.
    pub alpha_max: f64,
    pub noise: Noise,
    /// Particles in the mini-batch the consensus is computed from each step (all when `None`). Batches walk through
    /// a random permutation of the particles, drawing a new one when fewer than `batch` are left (CBXpy's
    /// `resample`).
    pub batch: Option<usize>,
    /// With a batch: only the batch's particles move (CBXpy's default `partial=True`), or all of them.
    pub partial: bool,
    pub max_iters: u64,
    /// Initial particles are uniform in [lo, hi]^d.
    pub init: (f64, f64),
}

impl Default for CboConfig {
    fn default() -> Self {
        CboConfig {
            particles: 20,
            dt: 0.01,
            lambda: 1.0,
            sigma: 5.1,
            alpha: 1.0,
            alpha_factor: 1.05,
            alpha_max: 1e5,
            noise: Noise::Isotropic,
            batch: None,
            partial: true,
            max_iters: 1000,
            init: (-1.0, 1.0),
        }
    }
}

impl CboConfig {
    /// Checks every setting.
    pub fn validate(&self, dim: usize) -> Result<()> {
        let bad = |m: String| Err(Error::invalid(m));
        if dim == 0 {
            return bad("the dimension must be at least 1".into());
        }
        if self.particles < 2 {
            return bad(format!("particles={} must be at least 2", self.particles));
        }
        for (name, v) in [
            ("dt", self.dt),
            ("lambda", self.lambda),
            ("alpha_factor", self.alpha_factor),
            ("alpha_max", self.alpha_max),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(format!("{name}={v} must be a positive number"));
            }
        }
        for (name, v) in [("sigma", self.sigma), ("alpha", self.alpha)] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(format!("{name}={v} must be a non-negative number"));
            }
        }
        if let Some(m) = self.batch {
            if m == 0 || m > self.particles {
                return bad(format!(
                    "batch={m} must be between 1 and particles={}",
                    self.particles
                ));
            }
        }
        let (lo, hi) = self.init;
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return bad(format!(
                "the initial box [{lo}, {hi}] is empty or not finite"
            ));
        }
        if self.max_iters == 0 {
            return bad("max_iters must be at least 1".into());
        }
        Ok(())
    }
}

/// The outcome of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CboResult {
    /// The final consensus point and its value.
    pub x: Vec<f64>,
    pub f: f64,
    /// The best particle evaluated during the run.
    pub best_x: Vec<f64>,
    pub best_f: f64,
    pub iterations: u64,
    /// Objective evaluations (including the final consensus point's).
    pub evaluations: u64,
    /// α at the end.
    pub alpha: f64,
}

/// The consensus point of `points` (rows of length `dim`) with values `values`: the α-softmin-weighted mean.
/// Points whose value is +∞ get weight 0 (unless all are +∞: then every point counts equally).
pub fn consensus(points: &[f64], values: &[f64], dim: usize, alpha: f64, out: &mut [f64]) {
    let log_w = |v: f64| if alpha == 0.0 { 0.0 } else { -alpha * v };
    let m = values
        .iter()
        .map(|&v| log_w(v))
        .fold(f64::NEG_INFINITY, f64::max);
    let m_finite = m.is_finite();
    out.iter_mut().for_each(|c| *c = 0.0);
    let mut total = 0.0;
    for (row, v) in points.chunks_exact(dim).zip(values) {
        // Below e^-746 the weight is 0 in f64; libm's exp takes a slow path to say so.
        let lw = log_w(*v) - m;
        let w = if !m_finite {
            1.0
        } else if lw < -746.0 {
            0.0
        } else {
            lw.exp()
        };
        total += w;
        out.iter_mut().zip(row).for_each(|(c, x)| *c += w * x);
    }
    out.iter_mut().for_each(|c| *c /= total);
}

/// Evaluates `f`, turning NaN into +∞ (a NaN must not win the consensus) and counting the call.
fn value(f: &(dyn Fn(&[f64]) -> f64 + Sync), x: &[f64], evals: &mut u64) -> f64 {
    *evals += 1;
    let v = f(x);
    if v.is_nan() {
        f64::INFINITY
    } else {
        v
    }
}

/// One CBO run of `f` in `dim` dimensions; `run` selects the random stream (same `(seed, run)`, same result).
pub fn cbo_seeded(
    f: &(dyn Fn(&[f64]) -> f64 + Sync),
    dim: usize,
    cfg: &CboConfig,
    seed: u64,
    run: u64,
) -> Result<CboResult> {
    cfg.validate(dim)?;
    let mut rng = rng_for(seed, Stream::Solver, run);
    let n = cfg.particles;
    let (lo, hi) = cfg.init;
    let mut x: Vec<f64> = (0..n * dim).map(|_| rng.gen_range(lo..hi)).collect();
    let m = cfg.batch.unwrap_or(n);
    let mut batch_x = vec![0.0; m * dim];
    let mut batch_f = vec![0.0; m];
    let mut c = vec![0.0; dim];
    let mut alpha = cfg.alpha;
    let mut evals = 0u64;
    let (mut best_x, mut best_f) = (x[..dim].to_vec(), f64::INFINITY);
    let sqrt_dt = cfg.dt.sqrt();
    let mut noise = vec![0.0; n * dim];
    let (mut order, mut cursor) = ((0..n).collect::<Vec<usize>>(), n);
    for _ in 0..cfg.max_iters {
        let idx: &[usize] = if m == n {
            &order
        } else {
            if cursor + m > n {
                order = permutation(n, &mut rng);
                cursor = 0;
            }
            cursor += m;
            &order[cursor - m..cursor]
        };
        for (k, &i) in idx.iter().enumerate() {
            let xi = &x[i * dim..(i + 1) * dim];
            batch_x[k * dim..(k + 1) * dim].copy_from_slice(xi);
            batch_f[k] = value(f, xi, &mut evals);
            if batch_f[k] < best_f {
                best_f = batch_f[k];
                best_x.copy_from_slice(xi);
            }
        }
        consensus(&batch_x, &batch_f, dim, alpha, &mut c);
        if m == n || !cfg.partial {
            step_particles(&mut x, &c, cfg, sqrt_dt, &mut rng, &mut noise);
        } else {
            for &i in idx {
                step_particles(
                    &mut x[i * dim..(i + 1) * dim],
                    &c,
                    cfg,
                    sqrt_dt,
                    &mut rng,
                    &mut noise,
                );
            }
        }
        alpha = (alpha * cfg.alpha_factor).min(cfg.alpha_max.max(cfg.alpha));
    }
    let fc = value(f, &c, &mut evals);
    Ok(CboResult {
        f: fc,
        x: c,
        best_x,
        best_f,
        iterations: cfg.max_iters,
        evaluations: evals,
        alpha,
    })
}

/// The drift and diffusion step of every particle towards consensus `c`; `noise` is scratch of at least
/// `x.len()`, filled with σ√dt·ξ by the block ziggurat.
fn step_particles(
    x: &mut [f64],
    c: &[f64],
    cfg: &CboConfig,
    sqrt_dt: f64,
    rng: &mut Rng,
    noise: &mut [f64],
) {
    let dim = c.len();
    let drift = cfg.lambda * cfg.dt;
    let noise = &mut noise[..x.len()];
    fill_scaled_normals(rng, cfg.sigma * sqrt_dt, noise);
    for (row, z) in x.chunks_exact_mut(dim).zip(noise.chunks_exact(dim)) {
        match cfg.noise {
            Noise::Anisotropic => {
                for ((xj, cj), z) in row.iter_mut().zip(c).zip(z) {
                    let diff = *xj - cj;
                    *xj -= drift * diff - diff * z;
                }
            }
            Noise::Isotropic => {
                let dist = row
                    .iter()
                    .zip(c)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f64>()
                    .sqrt();
                for ((xj, cj), z) in row.iter_mut().zip(c).zip(z) {
                    *xj -= drift * (*xj - cj) - dist * z;
                }
            }
        }
    }
}

/// One CBO run with run index 0 of `seed`.
pub fn cbo(
    f: &(dyn Fn(&[f64]) -> f64 + Sync),
    dim: usize,
    cfg: &CboConfig,
    seed: u64,
) -> Result<CboResult> {
    cbo_seeded(f, dim, cfg, seed, 0)
}

/// `runs` independent runs in parallel (run r uses stream r of `seed`).
pub fn cbo_runs(
    f: &(dyn Fn(&[f64]) -> f64 + Sync),
    dim: usize,
    cfg: &CboConfig,
    seed: u64,
    runs: u64,
) -> Result<Vec<CboResult>> {
    cfg.validate(dim)?;
    // Each run in flight holds its particles, their noise and a few scratch copies (f64).
    let in_flight = (rayon::current_num_threads() as f64).min(runs as f64);
    crate::memory::check(
        &format!(
            "{runs} CBO runs of {} particles in dimension {dim}",
            cfg.particles
        ),
        in_flight * cfg.particles as f64 * dim as f64 * 8.0 * 6.0,
        "use fewer particles",
    )?;
    (0..runs)
        .into_par_iter()
        .map(|r| cbo_seeded(f, dim, cfg, seed, r))
        .collect()
}

/// Settings of consensus hopping (P23's scheme).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HoppingConfig {
    /// Samples drawn around the current iterate each step.
    pub samples: usize,
    pub alpha: f64,
    /// Initial spread σ of the samples ...
    pub sigma: f64,
    /// ... multiplied by `shrink` every `shrink_every` steps.
    pub shrink: f64,
    pub shrink_every: u64,
    pub max_iters: u64,
}

impl Default for HoppingConfig {
    fn default() -> Self {
        HoppingConfig {
            samples: 200,
            alpha: 0.05,
            sigma: 1.0,
            shrink: 0.98,
            shrink_every: 10,
            max_iters: 2000,
        }
    }
}

/// Consensus hopping from `x0`: x_{k+1} = c_α({x_k + σ_k ξ_i}), i = 1..samples, σ_k shrinking geometrically.
pub fn consensus_hopping(
    f: &(dyn Fn(&[f64]) -> f64 + Sync),
    x0: &[f64],
    cfg: &HoppingConfig,
    seed: u64,
    run: u64,
) -> Result<CboResult> {
    let dim = x0.len();
    if dim == 0 || cfg.samples < 1 || cfg.max_iters == 0 || cfg.shrink_every == 0 {
        return Err(Error::invalid(
            "consensus hopping needs a point, at least one sample, max_iters >= 1 and shrink_every >= 1",
        ));
    }
    crate::memory::check(
        &format!(
            "consensus hopping with {} samples in dimension {dim}",
            cfg.samples
        ),
        cfg.samples as f64 * dim as f64 * 8.0 * 3.0 * rayon::current_num_threads() as f64,
        "draw fewer samples",
    )?;
    if !(cfg.sigma > 0.0 && cfg.shrink > 0.0 && cfg.shrink <= 1.0 && cfg.alpha >= 0.0) {
        return Err(Error::invalid(format!(
            "consensus hopping: sigma={} must be positive, shrink={} in (0, 1], alpha={} non-negative",
            cfg.sigma, cfg.shrink, cfg.alpha
        )));
    }
    let mut rng = rng_for(seed, Stream::Solver, run);
    let mut x = x0.to_vec();
    let mut sigma = cfg.sigma;
    let mut evals = 0u64;
    let mut samples = vec![0.0; cfg.samples * dim];
    let mut values = vec![0.0; cfg.samples];
    let (mut best_x, mut best_f) = (x.clone(), f64::INFINITY);
    for k in 0..cfg.max_iters {
        fill_scaled_normals(&mut rng, sigma, &mut samples);
        for (row, v) in samples.chunks_exact_mut(dim).zip(values.iter_mut()) {
            row.iter_mut().zip(&x).for_each(|(s, xj)| *s += xj);
            *v = value(f, row, &mut evals);
            if *v < best_f {
                best_f = *v;
                best_x.copy_from_slice(row);
            }
        }
        consensus(&samples, &values, dim, cfg.alpha, &mut x);
        if (k + 1) % cfg.shrink_every == 0 {
            sigma *= cfg.shrink;
        }
    }
    let fx = value(f, &x, &mut evals);
    Ok(CboResult {
        f: fx,
        x,
        best_x,
        best_f,
        iterations: cfg.max_iters,
        evaluations: evals,
        alpha: cfg.alpha,
    })
}

/// ‖x − x*‖_∞ < tol: CBXpy's success criterion (tol 0.25).
pub fn is_success(x: &[f64], minimiser: &[f64], tol: f64) -> bool {
    x.iter().zip(minimiser).all(|(a, b)| (a - b).abs() < tol)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consensus_is_a_stable_softmin() {
        let pts = [0.0, 0.0, 1.0, 1.0, 2.0, 2.0];
        let mut c = [0.0; 2];
        // Huge α: the best point exactly, without overflow.
        consensus(&pts, &[5.0, 1.0, 3.0], 2, 1e6, &mut c);
        assert_eq!(c, [1.0, 1.0]);
        // α = 0: the mean.
        consensus(&pts, &[5.0, 1.0, 3.0], 2, 0.0, &mut c);
        assert_eq!(c, [1.0, 1.0]);
        consensus(&pts, &[0.0, f64::INFINITY, 0.0], 2, 1.0, &mut c);
        assert_eq!(c, [1.0, 1.0]);
        consensus(&pts, &[f64::INFINITY; 3], 2, 0.0, &mut c);
        assert_eq!(c, [1.0, 1.0]);
        consensus(&pts, &[f64::INFINITY; 3], 2, 5.0, &mut c);
        assert_eq!(c, [1.0, 1.0]);
    }

    #[test]
    fn same_seed_same_result_and_validation() {
        let f = |x: &[f64]| x.iter().map(|v| v * v).sum::<f64>();
        let cfg = CboConfig {
            batch: Some(10),
            max_iters: 200,
            ..CboConfig::default()
        };
        assert_eq!(cbo(&f, 4, &cfg, 7).unwrap(), cbo(&f, 4, &cfg, 7).unwrap());
        assert_ne!(cbo(&f, 4, &cfg, 7).unwrap(), cbo(&f, 4, &cfg, 8).unwrap());
        for (bad, needle) in [
            (
                CboConfig {
                    particles: 1,
                    ..cfg.clone()
                },
                "particles=1",
            ),
            (
                CboConfig {
                    dt: 0.0,
                    ..cfg.clone()
                },
                "dt=0",
            ),
            (
                CboConfig {
                    sigma: f64::NAN,
                    ..cfg.clone()
                },
                "sigma=NaN",
            ),
            (
                CboConfig {
                    batch: Some(30),
                    ..cfg.clone()
                },
                "batch=30",
            ),
            (
                CboConfig {
                    init: (1.0, -1.0),
                    ..cfg.clone()
                },
                "empty",
            ),
        ] {
            let e = cbo(&f, 4, &bad, 0).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        assert!(cbo(&f, 0, &cfg, 0).is_err());
    }

    #[test]
    fn partial_batches_move_only_their_particles() {
        let f = |x: &[f64]| x[0] * x[0];
        let cfg = CboConfig {
            particles: 10,
            batch: Some(3),
            max_iters: 5,
            ..CboConfig::default()
        };
        let part = cbo(&f, 1, &cfg, 0).unwrap();
        assert_eq!(part.evaluations, 5 * 3 + 1);
        let all = cbo(
            &f,
            1,
            &CboConfig {
                partial: false,
                ..cfg.clone()
            },
            0,
        )
        .unwrap();
        assert_eq!(all.evaluations, 5 * 3 + 1);
        assert_ne!(part.x, all.x);
    }

    #[test]
    fn counts_evaluations_and_survives_nan() {
        let f = |x: &[f64]| if x[0] > 0.5 { f64::NAN } else { x[0] * x[0] };
        let cfg = CboConfig {
            particles: 8,
            max_iters: 50,
            ..CboConfig::default()
        };
        let r = cbo(&f, 1, &cfg, 0).unwrap();
        assert_eq!(r.evaluations, 8 * 50 + 1);
        assert!(r.x[0].is_finite() && r.best_f.is_finite());
    }
}
