//! Stride-1 "same" 2-D convolution (odd square kernel, zero padding k/2) as im2col + gemm, with its backward: the
//! input gradient is the same convolution of the output gradient with the kernel flipped and its channels swapped,
//! the kernel gradient one gemm per sample against the same columns. candle's CPU `conv2d` runs these shapes at a
//! few GFLOP/s and its backward (a direct transposed convolution) 4-5x slower than its forward; this runs both as
//! gemms. Differentiable once (the backward's own ops have no backward): use candle's `conv2d` where a
//! Hessian-vector product must pass through a convolution.

use super::matmul::{gemm_into, Strided};
use crate::Result;
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use num_traits::Float;
use rayon::prelude::*;

/// conv2d(x, w, padding = k/2, stride 1) for x `[batch, c, h, w]` and w `[out, c, k, k]` (k odd), f32 or f64 on
/// the CPU; the same values as candle's `conv2d` (and PyTorch's `F.conv2d(x, w, padding=k//2)`).
pub fn conv2d_same(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    Ok(x.contiguous()?.apply_op2(&w.contiguous()?, ConvSame)?)
}

/// The shapes of a convolution: (batch, c, h, w, out, k).
fn dims(
    lx: &Layout,
    lw: &Layout,
) -> candle_core::Result<(usize, usize, usize, usize, usize, usize)> {
    match (lx.dims(), lw.dims()) {
        ([b, c, h, w], [o, c2, k, k2]) if c == c2 && k == k2 && k % 2 == 1 => Ok((*b, *c, *h, *w, *o, *k)),
        (x, w) => Err(candle_core::Error::Msg(format!(
            "conv2d_same: input [batch, c, h, w] and kernel [out, c, k, k] with k odd, got {x:?} and {w:?}"
        ))),
    }
}

fn slice<'a, T>(s: &'a [T], l: &Layout) -> candle_core::Result<&'a [T]> {
    l.contiguous_offsets()
        .map(|(a, b)| &s[a..b])
        .ok_or_else(|| candle_core::Error::Msg("conv2d_same: operands must be contiguous".into()))
}

/// The columns of one sample: row (ci, ky, kx), column (y, x) holds x[ci, y + ky − p, x + kx − p] (0 outside).
fn im2col<T: Float>(x: &[T], (c, h, w, k): (usize, usize, usize, usize), cols: &mut [T]) {
    let (p, hw) = (k / 2, h * w);
    for ci in 0..c {
        for ky in 0..k {
            for kx in 0..k {
                let row = &mut cols[((ci * k + ky) * k + kx) * hw..][..hw];
                // Output columns x whose source x + kx − p lies inside [0, w).
                let (x0, x1) = (p.saturating_sub(kx), (w + p).saturating_sub(kx).min(w));
                for y in 0..h {
                    let dst = &mut row[y * w..(y + 1) * w];
                    let sy = y + ky;
                    if sy < p || sy - p >= h || x0 >= x1 {
                        dst.iter_mut().for_each(|v| *v = T::zero());
                        continue;
                    }
                    let src = &x[ci * hw + (sy - p) * w..][..w];
                    dst[..x0].iter_mut().for_each(|v| *v = T::zero());
                    dst[x1..].iter_mut().for_each(|v| *v = T::zero());
                    dst[x0..x1].copy_from_slice(&src[x0 + kx - p..x1 + kx - p]);
                }
            }
        }
    }
}

fn forward<T: Float + Send + Sync + 'static>(
    x: &[T],
    lx: &Layout,
    wt: &[T],
    lw: &Layout,
) -> candle_core::Result<(Vec<T>, Shape)> {
    let (b, c, h, w, o, k) = dims(lx, lw)?;
    let (x, wt) = (slice(x, lx)?, slice(wt, lw)?);
    let (hw, ckk) = (h * w, c * k * k);
    let mut out = vec![T::zero(); b * o * hw];
    if hw == 0 || o == 0 || c == 0 {
        return Ok((out, Shape::from((b, o, h, w))));
    }
    out.par_chunks_mut(o * hw)
        .zip(x.par_chunks(c * hw))
        .try_for_each(|(y, xs)| {
            let mut cols = vec![T::zero(); ckk * hw];
            im2col(xs, (c, h, w, k), &mut cols);
            let a = Strided::row_major(wt, ckk);
            let bv = Strided::row_major(&cols[..], hw);
            gemm_into(y, (o, hw, ckk), a, bv, false)
        })?;
    Ok((out, Shape::from((b, o, h, w))))
}

