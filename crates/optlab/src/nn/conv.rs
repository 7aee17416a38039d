//! Stride-1 "same" 2-D convolution (odd square kernel, zero padding k/2) as im2col + gemm, with its backward: the
//! input gradient is the same convolution of the output gradient with the kernel flipped and its channels swapped,
//! the kernel gradient one gemm per sample against the same columns. candle's CPU `conv2d` runs these shapes at a
//! few GFLOP/s and its backward (a direct transposed convolution) 4-5x slower than its forward; this runs both as
//! gemms. The backward is built from the same two ops, each with its own backward, so second-order passes
//! (Hessian-vector products, AdaHessian) go through it exactly.

use super::fused::{cpu_float, cpu_values, FloatKernel};
use super::lanes;
use super::matmul::{gemm_into, Strided};
use crate::Result;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor};
use num_traits::Float;
use rayon::prelude::*;

/// conv2d(x, w, padding = k/2, stride 1) for x `[batch, c, h, w]` and w `[out, c, k, k]` (k odd), f32 or f64 on
/// the CPU; the same values as candle's `conv2d` (and PyTorch's `F.conv2d(x, w, padding=k//2)`).
pub fn conv2d_same(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    Ok(x.contiguous()?.apply_op2(&w.contiguous()?, ConvSame)?)
}

/// `nn.Conv2d` with stride 1, zero `padding` and an optional per-channel bias `[out]`: one op ([`conv2d_same`] with
/// the bias loaded into the output, its gradient a per-channel sum) where the padding is k/2 (odd k) on the CPU in
/// f32/f64; candle's `conv2d` and a broadcast addition otherwise.
pub fn conv2d(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, padding: usize) -> Result<Tensor> {
    let same = is_same(w, padding)?;
    let native = x.device().is_cpu()
        && matches!(x.dtype(), DType::F32 | DType::F64)
        && x.dtype() == w.dtype()
        && bias.is_none_or(|b| b.dtype() == x.dtype() && b.dims() == [w.dim(0).unwrap_or(0)]);
    if same && native {
        return Ok(match bias {
            Some(b) => x
                .contiguous()?
                .apply_op3(&w.contiguous()?, &b.contiguous()?, ConvSame)?,
            None => conv2d_same(x, w)?,
        });
    }
    let y = x.conv2d(w, padding, 1, 1, 1)?;
    Ok(match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?)?,
        None => y,
    })
}

