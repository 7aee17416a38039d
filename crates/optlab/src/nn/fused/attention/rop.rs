//! Causal attention carried with Pearlmutter's R-operator (the directional derivative R(·) along a parameter
//! direction), fused per head like the training op: the curvature module's exact Hessian-vector products of a
//! transformer. With S = scale·q kᵀ + mask, P = softmax(S), y = P v:
//! R(S) = scale (R(q) kᵀ + q R(k)ᵀ), R(P) = P ⊙ (R(S) − rowsum(P ⊙ R(S))), R(y) = R(P) v + P R(v);
//! back, from dy and R(dy): dV = Pᵀ dy, dP = dy vᵀ, dS = scale P ⊙ (dP − rowsum(P ⊙ dP)), dQ = dS k,
//! dK = dSᵀ q, and each factor's R-derivative by the product rule. Sums of two products run as one product of
//! stacked factors (R(q) kᵀ + q R(k)ᵀ = [R(q) | q] [k | R(k)]ᵀ, and so on), and each head keeps [P; R(P)] for
//! the backward pass.

use super::{dot, padded, per_head, per_head_data_into, softmax_jvp_rows, Dims, Head};
use crate::nn::fused::rows::cpu_values;
use crate::nn::fused::{simd_body, SimdBody};
use crate::nn::matmul::{gemm_into, Strided};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, WithDType};
use num_traits::Float;

/// What the backward pass needs: the packed qkv (B, T, 3C), its R-derivative, and the forward pass's head-major
/// buffers, each head's (y, R(y), [P; R(P)]).
pub(crate) struct AttentionR {
    d: Dims,
    qkv: Tensor,
    rqkv: Tensor,
    probs: Tensor,
}

/// One head's operands and their R-derivatives (keys and values padded alike).
struct HeadR<T> {
    x: Head<T>,
    r: Head<T>,
}

/// A row-major (rows × cols) matrix.
fn rm<T>(v: &[T], cols: usize) -> Strided<'_, T> {
    Strided::row_major(v, cols)
}

/// [a | b] of two row-major matrices of `w` columns each, row by row.
#[inline(always)]
fn beside<T: Float>(a: &[T], b: &[T], w: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    for (a, b) in a.chunks_exact(w).zip(b.chunks_exact(w)) {
        out.extend_from_slice(a);
        out.extend_from_slice(b);
    }
    out
}

/// dst (m × n) ← [a | b] [c | d]ᵀ = a cᵀ + b dᵀ, with a, b (m × w) and c, d (n × w) row-major: one product over
/// the doubled width.
#[inline(always)]
fn beside_product<T: Float + Send + Sync + 'static>(
    dst: &mut [T],
    (m, n, w): (usize, usize, usize),
    [a, b]: [&[T]; 2],
    [c, d]: [&[T]; 2],
) -> candle_core::Result<()> {
    let (ab, cd) = (beside(a, b, w), beside(c, d, w));
    gemm_into(
        dst,
        (m, n, 2 * w),
        rm(&ab, 2 * w),
        rm(&cd, 2 * w).t(),
        false,
    )
}

/// [a; b]: two row-major matrices of the same width stacked.
#[inline(always)]
fn stacked<T: Float>(a: &[T], b: &[T]) -> Vec<T> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    out.extend_from_slice(a);
    out.extend_from_slice(b);
    out
}

