//! Stochastic gradient descent with momentum, dampening, Nesterov momentum and coupled weight decay, exactly
//! as `torch.optim.SGD`: the momentum buffer starts as the first gradient (not zero), and Nesterov needs
//! momentum > 0 and dampening = 0.

use super::hyper::hyperparams;
use super::kernel::{Kernel, Real};
use super::FusedStep;
use crate::nn::Param;
use crate::{Error, Result};

hyperparams! {
    /// `torch.optim.SGD`'s hyperparameters and defaults.
    pub struct SgdConfig {
        /// Learning rate.
        lr: f64 = 1e-3, NonNegative;
        /// Momentum factor (0: none).
        momentum: f64 = 0.0, NonNegative;
        /// Dampening of the momentum.
        dampening: f64 = 0.0, Unit;
        /// Coupled L2 weight decay.
        weight_decay: f64 = 0.0, NonNegative;
        /// Nesterov momentum (needs momentum > 0 and dampening = 0).
        nesterov: bool = false, Bool;
    }
    relations = sgd_relations;
}

fn sgd_relations(c: &SgdConfig, owner: &str) -> Result<()> {
    if c.nesterov && (c.momentum <= 0.0 || c.dampening != 0.0) {
        return Err(Error::invalid(format!(
            "{owner}: nesterov=true needs momentum > 0 and dampening = 0"
        )));
    }
    Ok(())
}

fused_optimizer! {
    /// `torch.optim.SGD`.
    pub struct Sgd("sgd", SgdConfig, defaults = SgdConfig::default());
}

pub(crate) struct SgdKernel {
    lr: f64,
    momentum: f64,
    dampening: f64,
    weight_decay: f64,
    nesterov: bool,
    first: bool,
}

impl Kernel for SgdKernel {
    #[inline(always)]
    fn run<T: Real>(&self, p: &mut [T], g: &[T], s: &mut [&mut [T]]) {
        let (lr, mu, wd) = (
            T::of(self.lr),
            T::of(self.momentum),
            T::of(self.weight_decay),
        );
        let damp = T::of(1.0 - self.dampening);
        let has_momentum = self.momentum != 0.0;
        let n = p.len();
        let g = &g[..n];
        let buf: &mut [T] = if has_momentum {
            &mut s[0][..n]
        } else {
            &mut []
        };
        for i in 0..n {
            let mut d = g[i];
            if self.weight_decay != 0.0 {
                d = d + wd * p[i];
            }
            if has_momentum {
                buf[i] = if self.first {
                    d
                } else {
                    buf[i] * mu + damp * d
                };
                d = if self.nesterov {
                    d + mu * buf[i]
                } else {
                    buf[i]
                };
            }
            p[i] = p[i] - lr * d;
        }
    }
}

impl FusedStep for Sgd {
    type Config = SgdConfig;
    type Kernel = SgdKernel;
    const BUFFERS: &'static [&'static str] = &["momentum_buffer"];
    fn kernel(_: &Param, h: &SgdConfig, first: bool, _: u64) -> SgdKernel {
        SgdKernel {
            lr: h.lr,
            momentum: h.momentum,
            dampening: h.dampening,
            weight_decay: h.weight_decay,
            nesterov: h.nesterov,
            first,
        }
    }
}
