//! The R-operator's fused steps (`curvature::rop_transformer`), each one pass of [`apply`]: the exact GELU
//! and LayerNorm carried with their R-derivatives (directional derivatives along a parameter direction) forward and back. The formulas are those
//! of the composed code they replace, quoted at each kernel; the curvature tests check them against double
//! backward in f64 to 1e-10.

use super::rows::{apply, RowsKernel};
use super::{as_f32, as_f32_mut, cdf_and_gauss_f32, moments, normal_cdf, normal_pdf};
use crate::Result;
use candle_core::Tensor;
use num_traits::Float;

fn c<T: Float>(v: f64) -> T {
    T::from(v).unwrap_or_else(T::nan)
}

fn mean<T: Float>(v: impl Iterator<Item = T>, n: usize) -> T {
    v.fold(T::zero(), |a, b| a + b) / c(n as f64)
}

// ------------------------------------------------------------------------------------------------- GELU

/// σ(u) = u Φ(u) with σ′ = Φ + u φ and σ″ = φ (2 − u²): from (u, R(u)), the outputs (σ(u), σ′ R(u), σ′, σ″).
struct GeluR;

impl RowsKernel<2, 0, 4> for GeluR {
    fn widths(&self, [n, _]: [usize; 2]) -> [usize; 4] {
        [n; 4]
    }

    #[inline(always)]
    fn row<T: Float>(&self, _: usize, [u, ru]: [&[T]; 2], _: [&[T]; 0], out: [&mut [T]; 4]) {
        let [y, ry, d1, d2] = out;
        if let (Some(u), Some(y), Some(d1), Some(d2)) =
            (as_f32(u), as_f32_mut(y), as_f32_mut(d1), as_f32_mut(d2))
        {
            let k = 0.5 * std::f32::consts::FRAC_2_SQRT_PI * std::f32::consts::FRAC_1_SQRT_2;
            for (((&u, y), d1), d2) in u.iter().zip(y).zip(d1.iter_mut()).zip(d2) {
                let (cdf, gauss) = cdf_and_gauss_f32(u);
                let pdf = k * gauss;
                *y = u * cdf;
                *d1 = cdf + u * pdf;
                *d2 = pdf * (2.0 - u * u);
            }
        } else {
            for (((&u, y), d1), d2) in u.iter().zip(y.iter_mut()).zip(d1.iter_mut()).zip(d2) {
                let (cdf, pdf) = (normal_cdf(u), normal_pdf(u));
                *y = u * cdf;
                *d1 = cdf + u * pdf;
                *d2 = pdf * (c::<T>(2.0) - u * u);
            }
        }
        for ((ry, &r), &d) in ry.iter_mut().zip(ru).zip(d1.iter()) {
            *ry = r * d;
        }
    }
}

/// GELU's backward under R: from (g, R(g)) at its output, σ′, σ″ and R(u), the input's g σ′ and
/// R(g) σ′ + g σ″ R(u).
struct GeluRGrad;

impl RowsKernel<5, 0, 2> for GeluRGrad {
    fn widths(&self, [n, ..]: [usize; 5]) -> [usize; 2] {
        [n; 2]
    }

    #[inline(always)]
    fn row<T: Float>(&self, _: usize, x: [&[T]; 5], _: [&[T]; 0], [gu, rgu]: [&mut [T]; 2]) {
        let [g, rg, d1, d2, ru] = x;
        for i in 0..g.len() {
            gu[i] = g[i] * d1[i];
            rgu[i] = rg[i] * d1[i] + g[i] * d2[i] * ru[i];
        }
    }
}

/// GELU's value under R and what its backward needs: `[σ(u), R(σ(u)), σ′(u), σ″(u)]`.
pub(crate) fn gelu_r(u: &Tensor, ru: &Tensor) -> Result<[Tensor; 4]> {
    apply(&GeluR, "gelu", [u, ru], [])
}

/// The input's `[g, R(g)]` of GELU from the output's, with `[σ′, σ″]` and R(u) from [`gelu_r`].
pub(crate) fn gelu_r_grad(
    g: &Tensor,
    rg: &Tensor,
    d: [&Tensor; 2],
    ru: &Tensor,
) -> Result<[Tensor; 2]> {
    apply(&GeluRGrad, "gelu", [g, rg, d[0], d[1], ru], [])
}

// -------------------------------------------------------------------------------------------- LayerNorm

