//! PowerNorm (P12, Shen et al. 2020) for sequence models, with the official code's semantics
//! (sIncerass/powernorm@9ea6226, fairseq/modules/norms/mask_powernorm.py; golden tests in tests/norm.rs).
//!
//! Input (T, B, C) with an optional padding mask (B, T) (true = padding):
//! 1. GroupScaling: s = x / √(mean over the channel's group of x² + 1e-5), per (t, b, group); differentiable.
//! 2. ψ²[c] = mean of s² over the non-padded tokens.
//! 3. z = s/√(ψ² + ε) while iter ≤ warmup, else s/√(φ + ε) with the running φ from before this call.
//! 4. φ ← φ(iter−1)/iter + ψ²/iter while iter < warmup, then always φ ← α_fwd φ + (1 − α_fwd) ψ².
//! 5. y = w z + b.
//!
//! The backward of step 3 is the paper's approximate one (a custom op): with g = ∂L/∂z,
//! g̃ = g − (1 − α_bkw) Γ z, Γ ← Γ + mean over all B·T positions of g̃ z (a plain running sum, as in the official
//! code), and ∂L/∂s = g̃ / √(ψ² + ε) with the batch ψ² even after warmup. Eval: y = w s/√(φ + ε) + b.

use crate::{Error, Result};
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor, Var, D};
use std::sync::{Arc, Mutex};

/// PowerNorm's hyperparameters (official defaults: ε 1e-5, α_fwd = α_bkw = 0.9, warmup 10 000, one group).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerNormConfig {
    pub eps: f64,
    pub alpha_fwd: f64,
    pub alpha_bkw: f64,
    pub warmup: u64,
    pub groups: usize,
}

impl Default for PowerNormConfig {
    fn default() -> Self {
        PowerNormConfig {
            eps: 1e-5,
            alpha_fwd: 0.9,
            alpha_bkw: 0.9,
            warmup: 10_000,
            groups: 1,
        }
    }
}

/// A PowerNorm layer: affine parameters and the running state.
#[derive(Debug)]
pub struct PowerNorm {
    pub weight: Var,
    pub bias: Var,
    pub cfg: PowerNormConfig,
    /// Running quadratic mean φ per channel.
    pub running_phi: Vec<f32>,
    /// Γ per channel, accumulated by the backward pass.
    pub ema_gz: Arc<Mutex<Vec<f32>>>,
    pub iters: u64,
}

/// z = s·k[c] forward; the approximate backward described in the module docs.
struct PowerScale {
    k: Vec<f32>,
    k_batch: Vec<f32>,
    gamma: Arc<Mutex<Vec<f32>>>,
    alpha_bkw: f32,
}

impl CustomOp1 for PowerScale {
    fn name(&self) -> &'static str {
        "powernorm-scale"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(v) = storage else {
            return Err(candle_core::Error::Msg("PowerNorm runs in f32".into()));
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            return Err(candle_core::Error::Msg(
                "PowerNorm needs a contiguous input".into(),
            ));
        };
        let c = self.k.len();
        let out: Vec<f32> = v[start..end]
            .iter()
            .enumerate()
            .map(|(i, s)| s * self.k[i % c])
            .collect();
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, _s: &Tensor, z: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let c = self.k.len();
        let dev = z.device();
        let mut gamma = self.gamma.lock().expect("PowerNorm state");
        let gam = Tensor::from_slice(&gamma, c, dev)?;
        let gt = (g - z.broadcast_mul(&(gam * f64::from(1.0 - self.alpha_bkw))?)?)?;
        // Γ += mean over positions of g̃ z, per channel.
        let positions = gt.elem_count() / c;
        let gz: Vec<f32> = (&gt * z)?.reshape((positions, c))?.sum(0)?.to_vec1()?;
        gamma
            .iter_mut()
            .zip(gz)
            .for_each(|(a, b)| *a += b / positions as f32);
        let kb = Tensor::from_slice(&self.k_batch, c, dev)?;
        Ok(Some(gt.broadcast_mul(&kb)?))
    }
}

