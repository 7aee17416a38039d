//! muP's two checks across widths (P42, microsoft/mup's conventions), SP against muP: the coordinate check
//! (activation size of every layer against width after a few steps on one batch; flat under muP) and the
//! learning-rate sweep (final loss against learning rate per width; the optimum stays put under muP). They run
//! the trainer many times, so they live above it; the muP rules themselves are in [`crate::mup`].

use crate::nn::{ModelSpec, Parametrization};
use crate::train::{TrainConfig, Trainer};
use crate::{Error, Result};
use candle_core::Device;
use serde::Serialize;

/// What [`coord_check`] and [`lr_sweep`] vary: the model family at each width, SP and muP.
#[derive(Debug, Clone)]
pub struct WidthSweep {
    /// The run's settings; `model` is the architecture (its width is replaced).
    pub config: TrainConfig,
    /// The widths.
    pub widths: Vec<usize>,
    /// muP's base width.
    pub base: usize,
    /// Seeds (each adds an independent run).
    pub seeds: Vec<u64>,
}

impl WidthSweep {
    /// The model spec at `width` under SP (`mup` false) or muP.
    pub fn model_at(&self, width: usize, mup: bool) -> Result<ModelSpec> {
        let param = if mup {
            Parametrization::Mup { base: self.base }
        } else {
            Parametrization::Standard
        };
        self.config.model.with_width(width, param)
    }

    /// The run's configuration at `width` (SP or muP) and `seed`.
    fn config_at(&self, width: usize, mup: bool, seed: u64) -> Result<TrainConfig> {
        let mut cfg = self.config.clone();
        cfg.model = self.model_at(width, mup)?;
        cfg.options.seed = seed;
        Ok(cfg)
    }

    /// Checks the widths, seeds and base, and that the model scales to every width.
    pub fn check(&self) -> Result<()> {
        if self.widths.is_empty() || self.widths.contains(&0) || self.seeds.is_empty() {
            return Err(Error::invalid(
                "give at least one positive width and one seed",
            ));
        }
        if self.base == 0 {
            return Err(Error::invalid("the muP base width must be positive"));
        }
        for &w in &self.widths {
            for mup in [false, true] {
                self.model_at(w, mup)?;
            }
        }
        Ok(())
    }
}

/// One activation statistic of the coordinate check.
#[derive(Debug, Clone, Serialize)]
pub struct CoordRecord {
    /// `sp` or `mup`.
    pub param: &'static str,
    pub width: usize,
    pub seed: u64,
    /// 1 = at initialisation, t = after t − 1 updates.
    pub t: usize,
    /// `<index>:<kind>` of the layer whose output is measured.
    pub layer: String,
    /// mean |x| over the layer's output (microsoft/mup's `l1`).
    pub l1: f64,
}

/// microsoft/mup's coordinate check: for each width, parametrization and seed, train on one fixed batch for
/// `steps` steps and record mean |activation| of every layer's output in the forward pass of each step (before
/// that step's update). Under muP the curves against width are flat; under SP they grow after the first update.
pub fn coord_check(sweep: &WidthSweep, steps: usize) -> Result<Vec<CoordRecord>> {
    sweep.check()?;
    if steps == 0 {
        return Err(Error::invalid(
            "the coordinate check needs at least one step",
        ));
    }
    let mut out = Vec::new();
    for mup in [false, true] {
        for &width in &sweep.widths {
            for &seed in &sweep.seeds {
                let mut trainer = Trainer::new(sweep.config_at(width, mup, seed)?)?;
                if !trainer.is_classification() {
                    return Err(Error::invalid(
                        "the coordinate check uses the cross-entropy loss; give a classification or text data set",
                    ));
                }
                let data = trainer.train_data();
                let idx: Vec<usize> =
                    (0..sweep.config.options.batch_size.min(data.len())).collect();
                let (x, y) = data.batch(&idx, trainer.dtype(), &Device::Cpu)?;
                for t in 1..=steps {
                    let (logits, stats) = trainer.model().forward_recorded(&x, true)?;
                    out.extend(stats.into_iter().map(|(layer, l1)| CoordRecord {
                        param: if mup { "mup" } else { "sp" },
                        width,
                        seed,
                        t,
                        layer,
                        l1,
                    }));
                    let loss = crate::nn::loss::cross_entropy(&logits, &y)?;
                    trainer.apply_gradients(&loss.backward()?)?;
                }
            }
        }
    }
    Ok(out)
}

