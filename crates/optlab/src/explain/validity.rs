//! P07's claim, measured: counterfactuals found on one model, checked on models retrained after a change. The
//! rows are split into folds (seeded); for each fold in turn, a baseline MLP is trained on the other folds as the
//! official code trains its Keras model (128-128 ReLU, Adam 1e-3, 50 epochs, batch 256) and `models` changed
//! models are retrained, the first half with other seeds only, the second half also with `replaced` of the
//! training rows replaced (dropped at random and refilled by rows drawn with replacement from the rest). The
//! fold's test rows that are labelled 0 and predicted 0 (the official "rejected" applicants) are explained, until
//! `points` rows are, which the data sets here reach only over several folds. Each method's counterfactual is
//! checked on every changed model of its fold: validity is the share that give it class 1 (the
//! closest-training-point baseline searches the fold's training rows). The Stability and the local Lipschitz bound
//! of the baseline around each counterfactual are reported beside it. The seconds per point are those of the
//! search only.

use super::ead::EadConfig;
use super::table::{closest_counterfactual, counterfactual};
use super::trex::TrexConfig;
use super::{predict, stability};
use crate::data::tabular::Table;
use crate::data::{DataSpec, Target};
use crate::nn::{Activation, ModelSpec, Parametrization};
use crate::rng::{permutation, rng_for, Stream};
use crate::train::{TrainOptions, Trainer};
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use rand::Rng as _;
use serde::Serialize;
use std::path::Path;

/// A counterfactual method of the study.
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    L1,
    L2,
    Trex(TrexConfig),
    /// The nearest training row the baseline gives the other class ([`closest_counterfactual`]).
    Closest,
}

impl Method {
    fn name(&self) -> String {
        match self {
            Method::L1 => "l1".into(),
            Method::L2 => "l2".into(),
            Method::Closest => "closest".into(),
            Method::Trex(t) => format!(
                "trex(tau={},sigma={},step={},steps={})",
                t.tau, t.sigma, t.step, t.max_steps
            ),
        }
    }
}

/// The study's settings (the official code's where it has them).
#[derive(Debug, Clone, PartialEq)]
pub struct ValidityConfig {
    pub models: usize,
    /// The share of training rows replaced in the second half of the changed models.
    pub replaced: f64,
    pub points: usize,
    pub hidden: Vec<usize>,
    pub epochs: u64,
    pub batch: usize,
    pub lr: f64,
    /// The rows split into this many folds, each in turn the test rows of a baseline and its changed models,
    /// until `points` rows are explained.
    pub folds: usize,
    pub seed: u64,
    pub methods: Vec<Method>,
}

impl Default for ValidityConfig {
    fn default() -> Self {
        ValidityConfig {
            models: 50,
            replaced: 0.1,
            points: 100,
            hidden: vec![128, 128],
            epochs: 50,
            batch: 256,
            lr: 1e-3,
            folds: 5,
            seed: 0,
            methods: vec![
                Method::L1,
                Method::L2,
                Method::Trex(TrexConfig::default()),
                Method::Closest,
            ],
        }
    }
}

/// One method's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MethodResult {
    pub method: String,
    /// Points with a counterfactual (of those tried).
    pub found: usize,
    pub tried: usize,
    /// Mean validity over the found counterfactuals, and its standard error over points.
    pub validity: f64,
    pub validity_se: f64,
    /// Mean L1 and L2 distances in encoded (standardized) units.
    pub l1: f64,
    pub l2: f64,
    /// Mean Stability at the counterfactuals (K and σ of T-Rex's defaults).
    pub stability: f64,
    /// Mean local Lipschitz bound of the baseline's logits around the counterfactuals (ℓ∞ ball of radius σ).
    pub local_lipschitz: f64,
    /// Seconds per counterfactual.
    pub seconds: f64,
}

