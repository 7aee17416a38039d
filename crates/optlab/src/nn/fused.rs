//! Fused row kernels for the transformer: softmax over the last dimension, LayerNorm and the exact (erf) GELU, as
//! candle custom ops.
//!
//! Composed from candle's element-wise ops, the first two spend most of their backward pass in broadcast
//! reductions (measured on (32, 4, 64, 64) attention logits: softmax backward 11 ms composed; LayerNorm on
//! (32, 64, 64): 4.3 ms), and GELU's backward allocates a tensor per term. Here the forward and the first backward
//! are single passes over each row. The backward is itself a
//! custom op whose own backward (needed only for second-order derivatives: Hessian-vector products, AdaHessian)
//! is the vector-Jacobian product of the composed reference formula, so double backward stays exact.

mod attention;
mod cross_entropy;
mod inner;
mod rop;
mod rows;

use crate::nn::lanes;
use crate::optim::kernel::exp_nonpositive_f32;
pub(crate) use crate::simd::{simd, simd_body, SimdBody};
use crate::Result;
pub use attention::causal_attention;
pub(crate) use attention::AttentionR;
use candle_core::{
    backprop::GradStore, CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape,
};
use candle_core::{DType, Tensor, Var, D};
pub(crate) use cross_entropy::{cross_entropy_rows, cross_entropy_rows_composed, fusable};
pub use inner::inner_with_constant;
use num_traits::Float;
use rayon::prelude::*;
pub(crate) use rop::{gelu_r, gelu_r_grad, layer_norm_r, layer_norm_r_grad};
pub(crate) use rows::cpu_values;

/// LayerNorm's ε (PyTorch's default).
pub const LN_EPS: f64 = 1e-5;

/// Rows per parallel task.
const ROWS_PER_TASK: usize = 64;

fn contiguous<'a, T>(v: &'a [T], l: &Layout, what: &str) -> candle_core::Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => Err(candle_core::Error::Msg(format!(
            "{what}: the input must be contiguous"
        ))),
    }
}

/// `out[row] = f(rows of the inputs)` for every row of length `n`, in parallel.
fn map_rows<T: Copy + Send + Sync + Default, const K: usize>(
    n: usize,
    inputs: [&[T]; K],
    f: impl Fn(&[&[T]; K], &mut [T]) + Sync,
) -> Vec<T> {
    let mut out = vec![T::default(); inputs[0].len()];
    out.par_chunks_mut(n * ROWS_PER_TASK)
        .enumerate()
        .for_each(|(task, chunk)| {
            for (r, o) in chunk.chunks_mut(n).enumerate() {
                let start = (task * ROWS_PER_TASK + r) * n;
                f(&inputs.map(|v| &v[start..start + n]), o);
            }
        });
    out
}

/// Mean and 1/√(var + ε) of a row (biased variance).
fn moments<T: Float>(x: &[T]) -> (T, T) {
    let n = T::from(x.len()).expect("row length");
    let mu = x.iter().fold(T::zero(), |a, &v| a + v) / n;
    let var = x.iter().fold(T::zero(), |a, &v| a + (v - mu) * (v - mu)) / n;
    (mu, (var + T::from(LN_EPS).expect("eps")).sqrt().recip())
}

/// A kernel over the rows (last dimension) of K inputs of one float type.
trait RowKernel<const K: usize> {
    fn run<T: Float + Send + Sync + Default>(&self, inputs: [&[T]; K], n: usize) -> Vec<T>;
}

/// The f32 values of a storage, `None` for another type.
fn f32s(s: &CpuStorage) -> Option<&[f32]> {
    match s {
        CpuStorage::F32(v) => Some(v),
        _ => None,
    }
}

/// The f64 values of a storage, `None` for another type.
fn f64s(s: &CpuStorage) -> Option<&[f64]> {
    match s {
        CpuStorage::F64(v) => Some(v),
        _ => None,
    }
}

