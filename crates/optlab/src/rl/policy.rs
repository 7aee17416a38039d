//! Policies: a softmax MLP over discrete actions, a Gaussian MLP with a learned state-independent log standard
//! deviation (the `log_std` parameter of CleanRL's and the P16 code's continuous policies), and a deterministic
//! MLP with Gaussian exploration noise (TD3's actor). Log-probabilities are differentiable tensors, so their
//! gradients come from one backward pass and their Hessian-vector products from a double backward
//! ([`Policy::hvp`]).

use super::env::Action;
use crate::nn::{ModelSpec, Param, Sequential};
use crate::rng::{normal, Rng};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use rand::Rng as _;

/// The distribution a policy's network parametrizes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PolicyKind {
    /// π(a|s) = softmax(f(s))_a over `actions` choices.
    Softmax { actions: usize },
    /// a ~ N(f(s), diag(exp(log_std))²).
    Gaussian { dim: usize },
    /// a = f(s) (+ N(0, noise²) when exploring), optionally squashed to ±bound by tanh.
    Deterministic {
        dim: usize,
        noise: f64,
        bound: Option<f64>,
    },
}

/// A policy network and its distribution.
#[derive(Debug, Clone)]
pub struct Policy {
    pub kind: PolicyKind,
    pub net: Sequential,
    log_std: Option<Param>,
    obs_dim: usize,
}

impl Policy {
    /// A policy over observations of `obs_dim` with an MLP of `hidden` widths (`act`: relu, tanh or gelu),
    /// initialised as PyTorch's `nn.Linear` from `seed`, in f64; the Gaussian's log_std starts at `init_log_std`.
    pub fn new(
        kind: PolicyKind,
        obs_dim: usize,
        hidden: &[usize],
        act: &str,
        seed: u64,
        init_log_std: f64,
    ) -> Result<Self> {
        let outputs = match kind {
            PolicyKind::Softmax { actions } => actions,
            PolicyKind::Gaussian { dim } | PolicyKind::Deterministic { dim, .. } => dim,
        };
        if obs_dim == 0 || outputs == 0 {
            return Err(Error::invalid(
                "policy: the observation and action sizes must be >= 1",
            ));
        }
        if let PolicyKind::Deterministic { noise, bound, .. } = kind {
            if !(noise.is_finite() && noise >= 0.0)
                || bound.is_some_and(|b| !(b.is_finite() && b > 0.0))
            {
                return Err(Error::invalid(
                    "policy: exploration noise must be >= 0 and the bound > 0",
                ));
            }
        }
        let hidden: Vec<String> = hidden.iter().map(|h| h.to_string()).collect();
        let spec = ModelSpec::parse(&format!("mlp:hidden={},act={act}", hidden.join("-")))?;
        let net = Sequential::new(&spec, &[obs_dim], outputs, seed, DType::F64)?;
        let log_std = match kind {
            PolicyKind::Gaussian { dim } => {
                if !init_log_std.is_finite() {
                    return Err(Error::invalid("policy: init_log_std must be finite"));
                }
                Some(Param {
                    name: "log_std".into(),
                    var: Var::from_tensor(&Tensor::full(init_log_std, dim, &Device::Cpu)?)?,
                })
            }
            _ => None,
        };
        Ok(Policy {
            kind,
            net,
            log_std,
            obs_dim,
        })
    }

    /// The parameters: the network's (state-dict order), then `log_std`.
    pub fn params(&self) -> Vec<Param> {
        let mut p = self.net.params();
        p.extend(self.log_std.clone());
        p
    }