impl<T: Float + Send + Sync + 'static> HeadR<T> {
    /// (y, R(y)) into `out` (2, T, width), and [P; R(P)] (2T, T') into `probs`.
    #[inline(always)]
    fn forward(&self, scale: T, out: &mut [T], probs: &mut [T]) -> candle_core::Result<()> {
        let (x, r) = (&self.x, &self.r);
        let (t, w, tp) = (x.t, x.w, x.tp);
        let (p, rp) = probs.split_at_mut(t * tp);
        x.probs_into(scale, p)?;
        beside_product(rp, (t, tp, w), [&r.q, &x.q], [&x.k, &r.k])?;
        softmax_jvp_rows(p, rp, tp, scale);
        let (y, ry) = out.split_at_mut(t * w);
        gemm_into(y, (t, w, tp), rm(p, tp), rm(&x.v, w), false)?;
        gemm_into(ry, (t, w, tp), rm(rp, tp), rm(&x.v, w), false)?;
        gemm_into(ry, (t, w, tp), rm(p, tp), rm(&r.v, w), true)
    }

    /// (dq, dk, dv, R(dq), R(dk), R(dv)) into `out` (6, T, width) from [R(dy); dy] (2T, width) and the forward
    /// pass's [P; R(P)].
    #[inline(always)]
    fn backward(
        &self,
        scale: T,
        grads: &[T],
        probs: &[T],
        out: &mut [T],
    ) -> candle_core::Result<()> {
        let (x, r) = (&self.x, &self.r);
        let (t, w, tp) = (x.t, x.w, x.tp);
        let (p, rp) = probs.split_at(t * tp);
        let (rdy, dy) = grads.split_at(t * w);
        let mut parts = out.chunks_exact_mut(t * w);
        let mut part = || parts.next().expect("six parts");
        let (dq, dk, dv, rdq, rdk, rdv) = (part(), part(), part(), part(), part(), part());
        let probs_t = rm(probs, tp).t();
        // dV = Pᵀ dy; R(dV) = [P; R(P)]ᵀ [R(dy); dy].
        gemm_into(dv, (t, w, t), probs_t, rm(dy, w), false)?;
        gemm_into(rdv, (t, w, 2 * t), probs_t, rm(grads, w), false)?;
        // [R(dS); dS] start as [R(dP); dP]: dP = dy vᵀ, R(dP) = [R(dy) | dy] [v | R(v)]ᵀ.
        let mut z = vec![T::zero(); 2 * t * tp];
        let (rds, ds) = z.split_at_mut(t * tp);
        gemm_into(ds, (t, tp, w), rm(dy, w), rm(&x.v, w).t(), false)?;
        beside_product(rds, (t, tp, w), [rdy, dy], [&x.v, &r.v])?;
        for i in 0..t {
            let (row, n) = (i * tp, padded(i + 1));
            let (p, rp) = (&p[row..row + n], &rp[row..row + n]);
            let (dp, rdp) = (&mut ds[row..row + tp], &mut rds[row..row + tp]);
            let a = dot(p, &dp[..n]);
            let b = dot(rp, &dp[..n]) + dot(p, &rdp[..n]);
            for j in 0..n {
                let centred = dp[j] - a;
                rdp[j] = scale * (rp[j] * centred + p[j] * (rdp[j] - b));
                dp[j] = scale * p[j] * centred;
            }
            dp[n..].fill(T::zero());
            rdp[n..].fill(T::zero());
        }
        let (dsm, rdsm) = (rm(&z[t * tp..], tp), rm(&z[..t * tp], tp));
        gemm_into(dq, (t, w, tp), dsm, rm(&x.k, w), false)?;
        gemm_into(rdq, (t, w, tp), rdsm, rm(&x.k, w), false)?;
        gemm_into(rdq, (t, w, tp), dsm, rm(&r.k, w), true)?;
        // dK = dSᵀ q; R(dK) = [R(dS); dS]ᵀ [q; R(q)].
        gemm_into(dk, (t, w, t), dsm.t(), rm(&x.q, w), false)?;
        gemm_into(
            rdk,
            (t, w, 2 * t),
            rm(&z, tp).t(),
            rm(&stacked(&x.q, &r.q), w),
            false,
        )
    }
}