/// The inputs as contiguous slices of one type, `None` when one of them has another type.
fn slices<'a, T, const K: usize>(
    inputs: &[(&'a CpuStorage, &Layout); K],
    what: &str,
    get: impl Fn(&'a CpuStorage) -> Option<&'a [T]>,
) -> candle_core::Result<Option<[&'a [T]; K]>> {
    let mut out: [&[T]; K] = [&[]; K];
    for (o, (s, l)) in out.iter_mut().zip(inputs) {
        let Some(v) = get(s) else {
            return Ok(None);
        };
        *o = contiguous(v, l, what)?;
    }
    Ok(Some(out))
}

/// A CPU kernel over K contiguous inputs of one float type, each with its layout (for its dims), returning the
/// output values and shape; [`cpu_float`] runs it on candle storages.
pub(crate) trait FloatKernel<const K: usize> {
    fn run<T: Float + Send + Sync + 'static>(
        &self,
        inputs: [(&[T], &Layout); K],
    ) -> candle_core::Result<(Vec<T>, Shape)>;
}

/// K contiguous inputs of one type, each with its layout.
type Inputs<'a, T, const K: usize> = [(&'a [T], &'a Layout); K];

/// The inputs as contiguous slices of one type with their layouts, `None` when one has another type.
fn typed<'a, T, const K: usize>(
    inputs: &[(&'a CpuStorage, &'a Layout); K],
    what: &str,
    get: impl Fn(&'a CpuStorage) -> Option<&'a [T]>,
) -> candle_core::Result<Option<Inputs<'a, T, K>>> {
    Ok(slices(inputs, what, get)?.map(|v| std::array::from_fn(|i| (v[i], inputs[i].1))))
}

/// Runs `k` on CPU storages that are all f32 or all f64 (one error line otherwise, or for a non-contiguous input).
pub(crate) fn cpu_float<const K: usize>(
    k: &impl FloatKernel<K>,
    what: &str,
    inputs: [(&CpuStorage, &Layout); K],
) -> candle_core::Result<(CpuStorage, Shape)> {
    if let Some(v) = typed(&inputs, what, f32s)? {
        return k.run(v).map(|(o, s)| (CpuStorage::F32(o), s));
    }
    if let Some(v) = typed(&inputs, what, f64s)? {
        return k.run(v).map(|(o, s)| (CpuStorage::F64(o), s));
    }
    Err(candle_core::Error::Msg(format!(
        "{what}: the inputs must all be f32 or all f64"
    )))
}

/// Runs `k` in f32 or f64 on rows of the first input's last dimension.
fn cpu_rows<const K: usize>(
    k: &impl RowKernel<K>,
    what: &str,
    inputs: [(&CpuStorage, &Layout); K],
) -> candle_core::Result<CpuStorage> {
    // An empty last dimension means no rows at all; 1 keeps the chunking valid.
    let n = inputs[0].1.dims().last().copied().unwrap_or(1).max(1);
    if let Some(v) = slices(&inputs, what, f32s)? {
        return Ok(CpuStorage::F32(k.run(v, n)));
    }
    if let Some(v) = slices(&inputs, what, f64s)? {
        return Ok(CpuStorage::F64(k.run(v, n)));
    }
    Err(candle_core::Error::Msg(format!(
        "{what}: the inputs must all be f32 or all f64"
    )))
}

/// The vector-Jacobian product ⟨h, f(inputs)⟩ of a composed formula, by a nested backward pass over detached
/// copies of the inputs (the second-order path of the fused backward ops).
fn composed_vjp(
    inputs: &[&Tensor],
    h: &Tensor,
    f: impl Fn(&[Tensor]) -> candle_core::Result<Tensor>,
) -> candle_core::Result<Vec<Tensor>> {
    let vars = inputs
        .iter()
        .map(|t| Var::from_tensor(&t.detach()))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let grads: GradStore = (f(&ts)? * h.detach())?.sum_all()?.backward()?;
    vars.iter()
        .map(|v| match grads.get(v) {
            Some(g) => Ok(g.clone()),
            None => v.zeros_like(),
        })
        .collect()
}

/// Σ over every position but the last dimension, `[.., C] → [C]`, as a (1 × rows)·(rows × C) product: candle's
/// reduction over a leading dimension is ~25x slower (bias and per-channel gradients).
pub(crate) fn sum_rows(t: &Tensor) -> candle_core::Result<Tensor> {
    let c = row_len(t);
    let rows = t.contiguous()?.reshape(((), c))?;
    let ones = Tensor::ones((1, rows.dims()[0]), t.dtype(), t.device())?;
    ones.matmul(&rows)?.reshape(c)
}

fn row_len(t: &Tensor) -> usize {
    t.dims().last().copied().unwrap_or(1).max(1)
}