/// The study's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidityReport {
    pub data: String,
    /// The folds run (fewer than configured when the points were reached earlier).
    pub folds: usize,
    /// Training rows per fold, and test rows over the folds run.
    pub train_rows: usize,
    pub test_rows: usize,
    /// Mean test accuracy of the baselines and of the changed models, over the folds run.
    pub baseline_accuracy: f64,
    pub changed_accuracy: f64,
    pub models: usize,
    pub methods: Vec<MethodResult>,
}

impl ValidityConfig {
    fn check(&self) -> Result<()> {
        let ok = self.models >= 1
            && self.models <= 1000
            && (0.0..1.0).contains(&self.replaced)
            && self.points >= 1
            && self.epochs >= 1
            && self.batch >= 1
            && self.lr.is_finite()
            && self.lr > 0.0
            && (2..=20).contains(&self.folds)
            && !self.hidden.is_empty()
            && !self.methods.is_empty();
        if ok {
            Ok(())
        } else {
            Err(Error::invalid(
                "validity: 1 to 1000 models, replaced in [0, 1), points, epochs and batch >= 1, lr > 0, 2 to 20 folds, hidden widths and methods given",
            ))
        }
    }
}

/// Trains one MLP on `x`, `y` (through a safetensors file in `work`, read by the trainer).
fn train(
    work: &Path,
    name: &str,
    x: &[f32],
    y: &[u32],
    d: usize,
    cfg: &ValidityConfig,
    seed: u64,
) -> Result<Trainer> {
    let path = work.join(format!("{name}.safetensors"));
    let n = y.len();
    let tensors = vec![
        (
            "x".to_string(),
            Tensor::from_slice(x, (n, d), &Device::Cpu)?,
        ),
        ("y".to_string(), Tensor::from_slice(y, n, &Device::Cpu)?),
    ];
    crate::tensor_io::write_safetensors(&path, &tensors, None)?;
    let model = ModelSpec::Mlp {
        hidden: cfg.hidden.clone(),
        acts: vec![Activation::Relu; cfg.hidden.len()],
        param: Parametrization::Standard,
        spectral: Default::default(),
    };
    let options = TrainOptions {
        epochs: Some(cfg.epochs),
        steps: None,
        batch_size: cfg.batch,
        seed,
        val_frac: 0.0,
        ..Default::default()
    };
    let mut t = Trainer::from_parts(
        DataSpec::Safetensors {
            path: path.clone(),
            x: "x".into(),
            y: "y".into(),
        },
        model,
        format!("adam:lr={}", cfg.lr).parse()?,
        crate::schedule::ScheduleSpec::constant(),
        options,
    )?;
    t.run(None, &mut [])?;
    let _ = std::fs::remove_file(&path);
    Ok(t)
}

fn accuracy(t: &Trainer, x: &[f32], y: &[u32], d: usize) -> Result<f64> {
    let p = predict(t.model(), x, d)?;
    Ok(p.iter().zip(y).filter(|(a, b)| **a == **b as usize).count() as f64 / y.len().max(1) as f64)
}

/// What one fold adds to a method's totals.
#[derive(Default)]
struct Totals {
    valid: Vec<f64>,
    l1: f64,
    l2: f64,
    stability: f64,
    lipschitz: f64,
    tried: usize,
    searching: f64,
}

/// Rows `idx` of the row-major `x` (rows of `d`) and of `y`, in that order.
fn gather(x: &[f32], y: &[u32], d: usize, idx: &[usize]) -> (Vec<f32>, Vec<u32>) {
    let rows = idx
        .iter()
        .flat_map(|&i| x[i * d..(i + 1) * d].iter().copied())
        .collect();
    (rows, idx.iter().map(|&i| y[i]).collect())
}

/// What every fold of a study shares: the encoded table, its labels, the settings and the scratch directory.
struct Study<'a> {
    x: &'a [f32],
    labels: &'a [u32],
    enc: &'a crate::data::tabular::Encoding,
    cfg: &'a ValidityConfig,
    work: &'a Path,
}