/// dW = Σ_samples dy (out × hw) · colsᵀ (hw × c·k·k).
fn weight_grad<T: Float + Send + Sync + 'static>(
    dy: &[T],
    ldy: &Layout,
    x: &[T],
    lx: &Layout,
    k: usize,
) -> candle_core::Result<(Vec<T>, Shape)> {
    let (c, h, w, o) = match (lx.dims(), ldy.dims()) {
        ([b, c, h, w], [b2, o, h2, w2]) if b == b2 && h == h2 && w == w2 => (*c, *h, *w, *o),
        _ => {
            return Err(candle_core::Error::Msg(
                "conv2d_same: gradient shape".into(),
            ))
        }
    };
    let (dy, x) = (slice(dy, ldy)?, slice(x, lx)?);
    let (hw, ckk) = (h * w, c * k * k);
    let zero = || vec![T::zero(); o * ckk];
    if hw == 0 || o == 0 || c == 0 {
        return Ok((zero(), Shape::from((o, c, k, k))));
    }
    let dw = dy
        .par_chunks(o * hw)
        .zip(x.par_chunks(c * hw))
        .try_fold(zero, |mut acc, (g, xs)| {
            let mut cols = vec![T::zero(); ckk * hw];
            im2col(xs, (c, h, w, k), &mut cols);
            let a = Strided::row_major(g, hw);
            let bt = Strided::row_major(&cols[..], hw).t();
            gemm_into(&mut acc, (o, ckk, hw), a, bt, true)?;
            Ok::<_, candle_core::Error>(acc)
        })
        .try_reduce(zero, |mut a, b| {
            a.iter_mut().zip(b).for_each(|(a, b)| *a = *a + b);
            Ok(a)
        })?;
    Ok((dw, Shape::from((o, c, k, k))))
}

struct ConvSame;

impl CustomOp2 for ConvSame {
    fn name(&self) -> &'static str {
        "optlab-conv2d-same"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        match (s1, s2) {
            (CpuStorage::F32(a), CpuStorage::F32(b)) => {
                forward(a, l1, b, l2).map(|(v, s)| (CpuStorage::F32(v), s))
            }
            (CpuStorage::F64(a), CpuStorage::F64(b)) => {
                forward(a, l1, b, l2).map(|(v, s)| (CpuStorage::F64(v), s))
            }
            _ => Err(candle_core::Error::Msg(
                "conv2d_same: input and kernel must be both f32 or both f64".into(),
            )),
        }
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let k = w.dim(2)?;
        let grad = grad.contiguous()?;
        let dx = if x.track_op() {
            // The kernel flipped in both spatial axes, input and output channels swapped.
            let rev = Tensor::new((0..k as u32).rev().collect::<Vec<_>>(), w.device())?;
            let wf = w
                .index_select(&rev, 2)?
                .index_select(&rev, 3)?
                .transpose(0, 1)?
                .contiguous()?;
            Some(grad.apply_op2(&wf, ConvSame)?)
        } else {
            None
        };
        let dw = if w.track_op() {
            Some(grad.apply_op2(&x.contiguous()?, WeightGrad { k })?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

struct WeightGrad {
    k: usize,
}

impl CustomOp2 for WeightGrad {
    fn name(&self) -> &'static str {
        "optlab-conv2d-same-weight-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        match (s1, s2) {
            (CpuStorage::F32(a), CpuStorage::F32(b)) => {
                weight_grad(a, l1, b, l2, self.k).map(|(v, s)| (CpuStorage::F32(v), s))
            }
            (CpuStorage::F64(a), CpuStorage::F64(b)) => {
                weight_grad(a, l1, b, l2, self.k).map(|(v, s)| (CpuStorage::F64(v), s))
            }
            _ => Err(candle_core::Error::Msg("conv2d_same: mixed dtypes".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    }

    #[test]
    fn values_and_gradients_match_candle_conv2d() {
        let dev = Device::Cpu;
        for &(b, c, h, w, o, k) in &[
            (2, 3, 5, 7, 4, 3),
            (1, 1, 1, 1, 1, 1),
            (3, 2, 6, 6, 1, 5),
            (2, 4, 4, 3, 2, 1),
        ] {
            let x = Var::randn(0f64, 1., (b, c, h, w), &dev).unwrap();
            let wt = Var::randn(0f64, 1., (o, c, k, k), &dev).unwrap();
            let g = Tensor::randn(0f64, 1., (b, o, h, w), &dev).unwrap();
            let ours = conv2d_same(&x, &wt).unwrap();
            let theirs = x.conv2d(&wt, k / 2, 1, 1, 1).unwrap();
            assert!(max_diff(&ours, &theirs) < 1e-12);
            let go = (ours * &g).unwrap().sum_all().unwrap().backward().unwrap();
            let gt = (theirs * &g)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for v in [&x, &wt] {
                let d = max_diff(go.get(v).unwrap(), gt.get(v).unwrap());
                assert!(
                    d < 1e-10,
                    "gradient differs by {d} for {:?}",
                    (b, c, h, w, o, k)
                );
            }
        }
        // f32, and a constant kernel gets no gradient.
        let x = Var::randn(0f32, 1., (2, 1, 8, 8), &dev).unwrap();
        let wt = Tensor::ones((1, 1, 3, 3), DType::F32, &dev).unwrap();
        let g = conv2d_same(&x, &wt)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(g.get(&x).is_some() && g.get(&wt).is_none());
        assert!(conv2d_same(&x, &Tensor::ones((1, 1, 2, 2), DType::F32, &dev).unwrap()).is_err());
    }
}
