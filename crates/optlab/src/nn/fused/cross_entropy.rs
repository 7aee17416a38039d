//! Fused softmax cross-entropy: the per-row loss ℓᵢ = logsumexp(xᵢ) − xᵢ[yᵢ] as one candle op, its backward
//! hᵢ (softmax(xᵢ) − e_{yᵢ}) as a second and that backward's own derivatives (the Hessian-vector products of
//! implicit differentiation, AdaHessian and the curvature tools) as two more, each one pass over the rows.
//!
//! Composed from candle's ops (`log_softmax`, `gather`), a Hessian-vector product of a small logistic regression
//! walks some forty graph nodes; here it walks three. Third derivatives fall back to the composed formulas, so every
//! order stays exact. Rows labelled [`crate::data::IGNORE`] have a zero loss and zero derivatives.

use super::{composed_vjp, cpu_rows, exp_nonpositive, simd_body, RowKernel, SimdBody};
use crate::data::IGNORE;
use crate::nn::lanes;
use crate::{Error, Result};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Tensor, D};
use num_traits::Float;
use rayon::prelude::*;
use std::sync::Arc;

/// Below this many logits a kernel runs on the calling thread (a parallel dispatch costs more than the work).
const PARALLEL_MIN: usize = 1 << 15;
/// Rows per parallel task.
const ROWS_PER_TASK: usize = 64;

/// The labels an op closes over (shared by the ops of one loss).
type Labels = Arc<[u32]>;

/// ℓᵢ per row (the forward).
struct CeRows(Labels);
/// hᵢ (pᵢ − e_{yᵢ}) from (x, h), with p = softmax(x) (the backward).
struct CeGrad(Labels);
/// The x-derivative of ⟨G, CeGrad(x, h)⟩: hᵢ pᵢ ⊙ (Gᵢ − ⟨Gᵢ, pᵢ⟩), from (x, h, G).
struct CeGradDx(Labels);
/// The h-derivative of ⟨G, CeGrad(x, h)⟩: ⟨Gᵢ, pᵢ⟩ − Gᵢ[yᵢ], from (x, G).
struct CeGradDh(Labels);

/// Rows × `width` outputs, `f(row, out)` for each row; in parallel when there are at least [`PARALLEL_MIN`] logits.
fn for_rows<T: Copy + Send + Sync + Default>(
    rows: usize,
    width: usize,
    logits: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) -> Vec<T> {
    let mut out = vec![T::default(); rows * width];
    if width == 0 {
        return out;
    }
    if logits < PARALLEL_MIN {
        out.chunks_mut(width).enumerate().for_each(|(i, o)| f(i, o));
    } else {
        out.par_chunks_mut(width * ROWS_PER_TASK)
            .enumerate()
            .for_each(|(task, chunk)| {
                for (r, o) in chunk.chunks_mut(width).enumerate() {
                    f(task * ROWS_PER_TASK + r, o);
                }
            });
    }
    out
}

/// (max, Σ e^{x − max}) of a row.
#[inline(always)]
fn max_and_sum<T: Float>(x: &[T]) -> (T, T) {
    let m = lanes::max(x);
    (m, lanes::sum_by(x, |v| exp_nonpositive(v - m)))
}

/// softmax(x) into `o`.
#[inline(always)]
fn softmax_into<T: Float>(x: &[T], o: &mut [T]) {
    let m = lanes::max(x);
    for (o, &v) in o.iter_mut().zip(x) {
        *o = exp_nonpositive(v - m);
    }
    let inv = lanes::sum(o).recip();
    o.iter_mut().for_each(|v| *v = *v * inv);
}

/// One row's loss, m + ln Σ e^{x − m} − x[y]: a body for [`simd_body`], so that all of it is compiled for the
/// widest vector unit (a closure passed to `simd` is not inlined into it and ran scalar: the loss and its
/// gradient took 13% of the transformer's training step, 2% as bodies).
struct LossRow<'a, T> {
    x: &'a [T],
    y: usize,
}

impl<T: Float> SimdBody for LossRow<'_, T> {
    type Out = T;
    #[inline(always)]
    fn run(self) -> T {
        let (m, s) = max_and_sum(self.x);
        m + s.ln() - self.x[self.y]
    }
}

/// One row's h (softmax(x) − e_y), the label's entry left to the caller: a body for [`simd_body`].
struct GradRow<'a, T> {
    x: &'a [T],
    h: T,
    o: &'a mut [T],
}

impl<T: Float> SimdBody for GradRow<'_, T> {
    type Out = ();
    #[inline(always)]
    fn run(self) {
        softmax_into(self.x, self.o);
        let h = self.h;
        self.o.iter_mut().for_each(|v| *v = *v * h);
    }
}

