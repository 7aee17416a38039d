//! Normalization for small CNNs (P01, Qiao et al.): Weight Standardization, BatchNorm, GroupNorm and
//! Batch-Channel Normalization (with its estimated-statistics variant), as differentiable candle functions with
//! the official code's semantics (joe-siyuan-qiao/Batch-Channel-Normalization@0244c3e, WeightStandardization@d81e50d;
//! golden tests in tests/norm.rs against tools/reference/norm_fixtures.py).
//!
//! Inputs are [N, C, H, W] (or [N, C], read as [N, C, 1, 1]); every variance is biased unless stated.

use crate::{Error, Result};
use candle_core::{DType, Tensor, D};

/// The two official forms of Weight Standardization (both with the unbiased variance over the fan-in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsVariant {
    /// (w − mean)/√(var + 1e-5): P01's BCN models (imagenet/models/layers.py).
    VarEps,
    /// (w − mean)/(√var + 1e-5): the WeightStandardization repository's layer.
    StdEps,
}

/// Standardizes a weight per output channel (first dimension) over its fan-in. Gradients flow through the mean
/// and the deviation.
pub fn weight_standardize(w: &Tensor, variant: WsVariant) -> Result<Tensor> {
    let dims = w.dims().to_vec();
    let out = dims[0];
    let n: usize = dims[1..].iter().product();
    if n < 2 {
        return Err(Error::Shape(format!(
            "weight standardization needs a fan-in of at least 2 (weight shape {dims:?})"
        )));
    }
    let flat = w.reshape((out, n))?;
    let wc = flat.broadcast_sub(&flat.mean_keepdim(1)?)?;
    let var = (wc.sqr()?.sum_keepdim(1)? / (n - 1) as f64)?;
    let denom = match variant {
        WsVariant::VarEps => (var + 1e-5)?.sqrt()?,
        WsVariant::StdEps => (var.sqrt()? + 1e-5)?,
    };
    Ok(wc.broadcast_div(&denom)?.reshape(dims)?)
}

/// [N, C] → [N, C, 1, 1]; [N, C, H, W] unchanged.
fn as_4d(x: &Tensor) -> Result<Tensor> {
    match x.rank() {
        4 => Ok(x.clone()),
        2 => Ok(x.unsqueeze(2)?.unsqueeze(3)?),
        r => Err(Error::Shape(format!(
            "normalization expects [N, C] or [N, C, H, W] inputs, got rank {r}"
        ))),
    }
}

/// Per-channel mean over N, H, W, kept as [1, C, 1, 1].
fn channel_mean(x: &Tensor) -> Result<Tensor> {
    Ok(x.mean_keepdim(0)?.mean_keepdim(2)?.mean_keepdim(3)?)
}

fn per_channel(v: &Tensor, c: usize) -> Result<Tensor> {
    Ok(v.reshape((1, c, 1, 1))?)
}

/// Running statistics of a batch norm (PyTorch's buffers).
#[derive(Debug, Clone)]
pub struct RunningStats {
    pub mean: Tensor,
    pub var: Tensor,
    /// PyTorch's momentum (weight of the new batch), 0.1.
    pub momentum: f64,
    pub batches: u64,
}

impl RunningStats {
    /// Mean 0, variance 1.
    pub fn new(c: usize, device: &candle_core::Device) -> Result<Self> {
        Ok(RunningStats {
            mean: Tensor::zeros(c, DType::F32, device)?,
            var: Tensor::ones(c, DType::F32, device)?,
            momentum: 0.1,
            batches: 0,
        })
    }

    /// A training batch's per-channel mean and biased variance over `count` values per channel: checks there is
    /// more than one (`dims`, the input's shape, for the message; the statistics are then left as they were) and
    /// moves the running statistics by `momentum`,
    /// the unbiased variance into the running variance (PyTorch's update).
    fn record(&mut self, mean: &Tensor, var: &Tensor, count: f64, dims: &[usize]) -> Result<()> {
        if count < 2.0 {
            return Err(Error::Shape(format!(
                "batch norm in training needs more than one value per channel (input {dims:?})"
            )));
        }
        let k = self.momentum;
        let (bm, bv) = (mean.detach().flatten_all()?, var.detach().flatten_all()?);
        self.mean = ((&self.mean * (1.0 - k))? + (bm * k)?)?;
        self.var = ((&self.var * (1.0 - k))? + (bv * (k * count / (count - 1.0)))?)?;
        self.batches += 1;
        Ok(())
    }
}

/// (x − mean)/√(var + 1e-5) · weight + bias, every operand broadcast against x.
fn normalize_affine(
    x: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
) -> Result<Tensor> {
    Ok(x.broadcast_sub(mean)?
        .broadcast_div(&(var + 1e-5)?.sqrt()?)?
        .broadcast_mul(weight)?
        .broadcast_add(bias)?)
}

