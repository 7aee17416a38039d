//! RMSprop (Tieleman & Hinton 2012) as `torch.optim.RMSprop`: coupled weight decay, optional centering by the
//! running mean gradient, and optional momentum on the normalised step.

use super::hyper::hyperparams;
use super::kernel::{Kernel, Real};
use super::FusedStep;
use crate::nn::Param;

hyperparams! {
    /// `torch.optim.RMSprop`'s hyperparameters and defaults.
    pub struct RmsPropConfig {
        /// Learning rate.
        lr: f64 = 1e-2, NonNegative;
        /// Decay of the squared-gradient average.
        alpha: f64 = 0.99, Unit;
        /// Added to the root of the average.
        eps: f64 = 1e-8, NonNegative;
        /// Coupled L2 weight decay.
        weight_decay: f64 = 0.0, NonNegative;
        /// Momentum on the normalised step.
        momentum: f64 = 0.0, NonNegative;
        /// Center by the running mean gradient.
        centered: bool = false, Bool;
    }
}

fused_optimizer! {
    /// `torch.optim.RMSprop`.
    pub struct RmsProp("rmsprop", RmsPropConfig, defaults = RmsPropConfig::default());
}

pub(crate) struct RmsPropKernel {
    lr: f64,
    alpha: f64,
    eps: f64,
    weight_decay: f64,
    momentum: f64,
    centered: bool,
}

impl Kernel for RmsPropKernel {
    #[inline(always)]
    fn run<T: Real>(&self, p: &mut [T], g: &[T], s: &mut [&mut [T]]) {
        let (lr, alpha, w, eps) = (
            T::of(self.lr),
            T::of(self.alpha),
            T::of(1.0 - self.alpha),
            T::of(self.eps),
        );
        let (wd, mu) = (T::of(self.weight_decay), T::of(self.momentum));
        let [sq, buf, ga] = s else {
            unreachable!("rmsprop has three buffers")
        };
        let n = p.len();
        let (g, sq, buf, ga) = (&g[..n], &mut sq[..n], &mut buf[..n], &mut ga[..n]);
        for i in 0..n {
            let mut d = g[i];
            if self.weight_decay != 0.0 {
                d = d + wd * p[i];
            }
            sq[i] = sq[i] * alpha + w * d * d;
            let avg = if self.centered {
                ga[i] = ga[i] + w * (d - ga[i]);
                (sq[i] - ga[i] * ga[i]).sqrt() + eps
            } else {
                sq[i].sqrt() + eps
            };
            if self.momentum > 0.0 {
                buf[i] = buf[i] * mu + d / avg;
                p[i] = p[i] - lr * buf[i];
            } else {
                p[i] = p[i] - lr * (d / avg);
            }
        }
    }
}

impl FusedStep for RmsProp {
    type Config = RmsPropConfig;
    type Kernel = RmsPropKernel;
    const BUFFERS: &'static [&'static str] = &["square_avg", "momentum_buffer", "grad_avg"];
    fn kernel(_: &Param, h: &RmsPropConfig, _: bool, _: u64) -> RmsPropKernel {
        RmsPropKernel {
            lr: h.lr,
            alpha: h.alpha,
            eps: h.eps,
            weight_decay: h.weight_decay,
            momentum: h.momentum,
            centered: h.centered,
        }
    }
}
