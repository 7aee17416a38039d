//! Adam (Kingma & Ba) with coupled L2 weight decay, and AdamW (Loshchilov & Hutter) with decoupled weight
//! decay, exactly as `torch.optim.Adam` / `torch.optim.AdamW` (single-tensor path): eps is added after the
//! bias-corrected square root, and `amsgrad` keeps the running maximum of the second moment.

use super::hyper::hyperparams;
use super::kernel::{Kernel, Real};
use super::FusedStep;
use crate::nn::Param;

hyperparams! {
    /// `torch.optim.Adam`'s hyperparameters and defaults ([`AdamConfig::adamw`] for AdamW's).
    pub struct AdamConfig {
        /// Learning rate.
        lr: f64 = 1e-3, NonNegative;
        /// Decay of the first moment.
        beta1: f64 = 0.9, Beta;
        /// Decay of the second moment.
        beta2: f64 = 0.999, Beta;
        /// Added to the bias-corrected square root of the second moment.
        eps: f64 = 1e-8, NonNegative;
        /// Weight decay: coupled L2 in Adam, decoupled in AdamW.
        weight_decay: f64 = 0.0, NonNegative;
        /// Keep the running maximum of the second moment.
        amsgrad: bool = false, Bool;
    }
}

impl AdamConfig {
    /// `torch.optim.AdamW`'s defaults (weight_decay 0.01).
    pub fn adamw() -> Self {
        AdamConfig {
            weight_decay: 1e-2,
            ..AdamConfig::default()
        }
    }
}

fused_optimizer! {
    /// `torch.optim.Adam`: coupled L2 weight decay.
    pub struct Adam("adam", AdamConfig, defaults = AdamConfig::default());
}

fused_optimizer! {
    /// `torch.optim.AdamW`: decoupled weight decay (defaults [`AdamConfig::adamw`]).
    pub struct AdamW("adamw", AdamConfig, defaults = AdamConfig::adamw());
}

pub(crate) struct AdamKernel {
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    decoupled: bool,
    amsgrad: bool,
    step: u64,
}

/// The per-step scalars of Adam in the parameter's float type.
struct AdamConsts<T> {
    step_size: T,
    bc2_sqrt: T,
    w1: T,
    b2: T,
    w2: T,
    eps: T,
    wd: T,
    decay: T,
}

/// One Adam pass; the branches are compile-time constants so the loop vectorizes.
#[inline(always)]
fn adam_loop<T: Real, const DECOUPLED: bool, const COUPLED: bool, const AMSGRAD: bool>(
    c: &AdamConsts<T>,
    p: &mut [T],
    g: &[T],
    m: &mut [T],
    v: &mut [T],
    vmax: &mut [T],
) {
    let n = p.len();
    let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
    let vmax = if AMSGRAD {
        &mut vmax[..n]
    } else {
        &mut vmax[..0]
    };
    for i in 0..n {
        let mut gi = g[i];
        let mut pi = p[i];
        if DECOUPLED {
            pi = pi * c.decay;
        }
        if COUPLED {
            gi = gi + c.wd * pi;
        }
        let mi = m[i] + c.w1 * (gi - m[i]);
        let vi = v[i] * c.b2 + c.w2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        let second = if AMSGRAD {
            let mx = if vmax[i] >= vi { vmax[i] } else { vi };
            vmax[i] = mx;
            mx
        } else {
            vi
        };
        let denom = second.sqrt() / c.bc2_sqrt + c.eps;
        p[i] = pi - c.step_size * (mi / denom);
    }
}

impl Kernel for AdamKernel {
    #[inline(always)]
    fn run<T: Real>(&self, p: &mut [T], g: &[T], s: &mut [&mut [T]]) {
        let c = AdamConsts {
            step_size: T::of(self.lr / (1.0 - self.beta1.powi(self.step as i32))),
            bc2_sqrt: T::of((1.0 - self.beta2.powi(self.step as i32)).sqrt()),
            w1: T::of(1.0 - self.beta1),
            b2: T::of(self.beta2),
            w2: T::of(1.0 - self.beta2),
            eps: T::of(self.eps),
            wd: T::of(self.weight_decay),
            decay: T::of(1.0 - self.lr * self.weight_decay),
        };
        let [m, v, vmax] = s else {
            unreachable!("adam has three buffers")
        };
        let wd = self.weight_decay != 0.0;
        match (wd && self.decoupled, wd && !self.decoupled, self.amsgrad) {
            (false, false, false) => adam_loop::<T, false, false, false>(&c, p, g, m, v, vmax),
            (false, false, true) => adam_loop::<T, false, false, true>(&c, p, g, m, v, vmax),
            (true, _, false) => adam_loop::<T, true, false, false>(&c, p, g, m, v, vmax),
            (true, _, true) => adam_loop::<T, true, false, true>(&c, p, g, m, v, vmax),
            (false, true, false) => adam_loop::<T, false, true, false>(&c, p, g, m, v, vmax),
            (false, true, true) => adam_loop::<T, false, true, true>(&c, p, g, m, v, vmax),
        }
    }
}

const BUFFERS: &[&str] = &["exp_avg", "exp_avg_sq", "max_exp_avg_sq"];

fn adam_kernel(h: &AdamConfig, decoupled: bool, step: u64) -> AdamKernel {
    AdamKernel {
        lr: h.lr,
        beta1: h.beta1,
        beta2: h.beta2,
        eps: h.eps,
        weight_decay: h.weight_decay,
        decoupled,
        amsgrad: h.amsgrad,
        step,
    }
}

impl FusedStep for Adam {
    type Config = AdamConfig;
    type Kernel = AdamKernel;
    const BUFFERS: &'static [&'static str] = BUFFERS;
    fn kernel(_: &Param, h: &AdamConfig, _: bool, step: u64) -> AdamKernel {
        adam_kernel(h, false, step)
    }
}

impl FusedStep for AdamW {
    type Config = AdamConfig;
    type Kernel = AdamKernel;
    const BUFFERS: &'static [&'static str] = BUFFERS;
    fn kernel(_: &Param, h: &AdamConfig, _: bool, step: u64) -> AdamKernel {
        adam_kernel(h, true, step)
    }
}