/// Whether a kernel `[out, in, k, k]` with odd k and zero `padding` k/2 is a "same" convolution.
pub(crate) fn is_same(w: &Tensor, padding: usize) -> Result<bool> {
    let k = w.dim(3)?;
    Ok(k % 2 == 1 && padding == k / 2 && w.dim(2)? == k)
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

/// The columns of one sample: row (ci, ky, kx), column (y, x) holds x[ci, y + ky − p, x + kx − p] (0 outside).
/// Each row is one contiguous copy of the source plane shifted by (ky − p) rows and s = kx − p columns (its rows
/// wrap into their neighbours at the edges), then the |s| wrapped entries per image row and the image rows
/// outside the source set to zero: a handful of bulk copies per row of `cols` instead of two or three small calls
/// per image row.
fn im2col<T: Float>(x: &[T], (c, h, w, k): (usize, usize, usize, usize), cols: &mut [T]) {
    let (p, hw) = (k / 2, h * w);
    for ci in 0..c {
        let plane = &x[ci * hw..(ci + 1) * hw];
        for ky in 0..k {
            // Image rows y whose source row y + ky − p lies inside [0, h).
            let (y0, y1) = (p.saturating_sub(ky), (h + p).saturating_sub(ky).min(h));
            for kx in 0..k {
                let row = &mut cols[((ci * k + ky) * k + kx) * hw..][..hw];
                if y0 >= y1 || kx.abs_diff(p) >= w {
                    row.fill(T::zero());
                    continue;
                }
                row[..y0 * w].fill(T::zero());
                row[y1 * w..].fill(T::zero());
                // dst[y·w + x] = src[(y + ky − p)·w + x + kx − p]: one copy for all of rows y0..y1.
                let src0 = (y0 + ky - p) * w;
                let len = (y1 - y0) * w - kx.abs_diff(p);
                if kx >= p {
                    let s = kx - p;
                    row[y0 * w..y0 * w + len].copy_from_slice(&plane[src0 + s..src0 + s + len]);
                    for y in y0..y1 {
                        zero_edge(&mut row[(y + 1) * w - s..(y + 1) * w]);
                    }
                } else {
                    let s = p - kx;
                    row[y0 * w + s..y1 * w].copy_from_slice(&plane[src0..src0 + len]);
                    for y in y0..y1 {
                        zero_edge(&mut row[y * w..y * w + s]);
                    }
                }
            }
        }
    }
}

/// Zeros an image row's wrapped edge: one store for 3×3 kernels (a fill of unknown length becomes a memset call,
/// which costs more than the store).
#[inline(always)]
fn zero_edge<T: Float>(edge: &mut [T]) {
    if let [v] = edge {
        *v = T::zero();
    } else {
        edge.fill(T::zero());
    }
}

/// The convolution of contiguous `x` and `wt`, each sample's output plane of channel o starting from `bias[o]`
/// when there is a bias.
fn forward<T: Float + Send + Sync + 'static>(
    (x, lx): (&[T], &Layout),
    (wt, lw): (&[T], &Layout),
    bias: Option<(&[T], &Layout)>,
) -> candle_core::Result<(Vec<T>, Shape)> {
    let (b, c, h, w, o, k) = dims(lx, lw)?;
    let bias = match bias {
        Some((v, l)) if l.dims() == [o] => Some(v),
        Some((_, l)) => {
            return Err(candle_core::Error::Msg(format!(
                "conv2d: bias of shape {:?} for {o} output channels",
                l.dims()
            )))
        }
        None => None,
    };
    let (hw, ckk) = (h * w, c * k * k);
    let mut out = vec![T::zero(); b * o * hw];
    let shape = Shape::from((b, o, h, w));
    if hw == 0 || o == 0 {
        return Ok((out, shape));
    }
    out.par_chunks_mut(o * hw)
        .zip(x.par_chunks(c * hw))
        .try_for_each_init(
            || vec![T::zero(); ckk * hw],
            |cols, (y, xs)| {
                if c > 0 {
                    im2col(xs, (c, h, w, k), cols);
                }
                product_into(y, (o, hw, ckk), wt, cols, Start::Bias(bias))
            },
        )?;
    Ok((out, shape))
}

/// What an output plane set holds before a product is added: nothing (the product overwrites it), a per-channel
/// bias (zero without one), or an earlier product.
#[derive(Clone, Copy)]
enum Start<'a, T> {
    Bias(Option<&'a [T]>),
    Sum,
}

/// y (o × hw) ← start + kernel (o × ckk) · cols (ckk × hw); with no input channels (ckk = 0) just the start.
#[inline]
fn product_into<T: Float + Send + Sync + 'static>(
    y: &mut [T],
    (o, hw, ckk): (usize, usize, usize),
    kernel: &[T],
    cols: &[T],
    start: Start<'_, T>,
) -> candle_core::Result<()> {
    let accumulate = match start {
        Start::Bias(Some(bias)) => {
            for (plane, &v) in y.chunks_mut(hw).zip(bias) {
                plane.fill(v);
            }
            true
        }
        Start::Bias(None) if ckk == 0 => {
            y.fill(T::zero());
            return Ok(());
        }
        Start::Bias(None) => false,
        Start::Sum => true,
    };
    if ckk == 0 {
        return Ok(());
    }
    let a = Strided::row_major(kernel, ckk);
    let b = Strided::row_major(cols, hw);
    gemm_into(y, (o, hw, ckk), a, b, accumulate)
}

