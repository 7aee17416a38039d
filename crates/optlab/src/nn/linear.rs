//! A fused linear layer y = x Wᵀ + b as one candle custom op.
//!
//! `x.matmul(&w.t())` followed by `broadcast_add` makes candle's backward pass transpose the weight gradient
//! through a strided view, accumulate it element by element, and compute the gradient of the input even for
//! the data batch. This op writes y with one gemm call (bias pre-loaded into the output) and its backward
//! returns dW = dyᵀ x directly in the weight's `[out, in]` layout, db = Σ dy (as a product with ones), and dx = dy W only when x takes
//! part in the graph. The backward is built from candle ops, so second-order gradients go through it too.

use super::matmul::{gemm_into, matmul, Strided};
use crate::Result;
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};

struct Linear;

fn forward<T: num_traits::Float + Send + Sync + 'static>(
    x: &[T],
    xl: &Layout,
    w: &[T],
    wl: &Layout,
    b: &[T],
    bl: &Layout,
) -> candle_core::Result<(Vec<T>, Shape)> {
    // An input of rank > 2 is contiguous (see `linear`): its leading dimensions are the rows.
    let (m, k, xv) = match xl.dims() {
        [.., k] if xl.dims().len() > 2 => {
            let (a, e) = xl.contiguous_offsets().ok_or_else(|| {
                candle_core::Error::Msg("linear: an input of rank > 2 must be contiguous".into())
            })?;
            ((e - a) / (*k).max(1), *k, Strided::row_major(&x[a..e], *k))
        }
        _ => Strided::of(x, xl, "linear: the input")?,
    };
    let (n, k2, wv) = Strided::of(w, wl, "linear: the weight")?;
    if k != k2 || bl.dims() != [n] {
        return Err(candle_core::Error::Msg(format!(
            "linear: input {:?}, weight {:?}, bias {:?} do not fit",
            xl.dims(),
            wl.dims(),
            bl.dims()
        )));
    }
    let bs = bl.stride()[0];
    let bias: Vec<T> = (0..n).map(|j| b[bl.start_offset() + j * bs]).collect();
    let mut dst: Vec<T> = Vec::with_capacity(m * n);
    for _ in 0..m {
        dst.extend_from_slice(&bias);
    }
    // The bias is pre-loaded: accumulate x Wᵀ onto it (Wᵀ by swapping the weight's strides).
    gemm_into(&mut dst, (m, n, k), xv, wv.t(), true)?;
    let mut dims = xl.dims().to_vec();
    *dims.last_mut().expect("rank >= 2") = n;
    Ok((dst, Shape::from(dims)))
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "optlab-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        match (s1, s2, s3) {
            (CpuStorage::F32(x), CpuStorage::F32(w), CpuStorage::F32(b)) => {
                forward(x, l1, w, l2, b, l3).map(|(v, s)| (CpuStorage::F32(v), s))
            }
            (CpuStorage::F64(x), CpuStorage::F64(w), CpuStorage::F64(b)) => {
                forward(x, l1, w, l2, b, l3).map(|(v, s)| (CpuStorage::F64(v), s))
            }
            _ => Err(candle_core::Error::Msg(
                "linear: input, weight and bias must all be f32 or all f64".into(),
            )),
        }
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // Through the lean product, a second backward (Hessian-vector products) skips the data's gradient too.
        let lean = |a: &Tensor, b: &Tensor| matmul(a, b).map_err(candle_core::Error::wrap);
        // The products run on rows: leading dimensions flattened (views; nodes only in a second-order graph).
        let (k, n) = (w.dim(1)?, w.dim(0)?);
        let (x2, g2) = (x.reshape(((), k))?, grad.reshape(((), n))?);
        let dx = if x.track_op() {
            Some(lean(&g2, w)?.reshape(x.dims())?)
        } else {
            None
        };
        let dw = lean(&g2.t()?, &x2)?;
        Ok((dx, Some(dw), Some(super::fused::sum_rows(grad)?)))
    }
}

