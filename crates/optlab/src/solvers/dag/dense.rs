//! The dense d×d kernels of the log-det path-following (P40), row-major and in place, for d in the tens to low
//! hundreds where a general library's dispatch, allocation and bounds checks cost more than the arithmetic: the
//! inverse by Gauss–Jordan elimination with partial pivoting, compiled for the widest vector unit, and products
//! through faer's gemm into buffers the caller keeps.

use crate::simd::{simd_body, SimdBody};
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};

/// The row stride [`invert_in_place`] works with: d rounded up to a whole number of 8-lane vectors.
pub(super) fn padded(d: usize) -> usize {
    d.div_ceil(8) * 8
}

/// Inverts the d×d matrix `a` in place, rows `ld` = [`padded`]`(d)` apart with zeros in columns d..ld (which stay
/// zero), by Gauss–Jordan elimination with partial pivoting, the row interchanges undone as column interchanges at
/// the end; `pivots` is scratch. `false` when a pivot is zero or not finite (singular or overflowing); `a` is then
/// garbage. Full-width rows keep every update a whole number of vectors.
pub(super) fn invert_in_place(a: &mut [f64], d: usize, pivots: &mut Vec<usize>) -> bool {
    let ld = padded(d);
    assert_eq!(a.len(), d * ld, "invert_in_place: a is not d x padded(d)");
    pivots.resize(d, 0);
    simd_body(GaussJordan { a, d, ld, pivots })
}

struct GaussJordan<'a> {
    a: &'a mut [f64],
    d: usize,
    ld: usize,
    pivots: &'a mut [usize],
}

impl SimdBody for GaussJordan<'_> {
    type Out = bool;
    #[inline(always)]
    fn run(self) -> bool {
        let (a, d, ld) = (self.a, self.d, self.ld);
        // The scaled pivot rows u (pivot k) and v (pivot k + 1), on the stack (aligned) up to MAX_FAST wide.
        let (mut stack, mut heap) = (Aligned([0.0; 2 * MAX_FAST]), Vec::new());
        let (u, v) = if ld <= MAX_FAST {
            stack.0[..2 * ld].split_at_mut(ld)
        } else {
            heap.resize(2 * ld, 0.0);
            heap.split_at_mut(ld)
        };
        let mut k = 0;
        while k < d {
            // Pivot k: the row with the largest |a[i][k]|, scaled into u.
            let Some(p) = pivot_row(k, d, |i| a[i * ld + k]) else {
                return false;
            };
            swap_rows(a, ld, k, p);
            self.pivots[k] = p;
            u.copy_from_slice(&a[k * ld..(k + 1) * ld]);
            let inv_k = 1.0 / u[k];
            u.iter_mut().for_each(|x| *x *= inv_k);
            if k + 1 == d {
                eliminate_one(a, ld, k, u, inv_k);
                break;
            }
            // Pivot m = k + 1 among column m as step k leaves it, then row m after step k, scaled into v.
            let m = k + 1;
            let um = u[m];
            let Some(p) = pivot_row(m, d, |i| a[i * ld + m] - a[i * ld + k] * um) else {
                return false;
            };
            swap_rows(a, ld, m, p);
            self.pivots[m] = p;
            let f = a[m * ld + k];
            v.iter_mut()
                .zip(&a[m * ld..(m + 1) * ld])
                .zip(&*u)
                .for_each(|((v, x), u)| *v = x - f * u);
            v[k] = -f * inv_k;
            let inv_m = 1.0 / v[m];
            v.iter_mut().for_each(|x| *x *= inv_m);
            // Every other row takes both steps in one pass; u and v are fixed-size locals up to 128 columns.
            let vk = v[k];
            let step = PairStep {
                k,
                um,
                inv_k,
                inv_m,
                vk,
            };
            match ld / 8 {
                1 => eliminate_pair::<1>(a, ld, &step, u, v),
                2 => eliminate_pair::<2>(a, ld, &step, u, v),
                3 => eliminate_pair::<3>(a, ld, &step, u, v),
                4 => eliminate_pair::<4>(a, ld, &step, u, v),
                5 => eliminate_pair::<5>(a, ld, &step, u, v),
                6 => eliminate_pair::<6>(a, ld, &step, u, v),
                7 => eliminate_pair::<7>(a, ld, &step, u, v),
                8 => eliminate_pair::<8>(a, ld, &step, u, v),
                9 => eliminate_pair::<9>(a, ld, &step, u, v),
                10 => eliminate_pair::<10>(a, ld, &step, u, v),
                11 => eliminate_pair::<11>(a, ld, &step, u, v),
                12 => eliminate_pair::<12>(a, ld, &step, u, v),
                13 => eliminate_pair::<13>(a, ld, &step, u, v),
                14 => eliminate_pair::<14>(a, ld, &step, u, v),
                15 => eliminate_pair::<15>(a, ld, &step, u, v),
                16 => eliminate_pair::<16>(a, ld, &step, u, v),
                _ => eliminate_pair::<0>(a, ld, &step, u, v),
            }
            // Row k takes step m; row m is v.
            let row_k = &mut a[k * ld..(k + 1) * ld];
            row_k
                .iter_mut()
                .zip(&*u)
                .zip(&*v)
                .for_each(|((x, u), v)| *x = u - um * v);
            row_k[k] = inv_k - um * vk;
            row_k[m] = -um * inv_m;
            let row_m = &mut a[m * ld..(m + 1) * ld];
            row_m.copy_from_slice(v);
            row_m[m] = inv_m;
            k += 2;
        }
        for k in (0..d).rev() {
            let p = self.pivots[k];
            if p != k {
                a.chunks_exact_mut(ld).for_each(|row| row.swap(k, p));
            }
        }
        true
    }
}

