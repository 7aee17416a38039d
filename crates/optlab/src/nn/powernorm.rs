//! PowerNorm (P12, Shen et al. 2020) for sequence models, with the official code's semantics
//! (sIncerass/powernorm@9ea6226, fairseq/modules/norms/mask_powernorm.py; golden tests in tests/norm.rs).
//!
//! Input (T, B, C) with an optional padding mask (B, T) (true = padding):
//! 1. GroupScaling: s = x / √(mean over the channel's group of x² + 1e-5), per (t, b, group); differentiable.
//! 2. ψ²\[c\] = mean of s² over the non-padded tokens.
//! 3. z = s/√(ψ² + ε) while iter ≤ warmup, else s/√(φ + ε) with the running φ from before this call.
//! 4. φ ← φ(iter−1)/iter + ψ²/iter while iter < warmup, then always φ ← α_fwd φ + (1 − α_fwd) ψ².
//! 5. y = w z + b.
//!
//! The backward of step 3 is the paper's approximate one (a custom op): with g = ∂L/∂z,
//! g̃ = g − (1 − α_bkw) Γ z, Γ ← Γ + mean over all B·T positions of g̃ z (a plain running sum, as in the official
//! code), and ∂L/∂s = g̃ / √(ψ² + ε) with the batch ψ² even after warmup. Eval: y = w s/√(φ + ε) + b.
//! (The paper's Algorithm 2 divides by the running statistic in the backward too; we follow the code, whose
//! backward is what the published models were trained with.)
//!
//! The state (φ, Γ and the call counter) is shared by clones of the layer, like BatchNorm's running buffers, and
//! saved under the official buffer names `running_phi`, `ema_gz` (shape (1, C, 1, 1)) and `iters` (shape (1)).
//! It is kept at the layer's precision (rounded to f32 in an f32 layer), so a saved state reloads bit-exactly.
//! [`PowerNorm::forward_positions`] takes any `[..., C]` input (a transformer's (B, T, C)); every position is
//! one token of the statistics.

use super::Param;
use crate::{Error, Result};
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor, Var, D};
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

/// The running state of a PowerNorm layer.
#[derive(Debug, Clone, PartialEq)]
pub struct PowerNormState {
    /// Running quadratic mean φ per channel.
    pub running_phi: Vec<f64>,
    /// Γ per channel, accumulated by the backward pass.
    pub ema_gz: Vec<f64>,
    /// Training forward calls so far.
    pub iters: u64,
    /// Whether values are rounded to f32 (the layer's precision).
    f32: bool,
}

impl PowerNormState {
    fn round(&self, v: f64) -> f64 {
        if self.f32 {
            f64::from(v as f32)
        } else {
            v
        }
    }
}

/// A PowerNorm layer: affine parameters (state-dict names `weight`, `bias`) and the shared running state.
#[derive(Debug, Clone)]
pub struct PowerNorm {
    pub weight: Param,
    pub bias: Param,
    pub cfg: PowerNormConfig,
    pub state: Arc<Mutex<PowerNormState>>,
    /// The state-dict prefix (`3.` or `1.norm1.`).
    prefix: String,
}

/// z = s·k[c] forward; the approximate backward described in the module docs.
struct PowerScale {
    k: Vec<f64>,
    k_batch: Vec<f64>,
    state: Arc<Mutex<PowerNormState>>,
    alpha_bkw: f64,
}

fn scale_rows<T: Copy + std::ops::Mul<Output = T>>(v: &[T], k: &[T]) -> Vec<T> {
    let c = k.len();
    v.iter().enumerate().map(|(i, s)| *s * k[i % c]).collect()
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
        let Some((start, end)) = layout.contiguous_offsets() else {
            return Err(candle_core::Error::Msg(
                "PowerNorm needs a contiguous input".into(),
            ));
        };
        let out = match storage {
            CpuStorage::F32(v) => {
                let k: Vec<f32> = self.k.iter().map(|&x| x as f32).collect();
                CpuStorage::F32(scale_rows(&v[start..end], &k))
            }
            CpuStorage::F64(v) => CpuStorage::F64(scale_rows(&v[start..end], &self.k)),
            _ => {
                return Err(candle_core::Error::Msg(
                    "PowerNorm runs in f32 or f64".into(),
                ))
            }
        };
        Ok((out, layout.shape().clone()))
    }

    fn bwd(&self, _s: &Tensor, z: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let c = self.k.len();
        let (dev, dt) = (z.device(), z.dtype());
        let mut st = self.state.lock().expect("PowerNorm state");
        let gam = Tensor::from_slice(&st.ema_gz, c, dev)?.to_dtype(dt)?;
        let gt = (g - z.broadcast_mul(&(gam * (1.0 - self.alpha_bkw))?)?)?;
        // Γ += mean over all positions of g̃ z, per channel.
        let positions = gt.elem_count() / c;
        let gz: Vec<f64> = super::fused::sum_rows(&(&gt * z)?)?
            .to_dtype(DType::F64)?
            .to_vec1()?;
        for (i, v) in gz.into_iter().enumerate() {
            st.ema_gz[i] = st.round(st.ema_gz[i] + st.round(v / positions as f64));
        }
        let kb = Tensor::from_slice(&self.k_batch, c, dev)?.to_dtype(dt)?;
        Ok(Some(gt.broadcast_mul(&kb)?))
    }
}