/// One row of the x-derivative of ⟨G, CeGrad⟩, h p ⊙ (g − ⟨g, p⟩): a body for [`simd_body`].
struct DxRow<'a, T> {
    x: &'a [T],
    h: T,
    g: &'a [T],
    o: &'a mut [T],
}

impl<T: Float> SimdBody for DxRow<'_, T> {
    type Out = ();
    #[inline(always)]
    fn run(self) {
        let (h, g) = (self.h, self.g);
        softmax_into(self.x, self.o);
        let s = lanes::dot(self.o, g);
        for (o, &g) in self.o.iter_mut().zip(g) {
            *o = h * *o * (g - s);
        }
    }
}

/// One row of the h-derivative of ⟨G, CeGrad⟩, ⟨g, p⟩ − g[y]: a body for [`simd_body`].
struct DhRow<'a, T> {
    x: &'a [T],
    g: &'a [T],
    y: usize,
}

impl<T: Float> SimdBody for DhRow<'_, T> {
    type Out = T;
    #[inline(always)]
    fn run(self) -> T {
        let m = lanes::max(self.x);
        let (mut s, mut gs) = (T::zero(), T::zero());
        for (&v, &g) in self.x.iter().zip(self.g) {
            let e = exp_nonpositive(v - m);
            s = s + e;
            gs = gs + g * e;
        }
        gs / s - self.g[self.y]
    }
}

impl CeRows {
    fn rows<T: Float + Send + Sync + Default>(&self, x: &[T], n: usize) -> Vec<T> {
        let labels = &self.0;
        for_rows(labels.len(), 1, x.len(), |i, o| {
            let y = labels[i];
            if y == IGNORE {
                return;
            }
            let x = &x[i * n..(i + 1) * n];
            o[0] = simd_body(LossRow { x, y: y as usize });
        })
    }
}

impl RowKernel<1> for CeRows {
    fn run<T: Float + Send + Sync + Default>(&self, [x]: [&[T]; 1], n: usize) -> Vec<T> {
        self.rows(x, n)
    }
}

impl RowKernel<2> for CeGrad {
    fn run<T: Float + Send + Sync + Default>(&self, [x, h]: [&[T]; 2], n: usize) -> Vec<T> {
        let labels = &self.0;
        for_rows(labels.len(), n, x.len(), |i, o| {
            let y = labels[i];
            if y == IGNORE {
                return;
            }
            let (x, h) = (&x[i * n..(i + 1) * n], h[i]);
            simd_body(GradRow { x, h, o: &mut *o });
            o[y as usize] = o[y as usize] - h;
        })
    }
}

impl RowKernel<3> for CeGradDx {
    fn run<T: Float + Send + Sync + Default>(&self, [x, h, g]: [&[T]; 3], n: usize) -> Vec<T> {
        let labels = &self.0;
        for_rows(labels.len(), n, x.len(), |i, o| {
            if labels[i] == IGNORE {
                return;
            }
            let (x, h, g) = (&x[i * n..(i + 1) * n], h[i], &g[i * n..(i + 1) * n]);
            simd_body(DxRow { x, h, g, o });
        })
    }
}

impl RowKernel<2> for CeGradDh {
    fn run<T: Float + Send + Sync + Default>(&self, [x, g]: [&[T]; 2], n: usize) -> Vec<T> {
        let labels = &self.0;
        for_rows(labels.len(), 1, x.len(), |i, o| {
            let y = labels[i];
            if y == IGNORE {
                return;
            }
            let (x, g) = (&x[i * n..(i + 1) * n], &g[i * n..(i + 1) * n]);
            o[0] = simd_body(DhRow {
                x,
                g,
                y: y as usize,
            });
        })
    }
}

/// 1 on kept rows, 0 on ignored ones, as an (N, 1) column of x's dtype.
fn keep_column(labels: &[u32], like: &Tensor) -> candle_core::Result<Tensor> {
    let keep: Vec<f64> = labels
        .iter()
        .map(|&l| f64::from(u8::from(l != IGNORE)))
        .collect();
    Tensor::from_vec(keep, (labels.len(), 1), like.device())?.to_dtype(like.dtype())
}

/// Gᵢ[yᵢ] as an (N, 1) column (0 on ignored rows), by a one-hot mask: candle's `gather` has no second derivative
/// once its upstream gradient depends on the input (the backward of its backward, `scatter_add`'s, fails).
fn picked(g: &Tensor, labels: &[u32]) -> candle_core::Result<Tensor> {
    let c = g.dim(D::Minus1)?;
    let mut onehot = vec![0f64; labels.len() * c];
    for (i, &l) in labels.iter().enumerate() {
        if l != IGNORE {
            onehot[i * c + l as usize] = 1.0;
        }
    }
    let onehot = Tensor::from_vec(onehot, (labels.len(), c), g.device())?.to_dtype(g.dtype())?;
    (g * onehot)?.sum_keepdim(D::Minus1)
}

