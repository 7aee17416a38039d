//! Lion (P41, "Lion Secretly Solves Constrained Optimization: As Lyapunov Predicts"; the optimizer of Chen et
//! al. 2023), following google/automl `lion/lion_pytorch.py`, generalised to Lion-κ.
//!
//! Per step, with decoupled weight decay λ and the interpolation c = β1·m + (1-β1)·g:
//! x ← x·(1 - lr·λ) - lr·∇K(c);  m ← β2·m + (1-β2)·g.
//! K = ‖·‖₁ (∇K = sign, `mode=hard`) is Lion; with λ > 0 the iterates enter and stay in the box
//! ‖x‖∞ ≤ 1/λ (P41's constrained-optimization view). Other K give other constraints:
//! - `mode=smooth`: ∇K(c) = tanh(sharpness·c) (K a smoothed ℓ1, as optax's smooth Lion);
//! - `mode=refined`: ∇K(c) = c where |c| < 1, sign(c) elsewhere (a Huber K);
//! - `mode=l2`: K = ‖·‖₂ per tensor, ∇K(c) = c/‖c‖₂ (constraint ‖λx‖₂ ≤ 1);
//! - `mode=lp`: K = ‖·‖_p per tensor, ∇K(c) = sign(c)|c|^(p-1)/‖c‖_p^(p-1).
//!
//! Defaults follow the official code: lr=1e-4, beta1=0.9, beta2=0.99, weight_decay=0 (optax's alias uses
//! weight_decay=1e-3). sign(0) = 0.

use super::hyper::hyperparams;
use super::kernel::{sign, Kernel, Real};
use super::FusedStep;
use crate::nn::Param;
use crate::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// The convex function K whose gradient shapes the update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LionMode {
    Hard,
    Smooth,
    Refined,
    L2,
    Lp,
}

impl FromStr for LionMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "hard" => LionMode::Hard,
            "smooth" => LionMode::Smooth,
            "refined" => LionMode::Refined,
            "l2" => LionMode::L2,
            "lp" => LionMode::Lp,
            other => {
                return Err(Error::invalid(format!(
                    "lion: mode={other} is unknown; use hard, smooth, refined, l2 or lp"
                )))
            }
        })
    }
}

impl fmt::Display for LionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LionMode::Hard => "hard",
            LionMode::Smooth => "smooth",
            LionMode::Refined => "refined",
            LionMode::L2 => "l2",
            LionMode::Lp => "lp",
        })
    }
}

hyperparams! {
    /// Lion-κ's hyperparameters and the official code's defaults.
    pub struct LionConfig {
        /// Learning rate.
        lr: f64 = 1e-4, NonNegative;
        /// Interpolation between momentum and gradient in the update.
        beta1: f64 = 0.9, Beta;
        /// Momentum decay.
        beta2: f64 = 0.99, Beta;
        /// Decoupled weight decay λ (the constraint ‖x‖∞ ≤ 1/λ).
        weight_decay: f64 = 0.0, NonNegative;
        /// Sharpness of tanh in `mode=smooth`.
        sharpness: f64 = 10.0, Positive;
        /// The norm's power in `mode=lp`.
        p: f64 = 3.0, Positive;
    }
    options {
        /// K: `hard` (Lion), `smooth`, `refined`, `l2` or `lp`.
        mode: LionMode = LionMode::Hard;
    }
    relations = lion_relations;
}

fn lion_relations(c: &LionConfig, _owner: &str) -> Result<()> {
    if c.mode == LionMode::Lp && c.p <= 1.0 {
        return Err(Error::invalid("lion: mode=lp needs p > 1"));
    }
    Ok(())
}

fused_optimizer! {
    /// Lion / Lion-κ.
    pub struct Lion("lion", LionConfig, defaults = LionConfig::default());
}

pub(crate) struct LionKernel {
    lr: f64,
    beta1: f64,
    beta2: f64,
    weight_decay: f64,
    sharpness: f64,
    p: f64,
    mode: LionMode,
}