/// `nn.BatchNorm2d` (eps 1e-5): with `train`, batch statistics and a running update (the unbiased batch variance
/// enters the running variance); otherwise the running statistics.
pub fn batch_norm(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    stats: &mut RunningStats,
    train: bool,
) -> Result<Tensor> {
    let shape = x.dims().to_vec();
    let x4 = as_4d(x)?;
    let (n, c, h, w) = x4.dims4()?;
    let (mean, var) = if train {
        let mean = channel_mean(&x4)?;
        let var = channel_mean(&x4.broadcast_sub(&mean)?.sqr()?)?;
        stats.record(&mean, &var, (n * h * w) as f64, &shape)?;
        (mean, var)
    } else {
        (per_channel(&stats.mean, c)?, per_channel(&stats.var, c)?)
    };
    let (w, b) = (per_channel(weight, c)?, per_channel(bias, c)?);
    Ok(normalize_affine(&x4, &mean, &var, &w, &b)?.reshape(shape)?)
}

/// `nn.BatchNorm1d` over the rows of x `[..., C]` (all leading dimensions are rows, e.g. the B·T positions of a
/// transformer), eps 1e-5, with the rows where `keep` is false (padding) left out of the statistics; the sums
/// over rows are products with a row of weights (candle's reductions over leading dimensions are slow).
pub fn batch_norm_rows(
    x: &Tensor,
    keep: Option<&[bool]>,
    weight: &Tensor,
    bias: &Tensor,
    stats: &mut RunningStats,
    train: bool,
) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let c = *dims.last().unwrap_or(&0);
    let rows = x.elem_count() / c.max(1);
    let x2 = x.reshape((rows, c))?;
    let (mean, var) = if train {
        let m: Vec<f64> = match keep {
            Some(k) if k.len() == rows => k.iter().map(|&b| f64::from(u8::from(b))).collect(),
            Some(k) => {
                return Err(Error::Shape(format!(
                    "batch norm: {} padding flags for {rows} rows",
                    k.len()
                )))
            }
            None => vec![1.0; rows],
        };
        let count = m.iter().sum::<f64>();
        let w = (Tensor::from_vec(m, (1, rows), x.device())? / count)?.to_dtype(x.dtype())?;
        let mean = w.matmul(&x2)?;
        let var = w.matmul(&x2.broadcast_sub(&mean)?.sqr()?)?;
        stats.record(&mean, &var, count, &dims)?;
        (mean, var)
    } else {
        (stats.mean.reshape((1, c))?, stats.var.reshape((1, c))?)
    };
    Ok(normalize_affine(&x2, &mean, &var, weight, bias)?.reshape(dims)?)
}

/// Normalizes each (sample, group) slice of [N, C, H, W] by its own mean and biased variance (eps 1e-5), no affine.
fn group_standardize(x4: &Tensor, groups: usize) -> Result<Tensor> {
    let (n, c, h, w) = x4.dims4()?;
    if groups == 0 || !c.is_multiple_of(groups) {
        return Err(Error::Shape(format!(
            "{groups} groups do not divide {c} channels"
        )));
    }
    let g = x4.reshape((n, groups, (c / groups) * h * w))?;
    let mean = g.mean_keepdim(D::Minus1)?;
    let gc = g.broadcast_sub(&mean)?;
    let var = gc.sqr()?.mean_keepdim(D::Minus1)?;
    Ok(gc
        .broadcast_div(&(var + 1e-5)?.sqrt()?)?
        .reshape((n, c, h, w))?)
}

/// `nn.GroupNorm(groups, C)` (eps 1e-5, per-channel affine).
pub fn group_norm(x: &Tensor, groups: usize, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let shape = x.dims().to_vec();
    let x4 = as_4d(x)?;
    let c = x4.dims()[1];
    let xhat = group_standardize(&x4, groups)?;
    let y = xhat
        .broadcast_mul(&per_channel(weight, c)?)?
        .broadcast_add(&per_channel(bias, c)?)?;
    let y = super::tape::probe(y, |probe| super::tape::Site::Affine {
        weight: weight.id(),
        bias: bias.id(),
        normalized: xhat.detach(),
        channel_axis: 1,
        probe,
    })?;
    Ok(y.reshape(shape)?)
}

/// The channel step of BCN: batch statistics (`nn.BatchNorm2d`) or estimated ones (`EstBN`, moving at `speed`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ChannelStats {
    Batch,
    Estimated { speed: f64 },
}

/// The parameters of a Batch-Channel Normalization layer.
#[derive(Debug, Clone)]
pub struct BcnParams<'a> {
    /// The batch-norm step's per-channel affine.
    pub bn_weight: &'a Tensor,
    pub bn_bias: &'a Tensor,
    /// The per-group affine, one pair per group.
    pub group_weight: &'a Tensor,
    pub group_bias: &'a Tensor,
    pub groups: usize,
    pub channel: ChannelStats,
}

