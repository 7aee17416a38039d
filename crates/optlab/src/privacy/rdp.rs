//! Rényi-DP accounting of the sampled Gaussian mechanism, as opacus's `RDPAccountant`
//! (`opacus/accountants/rdp.py`, `analysis/rdp.py`, `utils.py`; Mironov, Talwar and Zhang 2019 for log A_α,
//! Balle et al. 2020, Theorem 21, for the conversion to (ε, δ)).
//!
//! ```
//! use optlab::privacy::rdp::RdpAccountant;
//! let mut acc = RdpAccountant::new();
//! acc.compose(1.5, 0.04, 2250)?; // σ, sampling rate q, steps
//! let spent = acc.epsilon(1e-5)?;
//! assert!((spent.epsilon - 7.32911117143).abs() < 1e-9);
//! assert_eq!(spent.order, 3.9);
//! # Ok::<(), optlab::Error>(())
//! ```

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// opacus's `RDPAccountant.DEFAULT_ALPHAS`: 1.1, 1.2, ..., 10.9, then 12, 13, ..., 63.
pub fn default_orders() -> Vec<f64> {
    (1..100)
        .map(|x| 1.0 + f64::from(x) / 10.0)
        .chain((12..64).map(f64::from))
        .collect()
}

/// Where the fractional-order series gives up (far beyond any case it converges on): the order is then
/// reported as infinite RDP, which only makes ε larger (sound).
const MAX_SERIES_TERMS: usize = 1_000_000;

/// opacus's bound on the noise multiplier searched by [`noise_multiplier`].
pub const MAX_SIGMA: f64 = 1e6;

/// log(exp(a) + exp(b)).
fn log_add(a: f64, b: f64) -> f64 {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        return hi;
    }
    (lo - hi).exp().ln_1p() + hi
}

/// log(exp(a) − exp(b)) for a ≥ b; `None` when a < b (the series lost its sign).
fn log_sub(a: f64, b: f64) -> Option<f64> {
    if a < b {
        return None;
    }
    if b == f64::NEG_INFINITY {
        return Some(a);
    }
    if a == b {
        return Some(f64::NEG_INFINITY);
    }
    let d = (a - b).exp_m1();
    Some(if d.is_finite() { d.ln() + b } else { a })
}

/// The generalized binomial coefficient C(α, k) for real α and integer k ≥ 0, by the multiplication formula
/// in the order whose partial products are C(α, 1), C(α, 2), … (no overflow on the way for the orders used).
fn binom(alpha: f64, k: usize) -> f64 {
    let mut v = 1.0f64;
    for m in 1..=k {
        v *= (alpha - (m - 1) as f64) / m as f64;
    }
    v
}

/// log erfc(x), accurate where erfc(x) underflows (x ≳ 26.5) by its asymptotic series.
pub(crate) fn log_erfc(x: f64) -> f64 {
    if x < 26.0 {
        return libm::erfc(x).ln();
    }
    let r = 1.0 / (2.0 * x * x);
    // erfc(x) = exp(-x²)/(x√π) · (1 − r + 3r² − 15r³ + 105r⁴ − …), r = 1/(2x²) ≤ 7.4e-4.
    let series = 1.0 - r + 3.0 * r * r - 15.0 * r.powi(3) + 105.0 * r.powi(4) - 945.0 * r.powi(5);
    -x * x - (x * std::f64::consts::PI.sqrt()).ln() + series.ln()
}

/// log A_α for an integer order (Mironov et al. 2019, Section 3.3).
fn log_a_int(q: f64, sigma: f64, alpha: usize) -> f64 {
    let mut log_a = f64::NEG_INFINITY;
    for i in 0..=alpha {
        let log_coef =
            binom(alpha as f64, i).ln() + i as f64 * q.ln() + (alpha - i) as f64 * (1.0 - q).ln();
        let s = log_coef + (i * i - i) as f64 / (2.0 * sigma * sigma);
        log_a = log_add(log_a, s);
    }
    log_a
}

