//! Linear stability of a minimum under (S)GD (P27, P36): GD with step η is stable at a minimum when
//! λ_max(H) ≤ 2/η; P27's SGD criterion bounds the whole spectrum, tr(H) ≤ 2/η. The batch-size rules of P36 move
//! a measured largest stable learning rate to another batch size: linearly for SGD, by the square root for
//! Adam.

use crate::{Error, Result};
use serde::Serialize;

/// The curvature at a point and the verdicts of the two criteria for a learning rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StabilityReport {
    pub lambda_max: f64,
    pub trace: f64,
    pub lr: f64,
    /// 2/η.
    pub threshold: f64,
    /// λ_max ≤ 2/η.
    pub gd_stable: bool,
    /// tr(H) ≤ 2/η.
    pub sgd_stable: bool,
    /// 2/λ_max: the largest learning rate GD is stable with here.
    pub max_stable_lr_gd: f64,
    /// 2/tr(H): the largest learning rate the SGD criterion allows.
    pub max_stable_lr_sgd: f64,
}

/// The verdicts for learning rate `lr` given λ_max and tr(H).
pub fn stability_report(lambda_max: f64, trace: f64, lr: f64) -> Result<StabilityReport> {
    if !(lr > 0.0 && lr.is_finite()) {
        return Err(Error::invalid(format!("lr={lr} must be a positive number")));
    }
    let threshold = 2.0 / lr;
    Ok(StabilityReport {
        lambda_max,
        trace,
        lr,
        threshold,
        gd_stable: lambda_max <= threshold,
        sgd_stable: trace <= threshold,
        max_stable_lr_gd: if lambda_max > 0.0 {
            2.0 / lambda_max
        } else {
            f64::INFINITY
        },
        max_stable_lr_sgd: if trace > 0.0 {
            2.0 / trace
        } else {
            f64::INFINITY
        },
    })
}

/// The largest stable learning rate at batch size `to` from one measured at batch size `from` (P36): SGD scales
/// linearly with the batch size, Adam with its square root.
pub fn stable_lr_for_batch(lr: f64, from: usize, to: usize, optimizer: &str) -> Result<f64> {
    if !(lr > 0.0 && lr.is_finite()) || from == 0 || to == 0 {
        return Err(Error::invalid(format!(
            "need lr > 0 and batch sizes >= 1 (got lr={lr}, from={from}, to={to})"
        )));
    }
    let ratio = to as f64 / from as f64;
    match optimizer {
        "sgd" => Ok(lr * ratio),
        "adam" | "adamw" => Ok(lr * ratio.sqrt()),
        other => Err(Error::invalid(format!(
            "the batch-size rule is defined for sgd and adam, not '{other}'"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_and_batch_rules() {
        let r = stability_report(10.0, 25.0, 0.1).unwrap();
        assert_eq!(r.threshold, 20.0);
        assert!(r.gd_stable && !r.sgd_stable);
        assert_eq!(r.max_stable_lr_gd, 0.2);
        assert_eq!(stable_lr_for_batch(0.1, 32, 128, "sgd").unwrap(), 0.4);
        assert!((stable_lr_for_batch(1e-3, 32, 128, "adam").unwrap() - 2e-3).abs() < 1e-15);
        assert!(stable_lr_for_batch(0.1, 0, 128, "sgd").is_err());
        assert!(stable_lr_for_batch(0.1, 32, 128, "lion").is_err());
        assert!(stability_report(1.0, 1.0, 0.0).is_err());
    }
}
