//! The f-divergences of f-DPO (P37) through the one function the loss needs: the derivative f′ of the generator
//! at the policy/reference probability ratio u = π/π_ref, written as a function of log u. The loss compares
//! f′(u_w) − f′(u_l) between the chosen and the rejected response; a constant added to f′ cancels there, so each
//! link drops the constants the official code (alecwangcq/f-divergence-dpo, `trainers.py`) drops too.

use crate::nn::loss::softplus;
use crate::{Error, Result};
use candle_core::Tensor;
use std::fmt;
use std::str::FromStr;

/// An f-divergence between the policy and the reference model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Divergence {
    /// Reverse KL, f(u) = u log u: f′(u) = log u (+1), standard DPO.
    ReverseKl,
    /// Forward KL, f(u) = −log u: f′(u) = −1/u.
    ForwardKl,
    /// Jensen–Shannon, f(u) = u log u − (1 + u) log((1 + u)/2): f′(u) = log 2 − log(1 + 1/u).
    Js,
    /// The α-divergence for α in (0, 1), f(u) = (u^{1−α} − (1 − α)u − α)/(α(α − 1)): f′(u) = −u^{−α}/α (+const).
    /// α → 0 approaches reverse KL and α = 1 is forward KL.
    Alpha(f64),
}

/// The names `--divergence` accepts.
pub const DIVERGENCE_NAMES: &[&str] = &["reverse-kl", "forward-kl", "js", "alpha:A"];

impl Divergence {
    /// An α-divergence, refusing α outside (0, 1) (the official code's assertion).
    pub fn alpha(alpha: f64) -> Result<Self> {
        if !(alpha.is_finite() && alpha > 0.0 && alpha < 1.0) {
            return Err(Error::invalid(format!(
                "divergence alpha:{alpha}: alpha must lie in (0, 1) (alpha -> 0 is reverse-kl, alpha = 1 is forward-kl)"
            )));
        }
        Ok(Divergence::Alpha(alpha))
    }

    /// f′(u) as a tensor op on log u (any float dtype), constants dropped as in the official code.
    pub fn link(&self, log_ratio: &Tensor) -> Result<Tensor> {
        Ok(match *self {
            Divergence::ReverseKl => log_ratio.clone(),
            Divergence::ForwardKl => log_ratio.neg()?.exp()?.neg()?,
            // log 2 − log(1 + e^{−log u}), with the softplus evaluated stably.
            Divergence::Js => (softplus(&log_ratio.neg()?)?.neg()? + std::f64::consts::LN_2)?,
            Divergence::Alpha(a) => ((log_ratio * -a)?.exp()? * (-1.0 / a))?,
        })
    }

    /// f′(u) for one ratio u > 0 (the same constants as [`Divergence::link`]).
    pub fn fprime(&self, u: f64) -> f64 {
        match *self {
            Divergence::ReverseKl => u.ln(),
            Divergence::ForwardKl => -1.0 / u,
            Divergence::Js => std::f64::consts::LN_2 - (1.0 / u).ln_1p(),
            Divergence::Alpha(a) => -u.powf(-a) / a,
        }
    }

    /// The supremum of f′ over u > 0: the link's values lie below it (+∞ for reverse KL).
    pub fn link_sup(&self) -> f64 {
        match *self {
            Divergence::ReverseKl => f64::INFINITY,
            Divergence::ForwardKl | Divergence::Alpha(_) => 0.0,
            Divergence::Js => std::f64::consts::LN_2,
        }
    }

    /// The ratio u > 0 with f′(u) = z, for z below [`Divergence::link_sup`]; `None` outside that range.
    pub fn fprime_inverse(&self, z: f64) -> Option<f64> {
        if z.is_nan() || z >= self.link_sup() {
            return None;
        }
        let u = match *self {
            Divergence::ReverseKl => z.exp(),
            Divergence::ForwardKl => -1.0 / z,
            // 1 + 1/u = 2 e^{−z}
            Divergence::Js => 1.0 / (2.0 * (-z).exp() - 1.0),
            Divergence::Alpha(a) => (-a * z).powf(-1.0 / a),
        };
        (u.is_finite() && u > 0.0).then_some(u)
    }
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Divergence::ReverseKl => write!(f, "reverse-kl"),
            Divergence::ForwardKl => write!(f, "forward-kl"),
            Divergence::Js => write!(f, "js"),
            Divergence::Alpha(a) => write!(f, "alpha:{a}"),
        }
    }
}

