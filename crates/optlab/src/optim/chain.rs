//! Optimizers composed from small gradient transformations, as optax's `chain`: the update starts as the
//! gradient, each transformation rewrites it (keeping its own per-parameter state), and the result is added
//! to the parameter. Spec: `chain:` followed by transformations separated by `+`, each a spec of its own:
//!
//! `chain:clip_by_global_norm:max_norm=1+scale_by_adam:b1=0.9,b2=0.999+add_decayed_weights:weight_decay=0.01+scale_by_learning_rate:lr=1e-3`
//!
//! is AdamW with gradient clipping (optax's `adamw` recipe). Transformations (optax names and defaults):
//! `clip_by_global_norm:max_norm` (first only: it sees the raw gradients), `clip:max_delta`,
//! `scale_by_adam:b1=0.9,b2=0.999,eps=1e-8,eps_root=0`, `scale_by_rms:decay=0.9,eps=1e-8`,
//! `scale_by_lion:b1=0.9,b2=0.99`, `trace:decay=0.9,nesterov=false`, `scale_by_sign`,
//! `add_decayed_weights:weight_decay`, `scale:step_size`, `scale_by_learning_rate:lr` (multiplies by -lr; the
//! chain's `lr` hyperparameter, which schedules drive). Each step is one fused pass over memory.

use super::hyper::{fmt_number, hyperparams};
use super::kernel::{sign, Kernel, Real};
use super::{update_each, HyperGroups, Optimizer, OptimizerState};
use crate::method::MupRule;
use crate::nn::Param;
use crate::spec::unknown_name;
use crate::{Error, Result, Spec};
use candle_core::backprop::GradStore;

hyperparams! {
    /// The chain's schedulable value: the learning rate of `scale_by_learning_rate` (1 without one).
    pub struct ChainHypers {
        /// Learning rate.
        lr: f64 = 1.0, NonNegative;
    }
}

/// The transformation names.
pub const TRANSFORM_NAMES: &[&str] = &[
    "clip_by_global_norm",
    "clip",
    "scale_by_adam",
    "scale_by_rms",
    "scale_by_lion",
    "trace",
    "scale_by_sign",
    "add_decayed_weights",
    "scale",
    "scale_by_learning_rate",
];

/// One gradient transformation (optax's names and defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transform {
    ClipByGlobalNorm(f64),
    Clip(f64),
    Adam {
        b1: f64,
        b2: f64,
        eps: f64,
        eps_root: f64,
    },
    Rms {
        decay: f64,
        eps: f64,
    },
    Lion {
        b1: f64,
        b2: f64,
    },
    Trace {
        decay: f64,
        nesterov: bool,
    },
    Sign,
    AddDecayedWeights(f64),
    Scale(f64),
    LearningRate(f64),
}

