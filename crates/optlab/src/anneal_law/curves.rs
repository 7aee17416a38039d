//! Loss curves for the annealing law (P38) from a run directory's `metrics.jsonl` or from a CSV file.

use super::LossCurve;
use crate::error::PathContext;
use crate::train::{read_metrics, Record};
use crate::{Error, Result};
use std::path::Path;

/// Which logged loss a run's curve uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossSource {
    /// The mini-batch training loss of every step (the paper fits training loss).
    Train,
    /// The validation loss of each evaluation.
    Val,
}

/// Averages consecutive blocks of `bin` points (a point at the block's mean step) to tame mini-batch noise.
pub fn bin_points(points: &[(usize, f64)], bin: usize) -> Vec<(usize, f64)> {
    points
        .chunks(bin.max(1))
        .map(|c| {
            let n = c.len() as f64;
            let step = c.iter().map(|p| p.0 as f64).sum::<f64>() / n;
            (
                step.round() as usize,
                c.iter().map(|p| p.1).sum::<f64>() / n,
            )
        })
        .collect()
}

/// The curve of a training run: the lr of every update from its step records (which must be logged every step,
/// `log_every = 1`) and the chosen losses.
pub fn curve_from_run(dir: &Path, source: LossSource, bin: usize) -> Result<LossCurve> {
    let path = dir.join("metrics.jsonl");
    let records = read_metrics(&path)?;
    let mut lrs = Vec::new();
    let mut losses = Vec::new();
    for r in &records {
        match r {
            Record::Train(m) => {
                // A record of step k holds the lr of update k-1 and the loss before it, i.e. after k-1 updates.
                if m.step as usize != lrs.len() + 1 {
                    return Err(Error::file(
                        &path,
                        format!(
                            "the law needs the lr of every step, but step {} follows step {} (train with log_every = 1)",
                            m.step,
                            lrs.len()
                        ),
                    ));
                }
                lrs.push(m.lr);
                if source == LossSource::Train && m.step >= 2 {
                    losses.push((m.step as usize - 1, m.loss));
                }
            }
            Record::Eval(m) => {
                if let (LossSource::Val, Some(v)) = (source, m.val_loss) {
                    losses.push((m.step as usize, v));
                }
            }
        }
    }
    if lrs.is_empty() {
        return Err(Error::file(&path, "no training steps logged"));
    }
    losses.retain(|p| p.0 >= 1 && p.0 <= lrs.len());
    if losses.is_empty() {
        return Err(Error::file(&path, "no losses of the requested kind logged"));
    }
    Ok(LossCurve {
        name: dir.display().to_string(),
        lrs,
        losses: bin_points(&losses, bin),
    })
}

/// A curve from a CSV with the header `step,lr,loss`: one row per update, `step` counting from 1 with no gaps,
/// `lr` that update's learning rate, `loss` the loss after `step` updates (may be empty).
pub fn curve_from_csv(path: &Path, bin: usize) -> Result<LossCurve> {
    let text = std::fs::read_to_string(path).at_path(path)?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let header: Vec<String> = lines
        .next()
        .map(|(_, l)| l.split(',').map(|c| c.trim().to_lowercase()).collect())
        .unwrap_or_default();
    if header != ["step", "lr", "loss"] {
        return Err(Error::file(
            path,
            format!(
                "the header must be `step,lr,loss`, found `{}`",
                header.join(",")
            ),
        ));
    }
    let (mut lrs, mut losses) = (Vec::new(), Vec::new());
    for (i, line) in lines {
        let cols: Vec<&str> = line.split(',').map(str::trim).collect();
        let bad = |what: String| Error::file(path, format!("line {}: {what}", i + 1));
        if cols.len() != 3 {
            return Err(bad(format!("expected 3 columns, found {}", cols.len())));
        }
        let step: usize = cols[0]
            .parse()
            .map_err(|_| bad(format!("step `{}` is not a whole number", cols[0])))?;
        if step != lrs.len() + 1 {
            return Err(bad(format!(
                "step {step} after step {}: steps must count 1, 2, 3, ... (the law needs every update's lr)",
                lrs.len()
            )));
        }
        let lr: f64 = cols[1]
            .parse()
            .map_err(|_| bad(format!("lr `{}` is not a number", cols[1])))?;
        lrs.push(lr);
        if !cols[2].is_empty() {
            let loss: f64 = cols[2]
                .parse()
                .map_err(|_| bad(format!("loss `{}` is not a number", cols[2])))?;
            losses.push((step, loss));
        }
    }
    if losses.is_empty() {
        return Err(Error::file(path, "no loss values"));
    }
    Ok(LossCurve {
        name: path.display().to_string(),
        lrs,
        losses: bin_points(&losses, bin),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_curves_and_their_errors() {
        let dir = std::env::temp_dir().join(format!("optlab_curve_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.csv");
        std::fs::write(
            &p,
            "step,lr,loss\n1,0.1,\n2,0.1,2.0\n3,0.05,1.5\n4,0.05,1.0\n",
        )
        .unwrap();
        let c = curve_from_csv(&p, 2).unwrap();
        assert_eq!(c.lrs, vec![0.1, 0.1, 0.05, 0.05]);
        assert_eq!(c.losses, vec![(3, 1.75), (4, 1.0)]);
        for (text, needle) in [
            ("s,lr,loss\n1,0.1,1\n", "header"),
            ("step,lr,loss\n2,0.1,1\n", "step 2 after step 0"),
            ("step,lr,loss\n1,abc,1\n", "lr `abc`"),
            ("step,lr,loss\n1,0.1\n", "3 columns"),
            ("step,lr,loss\n1,0.1,\n", "no loss"),
        ] {
            std::fs::write(&p, text).unwrap();
            let e = curve_from_csv(&p, 1).unwrap_err().to_string();
            assert!(e.contains(needle) && e.contains("c.csv"), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