impl PowerNorm {
    /// Weight 1, bias 0, φ = 1, Γ = 0.
    pub fn new(
        channels: usize,
        cfg: PowerNormConfig,
        device: &candle_core::Device,
    ) -> Result<Self> {
        if channels == 0 || cfg.groups == 0 || !channels.is_multiple_of(cfg.groups) {
            return Err(Error::Shape(format!(
                "PowerNorm: {} groups do not divide {channels} channels",
                cfg.groups
            )));
        }
        if !(cfg.eps > 0.0
            && (0.0..=1.0).contains(&cfg.alpha_fwd)
            && (0.0..=1.0).contains(&cfg.alpha_bkw))
        {
            return Err(Error::invalid(format!(
                "PowerNorm: eps must be positive and alpha_fwd, alpha_bkw in [0, 1] ({cfg:?})"
            )));
        }
        Ok(PowerNorm {
            weight: Var::ones(channels, candle_core::DType::F32, device)?,
            bias: Var::zeros(channels, candle_core::DType::F32, device)?,
            cfg,
            running_phi: vec![1.0; channels],
            ema_gz: Arc::new(Mutex::new(vec![0.0; channels])),
            iters: 0,
        })
    }

    /// GroupScaling: x divided by the root mean square of its channel group (plus 1e-5), per position.
    pub fn group_scaling(&self, x: &Tensor) -> Result<Tensor> {
        let (t, b, c) = x.dims3()?;
        let g = self.cfg.groups;
        let xg = x.reshape((t, b, g, c / g))?;
        let r = (xg.sqr()?.mean_keepdim(D::Minus1)? + 1e-5)?.sqrt()?;
        Ok(xg.broadcast_div(&r)?.reshape((t, b, c))?)
    }

    /// The forward pass of input (T, B, C) with an optional padding mask `pad[b][t]`; `train` updates the state.
    pub fn forward(
        &mut self,
        x: &Tensor,
        pad: Option<&[Vec<bool>]>,
        train: bool,
    ) -> Result<Tensor> {
        let x = if x.rank() == 2 {
            x.unsqueeze(0)?
        } else {
            x.clone()
        };
        let (t, b, c) = x.dims3().map_err(|_| {
            Error::Shape(format!(
                "PowerNorm expects (T, B, C) or (B, C) inputs, got {:?}",
                x.dims()
            ))
        })?;
        if c != self.running_phi.len() {
            return Err(Error::Shape(format!(
                "PowerNorm has {} channels, the input {c}",
                self.running_phi.len()
            )));
        }
        if let Some(p) = pad {
            if p.len() != b || p.iter().any(|r| r.len() != t) {
                return Err(Error::Shape(format!("the padding mask must be ({b}, {t})")));
            }
        }
        let s = self.group_scaling(&x)?.contiguous()?;
        let eps = self.cfg.eps as f32;
        let z = if train {
            self.iters += 1;
            let it = self.iters;
            // ψ² over the non-padded tokens.
            let sv: Vec<Vec<Vec<f32>>> = s.detach().to_vec3()?;
            let (mut psi2, mut count) = (vec![0.0f64; c], 0usize);
            for (ti, row) in sv.iter().enumerate() {
                for (bi, v) in row.iter().enumerate() {
                    if pad.is_some_and(|p| p[bi][ti]) {
                        continue;
                    }
                    count += 1;
                    psi2.iter_mut()
                        .zip(v)
                        .for_each(|(a, s)| *a += f64::from(s * s));
                }
            }
            if count == 0 {
                return Err(Error::invalid(
                    "PowerNorm: every token of the batch is padding",
                ));
            }
            let psi2: Vec<f32> = psi2.iter().map(|v| (v / count as f64) as f32).collect();
            let inv = |d: &[f32]| {
                d.iter()
                    .map(|v| 1.0 / (v + eps).sqrt())
                    .collect::<Vec<f32>>()
            };
            let k_batch = inv(&psi2);
            let k = if it <= self.cfg.warmup {
                k_batch.clone()
            } else {
                inv(&self.running_phi)
            };
            let a = self.cfg.alpha_fwd as f32;
            for (phi, p) in self.running_phi.iter_mut().zip(&psi2) {
                if it < self.cfg.warmup {
                    *phi = *phi * (it - 1) as f32 / it as f32 + p / it as f32;
                }
                *phi = a * *phi + (1.0 - a) * p;
            }
            let op = PowerScale {
                k,
                k_batch,
                gamma: self.ema_gz.clone(),
                alpha_bkw: self.cfg.alpha_bkw as f32,
            };
            s.apply_op1(op)?
        } else {
            let k: Vec<f32> = self
                .running_phi
                .iter()
                .map(|v| 1.0 / (v + eps).sqrt())
                .collect();
            s.broadcast_mul(&Tensor::from_slice(&k, c, s.device())?)?
        };
        Ok(z.broadcast_mul(self.weight.as_tensor())?
            .broadcast_add(self.bias.as_tensor())?)
    }
}
