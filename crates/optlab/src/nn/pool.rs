//! `nn.MaxPool2d(2)` with PyTorch's gradient: each window's gradient goes, unscaled, to its first maximum in
//! row-major order. candle 0.11's own `max_pool2d` backward multiplies the gradient by the fraction of maxima in
//! the window (1/4 for a unique maximum), so every layer below a pooling layer received a gradient 4x too small
//! per pooling layer; this op replaces it.
//!
//! Two kernels do the work, both keyed by the input x (whose window maxima pick the positions): `select` reads one
//! value per window at its maximum (the forward pass: x at x's maxima) and `scatter` writes one value per window
//! there (the backward pass). Each is linear in its values and the derivative of the other, so gradients of
//! gradients (Hessian-vector products) pass through pooling exactly; the positions themselves have no derivative.

use super::fused::{cpu_float, simd_body, FloatKernel, SimdBody};
use crate::Result;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use num_traits::Float;
use rayon::prelude::*;
use std::hint::select_unpredictable;

/// Input elements per parallel task (whole planes).
const TASK_ELEMS: usize = 16 * 1024;

/// Whether `v` replaces `best` as a window's first maximum: larger, or NaN where `best` is not (PyTorch's rule).
#[inline(always)]
fn beats<T: Float>(v: T, best: T) -> bool {
    (v > best) | (v.is_nan() & !best.is_nan())
}

/// The window codes of one output row: the position (0..4, row-major) of each window's first maximum, from the
/// windows' two input rows `k0` and `k1` (2 × `codes.len()` long each). The picks are `select_unpredictable`: on
/// random data a branch per comparison mispredicts half the time.
#[inline(always)]
fn row_codes<T: Float>(k0: &[T], k1: &[T], codes: &mut [u8]) {
    for ((c, a), b) in codes
        .iter_mut()
        .zip(k0.chunks_exact(2))
        .zip(k1.chunks_exact(2))
    {
        let (mut best, mut at) = (a[0], 0u8);
        for (n, k) in [a[1], b[0], b[1]].into_iter().enumerate() {
            let take = beats(k, best);
            best = select_unpredictable(take, k, best);
            at = select_unpredictable(take, n as u8 + 1, at);
        }
        *c = at;
    }
}

/// `out[j]` = the value of window j of rows `v0`, `v1` at position `codes[j]`.
#[inline(always)]
fn select_row<T: Float>(v0: &[T], v1: &[T], codes: &[u8], out: &mut [T]) {
    for (((o, &c), a), b) in out
        .iter_mut()
        .zip(codes)
        .zip(v0.chunks_exact(2))
        .zip(v1.chunks_exact(2))
    {
        let top = select_unpredictable(c & 1 == 1, a[1], a[0]);
        let bottom = select_unpredictable(c & 1 == 1, b[1], b[0]);
        *o = select_unpredictable(c >= 2, bottom, top);
    }
}

/// Window j of rows `d0`, `d1` gets `g[j]` at position `codes[j]` and zero at its other three.
#[inline(always)]
fn scatter_row<T: Float>(g: &[T], codes: &[u8], d0: &mut [T], d1: &mut [T]) {
    let windows = d0.chunks_exact_mut(2).zip(d1.chunks_exact_mut(2));
    for ((&g, &c), (a, b)) in g.iter().zip(codes).zip(windows) {
        let put = |n: u8| select_unpredictable(c == n, g, T::zero());
        (a[0], a[1], b[0], b[1]) = (put(0), put(1), put(2), put(3));
    }
}

/// One task's planes, run by [`simd_body`] so the row loops above vectorize to the CPU's width: the key's window
/// maxima pick where `vals` is read (`select`: vals has the key's shape, out one value per window) or where
/// `vals` is written (`scatter`: vals has one value per window, out the key's shape).
struct Planes<'a, T> {
    key: &'a [T],
    vals: &'a [T],
    out: &'a mut [T],
    /// Input plane height and width.
    hw: (usize, usize),
    scatter: bool,
}

