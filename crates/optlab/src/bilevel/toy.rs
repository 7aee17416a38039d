//! The official toy problem of LV-HBA (P13; `Toy-example/LLC/LV-HBA.py`): x ∈ R¹⁰⁰, y = (y₁, y₂) ∈ R²⁰⁰,
//! F(x, y) = ½‖x − y₂‖² + ½‖y₁ − 1‖², lower f(x, y) = ½‖y₁‖² − xᵀy₁ + 1ᵀy₂ with the coupling constraint
//! g(x, y) = 1ᵀx + 1ᵀy = 0 (multipliers clipped to [−u, u]), (x, y) projected onto it; the solution is
//! x* = −0.3·1, y₁* = 0.7·1, y₂* = −0.4·1. The start is the official one (x = y = 10·1, θ = 1, each moved onto the
//! constraint, z₀ = −1).

use super::lvhba::{ConstrainedBilevel, Constraints};
use crate::Result;
use candle_core::{DType, Device, Tensor};

const N: usize = 100;

/// The toy problem.
#[derive(Debug, Clone, Copy, Default)]
pub struct Toy;

impl Toy {
    /// x*.
    pub fn x_star() -> Result<Tensor> {
        Ok(Tensor::full(-0.3f64, N, &Device::Cpu)?)
    }

    /// ‖x − x*‖/‖x*‖.
    pub fn relative_error(x: &Tensor) -> Result<f64> {
        let xs = Self::x_star()?;
        let num = x.sub(&xs)?.sqr()?.sum_all()?.to_scalar::<f64>()?.sqrt();
        let den = xs.sqr()?.sum_all()?.to_scalar::<f64>()?.sqrt();
        Ok(num / den)
    }
}

fn sum(t: &Tensor) -> Result<f64> {
    Ok(t.sum_all()?.to_scalar::<f64>()?)
}

impl ConstrainedBilevel for Toy {
    fn init(&self) -> Result<(Tensor, Tensor, Tensor)> {
        let dev = Device::Cpu;
        let x = Tensor::full(10.0f64, N, &dev)?;
        let y = Tensor::full(10.0f64, 2 * N, &dev)?;
        // The official proj1(v, s) = v − (Σv + s)/len(v), applied in this order.
        let x = x.affine(1.0, -(sum(&x)? + sum(&y)?) / N as f64)?;
        let y = y.affine(1.0, -(sum(&y)? + sum(&x)?) / (2 * N) as f64)?;
        let theta = Tensor::ones(2 * N, DType::F64, &dev)?;
        let theta = theta.affine(1.0, -(sum(&theta)? + sum(&x)?) / (2 * N) as f64)?;
        Ok((x, y, theta))
    }

    fn upper(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        let (y1, y2) = (y.narrow(0, 0, N)?, y.narrow(0, N, N)?);
        let a = x.sub(&y2)?.sqr()?.sum_all()?;
        let b = y1.affine(1.0, -1.0)?.sqr()?.sum_all()?;
        Ok(a.add(&b)?.affine(0.5, 0.0)?)
    }

    fn lower(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        let (y1, y2) = (y.narrow(0, 0, N)?, y.narrow(0, N, N)?);
        let quad = y1.sqr()?.sum_all()?.affine(0.5, 0.0)?;
        Ok(quad.sub(&x.mul(&y1)?.sum_all()?)?.add(&y2.sum_all()?)?)
    }

    fn constraints(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        Ok(x.sum_all()?.add(&y.sum_all()?)?.reshape(1)?)
    }

    fn kind(&self) -> Constraints {
        Constraints::Equality
    }

    /// Onto {1ᵀx + 1ᵀy = 0}: subtract the mean of the 300 entries.
    fn project(&self, x: Tensor, y: Tensor) -> Result<(Tensor, Tensor)> {
        let mean = (sum(&x)? + sum(&y)?) / (3 * N) as f64;
        Ok((x.affine(1.0, -mean)?, y.affine(1.0, -mean)?))
    }
}
