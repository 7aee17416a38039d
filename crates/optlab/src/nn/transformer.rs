//! The parts of a tiny pre-norm transformer language model (P12's setting, GPT-style decoder): token and
//! position embeddings, blocks `x + attn(norm1(x))`, `x + mlp(norm2(x))` with causal multi-head
//! self-attention, and the sequence normalizations compared in P12: LayerNorm, PowerNorm and a naive
//! BatchNorm over all B·T positions. Activations are (B, T, C).

use super::linear::linear;
use super::norm::RunningStats;
use super::param::Parametrization;
use super::powernorm::{PowerNorm, PowerNormConfig};
use super::tape::{self, Site};
use super::Param;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, D};
use std::sync::{Arc, Mutex};

/// A tiny pre-norm causal transformer language model. Its state dict, as the PyTorch module of
/// `tools/reference/transformer_fixture.py` names it: `0.tok.weight` `[V, C]`, `0.pos.weight` `[T, C]`; per block
/// `i` = 1..=layers: `i.norm1.*`, `i.attn.qkv.{weight,bias}` `[3C, C]`, `i.attn.proj.*` `[C, C]`, `i.norm2.*`,
/// `i.mlp.fc.*` `[rC, C]`, `i.mlp.proj.*` `[C, rC]`; then the final norm (`layers+1.*`, absent with norm=none) and
/// the head `[V, C]`. Initialisation is PyTorch's default (Linear U(±1/√fan_in), Embedding N(0, 1)).
#[derive(Debug, Clone, PartialEq)]
pub struct TransformerSpec {
    pub layers: usize,
    /// The model width C (muP's width).
    pub dim: usize,
    /// Attention heads (fixed as the width grows, so the head dimension grows).
    pub heads: usize,
    /// The MLP's hidden width as a multiple of `dim`.
    pub mlp: usize,
    pub norm: Option<SeqNormKind>,
    /// PowerNorm's warmup in training calls (official: the learning-rate warmup).
    pub pn_warmup: u64,
    pub param: Parametrization,
}

impl TransformerSpec {
    pub(crate) fn validate(&self) -> Result<()> {
        let (layers, dim, heads, mlp) = (self.layers, self.dim, self.heads, self.mlp);
        if layers == 0 || dim == 0 || heads == 0 || mlp == 0 {
            return Err(Error::invalid(
                "layers, dim, heads and mlp must be positive",
            ));
        }
        if !dim.is_multiple_of(heads) {
            return Err(Error::invalid(format!(
                "heads={heads} must divide dim={dim}"
            )));
        }
        if let Parametrization::Mup { base } = self.param {
            if !base.is_multiple_of(heads) {
                return Err(Error::invalid(format!(
                    "heads={heads} must divide the base width {base}"
                )));
            }
        }
        Ok(())
    }

    pub(crate) fn to_spec(&self) -> String {
        let pn = if self.norm == Some(SeqNormKind::Power) {
            format!(",pn_warmup={}", self.pn_warmup)
        } else {
            String::new()
        };
        format!(
            "transformer:layers={},dim={},heads={},mlp={},norm={}{pn}{}",
            self.layers,
            self.dim,
            self.heads,
            self.mlp,
            self.norm.map_or("none", SeqNormKind::name),
            self.param.to_spec()
        )
    }
}

/// The normalization of a transformer's residual branches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqNormKind {
    /// `nn.LayerNorm(C)` (eps 1e-5).
    Layer,
    /// PowerNorm (P12), groups = heads as in the official `NormSelect`.
    Power,
    /// `nn.BatchNorm1d(C)` over all B·T positions (momentum 0.1, eps 1e-5): the naive baseline.
    Batch,
}

impl SeqNormKind {
    /// Parses `ln`, `pn`, `bn` or `none`.
    pub fn parse(s: &str) -> Result<Option<Self>> {
        match s {
            "ln" => Ok(Some(SeqNormKind::Layer)),
            "pn" => Ok(Some(SeqNormKind::Power)),
            "bn" => Ok(Some(SeqNormKind::Batch)),
            "none" => Ok(None),
            other => Err(Error::invalid(format!(
                "transformer norm `{other}`: available: ln (LayerNorm), pn (PowerNorm), bn (BatchNorm), none"
            ))),
        }
    }

    /// The spec name.
    pub fn name(self) -> &'static str {
        match self {
            SeqNormKind::Layer => "ln",
            SeqNormKind::Power => "pn",
            SeqNormKind::Batch => "bn",
        }
    }
}

