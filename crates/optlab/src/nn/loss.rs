//! Losses with PyTorch's reductions.

use crate::data::IGNORE;
use crate::nn::fused;
use crate::Result;
use candle_core::{Tensor, D};

/// Logits `[b, T, classes]` with labels `[b, T]` (a class per position) as `[bT, classes]` and `[bT]`; other
/// shapes unchanged.
fn per_position(logits: &Tensor, labels: &Tensor) -> Result<(Tensor, Tensor)> {
    if logits.rank() == 3 && labels.rank() == 2 {
        let (b, t, v) = logits.dims3()?;
        Ok((logits.reshape((b * t, v))?, labels.reshape(b * t)?))
    } else {
        Ok((logits.clone(), labels.clone()))
    }
}

/// Mean cross-entropy of `logits` `[b, classes]` against class indices `[b]` (PyTorch's `F.cross_entropy`); for
/// sequences, `[b, T, classes]` against `[b, T]`, the mean over all b·T positions. Labels equal to
/// [`crate::data::IGNORE`] (padding) are left out of the mean, as PyTorch's `ignore_index`.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let (logits, labels) = per_position(logits, labels)?;
    let ids: Vec<u32> = labels.to_vec1()?;
    let count = ids.iter().filter(|&&l| l != IGNORE).count().max(1);
    Ok((cross_entropy_rows(&logits, &ids)?.sum_all()? / count as f64)?)
}

/// The cross-entropy of each row of `logits` `[N, classes]` against `labels` (0 for [`IGNORE`]), `[N]`: one fused op
/// on the CPU in f32 and f64 (differentiable to any order), candle's composed ops elsewhere.
pub(crate) fn cross_entropy_rows(logits: &Tensor, labels: &[u32]) -> Result<Tensor> {
    if fused::fusable(logits) {
        fused::cross_entropy_rows(logits, labels)
    } else {
        fused::cross_entropy_rows_composed(logits, labels)
    }
}

/// Mean squared error over all elements (PyTorch's `F.mse_loss`).
pub fn mse(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    Ok(pred.sub(target)?.sqr()?.mean_all()?)
}

/// Number of rows (positions, for sequences) whose arg-max equals the label (never a padded position's).
pub fn correct(logits: &Tensor, labels: &Tensor) -> Result<usize> {
    let (logits, labels) = per_position(logits, labels)?;
    let pred = logits.argmax(D::Minus1)?;
    Ok(pred
        .eq(&labels)?
        .to_dtype(candle_core::DType::U32)?
        .sum_all()?
        .to_scalar::<u32>()? as usize)
}

/// softplus(x) = log(1 + eˣ), computed as max(x, 0) + log(1 + e^{−|x|}) (stable for every x).
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    Ok(x.relu()?
        .add(&x.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?)?)
}

/// σ(x) = 1/(1 + e^{−x}).
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    Ok(x.neg()?.exp()?.affine(1.0, 1.0)?.recip()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn cross_entropy_matches_hand_computation() {
        let logits = Tensor::new(&[[1.0f64, 2.0, 3.0], [0.0, 0.0, 0.0]], &Device::Cpu).unwrap();
        let labels = Tensor::new(&[2u32, 0], &Device::Cpu).unwrap();
        let l = cross_entropy(&logits, &labels)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        let lse = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
        let want = ((lse - 3.0) + 3f64.ln()) / 2.0;
        assert!((l - want).abs() < 1e-12);
        assert_eq!(correct(&logits, &labels).unwrap(), 2);
        // A padded position is left out of the mean and of the count.
        let labels = Tensor::new(&[2u32, IGNORE], &Device::Cpu).unwrap();
        let l = cross_entropy(&logits, &labels)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!((l - (lse - 3.0)).abs() < 1e-12);
        assert_eq!(correct(&logits, &labels).unwrap(), 1);
    }
}