impl<T: Float> SimdBody for Planes<'_, T> {
    type Out = ();

    #[inline(always)]
    fn run(self) {
        let (h, w) = self.hw;
        let (ho, wo) = (h / 2, w / 2);
        let n = 2 * wo;
        let mut codes = vec![0u8; wo];
        let (window_len, plane_len) = (ho * wo, h * w);
        let planes = self.key.len() / plane_len;
        for p in 0..planes {
            let key = &self.key[p * plane_len..][..plane_len];
            for i in 0..ho {
                let (r0, r1) = (2 * i * w, (2 * i + 1) * w);
                row_codes(&key[r0..][..n], &key[r1..][..n], &mut codes);
                if self.scatter {
                    let g = &self.vals[p * window_len + i * wo..][..wo];
                    let plane = &mut self.out[p * plane_len..][..plane_len];
                    let (top, bottom) = plane[r0..].split_at_mut(w);
                    scatter_row(g, &codes, &mut top[..n], &mut bottom[..n]);
                } else {
                    let v = &self.vals[p * plane_len..][..plane_len];
                    let out = &mut self.out[p * window_len + i * wo..][..wo];
                    select_row(&v[r0..][..n], &v[r1..][..n], &codes, out);
                }
            }
        }
    }
}

/// The plane geometry of `[N, C, H, W]`: (planes, h, w).
fn planes(l: &Layout) -> candle_core::Result<(usize, usize, usize)> {
    let (n, c, h, w) = l.shape().dims4()?;
    Ok((n * c, h, w))
}

/// Without `scatter`, one value of `vals` (the key's shape) per window at the key's maximum: `[N, C, H/2, W/2]`.
/// With it, the key's shape, zero except one value of `vals` (`[N, C, H/2, W/2]`) per window at the key's maximum.
fn windows<T: Float + Send + Sync>(
    key: &[T],
    vals: &[T],
    (planes, h, w): (usize, usize, usize),
    scatter: bool,
) -> Vec<T> {
    let (full, pooled) = (h * w, (h / 2) * (w / 2));
    let (out_plane, vals_plane) = if scatter {
        (full, pooled)
    } else {
        (pooled, full)
    };
    let mut out = vec![T::zero(); planes * out_plane];
    if planes * pooled == 0 {
        return out;
    }
    let per = (TASK_ELEMS / full).max(1);
    out.par_chunks_mut(per * out_plane)
        .zip(
            key.par_chunks(per * full)
                .zip(vals.par_chunks(per * vals_plane)),
        )
        .for_each(|(out, (key, vals))| {
            simd_body(Planes {
                key,
                vals,
                out,
                hw: (h, w),
                scatter,
            })
        });
    out
}

/// `select` (or `scatter`) keyed by the first input; the geometry is the key's and the values' shape is checked.
fn run2<T: Float + Send + Sync>(
    scatter_values: bool,
    (key, lk): (&[T], &Layout),
    (vals, lv): (&[T], &Layout),
) -> candle_core::Result<(Vec<T>, Shape)> {
    let geo = planes(lk)?;
    let (n, c, h, w) = lk.shape().dims4()?;
    let pooled = Shape::from((n, c, h / 2, w / 2));
    let (want, shape) = if scatter_values {
        (pooled, lk.shape().clone())
    } else {
        (lk.shape().clone(), pooled)
    };
    if lv.shape() != &want {
        candle_core::bail!(
            "max_pool2: values of shape {:?}, expected {:?}",
            lv.dims(),
            want.dims()
        );
    }
    Ok((windows(key, vals, geo, scatter_values), shape))
}

/// The pooling itself: x at x's window maxima.
struct MaxPool2;

/// A two-input window op keyed by its first input: `Windows { scatter: false }` maps (key, values) to the values
/// at the key's window maxima; `Windows { scatter: true }` maps (key, window values) to the key's shape with each
/// window value at the key's maximum. Each is the other's derivative in the values.
struct Windows {
    scatter: bool,
}

impl FloatKernel<1> for MaxPool2 {
    fn run<T: Float + Send + Sync + 'static>(
        &self,
        [x]: [(&[T], &Layout); 1],
    ) -> candle_core::Result<(Vec<T>, Shape)> {
        run2(false, x, x)
    }
}

impl FloatKernel<2> for Windows {
    fn run<T: Float + Send + Sync + 'static>(
        &self,
        [key, vals]: [(&[T], &Layout); 2],
    ) -> candle_core::Result<(Vec<T>, Shape)> {
        run2(self.scatter, key, vals)
    }
}

