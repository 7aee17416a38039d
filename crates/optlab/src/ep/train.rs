//! P31's training comparison on the embedded digits: the network trained by an EP estimate (N, β) or by the exact
//! gradient (recurrent backpropagation, the reference the paper compares with), optionally with the homeostatic
//! penalty (weight λ, probes per sample) added to the gradient, with any optlab optimizer (the official
//! Table 1 setting: SGD lr 0.01, momentum 0.9, batches of 50).

use super::grad::{agreement, bptt, neuron_estimate, rbp, weight_gradient, Agreement, Estimator};
use super::homeostasis;
use super::net::{act, EpNet, Planar, Shape};
use crate::data::{digits, Target};
use crate::nn::Param;
use crate::optim::{from_spec, grads_for, Optimizer};
use crate::rng::{permutation, rng_for, Rng, Stream};
use crate::train::snapshot::{Reader, Writer};
use crate::{Error, Result};
use candle_core::{Device, Tensor, Var};
use serde::Serialize;

/// Where the weight gradient comes from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Rule {
    /// An EP estimate.
    Ep { estimator: Estimator, beta: f64 },
    /// The exact gradient at the fixed point (recurrent backpropagation).
    Rbp,
    /// The paper's backpropagation baseline: backpropagation through T2 steps from the fixed point.
    Bptt,
}

/// A training run.
#[derive(Debug, Clone, PartialEq)]
pub struct EpConfig {
    /// State layers (the last is the output; the readout maps it to the 10 classes).
    pub layers: Vec<usize>,
    pub rule: Rule,
    /// Free-phase steps T1 and nudged-phase steps T2.
    pub t1: usize,
    pub t2: usize,
    /// Rotation of the initial feedback weights (0: symmetric, 90: independent).
    pub angle: f64,
    /// Homeostasis weight λ (0: off) and probes per sample.
    pub homeostasis: f64,
    pub probes: usize,
    pub batch_size: usize,
    pub epochs: usize,
    pub optimizer: String,
    pub seed: u64,
}

impl Default for EpConfig {
    fn default() -> Self {
        EpConfig {
            layers: vec![128, 10],
            rule: Rule::Ep {
                estimator: Estimator::Fourier(2),
                beta: 0.5,
            },
            t1: 150,
            t2: 20,
            angle: 0.0,
            homeostasis: 0.0,
            probes: 5,
            batch_size: 50,
            epochs: 10,
            optimizer: "sgd:lr=0.01,momentum=0.9".into(),
            seed: 0,
        }
    }
}

/// One epoch's record.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct EpochReport {
    pub epoch: usize,
    pub train_loss: f64,
    pub test_accuracy: f64,
    /// The estimate against the exact gradient on the epoch's last batch (as the official code reports it).
    pub agreement: Agreement,
    /// ‖K − Bᵀ‖² / D, the homeostatic penalty's expectation.
    pub asymmetry: f64,
    /// How far the free phase of the last batch ended from a fixed point.
    pub fixed_point_residual: f64,
    pub seconds: f64,
}

/// The digits split 80/20 (seeded), features in [0, 1] as f64 rows.
/// Feature rows and class labels.
type Rows = (Vec<f64>, Vec<usize>);

fn data(seed: u64) -> Result<(Rows, Rows)> {
    let (train, test) = digits()?.split(0.2, seed)?;
    let rows = |d: &crate::data::Dataset| -> Result<Rows> {
        let Target::Classes { labels, .. } = &d.target else {
            return Err(Error::invalid("EP: the digits must have class labels"));
        };
        Ok((
            d.x.iter().map(|&v| f64::from(v)).collect(),
            labels.iter().map(|&l| l as usize).collect(),
        ))
    };
    Ok((rows(&train)?, rows(&test)?))
}