/// The R-operator's pair of "same" convolutions sharing an input, untracked, on f32/f64 CPU tensors `[batch, c,
/// h, w]` with kernels `[o, c, k, k]`: (a ⊛ k₀ + c₀, a ⊛ k₁ + b ⊛ k₂ + c₁) with optional per-channel biases c,
/// each sample's columns of a built once for both outputs (the forward pass: x ⊛ W + β and x ⊛ V + R(x) ⊛ W + v_β;
/// the input gradient: g ⊛ W̃ and g ⊛ Ṽ + R(g) ⊛ W̃ with the [`flipped`] kernels).
pub(crate) fn conv_pair(
    a: &Tensor,
    b: Option<&Tensor>,
    kernels: [&Tensor; 3],
    bias: [Option<&Tensor>; 2],
) -> Result<[Tensor; 2]> {
    let (batch, c, h, w) = a.dims4()?;
    let (o, c2, k, k2) = kernels[0].dims4()?;
    if c2 != c
        || k != k2
        || k % 2 == 0
        || kernels.iter().any(|t| t.dims() != kernels[0].dims())
        || b.is_some_and(|b| b.dims() != a.dims())
        || bias.iter().flatten().any(|t| t.dims() != [o])
    {
        return Err(crate::Error::Shape(format!(
            "conv pair: inputs {:?}, kernels {:?} (all alike, odd and square) and biases of {o}",
            a.dims(),
            kernels[0].dims()
        )));
    }
    let all: Vec<Tensor> = [Some(a), b]
        .into_iter()
        .flatten()
        .chain(kernels)
        .chain(bias.into_iter().flatten())
        .map(|t| t.contiguous())
        .collect::<candle_core::Result<_>>()?;
    let dims = (batch, c, h, w, o, k);
    let shape = (batch, o, h, w);
    fn pair<T: candle_core::WithDType>(
        [y0, y1]: [Vec<T>; 2],
        shape: (usize, usize, usize, usize),
        dev: &candle_core::Device,
    ) -> Result<[Tensor; 2]> {
        Ok([
            Tensor::from_vec(y0, shape, dev)?,
            Tensor::from_vec(y1, shape, dev)?,
        ])
    }
    let has = (b.is_some(), bias.map(|t| t.is_some()));
    let dev = a.device();
    match a.dtype() {
        DType::F32 => pair(pair_values::<f32>(&all, dims, has)?, shape, dev),
        DType::F64 => pair(pair_values::<f64>(&all, dims, has)?, shape, dev),
        other => Err(crate::Error::invalid(format!(
            "conv pair: f32 or f64 tensors, not {other:?}"
        ))),
    }
}

/// [`conv_pair`]'s values: `all` holds a, b (when `has.0`), the three kernels and the biases present (`has.1`).
fn pair_values<T: Float + Send + Sync + candle_core::WithDType>(
    all: &[Tensor],
    (batch, c, h, w, o, k): (usize, usize, usize, usize, usize, usize),
    (with_b, with_bias): (bool, [bool; 2]),
) -> Result<[Vec<T>; 2]> {
    let guards: Vec<_> = all.iter().map(|t| t.storage_and_layout()).collect();
    let v = cpu_values::<T, _>(&guards, "conv pair")?;
    let mut v = v.into_iter();
    let mut next = || v.next().expect("one slice per tensor");
    let (a, b) = (next(), with_b.then(&mut next));
    let kernels = [next(), next(), next()];
    let biases = with_bias.map(|has| has.then(&mut next));
    let (hw, ckk) = (h * w, c * k * k);
    let mut out = [
        vec![T::zero(); batch * o * hw],
        vec![T::zero(); batch * o * hw],
    ];
    if hw == 0 || o == 0 {
        return Ok(out);
    }
    let [y0, y1] = &mut out;
    y0.par_chunks_mut(o * hw)
        .zip(y1.par_chunks_mut(o * hw))
        .enumerate()
        .try_for_each_init(
            || vec![T::zero(); ckk * hw],
            |cols, (s, (y0, y1))| {
                let per = c * hw;
                let size = (o, hw, ckk);
                if c > 0 {
                    im2col(&a[s * per..(s + 1) * per], (c, h, w, k), cols);
                }
                product_into(y0, size, kernels[0], cols, Start::Bias(biases[0]))?;
                product_into(y1, size, kernels[1], cols, Start::Bias(biases[1]))?;
                match b {
                    Some(b) if c > 0 => {
                        im2col(&b[s * per..(s + 1) * per], (c, h, w, k), cols);
                        product_into(y1, size, kernels[2], cols, Start::Sum)
                    }
                    _ => Ok(()),
                }
            },
        )?;
    Ok(out)
}

