//! Matrix products that differentiate only what is tracked.
//!
//! candle's backward of `a.matmul(b)` computes both operand gradients even when one operand is constant data: for a
//! data matrix X (n × d) times a parameter vector, that is an n × d outer product materialised on every backward pass,
//! and again on every double backward (each Hessian-vector product, each implicit-differentiation mat-vec of P10).
//! [`matmul`] is the same product as one candle op whose backward returns a gradient only for an operand that takes
//! part in the graph, built from [`matmul`] again so second-order passes stay as lean. [`gemm_into`] is the strided
//! gemm call it shares with the fused linear layer; `matmul_sum` accumulates a sum of products (and a bias) into
//! one output through it, for the R-operator's untracked products.

use super::lanes;
use crate::{Error, Result};
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Storage, Tensor};
use num_traits::Float;
use rayon::prelude::*;

/// A read-only strided 2-D view into a storage slice: element (i, j) is `data[off + i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Strided<'a, T> {
    pub data: &'a [T],
    pub off: usize,
    pub rs: isize,
    pub cs: isize,
}

impl<'a, T> Strided<'a, T> {
    /// The row-major matrix `data` with `cols` columns.
    pub fn row_major(data: &'a [T], cols: usize) -> Self {
        Strided {
            data,
            off: 0,
            rs: cols as isize,
            cs: 1,
        }
    }

    /// The view of a 2-D candle layout, `(rows, cols, view)`.
    pub fn of(data: &'a [T], l: &Layout, what: &str) -> candle_core::Result<(usize, usize, Self)> {
        match (l.dims(), l.stride()) {
            ([r, c], [sr, sc]) => Ok((
                *r,
                *c,
                Strided {
                    data,
                    off: l.start_offset(),
                    rs: *sr as isize,
                    cs: *sc as isize,
                },
            )),
            _ => Err(candle_core::Error::Msg(format!(
                "{what} must be 2-D, got shape {:?}",
                l.dims()
            ))),
        }
    }

    /// The transposed view (no copy).
    pub fn t(self) -> Self {
        Strided {
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    /// Whether every element of a `rows × cols` view lies inside `data` (strides are never negative in candle).
    fn fits(&self, rows: usize, cols: usize) -> bool {
        if rows == 0 || cols == 0 {
            return true;
        }
        if self.rs < 0 || self.cs < 0 {
            return false;
        }
        let last = self.off + (rows - 1) * self.rs as usize + (cols - 1) * self.cs as usize;
        last < self.data.len()
    }
}

/// dst (m × n, row-major, contiguous) ← [dst +] a (m × k) · b (k × n), multi-threaded over rayon's pool unless
/// called from inside it.
/// Matrix-vector products (n = 1, or m = 1 by transposition) go to [`gemv`].
pub(crate) fn gemm_into<T: Float + Send + Sync + 'static>(
    dst: &mut [T],
    (m, n, k): (usize, usize, usize),
    a: Strided<'_, T>,
    b: Strided<'_, T>,
    accumulate: bool,
) -> candle_core::Result<()> {
    if dst.len() != m * n || !a.fits(m, k) || !b.fits(k, n) {
        return Err(candle_core::Error::Msg(format!(
            "gemm: a {m}×{k} by {k}×{n} product does not fit its storages"
        )));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            dst.iter_mut().for_each(|v| *v = T::zero());
        }
        return Ok(());
    }
    if n == 1 && gemv(dst, m, k, a, b, accumulate) {
        return Ok(());
    }
    // A row vector times a matrix: dstᵀ = bᵀ aᵀ, with a's row as the vector.
    if m == 1 && gemv(dst, n, k, b.t(), a.t(), accumulate) {
        return Ok(());
    }
    // Called from a task of rayon's pool (a kernel already parallel over heads or examples), the product stays on
    // that thread.
    let threads = if rayon::current_thread_index().is_some() {
        1
    } else {
        rayon::current_num_threads()
    };
    let dst = Dst(dst.as_mut_ptr());
    let product = Product {
        a,
        b,
        k,
        n,
        accumulate,
    };
    // Wide, short products run as one single-threaded gemm per thread on a block of dst's columns: measured on 2
    // cores (AVX-512), gemm's own threading ran 256×1024 · 1024×1024 (an MLP's hidden layer, W transposed) at
    // 124-148 GFLOP/s, the split at 176-180. Splitting the rows of tall products measured slower in training steps
    // than gemm's threading, which they keep.
    let by_cols = threads > 1
        && m * n * k >= SPLIT_MIN_WORK
        && (SPLIT_MIN_ROWS..SPLIT_MAX_ROWS).contains(&m)
        && n >= SPLIT_MIN_COLS;
    if !by_cols {
        // SAFETY: see `Product::tile`; the whole product is the one tile.
        unsafe { product.tile(&dst, (0..m, 0..n), threads) };
        return Ok(());
    }
    let part = n.div_ceil(threads).next_multiple_of(16);
    (0..n.div_ceil(part)).into_par_iter().for_each(|i| {
        let cols = i * part..((i + 1) * part).min(n);
        // SAFETY: see `Product::tile`; the blocks are disjoint.
        unsafe { product.tile(&dst, (0..m, cols), 1) };
    });
    Ok(())
}

