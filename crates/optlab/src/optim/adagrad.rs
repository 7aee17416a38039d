//! AdaGrad (Duchi, Hazan & Singer 2011) as `torch.optim.Adagrad`: coupled weight decay, learning-rate decay
//! `lr / (1 + (t-1) lr_decay)`, and an accumulator that starts at `initial_accumulator_value`.

use super::hyper::{def, HyperDef, Range};
use super::kernel::{Kernel, Real};
use super::{update_each, HyperGroups, Hypers, Optimizer, OptimizerState};
use crate::nn::Param;
use crate::{Result, Spec};
use candle_core::backprop::GradStore;

const DEFS: &[HyperDef] = &[
    def("lr", 1e-2, Range::NonNegative),
    def("lr_decay", 0.0, Range::NonNegative),
    def("weight_decay", 0.0, Range::NonNegative),
    def("initial_accumulator_value", 0.0, Range::NonNegative),
    def("eps", 1e-10, Range::NonNegative),
];

/// `torch.optim.Adagrad`.
#[derive(Debug, Clone)]
pub struct Adagrad {
    h: HyperGroups,
    state: OptimizerState,
}

impl Adagrad {
    /// From a spec: `adagrad:lr=0.01,lr_decay=0,weight_decay=0,initial_accumulator_value=0,eps=1e-10`.
    pub fn from_spec(s: &mut Spec) -> Result<Self> {
        Ok(Adagrad {
            h: HyperGroups::new(Hypers::from_spec("adagrad", DEFS, s)?),
            state: OptimizerState::new("adagrad"),
        })
    }
}

struct AdagradKernel {
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

impl Optimizer for Adagrad {
    fn name(&self) -> &'static str {
        "adagrad"
    }
    field_accessors!();
    fn buffer_names(&self) -> &'static [&'static str] {
        &["sum"]
    }

    fn step(&mut self, params: &[Param], grads: &GradStore) -> Result<()> {
        self.state.step += 1;
        let t = self.state.step;
        let names = self.buffer_names();
        update_each(
            &mut self.state,
            &self.h,
            names,
            params,
            grads,
            |_, h, first| AdagradKernel {
                clr: h.get("lr") / (1.0 + (t - 1) as f64 * h.get("lr_decay")),
                weight_decay: h.get("weight_decay"),
                init: h.get("initial_accumulator_value"),
                eps: h.get("eps"),
                first,
            },
        )
    }
}