/// One normalization layer of a transformer, named `<prefix>weight`, `<prefix>bias` (+ buffers).
#[derive(Debug, Clone)]
pub enum SeqNorm {
    Layer {
        weight: Param,
        bias: Param,
    },
    Power(PowerNorm),
    Batch {
        weight: Param,
        bias: Param,
        stats: Arc<Mutex<RunningStats>>,
        prefix: String,
    },
}

fn affine(prefix: &str, c: usize, dtype: DType) -> Result<(Param, Param)> {
    let p = |name: &str, v: f64| -> Result<Param> {
        Ok(Param {
            name: format!("{prefix}{name}"),
            var: candle_core::Var::from_tensor(&(Tensor::ones(c, dtype, &Device::Cpu)? * v)?)?,
        })
    };
    Ok((p("weight", 1.0)?, p("bias", 0.0)?))
}

pub use super::fused::layer_norm;

impl SeqNorm {
    /// A layer of `kind` for `c` channels; `pn` configures PowerNorm.
    pub fn new(
        kind: SeqNormKind,
        prefix: &str,
        c: usize,
        pn: PowerNormConfig,
        dtype: DType,
    ) -> Result<Self> {
        Ok(match kind {
            SeqNormKind::Layer => {
                let (weight, bias) = affine(prefix, c, dtype)?;
                SeqNorm::Layer { weight, bias }
            }
            SeqNormKind::Power => SeqNorm::Power(PowerNorm::new(prefix, c, pn, dtype)?),
            SeqNormKind::Batch => {
                let (weight, bias) = affine(prefix, c, dtype)?;
                let mut s = RunningStats::new(c, &Device::Cpu)?;
                s.mean = s.mean.to_dtype(dtype)?;
                s.var = s.var.to_dtype(dtype)?;
                SeqNorm::Batch {
                    weight,
                    bias,
                    stats: Arc::new(Mutex::new(s)),
                    prefix: prefix.to_string(),
                }
            }
        })
    }

    /// Normalizes (B, T, C); `train` selects batch statistics (BatchNorm, PowerNorm) and updates the state;
    /// `keep` (one flag per position) leaves padding out of the statistics.
    pub fn forward(&self, x: &Tensor, train: bool, keep: Option<&[bool]>) -> Result<Tensor> {
        match self {
            SeqNorm::Layer { weight, bias } => {
                let y = layer_norm(x, weight.tensor(), bias.tensor())?;
                if !tape::active() {
                    return Ok(y);
                }
                // x̂ for the per-sample affine gradients, outside the graph.
                let x = x.detach();
                let mean = x.mean_keepdim(D::Minus1)?;
                let xc = x.broadcast_sub(&mean)?;
                let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
                let normalized = xc.broadcast_div(&(var + 1e-5)?.sqrt()?)?;
                tape::probe(y, |probe| Site::Affine {
                    weight: weight.tensor().id(),
                    bias: bias.tensor().id(),
                    channel_axis: normalized.rank() - 1,
                    normalized,
                    probe,
                })
            }
            SeqNorm::Power(p) => p.forward_positions(x, keep, train),
            SeqNorm::Batch {
                weight,
                bias,
                stats,
                ..
            } => {
                let mut s = stats.lock().expect("batch norm stats");
                super::norm::batch_norm_rows(x, keep, weight.tensor(), bias.tensor(), &mut s, train)
            }
        }
    }

    /// The affine parameters.
    pub fn params(&self) -> Vec<&Param> {
        match self {
            SeqNorm::Layer { weight, bias } | SeqNorm::Batch { weight, bias, .. } => {
                vec![weight, bias]
            }
            SeqNorm::Power(p) => vec![&p.weight, &p.bias],
        }
    }

    /// The running buffers with their state-dict names (none for LayerNorm).
    pub fn buffers(&self) -> Result<Vec<(String, Tensor)>> {
        match self {
            SeqNorm::Layer { .. } => Ok(Vec::new()),
            SeqNorm::Power(p) => p.buffers(),
            SeqNorm::Batch { stats, prefix, .. } => {
                super::norm::stats_buffers(&stats.lock().expect("stats"), prefix)
            }
        }
    }

    /// Loads one buffer; `false` when `name` is not one of this layer's.
    pub fn load_buffer(&self, name: &str, t: &Tensor) -> Result<bool> {
        match self {
            SeqNorm::Layer { .. } => Ok(false),
            SeqNorm::Power(p) => p.load_buffer(name, t),
            SeqNorm::Batch { stats, prefix, .. } => {
                super::norm::load_stats_buffer(&mut stats.lock().expect("stats"), prefix, name, t)
            }
        }
    }

