//! Normalized momentum SGD (Cutkosky & Mehta 2020), the upper-level update of P05's bilevel method:
//! m ← β·m + (1-β)·g;  x ← x - lr·m/‖m‖, with ‖m‖ the l2 norm over all parameters together.

use super::hyper::{hyperparams, parse};
use super::kernel::{sum_sq, Kernel, Real};
use super::{owned_names, update_each, HyperGroups, Optimizer, OptimizerState};
use crate::nn::Param;
use crate::{Result, Spec};
use candle_core::backprop::GradStore;

hyperparams! {
    /// Normalized momentum SGD's hyperparameters.
    pub struct NsgdConfig {
        /// Step length: every update moves the parameters by lr in l2 norm.
        lr: f64 = 1e-2, NonNegative;
        /// Momentum decay.
        beta: f64 = 0.9, Beta;
        /// Guards ‖m‖ = 0.
        eps: f64 = 1e-12, Positive;
    }
}

const BUFFERS: &[&str] = &["momentum"];

/// Normalized momentum SGD.
#[derive(Debug, Clone)]
pub struct NormalizedSgd {
    h: HyperGroups<NsgdConfig>,
    state: OptimizerState,
}

impl NormalizedSgd {
    /// Normalized SGD with `config`.
    pub fn new(config: NsgdConfig) -> Result<Self> {
        Ok(NormalizedSgd {
            h: HyperGroups::new("nsgd", config)?,
            state: OptimizerState::new("nsgd"),
        })
    }

    /// From a spec: `nsgd:lr=0.01,beta=0.9,eps=1e-12` (eps guards ‖m‖ = 0).
    pub fn from_spec(s: &mut Spec) -> Result<Self> {
        Self::new(parse("nsgd", NsgdConfig::default(), s)?)
    }
}

/// Pass 1: the momentum.
struct Momentum {
    beta: f64,
}

impl Kernel for Momentum {
    #[inline(always)]
    fn run<T: Real>(&self, _x: &mut [T], g: &[T], s: &mut [&mut [T]]) {
        let (b, w) = (T::of(self.beta), T::of(1.0 - self.beta));
        for (m, &gi) in s[0].iter_mut().zip(g) {
            *m = *m * b + w * gi;
        }
    }
}

/// Pass 2: the normalized step.
struct Step {
    scale: f64,
}

impl Kernel for Step {
    #[inline(always)]
    fn run<T: Real>(&self, x: &mut [T], _g: &[T], s: &mut [&mut [T]]) {
        let c = T::of(self.scale);
        for (xi, &m) in x.iter_mut().zip(s[0].iter()) {
            *xi = *xi - c * m;
        }
    }
}

impl Optimizer for NormalizedSgd {
    optimizer_accessors!(fresh);
    fn buffer_names(&self) -> Vec<String> {
        owned_names(BUFFERS)
    }

    fn step(&mut self, params: &[Param], grads: &GradStore) -> Result<()> {
        self.state.step += 1;
        let n = BUFFERS.len();
        update_each(&mut self.state, &self.h, n, params, grads, |_, h, _| {
            Momentum { beta: h.beta }
        })?;
        let mut norm2 = 0.0;
        for p in params.iter().filter(|p| grads.get(p.tensor()).is_some()) {
            norm2 += match &self.state.buffers[&p.name][0] {
                super::Buf::F32(v) => sum_sq(v),
                super::Buf::F64(v) => sum_sq(v),
            };
        }
        let norm = norm2.sqrt();
        update_each(&mut self.state, &self.h, n, params, grads, |_, h, _| Step {
            scale: h.lr / (norm + h.eps),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor, Var};

    #[test]
    fn step_has_length_lr_and_follows_momentum() {
        let a = Var::new(&[1.0f64, 2.0], &Device::Cpu).unwrap();
        let b = Var::new(&[[3.0f64]], &Device::Cpu).unwrap();
        let params = [
            Param {
                name: "a".into(),
                var: a.clone(),
            },
            Param {
                name: "b".into(),
                var: b.clone(),
            },
        ];
        let mut opt = crate::optim::from_spec("nsgd:lr=0.5,beta=0.9").unwrap();
        // loss = 3a0 + 4a1 + 12 b: g = (3, 4, 12), |m| direction = g/13.
        let loss = |a: &Var, b: &Var| {
            let w = Tensor::new(&[3.0f64, 4.0], &Device::Cpu).unwrap();
            a.mul(&w)
                .unwrap()
                .sum_all()
                .unwrap()
                .add(&b.affine(12.0, 0.0).unwrap().sum_all().unwrap())
                .unwrap()
        };
        let g = loss(&a, &b).backward().unwrap();
        opt.step(&params, &g).unwrap();
        let av: Vec<f64> = a.to_vec1().unwrap();
        let bv: Vec<Vec<f64>> = b.to_vec2().unwrap();
        assert!((av[0] - (1.0 - 0.5 * 3.0 / 13.0)).abs() < 1e-12);
        assert!((av[1] - (2.0 - 0.5 * 4.0 / 13.0)).abs() < 1e-12);
        assert!((bv[0][0] - (3.0 - 0.5 * 12.0 / 13.0)).abs() < 1e-12);
    }
}
