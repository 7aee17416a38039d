//! Loss sequences of the stochastically extended adversarial (SEA) model (Sachs et al. 2022; P32): at round t
//! nature fixes a distribution D_t, the loss f_t is drawn from it, and F_t = E f_t. The stochastic variance
//! σ_t² = sup_x E‖∇f_t(x) − ∇F_t(x)‖² and the adversarial variation Σ_t² = sup_x ‖∇F_t(x) − ∇F_{t−1}(x)‖² are
//! set by two knobs, `sigma` and `Sigma`, and accumulated exactly where they have a closed form.
//!
//! Losses:
//! - `lsq`: f_t(x) = ½ Σᵢ hᵢ (xᵢ − z_{t,i})², a least-squares loss with a fixed diagonal design hᵢ = (i−1)/(d−1)
//!   (convex and 1-smooth, not strongly convex), on the ball of radius D;
//! - `ridge`: the same plus λ/2 ‖x‖² (λ-strongly convex);
//! - `logloss`: f_t(x) = −ln⟨r_t, x⟩ on the simplex (exp-concave), returns r_t > 0.
//!
//! Targets z_t = μ_t + σ ξ_t (ξ_t standard normal) and returns r_t = max(r_min, r̄ + (s_t Σ) e' + σ ξ_t) around a
//! mean whose drift s_t ∈ {−1, +1} is `zero` (always +1), `periodic` (flips every `period` rounds) or
//! `adversarial` (chosen after the learner commits to x_t, against it: s_t = −sign⟨x_t − c, e⟩).

use crate::rng::{fill_normals, Fast, Stream};
use crate::{Error, Result, Spec};
use serde::Serialize;

/// The loss family.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SeaLoss {
    Lsq,
    Ridge { lambda: f64 },
    LogLoss,
}

/// How the mean moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Drift {
    Zero,
    Periodic { period: u64 },
    Adversarial,
}

/// A SEA sequence: loss, noise level σ, drift amplitude Σ, drift kind, dimension, domain radius (ball losses).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeaConfig {
    pub loss: SeaLoss,
    pub sigma: f64,
    #[serde(rename = "Sigma")]
    pub big_sigma: f64,
    pub drift: Drift,
    pub dim: usize,
    pub radius: f64,
}

impl Default for SeaConfig {
    fn default() -> Self {
        SeaConfig {
            loss: SeaLoss::Lsq,
            sigma: 1.0,
            big_sigma: 1.0,
            drift: Drift::Adversarial,
            dim: 10,
            radius: 1.0,
        }
    }
}

/// The largest dimension a sequence may have.
pub const MAX_DIM: usize = 1_000_000;