/// One head of one sequence under R: forward, or backward with (dy, R(dy)) of the sequence (T, C) and the head's
/// [P; R(P)].
struct HeadPassR<'a, T> {
    d: &'a Dims,
    /// The sequence's packed (T, 3C) rows and their R-derivatives.
    seq: [&'a [T]; 2],
    head: usize,
    grads: Option<([&'a [T]; 2], &'a [T])>,
    out: &'a mut [T],
}

impl<T: Float + Send + Sync + 'static> SimdBody for HeadPassR<'_, T> {
    type Out = candle_core::Result<()>;
    #[inline(always)]
    fn run(self) -> candle_core::Result<()> {
        let (d, h) = (self.d, self.head);
        let head = HeadR {
            x: Head::gather(d, self.seq[0], h),
            r: Head::gather(d, self.seq[1], h),
        };
        let scale = T::from(d.scale).unwrap_or_else(T::nan);
        match self.grads {
            None => {
                let (out, probs) = self.out.split_at_mut(2 * d.seq * d.width);
                head.forward(scale, out, probs)
            }
            Some(([dy, rdy], probs)) => {
                // [R(dy); dy] gathered once: the halves and the stacked factor of R(dV).
                let mut grads = vec![T::zero(); 2 * d.seq * d.width];
                let (first, second) = grads.split_at_mut(d.seq * d.width);
                per_head_data_into(d, rdy, h, first);
                per_head_data_into(d, dy, h, second);
                head.backward(scale, &grads, probs, self.out)
            }
        }
    }
}

impl AttentionR {
    /// One pass over every head of every sequence, packed and head-major: forward, `[y | R(y)]` (B, T, 2C) and
    /// each head's (y, R(y), [P; R(P)]); backward (with `grads` = [dy, R(dy)] and the forward pass's head-major
    /// buffers), `[d qkv | R(d qkv)]` (B, T, 6C).
    fn pass<T: WithDType + Float + Send + Sync>(
        d: &Dims,
        seq: [&[T]; 2],
        grads: Option<([&[T]; 2], &[T])>,
    ) -> Result<(Vec<T>, Vec<T>)> {
        let (t, c, w) = (d.seq, d.c(), d.width);
        let probs_len = 2 * t * padded(t);
        let parts = if grads.is_some() { 6 } else { 2 };
        let per = parts * t * w + if grads.is_some() { 0 } else { probs_len };
        fn rows<T>(x: &[T], n: usize, len: usize) -> &[T] {
            &x[n * len..(n + 1) * len]
        }
        // The forward pass's per-head buffers: (y, R(y)) then [P; R(P)].
        let fwd = 2 * t * w + probs_len;
        let heads = per_head(d, per, |b, h, out| {
            simd_body(HeadPassR {
                d,
                seq: seq.map(|x| rows(x, b, t * 3 * c)),
                head: h,
                grads: grads.map(|(g, saved)| {
                    let n = b * d.heads + h;
                    (
                        g.map(|x| rows(x, b, t * c)),
                        &rows(saved, n, fwd)[2 * t * w..],
                    )
                }),
                out,
            })
        })?;
        Ok((d.pack(&heads, per, parts), heads))
    }

    /// [`AttentionR::pass`] on tensors of one float type: forward on [qkv, R(qkv)], backward on
    /// [qkv, R(qkv), dy, R(dy), the forward pass's buffers]; the packed result (B, T, parts·C) and the head-major
    /// buffers (1-D).
    fn pass_tensors<T: WithDType + Float + Send + Sync>(
        d: &Dims,
        ts: &[&Tensor],
    ) -> Result<(Tensor, Tensor)> {
        let guards: Vec<_> = ts.iter().map(|t| t.storage_and_layout()).collect();
        let v = cpu_values::<T, _>(&guards, "attention")?;
        let grads = (v.len() == 5).then(|| ([v[2], v[3]], v[4]));
        let parts = if grads.is_some() { 6 } else { 2 };
        let (packed, heads) = Self::pass(d, [v[0], v[1]], grads)?;
        let n = heads.len();
        Ok((
            Tensor::from_vec(packed, (d.batch, d.seq, parts * d.c()), &Device::Cpu)?,
            Tensor::from_vec(heads, n, &Device::Cpu)?,
        ))
    }

    /// y = [`super::causal_attention`]`(qkv)` and R(y) from R(qkv) (B, T, 3C each), keeping what the backward
    /// pass needs.
    pub(crate) fn forward(
        qkv: &Tensor,
        rqkv: &Tensor,
        heads: usize,
        scale: f64,
    ) -> Result<(Tensor, Tensor, AttentionR)> {
        let d = Dims::of(qkv, heads, scale)?;
        if rqkv.dims() != qkv.dims()
            || [qkv, rqkv]
                .iter()
                .any(|t| !t.device().is_cpu() || !matches!(t.dtype(), DType::F32 | DType::F64))
            || rqkv.dtype() != qkv.dtype()
        {
            return Err(Error::invalid(
                "attention: the R-operator needs qkv and R(qkv) of one shape, f32 or f64, on the CPU",
            ));
        }
        let (qkv, rqkv) = (qkv.contiguous()?, rqkv.contiguous()?);
        let (packed, probs) = match qkv.dtype() {
            DType::F32 => Self::pass_tensors::<f32>(&d, &[&qkv, &rqkv])?,
            _ => Self::pass_tensors::<f64>(&d, &[&qkv, &rqkv])?,
        };
        let c = d.c();
        Ok((
            packed.narrow(2, 0, c)?.contiguous()?,
            packed.narrow(2, c, c)?.contiguous()?,
            AttentionR {
                d,
                qkv,
                rqkv,
                probs,
            },
        ))
    }

    /// d qkv and R(d qkv) (B, T, 3C) from dy and R(dy) (B, T, C).
    pub(crate) fn backward(&self, dy: &Tensor, rdy: &Tensor) -> Result<(Tensor, Tensor)> {
        let d = &self.d;
        let want = [d.batch, d.seq, d.c()];
        if dy.dims() != want
            || rdy.dims() != want
            || dy.dtype() != self.qkv.dtype()
            || rdy.dtype() != dy.dtype()
        {
            return Err(Error::Shape(format!(
                "attention: the output gradients must be {want:?} of the input's dtype"
            )));
        }
        let (dy, rdy) = (dy.contiguous()?, rdy.contiguous()?);
        let ts = [&self.qkv, &self.rqkv, &dy, &rdy, &self.probs];
        let packed = match dy.dtype() {
            DType::F32 => Self::pass_tensors::<f32>(d, &ts)?.0,
            _ => Self::pass_tensors::<f64>(d, &ts)?.0,
        };
        let c3 = 3 * d.c();
        Ok((
            packed.narrow(2, 0, c3)?.contiguous()?,
            packed.narrow(2, c3, c3)?.contiguous()?,
        ))
    }
}
