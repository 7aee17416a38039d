//! Naive global Lipschitz bounds (the baseline of P02 and P14): the product of per-layer operator norms, sound in
//! f64.
//!
//! - l∞: a Linear layer's induced norm is its largest absolute row sum (exact); a Conv2d's is at most the largest
//!   absolute kernel sum of an output channel (exact when some output sees the whole kernel).
//! - l2: a Linear layer's spectral norm comes from its SVD. A zero-padded Conv2d is a row subset of the circular
//!   convolution on the padded grid, whose spectral norm is the largest singular value of the kernel's 2-D DFT over
//!   all frequencies (Sedghi et al.): that is the sound bound used, not the norm of the reshaped kernel. Power
//!   iteration on the true operator (conv, then its transpose) gives a lower estimate next to it, with its
//!   convergence, so the gap is visible.
//! - ReLU, MaxMin and Flatten are 1-Lipschitz in both norms.
//!
//! Rounding: every l2 bound is inflated by 64 machine epsilons relative.

use super::network::{conv2d, Layer, Network};
use crate::{Error, Result};
use faer::{c64, Mat};
use serde::Serialize;

/// The input (and output) norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Norm {
    #[serde(rename = "inf")]
    Inf,
    #[serde(rename = "2")]
    Two,
}

impl Norm {
    /// `inf` or `2`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "inf" | "linf" => Ok(Norm::Inf),
            "2" | "l2" => Ok(Norm::Two),
            other => Err(Error::invalid(format!("norm `{other}`: available: inf, 2"))),
        }
    }
}

/// One layer's contribution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerBound {
    pub layer: String,
    /// A sound upper bound of the layer's operator norm.
    pub bound: f64,
    /// For l2 convolutions: power iteration's estimate (a lower bound up to convergence), its iterations and final
    /// relative change.
    pub power_estimate: Option<f64>,
    pub power_iterations: Option<usize>,
    pub power_change: Option<f64>,
}

/// The naive bound: the product of the layer bounds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NaiveBound {
    pub norm: Norm,
    pub bound: f64,
    pub layers: Vec<LayerBound>,
}

const INFLATE: f64 = 1.0 + 64.0 * f64::EPSILON;

fn unit(layer: &Layer) -> LayerBound {
    LayerBound {
        layer: layer.name(),
        bound: 1.0,
        power_estimate: None,
        power_iterations: None,
        power_change: None,
    }
}

/// The largest singular value of a real matrix (rows × cols, row-major).
pub fn spectral_norm(w: &[f64], rows: usize, cols: usize) -> Result<f64> {
    let m = Mat::<f64>::from_fn(rows, cols, |i, j| w[i * cols + j]);
    let s = m
        .singular_values()
        .map_err(|e| Error::invalid(format!("SVD failed: {e:?}")))?;
    Ok(s.iter().copied().fold(0.0, f64::max) * INFLATE)
}

/// The sound l2 bound of a Conv2d layer: max over the DFT frequencies of the padded grid of σ_max(K̂(ω)).
pub fn conv_spectral_bound(layer: &Layer) -> Result<f64> {
    let Layer::Conv2d {
        w,
        shape: [co, ci, kh, kw],
        padding,
        input: [_, h, wd],
        ..
    } = layer
    else {
        return Err(Error::invalid("conv_spectral_bound needs a Conv2d layer"));
    };
    let (nh, nw) = (h + 2 * padding, wd + 2 * padding);
    let mut best: f64 = 0.0;
    for f1 in 0..nh {
        for f2 in 0..nw {
            let k = Mat::<c64>::from_fn(*co, *ci, |o, i| {
                let mut acc = c64::new(0.0, 0.0);
                for a in 0..*kh {
                    for b in 0..*kw {
                        let phase = -std::f64::consts::TAU
                            * ((a * f1) as f64 / nh as f64 + (b * f2) as f64 / nw as f64);
                        let v = w[((o * ci + i) * kh + a) * kw + b];
                        acc += c64::new(v * phase.cos(), v * phase.sin());
                    }
                }
                acc
            });
            let s = k
                .singular_values()
                .map_err(|e| Error::invalid(format!("SVD failed: {e:?}")))?;
            best = best.max(s.iter().copied().fold(0.0, f64::max));
        }
    }
    Ok(best * INFLATE)
}

/// Power iteration on AᵀA for a Conv2d layer's true linear operator: (estimate of σ_max, iterations, last relative
/// change).
pub fn conv_power_iteration(layer: &Layer, max_iters: usize, tol: f64) -> (f64, usize, f64) {
    let Layer::Conv2d { input, .. } = layer else {
        return (0.0, 0, 0.0);
    };
    let n: usize = input.iter().product();
    // A deterministic, non-symmetric start.
    let mut v: Vec<f64> = (0..n)
        .map(|i| 1.0 + ((i * 7919) % 97) as f64 / 97.0)
        .collect();
    let norm = |x: &[f64]| x.iter().map(|a| a * a).sum::<f64>().sqrt();
    let nv = norm(&v);
    v.iter_mut().for_each(|a| *a /= nv);
    let (mut est, mut change, mut it) = (0.0, f64::INFINITY, 0);
    while it < max_iters {
        it += 1;
        let av = conv2d(layer, &v, false);
        let new = norm(&av);
        let mut atav = conv2d(layer, &av, true);
        let na = norm(&atav);
        if na == 0.0 {
            return (0.0, it, 0.0);
        }
        atav.iter_mut().for_each(|a| *a /= na);
        v = atav;
        change = ((new - est) / new.max(f64::MIN_POSITIVE)).abs();
        est = new;
        if change < tol {
            break;
        }
    }
    (est, it, change)
}

/// The naive bound of `net` in `norm`.
pub fn naive_bound(net: &Network, norm: Norm) -> Result<NaiveBound> {
    let mut layers = Vec::with_capacity(net.layers.len());
    for l in &net.layers {
        let lb = match (l, norm) {
            (Layer::Linear { w, out, inp, .. }, Norm::Inf) => LayerBound {
                bound: (0..*out)
                    .map(|r| {
                        w[r * inp..(r + 1) * inp]
                            .iter()
                            .map(|v| v.abs())
                            .sum::<f64>()
                    })
                    .fold(0.0, f64::max),
                ..unit(l)
            },
            (Layer::Linear { w, out, inp, .. }, Norm::Two) => LayerBound {
                bound: spectral_norm(w, *out, *inp)?,
                ..unit(l)
            },
            (
                Layer::Conv2d {
                    w,
                    shape: [co, ci, kh, kw],
                    ..
                },
                Norm::Inf,
            ) => {
                let per = ci * kh * kw;
                LayerBound {
                    bound: (0..*co)
                        .map(|o| {
                            w[o * per..(o + 1) * per]
                                .iter()
                                .map(|v| v.abs())
                                .sum::<f64>()
                        })
                        .fold(0.0, f64::max),
                    ..unit(l)
                }
            }
            (Layer::Conv2d { .. }, Norm::Two) => {
                let (est, its, change) = conv_power_iteration(l, 500, 1e-10);
                LayerBound {
                    bound: conv_spectral_bound(l)?,
                    power_estimate: Some(est),
                    power_iterations: Some(its),
                    power_change: Some(change),
                    ..unit(l)
                }
            }
            _ => unit(l),
        };
        layers.push(lb);
    }
    Ok(NaiveBound {
        norm,
        bound: layers.iter().map(|l| l.bound).product(),
        layers,
    })
}
