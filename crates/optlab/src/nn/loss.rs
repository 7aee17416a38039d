//! Losses with PyTorch's reductions.

use crate::data::IGNORE;
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
    let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let ids: Vec<u32> = labels.to_vec1()?;
    if !ids.contains(&IGNORE) {
        let picked = logp.gather(&labels.unsqueeze(1)?, 1)?;
        return Ok(picked.mean_all()?.neg()?);
    }
    let keep: Vec<f64> = ids
        .iter()
        .map(|&l| f64::from(u8::from(l != IGNORE)))
        .collect();
    let count = keep.iter().sum::<f64>().max(1.0);
    let safe: Vec<u32> = ids
        .iter()
        .map(|&l| if l == IGNORE { 0 } else { l })
        .collect();
    let dev = logits.device();
    let safe = Tensor::from_vec(safe, (ids.len(), 1), dev)?;
    let keep = Tensor::from_vec(keep, (ids.len(), 1), dev)?.to_dtype(logp.dtype())?;
    let picked = (logp.gather(&safe, 1)? * keep)?;
    Ok((picked.sum_all()? / count)?.neg()?)
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
