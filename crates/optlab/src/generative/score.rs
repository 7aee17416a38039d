//! Score functions s(x, t) ≈ ∇ log p_t(x) over batches of points (row-major `[n, dim]` f64): the exact score of
//! a mixture target, and a time-conditioned network trained by denoising score matching. The network predicts
//! the noise, ε̂(x_t, t), and its score is −ε̂/σ(t) (score_sde's and DDPM's parametrization): its DSM loss with
//! the weight λ(t) = σ²(t) is E‖ε̂(α x_0 + σ ε, t) − ε‖².

use super::mixture::Mixture;
use super::process::Process;
use crate::nn::{ModelSpec, Sequential};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};

/// A score function over batches.
pub trait ScoreFn {
    /// The dimension of a point.
    fn dim(&self) -> usize;
    /// The score of every row of `x` (`[n, dim]`, row-major) at time t.
    fn score(&self, x: &[f64], t: f64) -> Result<Vec<f64>>;

    /// The score of row i of `x` at time `t[i]` (one time per row); row by row unless the score batches it.
    fn score_at(&self, x: &[f64], t: &[f64]) -> Result<Vec<f64>> {
        let d = self.dim();
        let mut out = Vec::with_capacity(x.len());
        for (row, &ti) in x.chunks(d).zip(t) {
            out.extend(self.score(row, ti)?);
        }
        Ok(out)
    }
}

/// The exact score of a mixture under a process.
#[derive(Debug, Clone, Copy)]
pub struct ExactScore<'a> {
    pub mixture: &'a Mixture,
    pub process: Process,
}

impl ScoreFn for ExactScore<'_> {
    fn dim(&self) -> usize {
        self.mixture.dim
    }

    fn score(&self, x: &[f64], t: f64) -> Result<Vec<f64>> {
        Ok(self.mixture.score(x, &self.process, t))
    }
}

/// Sinusoidal features of t ∈ [0, 1] appended to the input: sin(πkt), cos(πkt) for k = 1..=4.
pub const TIME_FEATURES: usize = 8;

/// The [`TIME_FEATURES`] features of each time, row-major `[n, 8]`.
pub fn time_features(t: &[f64]) -> Vec<f64> {
    t.iter()
        .flat_map(|&t| {
            (1..=TIME_FEATURES / 2).flat_map(move |k| {
                let a = std::f64::consts::PI * k as f64 * t;
                [a.sin(), a.cos()]
            })
        })
        .collect()
}

/// A time-conditioned MLP predicting the noise of x_t.
#[derive(Debug)]
pub struct ScoreNet {
    pub net: Sequential,
    pub process: Process,
    pub dim: usize,
}

impl ScoreNet {
    /// An MLP of `spec` (e.g. `mlp:hidden=128-128-128,act=gelu`) from dim + 8 inputs to dim outputs.
    pub fn new(
        spec: &ModelSpec,
        dim: usize,
        process: Process,
        seed: u64,
        dtype: DType,
    ) -> Result<Self> {
        if dim == 0 {
            return Err(Error::invalid(
                "score network: the data dimension must be at least 1",
            ));
        }
        Ok(ScoreNet {
            net: Sequential::new(spec, &[dim + TIME_FEATURES], dim, seed, dtype)?,
            process,
            dim,
        })
    }

    /// The network's input for points `x` `[n, dim]` at per-row times `t` (the features computed once when every
    /// row has the same time, as in a sampler's step).
    fn inputs(&self, x: &Tensor, t: &[f64]) -> Result<Tensor> {
        let shared = t.windows(2).all(|w| w[0] == w[1]);
        let rows = if shared { &t[..t.len().min(1)] } else { t };
        let f = Tensor::from_vec(
            time_features(rows),
            (rows.len(), TIME_FEATURES),
            &Device::Cpu,
        )?
        .to_dtype(x.dtype())?
        .broadcast_as((t.len(), TIME_FEATURES))?;
        Ok(Tensor::cat(&[x, &f], 1)?)
    }

    /// ε̂(x, t) for a batch `x` `[n, dim]` (any float dtype; converted to the network's) at per-row times.
    pub fn noise(&self, x: &Tensor, t: &[f64]) -> Result<Tensor> {
        let (n, d) = x.dims2()?;
        if d != self.dim || n != t.len() {
            return Err(Error::Shape(format!(
                "score network of dimension {}: a batch {:?} with {} times",
                self.dim,
                x.dims(),
                t.len()
            )));
        }
        self.net
            .forward(&self.inputs(&x.to_dtype(self.net.dtype())?, t)?)
    }
}

impl ScoreFn for ScoreNet {
    fn dim(&self) -> usize {
        self.dim
    }

    fn score(&self, x: &[f64], t: f64) -> Result<Vec<f64>> {
        self.score_at(x, &vec![t; x.len() / self.dim])
    }

    /// One forward pass of the batch, whatever its times.
    fn score_at(&self, x: &[f64], t: &[f64]) -> Result<Vec<f64>> {
        let n = t.len();
        if x.len() != n * self.dim {
            return Err(Error::Shape(format!(
                "{} values for {n} points of dimension {}",
                x.len(),
                self.dim
            )));
        }
        let xt = Tensor::from_slice(x, (n, self.dim), &Device::Cpu)?;
        let eps: Vec<f64> = self
            .noise(&xt, t)?
            .to_dtype(DType::F64)?
            .flatten_all()?
            .to_vec1()?;
        Ok(eps
            .iter()
            .enumerate()
            .map(|(k, e)| -e / self.process.sigma(t[k / self.dim]))
            .collect())
    }
}
