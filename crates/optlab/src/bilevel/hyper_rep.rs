//! Hyper-representation learning on the digits (P05's experiment, in small): the upper variables x are a tanh RNN
//! that reads each 8x8 image as a sequence of eight rows (h_t = tanh(W_ih r_t + W_hh h_{t−1} + b), the features are
//! h_8), the lower variables y a linear head on those features. The lower level fits the head on the training split,
//! g(x, y) = CE + (μ/2)‖y‖², strongly convex in y; the upper level is the head's cross-entropy on the validation
//! split. The RNN makes the upper level's smoothness grow with its weights (the unbounded smoothness BO-REP is
//! for). Minibatches are drawn with replacement by seeded draw numbers.

use super::borep::{Batch, StochasticBilevel};
use super::data::{digits_splits, Split};
use crate::nn::loss::cross_entropy;
use crate::rng::{rng_for, Stream};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use rand::Rng as _;

const ROWS: usize = 8;
const CLASSES: usize = 10;

/// The task's settings.
#[derive(Debug, Clone)]
pub struct HyperRepConfig {
    /// RNN hidden units.
    pub hidden: usize,
    /// The head's L2 strength μ.
    pub mu: f64,
    /// Minibatch size of both levels.
    pub batch: usize,
    /// The split, the initialization and the draws.
    pub seed: u64,
}

impl Default for HyperRepConfig {
    fn default() -> Self {
        HyperRepConfig {
            hidden: 32,
            mu: 0.01,
            batch: 64,
            seed: 0,
        }
    }
}

/// The task with its data.
#[derive(Debug)]
pub struct HyperRep {
    cfg: HyperRepConfig,
    train: Split,
    val: Split,
    test: Split,
}

impl HyperRep {
    pub fn new(cfg: HyperRepConfig) -> Result<Self> {
        if cfg.hidden == 0 || cfg.batch == 0 || !(cfg.mu.is_finite() && cfg.mu > 0.0) {
            return Err(Error::invalid(format!(
                "hyper-rep: hidden={} and batch={} must be at least 1 and mu={} positive (the head's strong convexity)",
                cfg.hidden, cfg.batch, cfg.mu
            )));
        }
        let s = digits_splits(cfg.seed)?;
        let f32 = |sp: Split| -> Result<Split> {
            Ok(Split {
                x: sp.x.to_dtype(DType::F32)?,
                labels: sp.labels,
            })
        };
        Ok(HyperRep {
            train: f32(s.train)?,
            val: f32(s.val)?,
            test: f32(s.test)?,
            cfg,
        })
    }

    /// Sizes of x (RNN) and y (head).
    pub fn dims(&self) -> (usize, usize) {
        let h = self.cfg.hidden;
        (h * ROWS + h * h + h, (h + 1) * CLASSES)
    }

    /// The RNN's last hidden state for images `[b, 64]`.
    fn features(&self, x: &Tensor, images: &Tensor) -> Result<Tensor> {
        let h = self.cfg.hidden;
        let w_ih = x.narrow(0, 0, h * ROWS)?.reshape((h, ROWS))?;
        let w_hh = x.narrow(0, h * ROWS, h * h)?.reshape((h, h))?;
        let bias = x.narrow(0, h * ROWS + h * h, h)?;
        let b = images.dims()[0];
        let seq = images.reshape((b, ROWS, ROWS))?;
        let mut state = Tensor::zeros((b, h), x.dtype(), x.device())?;
        for t in 0..ROWS {
            let row = seq.narrow(1, t, 1)?.squeeze(1)?;
            let pre = row
                .matmul(&w_ih.t()?)?
                .add(&state.matmul(&w_hh.t()?)?)?
                .broadcast_add(&bias)?;
            state = pre.tanh()?;
        }
        Ok(state)
    }

    fn logits(&self, x: &Tensor, y: &Tensor, images: &Tensor) -> Result<Tensor> {
        let h = self.cfg.hidden;
        let w = y.narrow(0, 0, h * CLASSES)?.reshape((h, CLASSES))?;
        let b = y.narrow(0, h * CLASSES, CLASSES)?;
        Ok(self.features(x, images)?.matmul(&w)?.broadcast_add(&b)?)
    }

    fn pick(&self, split: &Split, batch: Batch, stream_level: u64) -> Result<Split> {
        match batch {
            Batch::Full => Ok(split.clone()),
            Batch::Draw(k) => {
                let mut rng = rng_for(self.cfg.seed, Stream::Shuffle, (k << 1) | stream_level);
                let n = split.len();
                let idx: Vec<usize> = (0..self.cfg.batch).map(|_| rng.gen_range(0..n)).collect();
                split.rows(&idx)
            }
        }
    }

    /// Loss and accuracy of (x, y) on the test split.
    pub fn test_metrics(&self, x: &Tensor, y: &Tensor) -> Result<(f64, f64)> {
        let logits = self.logits(x, y, &self.test.x)?;
        let loss = cross_entropy(&logits, &self.test.labels)?.to_dtype(DType::F64)?;
        Ok((loss.to_scalar()?, self.test.accuracy(&logits)?))
    }

    /// Accuracy of (x, y) on the validation split.
    pub fn val_accuracy(&self, x: &Tensor, y: &Tensor) -> Result<f64> {
        self.val.accuracy(&self.logits(x, y, &self.val.x)?)
    }
}

impl StochasticBilevel for HyperRep {
    /// PyTorch's RNN initialization U(−1/√h, 1/√h) for x, a zero head for y.
    fn init(&self) -> Result<(Tensor, Tensor)> {
        let (nx, ny) = self.dims();
        let bound = 1.0 / (self.cfg.hidden as f64).sqrt();
        let mut rng = rng_for(self.cfg.seed, Stream::Init, 0);
        let x: Vec<f32> = (0..nx)
            .map(|_| rng.gen_range(-bound..bound) as f32)
            .collect();
        Ok((
            Tensor::from_vec(x, nx, &Device::Cpu)?,
            Tensor::zeros(ny, DType::F32, &Device::Cpu)?,
        ))
    }

    fn upper(&self, x: &Tensor, y: &Tensor, batch: Batch) -> Result<Tensor> {
        let b = self.pick(&self.val, batch, 1)?;
        cross_entropy(&self.logits(x, y, &b.x)?, &b.labels)
    }

    fn lower(&self, x: &Tensor, y: &Tensor, batch: Batch) -> Result<Tensor> {
        let b = self.pick(&self.train, batch, 0)?;
        let ce = cross_entropy(&self.logits(x, y, &b.x)?, &b.labels)?;
        Ok(ce.add(&y.sqr()?.sum_all()?.affine(0.5 * self.cfg.mu, 0.0)?)?)
    }
}
