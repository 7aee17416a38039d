//! What an experiment reports: Markdown text and the data of its charts (the CLI draws them), plus the
//! aggregation that feeds them: a run's curves from its metrics, smoothing, means over seeds.

use crate::train::{read_metrics, Record};
use crate::Result;
use serde::Serialize;
use std::path::Path;

/// One named curve.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A line chart: where it goes (relative to the report's directory), its labels and its curves.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chart {
    pub file: String,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// A log10 y axis (non-positive values are left out).
    pub log_y: bool,
}

impl Chart {
    /// Whether any series has a point the chart can show.
    pub fn has_points(&self) -> bool {
        self.series.iter().any(|s| {
            s.points
                .iter()
                .any(|(x, y)| x.is_finite() && y.is_finite() && (!self.log_y || *y > 0.0))
        })
    }
}

/// A report: Markdown (`report.md`) that links its charts by file name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub markdown: String,
    pub charts: Vec<Chart>,
}

/// The mean and sample standard deviation (0 for one value; NaN for none).
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let m = v.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return (m, 0.0);
    }
    let s = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    (m, s)
}

/// `mean ± std` of the values to four decimals, the value alone for one, `-` for none.
pub fn fmt_mean_std(v: &[f64]) -> String {
    match v.len() {
        0 => "-".into(),
        1 => format!("{:.4}", v[0]),
        _ => {
            let (m, s) = mean_std(v);
            format!("{m:.4} ± {s:.4}")
        }
    }
}

/// Pointwise mean over runs of curves sampled at the same steps (the shortest run's length).
pub fn mean_curve(curves: &[Vec<(f64, f64)>]) -> Vec<(f64, f64)> {
    let n = curves.iter().map(Vec::len).min().unwrap_or(0);
    (0..n)
        .map(|i| {
            let y = curves.iter().map(|c| c[i].1).sum::<f64>() / curves.len() as f64;
            (curves[0][i].0, y)
        })
        .collect()
}

/// Exponential moving average with bias correction (for noisy mini-batch losses).
pub fn smooth(points: &[(f64, f64)], beta: f64) -> Vec<(f64, f64)> {
    let mut avg = 0.0;
    points
        .iter()
        .enumerate()
        .map(|(i, &(x, y))| {
            avg = beta * avg + (1.0 - beta) * y;
            (x, avg / (1.0 - beta.powi(i as i32 + 1)))
        })
        .collect()
}

/// The curves of one run directory, read from its metrics.jsonl.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunCurves {
    pub train_loss: Vec<(f64, f64)>,
    pub val_loss: Vec<(f64, f64)>,
    pub val_accuracy: Vec<(f64, f64)>,
}

/// Reads a run's curves.
pub fn run_curves(run_dir: &Path) -> Result<RunCurves> {
    let mut c = RunCurves::default();
    for r in read_metrics(&run_dir.join("metrics.jsonl"))? {
        match r {
            Record::Train(m) => c.train_loss.push((m.step as f64, m.loss)),
            Record::Eval(e) => {
                if let Some(v) = e.val_loss {
                    c.val_loss.push((e.step as f64, v));
                }
                if let Some(a) = e.val_accuracy {
                    c.val_accuracy.push((e.step as f64, a));
                }
            }
        }
    }
    Ok(c)
}

/// A run directory's own charts, `plots/loss.png` (training, smoothed, and validation loss) and, for
/// classification, `plots/accuracy.png`; a chart with nothing to show (a run shorter than its logging interval)
/// is left out.
pub fn run_charts(run_dir: &Path) -> Result<Vec<Chart>> {
    let c = run_curves(run_dir)?;
    let mut loss = vec![Series {
        name: "train (smoothed)".into(),
        points: smooth(&c.train_loss, 0.9),
    }];
    if !c.val_loss.is_empty() {
        loss.push(Series {
            name: "validation".into(),
            points: c.val_loss,
        });
    }
    let charts = vec![
        Chart {
            file: "plots/loss.png".into(),
            title: "Loss".into(),
            x_label: "step".into(),
            y_label: "loss".into(),
            series: loss,
            log_y: true,
        },
        Chart {
            file: "plots/accuracy.png".into(),
            title: "Accuracy".into(),
            x_label: "step".into(),
            y_label: "accuracy".into(),
            series: vec![Series {
                name: "validation".into(),
                points: c.val_accuracy,
            }],
            log_y: false,
        },
    ];
    Ok(charts.into_iter().filter(Chart::has_points).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregation() {
        assert_eq!(mean_std(&[1.0, 3.0]), (2.0, 2f64.sqrt()));
        assert_eq!(fmt_mean_std(&[]), "-");
        assert_eq!(fmt_mean_std(&[0.5]), "0.5000");
        assert_eq!(
            mean_curve(&[vec![(1.0, 1.0), (2.0, 3.0)], vec![(1.0, 3.0)]]),
            vec![(1.0, 2.0)]
        );
        let s = smooth(&[(0.0, 2.0), (1.0, 2.0)], 0.9);
        assert!((s[1].1 - 2.0).abs() < 1e-12);
        let empty = Chart {
            file: "x.png".into(),
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            series: vec![Series {
                name: "a".into(),
                points: vec![(1.0, 0.0)],
            }],
            log_y: true,
        };
        assert!(!empty.has_points());
    }
}