impl LionKernel {
    #[inline(always)]
    fn interp<T: Real>(&self, m: T, g: T) -> T {
        m * T::of(self.beta1) + g * T::of(1.0 - self.beta1)
    }
}

impl Kernel for LionKernel {
    fn whole(&self) -> bool {
        matches!(self.mode, LionMode::L2 | LionMode::Lp)
    }

    #[inline(always)]
    fn run<T: Real>(&self, x: &mut [T], g: &[T], s: &mut [&mut [T]]) {
        let n = x.len();
        let (g, m) = (&g[..n], &mut s[0][..n]);
        let (lr, b2, w2) = (T::of(self.lr), T::of(self.beta2), T::of(1.0 - self.beta2));
        let decay = T::of(1.0 - self.lr * self.weight_decay);
        // Per-tensor normaliser of ∇K for the norm modes (one extra read pass).
        let (scale, power) = match self.mode {
            LionMode::L2 => {
                let n2: f64 = m
                    .iter()
                    .zip(g)
                    .map(|(&mi, &gi)| self.interp(mi, gi).to_f64().unwrap().powi(2))
                    .sum();
                (if n2 > 0.0 { 1.0 / n2.sqrt() } else { 0.0 }, 1.0)
            }
            LionMode::Lp => {
                let np: f64 = m
                    .iter()
                    .zip(g)
                    .map(|(&mi, &gi)| self.interp(mi, gi).to_f64().unwrap().abs().powf(self.p))
                    .sum();
                let norm = np.powf(1.0 / self.p);
                (
                    if norm > 0.0 {
                        norm.powf(1.0 - self.p)
                    } else {
                        0.0
                    },
                    self.p - 1.0,
                )
            }
            _ => (1.0, 1.0),
        };
        let (scale_t, k, pw) = (T::of(scale), T::of(self.sharpness), T::of(power));
        let c = LionConsts {
            lr,
            b1: T::of(self.beta1),
            w1: T::of(1.0 - self.beta1),
            b2,
            w2,
            decay,
            decays: self.weight_decay != 0.0,
        };
        // One loop per mode, so each vectorizes with only its own direction function inside.
        match self.mode {
            LionMode::Hard => lion_loop(&c, x, g, m, sign),
            LionMode::Smooth => lion_loop(&c, x, g, m, |v: T| (k * v).tanh()),
            LionMode::Refined => {
                lion_loop(
                    &c,
                    x,
                    g,
                    m,
                    |v: T| if v.abs() < T::one() { v } else { sign(v) },
                )
            }
            LionMode::L2 => lion_loop(&c, x, g, m, |v: T| v * scale_t),
            LionMode::Lp => lion_loop(&c, x, g, m, |v: T| sign(v) * v.abs().powf(pw) * scale_t),
        }
    }
}

struct LionConsts<T> {
    lr: T,
    b1: T,
    w1: T,
    b2: T,
    w2: T,
    decay: T,
    decays: bool,
}

/// x ← x·decay - lr·dir(β1·m + (1-β1)·g);  m ← β2·m + (1-β2)·g.
#[inline(always)]
fn lion_loop<T: Real>(c: &LionConsts<T>, x: &mut [T], g: &[T], m: &mut [T], dir: impl Fn(T) -> T) {
    let n = x.len();
    let (g, m) = (&g[..n], &mut m[..n]);
    for i in 0..n {
        let mut xi = x[i];
        if c.decays {
            xi = xi * c.decay;
        }
        let update = m[i] * c.b1 + g[i] * c.w1;
        x[i] = xi - c.lr * dir(update);
        m[i] = m[i] * c.b2 + g[i] * c.w2;
    }
}

impl FusedStep for Lion {
    type Config = LionConfig;
    type Kernel = LionKernel;
    const BUFFERS: &'static [&'static str] = &["exp_avg"];
    fn kernel(_: &Param, h: &LionConfig, _: bool, _: u64) -> LionKernel {
        LionKernel {
            lr: h.lr,
            beta1: h.beta1,
            beta2: h.beta2,
            weight_decay: h.weight_decay,
            sharpness: h.sharpness,
            p: h.p,
            mode: h.mode,
        }
    }
}
