//! Fused causal multi-head self-attention (issue 24): softmax(scale · q kᵀ + causal mask) v for every head, read
//! straight from the packed `qkv` projection (B, T, 3C) and written as (B, T, C), as one candle op; its backward
//! (dq, dk, dv packed the same way) is a second op, and that backward's own derivative (second order: the
//! Hessian-vector products of the curvature tools and AdaHessian) is the vector-Jacobian product of the composed
//! formula, so every order stays exact.
//!
//! Composed from candle's ops, one head's (T, T) logits pass through a transposed copy of k, a product, a scale, a
//! mask and a softmax, each a fresh (B, H, T, T) tensor with its own backward and gradient accumulation. Here heads
//! run in parallel, each on its own thread: its products are single-threaded gemm calls on (T, T) buffers that stay
//! in cache, the causal softmax runs between them and stops at the diagonal's block, and the probabilities are
//! recomputed in the backward pass rather than kept (as FlashAttention does).

mod rop;

use super::{composed_vjp, contiguous, exp_nonpositive, fusable, simd_body, SimdBody};
use crate::nn::matmul::{gemm_into, Strided};
use crate::{Error, Result};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor, D};
use num_traits::Float;
use rayon::prelude::*;
pub(crate) use rop::AttentionR;

/// Below this many multiply-adds a kernel runs on the calling thread (a parallel dispatch costs more).
const PARALLEL_MIN: usize = 1 << 16;

/// The sizes of one attention call and its logit scale.
#[derive(Debug, Clone, Copy)]
struct Dims {
    batch: usize,
    seq: usize,
    heads: usize,
    /// The head width C / H.
    width: usize,
    scale: f64,
}

impl Dims {
    /// From a packed (B, T, 3C) `qkv`, with H dividing C.
    fn of(qkv: &Tensor, heads: usize, scale: f64) -> Result<Dims> {
        let (batch, seq, c3) = qkv.dims3().map_err(|_| {
            Error::Shape(format!(
                "attention: qkv must be (batch, sequence, 3·width), got {:?}",
                qkv.dims()
            ))
        })?;
        if heads == 0 || !c3.is_multiple_of(3 * heads) {
            return Err(Error::Shape(format!(
                "attention: the qkv width {c3} is not 3 × a multiple of {heads} heads"
            )));
        }
        if !scale.is_finite() {
            return Err(Error::invalid(format!(
                "attention: the logit scale must be finite, got {scale}"
            )));
        }
        Ok(Dims {
            batch,
            seq,
            heads,
            width: c3 / (3 * heads),
            scale,
        })
    }

    /// The model width C.
    fn c(&self) -> usize {
        self.heads * self.width
    }

    /// Multiply-adds of one pass (T² · width per head and product).
    fn work(&self) -> usize {
        self.batch * self.heads * self.seq * self.seq * self.width
    }
}

/// The vector block: key positions are padded to a multiple of it, so every row loop is a whole number of
/// fixed-size blocks (one AVX-512 vector of f32, two of f64).
const L: usize = 16;

fn padded(n: usize) -> usize {
    n.div_ceil(L) * L
}

/// One head's operands, gathered from a sequence's packed (T, 3C) rows: q as (T, width), k and v as (T', width)
/// with T' = T padded to a multiple of [`L`] by zero rows.
struct Head<T> {
    t: usize,
    w: usize,
    tp: usize,
    q: Vec<T>,
    k: Vec<T>,
    v: Vec<T>,
}