/// Test accuracy: the argmax of the readout at the free fixed point, in batches.
pub fn accuracy(net: &EpNet, x: &[f64], y: &[usize], t1: usize) -> Result<f64> {
    let d = net.shape.input;
    let mut correct = 0;
    for (xs, ys) in x.chunks(256 * d).zip(y.chunks(256)) {
        let b = ys.len();
        let xb = Planar::real(b, d, xs);
        let u = net.relax(&xb, ys, t1)?;
        let z = net.logits(&u[u.len() - 1].map(act))?;
        for (r, &label) in ys.iter().enumerate() {
            let best = (0..z.n)
                .max_by(|&i, &j| z.get(r, i).re.total_cmp(&z.get(r, j).re))
                .unwrap_or(0);
            correct += usize::from(best == label);
        }
    }
    Ok(correct as f64 / y.len().max(1) as f64)
}

/// Copies the optimizer's parameters into the network.
fn sync(net: &mut EpNet, params: &[Param]) -> Result<()> {
    for (a, p) in net.arrays_mut().into_iter().zip(params) {
        *a = p.tensor().to_vec1::<f64>()?;
    }
    Ok(())
}

/// A training run one epoch at a time (so a run can checkpoint between epochs): the network, its parameters as
/// the optimizer sees them, the optimizer, the homeostasis probes' generator and the data split.
pub struct EpTrainer {
    pub cfg: EpConfig,
    pub net: EpNet,
    params: Vec<Param>,
    pub opt: Box<dyn Optimizer>,
    probe_rng: Rng,
    /// Epochs done.
    pub epoch: usize,
    train: Rows,
    test: Rows,
}