/// The products whose columns [`gemm_into`] splits between threads: at least this much work (m·n·k; below it
/// the packing buffers each worker thread then keeps added 6 MiB to a small MLP's peak memory), rows in
/// `SPLIT_MIN_ROWS..SPLIT_MAX_ROWS`, at least `SPLIT_MIN_COLS` columns.
const SPLIT_MIN_WORK: usize = 1 << 24;
const SPLIT_MIN_ROWS: usize = 64;
const SPLIT_MAX_ROWS: usize = 512;
const SPLIT_MIN_COLS: usize = 256;

/// The row-major `rows × cols` matrix `w` transposed, row-major. Strips of 8 output rows: each row of `w` gives 8
/// contiguous values, written one to each output row, so the 8 rows being filled stay in the cache even when their
/// length is a multiple of 1024 (rows 4 KiB apart share one cache set, which taller strips would thrash). Strips in
/// parallel from 2^16 entries.
fn transposed<T: Float + Send + Sync>(w: &[T], rows: usize, cols: usize) -> Vec<T> {
    const STRIP: usize = 8;
    let mut out = vec![T::zero(); rows * cols];
    // `strip` holds output rows i0.. (columns i0.. of w), each `rows` long.
    let fill = |i0: usize, strip: &mut [T]| {
        let r = strip.len() / rows;
        for (j, row) in w.chunks_exact(cols).enumerate() {
            for (q, &v) in row[i0..i0 + r].iter().enumerate() {
                strip[q * rows + j] = v;
            }
        }
    };
    if rows * cols >= 1 << 16 {
        out.par_chunks_mut(STRIP * rows)
            .enumerate()
            .for_each(|(c, strip)| fill(c * STRIP, strip));
    } else {
        out.chunks_mut(STRIP * rows)
            .enumerate()
            .for_each(|(c, strip)| fill(c * STRIP, strip));
    }
    out
}

/// The transpose of a 2-D f32 or f64 CPU tensor, contiguous: a weight W `[out, in]` as Wᵀ `[in, out]` row-major,
/// so that x Wᵀ runs as a product of row-major operands (measured on 2 cores with AVX-512, gemm ran
/// 256×1024 · (1024×1024)ᵀ at 124-128 GFLOP/s with W as stored and at 195-212 with Wᵀ row-major; the copy costs
/// about a third of the difference). For operands reused by several products.
pub(crate) fn transpose(w: &Tensor) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    crate::optim::kernel::with_slice(w, |s| -> Result<Tensor> {
        use crate::optim::kernel::SliceRef;
        let dev = w.device();
        Ok(match s {
            SliceRef::F32(v) => Tensor::from_vec(transposed(v, rows, cols), (cols, rows), dev)?,
            SliceRef::F64(v) => Tensor::from_vec(transposed(v, rows, cols), (cols, rows), dev)?,
        })
    })?
}

/// Wᵀ as the right operand of products x Wᵀ that reuse it, in the layout gemm runs faster on this CPU: with
/// AVX-512 the row-major copy of [`transpose`] (gemm packs it; see there for the rates), otherwise the strided view
/// `w.t()`, which gemm reads in place. On 2 Zen 3 cores (AVX2) the copies made an MLP 784-1024-1024-10's
/// Hessian-vector product 2.45-2.86 gradients long against 2.07-2.29 with the views (alternated in one process).
pub(crate) fn right_operand_t(w: &Tensor) -> Result<Tensor> {
    if packs_right_operand() {
        transpose(w)
    } else {
        Ok(w.t()?)
    }
}

