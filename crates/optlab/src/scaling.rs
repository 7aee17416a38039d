//! Hyperparameter scaling laws. Step Law (P17, "Predictable Scale: Part I"): for N non-embedding parameters
//! trained on D tokens, the optimal peak learning rate is η* = 1.79·N^-0.713·D^0.307 and the optimal batch is
//! B* = 0.58·D^0.571 tokens.

use crate::{Error, Result};
use serde::Serialize;

/// Step Law's optimum.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StepLaw {
    pub params: f64,
    pub tokens: f64,
    /// Optimal peak learning rate.
    pub lr: f64,
    /// Optimal batch size in tokens.
    pub batch_tokens: f64,
    /// In sequences, when a sequence length was given (rounded to at least 1).
    pub batch_sequences: Option<f64>,
}

/// η* and B* for `params` non-embedding parameters and `tokens` training tokens (and sequences of `seq_len`).
pub fn step_law(params: f64, tokens: f64, seq_len: Option<f64>) -> Result<StepLaw> {
    for (name, v) in [("params", params), ("tokens", tokens)] {
        if !(v > 0.0 && v.is_finite()) {
            return Err(Error::invalid(format!(
                "{name}={v} must be a positive number"
            )));
        }
    }
    if let Some(s) = seq_len {
        if !(s >= 1.0 && s.is_finite()) {
            return Err(Error::invalid(format!("seq_len={s} must be at least 1")));
        }
    }
    let lr = 1.79 * params.powf(-0.713) * tokens.powf(0.307);
    let batch_tokens = 0.58 * tokens.powf(0.571);
    Ok(StepLaw {
        params,
        tokens,
        lr,
        batch_tokens,
        batch_sequences: seq_len.map(|s| (batch_tokens / s).round().max(1.0)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_hand_computed_values() {
        // N = 1e9, D = 1e11: η* = 1.79 · 10^(-6.417) · 10^(3.377) = 1.79 · 10^(-3.04); B* = 0.58 · 10^(6.281).
        let s = step_law(1e9, 1e11, Some(2048.0)).unwrap();
        assert!((s.lr - 1.79 * 10f64.powf(-3.04)).abs() < 1e-12 * s.lr.max(1.0) + 1e-15);
        assert!((s.batch_tokens - 0.58 * 10f64.powf(6.281)).abs() < 1e-6 * s.batch_tokens);
        assert_eq!(s.batch_sequences, Some((s.batch_tokens / 2048.0).round()));
        assert!(step_law(0.0, 1e9, None).is_err());
        assert!(step_law(1e9, f64::NAN, None).is_err());
        assert!(step_law(1e9, 1e9, Some(0.5)).is_err());
    }
}
