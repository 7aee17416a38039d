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

/// Clamps every gradient element to [-clip, clip] (PyTorch's `clip_grad_value_`).
pub fn clip_grad_value(params: &[Param], grads: &mut GradStore, clip: f64) -> Result<()> {
    for p in params {
        if let Some(g) = grads.remove(p.tensor()) {
            grads.insert(p.tensor(), g.clamp(-clip, clip)?);
        }
    }
    Ok(())
}

/// Adaptive gradient clipping (Brock et al. 2021, NFNets): for each unit (output row of a matrix or kernel,
/// the whole tensor for vectors), if ‖g‖ / max(‖w‖, eps) > clipping, scale g to clipping · max(‖w‖, eps).
pub fn adaptive_clip(
    params: &[Param],
    grads: &mut GradStore,
    clipping: f64,
    eps: f64,
) -> Result<()> {
    for p in params {
        let Some(g) = grads.remove(p.tensor()) else {
            continue;
        };
        let w = p.tensor();
        let rows = if w.rank() > 1 { w.dims()[0] } else { 1 };
        let (g2, w2) = (g.reshape((rows, ()))?, w.reshape((rows, ()))?);
        let gn = g2.sqr()?.sum_keepdim(1)?.sqrt()?;
        let wn = w2.sqr()?.sum_keepdim(1)?.sqrt()?.maximum(eps)?;
        let max_norm = wn.affine(clipping, 0.0)?;
        // factor = min(1, max_norm / ‖g‖), with ‖g‖ = 0 giving 1.
        let factor = max_norm.div(&gn.maximum(1e-30)?)?.minimum(1.0)?;
        let clipped = g2.broadcast_mul(&factor)?.reshape(w.dims())?;
        grads.insert(p.tensor(), clipped);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor, Var};

    fn setup() -> (Vec<Param>, GradStore) {
        let w = Var::new(&[[3.0f64, 4.0], [0.3, 0.4]], &Device::Cpu).unwrap();
        let b = Var::new(&[1.0f64, 1.0], &Device::Cpu).unwrap();
        let gw = Tensor::new(&[[1.0f64, 0.0], [6.0, 8.0]], &Device::Cpu).unwrap();
        let gb = Tensor::new(&[0.3f64, -0.4], &Device::Cpu).unwrap();
        // loss = <w, gw> + <b, gb> has exactly these gradients.
        let loss = w
            .mul(&gw)
            .unwrap()
            .sum_all()
            .unwrap()
            .add(&b.mul(&gb).unwrap().sum_all().unwrap())
            .unwrap();
        let grads = loss.backward().unwrap();
        (
            vec![
                Param {
                    name: "w".into(),
                    var: w,
                },
                Param {
                    name: "b".into(),
                    var: b,
                },
            ],
            grads,
        )
    }

    #[test]
    fn norm_value_and_adaptive_clipping() {
        let (params, mut grads) = setup();
        // ‖(1,0,6,8,0.3,-0.4)‖ = sqrt(101.25)
        assert!((global_grad_norm(&params, &grads).unwrap() - 101.25f64.sqrt()).abs() < 1e-12);
        let before = clip_grad_norm(&params, &mut grads, 1.0).unwrap();
        assert!((before - 101.25f64.sqrt()).abs() < 1e-12);
        assert!((global_grad_norm(&params, &grads).unwrap() - 1.0).abs() < 1e-5);

        let (params, mut grads) = setup();
        clip_grad_value(&params, &mut grads, 0.35).unwrap();
        let gb: Vec<f64> = grads.get(params[1].tensor()).unwrap().to_vec1().unwrap();
        assert_eq!(gb, vec![0.3, -0.35]);

        let (params, mut grads) = setup();
        adaptive_clip(&params, &mut grads, 0.5, 1e-3).unwrap();
        let gw: Vec<Vec<f64>> = grads.get(params[0].tensor()).unwrap().to_vec2().unwrap();
        // Row 0: ‖g‖=1 ≤ 0.5·‖w‖=2.5, unchanged. Row 1: ‖g‖=10 > 0.5·0.5=0.25, scaled to norm 0.25.
        assert_eq!(gw[0], vec![1.0, 0.0]);
        assert!((gw[1][0] - 0.15).abs() < 1e-12 && (gw[1][1] - 0.2).abs() < 1e-12);
        // The bias vector is one unit: ‖g‖=0.5 ≤ 0.5·‖b‖=0.707, unchanged.
        let gb: Vec<f64> = grads.get(params[1].tensor()).unwrap().to_vec1().unwrap();
        assert_eq!(gb, vec![0.3, -0.4]);
    }
}