impl Transform {
    /// Parses one transformation spec, e.g. `scale_by_adam:b1=0.9`.
    pub fn parse(text: &str) -> Result<Transform> {
        let mut s = Spec::parse(text)?;
        let unit = |s: &mut Spec, k: &'static str, d: f64| -> Result<f64> {
            let v = s.f64(k, d)?;
            if !(0.0..1.0).contains(&v) {
                return Err(Error::invalid(format!(
                    "{}: {k}={v} must be in [0, 1)",
                    s.name
                )));
            }
            Ok(v)
        };
        let nonneg = |s: &mut Spec, k: &'static str, d: f64| -> Result<f64> {
            let v = s.f64(k, d)?;
            if v < 0.0 {
                return Err(Error::invalid(format!("{}: {k}={v} must be >= 0", s.name)));
            }
            Ok(v)
        };
        let t = match s.name.as_str() {
            "clip_by_global_norm" => Transform::ClipByGlobalNorm(nonneg(&mut s, "max_norm", 1.0)?),
            "clip" => Transform::Clip(nonneg(&mut s, "max_delta", 1.0)?),
            "scale_by_adam" => Transform::Adam {
                b1: unit(&mut s, "b1", 0.9)?,
                b2: unit(&mut s, "b2", 0.999)?,
                eps: nonneg(&mut s, "eps", 1e-8)?,
                eps_root: nonneg(&mut s, "eps_root", 0.0)?,
            },
            "scale_by_rms" => Transform::Rms {
                decay: unit(&mut s, "decay", 0.9)?,
                eps: nonneg(&mut s, "eps", 1e-8)?,
            },
            "scale_by_lion" => Transform::Lion {
                b1: unit(&mut s, "b1", 0.9)?,
                b2: unit(&mut s, "b2", 0.99)?,
            },
            "trace" => Transform::Trace {
                decay: unit(&mut s, "decay", 0.9)?,
                nesterov: s.bool("nesterov", false)?,
            },
            "scale_by_sign" => Transform::Sign,
            "add_decayed_weights" => {
                Transform::AddDecayedWeights(nonneg(&mut s, "weight_decay", 0.0)?)
            }
            "scale" => Transform::Scale(s.f64("step_size", 1.0)?),
            "scale_by_learning_rate" => Transform::LearningRate(nonneg(&mut s, "lr", 1e-3)?),
            other => return Err(unknown_name("transformation", other, TRANSFORM_NAMES)),
        };
        s.finish()?;
        Ok(t)
    }

    fn spec(&self, lr: f64) -> String {
        let f = fmt_number;
        match *self {
            Transform::ClipByGlobalNorm(m) => format!("clip_by_global_norm:max_norm={}", f(m)),
            Transform::Clip(m) => format!("clip:max_delta={}", f(m)),
            Transform::Adam {
                b1,
                b2,
                eps,
                eps_root,
            } => {
                format!(
                    "scale_by_adam:b1={},b2={},eps={},eps_root={}",
                    f(b1),
                    f(b2),
                    f(eps),
                    f(eps_root)
                )
            }
            Transform::Rms { decay, eps } => {
                format!("scale_by_rms:decay={},eps={}", f(decay), f(eps))
            }
            Transform::Lion { b1, b2 } => format!("scale_by_lion:b1={},b2={}", f(b1), f(b2)),
            Transform::Trace { decay, nesterov } => {
                format!("trace:decay={},nesterov={nesterov}", f(decay))
            }
            Transform::Sign => "scale_by_sign".into(),
            Transform::AddDecayedWeights(w) => format!("add_decayed_weights:weight_decay={}", f(w)),
            Transform::Scale(s) => format!("scale:step_size={}", f(s)),
            Transform::LearningRate(_) => format!("scale_by_learning_rate:lr={}", f(lr)),
        }
    }

    fn buffers(&self) -> &'static [&'static str] {
        match self {
            Transform::Adam { .. } => &["mu", "nu"],
            Transform::Rms { .. } => &["nu"],
            Transform::Lion { .. } => &["mu"],
            Transform::Trace { .. } => &["trace"],
            _ => &[],
        }
    }
}

/// An optax-style chain of transformations.
#[derive(Debug, Clone)]
pub struct Chain {
    h: HyperGroups<ChainHypers>,
    transforms: Vec<Transform>,
    state: OptimizerState,
}

impl Chain {
    /// A chain of `transforms` (at least one; `clip_by_global_norm` only first; `scale_by_learning_rate` at most
    /// once, its lr becoming the chain's schedulable `lr`).
    pub fn new(transforms: Vec<Transform>) -> Result<Self> {
        if transforms.is_empty() {
            return Err(Error::invalid(format!(
                "chain needs at least one transformation; available: {}",
                TRANSFORM_NAMES.join(", ")
            )));
        }
        if transforms
            .iter()
            .skip(1)
            .any(|t| matches!(t, Transform::ClipByGlobalNorm(_)))
        {
            return Err(Error::invalid(
                "chain: clip_by_global_norm must come first (it clips the raw gradients)",
            ));
        }
        let lrs: Vec<f64> = transforms
            .iter()
            .filter_map(|t| match t {
                Transform::LearningRate(lr) => Some(*lr),
                _ => None,
            })
            .collect();
        if lrs.len() > 1 {
            return Err(Error::invalid(
                "chain: scale_by_learning_rate may appear once",
            ));
        }
        let lr = lrs.first().copied().unwrap_or(1.0);
        Ok(Chain {
            h: HyperGroups::new("chain", ChainHypers { lr })?,
            transforms,
            state: OptimizerState::new("chain"),
        })
    }

    /// From the part after `chain:`: transformation specs joined by `+`.
    pub fn parse(items: &str) -> Result<Self> {
        let transforms = items
            .split('+')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Transform::parse)
            .collect::<Result<Vec<_>>>()?;
        Chain::new(transforms)
    }

    fn buffer_count(&self) -> usize {
        self.transforms.iter().map(|t| t.buffers().len()).sum()
    }
}

struct ChainKernel<'a> {
    transforms: &'a [Transform],
    /// Global-norm clip factor for this step (1 when not clipping).
    clip_factor: f64,
    lr: f64,
    step: i32,
}