    /// e.g. `LayerNorm(64)`.
    pub fn describe(&self) -> String {
        match self {
            SeqNorm::Layer { weight, .. } => format!("LayerNorm({})", weight.numel()),
            SeqNorm::Power(p) => format!("PowerNorm({}, groups={})", p.channels(), p.cfg.groups),
            SeqNorm::Batch { weight, .. } => format!("BatchNorm1d({})", weight.numel()),
        }
    }
}

/// A Linear child (`<prefix>weight` `[out, in]`, `<prefix>bias`) applied to the last dimension.
#[derive(Debug, Clone)]
pub struct Dense {
    pub weight: Param,
    pub bias: Param,
}

impl Dense {
    /// y = x Wᵀ + b over the last dimension of x.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        linear_nd(x, self.weight.tensor(), Some(self.bias.tensor()))
    }
}

/// [`linear`] over the last dimension of an input of any rank ≥ 2 (a per-sample [`tape`] site).
pub fn linear_nd(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let y = linear(x, w, b)?;
    tape::probe(y, |probe| Site::Linear {
        weight: w.id(),
        bias: b.map(Tensor::id),
        input: x.detach(),
        probe,
    })
}

/// Causal multi-head self-attention: one `qkv` Linear(C, 3C) (queries, keys, values in that order along the
/// output), softmax(q kᵀ · scale + causal mask) v per head, then `proj` Linear(C, C).
#[derive(Debug, Clone)]
pub struct Attention {
    pub qkv: Dense,
    pub proj: Dense,
    pub heads: usize,
    /// The logit scale: 1/√d_head (standard), √(d_head,base)/d_head under muP (P42).
    pub scale: f64,
}

impl Attention {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = super::fused::causal_attention(&self.qkv.forward(x)?, self.heads, self.scale)?;
        self.proj.forward(&y)
    }
}

/// A pre-norm block: `x + attn(norm1(x))`, then `x + mlp(norm2(x))` with mlp = fc (C → rC), GELU, proj.
#[derive(Debug, Clone)]
pub struct Block {
    pub norm1: Option<SeqNorm>,
    pub attn: Attention,
    pub norm2: Option<SeqNorm>,
    pub fc: Dense,
    pub proj: Dense,
}

fn maybe_norm(
    n: &Option<SeqNorm>,
    x: &Tensor,
    train: bool,
    keep: Option<&[bool]>,
) -> Result<Tensor> {
    match n {
        Some(n) => n.forward(x, train, keep),
        None => Ok(x.clone()),
    }
}

impl Block {
    /// The block on (B, T, C); `keep` marks the non-padded positions (padding must be at the end of each
    /// sequence, so that causal attention never lets a real position see it).
    pub fn forward(&self, x: &Tensor, train: bool, keep: Option<&[bool]>) -> Result<Tensor> {
        let h = (x + self
            .attn
            .forward(&maybe_norm(&self.norm1, x, train, keep)?)?)?;
        let u = self
            .fc
            .forward(&maybe_norm(&self.norm2, &h, train, keep)?)?;
        let m = self.proj.forward(&super::fused::gelu(&u)?)?;
        Ok((h + m)?)
    }

    /// The normalization layers, in registration order.
    pub fn norms(&self) -> Vec<&SeqNorm> {
        self.norm1.iter().chain(self.norm2.iter()).collect()
    }

    /// Parameters and buffers in PyTorch's state-dict order (norm1, attn.qkv, attn.proj, norm2, mlp.fc,
    /// mlp.proj).
    pub fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut v = Vec::new();
        let norm_state = |n: &Option<SeqNorm>, v: &mut Vec<(String, Tensor)>| -> Result<()> {
            if let Some(n) = n {
                v.extend(
                    n.params()
                        .iter()
                        .map(|p| (p.name.clone(), p.tensor().clone())),
                );
                v.extend(n.buffers()?);
            }
            Ok(())
        };
        let dense = |d: &Dense| {
            [&d.weight, &d.bias]
                .map(|p| (p.name.clone(), p.tensor().clone()))
                .into_iter()
        };
        norm_state(&self.norm1, &mut v)?;
        v.extend(dense(&self.attn.qkv).chain(dense(&self.attn.proj)));
        norm_state(&self.norm2, &mut v)?;
        v.extend(dense(&self.fc).chain(dense(&self.proj)));
        Ok(v)
    }

    /// The parameters in state-dict order.
    pub fn params(&self) -> Vec<&Param> {
        let mut v: Vec<&Param> = self.norm1.iter().flat_map(SeqNorm::params).collect();
        v.extend([
            &self.attn.qkv.weight,
            &self.attn.qkv.bias,
            &self.attn.proj.weight,
            &self.attn.proj.bias,
        ]);
        v.extend(self.norm2.iter().flat_map(SeqNorm::params));
        v.extend([
            &self.fc.weight,
            &self.fc.bias,
            &self.proj.weight,
            &self.proj.bias,
        ]);
        v
    }
}