/// Whether products should get a row-major right operand (see [`right_operand_t`]).
fn packs_right_operand() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Σᵢ aᵢ bᵢ, plus `bias` (a row of n) on every row, for 2-D operands (views such as `w.t()` included): on the
/// CPU in f32/f64 one output that each product is accumulated into by gemm (no intermediate products, no sums);
/// composed candle ops elsewhere. Untracked: the R-operator's sums of products (`curvature::rop`).
pub(crate) fn matmul_sum(terms: &[(&Tensor, &Tensor)], bias: Option<&Tensor>) -> Result<Tensor> {
    let Some(&(a0, b0)) = terms.first() else {
        return Err(Error::invalid("matmul_sum: no products"));
    };
    let (m, n) = (a0.dims2()?.0, b0.dims2()?.1);
    let all = terms.iter().flat_map(|&(a, b)| [a, b]).chain(bias);
    let fused = all.clone().all(|t| {
        t.device().is_cpu()
            && t.dtype() == a0.dtype()
            && matches!(t.dtype(), DType::F32 | DType::F64)
    });
    for &(a, b) in terms {
        let ((ma, k), (kb, nb)) = (a.dims2()?, b.dims2()?);
        if (ma, nb) != (m, n) || k != kb {
            return Err(Error::Shape(format!(
                "matmul_sum: a sum of {m}×{n} products has a {:?} · {:?} term",
                a.dims(),
                b.dims()
            )));
        }
    }
    if bias.is_some_and(|b| b.dims() != [n]) {
        return Err(Error::Shape(format!(
            "matmul_sum: the bias must have {n} entries"
        )));
    }
    if !fused {
        let mut sum = match bias {
            Some(b) => b.broadcast_as((m, n))?.contiguous()?,
            None => Tensor::zeros((m, n), a0.dtype(), a0.device())?,
        };
        for &(a, b) in terms {
            sum = (sum + a.matmul(b)?)?;
        }
        return Ok(sum);
    }
    let guards: Vec<_> = all.map(|t| t.storage_and_layout()).collect();
    fn run<T: candle_core::WithDType + Float + Send + Sync + 'static>(
        guards: &[(impl std::ops::Deref<Target = Storage>, &Layout)],
        products: usize,
        (m, n): (usize, usize),
    ) -> Result<Vec<T>> {
        let slices = guards
            .iter()
            .map(|(s, l)| match &**s {
                Storage::Cpu(s) => Ok((T::cpu_storage_as_slice(s)?, *l)),
                _ => Err(Error::invalid(
                    "matmul_sum: the operands must be on the CPU",
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        let mut dst = vec![T::zero(); m * n];
        let biased = slices.len() > 2 * products;
        if biased {
            let (b, l) = slices[2 * products];
            let b = &b[l.start_offset()..l.start_offset() + n];
            dst.chunks_exact_mut(n)
                .for_each(|row| row.copy_from_slice(b));
        }
        for (i, pair) in slices[..2 * products].chunks_exact(2).enumerate() {
            let (_, k, a) = Strided::of(pair[0].0, pair[0].1, "matmul_sum")?;
            let (_, _, b) = Strided::of(pair[1].0, pair[1].1, "matmul_sum")?;
            gemm_into(&mut dst, (m, n, k), a, b, biased || i > 0)?;
        }
        Ok(dst)
    }
    let dev = a0.device();
    Ok(match a0.dtype() {
        DType::F32 => Tensor::from_vec(run::<f32>(&guards, terms.len(), (m, n))?, (m, n), dev)?,
        _ => Tensor::from_vec(run::<f64>(&guards, terms.len(), (m, n))?, (m, n), dev)?,
    })
}

/// The destination of [`gemm_into`], shared by the threads that write its disjoint blocks.
struct Dst<T>(*mut T);
// SAFETY: the threads write disjoint elements (see `Product::tile`).
unsafe impl<T: Send> Sync for Dst<T> {}

/// a (m × k) · b (k × n), to be added to (`accumulate`) or written into a row-major destination with n columns.
struct Product<'a, T> {
    a: Strided<'a, T>,
    b: Strided<'a, T>,
    k: usize,
    n: usize,
    accumulate: bool,
}

impl<T: Float + 'static> Product<'_, T> {
    /// dst[rows, cols] ← [dst +] a[rows, :] · b[:, cols], on `threads` of rayon's pool (1: this thread).
    ///
    /// # Safety
    /// `fits` has checked that a and b lie inside their data, dst holds m·n row-major elements, the ranges lie
    /// inside them, and no other thread touches this block; gemm reads dst only when `accumulate` is set.
    unsafe fn tile(
        &self,
        dst: &Dst<T>,
        (rows, cols): (std::ops::Range<usize>, std::ops::Range<usize>),
        threads: usize,
    ) {
        let at = |v: Strided<'_, T>, i: usize, j: usize| {
            v.data
                .as_ptr()
                .add(v.off + i * v.rs as usize + j * v.cs as usize)
        };
        let (a, b, n) = (self.a, self.b, self.n);
        gemm::gemm(
            rows.len(),
            cols.len(),
            self.k,
            dst.0.add(rows.start * n + cols.start),
            1,
            n as isize,
            self.accumulate,
            at(a, rows.start, 0),
            a.cs,
            a.rs,
            at(b, 0, cols.start),
            b.cs,
            b.rs,
            T::one(),
            T::one(),
            false,
            false,
            false,
            if threads > 1 {
                gemm::Parallelism::Rayon(threads)
            } else {
                gemm::Parallelism::None
            },
        );
    }
}

/// Rows (or output entries) per rayon task in [`gemv`], and the size below which it runs on one thread.
const GEMV_CHUNK: usize = 256;
const GEMV_SERIAL: usize = 1 << 15;

/// dst (m) ← [dst +] a (m × k) · x (the k × 1 view), when a's rows or columns are contiguous (else false, untouched):
/// one pass over a in its own memory order, which is what bounds a matrix-vector product (gemm's tiling is built for
/// matrices and reads a slower).
fn gemv<T: Float + Send + Sync>(
    dst: &mut [T],
    m: usize,
    k: usize,
    a: Strided<'_, T>,
    x: Strided<'_, T>,
    accumulate: bool,
) -> bool {
    let xs: Vec<T> = (0..k).map(|j| x.data[x.off + j * x.rs as usize]).collect();
    let serial = m * k < GEMV_SERIAL;
    if a.cs == 1 {
        // Rows contiguous: one dot product per row.
        let rows = |start: usize, out: &mut [T]| {
            crate::simd::simd(
                #[inline(always)]
                || {
                    for (i, o) in out.iter_mut().enumerate() {
                        let row = a.off + (start + i) * a.rs as usize;
                        let d = lanes::dot(&a.data[row..row + k], &xs);
                        *o = if accumulate { *o + d } else { d };
                    }
                },
            )
        };
        if serial {
            rows(0, dst);
        } else {
            dst.par_chunks_mut(GEMV_CHUNK)
                .enumerate()
                .for_each(|(c, out)| rows(c * GEMV_CHUNK, out));
        }
        true
    } else if a.rs == 1 {
        // Columns contiguous: dst = Σ_j x_j · column j. Each task sums a contiguous range of columns (a stretch of
        // a's memory) four at a time into its own partial vector; the partials are added at the end.
        let partial = |j0: usize, j1: usize| -> Vec<T> {
            let mut out = vec![T::zero(); m];
            crate::simd::simd(
                #[inline(always)]
                || columns(&mut out, a, &xs, j0, j1),
            );
            out
        };
        let tasks = if serial {
            1
        } else {
            rayon::current_num_threads().clamp(1, k)
        };
        let per = k.div_ceil(tasks);
        let parts: Vec<Vec<T>> = (0..tasks)
            .into_par_iter()
            .map(|t| partial((t * per).min(k), ((t + 1) * per).min(k)))
            .collect();
        if !accumulate {
            dst.iter_mut().for_each(|o| *o = T::zero());
        }
        for part in parts {
            for (o, v) in dst.iter_mut().zip(part) {
                *o = *o + v;
            }
        }
        true
    } else {
        false
    }
}

/// out (m) += Σ_{j0 ≤ j < j1} x_j · column j of a (columns contiguous, m long), four columns at a time.
#[inline(always)]
fn columns<T: Float>(out: &mut [T], a: Strided<'_, T>, xs: &[T], j0: usize, j1: usize) {
    let m = out.len();
    let col = |j: usize| &a.data[a.off + j * a.cs as usize..][..m];
    let mut j = j0;
    while j + 4 <= j1 {
        let (c0, c1, c2, c3) = (col(j), col(j + 1), col(j + 2), col(j + 3));
        let (x0, x1, x2, x3) = (xs[j], xs[j + 1], xs[j + 2], xs[j + 3]);
        for i in 0..m {
            out[i] = out[i] + x0 * c0[i] + x1 * c1[i] + x2 * c2[i] + x3 * c3[i];
        }
        j += 4;
    }
    for (j, &xj) in xs.iter().enumerate().take(j1).skip(j) {
        for (o, &v) in out.iter_mut().zip(col(j)) {
            *o = *o + xj * v;
        }
    }
}

struct Matmul;

fn product<T: Float + Send + Sync + 'static>(
    a: &[T],
    al: &Layout,
    b: &[T],
    bl: &Layout,
) -> candle_core::Result<(Vec<T>, Shape)> {
    let (m, k, av) = Strided::of(a, al, "matmul: the left operand")?;
    let (k2, n, bv) = Strided::of(b, bl, "matmul: the right operand")?;
    if k != k2 {
        return Err(candle_core::Error::Msg(format!(
            "matmul: shapes {:?} and {:?} do not fit",
            al.dims(),
            bl.dims()
        )));
    }
    let mut dst = vec![T::zero(); m * n];
    gemm_into(&mut dst, (m, n, k), av, bv, false)?;
    Ok((dst, Shape::from((m, n))))
}

