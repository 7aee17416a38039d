//! RMSprop (Tieleman & Hinton 2012) as `torch.optim.RMSprop`: coupled weight decay, optional centering by the
//! running mean gradient, and optional momentum on the normalised step.

use super::hyper::{def, HyperDef, Range};
use super::kernel::{Kernel, Real};
use super::{update_each, HyperGroups, Hypers, Optimizer, OptimizerState};
use crate::nn::Param;
use crate::{Result, Spec};
use candle_core::backprop::GradStore;

const DEFS: &[HyperDef] = &[
    def("lr", 1e-2, Range::NonNegative),
    def("alpha", 0.99, Range::Unit),
    def("eps", 1e-8, Range::NonNegative),
    def("weight_decay", 0.0, Range::NonNegative),
    def("momentum", 0.0, Range::NonNegative),
    def("centered", 0.0, Range::Bool),
];

/// `torch.optim.RMSprop`.
#[derive(Debug, Clone)]
pub struct RmsProp {
    h: HyperGroups,
    state: OptimizerState,
}

impl RmsProp {
    /// From a spec: `rmsprop:lr=0.01,alpha=0.99,eps=1e-8,weight_decay=0,momentum=0,centered=false`.
    pub fn from_spec(s: &mut Spec) -> Result<Self> {
        Ok(RmsProp {
            h: HyperGroups::new(Hypers::from_spec("rmsprop", DEFS, s)?),
            state: OptimizerState::new("rmsprop"),
        })
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
    fn name(&self) -> &'static str {
        "rmsprop"
    }
    field_accessors!();
    fn buffer_names(&self) -> &'static [&'static str] {
        &["square_avg", "momentum_buffer", "grad_avg"]
    }

    fn step(&mut self, params: &[Param], grads: &GradStore) -> Result<()> {
        self.state.step += 1;
        let names = self.buffer_names();
        update_each(&mut self.state, &self.h, names, params, grads, |_, h, _| {
            RmsPropKernel {
                lr: h.get("lr"),
                alpha: h.get("alpha"),
                eps: h.get("eps"),
                weight_decay: h.get("weight_decay"),
                momentum: h.get("momentum"),
                centered: h.flag("centered"),
            }
        })
    }
}