impl<T: Float + Send + Sync + 'static> Head<T> {
    /// Head `h` of the sequence `rows` ((T, 3C), row-major).
    #[inline(always)]
    fn gather(d: &Dims, rows: &[T], h: usize) -> Self {
        let (t, w, c) = (d.seq, d.width, d.c());
        let tp = padded(t);
        let mut head = Head {
            t,
            w,
            tp,
            q: vec![T::zero(); t * w],
            k: vec![T::zero(); tp * w],
            v: vec![T::zero(); tp * w],
        };
        for i in 0..t {
            let row = &rows[i * 3 * c..(i + 1) * 3 * c];
            let at = |part: usize| &row[part * c + h * w..part * c + (h + 1) * w];
            head.q[i * w..(i + 1) * w].copy_from_slice(at(0));
            head.k[i * w..(i + 1) * w].copy_from_slice(at(1));
            head.v[i * w..(i + 1) * w].copy_from_slice(at(2));
        }
        head
    }

    /// The attention probabilities P (T, T'), row i softmax over keys j ≤ i of scale · qᵢ · kⱼ (zero past i).
    #[inline(always)]
    fn probs(&self, scale: T) -> candle_core::Result<Vec<T>> {
        let mut p = vec![T::zero(); self.t * self.tp];
        self.probs_into(scale, &mut p)?;
        Ok(p)
    }

    /// [`Head::probs`] into `p` (T, T').
    #[inline(always)]
    fn probs_into(&self, scale: T, p: &mut [T]) -> candle_core::Result<()> {
        let (t, w, tp) = (self.t, self.w, self.tp);
        gemm_into(
            p,
            (t, tp, w),
            Strided::row_major(&self.q, w),
            Strided::row_major(&self.k, w).t(),
            false,
        )?;
        for (i, row) in p.chunks_exact_mut(tp).enumerate() {
            softmax_causal(row, i, scale);
        }
        Ok(())
    }
}

/// Row i of the scores (T' entries) → softmax over j ≤ i of scale · s, zero past i. The maximum and the sum run
/// one partial per lane (a plain comparison vectorizes; a NaN score reaches the output through its exponential).
#[inline(always)]
fn softmax_causal<T: Float>(row: &mut [T], i: usize, scale: T) {
    let (row, past) = row.split_at_mut(padded(i + 1));
    past.fill(T::zero());
    let mut top = [T::neg_infinity(); L];
    for (b, blk) in row.chunks_exact_mut(L).enumerate() {
        let blk: &mut [T; L] = blk.try_into().expect("a block of L");
        for l in 0..L {
            let s = if b * L + l <= i {
                blk[l] * scale
            } else {
                T::neg_infinity()
            };
            blk[l] = s;
            top[l] = if s > top[l] { s } else { top[l] };
        }
    }
    let m = top.iter().fold(T::neg_infinity(), |m, &v| m.max(v));
    let mut total = [T::zero(); L];
    for (b, blk) in row.chunks_exact_mut(L).enumerate() {
        let blk: &mut [T; L] = blk.try_into().expect("a block of L");
        for l in 0..L {
            let e = exp_nonpositive((blk[l] - m).min(T::zero()));
            blk[l] = if b * L + l <= i { e } else { T::zero() };
            total[l] = total[l] + blk[l];
        }
    }
    let inv = total.iter().fold(T::zero(), |a, &v| a + v).recip();
    row.iter_mut().for_each(|v| *v = *v * inv);
}

/// Σ a[j] b[j] over whole blocks, one partial sum per lane (so the loop vectorizes).
#[inline(always)]
fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::zero(); L];
    for (ab, bb) in a.chunks_exact(L).zip(b.chunks_exact(L)) {
        for l in 0..L {
            acc[l] = ab[l].mul_add(bb[l], acc[l]);
        }
    }
    acc.iter().fold(T::zero(), |s, &v| s + v)
}

/// Y = P V for one head, into `out` (T, width).
#[inline(always)]
fn head_forward<T: Float + Send + Sync + 'static>(
    d: &Dims,
    head: &Head<T>,
    out: &mut [T],
) -> candle_core::Result<()> {
    let (t, w, tp) = (head.t, head.w, head.tp);
    let p = head.probs(T::from(d.scale).unwrap_or_else(T::nan))?;
    gemm_into(
        out,
        (t, w, tp),
        Strided::row_major(&p, tp),
        Strided::row_major(&head.v, w),
        false,
    )
}

