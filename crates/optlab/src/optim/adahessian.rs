//! AdaHessian (P35, "ADAHESSIAN: An Adaptive Second Order Optimizer for Machine Learning"), following
//! amirgholami/adahessian `image_classification/optim_adahessian.py`: Adam whose second moment tracks the
//! square of a Hutchinson estimate of the Hessian diagonal, D = |z ⊙ Hz| with Rademacher z, instead of g².
//!
//! - Spatial averaging: tensors of rank ≤ 2 use D as is; conv kernels (rank 4) average it over the kernel's
//!   spatial dims; `block_size=b > 0` instead averages each consecutive block of b entries (the transformer
//!   variant); other ranks are refused.
//! - m ← β1·m + (1-β1)·g; v ← β2·v + (1-β2)·D²;
//!   x ← x - lr·(m/(1-β1^t) / ((√v)^k / (√(1-β2^t))^k + eps) + λx), with k = `hessian_power` (weight decay
//!   decoupled, as in the reference code).
//! - `update_period=p` recomputes D every p steps (pytorch_optimizer's variant) and reuses it in between.
//!
//! The Hessian-vector product is the double backward of the gradients the optimizer is given, so they must
//! keep their graph: set `CANDLE_GRAD_DO_NOT_DETACH=1` (the CLI does; [`crate::require_second_order`]).

use super::hyper::{hyperparams, parse};
use super::kernel::{Kernel, Real};
use super::{owned_names, update_each, Buf, HyperGroups, Optimizer, OptimizerState};
use crate::nn::Param;
use crate::rng::{rng_for, Rng, Stream};
use crate::{require_second_order, Error, Result, Spec};
use candle_core::backprop::GradStore;
use candle_core::Tensor;
use rand::Rng as _;

hyperparams! {
    /// AdaHessian's hyperparameters and the official code's defaults.
    pub struct AdaHessianConfig {
        /// Learning rate.
        lr: f64 = 0.15, NonNegative;
        /// Decay of the first moment.
        beta1: f64 = 0.9, Beta;
        /// Decay of the Hessian-diagonal second moment.
        beta2: f64 = 0.999, Beta;
        /// Added to the denominator.
        eps: f64 = 1e-4, NonNegative;
        /// Decoupled weight decay.
        weight_decay: f64 = 0.0, NonNegative;
        /// The power k of the denominator.
        hessian_power: f64 = 1.0, Unit;
        /// Recompute the Hessian diagonal every this many steps.
        update_period: u64 = 1, PositiveCount;
        /// Average the diagonal over consecutive blocks of this size (0: by rank).
        block_size: usize = 0, Count;
        /// Seed of the Rademacher probes.
        seed: u64 = 0, Count;
    }
}

const BUFFERS: &[&str] = &["exp_avg", "exp_hessian_diag_sq", "hessian_diag"];

/// Where the Rademacher probes come from: a seeded generator, or a function (tests replaying a reference run).
pub type ProbeFn = Box<dyn FnMut(u64, &Param) -> Result<Tensor> + Send>;

/// AdaHessian.
pub struct AdaHessian {
    h: HyperGroups<AdaHessianConfig>,
    state: OptimizerState,
    probes: Option<ProbeFn>,
}

impl std::fmt::Debug for AdaHessian {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdaHessian")
            .field("h", &self.h)
            .field("step", &self.state.step)
            .finish()
    }
}

impl AdaHessian {
    /// From a spec: `adahessian:lr=0.15,beta1=0.9,beta2=0.999,eps=1e-4,weight_decay=0,hessian_power=1,
    /// update_period=1,block_size=0,seed=0`.
    pub fn from_spec(s: &mut Spec) -> Result<Self> {
        Self::new(parse("adahessian", AdaHessianConfig::default(), s)?)
    }

    /// AdaHessian with `config`.
    pub fn new(config: AdaHessianConfig) -> Result<Self> {
        Ok(AdaHessian {
            h: HyperGroups::new("adahessian", config)?,
            state: OptimizerState::new("adahessian"),
            probes: None,
        })
    }