impl PowerNorm {
    /// A layer for `channels` channels whose state-dict names start with `prefix`: weight 1, bias 0, φ = 1,
    /// Γ = 0 (the official init), in `dtype` (f32 or f64).
    pub fn new(prefix: &str, channels: usize, cfg: PowerNormConfig, dtype: DType) -> Result<Self> {
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
        if !matches!(dtype, DType::F32 | DType::F64) {
            return Err(Error::invalid(format!(
                "PowerNorm runs in f32 or f64, not {dtype:?}"
            )));
        }
        let dev = candle_core::Device::Cpu;
        let param = |name: &str, v: f64| -> Result<Param> {
            Ok(Param {
                name: format!("{prefix}{name}"),
                var: Var::from_tensor(&(Tensor::ones(channels, dtype, &dev)? * v)?)?,
            })
        };
        Ok(PowerNorm {
            weight: param("weight", 1.0)?,
            bias: param("bias", 0.0)?,
            cfg,
            state: Arc::new(Mutex::new(PowerNormState {
                running_phi: vec![1.0; channels],
                ema_gz: vec![0.0; channels],
                iters: 0,
                f32: dtype == DType::F32,
            })),
            prefix: prefix.to_string(),
        })
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.weight.numel()
    }

    /// GroupScaling: x `[..., C]` divided by the root mean square of its channel group (plus 1e-5), per
    /// position.
    pub fn group_scaling(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let c = *dims.last().unwrap_or(&0);
        let g = self.cfg.groups;
        let xg = x.reshape((x.elem_count() / c.max(1), g, c / g))?;
        let r = (xg.sqr()?.mean_keepdim(D::Minus1)? + 1e-5)?.sqrt()?;
        Ok(xg.broadcast_div(&r)?.reshape(dims)?)
    }

    /// The official layout: input (T, B, C) or (B, C) with an optional padding mask `pad[b][t]` (true =
    /// padding, excluded from the statistics); `train` uses batch statistics and updates the state.
    pub fn forward(&self, x: &Tensor, pad: Option<&[Vec<bool>]>, train: bool) -> Result<Tensor> {
        let (t, b) = match x.dims() {
            [t, b, _] => (*t, *b),
            [b, _] => (1, *b),
            d => {
                return Err(Error::Shape(format!(
                    "PowerNorm expects (T, B, C) or (B, C) inputs, got {d:?}"
                )))
            }
        };
        let keep: Option<Vec<bool>> = match pad {
            None => None,
            Some(p) => {
                if p.len() != b || p.iter().any(|r| r.len() != t) {
                    return Err(Error::Shape(format!("the padding mask must be ({b}, {t})")));
                }
                Some(
                    (0..t)
                        .flat_map(|ti| (0..b).map(move |bi| (ti, bi)))
                        .map(|(ti, bi)| !p[bi][ti])
                        .collect(),
                )
            }
        };
        self.forward_positions(x, keep.as_deref(), train)
    }