/// A first-backward kernel of two inputs whose own backward (second order only) is the vector-Jacobian product of
/// its composed reference formula; [`Backward2Op`] makes it a candle op.
trait Backward2: RowKernel<2> + Send + Sync {
    const NAME: &'static str;
    /// The op family, for error messages.
    const WHAT: &'static str;
    /// The output's shape from the first input's (the same unless overridden).
    fn out_shape(first: &Shape) -> Shape {
        first.clone()
    }
    /// The same function in composed candle ops.
    fn composed(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor>;
}

struct Backward2Op<K>(K);

impl<K: Backward2> CustomOp2 for Backward2Op<K> {
    fn name(&self) -> &'static str {
        K::NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = cpu_rows(&self.0, K::WHAT, [(s1, l1), (s2, l2)])?;
        Ok((out, K::out_shape(l1.shape())))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _out: &Tensor,
        h: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let v = composed_vjp(&[a, b], h, |t| K::composed(&t[0], &t[1]))?;
        Ok((Some(v[0].clone()), Some(v[1].clone())))
    }
}

// ---------------------------------------------------------------------------------------------- softmax

struct Softmax;
struct SoftmaxGrad;

impl RowKernel<1> for Softmax {
    fn run<T: Float + Send + Sync + Default>(&self, [x]: [&[T]; 1], n: usize) -> Vec<T> {
        map_rows(n, [x], |[x], o| {
            if let (Some(x), Some(o)) = (as_f32(x), as_f32_mut(o)) {
                return simd(|| softmax_loop(x, o));
            }
            let m = lanes::max(x);
            for (o, &v) in o.iter_mut().zip(*x) {
                *o = (v - m).exp();
            }
            let inv = lanes::sum(o).recip();
            o.iter_mut().for_each(|v| *v = *v * inv);
        })
    }
}

/// One row's softmax in f32 with the branch-free exponential (x − max ≤ 0; a −∞ entry, a masked position,
/// stays exactly 0).
#[inline(always)]
fn softmax_loop(x: &[f32], o: &mut [f32]) {
    let m = lanes::max(x);
    for (o, &v) in o.iter_mut().zip(x) {
        let e = exp_nonpositive_f32(v - m);
        *o = if v == f32::NEG_INFINITY { 0.0 } else { e };
    }
    let inv = 1.0 / lanes::sum(o);
    o.iter_mut().for_each(|v| *v *= inv);
}

/// dx = y ⊙ (g − ⟨g, y⟩) per row.
impl RowKernel<2> for SoftmaxGrad {
    fn run<T: Float + Send + Sync + Default>(&self, [y, g]: [&[T]; 2], n: usize) -> Vec<T> {
        map_rows(n, [y, g], |[y, g], o| {
            let s = y.iter().zip(*g).fold(T::zero(), |a, (&y, &g)| a + y * g);
            for ((o, &y), &g) in o.iter_mut().zip(*y).zip(*g) {
                *o = y * (g - s);
            }
        })
    }
}

impl Backward2 for SoftmaxGrad {
    const NAME: &'static str = "optlab-softmax-last-grad";
    const WHAT: &'static str = "softmax";
    fn composed(y: &Tensor, g: &Tensor) -> candle_core::Result<Tensor> {
        y * g.broadcast_sub(&(y * g)?.sum_keepdim(D::Minus1)?)?
    }
}

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "optlab-softmax-last"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        Ok((cpu_rows(self, "softmax", [(s, l)])?, l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(
            y.apply_op2(&g.contiguous()?, Backward2Op(SoftmaxGrad))?,
        ))
    }
}

/// Softmax over the last dimension (rows of −∞ excepted: every row needs a finite entry).
pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    Ok(x.contiguous()?.apply_op1(Softmax)?)
}

// -------------------------------------------------------------------------------------------- LayerNorm

struct LayerNorm;
/// dx of LayerNorm from (x, w, g).
struct LayerNormDx;
/// Σ over rows of g ⊙ z (the weight's gradient) from (x, g).
struct LayerNormDw;

/// z = (x − μ)/√(var + ε) in composed candle ops (the reference for the second-order path).
fn standardize_composed(x: &Tensor) -> candle_core::Result<Tensor> {
    let xc = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    xc.broadcast_div(&(var + LN_EPS)?.sqrt()?)
}