/// log A_α for a fractional order: the two half-line integrals as series, summed until both terms fall below
/// e⁻³⁰ (as the reference). `None` when the series does not settle.
fn log_a_frac(q: f64, sigma: f64, alpha: f64) -> Option<f64> {
    let (mut log_a0, mut log_a1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    let z0 = sigma * sigma * (1.0 / q - 1.0).ln() + 0.5;
    let s2 = std::f64::consts::SQRT_2 * sigma;
    // C(α, i), updated in place: the same products in the same order as `binom`, without its O(i) loop.
    let mut coef = 1.0f64;
    for i in 0..MAX_SERIES_TERMS {
        let fi = i as f64;
        if i > 0 {
            coef *= (alpha - (i - 1) as f64) / fi;
        }
        let log_coef = coef.abs().ln();
        let j = alpha - fi;
        let log_t0 = log_coef + fi * q.ln() + j * (1.0 - q).ln();
        let log_t1 = log_coef + j * q.ln() + fi * (1.0 - q).ln();
        let log_e0 = 0.5f64.ln() + log_erfc((fi - z0) / s2);
        let log_e1 = 0.5f64.ln() + log_erfc((z0 - j) / s2);
        let log_s0 = log_t0 + (fi * fi - fi) / (2.0 * sigma * sigma) + log_e0;
        let log_s1 = log_t1 + (j * j - j) / (2.0 * sigma * sigma) + log_e1;
        if coef > 0.0 {
            log_a0 = log_add(log_a0, log_s0);
            log_a1 = log_add(log_a1, log_s1);
        } else {
            log_a0 = log_sub(log_a0, log_s0)?;
            log_a1 = log_sub(log_a1, log_s1)?;
        }
        if log_s0.max(log_s1) < -30.0 {
            return Some(log_add(log_a0, log_a1));
        }
    }
    None
}

/// The RDP of one step of the sampled Gaussian mechanism (sampling rate `q`, noise multiplier `sigma`) at
/// `order`; infinite without noise.
pub fn rdp_step(q: f64, sigma: f64, order: f64) -> f64 {
    if q == 0.0 {
        return 0.0;
    }
    if sigma == 0.0 {
        return f64::INFINITY;
    }
    if q == 1.0 {
        return order / (2.0 * sigma * sigma);
    }
    if order.is_infinite() {
        return f64::INFINITY;
    }
    let log_a = if order.fract() == 0.0 {
        Some(log_a_int(q, sigma, order as usize))
    } else {
        log_a_frac(q, sigma, order)
    };
    log_a.map_or(f64::INFINITY, |l| l / (order - 1.0))
}

/// `steps` compositions of [`rdp_step`] at each of `orders` (opacus's `compute_rdp`).
pub fn compute_rdp(q: f64, sigma: f64, steps: u64, orders: &[f64]) -> Vec<f64> {
    orders
        .iter()
        .map(|&a| rdp_step(q, sigma, a) * steps as f64)
        .collect()
}

/// An (ε, δ) guarantee and the Rényi order that gave it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spent {
    pub epsilon: f64,
    pub delta: f64,
    /// The order α at which the conversion is tightest (NaN when no order gives a finite ε).
    pub order: f64,
}

/// The smallest ε over `orders` of ε(α) = RDP(α) − (log δ + log α)/(α − 1) + log((α − 1)/α) (Balle et al.
/// 2020), and its order; the first minimum wins ties, as NumPy's `nanargmin`.
pub fn privacy_spent(orders: &[f64], rdp: &[f64], delta: f64) -> Spent {
    let mut best = Spent {
        epsilon: f64::INFINITY,
        delta,
        order: f64::NAN,
    };
    for (&a, &r) in orders.iter().zip(rdp) {
        let eps = r - (delta.ln() + a.ln()) / (a - 1.0) + ((a - 1.0) / a).ln();
        if !eps.is_nan() && (best.order.is_nan() || eps < best.epsilon) {
            best.epsilon = eps;
            best.order = a;
        }
    }
    best
}

fn check_delta(delta: f64) -> Result<()> {
    if !(delta > 0.0 && delta < 1.0) {
        return Err(Error::invalid(format!(
            "delta must lie in (0, 1), got {delta}"
        )));
    }
    Ok(())
}

