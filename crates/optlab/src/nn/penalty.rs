//! The gradient penalty of WGAN-GP (Gulrajani et al. 2017) as the off-policy GAIL code of P04 applies it to its
//! discriminator (lionelblonde/liayn-pytorch, `agents/sam_agent.py`, `grad_pen`): at x̂ = ε·a + (1 − ε)·b with
//! ε ~ U(0, 1) per row, the penalty is scale · mean_rows φ(‖∇ₓD(x̂)‖₂ − target) with φ(z) = max(z, 0)² (one-sided,
//! the official default) or z² (two-sided); defaults scale 10, target 1. The input gradient keeps its graph, so the
//! penalty's own gradient in D's parameters comes from a double backward.

use crate::rng::Rng;
use crate::{Error, Result};
use candle_core::{Device, Tensor, Var, D};
use rand::Rng as _;

/// One- or two-sided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// max(‖∇‖ − target, 0)²: only gradients steeper than the target are penalized.
    OneSided,
    /// (‖∇‖ − target)².
    TwoSided,
}

/// The penalty's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradientPenalty {
    pub scale: f64,
    pub target: f64,
    pub side: Side,
}

impl Default for GradientPenalty {
    fn default() -> Self {
        GradientPenalty {
            scale: 10.0,
            target: 1.0,
            side: Side::OneSided,
        }
    }
}

/// ε ~ U(0, 1), one per row, as a `[rows, 1]` f64 tensor.
pub fn interpolation_weights(rows: usize, rng: &mut Rng) -> Result<Tensor> {
    let eps: Vec<f64> = (0..rows).map(|_| rng.gen::<f64>()).collect();
    Ok(Tensor::from_vec(eps, (rows, 1), &Device::Cpu)?)
}

impl GradientPenalty {
    /// The penalty of `critic` (a network mapping `[rows, dim]` to `[rows, 1]` or `[rows]`) at the
    /// interpolations ε·a + (1 − ε)·b, `eps` of shape `[rows, 1]` (from [`interpolation_weights`]). Needs
    /// second-order gradients enabled for its gradient in the critic's parameters.
    pub fn penalty(
        &self,
        critic: &dyn Fn(&Tensor) -> Result<Tensor>,
        a: &Tensor,
        b: &Tensor,
        eps: &Tensor,
    ) -> Result<Tensor> {
        crate::require_second_order()?;
        if a.dims() != b.dims() || a.rank() != 2 || eps.dims() != [a.dims()[0], 1] {
            return Err(Error::Shape(format!(
                "gradient penalty: a {:?} and b {:?} must be [rows, dim] with eps [rows, 1], got eps {:?}",
                a.dims(),
                b.dims(),
                eps.dims()
            )));
        }
        let mix = eps
            .broadcast_mul(&a.detach())?
            .add(&eps.affine(-1.0, 1.0)?.broadcast_mul(&b.detach())?)?;
        let x = Var::from_tensor(&mix)?;
        let score = critic(x.as_tensor())?;
        let grads = score.sum_all()?.backward()?;
        let g = grads.get(x.as_tensor()).ok_or_else(|| {
            Error::invalid("gradient penalty: the critic does not depend on its input")
        })?;
        // 1e-30 under the root keeps the derivative finite where ∇D = 0 (PyTorch's norm gives 0 there too).
        let norm = g.sqr()?.sum(D::Minus1)?.affine(1.0, 1e-30)?.sqrt()?;
        let excess = norm.affine(1.0, -self.target)?;
        let excess = match self.side {
            Side::OneSided => excess.relu()?,
            Side::TwoSided => excess,
        };
        Ok(excess.sqr()?.mean_all()?.affine(self.scale, 0.0)?)
    }
}
