//! ⟨g, v⟩ for a constant v as one op, whose backward hands v (times the incoming gradient) to g: the seed of a
//! Hessian-vector product's second backward pass (PyTorch's `grad_outputs`). `sum(g * v)` costs that pass a
//! broadcast, a copy of it and a product per tensor, and a gradient for v nobody reads.

use super::{cpu_float, FloatKernel};
use crate::nn::lanes;
use crate::{Error, Result};
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Storage, Tensor};
use num_traits::Float;

/// ⟨g, v⟩ as a scalar of g's dtype; only g is differentiated (v is detached). Shapes must match.
pub fn inner_with_constant(g: &Tensor, v: &Tensor) -> Result<Tensor> {
    if g.dims() != v.dims() {
        return Err(Error::Shape(format!(
            "inner product of {:?} with {:?}",
            g.dims(),
            v.dims()
        )));
    }
    let v = v.detach().to_dtype(g.dtype())?.contiguous()?;
    if !g.device().is_cpu() || !matches!(g.dtype(), DType::F32 | DType::F64) {
        return Ok(g.mul(&v)?.sum_all()?);
    }
    Ok(g.contiguous()?.apply_op1(Inner { v })?)
}

struct Inner {
    v: Tensor,
}

struct Dot;

impl FloatKernel<2> for Dot {
    fn run<T: Float + Send + Sync + 'static>(
        &self,
        [(g, _), (v, _)]: [(&[T], &Layout); 2],
    ) -> candle_core::Result<(Vec<T>, Shape)> {
        Ok((vec![lanes::dot(g, v)], Shape::from(())))
    }
}

impl CustomOp1 for Inner {
    fn name(&self) -> &'static str {
        "optlab-inner"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (vs, vl) = self.v.storage_and_layout();
        let Storage::Cpu(vs) = &*vs else {
            candle_core::bail!("inner: the constant must be on the CPU")
        };
        cpu_float(&Dot, "inner", [(s, l), (vs, vl)])
    }

    fn bwd(
        &self,
        _g: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        // The usual incoming gradient is a backward pass's seed, a constant 1: v itself, exactly.
        let one = !grad.track_op() && grad.to_dtype(DType::F64)?.to_scalar::<f64>()? == 1.0;
        Ok(Some(if one {
            self.v.clone()
        } else {
            self.v.broadcast_mul(grad)?
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn value_and_gradient_match_the_composed_product() {
        crate::require_second_order().unwrap();
        let dev = Device::Cpu;
        for dtype in [DType::F64, DType::F32] {
            let g = Var::randn(0f64, 1.0, (3, 5), &dev)
                .unwrap()
                .as_tensor()
                .to_dtype(dtype)
                .unwrap();
            let g = Var::from_tensor(&g).unwrap();
            let v = Tensor::randn(0f64, 1.0, (3, 5), &dev).unwrap();
            let want = g
                .as_tensor()
                .to_dtype(DType::F64)
                .unwrap()
                .mul(&v)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            let got = inner_with_constant(g.as_tensor(), &v).unwrap();
            assert_eq!(got.dtype(), dtype);
            let got = got
                .to_dtype(DType::F64)
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            assert!((got - want).abs() < 1e-5 * (1.0 + want.abs()), "{dtype:?}");
            // The seed's gradient is v itself; scaled by 3, 3v (v never receives one).
            let v_cast = v.to_dtype(dtype).unwrap();
            let once = inner_with_constant(g.as_tensor(), &v)
                .unwrap()
                .backward()
                .unwrap();
            assert_eq!(
                once.get(g.as_tensor())
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .ok(),
                v_cast.flatten_all().unwrap().to_vec1::<f64>().ok()
            );
            let thrice = (inner_with_constant(g.as_tensor(), &v).unwrap() * 3.0)
                .unwrap()
                .backward()
                .unwrap();
            let d = thrice
                .get(g.as_tensor())
                .unwrap()
                .sub(&(v_cast.clone() * 3.0).unwrap())
                .unwrap()
                .abs()
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            assert!(d < 1e-6);
            assert!(thrice.get(&v).is_none());
        }
        let g = Tensor::zeros((2, 2), DType::F64, &dev).unwrap();
        let v = Tensor::zeros(4, DType::F64, &dev).unwrap();
        assert!(inner_with_constant(&g, &v).is_err());
    }
}