/// Σ over samples and positions of `[batch, c, h, w]`: the per-channel bias gradient `[c]`.
fn channel_sum<T: Float + Send + Sync>(
    g: &[T],
    lg: &Layout,
) -> candle_core::Result<(Vec<T>, Shape)> {
    let [b, c, h, w] = *lg.dims() else {
        return Err(candle_core::Error::Msg(format!(
            "conv2d: bias gradient of shape {:?}",
            lg.dims()
        )));
    };
    let hw = h * w;
    let sums = (0..c)
        .into_par_iter()
        .map(|ch| {
            (0..b).fold(T::zero(), |acc, s| {
                acc + lanes::sum(&g[(s * c + ch) * hw..][..hw])
            })
        })
        .collect();
    Ok((sums, Shape::from(c)))
}

/// Partial sums of the kernel gradient, each over a fixed share of the batch.
const WEIGHT_GRAD_PARTS: usize = 8;

/// dW = Σ_samples dy (out × hw) · colsᵀ (hw × c·k·k).
fn weight_grad<T: Float + Send + Sync + 'static>(
    dy: &[T],
    ldy: &Layout,
    x: &[T],
    lx: &Layout,
    k: usize,
) -> candle_core::Result<(Vec<T>, Shape)> {
    let (b, c, h, w, o) = match (lx.dims(), ldy.dims()) {
        ([b, c, h, w], [b2, o, h2, w2]) if b == b2 && h == h2 && w == w2 => (*b, *c, *h, *w, *o),
        _ => {
            return Err(candle_core::Error::Msg(
                "conv2d_same: gradient shape".into(),
            ))
        }
    };
    let (hw, ckk) = (h * w, c * k * k);
    let zero = || vec![T::zero(); o * ckk];
    if hw == 0 || o == 0 || c == 0 {
        return Ok((zero(), Shape::from((o, c, k, k))));
    }
    // A fixed split of the batch into partial sums, added in order: the same bits for any thread count and
    // schedule (a resumed run must repeat the original to the bit).
    let per = b.div_ceil(WEIGHT_GRAD_PARTS).max(1);
    let partials = dy
        .par_chunks(per * o * hw)
        .zip(x.par_chunks(per * c * hw))
        .map(|(gs, xs)| {
            let (mut acc, mut cols) = (zero(), vec![T::zero(); ckk * hw]);
            for (g, xs) in gs.chunks(o * hw).zip(xs.chunks(c * hw)) {
                im2col(xs, (c, h, w, k), &mut cols);
                let a = Strided::row_major(g, hw);
                let bt = Strided::row_major(&cols[..], hw).t();
                gemm_into(&mut acc, (o, ckk, hw), a, bt, true)?;
            }
            Ok(acc)
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    let mut dw = zero();
    for part in partials {
        dw.iter_mut().zip(part).for_each(|(a, p)| *a = *a + p);
    }
    Ok((dw, Shape::from((o, c, k, k))))
}

struct ConvSame;

impl FloatKernel<2> for ConvSame {
    fn run<T: Float + Send + Sync + 'static>(
        &self,
        [x, w]: [(&[T], &Layout); 2],
    ) -> candle_core::Result<(Vec<T>, Shape)> {
        forward(x, w, None)
    }
}

impl FloatKernel<3> for ConvSame {
    fn run<T: Float + Send + Sync + 'static>(
        &self,
        [x, w, b]: [(&[T], &Layout); 3],
    ) -> candle_core::Result<(Vec<T>, Shape)> {
        forward(x, w, Some(b))
    }
}

impl FloatKernel<1> for ChannelSum {
    fn run<T: Float + Send + Sync + 'static>(
        &self,
        [(g, l)]: [(&[T], &Layout); 1],
    ) -> candle_core::Result<(Vec<T>, Shape)> {
        channel_sum(g, l)
    }
}