/// LayerNorm per row under R: with xc = x − mean(x), s = (mean(xc²) + ε)^(−1/2), x̂ = s xc, k = s mean(x̂ R(xc)),
/// R(x̂) = s R(xc) − k x̂; y = γ x̂ + β, R(y) = γ R(x̂) + V_γ x̂ + V_β. Outputs (y, R(y), x̂, R(x̂), [s, k]).
struct LayerNormR;

impl RowsKernel<2, 4, 5> for LayerNormR {
    fn widths(&self, [n, _]: [usize; 2]) -> [usize; 5] {
        [n, n, n, n, 2]
    }

    #[inline(always)]
    fn row<T: Float>(&self, _: usize, [x, rx]: [&[T]; 2], p: [&[T]; 4], out: [&mut [T]; 5]) {
        let [gamma, beta, vg, vb] = p;
        let [y, ry, xhat, rxhat, sk] = out;
        let n = x.len();
        let (mu, s) = moments(x);
        let rmu = mean(rx.iter().copied(), n);
        for (h, &v) in xhat.iter_mut().zip(x) {
            *h = (v - mu) * s;
        }
        let k = s * mean(xhat.iter().zip(rx).map(|(&h, &r)| h * (r - rmu)), n);
        for i in 0..n {
            rxhat[i] = s * (rx[i] - rmu) - k * xhat[i];
            y[i] = gamma[i] * xhat[i] + beta[i];
            ry[i] = gamma[i] * rxhat[i] + vg[i] * xhat[i] + vb[i];
        }
        sk[0] = s;
        sk[1] = k;
    }
}

/// LayerNorm's backward under R, from (g, R(g)) at its output: with gx̂ = γ g, R(gx̂) = γ R(g) + V_γ g,
/// gx = s (gx̂ − mean(gx̂) − x̂ mean(gx̂ x̂)) and R(gx) = −k gx + s (R(gx̂) − mean(R(gx̂)) − R(x̂) mean(gx̂ x̂)
/// − x̂ mean(R(gx̂) x̂ + gx̂ R(x̂))). Outputs (gx, R(gx), R(g) x̂ + g R(x̂)), the last summed into (H v)_γ.
struct LayerNormRGrad;

impl RowsKernel<5, 2, 3> for LayerNormRGrad {
    fn widths(&self, [n, ..]: [usize; 5]) -> [usize; 3] {
        [n; 3]
    }

    #[inline(always)]
    fn row<T: Float>(&self, _: usize, x: [&[T]; 5], [gamma, vg]: [&[T]; 2], out: [&mut [T]; 3]) {
        let [g, rg, xhat, rxhat, sk] = x;
        let [gx, rgx, hg] = out;
        let (n, s, k) = (g.len(), sk[0], sk[1]);
        // gx and rgx hold gx̂ and R(gx̂) until the row's means are known.
        for i in 0..n {
            gx[i] = gamma[i] * g[i];
            rgx[i] = gamma[i] * rg[i] + vg[i] * g[i];
            hg[i] = rg[i] * xhat[i] + g[i] * rxhat[i];
        }
        let m_g = mean(gx.iter().copied(), n);
        let m_gx = mean(gx.iter().zip(xhat).map(|(&a, &b)| a * b), n);
        let m_rg = mean(rgx.iter().copied(), n);
        let cross = mean((0..n).map(|i| rgx[i] * xhat[i] + gx[i] * rxhat[i]), n);
        for i in 0..n {
            let v = s * (gx[i] - m_g - xhat[i] * m_gx);
            rgx[i] = s * (rgx[i] - m_rg - rxhat[i] * m_gx - xhat[i] * cross) - k * v;
            gx[i] = v;
        }
    }
}

/// LayerNorm over the last axis under R: `[y, R(y), x̂, R(x̂), [s, k]]` from x, R(x), γ, β and the directions
/// V_γ, V_β.
pub(crate) fn layer_norm_r(x: &Tensor, rx: &Tensor, p: [&Tensor; 4]) -> Result<[Tensor; 5]> {
    apply(&LayerNormR, "layer norm", [x, rx], p)
}

/// LayerNorm's backward under R: `[g_x, R(g_x), R(g) x̂ + g R(x̂)]` from g, R(g) and what [`layer_norm_r`] kept,
/// with γ and V_γ.
pub(crate) fn layer_norm_r_grad(
    g: &Tensor,
    rg: &Tensor,
    saved: [&Tensor; 3],
    gamma: [&Tensor; 2],
) -> Result<[Tensor; 3]> {
    apply(
        &LayerNormRGrad,
        "layer norm",
        [g, rg, saved[0], saved[1], saved[2]],
        gamma,
    )
}
