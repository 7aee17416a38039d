//! Kernels compiled for the widest vector unit the CPU has, chosen at run time: the project builds for baseline
//! x86-64 (SSE2), so a loop that should run 8 or 16 lanes wide goes through [`simd_body`] or [`simd`].

/// Runs `f` compiled for AVX-512 (16 f32 lanes) or AVX2+FMA (8 lanes) when the CPU has them, so the f32 loops
/// it inlines vectorize that wide; otherwise as built.
#[inline(always)]
pub(crate) fn simd<R>(f: impl FnOnce() -> R) -> R {
    simd_body(Call(f))
}

/// A kernel body for [`simd_body`]. Its `#[inline(always)]` `run` is compiled into the wide entry point whole; a
/// closure as large is not inlined there, and its `mul_add`s would become library calls.
pub(crate) trait SimdBody {
    type Out;
    fn run(self) -> Self::Out;
}

/// A closure as a [`SimdBody`] (what [`simd`] runs).
struct Call<F>(F);

impl<R, F: FnOnce() -> R> SimdBody for Call<F> {
    type Out = R;
    #[inline(always)]
    fn run(self) -> R {
        (self.0)()
    }
}

/// Runs `b` compiled for AVX-512 or AVX2+FMA when the CPU has them; otherwise as built.
#[inline(always)]
pub(crate) fn simd_body<B: SimdBody>(b: B) -> B::Out {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the feature was detected at run time (it implies AVX2 and FMA).
            return unsafe { simd_avx512(b) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the features were detected at run time.
            return unsafe { simd_avx2(b) };
        }
    }
    b.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn simd_avx512<B: SimdBody>(b: B) -> B::Out {
    b.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn simd_avx2<B: SimdBody>(b: B) -> B::Out {
    b.run()
}

/// Σᵢ g(xᵢ), compiled wide: eight partial sums (one f64 vector register's worth under AVX-512), so that `g` runs
/// on a vector of elements at a time, then the partial sums and the tail (padded to a vector) in order. `g`
/// should be small and `#[inline(always)]` all through.
#[inline(always)]
pub(crate) fn sum_wide(x: &[f64], g: impl Fn(f64) -> f64) -> f64 {
    simd_body(SumWide { x, g })
}

struct SumWide<'a, G> {
    x: &'a [f64],
    g: G,
}

impl<G: Fn(f64) -> f64> SimdBody for SumWide<'_, G> {
    type Out = f64;
    #[inline(always)]
    fn run(self) -> f64 {
        const LANES: usize = 8;
        let mut acc = [0.0; LANES];
        let mut blocks = self.x.chunks_exact(LANES);
        for b in &mut blocks {
            for (a, &v) in acc.iter_mut().zip(b) {
                *a += (self.g)(v);
            }
        }
        // The tail as one more (padded) vector: a serial g would cost as much as several vectors.
        let rem = blocks.remainder();
        let mut tail = [0.0; LANES];
        for (k, t) in tail.iter_mut().enumerate() {
            *t = (self.g)(rem.get(k).copied().unwrap_or(0.0));
        }
        acc.iter().sum::<f64>() + tail[..rem.len()].iter().sum::<f64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_wide_is_the_same_on_every_path() {
        // The wide build (AVX-512 or AVX2 here) and the baseline body give the same bits: no FMA contraction, the
        // same order of additions; every length exercises the padded tail.
        let g = |v: f64| v * v - 3.0 * (v * 0.7).sin();
        for n in 0..40 {
            let x: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin() * 5.0).collect();
            let wide = sum_wide(&x, g);
            let base = SumWide { x: &x, g }.run();
            assert_eq!(wide.to_bits(), base.to_bits(), "n = {n}");
            let serial: f64 = x.iter().map(|&v| g(v)).sum();
            assert!(
                (wide - serial).abs() <= 1e-12 * serial.abs().max(1.0),
                "n = {n}"
            );
        }
    }
}