/// Pivots k and m = k + 1 of a paired Gauss–Jordan step: u[m], 1/pivot_k, 1/pivot_m and v[k].
struct PairStep {
    k: usize,
    um: f64,
    inv_k: f64,
    inv_m: f64,
    vk: f64,
}

/// Both steps of a pair on every row but k and m: x ← (x − f₁u) − f₂v (the rounding of two single steps), with
/// f₁ = x[k] and f₂ = x[m] − f₁u[m]; columns k and m are written after the vector update (a scalar store before a
/// vector load of the same line would stall on store forwarding). For N ≥ 1 the rows are N vectors wide and u and
/// v are copied into fixed-size locals; N = 0 takes any width, in fixed-size segments.
#[inline(always)]
fn eliminate_pair<const N: usize>(a: &mut [f64], ld: usize, p: &PairStep, u: &[f64], v: &[f64]) {
    let m = p.k + 1;
    let fix = |row: &mut [f64], f1: f64, f2: f64| {
        row[p.k] = -f1 * p.inv_k - f2 * p.vk;
        row[m] = -f2 * p.inv_m;
    };
    let rows = a
        .chunks_exact_mut(ld)
        .enumerate()
        .filter(|(i, _)| *i != p.k && *i != m);
    if N == 0 {
        let (us, vs) = (u.as_chunks::<8>().0, v.as_chunks::<8>().0);
        for (_, row) in rows {
            let f1 = row[p.k];
            let f2 = row[m] - f1 * p.um;
            // Segments of SEGMENT vectors as fixed-size arrays (a slice loop this long stayed scalar: d = 150
            // took 2.1 ms an inverse), then the rest.
            let x = row.as_chunks_mut::<8>().0;
            let (mut xs, mut ur, mut vr) = (x.chunks_exact_mut(SEGMENT), us, vs);
            for x in &mut xs {
                let x: &mut [[f64; 8]; SEGMENT] = x.try_into().expect("a segment");
                let (u, v) = (ur.split_at(SEGMENT), vr.split_at(SEGMENT));
                for t in 0..SEGMENT {
                    x[t] = pair_update(x[t], f1, u.0[t], f2, v.0[t]);
                }
                (ur, vr) = (u.1, v.1);
            }
            sub_scaled2(xs.into_remainder(), f1, ur, f2, vr);
            fix(row, f1, f2);
        }
        return;
    }
    let uu: [[f64; 8]; N] = u.as_chunks::<8>().0.try_into().expect("u is N vectors");
    let vv: [[f64; 8]; N] = v.as_chunks::<8>().0.try_into().expect("v is N vectors");
    for (_, row) in rows {
        let f1 = row[p.k];
        let f2 = row[m] - f1 * p.um;
        let x: &mut [[f64; 8]; N] = row
            .as_chunks_mut::<8>()
            .0
            .try_into()
            .expect("rows are N vectors");
        for t in 0..N {
            x[t] = pair_update(x[t], f1, uu[t], f2, vv[t]);
        }
        fix(row, f1, f2);
    }
}

