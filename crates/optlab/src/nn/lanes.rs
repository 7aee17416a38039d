//! Reductions over a slice with one partial result per lane, so that the loops vectorize (a single running sum or
//! maximum is a chain the compiler must keep in order). The order of the additions differs from a left-to-right
//! sum; the result of a maximum does not.

use num_traits::Float;

/// Lanes per partial result: one AVX-512 register of f32.
const LANES: usize = 16;

/// Σ f(x) over `x`.
#[inline(always)]
pub(crate) fn sum_by<T: Float>(x: &[T], f: impl Fn(T) -> T) -> T {
    let mut acc = [T::zero(); LANES];
    let blocks = x.chunks_exact(LANES);
    let tail = blocks.remainder().iter().fold(T::zero(), |a, &v| a + f(v));
    for block in blocks {
        for (a, &v) in acc.iter_mut().zip(block) {
            *a = *a + f(v);
        }
    }
    acc.iter().fold(tail, |a, &v| a + v)
}

/// Σ x.
#[inline(always)]
pub(crate) fn sum<T: Float>(x: &[T]) -> T {
    sum_by(x, |v| v)
}

/// The largest value of `x`, skipping NaNs as `Float::max` does (−∞ for an empty or all-NaN slice).
#[inline(always)]
pub(crate) fn max<T: Float>(x: &[T]) -> T {
    let mut acc = [T::neg_infinity(); LANES];
    let blocks = x.chunks_exact(LANES);
    let tail = blocks
        .remainder()
        .iter()
        .fold(T::neg_infinity(), |a, &v| a.max(v));
    for block in blocks {
        for (a, &v) in acc.iter_mut().zip(block) {
            *a = a.max(v);
        }
    }
    acc.iter().fold(tail, |a, &v| a.max(v))
}

/// ⟨a, b⟩ with one partial sum per lane.
#[inline(always)]
pub(crate) fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::zero(); LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: T = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .fold(T::zero(), |s, (&x, &y)| s + x * y);
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] = acc[l] + x[l] * y[l];
        }
    }
    acc.iter().fold(tail, |s, &v| s + v)
}

#[cfg(test)]
mod tests {
    #[test]
    fn match_the_sequential_reductions() {
        for n in [0usize, 1, 15, 16, 17, 62, 100] {
            let x: Vec<f64> = (0..n)
                .map(|i| ((i * 37 % 11) as f64 - 5.0) * 0.25)
                .collect();
            let want_sum: f64 = x.iter().sum();
            assert!((super::sum(&x) - want_sum).abs() < 1e-12, "{n}");
            let want_max = x.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v));
            assert_eq!(super::max(&x), want_max, "{n}");
            let want_sq: f64 = x.iter().map(|v| v * v).sum();
            assert!((super::sum_by(&x, |v| v * v) - want_sq).abs() < 1e-12);
        }
        assert_eq!(super::max(&[f32::NAN, 1.0, f32::NAN]), 1.0);
        assert_eq!(super::max::<f32>(&[]), f32::NEG_INFINITY);
    }
}