fn ln_dx_composed(x: &Tensor, w: &Tensor, g: &Tensor) -> candle_core::Result<Tensor> {
    let z = standardize_composed(x)?;
    let var = x
        .broadcast_sub(&x.mean_keepdim(D::Minus1)?)?
        .sqr()?
        .mean_keepdim(D::Minus1)?;
    let r = (var + LN_EPS)?.sqrt()?.recip()?;
    let u = g.broadcast_mul(w)?;
    let a = (&u * &z)?.mean_keepdim(D::Minus1)?;
    u.broadcast_sub(&u.mean_keepdim(D::Minus1)?)?
        .sub(&z.broadcast_mul(&a)?)?
        .broadcast_mul(&r)
}

fn ln_dw_composed(x: &Tensor, g: &Tensor) -> candle_core::Result<Tensor> {
    let c = row_len(x);
    (standardize_composed(x)? * g)?.reshape(((), c))?.sum(0)
}

impl RowKernel<3> for LayerNorm {
    fn run<T: Float + Send + Sync + Default>(&self, [x, w, b]: [&[T]; 3], n: usize) -> Vec<T> {
        map_rows(n, [x], |[x], o| {
            let (mu, inv) = moments(x);
            for (i, (o, &v)) in o.iter_mut().zip(*x).enumerate() {
                *o = (v - mu) * inv * w[i] + b[i];
            }
        })
    }
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "optlab-layer-norm"
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
        let out = cpu_rows(self, "layer_norm", [(s1, l1), (s2, l2), (s3, l3)])?;
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = g.contiguous()?;
        let dx = x.apply_op3(w, &g, LayerNormDx)?;
        let dw = x.apply_op2(&g, Backward2Op(LayerNormDw))?;
        let db = sum_rows(&g)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// dx = (g⊙w − mean(g⊙w) − z · mean(g⊙w⊙z)) / σ per row.
impl RowKernel<3> for LayerNormDx {
    fn run<T: Float + Send + Sync + Default>(&self, [x, w, g]: [&[T]; 3], n: usize) -> Vec<T> {
        let nt = T::from(n).expect("row length");
        map_rows(n, [x, g], |[x, g], o| {
            let (mu, inv) = moments(x);
            let (mut ubar, mut a) = (T::zero(), T::zero());
            for i in 0..x.len() {
                let u = g[i] * w[i];
                ubar = ubar + u;
                a = a + u * (x[i] - mu) * inv;
            }
            let (ubar, a) = (ubar / nt, a / nt);
            for (i, o) in o.iter_mut().enumerate() {
                let z = (x[i] - mu) * inv;
                *o = inv * (g[i] * w[i] - ubar - z * a);
            }
        })
    }
}

impl CustomOp3 for LayerNormDx {
    fn name(&self) -> &'static str {
        "optlab-layer-norm-dx"
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
        let out = cpu_rows(self, "layer_norm", [(s1, l1), (s2, l2), (s3, l3)])?;
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        g: &Tensor,
        _dx: &Tensor,
        h: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let v = composed_vjp(&[x, w, g], h, |t| ln_dx_composed(&t[0], &t[1], &t[2]))?;
        Ok((Some(v[0].clone()), Some(v[1].clone()), Some(v[2].clone())))
    }
}

/// dw = Σ over rows of g ⊙ z (one output row).
impl RowKernel<2> for LayerNormDw {
    fn run<T: Float + Send + Sync + Default>(&self, [x, g]: [&[T]; 2], n: usize) -> Vec<T> {
        let mut dw = vec![T::zero(); n];
        for (x, g) in x.chunks_exact(n).zip(g.chunks_exact(n)) {
            let (mu, inv) = moments(x);
            for ((d, &x), &g) in dw.iter_mut().zip(x).zip(g) {
                *d = *d + g * (x - mu) * inv;
            }
        }
        dw
    }
}

impl Backward2 for LayerNormDw {
    const NAME: &'static str = "optlab-layer-norm-dw";
    const WHAT: &'static str = "layer_norm";
    fn out_shape(first: &Shape) -> Shape {
        Shape::from(first.dims().last().copied().unwrap_or(1))
    }
    fn composed(x: &Tensor, g: &Tensor) -> candle_core::Result<Tensor> {
        ln_dw_composed(x, g)
    }
}

/// `F.layer_norm` over the last dimension (biased variance, ε 1e-5) with a per-channel affine.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let c = row_len(x);
    if weight.dims() != [c] || bias.dims() != [c] {
        return Err(crate::Error::Shape(format!(
            "layer norm over {c} channels with weight {:?} and bias {:?}",
            weight.dims(),
            bias.dims()
        )));
    }
    if !matches!(x.dtype(), DType::F32 | DType::F64) {
        return Err(crate::Error::invalid("layer norm runs in f32 or f64"));
    }
    Ok(x.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, LayerNorm)?)
}