impl SeaConfig {
    /// From `sea:loss=lsq|ridge|logloss,sigma=..,Sigma=..,drift=zero|periodic|adversarial,period=..,dim=..,radius=..,lambda=..`.
    pub fn from_spec(spec: &mut Spec) -> Result<Self> {
        if spec.name != "sea" {
            return Err(crate::spec::unknown_name("sequence", &spec.name, &["sea"]));
        }
        let d = SeaConfig::default();
        let loss = match spec.string("loss", "lsq").as_str() {
            "lsq" => SeaLoss::Lsq,
            "ridge" => SeaLoss::Ridge {
                lambda: spec.f64("lambda", 0.1)?,
            },
            "logloss" => SeaLoss::LogLoss,
            other => {
                return Err(crate::spec::unknown_name(
                    "SEA loss",
                    other,
                    &["lsq", "ridge", "logloss"],
                ))
            }
        };
        let drift = match spec.string("drift", "adversarial").as_str() {
            "zero" => Drift::Zero,
            "periodic" => Drift::Periodic {
                period: spec.usize("period", 50)? as u64,
            },
            "adversarial" => Drift::Adversarial,
            other => {
                return Err(crate::spec::unknown_name(
                    "drift",
                    other,
                    &["zero", "periodic", "adversarial"],
                ))
            }
        };
        let cfg = SeaConfig {
            loss,
            sigma: spec.f64("sigma", d.sigma)?,
            big_sigma: spec.f64("Sigma", d.big_sigma)?,
            drift,
            dim: spec.usize("dim", d.dim)?,
            radius: spec.f64("radius", d.radius)?,
        };
        spec.finish()?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Checks every value.
    pub fn check(&self) -> Result<()> {
        if !(2..=MAX_DIM).contains(&self.dim) {
            return Err(Error::invalid(format!(
                "sea: dim must be in 2..={MAX_DIM}, got {}",
                self.dim
            )));
        }
        for (name, v) in [("sigma", self.sigma), ("Sigma", self.big_sigma)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::invalid(format!(
                    "sea: {name} must be finite and >= 0, got {v}"
                )));
            }
        }
        if !(self.radius.is_finite() && self.radius > 0.0) {
            return Err(Error::invalid(format!(
                "sea: radius must be > 0, got {}",
                self.radius
            )));
        }
        if let SeaLoss::Ridge { lambda } = self.loss {
            if !(lambda.is_finite() && lambda > 0.0) {
                return Err(Error::invalid(format!(
                    "sea: ridge needs lambda > 0, got {lambda}"
                )));
            }
        }
        if let Drift::Periodic { period } = self.drift {
            if period == 0 {
                return Err(Error::invalid("sea: period must be >= 1"));
            }
        }
        Ok(())
    }

    /// Whether the losses live on the simplex (log loss) rather than the ball.
    pub fn on_simplex(&self) -> bool {
        self.loss == SeaLoss::LogLoss
    }

    /// The strong-convexity modulus of F_t (0 if none).
    pub fn strong_convexity(&self) -> f64 {
        match self.loss {
            SeaLoss::Ridge { lambda } => lambda,
            _ => 0.0,
        }
    }
}

/// The smallest return of the log loss.
pub const MIN_RETURN: f64 = 0.05;

/// One round's loss: the target z_t (least squares) or the return vector r_t (log loss).
#[derive(Debug, Clone)]
pub struct Round {
    pub point: Vec<f64>,
}

/// A SEA sequence being played: draws f_t after the learner's x_t, and accumulates σ²_{1:T} and Σ²_{1:T}.
#[derive(Debug, Clone)]
pub struct Sea {
    pub cfg: SeaConfig,
    /// The diagonal design hᵢ (least squares).
    h: Vec<f64>,
    /// The drift direction e (unit norm) and the centre c of the means.
    e: Vec<f64>,
    centre: Vec<f64>,
    rng: Fast,
    t: u64,
    /// Σ hᵢ² and Σ (hᵢ eᵢ)², for σ_t² and Σ_t².
    hh: f64,
    he2: f64,
    prev_sign: f64,
    /// Σ_t σ_t²: exact for the least-squares losses (σ² Σ hᵢ² per round); for the log loss the nominal σ² d.
    pub sigma2_sum: f64,
    /// Σ_t Σ_t²: exact for the least-squares losses; for the log loss the nominal size of the mean's jumps.
    pub variation_sum: f64,
}

impl Sea {
    /// The sequence of seed `seed`.
    pub fn new(cfg: SeaConfig, seed: u64) -> Result<Self> {
        cfg.check()?;
        let d = cfg.dim;
        let (h, e, centre) = if cfg.on_simplex() {
            // Returns around 1, the drift moving weight between the two halves of the assets.
            let e: Vec<f64> = (0..d)
                .map(|i| if i < d / 2 { 1.0 } else { -1.0 } / (d as f64).sqrt())
                .collect();
            (vec![1.0; d], e, vec![1.0; d])
        } else {
            let h = (0..d).map(|i| i as f64 / (d - 1) as f64).collect();
            let e = vec![1.0 / (d as f64).sqrt(); d];
            // The centre of the means sits at half the radius along e.
            let centre = e.iter().map(|v| 0.5 * cfg.radius * v).collect();
            (h, e, centre)
        };
        let hh = h.iter().map(|v: &f64| v * v).sum();
        let he2 = h
            .iter()
            .zip(&e)
            .map(|(h, e): (&f64, &f64)| (h * e) * (h * e))
            .sum();
        Ok(Sea {
            cfg,
            h,
            e,
            centre,
            hh,
            he2,
            rng: Fast::for_stream(seed, Stream::Data, 32),
            t: 0,
            prev_sign: 1.0,
            sigma2_sum: 0.0,
            variation_sum: 0.0,
        })
    }

