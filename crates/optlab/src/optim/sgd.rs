//! Stochastic gradient descent with momentum, dampening, Nesterov momentum and coupled weight decay, exactly
//! as `torch.optim.SGD`: the momentum buffer starts as the first gradient (not zero), and Nesterov needs
//! momentum > 0 and dampening = 0.

use super::hyper::{def, HyperDef, Range};
use super::kernel::{Kernel, Real};
use super::{update_each, HyperGroups, Hypers, Optimizer, OptimizerState};
use crate::nn::Param;
use crate::{Error, Result, Spec};
use candle_core::backprop::GradStore;

const DEFS: &[HyperDef] = &[
    def("lr", 1e-3, Range::NonNegative),
    def("momentum", 0.0, Range::NonNegative),
    def("dampening", 0.0, Range::Unit),
    def("weight_decay", 0.0, Range::NonNegative),
    def("nesterov", 0.0, Range::Bool),
];

/// `torch.optim.SGD`.
#[derive(Debug, Clone)]
pub struct Sgd {
    h: HyperGroups,
    state: OptimizerState,
}

impl Sgd {
    /// From a spec: `sgd:lr=0.1,momentum=0.9,dampening=0,weight_decay=0,nesterov=false`.
    pub fn from_spec(s: &mut Spec) -> Result<Self> {
        let opt = Sgd {
            h: HyperGroups::new(Hypers::from_spec("sgd", DEFS, s)?),
            state: OptimizerState::new("sgd"),
        };
        opt.validate(opt.h.default_group())?;
        Ok(opt)
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
    fn new(h: &Hypers, first: bool) -> Self {
        SgdKernel {
            lr: h.get("lr"),
            momentum: h.get("momentum"),
            dampening: h.get("dampening"),
            weight_decay: h.get("weight_decay"),
            nesterov: h.flag("nesterov"),
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
    fn name(&self) -> &'static str {
        "sgd"
    }
    field_accessors!();
    fn validate(&self, h: &Hypers) -> Result<()> {
        if h.flag("nesterov") && (h.get("momentum") <= 0.0 || h.get("dampening") != 0.0) {
            return Err(Error::invalid(
                "sgd: nesterov=true needs momentum > 0 and dampening = 0",
            ));
        }
        Ok(())
    }
    fn buffer_names(&self) -> &'static [&'static str] {
        &["momentum_buffer"]
    }

    fn step(&mut self, params: &[Param], grads: &GradStore) -> Result<()> {
        self.state.step += 1;
        let names = self.buffer_names();
        update_each(
            &mut self.state,
            &self.h,
            names,
            params,
            grads,
            |_, h, first| SgdKernel::new(h, first),
        )
    }
}
