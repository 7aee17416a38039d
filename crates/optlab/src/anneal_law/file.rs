//! The fit file (what `optlab scaling fit` writes and `scaling predict|check` read), fitting a law to whole
//! curves, and checking a law against curves it was or was not fitted on.

use super::{fit, mape, AnnealLaw, FitOptions, FitReport, LossCurve};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The `kind` of a fit file.
pub const FIT_FILE_KIND: &str = "optlab-anneal-law";

/// A law and how well it fits each curve, as saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitFile {
    /// Always [`FIT_FILE_KIND`].
    pub kind: String,
    pub law: AnnealLaw,
    /// The largest lr of the fitted curves: the default peak of predictions.
    pub peak_lr: f64,
    pub report: FitReport,
    pub curves: Vec<CurveCheck>,
}

impl FitFile {
    /// Reads a fit file, refusing anything else.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e.to_string()))?;
        let file: FitFile = serde_json::from_str(&text).map_err(|e| {
            Error::file(
                path,
                format!("not a law written by `optlab scaling fit` ({e})"),
            )
        })?;
        if file.kind != FIT_FILE_KIND {
            return Err(Error::file(
                path,
                format!("a `{}` file, not `{FIT_FILE_KIND}`", file.kind),
            ));
        }
        Ok(file)
    }

    /// Writes the file (pretty JSON), atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::invalid(format!("cannot write the fit: {e}")))?;
        crate::tensor_io::write_atomic(path, text.as_bytes())
    }
}

/// A law against one observed curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurveCheck {
    pub name: String,
    /// Observed points compared.
    pub points: usize,
    /// Mean absolute percentage error of the law at those points.
    pub mape: f64,
    /// (Absent from fit files of earlier versions: read as NaN.)
    #[serde(default = "nan")]
    pub final_observed: f64,
    #[serde(default = "nan")]
    pub final_predicted: f64,
}

fn nan() -> f64 {
    f64::NAN
}

/// The number of updates before which `skip` (a fraction of the run) leaves points out.
pub fn skipped_updates(curve: &LossCurve, skip: f64) -> usize {
    (skip * curve.lrs.len() as f64).round() as usize
}

/// The law's loss at every observed point of `curve` after the first `skip` of the run, against the observed
/// loss.
pub fn check_curve(law: &AnnealLaw, curve: &LossCurve, skip: f64) -> Result<CurveCheck> {
    check_skip(skip)?;
    let pts = curve.points(law.lambda, skipped_updates(curve, skip))?;
    let Some(last) = pts.last() else {
        return Err(Error::invalid(format!(
            "{}: no points left after leaving out the first {skip} of the run",
            curve.name
        )));
    };
    let pred: Vec<f64> = pts.iter().map(|p| law.loss(p.s1, p.s2)).collect();
    let obs: Vec<f64> = pts.iter().map(|p| p.loss).collect();
    Ok(CurveCheck {
        name: curve.name.clone(),
        points: pts.len(),
        mape: mape(&pred, &obs),
        final_observed: last.loss,
        final_predicted: law.loss(last.s1, last.s2),
    })
}

fn check_skip(skip: f64) -> Result<()> {
    if !(0.0..1.0).contains(&skip) {
        return Err(Error::invalid(format!("skip={skip} must be in [0, 1)")));
    }
    Ok(())
}

/// Fits one law to every curve (leaving out the first `skip` of each run) and checks it against each.
pub fn fit_curves(curves: &[LossCurve], skip: f64, opts: &FitOptions) -> Result<FitFile> {
    check_skip(skip)?;
    if curves.is_empty() {
        return Err(Error::invalid("give at least one loss curve"));
    }
    let mut points = Vec::new();
    for c in curves {
        points.extend(c.points(opts.lambda, skipped_updates(c, skip))?);
    }
    let report = fit(&points, opts)?;
    let checks = curves
        .iter()
        .map(|c| check_curve(&report.law, c, skip))
        .collect::<Result<Vec<_>>>()?;
    let peak_lr = curves
        .iter()
        .flat_map(|c| c.lrs.iter().copied())
        .fold(0.0, f64::max);
    Ok(FitFile {
        kind: FIT_FILE_KIND.into(),
        law: report.law,
        peak_lr,
        report,
        curves: checks,
    })
}

/// Whether the law orders the curves by final loss as they are observed.
pub fn ranks_right(checks: &[CurveCheck]) -> bool {
    let order = |key: fn(&CurveCheck) -> f64| {
        let mut idx: Vec<usize> = (0..checks.len()).collect();
        idx.sort_by(|&a, &b| key(&checks[a]).total_cmp(&key(&checks[b])));
        idx
    };
    order(|c| c.final_observed) == order(|c| c.final_predicted)
}