impl FromStr for Divergence {
    type Err = Error;

    /// `reverse-kl`, `forward-kl`, `js`, `alpha:0.5` (or `alpha:alpha=0.5`); underscores and the official
    /// code's `jsd` / `alpha_divergence` spellings are accepted too.
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase().replace('_', "-");
        let (name, arg) = match t.split_once(':') {
            Some((n, a)) => (n.trim(), Some(a.trim())),
            None => (t.as_str(), None),
        };
        let plain = |d: Divergence| match arg {
            None => Ok(d),
            Some(_) => Err(Error::invalid(format!(
                "divergence '{s}': {d} takes no parameter"
            ))),
        };
        match name {
            "reverse-kl" | "rkl" => plain(Divergence::ReverseKl),
            "forward-kl" | "fkl" => plain(Divergence::ForwardKl),
            "js" | "jsd" => plain(Divergence::Js),
            "alpha" | "alpha-divergence" => {
                let arg = arg.ok_or_else(|| {
                    Error::invalid(format!(
                        "divergence '{s}': give alpha in (0, 1), e.g. alpha:0.5"
                    ))
                })?;
                let v = arg.strip_prefix("alpha=").unwrap_or(arg);
                let a: f64 = v.parse().map_err(|_| {
                    Error::invalid(format!(
                        "divergence '{s}': '{v}' is not a number (e.g. alpha:0.5)"
                    ))
                })?;
                Divergence::alpha(a)
            }
            _ => Err(Error::invalid(format!(
                "unknown divergence '{s}': expected one of {}",
                DIVERGENCE_NAMES.join(", ")
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_names_and_refuses_the_rest() {
        assert_eq!(
            "reverse-kl".parse::<Divergence>().unwrap(),
            Divergence::ReverseKl
        );
        assert_eq!(
            "forward_kl".parse::<Divergence>().unwrap(),
            Divergence::ForwardKl
        );
        assert_eq!("jsd".parse::<Divergence>().unwrap(), Divergence::Js);
        assert_eq!(
            "alpha:0.3".parse::<Divergence>().unwrap(),
            Divergence::Alpha(0.3)
        );
        assert_eq!(
            "alpha:alpha=0.7".parse::<Divergence>().unwrap(),
            Divergence::Alpha(0.7)
        );
        for bad in [
            "alpha",
            "alpha:1",
            "alpha:0",
            "alpha:-0.5",
            "alpha:nan",
            "alpha:x",
            "js:2",
            "tv",
        ] {
            let e = bad.parse::<Divergence>().unwrap_err().to_string();
            assert!(e.contains("divergence"), "{bad}: {e}");
        }
        for d in [
            Divergence::ReverseKl,
            Divergence::ForwardKl,
            Divergence::Js,
            Divergence::Alpha(0.5),
        ] {
            assert_eq!(d.to_string().parse::<Divergence>().unwrap(), d);
        }
    }

    #[test]
    fn the_inverse_inverts_and_the_link_matches_the_scalar() {
        let ds = [
            Divergence::ReverseKl,
            Divergence::ForwardKl,
            Divergence::Js,
            Divergence::Alpha(0.4),
        ];
        let us = [1e-3, 0.2, 1.0, 3.5, 40.0];
        for d in ds {
            for &u in &us {
                let z = d.fprime(u);
                let back = d.fprime_inverse(z).unwrap();
                assert!((back - u).abs() <= 1e-9 * u, "{d} u={u} back={back}");
            }
            assert!(d.fprime_inverse(d.link_sup()).is_none());
            let logs: Vec<f64> = us.iter().map(|u: &f64| u.ln()).collect();
            let t = Tensor::new(logs.as_slice(), &candle_core::Device::Cpu).unwrap();
            let got: Vec<f64> = d.link(&t).unwrap().to_vec1().unwrap();
            for (g, &u) in got.iter().zip(&us) {
                assert!(
                    (g - d.fprime(u)).abs() <= 1e-12 * (1.0 + g.abs()),
                    "{d} u={u}"
                );
            }
        }
    }
}