/// Vectors per fixed-size segment of a row wider than the register-held kernels.
const SEGMENT: usize = 8;

/// The row in k..d with the largest |value(i)|, the first of equals; `None` when that is zero or not finite.
/// Four running maxima over interleaved rows, merged at the end. With one running maximum, a chain of dependent
/// compares, the searches took about a quarter of a d = 50 inverse (in a build with fused updates: 9.7 µs, 7.2 µs
/// with no pivoting on a matrix that needs none, 8.6–8.9 µs with four maxima).
#[inline(always)]
fn pivot_row(k: usize, d: usize, value: impl Fn(usize) -> f64) -> Option<usize> {
    const CHAINS: usize = 4;
    let mut best = [(f64::NEG_INFINITY, usize::MAX); CHAINS];
    let mut i = k + 1;
    while i + CHAINS <= d {
        for (c, b) in best.iter_mut().enumerate() {
            let v = value(i + c).abs();
            if v > b.0 {
                *b = (v, i + c);
            }
        }
        i += CHAINS;
    }
    for (c, b) in best.iter_mut().enumerate().take(d - i) {
        let v = value(i + c).abs();
        if v > b.0 {
            *b = (v, i + c);
        }
    }
    // Row k first, then each chain's first maximum: a larger value, or an equal one at a lower row, wins.
    let (mut bv, mut p) = (value(k).abs(), k);
    for (v, r) in best {
        if r != usize::MAX && (v > bv || (v == bv && r < p)) {
            (bv, p) = (v, r);
        }
    }
    (bv > 0.0 && bv.is_finite()).then_some(p)
}

#[inline(always)]
fn swap_rows(a: &mut [f64], ld: usize, k: usize, p: usize) {
    if p != k {
        let (lo, hi) = a.split_at_mut(p * ld);
        lo[k * ld..(k + 1) * ld].swap_with_slice(&mut hi[..ld]);
    }
}

/// The single step of the last pivot k (odd d): u is row k scaled.
#[inline(always)]
fn eliminate_one(a: &mut [f64], ld: usize, k: usize, u: &[f64], inv_k: f64) {
    for (i, row) in a.chunks_exact_mut(ld).enumerate() {
        if i == k {
            row.copy_from_slice(u);
            row[k] = inv_k;
            continue;
        }
        let f = row[k];
        sub_scaled(row.as_chunks_mut::<8>().0, f, u.as_chunks::<8>().0);
        row[k] = -f * inv_k;
    }
}

/// x ← (x − f·u) − g·v, a whole vector at a time (see [`sub_scaled`]).
#[inline(always)]
fn sub_scaled2(x: &mut [[f64; 8]], f: f64, u: &[[f64; 8]], g: f64, v: &[[f64; 8]]) {
    for ((x, u), v) in x.iter_mut().zip(u).zip(v) {
        *x = pair_update(*x, f, *u, g, *v);
    }
}

/// (x − f·u) − g·v on one vector, every operand loaded before the result is stored (no question of order for the
/// vectorizer).
#[inline(always)]
fn pair_update(x: [f64; 8], f: f64, u: [f64; 8], g: f64, v: [f64; 8]) -> [f64; 8] {
    std::array::from_fn(|t| (x[t] - f * u[t]) - g * v[t])
}