impl CustomOp1 for MaxPool2 {
    fn name(&self) -> &'static str {
        "max-pool-2x2"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        cpu_float(self, "max_pool2", [(s, l)])
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(x.apply_op2(
            &grad.contiguous()?,
            Windows { scatter: true },
        )?))
    }
}

impl CustomOp2 for Windows {
    fn name(&self) -> &'static str {
        if self.scatter {
            "max-pool-2x2-scatter"
        } else {
            "max-pool-2x2-select"
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        cpu_float(self, "max_pool2", [(s1, l1), (s2, l2)])
    }

    /// Linear in the values, piecewise constant in the key.
    fn bwd(
        &self,
        key: &Tensor,
        _vals: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let other = Windows {
            scatter: !self.scatter,
        };
        Ok((None, Some(key.apply_op2(&grad.contiguous()?, other)?)))
    }
}

/// `vals` (the key's shape) at the key's window maxima: the pooled R-derivative of a pooled input (CPU, f32/f64).
pub(crate) fn select_at_maxima(key: &Tensor, vals: &Tensor) -> Result<Tensor> {
    Ok(key
        .contiguous()?
        .apply_op2(&vals.contiguous()?, Windows { scatter: false })?)
}

/// The key's shape, zero but for `vals` (`[N, C, H/2, W/2]`) at the key's window maxima: the gradient (and its
/// R-derivative) of a pooled input (CPU, f32/f64).
pub(crate) fn scatter_to_maxima(key: &Tensor, vals: &Tensor) -> Result<Tensor> {
    Ok(key
        .contiguous()?
        .apply_op2(&vals.contiguous()?, Windows { scatter: true })?)
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

    /// A Hessian-vector product through pooling equals the one through the same windows written as a gather
    /// (the maxima are unique, so the two functions agree near x), in f64, with odd sizes.
    #[test]
    fn second_order_passes_through() {
        let dev = Device::Cpu;
        let x = Var::randn(0f64, 1., (2, 3, 5, 7), &dev).unwrap();
        let v = Tensor::randn(0f64, 1., (2, 3, 5, 7), &dev).unwrap();
        let r = Tensor::randn(0f64, 1., (2, 3, 2, 3), &dev).unwrap();
        // The same pooling as a reduction over explicit windows: gradients go to the unique maxima.
        let reference = |x: &Tensor| {
            x.narrow(2, 0, 4)
                .unwrap()
                .narrow(3, 0, 6)
                .unwrap()
                .contiguous()
                .unwrap()
                .reshape((2, 3, 2, 2, 3, 2))
                .unwrap()
                .max(5)
                .unwrap()
                .max(3)
                .unwrap()
        };
        let hvp = |y: Tensor| {
            let g = (y.sqr().unwrap().exp().unwrap() * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let first = g.get(&x).unwrap().clone();
            let h = (&first * &v)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            (first, h.get(&x).unwrap().clone())
        };
        let (g1, h1) = hvp(max_pool2(x.as_tensor()).unwrap());
        let (g2, h2) = hvp(reference(x.as_tensor()));
        for (a, b) in [(&g1, &g2), (&h1, &h2)] {
            let d = (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            assert!(d < 1e-12, "{d}");
        }
        assert!(
            h1.abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
                > 0.0
        );
    }

    /// NaN counts as the maximum (the first NaN takes the gradient), as in PyTorch; -0.0 ties with 0.0.
    #[test]
    fn nan_and_signed_zero_windows() {
        let x = Var::from_vec(
            vec![1.0f32, f32::NAN, -0.0, 0.0, f32::NAN, 2.0, -1.0, -2.0],
            (1, 1, 2, 4),
            &Device::Cpu,
        )
        .unwrap();
        let y: Vec<f32> = max_pool2(x.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(y[0].is_nan());
        assert_eq!(y[1].to_bits(), (-0.0f32).to_bits());
        let g = (max_pool2(x.as_tensor()).unwrap()
            * Tensor::new(&[[[[3f32, 5.]]]], &Device::Cpu).unwrap())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
        let dx: Vec<f32> = g.get(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(dx, vec![0.0, 3.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }
}