    /// The diagonal design.
    pub fn design(&self) -> &[f64] {
        &self.h
    }

    /// Draws f_t after the learner committed to `x` (the adversarial drift looks at it), into `round`.
    pub fn next(&mut self, x: &[f64], round: &mut Round) {
        self.t += 1;
        let sign = match self.cfg.drift {
            Drift::Zero => 1.0,
            Drift::Periodic { period } => {
                if ((self.t - 1) / period).is_multiple_of(2) {
                    1.0
                } else {
                    -1.0
                }
            }
            Drift::Adversarial => {
                let side: f64 = x
                    .iter()
                    .zip(&self.centre)
                    .zip(&self.e)
                    .map(|((xi, ci), ei)| (xi - ci) * ei)
                    .sum();
                if side > 0.0 {
                    -1.0
                } else {
                    1.0
                }
            }
        };
        let amp = self.cfg.big_sigma * sign;
        let (sigma, d) = (self.cfg.sigma, self.cfg.dim);
        round.point.resize(d, 0.0);
        if self.cfg.on_simplex() {
            fill_normals(&mut self.rng, &mut round.point);
            for i in 0..d {
                let r = self.centre[i] + 0.5 * amp * self.e[i] + sigma * round.point[i];
                round.point[i] = r.max(MIN_RETURN);
            }
        } else {
            fill_normals(&mut self.rng, &mut round.point);
            for i in 0..d {
                round.point[i] = self.centre[i] + amp * self.e[i] + sigma * round.point[i];
            }
        }
        // σ_t² = σ² Σ hᵢ² (gradient noise H σ ξ); Σ_t² = ‖H (μ_t − μ_{t−1})‖² (0 at t = 1: F_0 is taken as F_1).
        self.sigma2_sum += sigma * sigma * self.hh;
        if self.t > 1 && sign != self.prev_sign {
            let jump = if self.cfg.on_simplex() { 1.0 } else { 2.0 } * self.cfg.big_sigma;
            self.variation_sum += jump * jump * self.he2;
        }
        self.prev_sign = sign;
    }

    /// f_t(x).
    #[inline]
    pub fn loss(&self, round: &Round, x: &[f64]) -> f64 {
        match self.cfg.loss {
            SeaLoss::LogLoss => -dot(&round.point, x).ln(),
            SeaLoss::Lsq | SeaLoss::Ridge { .. } => {
                let mut s = 0.0;
                for ((hi, xi), zi) in self.h.iter().zip(x).zip(&round.point) {
                    s += hi * (xi - zi) * (xi - zi);
                }
                0.5 * s + 0.5 * self.cfg.strong_convexity() * dot(x, x)
            }
        }
    }

    /// f_t(x), with ∇f_t(x) written to `g`, in one pass.
    #[inline]
    pub fn loss_and_gradient(&self, round: &Round, x: &[f64], g: &mut [f64]) -> f64 {
        match self.cfg.loss {
            SeaLoss::LogLoss => {
                self.gradient(round, x, g);
                self.loss(round, x)
            }
            SeaLoss::Lsq | SeaLoss::Ridge { .. } => {
                let lambda = self.cfg.strong_convexity();
                let (mut s, mut xx) = (0.0, 0.0);
                for (((gi, hi), xi), zi) in g.iter_mut().zip(&self.h).zip(x).zip(&round.point) {
                    let r = xi - zi;
                    s += hi * r * r;
                    xx += xi * xi;
                    *gi = hi * r + lambda * xi;
                }
                0.5 * s + 0.5 * lambda * xx
            }
        }
    }