// ------------------------------------------------------------------------------------------------- GELU

struct Gelu;
/// dx = g ⊙ (Φ(x) + x φ(x)) from (x, g).
struct GeluGrad;

/// Φ(x), the standard normal CDF: libm's erf in f64; in f32 [`normal_cdf_f32`].
fn normal_cdf<T: Float>(x: T) -> T {
    if std::mem::size_of::<T>() == 8 {
        let x = x.to_f64().expect("f64");
        return T::from(0.5 * (1.0 + libm::erf(x * std::f64::consts::FRAC_1_SQRT_2))).expect("f64");
    }
    T::from(normal_cdf_f32(x.to_f32().expect("f32"))).expect("f32")
}

/// Φ(x) in f32 = ½ erfc(|x|/√2) (mirrored for x ≥ 0), with erfc(z) ≈ t P(t) e^(−z²), t = 1/(1 + p z): the
/// Abramowitz–Stegun 7.1.26 fit (|error| ≤ 1.5e-7 in erf) that PyTorch's vectorized CPU `erf` uses, so the GELU
/// matches PyTorch's own f32 numerics. Horner by fused multiply-adds and the branch-free exponential of the
/// optimizer kernels, with a select for the sign, so loops over it vectorize (16 lanes with AVX-512).
#[inline(always)]
fn normal_cdf_f32(x: f32) -> f32 {
    cdf_and_gauss_f32(x).0
}

/// (Φ(x), e^(−x²/2)) in f32 ([`normal_cdf_f32`]): the Gaussian factor is the one its erfc needs, so the GELU
/// backward gets φ(x) without a second exponential.
#[allow(clippy::excessive_precision)]
#[inline(always)]
fn cdf_and_gauss_f32(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_592,
        -0.284_496_736,
        1.421_413_741,
        -1.453_152_027,
        1.061_405_429,
    ];
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / P.mul_add(z, 1.0);
    let mut poly = A[4];
    for &a in A[..4].iter().rev() {
        poly = poly.mul_add(t, a);
    }
    let gauss = exp_nonpositive_f32(-0.5 * x * x);
    let half_erfc = 0.5 * t * poly * gauss;
    let cdf = if x >= 0.0 { 1.0 - half_erfc } else { half_erfc };
    (cdf, gauss)
}

/// φ(x) = exp(−x²/2)/√(2π).
fn normal_pdf<T: Float>(x: T) -> T {
    let c = T::from(0.5 * std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2)
        .expect("c");
    c * (-(x * x) * T::from(0.5).expect("1/2")).exp()
}

/// The f32 slices of a kernel's generic ones: the engine's only 4-byte float is f32.
fn as_f32<T: Float>(v: &[T]) -> Option<&[f32]> {
    (std::mem::size_of::<T>() == 4 && std::mem::align_of::<T>() == 4)
        // SAFETY: a 4-byte `Float` here is f32 (candle's storage types are f16, bf16, f32 and f64), so the
        // slice has the same length, alignment and bit layout as f32s.
        .then(|| unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<f32>(), v.len()) })
}

/// [`as_f32`] for an output slice.
fn as_f32_mut<T: Float>(v: &mut [T]) -> Option<&mut [f32]> {
    (std::mem::size_of::<T>() == 4 && std::mem::align_of::<T>() == 4)
        // SAFETY: as in `as_f32`.
        .then(|| unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<f32>(), v.len()) })
}

/// eᵛ for v ≤ 0: f32 through the project's branch-free exponential (as the fused softmax), f64 exactly.
#[inline(always)]
fn exp_nonpositive<T: Float>(v: T) -> T {
    if std::mem::size_of::<T>() == 4 {
        let e = exp_nonpositive_f32(v.to_f32().unwrap_or(f32::NAN));
        T::from(e).unwrap_or_else(T::nan)
    } else {
        v.exp()
    }
}

/// x Φ(x) over f32 slices.
#[inline(always)]
fn gelu_loop(x: &[f32], o: &mut [f32]) {
    for (o, &v) in o.iter_mut().zip(x) {
        *o = v * normal_cdf_f32(v);
    }
}