impl Study<'_> {
    /// One fold of the study: the baseline and the changed models trained on `train_idx`, and each method's
    /// counterfactuals for up to `budget` rejected rows of `test_idx`, added to `totals`. Returns the baseline's and
    /// the changed models' mean test accuracy.
    fn fold(
        &self,
        (train_idx, test_idx): (&[usize], &[usize]),
        budget: usize,
        seed: u64,
        totals: &mut [Totals],
        progress: &mut impl FnMut(&str),
    ) -> Result<(f64, f64)> {
        let (cfg, enc, work) = (self.cfg, self.enc, self.work);
        let d = enc.features;
        let (xtr, ytr) = gather(self.x, self.labels, d, train_idx);
        let (xte, yte) = gather(self.x, self.labels, d, test_idx);
        let base = train(work, "baseline", &xtr, &ytr, d, cfg, seed)?;
        let baseline_accuracy = accuracy(&base, &xte, &yte, d)?;
        progress(&format!("baseline: test accuracy {baseline_accuracy:.3}"));
        let mut changed = Vec::with_capacity(cfg.models);
        let mut changed_acc = 0.0;
        for m in 0..cfg.models {
            let seed = seed.wrapping_add(1000 + m as u64);
            let (x, y) = if m >= cfg.models / 2 && cfg.replaced > 0.0 {
                let mut rng = rng_for(seed, Stream::Data, 11);
                let k = (cfg.replaced * ytr.len() as f64).round() as usize;
                let drop = permutation(ytr.len(), &mut rng);
                let (gone, kept) = drop.split_at(k);
                let mut idx: Vec<usize> = kept.to_vec();
                idx.extend((0..gone.len()).map(|_| kept[rng.gen_range(0..kept.len())]));
                gather(&xtr, &ytr, d, &idx)
            } else {
                (xtr.clone(), ytr.clone())
            };
            let t = train(work, &format!("changed-{m}"), &x, &y, d, cfg, seed)?;
            changed_acc += accuracy(&t, &xte, &yte, d)?;
            changed.push(t);
            progress(&format!("changed model {}/{}", m + 1, cfg.models));
        }
        // The rejected applicants: labelled 0 and predicted 0.
        let pred = predict(base.model(), &xte, d)?;
        let points: Vec<usize> = (0..yte.len())
            .filter(|&i| yte[i] == 0 && pred[i] == 0)
            .take(budget)
            .collect();
        let stab_cfg = TrexConfig::default();
        for (method, tot) in cfg.methods.iter().zip(totals.iter_mut()) {
            let (ead, trex_cfg) = match method {
                Method::L1 | Method::Closest => (EadConfig::l1(), None),
                Method::L2 => (EadConfig::l2(), None),
                Method::Trex(t) => (EadConfig::l2(), Some(t)),
            };
            tot.tried += points.len();
            for &i in &points {
                // Seeded by the row's index in the table, which no other fold tests.
                let row = test_idx[i] as u64;
                let x = &xte[i * d..(i + 1) * d];
                let mut rng = rng_for(cfg.seed, Stream::Probe, row);
                let t0 = std::time::Instant::now();
                let r = if *method == Method::Closest {
                    closest_counterfactual(base.model(), enc, x, &xtr)?
                } else {
                    counterfactual(base.model(), enc, x, &ead, trex_cfg.map(|t| (t, &mut rng)))?
                };
                tot.searching += t0.elapsed().as_secs_f64();
                if !r.found {
                    continue;
                }
                let cf = &r.counterfactual;
                let ok = changed
                    .iter()
                    .map(|t| predict(t.model(), cf, d).map(|p| (p[0] == 1) as u8 as f64))
                    .collect::<Result<Vec<f64>>>()?;
                tot.valid.push(ok.iter().sum::<f64>() / ok.len() as f64);
                tot.l1 += x
                    .iter()
                    .zip(cf)
                    .map(|(a, b)| (a - b).abs() as f64)
                    .sum::<f64>();
                tot.l2 += x
                    .iter()
                    .zip(cf)
                    .map(|(a, b)| ((a - b) as f64).powi(2))
                    .sum::<f64>()
                    .sqrt();
                let noise = stability::gaussian_noise(
                    stab_cfg.k,
                    d,
                    stab_cfg.sigma,
                    &mut rng_for(cfg.seed, Stream::Probe, u64::MAX - row),
                )?;
                tot.stability += stability::stability_and_gradient(base.model(), cf, &noise, 1)?.0;
                tot.lipschitz += super::local_lipschitz(base.model(), cf, stab_cfg.sigma)?;
            }
            progress(&format!(
                "{}: {}/{} found",
                method.name(),
                tot.valid.len(),
                tot.tried
            ));
        }
        Ok((baseline_accuracy, changed_acc / cfg.models as f64))
    }
}