/// x −= f·y, a whole vector at a time. A function of its own so that x and y are known apart (arguments are
/// `noalias`; two slices inside one body are not, and the loop would stay scalar).
#[inline(always)]
fn sub_scaled(x: &mut [[f64; 8]], f: f64, y: &[[f64; 8]]) {
    for (x, y) in x.iter_mut().zip(y) {
        // Both vectors loaded before the store: no question of order for the vectorizer.
        let (a, b) = (*x, *y);
        *x = std::array::from_fn(|t| a[t] - f * b[t]);
    }
}

/// A stack array on a cache-line boundary, so that no vector access straddles two lines.
#[repr(C, align(64))]
struct Aligned([f64; 2 * MAX_FAST]);

/// The sub-slice of `buf` of length `len` that starts on a 64-byte boundary (`buf` must have 7 spare elements).
pub(super) fn aligned_mut(buf: &mut [f64], len: usize) -> &mut [f64] {
    let off = buf.as_ptr().align_offset(64).min(7);
    &mut buf[off..off + len]
}

/// Rows up to this width keep the pivot row on the stack.
const MAX_FAST: usize = 256;

/// Adds `eps` to every entry of the d×d matrix `a` (rows [`padded`]`(d)` apart, the padding left alone); the
/// smallest entry afterwards and whether all are finite, compiled wide.
pub(super) fn shift_and_min(a: &mut [f64], d: usize, eps: f64) -> (f64, bool) {
    simd_body(ShiftMin { a, d, eps })
}

struct ShiftMin<'a> {
    a: &'a mut [f64],
    d: usize,
    eps: f64,
}

impl SimdBody for ShiftMin<'_> {
    type Out = (f64, bool);
    #[inline(always)]
    fn run(self) -> (f64, bool) {
        // Eight running minima, so that the loop vectorizes (one running minimum is a serial chain).
        let (mut lanes, mut finite) = ([f64::INFINITY; 8], true);
        for row in self.a.chunks_exact_mut(padded(self.d)) {
            let (body, tail) = row[..self.d].as_chunks_mut::<8>();
            for v in body {
                for (m, v) in lanes.iter_mut().zip(v.iter_mut()) {
                    *v += self.eps;
                    *m = if *v < *m { *v } else { *m };
                    finite &= v.is_finite();
                }
            }
            for (m, v) in lanes.iter_mut().zip(tail) {
                *v += self.eps;
                *m = if *v < *m { *v } else { *m };
                finite &= v.is_finite();
            }
        }
        (lanes.iter().copied().fold(f64::INFINITY, f64::min), finite)
    }
}

/// out[i][j] = 0 − w[j][i]² for the d×d row-major `w`, into `out` with rows `ld` apart (the padding left alone),
/// by 8×8 tiles: eight rows of `w` read a vector at a time, written as eight rows of `out`, compiled wide.
pub(super) fn negated_squares_transposed(w: &[f64], d: usize, out: &mut [f64], ld: usize) {
    simd_body(NegSqT { w, d, out, ld })
}

struct NegSqT<'a> {
    w: &'a [f64],
    d: usize,
    out: &'a mut [f64],
    ld: usize,
}

impl SimdBody for NegSqT<'_> {
    type Out = ();
    #[inline(always)]
    fn run(self) {
        let (w, d, ld) = (self.w, self.d, self.ld);
        for ib in (0..d).step_by(8) {
            let ni = (d - ib).min(8);
            for jb in (0..d).step_by(8) {
                let nj = (d - jb).min(8);
                if ni == 8 && nj == 8 {
                    let tile: [[f64; 8]; 8] = std::array::from_fn(|r| {
                        w[(jb + r) * d + ib..][..8].try_into().expect("8 entries")
                    });
                    for c in 0..8 {
                        let col: [f64; 8] = std::array::from_fn(|r| 0.0 - tile[r][c] * tile[r][c]);
                        self.out[(ib + c) * ld + jb..][..8].copy_from_slice(&col);
                    }
                } else {
                    for c in 0..ni {
                        for r in 0..nj {
                            let v = w[(jb + r) * d + ib + c];
                            self.out[(ib + c) * ld + jb + r] = 0.0 - v * v;
                        }
                    }
                }
            }
        }
    }
}