/// Token and learned position embeddings (`tok.weight` `[V, C]`, `pos.weight` `[T, C]`, both `nn.Embedding`).
/// The input is a batch of token ids `[B, T]` stored as exact small numbers in a float tensor; the id V marks
/// padding (only at the end of a sequence), whose token embedding is zero.
#[derive(Debug, Clone)]
pub struct Embedding {
    pub tok: Param,
    pub pos: Param,
}

impl Embedding {
    /// The ids of a batch, checked: integers in 0..=V (V = padding), padding only after the last real token of a
    /// sequence, sequences no longer than the context.
    pub(crate) fn ids(&self, x: &Tensor) -> Result<(Vec<u32>, usize, usize)> {
        let (b, t) = x.dims2()?;
        let vocab = self.tok.var.dims()[0];
        let ctx = self.pos.var.dims()[0];
        if t > ctx {
            return Err(Error::Shape(format!(
                "sequences of {t} tokens are longer than the model's context of {ctx}"
            )));
        }
        let ids: Vec<f64> = x.flatten_all()?.to_dtype(DType::F64)?.to_vec1()?;
        if let Some(bad) = ids
            .iter()
            .find(|v| !(v.fract() == 0.0 && **v >= 0.0 && **v <= vocab as f64))
        {
            return Err(Error::invalid(format!(
                "token id {bad} is not an integer in 0..{vocab} (the model's vocabulary; {vocab} is padding)"
            )));
        }
        let ids: Vec<u32> = ids.iter().map(|&v| v as u32).collect();
        for row in ids.chunks(t.max(1)) {
            if let Some(first) = row.iter().position(|&i| i as usize == vocab) {
                if row[first..].iter().any(|&i| (i as usize) < vocab) {
                    return Err(Error::invalid(
                        "padding (token id = vocabulary size) must come after every real token of a sequence",
                    ));
                }
            }
        }
        Ok((ids, b, t))
    }

    /// One flag per position, false at padding; `None` without padding.
    pub fn keep(&self, x: &Tensor) -> Result<Option<Vec<bool>>> {
        let vocab = self.tok.var.dims()[0] as u32;
        let (ids, _, _) = self.ids(x)?;
        Ok(ids
            .contains(&vocab)
            .then(|| ids.iter().map(|&i| i != vocab).collect()))
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (ids, b, t) = self.ids(x)?;
        let (vocab, c) = self.tok.var.dims2()?;
        let padded = ids.iter().any(|&i| i as usize == vocab);
        let idx = Tensor::from_vec(
            ids.iter()
                .map(|&i| i.min(vocab as u32 - 1))
                .collect::<Vec<u32>>(),
            b * t,
            &Device::Cpu,
        )?;
        let mut h = self.tok.tensor().index_select(&idx, 0)?;
        if padded {
            let m: Vec<f32> = ids
                .iter()
                .map(|&i| f32::from(u8::from((i as usize) < vocab)))
                .collect();
            let m = Tensor::from_vec(m, (b * t, 1), &Device::Cpu)?.to_dtype(h.dtype())?;
            h = h.broadcast_mul(&m)?;
        }
        let h = h.reshape((b, t, c))?;
        let out = h.broadcast_add(&self.pos.tensor().narrow(0, 0, t)?)?;
        tape::probe(out, |probe| Site::Embedding {
            token: self.tok.tensor().id(),
            position: self.pos.tensor().id(),
            ids: ids
                .iter()
                .map(|&i| ((i as usize) < vocab).then_some(i))
                .collect(),
            batch: b,
            seq: t,
            vocab,
            context: self.pos.var.dims()[0],
            probe,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_rows() {
        let x = Tensor::new(&[[1.0f64, 2.0, 3.0], [0.0, 0.0, 0.0]], &Device::Cpu).unwrap();
        let s = super::super::fused::softmax_last(&x)
            .unwrap()
            .to_vec2::<f64>()
            .unwrap();
        let z: f64 = [1f64, 2.0, 3.0].iter().map(|v| v.exp()).sum();
        assert!((s[0][2] - 3f64.exp() / z).abs() < 1e-15);
        assert!((s[1][0] - 1.0 / 3.0).abs() < 1e-15);
    }
}