fn check_mechanism(sigma: f64, q: f64) -> Result<()> {
    if !(sigma.is_finite() && sigma >= 0.0) {
        return Err(Error::invalid(format!(
            "the noise multiplier must be finite and >= 0, got {sigma}"
        )));
    }
    if !(0.0..=1.0).contains(&q) {
        return Err(Error::invalid(format!(
            "the sampling rate q must lie in [0, 1], got {q}"
        )));
    }
    Ok(())
}

/// The privacy spent by a sequence of sampled Gaussian mechanisms: opacus's `RDPAccountant`, whose history
/// merges consecutive steps with equal (σ, q). Its state is this history, saved with a run's checkpoints.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RdpAccountant {
    /// (noise multiplier, sampling rate, steps).
    pub history: Vec<(f64, f64, u64)>,
}

impl RdpAccountant {
    /// An accountant that has spent nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `steps` steps with noise multiplier `sigma` and sampling rate `q`.
    pub fn compose(&mut self, sigma: f64, q: f64, steps: u64) -> Result<()> {
        check_mechanism(sigma, q)?;
        match self.history.last_mut() {
            Some((s, r, n)) if *s == sigma && *r == q => *n += steps,
            _ => self.history.push((sigma, q, steps)),
        }
        Ok(())
    }

    /// Records one step.
    pub fn step(&mut self, sigma: f64, q: f64) -> Result<()> {
        self.compose(sigma, q, 1)
    }

    /// Total steps recorded.
    pub fn steps(&self) -> u64 {
        self.history.iter().map(|h| h.2).sum()
    }

    /// ε at `delta` over opacus's default orders (0 before any step, as opacus).
    pub fn epsilon(&self, delta: f64) -> Result<Spent> {
        self.epsilon_at(delta, &default_orders())
    }

    /// ε at `delta` over the given orders (each > 1).
    pub fn epsilon_at(&self, delta: f64, orders: &[f64]) -> Result<Spent> {
        check_delta(delta)?;
        if let Some(a) = orders.iter().find(|a| a.is_nan() || **a <= 1.0) {
            return Err(Error::invalid(format!("Rényi orders must be > 1, got {a}")));
        }
        if self.history.is_empty() {
            return Ok(Spent {
                epsilon: 0.0,
                delta,
                order: 0.0,
            });
        }
        let mut rdp = vec![0.0; orders.len()];
        for &(sigma, q, steps) in &self.history {
            for (acc, r) in rdp.iter_mut().zip(compute_rdp(q, sigma, steps, orders)) {
                *acc += r;
            }
        }
        Ok(privacy_spent(orders, &rdp, delta))
    }
}

/// The noise multiplier that spends at most `target_epsilon` at `delta` after `steps` steps at sampling rate
/// `q`: opacus's `get_noise_multiplier` (double σ from 20 until ε ≤ target, then bisect until ε is within
/// `tolerance` below the target; returns the upper end, so ε never exceeds the target).
pub fn noise_multiplier(
    target_epsilon: f64,
    delta: f64,
    q: f64,
    steps: u64,
    tolerance: f64,
) -> Result<f64> {
    check_mechanism(0.0, q)?;
    calibrate(target_epsilon, delta, tolerance, |sigma| {
        let mut a = RdpAccountant::new();
        a.compose(sigma, q, steps)?;
        Ok(a)
    })
    .map_err(|e| match e {
        Error::Invalid(m) if m.contains("out of reach") => Error::invalid(format!(
            "epsilon {target_epsilon} at delta {delta} is out of reach for {steps} steps at sampling rate {q}: \
             even a noise multiplier of {MAX_SIGMA:e} spends more (raise epsilon or lower the steps)"
        )),
        e => e,
    })
}