/// y = x Wᵀ + b (PyTorch's `F.linear`) for x of shape `[batch, in]` or `[..., in]`, W `[out, in]`, b `[out]`.
/// With a bias on the CPU it is one op whatever the rank (no reshape nodes, each of which would cost the backward
/// pass a zero-filled gradient and an addition).
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    match b {
        Some(b)
            if x.rank() >= 2
                && x.device().is_cpu()
                && x.dtype() == w.dtype()
                && w.dtype() == b.dtype() =>
        {
            let x = if x.rank() > 2 {
                x.contiguous()?
            } else {
                x.clone()
            };
            Ok(x.apply_op3(w, b, Linear)?)
        }
        _ => {
            let y = x.broadcast_matmul(&w.t()?)?;
            Ok(match b {
                Some(b) => y.broadcast_add(b)?,
                None => y,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    #[test]
    fn matches_matmul_forward_and_backward() {
        let dev = Device::Cpu;
        let x = Var::randn(0f64, 1.0, (5, 7), &dev).unwrap();
        let w = Var::randn(0f64, 1.0, (3, 7), &dev).unwrap();
        let b = Var::randn(0f64, 1.0, 3, &dev).unwrap();
        let fused = linear(x.as_tensor(), w.as_tensor(), Some(b.as_tensor())).unwrap();
        let plain = x
            .matmul(&w.t().unwrap())
            .unwrap()
            .broadcast_add(&b)
            .unwrap();
        let d = |a: &Tensor, c: &Tensor| -> f64 {
            a.sub(c)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar()
                .unwrap()
        };
        assert!(d(&fused, &plain) < 1e-12);
        let gf = fused.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let gp = plain.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&x, &w, &b] {
            assert!(d(gf.get(v).unwrap(), gp.get(v).unwrap()) < 1e-12);
        }
        // A rank-3 input is one op; values and gradients equal those of its rows.
        let x3 = Var::randn(0f64, 1.0, (2, 5, 7), &dev).unwrap();
        let y3 = linear(x3.as_tensor(), w.as_tensor(), Some(b.as_tensor())).unwrap();
        assert_eq!(y3.dims(), [2, 5, 3]);
        let rows = x3.reshape((10, 7)).unwrap();
        let y2 = linear(&rows, w.as_tensor(), Some(b.as_tensor())).unwrap();
        assert!(d(&y3.reshape((10, 3)).unwrap(), &y2) < 1e-12);
        let g3 = y3.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = y2.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&x3, &w, &b] {
            assert_eq!(g3.get(v).unwrap().dims(), v.dims());
            assert!(d(g3.get(v).unwrap(), g2.get(v).unwrap()) < 1e-12);
        }
        // A transposed (strided) input goes through the same path.
        let xt = Tensor::randn(0f32, 1.0, (7, 5), &dev).unwrap().t().unwrap();
        let wf = w.as_tensor().to_dtype(DType::F32).unwrap();
        let bf = b.as_tensor().to_dtype(DType::F32).unwrap();
        let a = linear(&xt, &wf, Some(&bf)).unwrap();
        let c = xt
            .matmul(&wf.t().unwrap())
            .unwrap()
            .broadcast_add(&bf)
            .unwrap();
        assert!(
            d(
                &a.to_dtype(DType::F64).unwrap(),
                &c.to_dtype(DType::F64).unwrap()
            ) < 1e-5
        );
    }

    #[test]
    fn second_order_through_the_fused_op() {
        // d/dw of (d/dw sum((x w^T + b)^2)) . v equals the exact Hessian-vector product 2 (x^T x) v per row.
        crate::require_second_order().unwrap();
        let dev = Device::Cpu;
        let x = Tensor::randn(0f64, 1.0, (4, 3), &dev).unwrap();
        let w = Var::randn(0f64, 1.0, (2, 3), &dev).unwrap();
        let b = Var::zeros(2, DType::F64, &dev).unwrap();
        let v = Tensor::randn(0f64, 1.0, (2, 3), &dev).unwrap();
        let loss = linear(&x, w.as_tensor(), Some(b.as_tensor()))
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap();
        let g = loss.backward().unwrap().get(&w).unwrap().clone();
        let hv = g
            .mul(&v)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap()
            .get(&w)
            .unwrap()
            .clone();
        let want = v
            .matmul(&x.t().unwrap().matmul(&x).unwrap())
            .unwrap()
            .affine(2.0, 0.0)
            .unwrap();
        let err: f64 = hv
            .sub(&want)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(err < 1e-10, "{err}");
    }
}
