//! Step-size rules of composite stochastic mirror descent (P06), for round t = 1..T of a horizon T:
//!
//! | rule | η_t | setting |
//! |---|---|---|
//! | `const` | η | any, tuned by hand |
//! | `sqrt_T` | η / T^{1/p} | convex, horizon known (p = 2; p ∈ (1, 2) under p-th-moment noise) |
//! | `sqrt_t` | η / t^{1/p} | convex, anytime |
//! | `linear` | η (T − t + 1) / T^{3/2} | convex Lipschitz, horizon known (linear decay: no log T factor) |
//! | `strong` | η / (μ t) | μ-strongly convex |
//!
//! Every rule is capped at 1/(2L) when a smoothness constant L > 0 is given, as in the paper's smooth cases.
//! The forms follow P06's theorem statements as summarised in `reference/remaining-papers.md`; the exact constants
//! there are tagged unverified, so η is always the user's.

use crate::{Error, Result, Spec};
use std::fmt;

/// How η_t depends on t and T.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StepShape {
    Const,
    /// η / T^{1/p}.
    Horizon {
        p: f64,
    },
    /// η / t^{1/p}.
    Anytime {
        p: f64,
    },
    /// η (T − t + 1) / T^{3/2}.
    Linear,
    /// η / (μ t).
    Strong {
        mu: f64,
    },
}

/// A step-size rule: a shape, the base step η and the optional smoothness cap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepRule {
    pub shape: StepShape,
    pub eta: f64,
    /// L of an L-smooth objective (0: none, no cap).
    pub smooth: f64,
}

impl StepRule {
    /// The rule names, for errors and help.
    pub const NAMES: &'static [&'static str] = &["const", "sqrt_T", "sqrt_t", "linear", "strong"];

    /// Checks the values: η > 0, L >= 0, μ > 0, p ∈ (1, 2].
    pub fn new(shape: StepShape, eta: f64, smooth: f64) -> Result<Self> {
        if !(eta.is_finite() && eta > 0.0) {
            return Err(Error::invalid(format!(
                "step rule: eta must be finite and > 0, got {eta}"
            )));
        }
        if !(smooth.is_finite() && smooth >= 0.0) {
            return Err(Error::invalid(format!(
                "step rule: smooth (L) must be finite and >= 0, got {smooth}"
            )));
        }
        match shape {
            StepShape::Horizon { p } | StepShape::Anytime { p } if !(p > 1.0 && p <= 2.0) => {
                return Err(Error::invalid(format!(
                    "step rule: the noise moment p must be in (1, 2], got {p}"
                )))
            }
            StepShape::Strong { mu } if !(mu.is_finite() && mu > 0.0) => {
                return Err(Error::invalid(format!(
                    "step rule 'strong': mu must be finite and > 0, got {mu}"
                )))
            }
            _ => {}
        }
        Ok(StepRule { shape, eta, smooth })
    }

    /// From `name` and keys `eta`, `smooth`, `mu` (strong), `p` (sqrt_T, sqrt_t) taken from `spec`.
    pub fn from_spec(name: &str, spec: &mut Spec) -> Result<Self> {
        let eta = spec.f64("eta", 1.0)?;
        let smooth = spec.f64("smooth", 0.0)?;
        let shape = match name {
            "const" => StepShape::Const,
            "sqrt_T" => StepShape::Horizon {
                p: spec.f64("p", 2.0)?,
            },
            "sqrt_t" => StepShape::Anytime {
                p: spec.f64("p", 2.0)?,
            },
            "linear" => StepShape::Linear,
            "strong" => StepShape::Strong {
                mu: spec.f64("mu", f64::NAN)?,
            },
            _ => return Err(crate::spec::unknown_name("step rule", name, Self::NAMES)),
        };
        if let StepShape::Strong { mu } = shape {
            if mu.is_nan() {
                return Err(Error::invalid(
                    "step rule 'strong' needs mu=... (the strong-convexity modulus)",
                ));
            }
        }
        Self::new(shape, eta, smooth)
    }

    /// η_t for round `t` (1-based) of horizon `horizon`.
    #[inline]
    pub fn eta(&self, t: u64, horizon: u64) -> f64 {
        let (t, big_t) = (t as f64, horizon as f64);
        let e = match self.shape {
            StepShape::Const => self.eta,
            StepShape::Horizon { p } => self.eta / big_t.powf(1.0 / p),
            StepShape::Anytime { p } => self.eta / t.powf(1.0 / p),
            StepShape::Linear => self.eta * (big_t - t + 1.0).max(1.0) / big_t.powf(1.5),
            StepShape::Strong { mu } => self.eta / (mu * t),
        };
        if self.smooth > 0.0 {
            e.min(0.5 / self.smooth)
        } else {
            e
        }
    }

    /// Whether η_t depends on the horizon (then each horizon is its own run).
    pub fn needs_horizon(&self) -> bool {
        matches!(self.shape, StepShape::Horizon { .. } | StepShape::Linear)
    }
}

impl fmt::Display for StepRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.shape {
            StepShape::Const => write!(f, "const:eta={}", self.eta)?,
            StepShape::Horizon { p } => write!(f, "sqrt_T:eta={},p={p}", self.eta)?,
            StepShape::Anytime { p } => write!(f, "sqrt_t:eta={},p={p}", self.eta)?,
            StepShape::Linear => write!(f, "linear:eta={}", self.eta)?,
            StepShape::Strong { mu } => write!(f, "strong:eta={},mu={mu}", self.eta)?,
        }
        if self.smooth > 0.0 {
            write!(f, ",smooth={}", self.smooth)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_follow_their_formulas() {
        let r = |s: &str| {
            let (name, rest) = s.split_once(':').unwrap_or((s, ""));
            StepRule::from_spec(name, &mut Spec::parse(&format!("x:{rest}")).unwrap()).unwrap()
        };
        assert_eq!(r("sqrt_T:eta=2").eta(7, 100), 0.2);
        assert_eq!(r("sqrt_t:eta=2").eta(4, 100), 1.0);
        assert_eq!(r("sqrt_t:eta=2,p=1.5").eta(8, 100), 0.5);
        assert_eq!(r("linear:eta=1").eta(1, 100), 0.1);
        assert_eq!(r("linear:eta=1").eta(100, 100), 0.001);
        assert_eq!(r("strong:eta=1,mu=0.5").eta(4, 10), 0.5);
        assert_eq!(r("const:eta=3,smooth=1").eta(1, 10), 0.5);
        let e = StepRule::from_spec("strong", &mut Spec::parse("x:eta=1").unwrap()).unwrap_err();
        assert!(e.to_string().contains("mu"), "{e}");
        let e = StepRule::from_spec("cosine", &mut Spec::parse("x").unwrap()).unwrap_err();
        assert!(e.to_string().contains("sqrt_T"), "{e}");
        assert!(StepRule::new(StepShape::Anytime { p: 2.5 }, 1.0, 0.0).is_err());
    }
}