/// softmax over the last dimension in composed ops.
fn softmax_composed(x: &Tensor) -> candle_core::Result<Tensor> {
    let e = x
        .broadcast_sub(&x.max_keepdim(D::Minus1)?.detach())?
        .exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// [`CeGradDx`] in composed ops (its own derivatives, third order, are taken through these).
fn dx_composed(labels: &[u32], x: &Tensor, h: &Tensor, g: &Tensor) -> candle_core::Result<Tensor> {
    let p = softmax_composed(x)?;
    let s = (&p * g)?.sum_keepdim(D::Minus1)?;
    let hk = h.unsqueeze(1)?.mul(&keep_column(labels, x)?)?;
    (p * g.broadcast_sub(&s)?)?.broadcast_mul(&hk)
}

/// [`CeGradDh`] in composed ops.
fn dh_composed(labels: &[u32], x: &Tensor, g: &Tensor) -> candle_core::Result<Tensor> {
    let p = softmax_composed(x)?;
    let s = (&p * g)?.sum_keepdim(D::Minus1)?;
    (s - picked(g, labels)?)?
        .mul(&keep_column(labels, x)?)?
        .squeeze(1)
}

/// The per-row shape (N,) of logits (N, C).
fn rows_shape(l: &Layout) -> Shape {
    Shape::from(l.dims()[0])
}

impl CustomOp1 for CeRows {
    fn name(&self) -> &'static str {
        "optlab-cross-entropy"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        Ok((cpu_rows(self, "cross-entropy", [(s, l)])?, rows_shape(l)))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, h: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(x.apply_op2(&h.contiguous()?, CeGrad(self.0.clone()))?))
    }
}

impl CustomOp2 for CeGrad {
    fn name(&self) -> &'static str {
        "optlab-cross-entropy-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = cpu_rows(self, "cross-entropy", [(s1, l1), (s2, l2)])?;
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        h: &Tensor,
        _out: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = g.contiguous()?;
        let dx = x.apply_op3(h, &g, CeGradDx(self.0.clone()))?;
        let dh = x.apply_op2(&g, CeGradDh(self.0.clone()))?;
        Ok((Some(dx), Some(dh)))
    }
}

impl CustomOp3 for CeGradDx {
    fn name(&self) -> &'static str {
        "optlab-cross-entropy-grad-dx"
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
        let out = cpu_rows(self, "cross-entropy", [(s1, l1), (s2, l2), (s3, l3)])?;
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        h: &Tensor,
        g: &Tensor,
        _out: &Tensor,
        k: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let labels = &self.0;
        let v = composed_vjp(&[x, h, g], k, |t| dx_composed(labels, &t[0], &t[1], &t[2]))?;
        Ok((Some(v[0].clone()), Some(v[1].clone()), Some(v[2].clone())))
    }
}