/// One head's (dq, dk, dv) from dy (T, width), into `out` (3, T, width): dV = Pᵀ dY, dP = dY Vᵀ,
/// dS = P ⊙ (dP − rowsum(P ⊙ dP)) · scale, dQ = dS K, dK = dSᵀ Q.
#[inline(always)]
fn head_backward<T: Float + Send + Sync + 'static>(
    d: &Dims,
    head: &Head<T>,
    dy: &[T],
    out: &mut [T],
) -> candle_core::Result<()> {
    let (t, w, tp) = (head.t, head.w, head.tp);
    let scale = T::from(d.scale).unwrap_or_else(T::nan);
    let p = head.probs(scale)?;
    let (dq, rest) = out.split_at_mut(t * w);
    let (dk, dv) = rest.split_at_mut(t * w);
    let (pm, dym) = (Strided::row_major(&p, tp), Strided::row_major(dy, w));
    gemm_into(dv, (t, w, t), pm.t(), dym, false)?;
    let mut ds = vec![T::zero(); t * tp];
    gemm_into(
        &mut ds,
        (t, tp, w),
        dym,
        Strided::row_major(&head.v, w).t(),
        false,
    )?;
    softmax_jvp_rows(&p, &mut ds, tp, scale);
    let dsm = Strided::row_major(&ds, tp);
    gemm_into(dq, (t, w, tp), dsm, Strided::row_major(&head.k, w), false)?;
    gemm_into(
        dk,
        (t, w, t),
        dsm.t(),
        Strided::row_major(&head.q, w),
        false,
    )
}

/// Each row i (T' wide) of `x` ← scale · P ⊙ (X − rowsum(P ⊙ X)) with row i of `p`: the softmax's Jacobian
/// (its JVP and its VJP alike) at the causal probabilities, zero past key i as P is.
#[inline(always)]
fn softmax_jvp_rows<T: Float>(p: &[T], x: &mut [T], tp: usize, scale: T) {
    for (i, (x, p)) in x.chunks_exact_mut(tp).zip(p.chunks_exact(tp)).enumerate() {
        let (x, past) = x.split_at_mut(padded(i + 1));
        past.fill(T::zero());
        let p = &p[..x.len()];
        let mean = dot(p, x);
        for (g, &p) in x.iter_mut().zip(p) {
            *g = p * (*g - mean) * scale;
        }
    }
}

/// Runs `f(b, h, out)` for every head of every sequence, each on its own `per_head` slice of a head-major buffer,
/// in parallel when the pass is large enough.
fn per_head<T: Float + Send + Sync>(
    d: &Dims,
    per_head: usize,
    f: impl Fn(usize, usize, &mut [T]) -> candle_core::Result<()> + Sync,
) -> candle_core::Result<Vec<T>> {
    let mut out = vec![T::zero(); d.batch * d.heads * per_head];
    if per_head == 0 {
        return Ok(out);
    }
    let run = |(n, o): (usize, &mut [T])| f(n / d.heads, n % d.heads, o);
    if d.work() < PARALLEL_MIN {
        out.chunks_mut(per_head).enumerate().try_for_each(run)?;
    } else {
        out.par_chunks_mut(per_head).enumerate().try_for_each(run)?;
    }
    Ok(out)
}

/// Head `h`'s columns (T, width) of a sequence's (T, C) rows.
#[inline(always)]
fn per_head_data<T: Float>(d: &Dims, x: &[T], h: usize) -> Vec<T> {
    let mut out = vec![T::zero(); d.seq * d.width];
    per_head_data_into(d, x, h, &mut out);
    out
}

/// [`per_head_data`] into `out` (T × width).
#[inline(always)]
fn per_head_data_into<T: Float>(d: &Dims, x: &[T], h: usize, out: &mut [T]) {
    let (c, w) = (d.c(), d.width);
    for (i, o) in out.chunks_exact_mut(w).enumerate() {
        o.copy_from_slice(&x[i * c + h * w..i * c + (h + 1) * w]);
    }
}

/// One head of one sequence: its forward output (T, width), or with `dy` its (dq, dk, dv) as (3, T, width).
struct HeadPass<'a, T> {
    d: &'a Dims,
    /// The sequence's packed (T, 3C) rows.
    seq: &'a [T],
    head: usize,
    /// The sequence's (T, C) output gradient, for the backward pass.
    dy: Option<&'a [T]>,
    out: &'a mut [T],
}