/// Runs the study on `table`; `work` holds the temporary training files; `progress` hears what is done (one
/// message per trained model and per method of each fold run).
pub fn run(
    table: &Table,
    cfg: &ValidityConfig,
    work: &Path,
    mut progress: impl FnMut(&str),
) -> Result<ValidityReport> {
    cfg.check()?;
    let (data, enc) = table.encode()?;
    let Target::Classes { labels, .. } = &data.target else {
        return Err(Error::invalid("validity: the table has no classes"));
    };
    let n = labels.len();
    if n < cfg.folds {
        return Err(Error::invalid(format!(
            "validity: {n} rows cannot make {} folds",
            cfg.folds
        )));
    }
    let order = permutation(n, &mut rng_for(cfg.seed, Stream::Split, 7));
    let study = Study {
        x: &data.x,
        labels,
        enc: &enc,
        cfg,
        work,
    };
    let mut totals: Vec<Totals> = cfg.methods.iter().map(|_| Totals::default()).collect();
    let (mut folds, mut base_acc, mut changed_acc, mut test_rows) = (0, 0.0, 0.0, 0);
    let mut train_rows = 0;
    for f in 0..cfg.folds {
        let tried = totals[0].tried;
        if tried >= cfg.points {
            break;
        }
        let (lo, hi) = (f * n / cfg.folds, (f + 1) * n / cfg.folds);
        let test_idx = &order[lo..hi];
        let train_idx: Vec<usize> = order[..lo].iter().chain(&order[hi..]).copied().collect();
        // Fold 0 keeps the study's seed; later folds train other networks.
        let seed = cfg.seed.wrapping_add(100_000 * f as u64);
        let (b, c) = study.fold(
            (&train_idx, test_idx),
            cfg.points - tried,
            seed,
            &mut totals,
            &mut progress,
        )?;
        folds += 1;
        base_acc += b;
        changed_acc += c;
        test_rows += test_idx.len();
        train_rows = train_rows.max(train_idx.len());
    }
    let methods = cfg
        .methods
        .iter()
        .zip(&totals)
        .map(|(method, t)| {
            let found = t.valid.len();
            let f = found.max(1) as f64;
            let mean = t.valid.iter().sum::<f64>() / f;
            let var = t.valid.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (f - 1.0).max(1.0);
            MethodResult {
                method: method.name(),
                found,
                tried: t.tried,
                validity: mean,
                validity_se: (var / f).sqrt(),
                l1: t.l1 / f,
                l2: t.l2 / f,
                stability: t.stability / f,
                local_lipschitz: t.lipschitz / f,
                seconds: t.searching / t.tried.max(1) as f64,
            }
        })
        .collect();
    Ok(ValidityReport {
        data: table.name.clone(),
        folds,
        train_rows,
        test_rows,
        baseline_accuracy: base_acc / folds as f64,
        changed_accuracy: changed_acc / folds as f64,
        models: cfg.models,
        methods,
    })
}
