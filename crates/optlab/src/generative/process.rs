//! The forward noising processes of score-based diffusion (Song et al., score_sde): x_t = α(t) x_0 + σ(t) ε on
//! t ∈ [0, 1].
//! - VP: β(t) = β_min + t(β_max − β_min), α(t) = exp(−½∫₀ᵗβ), σ²(t) = 1 − α²(t) (defaults 0.1 and 20);
//! - VE: α = 1, σ(t) = σ_min (σ_max/σ_min)^t (defaults 0.01 and 10; score_sde's σ_max is the largest distance
//!   between data points, about 10 for the 2-D mixtures here).

use crate::{Error, Result, Spec};
use std::fmt;
use std::str::FromStr;

/// A forward SDE dx = f(x, t) dt + g(t) dw with a Gaussian perturbation kernel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Process {
    Vp { beta_min: f64, beta_max: f64 },
    Ve { sigma_min: f64, sigma_max: f64 },
}

impl Default for Process {
    fn default() -> Self {
        Process::Vp {
            beta_min: 0.1,
            beta_max: 20.0,
        }
    }
}

impl Process {
    /// The mean coefficient α(t) of the kernel p(x_t | x_0) = N(α x_0, σ² I).
    pub fn alpha(&self, t: f64) -> f64 {
        match *self {
            Process::Vp { beta_min, beta_max } => {
                (-0.5 * (beta_min * t + 0.5 * (beta_max - beta_min) * t * t)).exp()
            }
            Process::Ve { .. } => 1.0,
        }
    }

    /// The kernel's standard deviation σ(t).
    pub fn sigma(&self, t: f64) -> f64 {
        match *self {
            // σ² = 1 − α² = −expm1(−∫₀ᵗβ), exact for small t.
            Process::Vp { beta_min, beta_max } => {
                (-(-(beta_min * t + 0.5 * (beta_max - beta_min) * t * t)).exp_m1()).sqrt()
            }
            Process::Ve {
                sigma_min,
                sigma_max,
            } => sigma_min * (sigma_max / sigma_min).powf(t),
        }
    }

    /// The drift coefficient: f(x, t) = drift(t)·x (−½β(t) for VP, 0 for VE).
    pub fn drift(&self, t: f64) -> f64 {
        match *self {
            Process::Vp { beta_min, beta_max } => -0.5 * (beta_min + t * (beta_max - beta_min)),
            Process::Ve { .. } => 0.0,
        }
    }

    /// The squared diffusion coefficient g²(t) (β(t) for VP, dσ²/dt for VE).
    pub fn g2(&self, t: f64) -> f64 {
        match *self {
            Process::Vp { beta_min, beta_max } => beta_min + t * (beta_max - beta_min),
            Process::Ve {
                sigma_min,
                sigma_max,
            } => {
                let s = self.sigma(t);
                2.0 * s * s * (sigma_max / sigma_min).ln()
            }
        }
    }

    /// The standard deviation of the prior the reverse process starts from at t = 1 (1 for VP, σ_max for VE).
    pub fn prior_std(&self) -> f64 {
        match *self {
            Process::Vp { .. } => 1.0,
            Process::Ve { sigma_max, .. } => sigma_max,
        }
    }

    /// The smallest time training samples and sampling stops at (score_sde: 1e-3 for VP; 1e-5 for VE).
    pub fn t_min(&self) -> f64 {
        match self {
            Process::Vp { .. } => 1e-3,
            Process::Ve { .. } => 1e-5,
        }
    }

    fn validate(self) -> Result<Self> {
        let ok = match self {
            Process::Vp { beta_min, beta_max } => {
                beta_min.is_finite()
                    && beta_max.is_finite()
                    && beta_min > 0.0
                    && beta_max > beta_min
                    && beta_max <= 1e4
            }
            Process::Ve {
                sigma_min,
                sigma_max,
            } => {
                sigma_min.is_finite()
                    && sigma_max.is_finite()
                    && sigma_min > 0.0
                    && sigma_max > sigma_min
                    && sigma_max <= 1e6
            }
        };
        if ok {
            Ok(self)
        } else {
            Err(Error::invalid(format!(
                "process {self}: needs 0 < beta_min < beta_max <= 1e4 (vp) or 0 < sigma_min < sigma_max <= 1e6 (ve)"
            )))
        }
    }
}

impl fmt::Display for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Process::Vp { beta_min, beta_max } => {
                write!(f, "vp:beta_min={beta_min},beta_max={beta_max}")
            }
            Process::Ve {
                sigma_min,
                sigma_max,
            } => write!(f, "ve:sigma_min={sigma_min},sigma_max={sigma_max}"),
        }
    }
}

impl FromStr for Process {
    type Err = Error;

    /// `vp[:beta_min=0.1,beta_max=20]` or `ve[:sigma_min=0.01,sigma_max=10]`.
    fn from_str(s: &str) -> Result<Self> {
        let mut spec = Spec::parse(s)?;
        let p = match spec.name.as_str() {
            "vp" => Process::Vp {
                beta_min: spec.f64("beta_min", 0.1)?,
                beta_max: spec.f64("beta_max", 20.0)?,
            },
            "ve" => Process::Ve {
                sigma_min: spec.f64("sigma_min", 0.01)?,
                sigma_max: spec.f64("sigma_max", 10.0)?,
            },
            other => return Err(crate::spec::unknown_name("process", other, &["vp", "ve"])),
        };
        spec.finish()?;
        p.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_match_their_sdes() {
        for p in [Process::default(), "ve:sigma_max=5".parse().unwrap()] {
            // d(α)/dt = drift·α and d(σ²)/dt = 2·drift·σ² + g² (the kernel's moments solve the SDE's ODEs).
            for &t in &[0.05, 0.3, 0.7, 0.95] {
                let h = 1e-6;
                let da = (p.alpha(t + h) - p.alpha(t - h)) / (2.0 * h);
                assert!((da - p.drift(t) * p.alpha(t)).abs() < 1e-6, "{p} t={t}");
                let v = |t: f64| p.sigma(t).powi(2);
                let dv = (v(t + h) - v(t - h)) / (2.0 * h);
                let want = 2.0 * p.drift(t) * v(t) + p.g2(t);
                assert!(
                    (dv - want).abs() < 1e-5 * (1.0 + want.abs()),
                    "{p} t={t}: {dv} vs {want}"
                );
            }
        }
        let vp = Process::default();
        assert!((vp.alpha(1.0) - (-0.5f64 * (0.1 + 9.95)).exp()).abs() < 1e-15);
        assert!(("vp:beta_max=0.01".parse::<Process>()).is_err());
        assert!(("ve:sigma_min=0".parse::<Process>()).is_err());
        assert!(("sde".parse::<Process>()).is_err());
    }
}
