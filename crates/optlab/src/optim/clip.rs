//! Gradient clipping by global norm (PyTorch's `clip_grad_norm_`) and the global gradient norm itself.

use super::kernel::{sum_squares, with_slice};
use crate::nn::Param;
use crate::Result;
use candle_core::backprop::GradStore;

/// The l2 norm of all gradients together (f64 accumulation).
pub fn global_grad_norm(params: &[Param], grads: &GradStore) -> Result<f64> {
    let mut total = 0.0;
    for p in params {
        if let Some(g) = grads.get(p.tensor()) {
            total += with_slice(g, sum_squares)?;
        }
    }
    Ok(total.sqrt())
}

/// Scales all gradients by `max_norm / (norm + 1e-6)` when their global norm exceeds `max_norm`, as
/// `torch.nn.utils.clip_grad_norm_`. Returns the norm before clipping.
pub fn clip_grad_norm(params: &[Param], grads: &mut GradStore, max_norm: f64) -> Result<f64> {
    let norm = global_grad_norm(params, grads)?;
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for p in params {
            if let Some(g) = grads.remove(p.tensor()) {
                let scaled = g.affine(coef, 0.0)?;
                grads.insert(p.tensor(), scaled);
            }
        }
    }
    Ok(norm)
}