/// The smallest noise scale k (to `tolerance` in ε, never above the target) whose accountant `run(k)` spends at
/// most `target_epsilon` at `delta`, searched as opacus's `get_noise_multiplier` searches σ: double from 20,
/// then bisect. `run` builds the whole run's accountant for scale k (for one mechanism, k is σ; for runs that
/// mix mechanisms, each mechanism's σ is a fixed multiple of k).
pub fn calibrate(
    target_epsilon: f64,
    delta: f64,
    tolerance: f64,
    run: impl Fn(f64) -> Result<RdpAccountant>,
) -> Result<f64> {
    if !(target_epsilon.is_finite() && target_epsilon > 0.0) {
        return Err(Error::invalid(format!(
            "the target epsilon must be finite and > 0, got {target_epsilon}"
        )));
    }
    check_delta(delta)?;
    if tolerance.is_nan() || tolerance <= 0.0 {
        return Err(Error::invalid(format!(
            "the epsilon tolerance must be > 0, got {tolerance}"
        )));
    }
    let eps_of = |k: f64| -> Result<f64> { Ok(run(k)?.epsilon(delta)?.epsilon) };
    let (mut lo, mut hi) = (0.0f64, 10.0f64);
    let mut eps_hi = f64::INFINITY;
    while eps_hi > target_epsilon {
        hi *= 2.0;
        eps_hi = eps_of(hi)?;
        if hi > MAX_SIGMA {
            return Err(Error::invalid(format!(
                "epsilon {target_epsilon} at delta {delta} is out of reach: even a noise scale of {MAX_SIGMA:e} spends more"
            )));
        }
    }
    while target_epsilon - eps_hi > tolerance {
        let mid = (lo + hi) / 2.0;
        let eps = eps_of(mid)?;
        if eps < target_epsilon {
            hi = mid;
            eps_hi = eps;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opacus_golden_values() {
        let mut a = RdpAccountant::new();
        a.compose(1.5, 0.04, 2250).unwrap();
        let s = a.epsilon(1e-5).unwrap();
        assert!((s.epsilon - 7.32911117143).abs() < 1e-9, "{}", s.epsilon);
        assert_eq!(s.order, 3.9);
        let steps_90_epochs = (90.0 / 0.04) as u64;
        let s90 = noise_multiplier(8.0, 1e-5, 0.04, steps_90_epochs, 0.01).unwrap();
        assert_eq!(s90, 1.416015625);
        assert_eq!(
            noise_multiplier(8.0, 1e-5, 0.04, 2000, 0.01).unwrap(),
            1.356201171875
        );
    }

    #[test]
    fn steps_merge_and_limits() {
        let mut a = RdpAccountant::new();
        for _ in 0..3 {
            a.step(1.0, 0.01).unwrap();
        }
        a.step(2.0, 0.01).unwrap();
        assert_eq!(a.history, vec![(1.0, 0.01, 3), (2.0, 0.01, 1)]);
        assert_eq!(a.steps(), 4);
        assert_eq!(RdpAccountant::new().epsilon(1e-5).unwrap().epsilon, 0.0);
        assert_eq!(rdp_step(0.0, 1.0, 2.0), 0.0);
        assert_eq!(rdp_step(0.5, 0.0, 2.0), f64::INFINITY);
        assert_eq!(rdp_step(1.0, 2.0, 3.0), 3.0 / 8.0);
        assert!(a.epsilon(0.0).is_err());
        assert!(a.step(-1.0, 0.1).is_err());
        assert!(a.step(1.0, 1.5).is_err());
        assert!(noise_multiplier(0.0, 1e-5, 0.01, 10, 0.01).is_err());
        assert!(noise_multiplier(1e-9, 1e-5, 1.0, 100000, 0.01).is_err());
    }

    #[test]
    fn log_erfc_is_continuous_across_the_switch() {
        let below = libm::erfc(25.999).ln();
        let above = log_erfc(26.0);
        // d/dx log erfc(x) ≈ −2x near 26: a step of 1e-3 moves it by about 0.052.
        assert!((below - above - 2.0 * 26.0 * 1e-3).abs() < 1e-3);
        assert!((log_erfc(30.0) - libm::erfc(30.0).ln()).abs() < 1e-12 || libm::erfc(30.0) == 0.0);
    }
}