    /// Input `[..., C]`: every position is a token; `keep` (one flag per position, row-major) excludes padding
    /// from the statistics.
    pub fn forward_positions(
        &self,
        x: &Tensor,
        keep: Option<&[bool]>,
        train: bool,
    ) -> Result<Tensor> {
        let c = self.channels();
        if x.rank() < 2 || x.dims()[x.rank() - 1] != c {
            return Err(Error::Shape(format!(
                "PowerNorm has {c} channels; the input has shape {:?}",
                x.dims()
            )));
        }
        let positions = x.elem_count() / c;
        if keep.is_some_and(|k| k.len() != positions) {
            return Err(Error::Shape(format!(
                "PowerNorm: {} mask flags for {positions} positions",
                keep.map_or(0, <[bool]>::len)
            )));
        }
        let s = self.group_scaling(x)?.contiguous()?;
        let eps = self.cfg.eps;
        let inv = |d: &[f64]| {
            d.iter()
                .map(|v| 1.0 / (v + eps).sqrt())
                .collect::<Vec<f64>>()
        };
        let z = if train {
            let mut st = self.state.lock().expect("PowerNorm state");
            st.iters += 1;
            let it = st.iters;
            // ψ² over the kept positions.
            let sv: Vec<f64> = s.detach().flatten_all()?.to_dtype(DType::F64)?.to_vec1()?;
            let (mut psi2, mut count) = (vec![0.0f64; c], 0usize);
            for (p, row) in sv.chunks_exact(c).enumerate() {
                if keep.is_some_and(|k| !k[p]) {
                    continue;
                }
                count += 1;
                psi2.iter_mut().zip(row).for_each(|(a, s)| *a += s * s);
            }
            if count == 0 {
                return Err(Error::invalid(
                    "PowerNorm: every token of the batch is padding",
                ));
            }
            let psi2: Vec<f64> = psi2.iter().map(|v| st.round(v / count as f64)).collect();
            let k_batch = inv(&psi2);
            let k = if it <= self.cfg.warmup {
                k_batch.clone()
            } else {
                inv(&st.running_phi)
            };
            let a = self.cfg.alpha_fwd;
            for (i, &p) in psi2.iter().enumerate() {
                let mut phi = st.running_phi[i];
                if it < self.cfg.warmup {
                    phi = st.round(phi * (it - 1) as f64 / it as f64 + p / it as f64);
                }
                st.running_phi[i] = st.round(a * phi + (1.0 - a) * p);
            }
            drop(st);
            s.apply_op1(PowerScale {
                k,
                k_batch,
                state: self.state.clone(),
                alpha_bkw: self.cfg.alpha_bkw,
            })?
        } else {
            let k = inv(&self.state.lock().expect("PowerNorm state").running_phi);
            s.broadcast_mul(&Tensor::from_slice(&k, c, s.device())?.to_dtype(s.dtype())?)?
        };
        Ok(z.broadcast_mul(self.weight.tensor())?
            .broadcast_add(self.bias.tensor())?)
    }

    /// The buffers with the official names and shapes: `running_phi`, `ema_gz` (1, C, 1, 1), `iters` (1).
    pub fn buffers(&self) -> Result<Vec<(String, Tensor)>> {
        let st = self.state.lock().expect("PowerNorm state");
        let c = self.channels();
        let dt = self.weight.var.dtype();
        let dev = candle_core::Device::Cpu;
        let p = &self.prefix;
        Ok(vec![
            (
                format!("{p}running_phi"),
                Tensor::from_slice(&st.running_phi, (1, c, 1, 1), &dev)?.to_dtype(dt)?,
            ),
            (
                format!("{p}ema_gz"),
                Tensor::from_slice(&st.ema_gz, (1, c, 1, 1), &dev)?.to_dtype(dt)?,
            ),
            (
                format!("{p}iters"),
                Tensor::from_slice(&[st.iters as i64], 1, &dev)?,
            ),
        ])
    }

    /// Loads one buffer from a state dict; `false` when `name` is not one of this layer's.
    pub fn load_buffer(&self, name: &str, t: &Tensor) -> Result<bool> {
        let Some(rest) = name.strip_prefix(self.prefix.as_str()) else {
            return Ok(false);
        };
        if !matches!(rest, "running_phi" | "ema_gz" | "iters") {
            return Ok(false);
        }
        let v: Vec<f64> = t.flatten_all()?.to_dtype(DType::F64)?.to_vec1()?;
        let c = self.channels();
        let want = if rest == "iters" { 1 } else { c };
        if v.len() != want {
            return Err(Error::Shape(format!(
                "'{name}' has {} values in the file; the layer needs {want}",
                v.len()
            )));
        }
        if v.iter().any(|x| !x.is_finite()) || (rest == "iters" && v[0] < 0.0) {
            return Err(Error::NonFinite(format!("'{name}' holds an invalid value")));
        }
        let mut st = self.state.lock().expect("PowerNorm state");
        match rest {
            "running_phi" => st.running_phi = v.iter().map(|&x| st.round(x)).collect(),
            "ema_gz" => st.ema_gz = v.iter().map(|&x| st.round(x)).collect(),
            _ => st.iters = v[0] as u64,
        }
        Ok(true)
    }
}
