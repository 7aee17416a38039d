//! `nn.MaxPool2d(2)` with PyTorch's gradient: each window's gradient goes, unscaled, to its first maximum in
//! row-major order. candle 0.11's own `max_pool2d` backward multiplies the gradient by the fraction of maxima in
//! the window (1/4 for a unique maximum), so every layer below a pooling layer received a gradient 4x too small
//! per pooling layer; this op replaces it.

use crate::Result;
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Storage, Tensor};
use num_traits::Float;
use rayon::prelude::*;

struct MaxPool2;

/// The index, within plane `p` of width `w`, of the first maximum of the 2×2 window at output (i, j).
fn argmax<T: Float>(p: &[T], w: usize, i: usize, j: usize) -> usize {
    let mut best = (2 * i) * w + 2 * j;
    for (di, dj) in [(0, 1), (1, 0), (1, 1)] {
        let k = (2 * i + di) * w + 2 * j + dj;
        // NaN propagates, as in PyTorch.
        if p[k] > p[best] || (p[k].is_nan() && !p[best].is_nan()) {
            best = k;
        }
    }
    best
}

fn fwd<T: Float + Send + Sync>(x: &[T], planes: usize, h: usize, w: usize) -> Vec<T> {
    let (ho, wo) = (h / 2, w / 2);
    let mut out = vec![T::zero(); planes * ho * wo];
    out.par_chunks_mut((ho * wo).max(1))
        .zip(x.par_chunks((h * w).max(1)))
        .for_each(|(o, p)| {
            for i in 0..ho {
                for j in 0..wo {
                    o[i * wo + j] = p[argmax(p, w, i, j)];
                }
            }
        });
    out
}

fn bwd<T: Float + Send + Sync>(x: &[T], g: &[T], planes: usize, h: usize, w: usize) -> Vec<T> {
    let (ho, wo) = (h / 2, w / 2);
    let mut dx = vec![T::zero(); planes * h * w];
    dx.par_chunks_mut((h * w).max(1))
        .zip(x.par_chunks((h * w).max(1)))
        .zip(g.par_chunks((ho * wo).max(1)))
        .for_each(|((d, p), gp)| {
            for i in 0..ho {
                for j in 0..wo {
                    d[argmax(p, w, i, j)] = gp[i * wo + j];
                }
            }
        });
    dx
}

fn contiguous<'a, T: Copy>(v: &'a [T], l: &Layout) -> candle_core::Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("max_pool2: non-contiguous input"),
    }
}

/// The input gradient `[N, C, H, W]` from the input `x` (values `a`) and the output gradient `g` (values `b`).
fn grad_tensor<T: Float + Send + Sync + candle_core::WithDType>(
    a: &[T],
    b: &[T],
    x: &Tensor,
    g: &Tensor,
    dev: &candle_core::Device,
) -> candle_core::Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let dx = bwd(
        contiguous(a, x.layout())?,
        contiguous(b, g.layout())?,
        n * c,
        h,
        w,
    );
    Tensor::from_vec(dx, (n, c, h, w), dev)
}

impl CustomOp1 for MaxPool2 {
    fn name(&self) -> &'static str {
        "max-pool-2x2"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l.shape().dims4()?;
        let shape = Shape::from((n, c, h / 2, w / 2));
        Ok(match s {
            CpuStorage::F32(v) => (CpuStorage::F32(fwd(contiguous(v, l)?, n * c, h, w)), shape),
            CpuStorage::F64(v) => (CpuStorage::F64(fwd(contiguous(v, l)?, n * c, h, w)), shape),
            _ => candle_core::bail!("max_pool2 runs in f32 or f64"),
        })
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let (x, g) = (arg.contiguous()?, grad.contiguous()?);
        let dev = arg.device();
        let dx = match (&*x.storage_and_layout().0, &*g.storage_and_layout().0) {
            (Storage::Cpu(CpuStorage::F32(a)), Storage::Cpu(CpuStorage::F32(b))) => {
                grad_tensor(a, b, &x, &g, dev)?
            }
            (Storage::Cpu(CpuStorage::F64(a)), Storage::Cpu(CpuStorage::F64(b))) => {
                grad_tensor(a, b, &x, &g, dev)?
            }
            _ => candle_core::bail!("max_pool2 backward runs on the CPU in f32 or f64"),
        };
        Ok(Some(dx))
    }
}

/// 2×2 max pooling with stride 2 over `[N, C, H, W]` (odd trailing rows and columns dropped, as PyTorch).
/// On the CPU in f32/f64 the gradient is PyTorch's; elsewhere the window maximum is a reduction whose
/// gradient reaches every tied maximum.
pub fn max_pool2(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    if x.device().is_cpu() && matches!(x.dtype(), candle_core::DType::F32 | candle_core::DType::F64)
    {
        return Ok(x.contiguous()?.apply_op1(MaxPool2)?);
    }
    let x = x.narrow(2, 0, h / 2 * 2)?.narrow(3, 0, w / 2 * 2)?;
    Ok(x.contiguous()?
        .reshape((n, c, h / 2, 2, w / 2, 2))?
        .max(5)?
        .max(3)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn gradient_goes_unscaled_to_the_first_maximum() {
        let x = Var::from_vec(
            vec![
                1.0f64, 3.0, 2.0, 0.0, 3.0, 0.0, 5.0, 5.0, 7.0, 7.0, 7.0, 1.0,
            ],
            (1, 1, 3, 4),
            &Device::Cpu,
        )
        .unwrap();
        let y = max_pool2(x.as_tensor()).unwrap();
        assert_eq!(
            y.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
            [3.0, 5.0]
        );
        let g = (y * Tensor::new(&[[[[10.0f64, 20.0]]]], &Device::Cpu).unwrap())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let dx = g
            .get(x.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        // Window 1: 3 at (0,1) before the tie at (1,0); window 2: 5 at (1,2) before (1,3). Row 3 is dropped.
        assert_eq!(
            dx,
            [0.0, 10.0, 0.0, 0.0, 0.0, 0.0, 20.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        );
    }
}