impl FloatKernel<2> for WeightGrad {
    fn run<T: Float + Send + Sync + 'static>(
        &self,
        [(dy, ldy), (x, lx)]: [(&[T], &Layout); 2],
    ) -> candle_core::Result<(Vec<T>, Shape)> {
        weight_grad(dy, ldy, x, lx, self.k)
    }
}

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
        cpu_float(self, "conv2d", [(s1, l1), (s2, l2)])
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let dx = if x.track_op() {
            Some(input_grad(grad, w)?)
        } else {
            None
        };
        let dw = if w.track_op() {
            Some(weight_grad_op(grad, x, w.dim(2)?)?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

/// The convolution with a bias: input, kernel, bias.
impl CustomOp3 for ConvSame {
    fn name(&self) -> &'static str {
        "optlab-conv2d-same-bias"
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
        cpu_float(self, "conv2d", [(s1, l1), (s2, l2), (s3, l3)])
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        out: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw) = CustomOp2::bwd(self, x, w, out, grad)?;
        let db = if b.track_op() {
            Some(bias_grad(grad)?)
        } else {
            None
        };
        Ok((dx, dw, db))
    }
}

/// The per-channel sum of a `[batch, c, h, w]` gradient; its own backward broadcasts back.
struct ChannelSum;

/// The bias gradient of a convolution at output gradient `g` `[batch, out, h, w]`: its sum per channel.
pub(crate) fn bias_grad(g: &Tensor) -> candle_core::Result<Tensor> {
    g.contiguous()?.apply_op1(ChannelSum)
}

impl CustomOp1 for ChannelSum {
    fn name(&self) -> &'static str {
        "optlab-conv2d-bias-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        cpu_float(self, "conv2d bias gradient", [(s, l)])
    }

    fn bwd(&self, g: &Tensor, _out: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(
            grad.reshape((1, (), 1, 1))?
                .broadcast_as(g.shape())?
                .contiguous()?,
        ))
    }
}

/// The input gradient of `conv2d_same(·, w)` at output gradient `g`: the same convolution of `g` with the kernel
/// flipped in both spatial axes and its input and output channels swapped.
pub(crate) fn input_grad(g: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    g.contiguous()?.apply_op2(&flipped(w)?, ConvSame)
}

/// A kernel `[o, c, k, k]` flipped in both spatial axes with its channels swapped, `[c, o, k, k]`: the kernel of
/// the input gradient's convolution.
pub(crate) fn flipped(w: &Tensor) -> candle_core::Result<Tensor> {
    let k = w.dim(2)?;
    let rev = Tensor::new((0..k as u32).rev().collect::<Vec<_>>(), w.device())?;
    w.index_select(&rev, 2)?
        .index_select(&rev, 3)?
        .transpose(0, 1)?
        .contiguous()
}

