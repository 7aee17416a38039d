//! The probe for second-order differentiation.
//!
//! candle detaches gradients from the graph unless `CANDLE_GRAD_DO_NOT_DETACH=1` is set before the first
//! backward pass of a thread; without it a gradient of a gradient is silently wrong (d²/dx² of sum(x³) comes
//! back as 4x instead of 6x). Every second-order API calls [`require_second_order`] first. First-order passes
//! call [`gradients`], which detaches their gradients whatever the variable says.

use crate::{Error, Result};
use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};

/// The gradients of `loss` by one backward pass. With `keep_graph` they keep their graph (when
/// [`second_order_enabled`]), so that a step can differentiate them again, as AdaHessian's does; without it
/// every intermediate gradient is detached and freed as soon as it has been used: the same values in less
/// memory, which is what first-order training wants.
pub fn gradients(loss: &Tensor, keep_graph: bool) -> Result<GradStore> {
    Ok(if keep_graph {
        loss.backward()?
    } else {
        loss.backward_detached()?
    })
}

/// Whether a grad-of-grad is exact in this thread: checks d²/dx² sum(x³) = 6x on a tiny tensor.
pub fn second_order_enabled() -> bool {
    probe().unwrap_or(false)
}

fn probe() -> candle_core::Result<bool> {
    let x = Var::from_slice(&[1.0f64, 2.0, -3.0], 3, &Device::Cpu)?;
    let y = x.as_tensor().powf(3.0)?.sum_all()?;
    let g = y.backward()?;
    let dx = g.get(x.as_tensor()).expect("x takes part in y").clone();
    let g2 = dx.sum_all()?.backward()?;
    let Some(d2) = g2.get(x.as_tensor()) else {
        return Ok(false);
    };
    let d2: Vec<f64> = d2.to_vec1()?;
    let want = [6.0, 12.0, -18.0];
    Ok(d2.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-9))
}

/// Returns [`Error::SecondOrderDisabled`] unless [`second_order_enabled`].
pub fn require_second_order() -> Result<()> {
    if second_order_enabled() {
        Ok(())
    } else {
        Err(Error::SecondOrderDisabled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detached_gradients_equal_kept_ones() {
        let x = Var::from_slice(&[1.0f64, 2.0, -3.0], 3, &Device::Cpu).unwrap();
        // x appears twice, so its gradient is accumulated: 3x² + 2x.
        let y = (x.as_tensor().powf(3.0).unwrap() + x.as_tensor().sqr().unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
        let g = |keep| {
            let s = gradients(&y, keep).unwrap();
            s.get(x.as_tensor()).unwrap().clone()
        };
        let want = vec![5.0, 16.0, 21.0];
        assert_eq!(g(false).to_vec1::<f64>().unwrap(), want);
        let kept = g(true);
        assert_eq!(kept.to_vec1::<f64>().unwrap(), want);
        // The kept one differentiates again: 6x + 2.
        let h = kept.sum_all().unwrap().backward().unwrap();
        let h = h.get(x.as_tensor()).unwrap().to_vec1::<f64>().unwrap();
        assert_eq!(h, vec![8.0, 14.0, -16.0]);
    }

    #[test]
    fn enabled_under_cargo_config_env() {
        // `.cargo/config.toml` sets CANDLE_GRAD_DO_NOT_DETACH=1 for every test process.
        assert_eq!(
            std::env::var("CANDLE_GRAD_DO_NOT_DETACH").as_deref(),
            Ok("1")
        );
        super::require_second_order().unwrap();
    }
}