/// g (Φ(x) + x φ(x)) over f32 slices.
#[inline(always)]
fn gelu_grad_loop(x: &[f32], g: &[f32], o: &mut [f32]) {
    let c = 0.5 * std::f32::consts::FRAC_2_SQRT_PI * std::f32::consts::FRAC_1_SQRT_2;
    for ((o, &v), &g) in o.iter_mut().zip(x).zip(g) {
        let (cdf, gauss) = cdf_and_gauss_f32(v);
        *o = g * (cdf + v * c * gauss);
    }
}

impl RowKernel<1> for Gelu {
    fn run<T: Float + Send + Sync + Default>(&self, [x]: [&[T]; 1], n: usize) -> Vec<T> {
        map_rows(n, [x], |[x], o| {
            if let (Some(x), Some(o)) = (as_f32(x), as_f32_mut(o)) {
                return simd(|| gelu_loop(x, o));
            }
            for (o, &v) in o.iter_mut().zip(*x) {
                *o = v * normal_cdf(v);
            }
        })
    }
}

impl RowKernel<2> for GeluGrad {
    fn run<T: Float + Send + Sync + Default>(&self, [x, g]: [&[T]; 2], n: usize) -> Vec<T> {
        map_rows(n, [x, g], |[x, g], o| {
            if let (Some(x), Some(g), Some(o)) = (as_f32(x), as_f32(g), as_f32_mut(o)) {
                return simd(|| gelu_grad_loop(x, g, o));
            }
            for ((o, &v), &g) in o.iter_mut().zip(*x).zip(*g) {
                *o = g * (normal_cdf(v) + v * normal_pdf(v));
            }
        })
    }
}

/// g ⊙ (Φ(x) + x φ(x)) in composed candle ops (the reference for the second-order path).
fn gelu_dx_composed(x: &Tensor, g: &Tensor) -> candle_core::Result<Tensor> {
    let cdf = ((x * std::f64::consts::FRAC_1_SQRT_2)?.erf()? + 1.0)? * 0.5;
    let pdf = ((x.sqr()? * -0.5)?.exp()?
        * (0.5 * std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2))?;
    g * (cdf? + (x * pdf)?)?
}

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "optlab-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        Ok((cpu_rows(self, "gelu", [(s, l)])?, l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(x.apply_op2(&g.contiguous()?, Backward2Op(GeluGrad))?))
    }
}

impl Backward2 for GeluGrad {
    const NAME: &'static str = "optlab-gelu-grad";
    const WHAT: &'static str = "gelu";
    fn composed(x: &Tensor, g: &Tensor) -> candle_core::Result<Tensor> {
        gelu_dx_composed(x, g)
    }
}

/// The exact GELU x Φ(x) (PyTorch's `F.gelu`, approximate='none'), elementwise.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    Ok(gelu_exact(x)?)
}

/// [`gelu`] with candle's error type (for activation layers).
pub(crate) fn gelu_exact(x: &Tensor) -> candle_core::Result<Tensor> {
    if !matches!(x.dtype(), DType::F32 | DType::F64) {
        return Err(candle_core::Error::Msg("gelu runs in f32 or f64".into()));
    }
    x.contiguous()?.apply_op1(Gelu)
}

// ------------------------------------------------------------------------------------------------- ReLU

struct Relu;
/// dx = g ⊙ [x > 0] from (x, g).
struct ReluGrad;

impl RowKernel<1> for Relu {
    fn run<T: Float + Send + Sync + Default>(&self, [x]: [&[T]; 1], n: usize) -> Vec<T> {
        map_rows(n, [x], |[x], o| {
            for (o, &v) in o.iter_mut().zip(*x) {
                // NaN passes through, as in PyTorch.
                *o = if v <= T::zero() { T::zero() } else { v };
            }
        })
    }
}

impl RowKernel<2> for ReluGrad {
    fn run<T: Float + Send + Sync + Default>(&self, [x, g]: [&[T]; 2], n: usize) -> Vec<T> {
        map_rows(n, [x, g], |[x, g], o| {
            for ((o, &v), &g) in o.iter_mut().zip(*x).zip(*g) {
                *o = if v > T::zero() { g } else { T::zero() };
            }
        })
    }
}

impl Backward2 for ReluGrad {
    const NAME: &'static str = "optlab-relu-grad";
    const WHAT: &'static str = "relu";
    fn composed(x: &Tensor, g: &Tensor) -> candle_core::Result<Tensor> {
        g * x.gt(0.0)?.to_dtype(g.dtype())?
    }
}

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "optlab-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        Ok((cpu_rows(self, "relu", [(s, l)])?, l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(relu_grad(x, g)?))
    }
}