/// The kernel gradient of `conv2d_same(x, ·)` (a `k`×`k` kernel) at output gradient `g`.
pub(crate) fn weight_grad_op(g: &Tensor, x: &Tensor, k: usize) -> candle_core::Result<Tensor> {
    g.contiguous()?
        .apply_op2(&x.contiguous()?, WeightGrad { k })
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
        cpu_float(self, "conv2d weight gradient", [(s1, l1), (s2, l2)])
    }

    /// dW(g, x) is bilinear: its derivative along g is conv2d_same(x, ḡ) and along x the input gradient of a
    /// convolution with kernel ḡ at output gradient g, for the incoming kernel-shaped gradient ḡ.
    fn bwd(
        &self,
        g: &Tensor,
        x: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let dg = if g.track_op() {
            Some(x.contiguous()?.apply_op2(&grad.contiguous()?, ConvSame)?)
        } else {
            None
        };
        let dx = if x.track_op() {
            Some(input_grad(g, grad)?)
        } else {
            None
        };
        Ok((dg, dx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    /// The pair against its two convolutions composed: with and without the second input and the biases, f64 and
    /// f32 (a 1-channel input too), and kernels that do not match are an error.
    #[test]
    fn conv_pair_matches_composed_convolutions() {
        let dev = Device::Cpu;
        for (dtype, c, tol) in [(DType::F64, 3, 1e-12), (DType::F32, 1, 1e-4)] {
            let t = |dims: &[usize]| {
                Tensor::randn(0f64, 1.0, dims, &dev)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap()
            };
            let (a, b) = (t(&[2, c, 5, 4]), t(&[2, c, 5, 4]));
            let k = [t(&[4, c, 3, 3]), t(&[4, c, 3, 3]), t(&[4, c, 3, 3])];
            let bias = [t(&[4]), t(&[4])];
            let conv =
                |x: &Tensor, w: &Tensor, bias: Option<&Tensor>| conv2d(x, w, bias, 1).unwrap();
            let diff = |x: &Tensor, y: &Tensor| {
                let up = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
                max_diff(&up(x), &up(y))
            };
            let [y0, y1] = conv_pair(
                &a,
                Some(&b),
                [&k[0], &k[1], &k[2]],
                [Some(&bias[0]), Some(&bias[1])],
            )
            .unwrap();
            assert!(diff(&y0, &conv(&a, &k[0], Some(&bias[0]))) < tol);
            let want = (conv(&a, &k[1], Some(&bias[1])) + conv(&b, &k[2], None)).unwrap();
            assert!(diff(&y1, &want) < tol);
            let [z0, z1] = conv_pair(&a, None, [&k[0], &k[1], &k[2]], [None, None]).unwrap();
            assert!(diff(&z0, &conv(&a, &k[0], None)) < tol);
            assert!(diff(&z1, &conv(&a, &k[1], None)) < tol);
            assert!(conv_pair(&a, None, [&k[0], &t(&[4, c, 5, 5]), &k[2]], [None, None]).is_err());
        }
    }

    /// The bulk-copy im2col against its definition, entry by entry: kernels 1–7, images narrower and shorter
    /// than the kernel, one row, one column.
    #[test]
    fn im2col_matches_its_definition() {
        for (c, h, w, k) in [
            (2, 5, 6, 3),
            (1, 1, 1, 3),
            (3, 4, 2, 5),
            (1, 7, 3, 7),
            (2, 3, 4, 1),
            (1, 2, 9, 5),
        ] {
            let x: Vec<f64> = (0..c * h * w).map(|i| i as f64 + 1.0).collect();
            let mut cols = vec![f64::NAN; c * k * k * h * w];
            im2col(&x, (c, h, w, k), &mut cols);
            let p = k / 2;
            for ci in 0..c {
                for ky in 0..k {
                    for kx in 0..k {
                        for y in 0..h {
                            for xx in 0..w {
                                let (sy, sx) = (
                                    (y + ky) as isize - p as isize,
                                    (xx + kx) as isize - p as isize,
                                );
                                let want = if (0..h as isize).contains(&sy)
                                    && (0..w as isize).contains(&sx)
                                {
                                    x[ci * h * w + sy as usize * w + sx as usize]
                                } else {
                                    0.0
                                };
                                let got = cols[((ci * k + ky) * k + kx) * h * w + y * w + xx];
                                assert_eq!(
                                    got, want,
                                    "{c}x{h}x{w} k={k} at ({ci},{ky},{kx},{y},{xx})"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

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

    /// Hessian-vector products through `conv2d_same` equal those through candle's `conv2d` (f64), so the
    /// backward's own backward is exact.
    #[test]
    fn second_order_matches_candle_conv2d() {
        let dev = Device::Cpu;
        for &(b, c, h, w, o, k) in &[(2, 3, 5, 4, 2, 3), (1, 2, 3, 3, 3, 1), (2, 1, 6, 5, 2, 5)] {
            let x = Var::randn(0f64, 1., (b, c, h, w), &dev).unwrap();
            let wt = Var::randn(0f64, 1., (o, c, k, k), &dev).unwrap();
            let g = Tensor::randn(0f64, 1., (b, o, h, w), &dev).unwrap();
            let (vx, vw) = (
                Tensor::randn(0f64, 1., (b, c, h, w), &dev).unwrap(),
                Tensor::randn(0f64, 1., (o, c, k, k), &dev).unwrap(),
            );
            let hvp = |y: Tensor| {
                let loss = (y.sqr().unwrap() * &g).unwrap().sum_all().unwrap();
                let gr = loss.backward().unwrap();
                let dot = ((gr.get(&x).unwrap() * &vx).unwrap().sum_all().unwrap()
                    + (gr.get(&wt).unwrap() * &vw).unwrap().sum_all().unwrap())
                .unwrap();
                let h = dot.backward().unwrap();
                (h.get(&x).unwrap().clone(), h.get(&wt).unwrap().clone())
            };
            let ours = hvp(conv2d_same(&x, &wt).unwrap());
            let theirs = hvp(x.conv2d(&wt, k / 2, 1, 1, 1).unwrap());
            assert!(max_diff(&ours.0, &theirs.0) < 1e-10);
            assert!(max_diff(&ours.1, &theirs.1) < 1e-10);
        }
    }

    /// With a bias, the one op's values, gradients and Hessian-vector products (input, kernel, bias) equal candle's
    /// `conv2d` followed by a broadcast addition, in f64; other paddings take candle's path.
    #[test]
    fn bias_matches_broadcast_add() {
        let dev = Device::Cpu;
        for &(b, c, h, w, o, k, pad) in &[
            (2, 3, 5, 4, 2, 3, 1),
            (3, 1, 4, 4, 4, 1, 0),
            (2, 2, 5, 5, 3, 3, 0),
        ] {
            let x = Var::randn(0f64, 1., (b, c, h, w), &dev).unwrap();
            let wt = Var::randn(0f64, 1., (o, c, k, k), &dev).unwrap();
            let bias = Var::randn(0f64, 1., o, &dev).unwrap();
            let vars = [&x, &wt, &bias];
            let dirs: Vec<Tensor> = vars
                .iter()
                .map(|v| Tensor::randn(0f64, 1., v.shape(), &dev).unwrap())
                .collect();
            let reference = x
                .conv2d(&wt, pad, 1, 1, 1)
                .unwrap()
                .broadcast_add(&bias.reshape((1, o, 1, 1)).unwrap())
                .unwrap();
            let g = Tensor::randn(0f64, 1., reference.shape(), &dev).unwrap();
            let run = |y: Tensor| {
                let loss = (y.sqr().unwrap() * &g).unwrap().sum_all().unwrap();
                let gr = loss.backward().unwrap();
                let mut dot = Tensor::zeros((), DType::F64, &dev).unwrap();
                for (v, d) in vars.iter().zip(&dirs) {
                    dot = (dot + (gr.get(v).unwrap() * d).unwrap().sum_all().unwrap()).unwrap();
                }
                let hv = dot.backward().unwrap();
                let firsts: Vec<Tensor> = vars.iter().map(|v| gr.get(v).unwrap().clone()).collect();
                let seconds: Vec<Tensor> =
                    vars.iter().map(|v| hv.get(v).unwrap().clone()).collect();
                (y, firsts, seconds)
            };
            let ours = run(conv2d(&x, &wt, Some(&bias), pad).unwrap());
            let theirs = run(reference);
            assert!(max_diff(&ours.0, &theirs.0) < 1e-12);
            for (a, t) in ours
                .1
                .iter()
                .chain(&ours.2)
                .zip(theirs.1.iter().chain(&theirs.2))
            {
                assert!(max_diff(a, t) < 1e-10, "{:?}", (b, c, h, w, o, k, pad));
            }
        }
    }

    /// The gradients are the same bits on 1 and 3 threads (resumed runs repeat the original to the bit).
    #[test]
    fn gradients_do_not_depend_on_the_thread_count() {
        let dev = Device::Cpu;
        let x = Var::randn(0f32, 1., (37, 3, 6, 5), &dev).unwrap();
        let wt = Var::randn(0f32, 1., (4, 3, 3, 3), &dev).unwrap();
        let bias = Var::randn(0f32, 1., 4, &dev).unwrap();
        let g = Tensor::randn(0f32, 1., (37, 4, 6, 5), &dev).unwrap();
        let grads = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let y = conv2d(&x, &wt, Some(&bias), 1).unwrap();
                let gr = (y * &g).unwrap().sum_all().unwrap().backward().unwrap();
                [&x, &wt, &bias].map(|v| {
                    gr.get(v)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap()
                })
            })
        };
        let (one, three) = (grads(1), grads(3));
        for (a, b) in one.iter().zip(&three) {
            assert!(a.iter().zip(b).all(|(p, q)| p.to_bits() == q.to_bits()));
        }
    }
}