/// out = a·b for row-major d×d matrices (faer's gemm, one thread).
pub(super) fn matmul_into(out: &mut [f64], a: &[f64], b: &[f64], d: usize) {
    matmul(
        MatMut::from_row_major_slice_mut(out, d, d),
        Accum::Replace,
        MatRef::from_row_major_slice(a, d, d),
        MatRef::from_row_major_slice(b, d, d),
        1.0,
        Par::Seq,
    );
}

/// log|det a| of a row-major d×d matrix (faer's LU; `-inf` when singular).
pub(super) fn log_abs_det(a: &[f64], d: usize) -> f64 {
    MatRef::from_row_major_slice(a, d, d)
        .determinant()
        .abs()
        .ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use faer::linalg::solvers::DenseSolveCore;
    use faer::Mat;

    #[test]
    fn gauss_jordan_matches_faer_and_detects_singular_matrices() {
        // Well and badly conditioned, with and without pivoting (a zero leading entry forces a swap).
        for (d, seed) in [(1, 0u64), (2, 1), (7, 2), (20, 3), (53, 4), (70, 5)] {
            let mut rng = crate::rng::rng_for(seed, crate::rng::Stream::Probe, 0);
            let m = Mat::<f64>::from_fn(d, d, |i, j| {
                let z = crate::rng::normal(&mut rng);
                if i == j && d > 1 && i == 0 {
                    0.0
                } else {
                    z + if i == j { 0.5 } else { 0.0 }
                }
            });
            let want = m.partial_piv_lu().inverse();
            let ld = padded(d);
            let mut a: Vec<f64> = (0..d * ld)
                .map(|k| if k % ld < d { m[(k / ld, k % ld)] } else { 0.0 })
                .collect();
            assert!(invert_in_place(&mut a, d, &mut Vec::new()));
            assert!((0..d * ld).all(|k| k % ld < d || a[k] == 0.0));
            let a: Vec<f64> = (0..d * d).map(|k| a[(k / d) * ld + k % d]).collect();
            let scale = (0..d * d)
                .map(|k| want[(k / d, k % d)].abs())
                .fold(0.0, f64::max);
            for k in 0..d * d {
                let (i, j) = (k / d, k % d);
                assert!(
                    (a[k] - want[(i, j)]).abs() <= 1e-10 * scale,
                    "d={d} ({i},{j}): {} vs {}",
                    a[k],
                    want[(i, j)]
                );
            }
            let det = m.determinant().abs().ln();
            let flat: Vec<f64> = (0..d * d).map(|k| m[(k / d, k % d)]).collect();
            assert!((log_abs_det(&flat, d) - det).abs() < 1e-10);
        }
        let pad = |m: [f64; 4]| {
            let mut a = vec![0.0; 16];
            a[..2].copy_from_slice(&m[..2]);
            a[8..10].copy_from_slice(&m[2..]);
            a
        };
        assert!(!invert_in_place(
            &mut pad([1.0, 2.0, 2.0, 4.0]),
            2,
            &mut Vec::new()
        ));
        let mut nan = pad([1.0, f64::NAN, 0.0, 1.0]);
        assert!(!invert_in_place(&mut nan, 2, &mut Vec::new()) || nan.iter().any(|v| v.is_nan()));
    }

    /// Plain Gauss–Jordan, one step at a time: the rounding the blocked elimination must reproduce.
    fn single_steps(a: &mut [f64], d: usize, ld: usize) {
        let mut pivots = vec![0; d];
        for k in 0..d {
            let p = (k..d).fold(k, |p, i| {
                if a[i * ld + k].abs() > a[p * ld + k].abs() {
                    i
                } else {
                    p
                }
            });
            swap_rows(a, ld, k, p);
            pivots[k] = p;
            let inv = 1.0 / a[k * ld + k];
            let u: Vec<f64> = a[k * ld..(k + 1) * ld].iter().map(|x| x * inv).collect();
            for (i, row) in a.chunks_exact_mut(ld).enumerate() {
                if i == k {
                    row.copy_from_slice(&u);
                    row[k] = inv;
                } else {
                    let f = row[k];
                    row.iter_mut().zip(&u).for_each(|(x, u)| *x -= f * u);
                    row[k] = -f * inv;
                }
            }
        }
        for k in (0..d).rev() {
            a.chunks_exact_mut(ld)
                .for_each(|row| row.swap(k, pivots[k]));
        }
    }

    /// Pairs of pivots give the bits of single steps, at every width (whole pairs, a last single step, rows of
    /// 1–16 vectors, and wider rows in segments).
    #[test]
    fn paired_elimination_rounds_like_single_steps() {
        for d in [1, 2, 3, 4, 5, 7, 9, 20, 50, 53, 70, 150] {
            let mut rng = crate::rng::rng_for(d as u64, crate::rng::Stream::Probe, 1);
            let ld = padded(d);
            let m: Vec<f64> = (0..d * ld)
                .map(|k| {
                    let (i, j) = (k / ld, k % ld);
                    if j >= d {
                        0.0
                    } else {
                        crate::rng::normal(&mut rng) + if i == j { 3.0 } else { 0.0 }
                    }
                })
                .collect();
            let (mut blocked, mut single) = (m.clone(), m);
            assert!(invert_in_place(&mut blocked, d, &mut Vec::new()));
            single_steps(&mut single, d, ld);
            let same = blocked
                .iter()
                .zip(&single)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "d = {d}");
        }
    }

    /// The interleaved search picks the row a single running maximum picks: the first of equal values, never a NaN
    /// after row k, and `None` for a zero or non-finite maximum.
    #[test]
    fn pivot_search_picks_the_first_largest_row() {
        let sequential = |k: usize, v: &[f64]| {
            let (mut p, mut best) = (k, v[k].abs());
            for (i, x) in v.iter().enumerate().skip(k + 1) {
                if x.abs() > best {
                    (p, best) = (i, x.abs());
                }
            }
            (best > 0.0 && best.is_finite()).then_some(p)
        };
        let mut rng = crate::rng::rng_for(3, crate::rng::Stream::Probe, 2);
        let choices = [0.0, 1.0, -1.0, 2.0, -2.0, f64::NAN, f64::INFINITY];
        for d in 1..=13 {
            for _ in 0..300 {
                // Mostly ties; sometimes a NaN or an infinity.
                let v: Vec<f64> = (0..d)
                    .map(|_| {
                        let r = rand::Rng::gen_range(&mut rng, 0..40usize);
                        choices[if r < 35 { r % 5 } else { 5 + r % 2 }]
                    })
                    .collect();
                for k in 0..d {
                    assert_eq!(
                        pivot_row(k, d, |i| v[i]),
                        sequential(k, &v),
                        "{v:?}, k = {k}"
                    );
                }
            }
        }
    }

    /// The tiled build is the entrywise 0 − w[j][i]², whole tiles and edges alike, and leaves the padding alone.
    #[test]
    fn negated_squares_transposed_by_tiles() {
        for d in [1, 7, 8, 9, 16, 50] {
            let ld = padded(d);
            let w: Vec<f64> = (0..d * d).map(|k| (k as f64 * 0.37).sin()).collect();
            let mut out = vec![7.0; d * ld];
            negated_squares_transposed(&w, d, &mut out, ld);
            for i in 0..d {
                for j in 0..ld {
                    let want = if j < d {
                        0.0 - w[j * d + i] * w[j * d + i]
                    } else {
                        7.0
                    };
                    assert_eq!(
                        out[i * ld + j].to_bits(),
                        want.to_bits(),
                        "d = {d}, ({i}, {j})"
                    );
                }
            }
        }
    }

    #[test]
    fn matmul_into_is_the_row_major_product() {
        let d = 5;
        let a: Vec<f64> = (0..d * d).map(|k| (k as f64 * 0.3).sin()).collect();
        let b: Vec<f64> = (0..d * d).map(|k| (k as f64 * 0.7).cos()).collect();
        let mut out = vec![0.0; d * d];
        matmul_into(&mut out, &a, &b, d);
        for i in 0..d {
            for j in 0..d {
                let want: f64 = (0..d).map(|k| a[i * d + k] * b[k * d + j]).sum();
                assert!((out[i * d + j] - want).abs() < 1e-13);
            }
        }
    }
}
