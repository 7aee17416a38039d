//! The probe for second-order differentiation.
//!
//! candle detaches gradients from the graph unless `CANDLE_GRAD_DO_NOT_DETACH=1` is set before the first
//! backward pass of a thread; without it a gradient of a gradient is silently wrong (d²/dx² of sum(x³) comes
//! back as 4x instead of 6x). Every second-order API calls [`require_second_order`] first. First-order passes
//! call [`gradients`], which detaches their gradients whatever the variable says; [`hvp`] and [`grad_of_inner`]
//! are the double backward of Hessian-vector products.

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

/// Whether a grad-of-grad is exact in this thread: checks d²/dx² sum((x²)²) = 12x² on a tiny tensor. The probe
/// needs a composition: detaching cuts only the gradient flowing into a node, so for a single op such as x³ the
/// second derivative still arrives through x itself and comes out right either way; here a detached pass gives 4x².
pub fn second_order_enabled() -> bool {
    probe(|y| y.backward()).unwrap_or(false)
}

/// The check, with the first backward pass given.
fn probe(first: impl Fn(&Tensor) -> candle_core::Result<GradStore>) -> candle_core::Result<bool> {
    let x = Var::from_slice(&[1.0f64, 2.0, -3.0], 3, &Device::Cpu)?;
    let y = x.as_tensor().sqr()?.sqr()?.sum_all()?;
    let g = first(&y)?;
    let dx = g.get(x.as_tensor()).expect("x takes part in y").clone();
    let g2 = dx.sum_all()?.backward()?;
    let Some(d2) = g2.get(x.as_tensor()) else {
        return Ok(false);
    };
    let d2: Vec<f64> = d2.to_vec1()?;
    let want = [12.0, 48.0, 108.0];
    Ok(d2.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-9))
}

/// The second backward pass of a Hessian-vector product: the gradients of Σ⟨g, v⟩ over `pairs`, each g a gradient
/// that kept its graph ([`gradients`] with `keep_graph`) and v a constant of its shape, which is H·v for every
/// variable the g depend on. `None` when there are no pairs.
pub fn grad_of_inner<'a>(
    pairs: impl IntoIterator<Item = (&'a Tensor, &'a Tensor)>,
) -> Result<Option<GradStore>> {
    require_second_order()?;
    let mut dot: Option<Tensor> = None;
    for (g, v) in pairs {
        let term = crate::nn::fused::inner_with_constant(g, v)?;
        dot = Some(match dot {
            Some(d) => d.add(&term)?,
            None => term,
        });
    }
    dot.map(|d| Ok(d.backward()?)).transpose()
}

/// H·v for the Hessian of `loss` in `params`, `v` one direction per parameter (checked against their shapes),
/// by one double backward. `None` when the loss depends on none of them; a parameter it does not reach gets zeros.
pub fn hvp(loss: &Tensor, params: &[&Tensor], v: &[Tensor]) -> Result<Option<Vec<Tensor>>> {
    if v.len() != params.len() || v.iter().zip(params).any(|(a, p)| a.dims() != p.dims()) {
        return Err(Error::Shape(
            "hvp: one direction per parameter, of its shape".into(),
        ));
    }
    require_second_order()?;
    let g = gradients(loss, true)?;
    let pairs = params
        .iter()
        .zip(v)
        .filter_map(|(p, vp)| g.get(p).map(|gp| (gp, vp)));
    let Some(h) = grad_of_inner(pairs)? else {
        return Ok(None);
    };
    params
        .iter()
        .map(|p| match h.get(p) {
            Some(t) => Ok(t.clone()),
            None => Ok(p.zeros_like()?),
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
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
    fn hvp_equals_the_hessian_times_v() {
        // L = x₀² x₁ + x₁³ : H = [[2x₁, 2x₀], [2x₀, 6x₁]]; at (1, 2), v = (1, -1): Hv = (4 - 2, 2 - 12) = (2, -10).
        let x = Var::from_slice(&[1.0f64, 2.0], 2, &Device::Cpu).unwrap();
        let t = x.as_tensor();
        let (x0, x1) = (t.narrow(0, 0, 1).unwrap(), t.narrow(0, 1, 1).unwrap());
        let loss = (x0.sqr().unwrap().mul(&x1).unwrap() + x1.powf(3.0).unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
        let v = Tensor::new(&[1.0f64, -1.0], &Device::Cpu).unwrap();
        let hv = hvp(&loss, &[t], std::slice::from_ref(&v)).unwrap().unwrap();
        let hv = hv[0].to_vec1::<f64>().unwrap();
        assert!(
            (hv[0] - 2.0).abs() < 1e-12 && (hv[1] + 10.0).abs() < 1e-12,
            "{hv:?}"
        );
        // A parameter the loss does not reach gets zeros; none reached at all is None; shapes are checked.
        let other = Var::from_slice(&[5.0f64], 1, &Device::Cpu).unwrap();
        let w = Tensor::new(&[1.0f64], &Device::Cpu).unwrap();
        let both = hvp(&loss, &[t, other.as_tensor()], &[v.clone(), w.clone()])
            .unwrap()
            .unwrap();
        assert_eq!(both[1].to_vec1::<f64>().unwrap(), vec![0.0]);
        assert!(hvp(&loss, &[other.as_tensor()], std::slice::from_ref(&w))
            .unwrap()
            .is_none());
        assert!(hvp(&loss, &[t], std::slice::from_ref(&w)).is_err());
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

    #[test]
    fn the_probe_fails_on_a_detached_pass() {
        // A first pass that detaches its gradients (what a process without the variable runs) must fail the
        // probe, else a missing variable would give silently wrong second derivatives.
        assert!(!probe(|y| y.backward_detached()).unwrap());
        assert!(probe(|y| y.backward()).unwrap());
    }
}