impl<T: Float + Send + Sync + 'static> SimdBody for HeadPass<'_, T> {
    type Out = candle_core::Result<()>;
    #[inline(always)]
    fn run(self) -> candle_core::Result<()> {
        let (d, h) = (self.d, self.head);
        let head = Head::gather(d, self.seq, h);
        match self.dy {
            None => head_forward(d, &head, self.out),
            Some(dy) => head_backward(d, &head, &per_head_data(d, dy, h), self.out),
        }
    }
}

impl Dims {
    /// Runs every head of every sequence (forward, or backward with `dy` (B, T, C)) and packs the results, each
    /// `parts` blocks of (T, width), into rows of `parts`·C.
    fn heads<T: Float + Send + Sync + 'static>(
        &self,
        qkv: &[T],
        dy: Option<&[T]>,
        parts: usize,
    ) -> candle_core::Result<Vec<T>> {
        let (t, c) = (self.seq, self.c());
        self.pack_heads(parts, |b, h, out| {
            simd_body(HeadPass {
                d: self,
                seq: &qkv[b * t * 3 * c..(b + 1) * t * 3 * c],
                head: h,
                dy: dy.map(|g| &g[b * t * c..(b + 1) * t * c]),
                out,
            })
        })
    }

    /// Runs `f(b, h, out)` for every head of every sequence, `out` being `parts` blocks of (T, width), and packs
    /// the blocks into rows of `parts`·C (B, T, parts·C).
    fn pack_heads<T: Float + Send + Sync + 'static>(
        &self,
        parts: usize,
        f: impl Fn(usize, usize, &mut [T]) -> candle_core::Result<()> + Sync,
    ) -> candle_core::Result<Vec<T>> {
        let per = parts * self.seq * self.width;
        Ok(self.pack(&per_head(self, per, f)?, per, parts))
    }

    /// The first `parts` blocks of (T, width) of each head's `per` values in `heads` (head-major), packed into
    /// rows of `parts`·C (B, T, parts·C).
    fn pack<T: Float>(&self, heads: &[T], per: usize, parts: usize) -> Vec<T> {
        let (t, w, c) = (self.seq, self.width, self.c());
        let mut packed = vec![T::zero(); self.batch * t * parts * c];
        if per == 0 {
            return packed;
        }
        for (n, o) in heads.chunks(per).enumerate() {
            let (b, h) = (n / self.heads, n % self.heads);
            for (part, o) in o[..parts * t * w].chunks(t * w).enumerate() {
                for (i, o) in o.chunks(w).enumerate() {
                    let at = (b * t + i) * parts * c + part * c + h * w;
                    packed[at..at + w].copy_from_slice(o);
                }
            }
        }
        packed
    }

    /// The attention output (B, T, C) of a packed `qkv`.
    fn forward<T: Float + Send + Sync + 'static>(&self, qkv: &[T]) -> candle_core::Result<Vec<T>> {
        self.heads(qkv, None, 1)
    }

    /// d qkv (B, T, 3C) from a packed `qkv` and dy (B, T, C).
    fn backward<T: Float + Send + Sync + 'static>(
        &self,
        qkv: &[T],
        dy: &[T],
    ) -> candle_core::Result<Vec<T>> {
        self.heads(qkv, Some(dy), 3)
    }
}

/// The contiguous f32 or f64 data of a storage, or a clear error.
fn data<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<Data<'a>> {
    match s {
        CpuStorage::F32(v) => Ok(Data::F32(contiguous(v, l, "attention")?)),
        CpuStorage::F64(v) => Ok(Data::F64(contiguous(v, l, "attention")?)),
        _ => Err(candle_core::Error::Msg(
            "attention runs in f32 or f64".into(),
        )),
    }
}

enum Data<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

/// The forward op on a packed qkv.
struct Attention(Dims);
/// Its backward, d qkv from (qkv, dy).
struct AttentionGrad(Dims);

impl CustomOp1 for Attention {
    fn name(&self) -> &'static str {
        "optlab-causal-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = &self.0;
        let out = match data(s, l)? {
            Data::F32(x) => CpuStorage::F32(d.forward(x)?),
            Data::F64(x) => CpuStorage::F64(d.forward(x)?),
        };
        Ok((out, Shape::from((d.batch, d.seq, d.c()))))
    }

    fn bwd(&self, qkv: &Tensor, _y: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(
            qkv.apply_op2(&g.contiguous()?, AttentionGrad(self.0))?,
        ))
    }
}

