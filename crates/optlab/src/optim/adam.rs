//! Adam (Kingma & Ba) with coupled L2 weight decay, and AdamW (Loshchilov & Hutter) with decoupled weight
//! decay, exactly as `torch.optim.Adam` / `torch.optim.AdamW` (single-tensor path): eps is added after the
//! bias-corrected square root, and `amsgrad` keeps the running maximum of the second moment.

use super::hyper::{def, HyperDef, Range};
use super::kernel::{Kernel, Real};
use super::{update_each, HyperGroups, Hypers, Optimizer, OptimizerState};
use crate::nn::Param;
use crate::{Result, Spec};
use candle_core::backprop::GradStore;

const ADAM_DEFS: &[HyperDef] = &[
    def("lr", 1e-3, Range::NonNegative),
    def("beta1", 0.9, Range::Beta),
    def("beta2", 0.999, Range::Beta),
    def("eps", 1e-8, Range::NonNegative),
    def("weight_decay", 0.0, Range::NonNegative),
    def("amsgrad", 0.0, Range::Bool),
];

const ADAMW_DEFS: &[HyperDef] = &[
    def("lr", 1e-3, Range::NonNegative),
    def("beta1", 0.9, Range::Beta),
    def("beta2", 0.999, Range::Beta),
    def("eps", 1e-8, Range::NonNegative),
    def("weight_decay", 1e-2, Range::NonNegative),
    def("amsgrad", 0.0, Range::Bool),
];

/// Adam, or AdamW when `decoupled`.
#[derive(Debug, Clone)]
pub struct Adam {
    h: HyperGroups,
    decoupled: bool,
    state: OptimizerState,
}

impl Adam {
    /// From a spec: `adam:lr=1e-3,beta1=0.9,beta2=0.999,eps=1e-8,weight_decay=0,amsgrad=false` (AdamW's
    /// default weight_decay is 0.01, as in PyTorch).
    pub fn from_spec(s: &mut Spec, decoupled: bool) -> Result<Self> {
        let (name, defs) = if decoupled {
            ("adamw", ADAMW_DEFS)
        } else {
            ("adam", ADAM_DEFS)
        };
        Ok(Adam {
            h: HyperGroups::new(Hypers::from_spec(name, defs, s)?),
            decoupled,
            state: OptimizerState::new(name),
        })
    }
}

struct AdamKernel {
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    decoupled: bool,
    amsgrad: bool,
    step: u64,
}

impl Kernel for AdamKernel {
    fn run<T: Real>(&self, p: &mut [T], g: &[T], s: &mut [&mut [T]]) {
        let bc1 = 1.0 - self.beta1.powi(self.step as i32);
        let bc2_sqrt = T::of((1.0 - self.beta2.powi(self.step as i32)).sqrt());
        let step_size = T::of(self.lr / bc1);
        let (w1, b2, w2) = (
            T::of(1.0 - self.beta1),
            T::of(self.beta2),
            T::of(1.0 - self.beta2),
        );
        let (eps, wd) = (T::of(self.eps), T::of(self.weight_decay));
        let decay = T::of(1.0 - self.lr * self.weight_decay);
        let [m, v, vmax] = s else {
            unreachable!("adam has three buffers")
        };
        for i in 0..p.len() {
            let mut gi = g[i];
            if self.weight_decay != 0.0 {
                if self.decoupled {
                    p[i] = p[i] * decay;
                } else {
                    gi = gi + wd * p[i];
                }
            }
            m[i] = m[i] + w1 * (gi - m[i]);
            v[i] = v[i] * b2 + w2 * gi * gi;
            let second = if self.amsgrad {
                vmax[i] = vmax[i].max(v[i]);
                vmax[i]
            } else {
                v[i]
            };
            let denom = second.sqrt() / bc2_sqrt + eps;
            p[i] = p[i] - step_size * (m[i] / denom);
        }
    }
}

impl Optimizer for Adam {
    fn name(&self) -> &'static str {
        if self.decoupled {
            "adamw"
        } else {
            "adam"
        }
    }
    fn hypers(&self) -> &HyperGroups {
        &self.h
    }
    fn hypers_mut(&mut self) -> &mut HyperGroups {
        &mut self.h
    }
    fn state(&self) -> &OptimizerState {
        &self.state
    }
    fn state_mut(&mut self) -> &mut OptimizerState {
        &mut self.state
    }
    fn buffer_names(&self) -> &'static [&'static str] {
        &["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]
    }

    fn step(&mut self, params: &[Param], grads: &GradStore) -> Result<()> {
        self.state.step += 1;
        let (decoupled, step) = (self.decoupled, self.state.step);
        let names = self.buffer_names();
        update_each(&mut self.state, &self.h, names, params, grads, |_, h, _| {
            AdamKernel {
                lr: h.get("lr"),
                beta1: h.get("beta1"),
                beta2: h.get("beta2"),
                eps: h.get("eps"),
                weight_decay: h.get("weight_decay"),
                decoupled,
                amsgrad: h.flag("amsgrad"),
                step,
            }
        })
    }
}