impl EpTrainer {
    /// A fresh run (seeded initialisation and split).
    pub fn new(cfg: EpConfig) -> Result<Self> {
        if cfg.batch_size == 0 || cfg.epochs == 0 || cfg.t1 == 0 || cfg.t2 == 0 {
            return Err(Error::invalid(
                "EP: batch size, epochs, t1 and t2 must be at least 1",
            ));
        }
        if !(cfg.homeostasis.is_finite() && cfg.homeostasis >= 0.0) {
            return Err(Error::invalid(format!(
                "EP: the homeostasis weight must be >= 0, not {}",
                cfg.homeostasis
            )));
        }
        let (train, test) = data(cfg.seed)?;
        let net = EpNet::new(
            Shape {
                input: 64,
                layers: cfg.layers.clone(),
                classes: 10,
            },
            cfg.angle,
            cfg.seed,
        )?;
        let params: Vec<Param> = net
            .arrays()
            .iter()
            .zip(net.names())
            .map(|(a, name)| -> Result<Param> {
                Ok(Param {
                    name,
                    var: Var::from_tensor(&Tensor::from_slice(a, a.len(), &Device::Cpu)?)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(EpTrainer {
            opt: from_spec(&cfg.optimizer)?,
            probe_rng: rng_for(cfg.seed, Stream::Probe, 31),
            cfg,
            net,
            params,
            epoch: 0,
            train,
            test,
        })
    }

    /// The parameters as the optimizer sees them ([`EpNet::names`]).
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// Saves the run's state into a checkpoint.
    pub fn save(&self, w: &mut Writer) -> Result<()> {
        w.params("model", &self.params)?;
        w.optimizer("optimizer", self.opt.as_ref(), &self.params)?;
        w.rng("probe_rng", &self.probe_rng)
    }

    /// Restores the state of a checkpoint written after `r.step` epochs.
    pub fn load(&mut self, r: &Reader) -> Result<()> {
        r.load_params("model", &self.params)?;
        // The checkpoint's step counts epochs; the optimizer's, batches.
        let batches = self.train.1.len().div_ceil(self.cfg.batch_size) as u64;
        self.opt = r.optimizer("optimizer", &self.params, r.step * batches)?;
        self.probe_rng = r.rng("probe_rng")?;
        self.epoch = r.step as usize;
        sync(&mut self.net, &self.params)
    }

    /// One epoch over the shuffled training split, then its report.
    pub fn run_epoch(&mut self) -> Result<EpochReport> {
        let cfg = self.cfg.clone();
        let input = self.net.shape.input;
        let start = std::time::Instant::now();
        let (xtr, ytr) = (&self.train.0, &self.train.1);
        let order = permutation(
            ytr.len(),
            &mut rng_for(cfg.seed, Stream::Shuffle, self.epoch as u64),
        );
        let (mut loss_sum, mut batches) = (0.0, 0);
        let mut last = None;
        for idx in order.chunks(cfg.batch_size) {
            let b = idx.len();
            let xs: Vec<f64> = idx
                .iter()
                .flat_map(|&i| xtr[i * input..(i + 1) * input].iter().copied())
                .collect();
            let ys: Vec<usize> = idx.iter().map(|&i| ytr[i]).collect();
            let x = Planar::real(b, input, &xs);
            let net = &self.net;
            let u = net.relax(&x, &ys, cfg.t1)?;
            loss_sum += net.loss(&u[u.len() - 1].map(act), &ys)?;
            batches += 1;
            let g = match cfg.rule {
                Rule::Ep { estimator, beta } => {
                    neuron_estimate(net, &x, &ys, &u, estimator, beta, cfg.t2)?
                }
                Rule::Rbp => rbp(net, &ys, &u)?,
                Rule::Bptt => bptt(net, &ys, &u, cfg.t2)?,
            };
            let mut grads = weight_gradient(net, &x, &ys, &u, &g)?;
            if cfg.homeostasis > 0.0 {
                let (_, h) = homeostasis::estimate(net, cfg.probes * b, &mut self.probe_rng)?;
                for (g, h) in grads.iter_mut().zip(&h) {
                    g.iter_mut()
                        .zip(h)
                        .for_each(|(g, h)| *g += cfg.homeostasis * h);
                }
            }
            if grads.iter().flatten().any(|v| !v.is_finite()) {
                return Err(Error::NonFinite(format!(
                    "EP: a gradient became NaN or infinite in epoch {}; lower the learning rate or beta",
                    self.epoch + 1
                )));
            }
            let tensors = grads
                .iter()
                .map(|g| Ok(Tensor::from_slice(g, g.len(), &Device::Cpu)?))
                .collect::<Result<Vec<_>>>()?;
            self.opt
                .step(&self.params, &grads_for(&self.params, &tensors)?)?;
            sync(&mut self.net, &self.params)?;
            last = Some((x, ys));
        }
        self.epoch += 1;
        // The estimate of the trained network on the epoch's last batch, against the exact gradient.
        let (x, ys) = last.expect("at least one batch");
        let net = &self.net;
        let u = net.relax(&x, &ys, cfg.t1)?;
        let d = rbp(net, &ys, &u)?;
        let g = match cfg.rule {
            Rule::Ep { estimator, beta } => {
                neuron_estimate(net, &x, &ys, &u, estimator, beta, cfg.t2)?
            }
            Rule::Rbp => d.clone(),
            Rule::Bptt => bptt(net, &ys, &u, cfg.t2)?,
        };
        let agree = agreement(
            &weight_gradient(net, &x, &ys, &u, &g)?,
            &weight_gradient(net, &x, &ys, &u, &d)?,
            &g,
            &d,
            ys.len(),
        );
        Ok(EpochReport {
            epoch: self.epoch,
            train_loss: loss_sum / batches as f64,
            test_accuracy: accuracy(net, &self.test.0, &self.test.1, cfg.t1)?,
            agreement: agree,
            asymmetry: homeostasis::exact(net),
            fixed_point_residual: net.fixed_point_residual(&u, &x, &ys)?,
            seconds: start.elapsed().as_secs_f64(),
        })
    }
}

/// Trains on the digits; `on_epoch` after every epoch.
pub fn train(
    cfg: &EpConfig,
    on_epoch: &mut dyn FnMut(&EpochReport),
) -> Result<(EpNet, Vec<EpochReport>)> {
    let mut t = EpTrainer::new(cfg.clone())?;
    let mut reports = Vec::new();
    while t.epoch < cfg.epochs {
        let r = t.run_epoch()?;
        on_epoch(&r);
        reports.push(r);
    }
    Ok((t.net, reports))
}