impl CustomOp2 for AttentionGrad {
    fn name(&self) -> &'static str {
        "optlab-causal-attention-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = &self.0;
        let out = match (data(s1, l1)?, data(s2, l2)?) {
            (Data::F32(x), Data::F32(g)) => CpuStorage::F32(d.backward(x, g)?),
            (Data::F64(x), Data::F64(g)) => CpuStorage::F64(d.backward(x, g)?),
            _ => {
                return Err(candle_core::Error::Msg(
                    "attention: qkv and its gradient must have one dtype".into(),
                ))
            }
        };
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        qkv: &Tensor,
        dy: &Tensor,
        _out: &Tensor,
        h: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let d = self.0;
        let v = composed_vjp(&[qkv, dy], h, |t| {
            grad_composed(&d, &t[0], &t[1]).map_err(|e| candle_core::Error::Msg(e.to_string()))
        })?;
        Ok((Some(v[0].clone()), Some(v[1].clone())))
    }
}

/// Causal multi-head self-attention of a packed projection `qkv` (B, T, 3C: queries, keys, values in that order
/// along the last dimension, head h at columns h·C/H..(h+1)·C/H of each) with logit `scale`: (B, T, C), each
/// position attending to itself and the positions before it. Fused on the CPU in f32 and f64; other devices and
/// dtypes take the composed formula.
pub fn causal_attention(qkv: &Tensor, heads: usize, scale: f64) -> Result<Tensor> {
    let d = Dims::of(qkv, heads, scale)?;
    if !fusable(qkv) {
        return forward_composed(&d, qkv);
    }
    Ok(qkv.contiguous()?.apply_op1(Attention(d))?)
}

/// q, k, v as (B, H, T, width), contiguous.
fn split(d: &Dims, qkv: &Tensor) -> Result<[Tensor; 3]> {
    let c = d.c();
    let part = |i: usize| -> Result<Tensor> {
        Ok(qkv
            .narrow(2, i * c, c)?
            .reshape((d.batch, d.seq, d.heads, d.width))?
            .transpose(1, 2)?
            .contiguous()?)
    };
    Ok([part(0)?, part(1)?, part(2)?])
}

/// (B, H, T, width) back to (B, T, C).
fn merge(d: &Dims, x: &Tensor) -> Result<Tensor> {
    Ok(x.transpose(1, 2)?.reshape((d.batch, d.seq, d.c()))?)
}

