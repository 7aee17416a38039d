//! Stochastic gradient descent with momentum, dampening, Nesterov momentum and coupled weight decay, exactly
//! as `torch.optim.SGD`: the momentum buffer starts as the first gradient (not zero), and Nesterov needs
//! momentum > 0 and dampening = 0.

use super::hyper::{hyperparams, parse};
use super::kernel::{Kernel, Real};
use super::{owned_names, update_each, HyperGroups, Optimizer, OptimizerState};
use crate::nn::Param;
use crate::{Error, Result, Spec};
use candle_core::backprop::GradStore;

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

const BUFFERS: &[&str] = &["momentum_buffer"];

/// `torch.optim.SGD`.
#[derive(Debug, Clone)]
pub struct Sgd {
    h: HyperGroups<SgdConfig>,
    state: OptimizerState,
}

impl Sgd {
    /// SGD with `config` (checked).
    pub fn new(config: SgdConfig) -> Result<Self> {
        Ok(Sgd {
            h: HyperGroups::new("sgd", config)?,
            state: OptimizerState::new("sgd"),
        })
    }

    /// From a spec: `sgd:lr=0.1,momentum=0.9,dampening=0,weight_decay=0,nesterov=false`.
    pub fn from_spec(s: &mut Spec) -> Result<Self> {
        Sgd::new(parse("sgd", SgdConfig::default(), s)?)
    }
}

struct SgdKernel {
    lr: f64,
    momentum: f64,
    dampening: f64,
    weight_decay: f64,
    nesterov: bool,
    first: bool,
}

impl SgdKernel {
    fn new(h: &SgdConfig, first: bool) -> Self {
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

impl Optimizer for Sgd {
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
            |_, h, first| SgdKernel::new(h, first),
        )
    }
}