/// g ⊙ [x > 0] in one pass (ReLU's gradient at x; on the CPU in f32/f64, composed elsewhere).
pub(crate) fn relu_grad(x: &Tensor, g: &Tensor) -> candle_core::Result<Tensor> {
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
        x.contiguous()?
            .apply_op2(&g.contiguous()?, Backward2Op(ReluGrad))
    } else {
        ReluGrad::composed(x, g)
    }
}

/// max(x, 0) elementwise with PyTorch's gradient g ⊙ [x > 0] (none at 0; candle's `relu` passes it there): one
/// op each way on the CPU in f32/f64 (candle's `relu` costs its backward four passes and three allocations),
/// candle's `relu` elsewhere.
pub(crate) fn relu(x: &Tensor) -> candle_core::Result<Tensor> {
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
        x.contiguous()?.apply_op1(Relu)
    } else {
        x.relu()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// max |a − b| over all entries, in f64 (for f32 and f64 tensors; shared with the cross-entropy tests).
    pub(super) fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b)
            .and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_dtype(DType::F64))
            .and_then(|d| d.to_scalar::<f64>())
            .unwrap()
    }

    /// The x-gradient of ⟨g's entry for x, v⟩: one more order of derivative (shared with the child modules' tests).
    pub(super) fn dot_grad(g: &GradStore, x: &Var, v: &Tensor) -> GradStore {
        (g.get(x).unwrap() * v)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap()
    }

    fn composed_softmax(x: &Tensor) -> Tensor {
        let m = x.max_keepdim(D::Minus1).unwrap().detach();
        let e = x.broadcast_sub(&m).unwrap().exp().unwrap();
        e.broadcast_div(&e.sum_keepdim(D::Minus1).unwrap()).unwrap()
    }

    fn composed_ln(x: &Tensor, w: &Tensor, b: &Tensor) -> Tensor {
        standardize_composed(x)
            .unwrap()
            .broadcast_mul(w)
            .unwrap()
            .broadcast_add(b)
            .unwrap()
    }

    /// Forward, gradient and the gradient of a gradient (a Hessian-vector product) equal the composed formulas.
    #[test]
    fn fused_ops_match_composed_to_second_order() {
        crate::require_second_order().unwrap();
        let dev = Device::Cpu;
        let x = Var::randn(0f64, 1.0, (3, 5, 7), &dev).unwrap();
        let w = Var::randn(1f64, 0.3, 7, &dev).unwrap();
        let b = Var::randn(0f64, 0.3, 7, &dev).unwrap();
        let r = Tensor::randn(0f64, 1.0, (3, 5, 7), &dev).unwrap();
        let v = Tensor::randn(0f64, 1.0, (3, 5, 7), &dev).unwrap();
        type F<'a> = Box<dyn Fn(&Tensor) -> Tensor + 'a>;
        let cases: [(&str, F, F); 4] = [
            (
                "softmax",
                Box::new(|x: &Tensor| softmax_last(x).unwrap()),
                Box::new(composed_softmax),
            ),
            (
                "layer_norm",
                Box::new(|x: &Tensor| layer_norm(x, w.as_tensor(), b.as_tensor()).unwrap()),
                Box::new(|x: &Tensor| composed_ln(x, w.as_tensor(), b.as_tensor())),
            ),
            (
                "gelu",
                Box::new(|x: &Tensor| gelu(x).unwrap()),
                // x Φ(x) through erf (candle's own gelu_erf backward rounds 1/√(2π) to 0.398942).
                Box::new(|x: &Tensor| {
                    let cdf = ((x * std::f64::consts::FRAC_1_SQRT_2)
                        .unwrap()
                        .erf()
                        .unwrap()
                        + 1.0)
                        .unwrap()
                        * 0.5;
                    (x * cdf.unwrap()).unwrap()
                }),
            ),
            (
                "relu",
                Box::new(|x: &Tensor| relu(x).unwrap()),
                Box::new(|x: &Tensor| x.relu().unwrap()),
            ),
        ];
        for (name, fused, composed) in cases {
            let (yf, yc) = (fused(x.as_tensor()), composed(x.as_tensor()));
            assert!(max_diff(&yf, &yc) < 1e-12, "{name} forward");
            // A loss with curvature: sum(r · y²).
            let loss = |y: &Tensor| (y.sqr().unwrap() * &r).unwrap().sum_all().unwrap();
            let (gf, gc) = (loss(&yf).backward().unwrap(), loss(&yc).backward().unwrap());
            for (p, what) in [(&x, "x"), (&w, "w"), (&b, "b")] {
                match (gf.get(p), gc.get(p)) {
                    (Some(a), Some(c)) => {
                        assert!(
                            max_diff(a, c) < 1e-11,
                            "{name} grad {what}: {}",
                            max_diff(a, c)
                        )
                    }
                    (None, None) => {}
                    _ => panic!("{name} grad {what}: present in one only"),
                }
            }
            // Hessian-vector product in x: d/dx <grad_x, v>.
            let hv = |g: &GradStore| {
                (g.get(&x).unwrap() * &v)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap()
            };
            let (hf, hc) = (hv(&gf), hv(&gc));
            for (p, what) in [(&x, "x"), (&w, "w")] {
                let (a, c) = (hf.get(p), hc.get(p));
                if let (Some(a), Some(c)) = (a, c) {
                    assert!(
                        max_diff(a, c) < 1e-10,
                        "{name} hvp {what}: {}",
                        max_diff(a, c)
                    );
                } else {
                    assert!(
                        name != "layer_norm" && what == "w",
                        "{name} hvp {what} missing"
                    );
                }
            }
        }
    }

    #[test]
    fn fused_ops_in_f32_and_bad_shapes() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 3.0, (4, 130), &dev).unwrap();
        let s = softmax_last(&x).unwrap();
        let sums: Vec<f32> = s.sum(1).unwrap().to_vec1().unwrap();
        assert!(sums.iter().all(|v| (v - 1.0).abs() < 1e-5));
        let w = Tensor::ones(130, DType::F32, &dev).unwrap();
        let b = Tensor::zeros(130, DType::F32, &dev).unwrap();
        let y = layer_norm(&x, &w, &b).unwrap();
        let c = composed_ln(&x, &w, &b);
        assert!(
            max_diff(
                &y.to_dtype(DType::F64).unwrap(),
                &c.to_dtype(DType::F64).unwrap()
            ) < 1e-5
        );
        assert!(layer_norm(&x, &Tensor::ones(3, DType::F32, &dev).unwrap(), &b).is_err());
    }

    /// The f32 GELU and its derivative against libm's erf in f64 over [−10, 10].
    #[test]
    fn gelu_f32_accuracy() {
        let xs: Vec<f32> = (-2000..=2000).map(|i| i as f32 * 0.005).collect();
        let x = Var::from_vec(xs.clone(), xs.len(), &Device::Cpu).unwrap();
        let y: Vec<f32> = gelu(x.as_tensor()).unwrap().to_vec1().unwrap();
        let g = gelu(x.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let dy: Vec<f32> = g.get(&x).unwrap().to_vec1().unwrap();
        let (mut worst_y, mut worst_dy) = (0f64, 0f64);
        for ((&x, &y), &dy) in xs.iter().zip(&y).zip(&dy) {
            let x = x as f64;
            let cdf = 0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
            let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
            worst_y = worst_y.max((y as f64 - x * cdf).abs() / (1.0 + (x * cdf).abs()));
            worst_dy = worst_dy.max((dy as f64 - (cdf + x * pdf)).abs());
        }
        assert!(
            worst_y < 5e-7 && worst_dy < 5e-7,
            "{worst_y:e} {worst_dy:e}"
        );
        assert!(gelu(&x.as_tensor().to_dtype(DType::U32).unwrap()).is_err());
    }

    /// ReLU's gradient is PyTorch's: none at 0 and at NaN, which passes through; f32 takes the same op.
    #[test]
    fn relu_at_zero_and_nan() {
        let x = Var::from_vec(vec![-1f32, 0.0, 2.0, f32::NAN], 4, &Device::Cpu).unwrap();
        let y = relu(x.as_tensor()).unwrap();
        let v: Vec<f32> = y.to_vec1().unwrap();
        assert_eq!(&v[..3], &[0.0, 0.0, 2.0]);
        assert!(v[3].is_nan());
        let g = (y * Tensor::new(&[1f32, 2., 3., 4.], &Device::Cpu).unwrap())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let dx: Vec<f32> = g.get(&x).unwrap().to_vec1().unwrap();
        assert_eq!(dx, vec![0.0, 0.0, 3.0, 0.0]);
        let empty = Tensor::zeros((3, 0), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(relu(&empty).unwrap().dims(), &[3, 0]);
    }
}