impl Kernel for ChainKernel<'_> {
    #[inline(always)]
    fn run<T: Real>(&self, p: &mut [T], g: &[T], s: &mut [&mut [T]]) {
        let n = p.len();
        let mut u: Vec<T> = g[..n]
            .iter()
            .map(|&x| x * T::of(self.clip_factor))
            .collect();
        let mut k = 0;
        for t in self.transforms {
            match *t {
                Transform::ClipByGlobalNorm(_) => {}
                Transform::Clip(m) => u
                    .iter_mut()
                    .for_each(|x| *x = x.max(T::of(-m)).min(T::of(m))),
                Transform::Adam {
                    b1,
                    b2,
                    eps,
                    eps_root,
                } => {
                    let (m, v) = s[k..k + 2].split_at_mut(1);
                    let (m, v) = (&mut m[0][..n], &mut v[0][..n]);
                    let (bc1, bc2) = (
                        T::of(1.0 - b1.powi(self.step)),
                        T::of(1.0 - b2.powi(self.step)),
                    );
                    for i in 0..n {
                        m[i] = T::of(1.0 - b1) * u[i] + T::of(b1) * m[i];
                        v[i] = T::of(1.0 - b2) * u[i] * u[i] + T::of(b2) * v[i];
                        u[i] = (m[i] / bc1) / ((v[i] / bc2 + T::of(eps_root)).sqrt() + T::of(eps));
                    }
                }
                Transform::Rms { decay, eps } => {
                    let v = &mut s[k][..n];
                    for i in 0..n {
                        v[i] = T::of(1.0 - decay) * u[i] * u[i] + T::of(decay) * v[i];
                        u[i] = u[i] / (v[i].sqrt() + T::of(eps));
                    }
                }
                Transform::Lion { b1, b2 } => {
                    let m = &mut s[k][..n];
                    for i in 0..n {
                        let c = T::of(1.0 - b1) * u[i] + T::of(b1) * m[i];
                        m[i] = T::of(1.0 - b2) * u[i] + T::of(b2) * m[i];
                        u[i] = sign(c);
                    }
                }
                Transform::Trace { decay, nesterov } => {
                    let m = &mut s[k][..n];
                    for i in 0..n {
                        m[i] = u[i] + T::of(decay) * m[i];
                        u[i] = if nesterov {
                            u[i] + T::of(decay) * m[i]
                        } else {
                            m[i]
                        };
                    }
                }
                Transform::Sign => u.iter_mut().for_each(|x| *x = sign(*x)),
                Transform::AddDecayedWeights(w) => u
                    .iter_mut()
                    .zip(p.iter())
                    .for_each(|(x, &pi)| *x = *x + T::of(w) * pi),
                Transform::Scale(c) => u.iter_mut().for_each(|x| *x = *x * T::of(c)),
                Transform::LearningRate(_) => u.iter_mut().for_each(|x| *x = *x * T::of(-self.lr)),
            }
            k += t.buffers().len();
        }
        for (pi, ui) in p.iter_mut().zip(u) {
            *pi = *pi + ui;
        }
    }
}

impl Optimizer for Chain {
    optimizer_accessors!(fresh);
    /// `<transform index>.<buffer>`, e.g. `0.mu`, `0.nu`.
    fn buffer_names(&self) -> Vec<String> {
        self.transforms
            .iter()
            .enumerate()
            .flat_map(|(i, t)| t.buffers().iter().map(move |b| format!("{i}.{b}")))
            .collect()
    }
    /// MuAdam's rule when a transformation normalises the update per entry (Adam, RMS, Lion, sign), MuSGD's
    /// when the update stays proportional to the gradient.
    fn mup_rule(&self) -> Result<MupRule> {
        let normalised = self.transforms.iter().any(|t| {
            matches!(
                t,
                Transform::Adam { .. }
                    | Transform::Rms { .. }
                    | Transform::Lion { .. }
                    | Transform::Sign
            )
        });
        Ok(if normalised {
            MupRule::Adam
        } else {
            MupRule::Sgd
        })
    }
    fn spec(&self) -> String {
        let lr = self.h.config().lr;
        format!(
            "chain:{}",
            self.transforms
                .iter()
                .map(|t| t.spec(lr))
                .collect::<Vec<_>>()
                .join("+")
        )
    }

