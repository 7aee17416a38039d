//! AdaGrad (Duchi, Hazan & Singer 2011) as `torch.optim.Adagrad`: coupled weight decay, learning-rate decay
//! `lr / (1 + (t-1) lr_decay)`, and an accumulator that starts at `initial_accumulator_value`.

use super::hyper::hyperparams;
use super::kernel::{Kernel, Real};
use super::FusedStep;
use crate::nn::Param;

hyperparams! {
    /// `torch.optim.Adagrad`'s hyperparameters and defaults.
    pub struct AdagradConfig {
        /// Learning rate.
        lr: f64 = 1e-2, NonNegative;
        /// Learning-rate decay: lr / (1 + (t-1)·lr_decay).
        lr_decay: f64 = 0.0, NonNegative;
        /// Coupled L2 weight decay.
        weight_decay: f64 = 0.0, NonNegative;
        /// Starting value of the accumulator.
        initial_accumulator_value: f64 = 0.0, NonNegative;
        /// Added to the root of the accumulator.
        eps: f64 = 1e-10, NonNegative;
    }
}

fused_optimizer! {
    /// `torch.optim.Adagrad`.
    pub struct Adagrad("adagrad", AdagradConfig, defaults = AdagradConfig::default());
}

pub(crate) struct AdagradKernel {
    clr: f64,
    weight_decay: f64,
    init: f64,
    eps: f64,
    first: bool,
}

impl Kernel for AdagradKernel {
    #[inline(always)]
    fn run<T: Real>(&self, p: &mut [T], g: &[T], s: &mut [&mut [T]]) {
        let (clr, wd, init, eps) = (
            T::of(self.clr),
            T::of(self.weight_decay),
            T::of(self.init),
            T::of(self.eps),
        );
        let n = p.len();
        let (g, sum) = (&g[..n], &mut s[0][..n]);
        for i in 0..n {
            let mut d = g[i];
            if self.weight_decay != 0.0 {
                d = d + wd * p[i];
            }
            let prev = if self.first { init } else { sum[i] };
            sum[i] = prev + d * d;
            p[i] = p[i] - clr * (d / (sum[i].sqrt() + eps));
        }
    }
}

impl FusedStep for Adagrad {
    type Config = AdagradConfig;
    type Kernel = AdagradKernel;
    const BUFFERS: &'static [&'static str] = &["sum"];
    fn kernel(_: &Param, h: &AdagradConfig, first: bool, t: u64) -> AdagradKernel {
        AdagradKernel {
            clr: h.lr / (1.0 + (t - 1) as f64 * h.lr_decay),
            weight_decay: h.weight_decay,
            init: h.initial_accumulator_value,
            eps: h.eps,
            first,
        }
    }
}