impl CustomOp2 for CeGradDh {
    fn name(&self) -> &'static str {
        "optlab-cross-entropy-grad-dh"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = cpu_rows(self, "cross-entropy", [(s1, l1), (s2, l2)])?;
        Ok((out, rows_shape(l1)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        g: &Tensor,
        _out: &Tensor,
        k: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let labels = &self.0;
        let v = composed_vjp(&[x, g], k, |t| dh_composed(labels, &t[0], &t[1]))?;
        Ok((Some(v[0].clone()), Some(v[1].clone())))
    }
}

/// Logits (N, C) and N labels, each below C or [`IGNORE`].
fn check_labels(logits: &Tensor, labels: &[u32]) -> Result<()> {
    let (rows, classes) = logits.dims2()?;
    if labels.len() != rows {
        return Err(Error::Shape(format!(
            "{} labels for {rows} rows of logits",
            labels.len()
        )));
    }
    if let Some(&bad) = labels
        .iter()
        .find(|&&l| l != IGNORE && l as usize >= classes)
    {
        return Err(Error::invalid(format!(
            "label {bad} is out of range for {classes} classes"
        )));
    }
    Ok(())
}

/// [`cross_entropy_rows`] in candle's composed ops (`log_softmax` and a one-hot mask; any device and dtype): the
/// path for other devices and the reference in tests.
pub(crate) fn cross_entropy_rows_composed(logits: &Tensor, labels: &[u32]) -> Result<Tensor> {
    check_labels(logits, labels)?;
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    Ok(picked(&logp, labels)?.neg()?.squeeze(1)?)
}

/// Whether [`cross_entropy_rows`] runs on these logits (f32 or f64 on the CPU).
pub(crate) fn fusable(logits: &Tensor) -> bool {
    logits.device().is_cpu()
        && matches!(
            logits.dtype(),
            candle_core::DType::F32 | candle_core::DType::F64
        )
}

/// The cross-entropy of each row of `logits` (N, C) against `labels` (N class indices; [`IGNORE`] rows give 0):
/// logsumexp(xᵢ) − xᵢ[yᵢ], differentiable to any order. A label ≥ C is an error.
pub(crate) fn cross_entropy_rows(logits: &Tensor, labels: &[u32]) -> Result<Tensor> {
    check_labels(logits, labels)?;
    Ok(logits.contiguous()?.apply_op1(CeRows(labels.into()))?)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{dot_grad, max_diff};
    use super::*;
    use candle_core::{backprop::GradStore, Device, Var};

    fn composed(x: &Tensor, labels: &[u32]) -> Tensor {
        cross_entropy_rows_composed(x, labels).unwrap()
    }

    /// Value, gradient, Hessian-vector product and a third derivative equal the composed formulas, with an
    /// ignored row and a loss whose upstream gradient depends on x (so every kernel's h path is exercised).
    #[test]
    fn fused_cross_entropy_matches_composed_to_third_order() {
        crate::require_second_order().unwrap();
        let dev = Device::Cpu;
        let x = Var::randn(0f64, 2.0, (6, 9), &dev).unwrap();
        let labels: Vec<u32> = vec![3, 0, IGNORE, 8, 5, 5];
        let r = Tensor::randn(0f64, 1.0, 6, &dev).unwrap();
        let (v, v2) = (
            Tensor::randn(0f64, 1.0, (6, 9), &dev).unwrap(),
            Tensor::randn(0f64, 1.0, (6, 9), &dev).unwrap(),
        );
        let fused = cross_entropy_rows(x.as_tensor(), &labels).unwrap();
        let reference = composed(x.as_tensor(), &labels);
        assert!(max_diff(&fused, &reference) < 1e-13);
        assert_eq!(fused.to_vec1::<f64>().unwrap()[2], 0.0);
        // A loss with curvature in the rows: Σ r ℓ².
        let loss = |l: &Tensor| (l.sqr().unwrap() * &r).unwrap().sum_all().unwrap();
        let (gf, gc) = (
            loss(&fused).backward().unwrap(),
            loss(&reference).backward().unwrap(),
        );
        assert!(max_diff(gf.get(&x).unwrap(), gc.get(&x).unwrap()) < 1e-12);
        let (hf, hc) = (dot_grad(&gf, &x, &v), dot_grad(&gc, &x, &v));
        let d = max_diff(hf.get(&x).unwrap(), hc.get(&x).unwrap());
        assert!(d < 1e-10, "hvp {d}");
        let (tf, tc) = (dot_grad(&hf, &x, &v2), dot_grad(&hc, &x, &v2));
        let d = max_diff(tf.get(&x).unwrap(), tc.get(&x).unwrap());
        assert!(d < 1e-10, "third order {d}");
        // The ignored row has no derivative at all.
        let row = |g: &GradStore| g.get(&x).unwrap().get(2).unwrap().abs().unwrap().sum_all();
        assert_eq!(row(&gf).unwrap().to_scalar::<f64>().unwrap(), 0.0);
        assert_eq!(row(&hf).unwrap().to_scalar::<f64>().unwrap(), 0.0);
    }

    /// f32 (the fast exponential, vectorized rows, rows split across threads) against f64, and bad labels.
    #[test]
    fn fused_cross_entropy_in_f32_and_bad_labels() {
        let dev = Device::Cpu;
        // Enough logits to take the parallel path.
        let (rows, classes) = (700, 65);
        let x64 = Tensor::randn(0f64, 4.0, (rows, classes), &dev).unwrap();
        let labels: Vec<u32> = (0..rows as u32).map(|i| (i * 7) % classes as u32).collect();
        let x32 = Var::from_tensor(&x64.to_dtype(candle_core::DType::F32).unwrap()).unwrap();
        let l32 = cross_entropy_rows(x32.as_tensor(), &labels).unwrap();
        let l64 = cross_entropy_rows(
            &x64.to_dtype(candle_core::DType::F32)
                .unwrap()
                .to_dtype(candle_core::DType::F64)
                .unwrap(),
            &labels,
        )
        .unwrap();
        assert!(max_diff(&l32.to_dtype(candle_core::DType::F64).unwrap(), &l64) < 1e-5);
        let g = l32.sum_all().unwrap().backward().unwrap();
        let gc = composed(x32.as_tensor(), &labels)
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(max_diff(g.get(&x32).unwrap(), gc.get(&x32).unwrap()) < 1e-6);
        let err = cross_entropy_rows(&x64, &vec![65; rows])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("label 65 is out of range for 65 classes"),
            "{err}"
        );
        assert!(cross_entropy_rows(&x64, &labels[1..]).is_err());
        let err = cross_entropy_rows_composed(&x64, &vec![70; rows]).unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
    }
}
