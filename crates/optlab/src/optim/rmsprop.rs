//! RMSprop (Tieleman & Hinton 2012) as `torch.optim.RMSprop`: coupled weight decay, optional centering by the
//! running mean gradient, and optional momentum on the normalised step.

use super::hyper::{hyperparams, parse};
use super::kernel::{Kernel, Real};
use super::{owned_names, update_each, HyperGroups, Optimizer, OptimizerState};
use crate::nn::Param;
use crate::{Result, Spec};
use candle_core::backprop::GradStore;

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

const BUFFERS: &[&str] = &["square_avg", "momentum_buffer", "grad_avg"];

/// `torch.optim.RMSprop`.
#[derive(Debug, Clone)]
pub struct RmsProp {
    h: HyperGroups<RmsPropConfig>,
    state: OptimizerState,
}

impl RmsProp {
    /// RMSprop with `config`.
    pub fn new(config: RmsPropConfig) -> Result<Self> {
        Ok(RmsProp {
            h: HyperGroups::new("rmsprop", config)?,
            state: OptimizerState::new("rmsprop"),
        })
    }

    /// From a spec: `rmsprop:lr=0.01,alpha=0.99,eps=1e-8,weight_decay=0,momentum=0,centered=false`.
    pub fn from_spec(s: &mut Spec) -> Result<Self> {
        Self::new(parse("rmsprop", RmsPropConfig::default(), s)?)
    }
}

struct RmsPropKernel {
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

impl Optimizer for RmsProp {
    optimizer_accessors!(fresh);
    fn buffer_names(&self) -> Vec<String> {
        owned_names(BUFFERS)
    }

    fn step(&mut self, params: &[Param], grads: &GradStore) -> Result<()> {
        self.state.step += 1;
        update_each(
            &mut self.state,
            &self.h,
            BUFFERS.len(),
            params,
            grads,
            |_, h, _| RmsPropKernel {
                lr: h.lr,
                alpha: h.alpha,
                eps: h.eps,
                weight_decay: h.weight_decay,
                momentum: h.momentum,
                centered: h.centered,
            },
        )
    }
}