    fn batch(&self, obs: &[f64], rows: usize) -> Result<Tensor> {
        if obs.len() != rows * self.obs_dim || obs.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid(format!(
                "policy: expected {rows} finite observations of {} values",
                self.obs_dim
            )));
        }
        Ok(Tensor::from_slice(obs, (rows, self.obs_dim), &Device::Cpu)?)
    }

    /// The network's state dict (PyTorch names) followed by `log_std` for a Gaussian.
    pub fn state_dict(&self) -> Vec<(String, Tensor)> {
        let mut v = self.net.state_dict();
        v.extend(
            self.log_std
                .iter()
                .map(|p| (p.name.clone(), p.tensor().clone())),
        );
        v
    }

    /// Saves [`Policy::state_dict`] as safetensors, atomically, with the architecture and the distribution in the
    /// metadata.
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        let info = serde_json::json!({
            "model": self.net.spec().to_spec(),
            "obs_dim": self.obs_dim,
            "policy": format!("{:?}", self.kind),
        });
        let meta = std::collections::HashMap::from([("optlab".to_string(), info.to_string())]);
        crate::tensor_io::write_safetensors(path, &self.state_dict(), Some(meta))
    }

    /// Loads a policy saved by [`Policy::save`] for an environment with `obs_dim` observations and actions of
    /// `kind` (a softmax or Gaussian policy): the architecture comes from the file's metadata; a file made for
    /// other observation or action sizes is refused with one line.
    pub fn load(path: &std::path::Path, kind: PolicyKind, obs_dim: usize) -> Result<Self> {
        let meta = crate::tensor_io::read_safetensors_metadata(path)?;
        let info: serde_json::Value = meta
            .get("optlab")
            .and_then(|m| serde_json::from_str(m).ok())
            .ok_or_else(|| Error::file(path, "no optlab metadata: not a policy saved by optlab"))?;
        let saved_obs = info["obs_dim"].as_u64().unwrap_or(0) as usize;
        if saved_obs != obs_dim {
            return Err(Error::file(
                path,
                format!(
                    "the policy takes {saved_obs} observations; the environment gives {obs_dim}"
                ),
            ));
        }
        let spec = ModelSpec::parse(info["model"].as_str().unwrap_or(""))
            .map_err(|e| Error::file(path, e.to_string()))?;
        let tensors = crate::tensor_io::read_safetensors(path)?;
        let outputs = match kind {
            PolicyKind::Softmax { actions } => actions,
            PolicyKind::Gaussian { dim } | PolicyKind::Deterministic { dim, .. } => dim,
        };
        let net = Sequential::new(&spec, &[obs_dim], outputs, 0, DType::F64)?;
        let mut net_tensors = tensors.clone();
        let log_std = net_tensors.remove("log_std");
        net.load_state_dict(&net_tensors)
            .map_err(|e| Error::file(path, format!("{e} (a policy for other action sizes?)")))?;
        let log_std = match (kind, log_std) {
            (PolicyKind::Gaussian { dim }, Some(t)) if t.dims() == [dim] => Some(Param {
                name: "log_std".into(),
                var: Var::from_tensor(&t.to_dtype(DType::F64)?)?,
            }),
            (PolicyKind::Gaussian { dim }, _) => {
                return Err(Error::file(
                    path,
                    format!("a Gaussian policy needs log_std of {dim} values"),
                ))
            }
            _ => None,
        };
        Ok(Policy {
            kind,
            net,
            log_std,
            obs_dim,
        })
    }

    /// The network's output on a batch: logits, means, or (squashed) actions.
    pub fn forward(&self, obs: &Tensor) -> Result<Tensor> {
        let out = self.net.forward(obs)?;
        Ok(match self.kind {
            PolicyKind::Deterministic { bound: Some(b), .. } => out.tanh()?.affine(b, 0.0)?,
            _ => out,
        })
    }

    /// log π(a|s) for a batch: `obs` [b, obs_dim]; `actions` [b] (indices as f64) for the softmax policy or
    /// [b, dim] for the Gaussian. Differentiable in the parameters.
    pub fn log_prob(&self, obs: &Tensor, actions: &Tensor) -> Result<Tensor> {
        match self.kind {
            PolicyKind::Softmax { actions: n } => {
                let logp = log_softmax(&self.forward(obs)?)?;
                let idx = actions.to_dtype(DType::U32)?;
                let max = idx.max_all()?.to_scalar::<u32>()? as usize;
                if max >= n {
                    return Err(Error::invalid(format!(
                        "policy: action {max} is outside 0..{n}"
                    )));
                }
                Ok(logp.gather(&idx.unsqueeze(1)?, 1)?.squeeze(1)?)
            }
            PolicyKind::Gaussian { dim } => {
                let mean = self.forward(obs)?;
                let log_std = self
                    .log_std
                    .as_ref()
                    .expect("a Gaussian has log_std")
                    .tensor();
                let z = actions
                    .broadcast_sub(&mean)?
                    .broadcast_div(&log_std.exp()?)?;
                let c = 0.5 * (2.0 * std::f64::consts::PI).ln() * dim as f64;
                Ok(z.sqr()?
                    .sum(D::Minus1)?
                    .affine(-0.5, -c)?
                    .broadcast_sub(&log_std.sum_all()?)?)
            }
            PolicyKind::Deterministic { .. } => Err(Error::invalid(
                "policy: a deterministic policy has no log-probability",
            )),
        }
    }

    /// An action for one observation: sampled (softmax, Gaussian), or the network's output plus exploration
    /// noise (deterministic, `explore`); with `explore = false` the greedy / mean / noiseless action.
    pub fn act(&self, obs: &[f64], rng: &mut Rng, explore: bool) -> Result<Action> {
        let out: Vec<f64> = self
            .forward(&self.batch(obs, 1)?)?
            .flatten_all()?
            .to_vec1()?;
        Ok(match self.kind {
            PolicyKind::Softmax { .. } => {
                let m = out.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let w: Vec<f64> = out.iter().map(|v| (v - m).exp()).collect();
                if !explore {
                    let best = w
                        .iter()
                        .enumerate()
                        .fold(0, |b, (i, v)| if *v > w[b] { i } else { b });
                    return Ok(Action::Discrete(best));
                }
                let total: f64 = w.iter().sum();
                let u = rng.gen::<f64>() * total;
                let mut acc = 0.0;
                let mut pick = w.len() - 1;
                for (i, v) in w.iter().enumerate() {
                    acc += v;
                    if u < acc {
                        pick = i;
                        break;
                    }
                }
                Action::Discrete(pick)
            }
            PolicyKind::Gaussian { .. } => {
                if !explore {
                    return Ok(Action::Continuous(out));
                }
                let std: Vec<f64> = self
                    .log_std
                    .as_ref()
                    .expect("a Gaussian has log_std")
                    .tensor()
                    .exp()?
                    .to_vec1()?;
                Action::Continuous(
                    out.iter()
                        .zip(&std)
                        .map(|(m, s)| m + s * normal(rng))
                        .collect(),
                )
            }
            PolicyKind::Deterministic { noise, .. } => Action::Continuous(if explore {
                out.iter().map(|m| m + noise * normal(rng)).collect()
            } else {
                out
            }),
        })
    }

    /// H·v for the Hessian of `objective(self)` in the parameters ([`Policy::params`] order; `v` one tensor per
    /// parameter), by differentiating ⟨∇objective, v⟩ once more. Needs second-order gradients enabled
    /// ([`crate::require_second_order`]).
    pub fn hvp(
        &self,
        objective: impl Fn(&Policy) -> Result<Tensor>,
        v: &[Tensor],
    ) -> Result<Vec<Tensor>> {
        let params = self.params();
        let ts: Vec<&Tensor> = params.iter().map(Param::tensor).collect();
        if v.len() != params.len() {
            return Err(Error::Shape(
                "policy hvp: one direction per parameter, of its shape".into(),
            ));
        }
        crate::hvp(&objective(self)?, &ts, v)?.ok_or_else(|| {
            Error::invalid("policy hvp: the objective does not depend on the parameters")
        })
    }
}

/// log softmax over the last dimension, computed stably.
fn log_softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}