/// How much a coordinate-check curve grows with width: the least-squares slope of log2(l1) against log2(width)
/// at step `t`, per (parametrization, layer), averaged over seeds first.
pub fn coord_slopes(records: &[CoordRecord], t: usize) -> Vec<(&'static str, String, f64)> {
    let mut keys: Vec<(&'static str, String)> = records
        .iter()
        .filter(|r| r.t == t)
        .map(|r| (r.param, r.layer.clone()))
        .collect();
    keys.dedup();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|(param, layer)| {
            let mut widths: Vec<usize> = records.iter().map(|r| r.width).collect();
            widths.sort_unstable();
            widths.dedup();
            let pts: Vec<(f64, f64)> = widths
                .iter()
                .filter_map(|&w| {
                    let v: Vec<f64> = records
                        .iter()
                        .filter(|r| {
                            r.t == t && r.param == param && r.layer == layer && r.width == w
                        })
                        .map(|r| r.l1)
                        .collect();
                    let m = v.iter().sum::<f64>() / v.len().max(1) as f64;
                    (!v.is_empty() && m > 0.0).then(|| ((w as f64).log2(), m.log2()))
                })
                .collect();
            (param, layer, slope(&pts))
        })
        .collect()
}

fn slope(pts: &[(f64, f64)]) -> f64 {
    let n = pts.len() as f64;
    if pts.len() < 2 {
        return 0.0;
    }
    let (mx, my) = (
        pts.iter().map(|p| p.0).sum::<f64>() / n,
        pts.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

/// One run of the learning-rate sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepRecord {
    pub param: &'static str,
    pub width: usize,
    pub lr: f64,
    pub seed: u64,
    /// Mean training loss over the last tenth of the steps (NaN when the run diverged).
    pub train_loss: f64,
    pub val_loss: Option<f64>,
    pub diverged: bool,
}

/// Trains every (parametrization, width, lr, seed) for the configured steps; the optimizer's base lr is
/// replaced by each value of `lrs`.
pub fn lr_sweep(
    sweep: &WidthSweep,
    lrs: &[f64],
    mut progress: impl FnMut(&SweepRecord),
) -> Result<Vec<SweepRecord>> {
    sweep.check()?;
    if lrs.is_empty() || lrs.iter().any(|l| !(l.is_finite() && *l > 0.0)) {
        return Err(Error::invalid(
            "the learning rates must be positive numbers",
        ));
    }
    let steps = sweep
        .config
        .options
        .steps
        .ok_or_else(|| Error::invalid("the learning-rate sweep needs a number of steps"))?;
    let mut out = Vec::new();
    for mup in [false, true] {
        for &width in &sweep.widths {
            for &lr in lrs {
                for &seed in &sweep.seeds {
                    let mut cfg = sweep.config_at(width, mup, seed)?;
                    cfg.optimizer = cfg.optimizer.with("lr", lr)?;
                    // Evaluate (and so average the training loss) over the last tenth of the run.
                    cfg.options.eval_every = (steps / 10).max(1);
                    let mut t = Trainer::new(cfg)?;
                    let r = match t.run(None, &mut []) {
                        Ok(s) => SweepRecord {
                            param: if mup { "mup" } else { "sp" },
                            width,
                            lr,
                            seed,
                            train_loss: s.final_train_loss,
                            val_loss: s.val_loss,
                            diverged: !s.final_train_loss.is_finite(),
                        },
                        Err(Error::NonFinite(_)) => SweepRecord {
                            param: if mup { "mup" } else { "sp" },
                            width,
                            lr,
                            seed,
                            train_loss: f64::NAN,
                            val_loss: None,
                            diverged: true,
                        },
                        Err(e) => return Err(e),
                    };
                    progress(&r);
                    out.push(r);
                }
            }
        }
    }
    Ok(out)
}

/// Per (parametrization, width): the lr with the lowest mean (over seeds) training loss, and that loss.
/// Diverged runs count as +∞.
pub fn best_lrs(records: &[SweepRecord]) -> Vec<(&'static str, usize, f64, f64)> {
    let mut keys: Vec<(&'static str, usize)> = records.iter().map(|r| (r.param, r.width)).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|(param, width)| {
            let mut lrs: Vec<f64> = records
                .iter()
                .filter(|r| r.param == param && r.width == width)
                .map(|r| r.lr)
                .collect();
            lrs.sort_by(f64::total_cmp);
            lrs.dedup();
            lrs.into_iter()
                .map(|lr| {
                    let v: Vec<f64> = records
                        .iter()
                        .filter(|r| r.param == param && r.width == width && r.lr == lr)
                        .map(|r| {
                            if r.diverged {
                                f64::INFINITY
                            } else {
                                r.train_loss
                            }
                        })
                        .collect();
                    (lr, v.iter().sum::<f64>() / v.len() as f64)
                })
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(lr, loss)| (param, width, lr, loss))
        })
        .collect()
}