    /// Replaces the probe generator: `f(step, param)` returns the probe (entries ±1) for that parameter.
    pub fn set_probes(&mut self, f: ProbeFn) {
        self.probes = Some(f);
    }

    /// The probe of `p` at `step`; the default generator is seeded by (seed, step), so a resumed run draws the
    /// same probes as an uninterrupted one.
    fn probe(&mut self, step: u64, p: &Param, rng: &mut Rng) -> Result<Tensor> {
        if let Some(f) = self.probes.as_mut() {
            return f(step, p);
        }
        let n = p.numel();
        let v: Vec<f64> = (0..n)
            .map(|_| if rng.gen::<bool>() { 1.0 } else { -1.0 })
            .collect();
        Ok(Tensor::from_vec(v, p.var.dims(), p.tensor().device())?.to_dtype(p.var.dtype())?)
    }

    /// The spatially averaged Hutchinson diagonal |z ⊙ Hz| of one parameter.
    fn averaged(d: &Tensor, block: usize) -> Result<Tensor> {
        if block > 0 {
            let n = d.elem_count();
            if !n.is_multiple_of(block) {
                return Ok(d.clone());
            }
            let blocks = d.flatten_all()?.reshape((n / block, block))?;
            return Ok(blocks
                .mean_keepdim(1)?
                .broadcast_as((n / block, block))?
                .reshape(d.dims())?);
        }
        match d.rank() {
            0..=2 => Ok(d.clone()),
            4 => Ok(d
                .mean_keepdim(3)?
                .mean_keepdim(2)?
                .broadcast_as(d.dims())?
                .contiguous()?),
            r => Err(Error::invalid(format!(
                "adahessian: no spatial averaging rule for rank-{r} parameters (use block_size)"
            ))),
        }
    }
}

struct AdaHessianKernel {
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    power: f64,
    step: i32,
}

impl Kernel for AdaHessianKernel {
    #[inline(always)]
    fn run<T: Real>(&self, x: &mut [T], g: &[T], s: &mut [&mut [T]]) {
        let n = x.len();
        let [m, v, d] = s else {
            unreachable!("adahessian has three buffers")
        };
        let (g, m, v, d) = (&g[..n], &mut m[..n], &mut v[..n], &d[..n]);
        let (b1, w1, b2, w2) = (
            T::of(self.beta1),
            T::of(1.0 - self.beta1),
            T::of(self.beta2),
            T::of(1.0 - self.beta2),
        );
        let bc2_k = T::of((1.0 - self.beta2.powi(self.step)).sqrt().powf(self.power));
        let (lr, bc1) = (T::of(self.lr), T::of(1.0 - self.beta1.powi(self.step)));
        let (eps, wd, k) = (T::of(self.eps), T::of(self.weight_decay), T::of(self.power));
        let unit_power = self.power == 1.0;
        for i in 0..n {
            m[i] = m[i] * b1 + w1 * g[i];
            v[i] = v[i] * b2 + w2 * d[i] * d[i];
            let root = v[i].sqrt();
            let num = if unit_power { root } else { root.powf(k) };
            let update = (m[i] / bc1) / (num / bc2_k + eps) + wd * x[i];
            x[i] = x[i] - lr * update;
        }
    }
}

impl Optimizer for AdaHessian {
    optimizer_accessors!();
    fn buffer_names(&self) -> Vec<String> {
        owned_names(BUFFERS)
    }
    /// A fresh copy draws its probes from the seeded generator (a replaced probe function is not copied).
    fn fresh(&self) -> Box<dyn Optimizer> {
        Box::new(AdaHessian {
            h: self.h.clone(),
            state: OptimizerState::new("adahessian"),
            probes: None,
        })
    }

    fn differentiates_gradients(&self) -> bool {
        true
    }