/// The attention probabilities softmax(scale · q kᵀ + causal mask), (B, H, T, T), in composed ops.
fn probs_composed(d: &Dims, q: &Tensor, k: &Tensor) -> Result<Tensor> {
    let t = d.seq;
    let mask: Vec<f64> = (0..t * t)
        .map(|i| {
            if i % t > i / t {
                f64::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, (t, t), q.device())?.to_dtype(q.dtype())?;
    let s = (q.matmul(&k.t()?.contiguous()?)? * d.scale)?.broadcast_add(&mask)?;
    let e = s
        .broadcast_sub(&s.max_keepdim(D::Minus1)?.detach())?
        .exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
}

/// [`causal_attention`] in candle's composed ops (any device and dtype; the reference in tests).
fn forward_composed(d: &Dims, qkv: &Tensor) -> Result<Tensor> {
    let [q, k, v] = split(d, qkv)?;
    merge(d, &probs_composed(d, &q, &k)?.matmul(&v)?)
}

/// The backward formula in composed ops, d qkv (B, T, 3C) from (qkv, dy): the reference for second order.
fn grad_composed(d: &Dims, qkv: &Tensor, dy: &Tensor) -> Result<Tensor> {
    let [q, k, v] = split(d, qkv)?;
    let dy = dy
        .reshape((d.batch, d.seq, d.heads, d.width))?
        .transpose(1, 2)?
        .contiguous()?;
    let p = probs_composed(d, &q, &k)?;
    let dv = p.t()?.matmul(&dy)?;
    let dp = dy.matmul(&v.t()?.contiguous()?)?;
    let ds = (&p * dp.broadcast_sub(&(&p * &dp)?.sum_keepdim(D::Minus1)?)?)?;
    let dq = (ds.matmul(&k)? * d.scale)?;
    let dk = (ds.t()?.matmul(&q)? * d.scale)?;
    Ok(Tensor::cat(
        &[merge(d, &dq)?, merge(d, &dk)?, merge(d, &dv)?],
        2,
    )?)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{dot_grad, max_diff};
    use super::*;
    use candle_core::{DType, Device, Var};

    /// Value, gradient and Hessian-vector product equal the composed formula in f64, with uneven sizes (T not a
    /// multiple of the vector width, a head width of 3) and a parallel and a sequential shape.
    #[test]
    fn fused_attention_matches_composed_to_second_order() {
        crate::require_second_order().unwrap();
        let dev = Device::Cpu;
        for (b, t, heads, w) in [(2, 5, 2, 3), (3, 37, 4, 8)] {
            let c = heads * w;
            let qkv = Var::randn(0f64, 1.0, (b, t, 3 * c), &dev).unwrap();
            let r = Tensor::randn(0f64, 1.0, (b, t, c), &dev).unwrap();
            let v = Tensor::randn(0f64, 1.0, (b, t, 3 * c), &dev).unwrap();
            let d = Dims::of(&qkv, heads, 0.7).unwrap();
            let fused = causal_attention(&qkv, heads, 0.7).unwrap();
            let composed = forward_composed(&d, &qkv).unwrap();
            assert!(max_diff(&fused, &composed) < 1e-12, "forward {t}");
            // A loss with curvature in the output: sum(r · y²).
            let loss = |y: &Tensor| (y.sqr().unwrap() * &r).unwrap().sum_all().unwrap();
            let (gf, gc) = (
                loss(&fused).backward().unwrap(),
                loss(&composed).backward().unwrap(),
            );
            let (a, e) = (gf.get(&qkv).unwrap(), gc.get(&qkv).unwrap());
            assert!(max_diff(a, e) < 1e-11, "grad {t}: {}", max_diff(a, e));
            let (hf, hc) = (dot_grad(&gf, &qkv, &v), dot_grad(&gc, &qkv, &v));
            let (a, e) = (hf.get(&qkv).unwrap(), hc.get(&qkv).unwrap());
            assert!(max_diff(a, e) < 1e-10, "hvp {t}: {}", max_diff(a, e));
        }
    }

    /// f32 against f64 (the fast exponential, the vector loops), and shapes that cannot be attention.
    #[test]
    fn fused_attention_f32_and_bad_shapes() {
        let dev = Device::Cpu;
        let qkv = Var::randn(0f64, 2.0, (4, 64, 3 * 64), &dev).unwrap();
        let y64 = causal_attention(&qkv, 4, 0.25).unwrap();
        let g64 = y64.sum_all().unwrap().backward().unwrap();
        let q32 = Var::from_tensor(&qkv.to_dtype(DType::F32).unwrap()).unwrap();
        let y32 = causal_attention(&q32, 4, 0.25).unwrap();
        let g32 = y32.sum_all().unwrap().backward().unwrap();
        let up = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
        assert!(max_diff(&up(&y32), &y64) < 1e-5);
        let (a, e) = (up(g32.get(&q32).unwrap()), g64.get(&qkv).unwrap().clone());
        assert!(max_diff(&a, &e) < 1e-4, "{}", max_diff(&a, &e));
        // The first position sees only itself: y₀ = v₀.
        let v0 = qkv.narrow(1, 0, 1).unwrap().narrow(2, 128, 64).unwrap();
        assert!(max_diff(&y64.narrow(1, 0, 1).unwrap(), &v0) < 1e-12);
        let bad = Tensor::zeros((2, 3, 10), DType::F32, &dev).unwrap();
        assert!(causal_attention(&bad, 2, 1.0).is_err());
        assert!(causal_attention(&bad.flatten_all().unwrap(), 1, 1.0).is_err());
        assert!(causal_attention(&q32, 4, f64::NAN).is_err());
    }
}