    /// ∇f_t(x) into `g`.
    #[inline]
    pub fn gradient(&self, round: &Round, x: &[f64], g: &mut [f64]) {
        match self.cfg.loss {
            SeaLoss::LogLoss => {
                let s = -1.0 / dot(&round.point, x);
                for (gi, ri) in g.iter_mut().zip(&round.point) {
                    *gi = s * ri;
                }
            }
            SeaLoss::Lsq | SeaLoss::Ridge { .. } => {
                let lambda = self.cfg.strong_convexity();
                for (((gi, hi), xi), zi) in g.iter_mut().zip(&self.h).zip(x).zip(&round.point) {
                    *gi = hi * (xi - zi) + lambda * xi;
                }
            }
        }
    }
}

#[inline]
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The best fixed decision in hindsight for the least-squares losses: min over the ball of
/// Σ_t ½ Σᵢ hᵢ (xᵢ − z_{t,i})² + λ/2 ‖x‖², from the sums S1 = Σ z_t, S2 = Σ z_t² and T. Returns (x*, Σ_t f_t(x*)).
pub fn lsq_comparator(
    h: &[f64],
    lambda: f64,
    radius: f64,
    s1: &[f64],
    s2: &[f64],
    t: u64,
) -> (Vec<f64>, f64) {
    let tf = t as f64;
    // Stationarity with a ball multiplier ν >= 0: xᵢ = hᵢ S1ᵢ / (T (hᵢ + λ + ν)).
    let x_of = |nu: f64| -> Vec<f64> {
        h.iter()
            .zip(s1)
            .map(|(&hi, &si)| {
                let den = tf * (hi + lambda + nu);
                if den > 0.0 {
                    hi * si / den
                } else {
                    0.0
                }
            })
            .collect()
    };
    let norm = |x: &[f64]| dot(x, x).sqrt();
    let mut x = x_of(0.0);
    if norm(&x) > radius {
        let (mut lo, mut hi) = (0.0, 1.0);
        while norm(&x_of(hi)) > radius {
            hi *= 2.0;
        }
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if norm(&x_of(mid)) > radius {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        x = x_of(hi);
    }
    let mut total = 0.5 * lambda * tf * dot(&x, &x);
    for i in 0..h.len() {
        total += 0.5 * h[i] * (tf * x[i] * x[i] - 2.0 * x[i] * s1[i] + s2[i]);
    }
    (x, total)
}

/// The best fixed portfolio in hindsight for the log losses: min over the simplex of −Σ_t ln⟨r_t, x⟩ by
/// projected gradient with Armijo backtracking (the objective is smooth on the region where every ⟨r_t, x⟩ ≥
/// `MIN_RETURN`), run until the projected-gradient step moves less than 1e-12. Returns (x*, the minimum).
pub fn logloss_comparator(returns: &[f64], d: usize) -> (Vec<f64>, f64) {
    let value =
        |x: &[f64]| -> f64 { -returns.chunks_exact(d).map(|r| dot(r, x).ln()).sum::<f64>() };
    let grad = |x: &[f64], g: &mut [f64]| {
        g.iter_mut().for_each(|v| *v = 0.0);
        for r in returns.chunks_exact(d) {
            let s = 1.0 / dot(r, x);
            for (gi, ri) in g.iter_mut().zip(r) {
                *gi -= s * ri;
            }
        }
    };
    let mut x = vec![1.0 / d as f64; d];
    let mut g = vec![0.0; d];
    let mut fx = value(&x);
    let mut step = 1.0 / returns.len().max(1) as f64;
    for _ in 0..20_000 {
        grad(&x, &mut g);
        let mut moved = 0.0;
        let mut accepted = false;
        for _ in 0..60 {
            let mut y: Vec<f64> = x.iter().zip(&g).map(|(xi, gi)| xi - step * gi).collect();
            super::geometry::project_simplex(&mut y);
            let dx: Vec<f64> = y.iter().zip(&x).map(|(a, b)| a - b).collect();
            // Every return is >= MIN_RETURN > 0, so ⟨r_t, y⟩ > 0 on the simplex.
            let fy = value(&y);
            if fy.is_finite() && fy <= fx + dot(&g, &dx) + 0.5 / step * dot(&dx, &dx) {
                moved = dot(&dx, &dx).sqrt();
                x = y;
                fx = fy;
                accepted = true;
                break;
            }
            step *= 0.5;
        }
        if !accepted || moved < 1e-12 {
            break;
        }
        step *= 2.0;
    }
    (x, fx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsq_comparator_is_the_constrained_minimizer() {
        let h = [0.0, 0.5, 1.0];
        let zs = [[3.0, 1.0, 2.0], [1.0, 2.0, 2.5], [0.0, 0.5, -1.0]];
        let (mut s1, mut s2) = (vec![0.0; 3], vec![0.0; 3]);
        for z in &zs {
            for i in 0..3 {
                s1[i] += z[i];
                s2[i] += z[i] * z[i];
            }
        }
        let total = |x: &[f64], lambda: f64| -> f64 {
            zs.iter()
                .map(|z| {
                    (0..3)
                        .map(|i| 0.5 * h[i] * (x[i] - z[i]).powi(2))
                        .sum::<f64>()
                        + 0.5 * lambda * dot(x, x)
                })
                .sum()
        };
        let mut rng = crate::rng::rng_for(1, Stream::Probe, 0);
        for (lambda, radius) in [(0.0, 10.0), (0.0, 0.5), (0.3, 0.5)] {
            let (x, v) = lsq_comparator(&h, lambda, radius, &s1, &s2, 3);
            assert!((total(&x, lambda) - v).abs() < 1e-12);
            assert!(dot(&x, &x).sqrt() <= radius + 1e-12);
            for _ in 0..2000 {
                let mut y: Vec<f64> = x
                    .iter()
                    .map(|xi| xi + 0.2 * crate::rng::normal(&mut rng))
                    .collect();
                super::super::geometry::project(
                    super::super::geometry::Domain::Ball { radius },
                    &mut y,
                );
                assert!(total(&y, lambda) >= v - 1e-10);
            }
        }
    }

    #[test]
    fn logloss_comparator_is_optimal_on_the_simplex() {
        let mut rng = crate::rng::rng_for(2, Stream::Probe, 0);
        let d = 4;
        let r: Vec<f64> = (0..200 * d)
            .map(|_| (1.0 + 0.3 * crate::rng::normal(&mut rng)).max(MIN_RETURN))
            .collect();
        let (x, v) = logloss_comparator(&r, d);
        let value =
            |x: &[f64]| -> f64 { -r.chunks_exact(d).map(|ri| dot(ri, x).ln()).sum::<f64>() };
        assert!((value(&x) - v).abs() < 1e-9);
        for _ in 0..3000 {
            let mut y: Vec<f64> = x
                .iter()
                .map(|xi| xi + 0.05 * crate::rng::normal(&mut rng))
                .collect();
            super::super::geometry::project_simplex(&mut y);
            assert!(value(&y) >= v - 1e-8, "{} < {v}", value(&y));
        }
    }

    #[test]
    fn bad_sequences_are_refused() {
        for s in [
            "sea:sigma=-1",
            "sea:dim=1",
            "sea:loss=ridge,lambda=0",
            "sea:drift=sideways",
            "sea:loss=hinge",
            "sea:drift=periodic,period=0",
            "sea:colour=red",
        ] {
            assert!(
                SeaConfig::from_spec(&mut Spec::parse(s).unwrap()).is_err(),
                "{s}"
            );
        }
    }
}