impl CustomOp2 for Matmul {
    fn name(&self) -> &'static str {
        "optlab-matmul"
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
                product(a, l1, b, l2).map(|(v, s)| (CpuStorage::F32(v), s))
            }
            (CpuStorage::F64(a), CpuStorage::F64(b)) => {
                product(a, l1, b, l2).map(|(v, s)| (CpuStorage::F64(v), s))
            }
            _ => Err(candle_core::Error::Msg(
                "matmul: both operands must be f32 or both f64".into(),
            )),
        }
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let lean = |x: &Tensor, y: &Tensor| matmul(x, y).map_err(candle_core::Error::wrap);
        let da = if a.track_op() {
            Some(lean(grad, &b.t()?)?)
        } else {
            None
        };
        let db = if b.track_op() {
            Some(lean(&a.t()?, grad)?)
        } else {
            None
        };
        Ok((da, db))
    }
}

/// a · b for 2-D f32/f64 CPU tensors, whose backward computes no gradient for a constant operand (see the module
/// docs); anything else goes to candle's `matmul`. Use it for products of data with parameters inside optimality
/// conditions (P10) and losses that are differentiated twice.
///
/// ```
/// # std::env::set_var("CANDLE_GRAD_DO_NOT_DETACH", "1");
/// use candle_core::{Device, Tensor, Var};
/// let x = Tensor::new(&[[1.0f64, 2.0], [3.0, 4.0]], &Device::Cpu)?;
/// let w = Var::new(&[[1.0f64], [-1.0]], &Device::Cpu)?;
/// let y = optlab::nn::matmul::matmul(&x, w.as_tensor())?;
/// assert_eq!(y.flatten_all()?.to_vec1::<f64>()?, [-1.0, -1.0]);
/// let g = y.sum_all()?.backward()?;
/// assert_eq!(g.get(&w).unwrap().flatten_all()?.to_vec1::<f64>()?, [4.0, 6.0]);
/// assert!(g.get(&x).is_none()); // the data's gradient is never formed
/// # Ok::<(), optlab::Error>(())
/// ```
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let lean = a.rank() == 2
        && b.rank() == 2
        && a.device().is_cpu()
        && b.device().is_cpu()
        && a.dtype() == b.dtype()
        && matches!(a.dtype(), candle_core::DType::F32 | candle_core::DType::F64);
    Ok(if lean {
        a.apply_op2(b, Matmul)?
    } else {
        a.matmul(b)?
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        a.to_dtype(DType::F64)
            .unwrap()
            .sub(&b.to_dtype(DType::F64).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    #[test]
    fn products_match_candle_for_every_layout() {
        let dev = Device::Cpu;
        // (m, k, n): matrix-vector below and above the serial threshold, row vector times matrix, a plain gemm,
        // empty inner dimension, a wide product whose columns are split between threads (with more than one).
        for &(m, k, n) in &[
            (7, 5, 1),
            (300, 257, 1),
            (1, 300, 129),
            (1, 3, 1),
            (6, 4, 3),
            (4, 0, 1),
            (100, 600, 300),
        ] {
            let a = Tensor::randn(0f64, 1.0, (m, k), &dev).unwrap();
            let b = Tensor::randn(0f64, 1.0, (k, n), &dev).unwrap();
            let at = Tensor::randn(0f64, 1.0, (k, m), &dev).unwrap();
            let bt = Tensor::randn(0f64, 1.0, (n, k), &dev).unwrap();
            for (x, y) in [
                (&a, &b),
                (&at.t().unwrap(), &b),
                (&a, &bt.t().unwrap()),
                (&at.t().unwrap(), &bt.t().unwrap()),
            ] {
                let want = x.matmul(y).unwrap();
                assert!(
                    max_diff(&matmul(x, y).unwrap(), &want) < 1e-12,
                    "{m}x{k}x{n}"
                );
                let (x32, y32) = (
                    x.to_dtype(DType::F32).unwrap(),
                    y.to_dtype(DType::F32).unwrap(),
                );
                assert!(max_diff(&matmul(&x32, &y32).unwrap(), &want) < 1e-4);
            }
        }
        // The same split adding to a preloaded bias: the fused linear layer.
        let x = Tensor::randn(0f64, 1.0, (100, 600), &dev).unwrap();
        let w = Tensor::randn(0f64, 1.0, (300, 600), &dev).unwrap();
        let bias = Tensor::randn(0f64, 1.0, 300, &dev).unwrap();
        let want = x
            .matmul(&w.t().unwrap())
            .unwrap()
            .broadcast_add(&bias)
            .unwrap();
        let got = crate::nn::linear::linear(&x, &w, Some(&bias)).unwrap();
        assert!(max_diff(&got, &want) < 1e-12);
        // Neither rows nor columns contiguous (every other column of a wider matrix): the general gemm path.
        let wide = Tensor::randn(0f64, 1.0, (9, 12), &dev).unwrap();
        let strided = wide
            .reshape((9, 6, 2))
            .unwrap()
            .narrow(2, 0, 1)
            .unwrap()
            .squeeze(2)
            .unwrap();
        let v = Tensor::randn(0f64, 1.0, (6, 1), &dev).unwrap();
        assert!(
            max_diff(
                &matmul(&strided, &v).unwrap(),
                &strided.contiguous().unwrap().matmul(&v).unwrap()
            ) < 1e-12
        );
        // Mismatched shapes are an error, not a panic.
        assert!(matmul(&a_err(), &Tensor::zeros((4, 1), DType::F64, &dev).unwrap()).is_err());
    }

    #[test]
    fn transpose_matches_candle() {
        let dev = Device::Cpu;
        // Shapes below and above the parallel threshold, rows not a multiple of the strip, a row, a column.
        for &(r, c) in &[(3, 5), (1, 7), (9, 1), (300, 517), (1024, 70)] {
            let w = Tensor::randn(0f64, 1.0, (r, c), &dev).unwrap();
            for w in [w.clone(), w.to_dtype(DType::F32).unwrap()] {
                let t = transpose(&w).unwrap();
                assert_eq!(t.dims(), &[c, r]);
                assert!(t.is_contiguous());
                assert_eq!(max_diff(&t, &w.t().unwrap()), 0.0, "{r}x{c}");
                // The operand products take, copied or not.
                let t = right_operand_t(&w).unwrap();
                assert_eq!(t.is_contiguous(), packs_right_operand() || r == 1 || c == 1);
                assert_eq!(max_diff(&t, &w.t().unwrap()), 0.0, "{r}x{c}");
            }
        }
    }

    fn a_err() -> Tensor {
        Tensor::zeros((2, 3), DType::F64, &Device::Cpu).unwrap()
    }

    #[test]
    fn gradients_only_for_tracked_operands_and_second_order() {
        crate::require_second_order().unwrap();
        let dev = Device::Cpu;
        let x = Tensor::randn(0f64, 1.0, (40, 6), &dev).unwrap();
        let w = Var::randn(0f64, 1.0, (6, 1), &dev).unwrap();
        // f(w) = ½‖X w‖²: ∇f = XᵀX w, ∇(⟨∇f, v⟩) = XᵀX v.
        let f = matmul(&x, w.as_tensor())
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .affine(0.5, 0.0)
            .unwrap();
        let g = f.backward().unwrap();
        assert!(g.get(&x).is_none());
        let gw = g.get(&w).unwrap().clone();
        let gram = x.t().unwrap().matmul(&x).unwrap();
        assert!(max_diff(&gw, &gram.matmul(w.as_tensor()).unwrap()) < 1e-10);
        let v = Tensor::randn(0f64, 1.0, (6, 1), &dev).unwrap();
        let hv = gw.mul(&v).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(max_diff(hv.get(&w).unwrap(), &gram.matmul(&v).unwrap()) < 1e-10);
    }
}