/// Batch-Channel Normalization: batch norm over channels (own affine; running statistics in eval), then each
/// (sample, group) standardized by its own statistics (also in eval), then a per-group affine.
pub fn bcn(x: &Tensor, p: &BcnParams, stats: &mut RunningStats, train: bool) -> Result<Tensor> {
    let shape = x.dims().to_vec();
    let h = match p.channel {
        ChannelStats::Batch => batch_norm(x, p.bn_weight, p.bn_bias, stats, train)?,
        ChannelStats::Estimated { speed } => {
            est_batch_norm(x, p.bn_weight, p.bn_bias, stats, speed, train)?
        }
    };
    let h = as_4d(&h)?;
    let (n, c, hh, ww) = h.dims4()?;
    let z = group_standardize(&h, p.groups)?.reshape((n, p.groups, (c / p.groups) * hh * ww))?;
    let gw = p.group_weight.reshape((1, p.groups, 1))?;
    let gb = p.group_bias.reshape((1, p.groups, 1))?;
    Ok(z.broadcast_mul(&gw)?.broadcast_add(&gb)?.reshape(shape)?)
}

/// The estimated-statistics batch norm of BCN (`EstBN`): in training the running mean and variance move by
/// `speed` towards the batch mean and the batch's mean squared deviation from the OLD running mean (no
/// gradient), and the output is normalized with the UPDATED statistics, which are constants for autograd.
pub fn est_batch_norm(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    stats: &mut RunningStats,
    speed: f64,
    train: bool,
) -> Result<Tensor> {
    let shape = x.dims().to_vec();
    let x4 = as_4d(x)?;
    let c = x4.dims()[1];
    if train {
        let xd = x4.detach();
        let mu = channel_mean(&xd)?.flatten_all()?;
        let v = channel_mean(&xd.broadcast_sub(&per_channel(&stats.mean, c)?)?.sqr()?)?
            .flatten_all()?;
        stats.mean = ((&stats.mean * (1.0 - speed))? + (mu * speed)?)?;
        stats.var = ((&stats.var * (1.0 - speed))? + (v * speed)?)?;
    }
    let (mean, var) = (per_channel(&stats.mean, c)?, per_channel(&stats.var, c)?);
    let (w, b) = (per_channel(weight, c)?, per_channel(bias, c)?);
    Ok(normalize_affine(&x4, &mean, &var, &w, &b)?.reshape(shape)?)
}

/// Running statistics as state-dict buffers (PyTorch's `running_mean`, `running_var`, `num_batches_tracked`)
/// under `prefix`.
pub fn stats_buffers(s: &RunningStats, prefix: &str) -> Result<Vec<(String, Tensor)>> {
    Ok(vec![
        (format!("{prefix}running_mean"), s.mean.clone()),
        (format!("{prefix}running_var"), s.var.clone()),
        (
            format!("{prefix}num_batches_tracked"),
            Tensor::new(s.batches as i64, &candle_core::Device::Cpu)?,
        ),
    ])
}

/// Loads one of [`stats_buffers`]' entries; `false` when `name` is not one of them.
pub fn load_stats_buffer(
    s: &mut RunningStats,
    prefix: &str,
    name: &str,
    t: &Tensor,
) -> Result<bool> {
    let Some(rest) = name.strip_prefix(prefix) else {
        return Ok(false);
    };
    let dtype = s.mean.dtype();
    match rest {
        "running_mean" | "running_var" => {
            if t.dims() != s.mean.dims() {
                return Err(Error::Shape(format!(
                    "'{name}' has shape {:?} in the file but {:?} in the model",
                    t.dims(),
                    s.mean.dims()
                )));
            }
            let v = t.to_dtype(dtype)?;
            if rest == "running_mean" {
                s.mean = v;
            } else {
                s.var = v;
            }
        }
        "num_batches_tracked" => {
            s.batches = t
                .to_dtype(DType::F64)?
                .flatten_all()?
                .to_vec1::<f64>()?
                .first()
                .copied()
                .unwrap_or(0.0) as u64;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// One value per channel (a single example, or every row but one padded) is refused, statistics untouched.
    #[test]
    fn batch_norm_needs_two_values_per_channel() {
        let dev = Device::Cpu;
        let (w, b) = (
            Tensor::ones(3, DType::F32, &dev).unwrap(),
            Tensor::zeros(3, DType::F32, &dev).unwrap(),
        );
        let mut s = RunningStats::new(3, &dev).unwrap();
        let one = Tensor::ones((1, 3), DType::F32, &dev).unwrap();
        let e = batch_norm(&one, &w, &b, &mut s, true).unwrap_err();
        assert!(e.to_string().contains("more than one value"), "{e}");
        let rows = Tensor::ones((2, 2, 3), DType::F32, &dev).unwrap();
        let keep = [true, false, false, false];
        let e = batch_norm_rows(&rows, Some(&keep), &w, &b, &mut s, true).unwrap_err();
        assert!(e.to_string().contains("more than one value"), "{e}");
        assert_eq!(s.batches, 0);
        let kept: Vec<f32> = s.var.to_vec1().unwrap();
        assert_eq!(kept, vec![1.0; 3]);
        let keep = [true, true, false, false];
        batch_norm_rows(&rows, Some(&keep), &w, &b, &mut s, true).unwrap();
        assert_eq!(s.batches, 1);
    }
}