    fn step(&mut self, params: &[Param], grads: &GradStore) -> Result<()> {
        self.state.step += 1;
        let t = self.state.step;
        let (period, seed, block) = {
            let c = self.h.config();
            (c.update_period.max(1), c.seed, c.block_size)
        };
        if (t - 1).is_multiple_of(period) {
            require_second_order()?;
            let with_grad: Vec<&Param> = params
                .iter()
                .filter(|p| grads.get(p.tensor()).is_some())
                .collect();
            let mut rng = rng_for(seed, Stream::Probe, (35 << 32) + t);
            let mut probes = Vec::with_capacity(with_grad.len());
            for p in &with_grad {
                probes.push(self.probe(t, p, &mut rng)?);
            }
            let pairs = with_grad
                .iter()
                .zip(&probes)
                .map(|(p, z)| (grads.get(p.tensor()).expect("filtered"), z));
            let Some(hv) = crate::grad_of_inner(pairs)? else {
                return Ok(());
            };
            for (p, z) in with_grad.iter().zip(&probes) {
                let hz = hv.get(p.tensor()).cloned().unwrap_or(z.zeros_like()?);
                let d = Self::averaged(&hz.mul(z)?.abs()?, block)?;
                let d = Buf::from_tensor(&d, p.var.dtype())?;
                let bufs = self
                    .state
                    .buffers
                    .entry(p.name.clone())
                    .or_insert_with(|| Vec::with_capacity(BUFFERS.len()));
                if bufs.is_empty() {
                    bufs.push(Buf::zeros(p.var.dtype(), p.numel())?);
                    bufs.push(Buf::zeros(p.var.dtype(), p.numel())?);
                    bufs.push(d);
                } else {
                    bufs[2] = d;
                }
            }
        }
        update_each(
            &mut self.state,
            &self.h,
            BUFFERS.len(),
            params,
            grads,
            |_, h, _| AdaHessianKernel {
                lr: h.lr,
                beta1: h.beta1,
                beta2: h.beta2,
                eps: h.eps,
                weight_decay: h.weight_decay,
                power: h.hessian_power,
                step: t as i32,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    #[test]
    fn uses_the_hessian_diagonal_of_a_quadratic() {
        // f = ½ Σ c_i x_i²: Hz = c ⊙ z, so D = |z ⊙ Hz| = c exactly whatever the probe.
        let x = Var::new(&[1.0f64, -2.0, 0.5], &Device::Cpu).unwrap();
        let c = Tensor::new(&[1.0f64, 4.0, 9.0], &Device::Cpu).unwrap();
        let params = [Param {
            name: "x".into(),
            var: x.clone(),
        }];
        let mut opt = crate::optim::from_spec("adahessian:lr=0.1,beta1=0,beta2=0,eps=0").unwrap();
        let before: Vec<f64> = x.to_vec1().unwrap();
        let g = x
            .as_tensor()
            .sqr()
            .unwrap()
            .mul(&c)
            .unwrap()
            .sum_all()
            .unwrap()
            .affine(0.5, 0.0)
            .unwrap()
            .backward()
            .unwrap();
        opt.step(&params, &g).unwrap();
        // With β1 = β2 = 0 and eps = 0 the step is lr·g/D = lr·c·x/c = lr·x: a Newton step scaled by lr.
        let after: Vec<f64> = x.to_vec1().unwrap();
        for (a, b) in after.iter().zip(&before) {
            assert!((a - 0.9 * b).abs() < 1e-12, "{after:?}");
        }
        assert_eq!(opt.state().buffers["x"][2], Buf::F64(vec![1.0, 4.0, 9.0]));
    }

    #[test]
    fn conv_kernels_are_averaged_over_space() {
        let d = Tensor::arange(0f64, 8.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 2, 2, 2))
            .unwrap();
        let a = AdaHessian::averaged(&d, 0).unwrap();
        assert_eq!(
            a.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
            vec![1.5, 1.5, 1.5, 1.5, 5.5, 5.5, 5.5, 5.5]
        );
        let b = AdaHessian::averaged(
            &Tensor::new(&[1.0f64, 3.0, 5.0, 7.0], &Device::Cpu).unwrap(),
            2,
        )
        .unwrap();
        assert_eq!(b.to_vec1::<f64>().unwrap(), vec![2.0, 2.0, 6.0, 6.0]);
        assert!(AdaHessian::averaged(
            &Tensor::zeros((1, 1, 1), DType::F64, &Device::Cpu).unwrap(),
            0
        )
        .is_err());
    }
}