    fn step(&mut self, params: &[Param], grads: &GradStore) -> Result<()> {
        self.state.step += 1;
        let clip_factor = match self.transforms.first() {
            Some(Transform::ClipByGlobalNorm(max_norm)) => {
                let norm = super::clip::global_grad_norm(params, grads)?;
                // optax: g · max_norm / max(norm, max_norm).
                max_norm / norm.max(*max_norm)
            }
            _ => 1.0,
        };
        let buffers = self.buffer_count();
        let (transforms, step) = (&self.transforms, self.state.step as i32);
        update_each(
            &mut self.state,
            &self.h,
            buffers,
            params,
            grads,
            |_, h, _| ChainKernel {
                transforms,
                clip_factor,
                lr: h.lr,
                step,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::from_spec;
    use candle_core::{Device, Tensor, Var};

    fn run(spec: &str, steps: usize) -> Vec<f64> {
        let x = Var::new(&[0.5f64, -1.5, 2.0], &Device::Cpu).unwrap();
        let a = Tensor::new(&[1.0f64, 2.0, -3.0], &Device::Cpu).unwrap();
        let params = [Param {
            name: "x".into(),
            var: x.clone(),
        }];
        let mut opt = from_spec(spec).unwrap();
        for _ in 0..steps {
            // f = Σ (x - a)^4 / 4: gradients of varying scale.
            let g = x
                .as_tensor()
                .sub(&a)
                .unwrap()
                .powf(4.0)
                .unwrap()
                .sum_all()
                .unwrap()
                .affine(0.25, 0.0)
                .unwrap();
            opt.step(&params, &g.backward().unwrap()).unwrap();
        }
        x.to_vec1().unwrap()
    }

    #[test]
    fn recipes_equal_the_fused_optimizers() {
        let close = |a: &[f64], b: &[f64]| {
            a.iter()
                .zip(b)
                .all(|(x, y)| (x - y).abs() < 1e-12 * y.abs().max(1.0))
        };
        // AdamW = scale_by_adam + add_decayed_weights + scale_by_learning_rate, up to rounding: optax applies
        // the decay inside the update, torch decays x first; one step of each differs by lr²·λ·(...), so compare
        // Adam (no decay) exactly and AdamW loosely.
        let fused = run("adam:lr=0.01,beta1=0.9,beta2=0.999,eps=1e-8", 50);
        let chain = run(
            "chain:scale_by_adam:b1=0.9,b2=0.999,eps=1e-8+scale_by_learning_rate:lr=0.01",
            50,
        );
        assert!(close(&fused, &chain), "{fused:?} vs {chain:?}");
        // SGD with momentum = trace + scale_by_learning_rate (torch's buffer starts at g, optax's at 0 + g).
        let fused = run("sgd:lr=0.01,momentum=0.9", 50);
        let chain = run("chain:trace:decay=0.9+scale_by_learning_rate:lr=0.01", 50);
        assert!(close(&fused, &chain), "{fused:?} vs {chain:?}");
        let fused = run("lion:lr=0.01", 50);
        let chain = run("chain:scale_by_lion+scale_by_learning_rate:lr=0.01", 50);
        assert!(close(&fused, &chain), "{fused:?} vs {chain:?}");
    }

    #[test]
    fn global_clipping_and_errors() {
        // A clipped step of plain SGD moves by at most lr · max_norm.
        let x0 = [0.5f64, -1.5, 2.0];
        let x1 = run(
            "chain:clip_by_global_norm:max_norm=0.1+scale_by_learning_rate:lr=1",
            1,
        );
        let d: f64 = x0
            .iter()
            .zip(&x1)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!((d - 0.1).abs() < 1e-12, "{d}");
        let e = |s: &str| from_spec(s).unwrap_err().to_string();
        assert!(e("chain:scale_by_adam+clip_by_global_norm:max_norm=1").contains("must come first"));
        assert!(e("chain:scale_by_adamw").contains("unknown transformation"));
        assert!(e("chain:scale_by_adam:b1=1").contains("b1=1"));
        assert!(e("chain:").contains("at least one"));
        let opt = from_spec("chain:scale_by_adam+add_decayed_weights:weight_decay=0.01+scale_by_learning_rate:lr=0.001").unwrap();
        assert_eq!(opt.lr().unwrap(), 0.001);
        assert_eq!(from_spec(&opt.spec()).unwrap().spec(), opt.spec());
        assert_eq!(opt.buffer_names(), vec!["0.mu", "0.nu"]);
        assert_eq!(opt.mup_rule().unwrap(), MupRule::Adam);
        let sgd_like = from_spec("chain:trace:decay=0.9+scale_by_learning_rate:lr=0.1").unwrap();
        assert_eq!(sgd_like.mup_rule().unwrap(), MupRule::Sgd);
        assert!(e("chain").contains("at least one transformation"));
    }
}
