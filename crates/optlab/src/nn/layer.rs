//! The layers of a [`super::Sequential`] model, each with PyTorch's semantics.

use super::conv::conv2d;
use super::norm::{
    batch_norm, bcn, group_norm, load_stats_buffer, stats_buffers, weight_standardize, BcnParams,
    ChannelStats, RunningStats, WsVariant,
};
use super::tape::{self, Site};
use super::transformer::{linear_nd, Block, Embedding, SeqNorm};
use super::Param;
use crate::{Error, Result};
use candle_core::{DType, Tensor};
use std::sync::{Arc, Mutex};

/// Element-wise activations (PyTorch's `nn.ReLU`, `nn.Tanh`, `nn.GELU` with the exact erf form).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Relu,
    Tanh,
    Gelu,
}

impl Activation {
    /// Parses `relu`, `tanh` or `gelu`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "relu" => Ok(Activation::Relu),
            "tanh" => Ok(Activation::Tanh),
            "gelu" => Ok(Activation::Gelu),
            other => Err(Error::invalid(format!(
                "unknown activation '{other}'; available: relu, tanh, gelu"
            ))),
        }
    }

    /// The name used in spec strings.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
            Activation::Gelu => "gelu",
        }
    }

    pub(crate) fn apply(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::Relu => super::fused::relu(x),
            Activation::Tanh => x.tanh(),
            Activation::Gelu => super::fused::gelu_exact(x),
        }
    }
}

/// One entry of an `nn.Sequential`.
#[derive(Debug, Clone)]
pub enum Layer {
    /// `nn.Linear`: y = x Wᵀ + b, W of shape `[out, in]`.
    Linear { weight: Param, bias: Option<Param> },
    /// `nn.Conv2d` with square stride 1 and the given zero padding; weight `[out, in, k, k]`. With
    /// `standardize`, the weight is standardized per output channel first (Weight Standardization, P01).
    Conv2d {
        weight: Param,
        bias: Option<Param>,
        padding: usize,
        standardize: bool,
    },
    /// A normalization layer after a convolution (P01).
    Norm(NormLayer),
    /// A basic residual block.
    Residual(ResBlock),
    /// An activation.
    Act(Activation),
    /// `nn.MaxPool2d(2)`.
    MaxPool2,
    /// `nn.Flatten()`.
    Flatten,
    /// Token and position embeddings of a language model.
    Embed(Embedding),
    /// A pre-norm transformer block.
    Block(Box<Block>),
    /// A transformer's normalization (the final one before the head).
    SeqNorm(SeqNorm),
    /// `spectral_norm(nn.Linear)`: W/σ(W) with one power iteration per training forward (P04, P24).
    Spectral(super::spectral::SpectralLinear),
    /// muP's output layer (microsoft/mup `MuReadout`, P42): y = (mult·x) Wᵀ + b with mult = 1/width_mult.
    Readout {
        weight: Param,
        bias: Option<Param>,
        mult: f64,
    },
}

impl Layer {
    /// Parameters and buffers in PyTorch's state-dict order (a module's own, then its children's in
    /// registration order).
    pub fn state(&self) -> Result<Vec<(String, Tensor)>> {
        match self {
            Layer::Residual(b) => {
                let mut v = Vec::new();
                for l in b.parts() {
                    v.extend(l.state()?);
                }
                Ok(v)
            }
            Layer::Block(b) => b.state(),
            l => {
                let mut v: Vec<(String, Tensor)> = l
                    .params()
                    .into_iter()
                    .map(|p| (p.name.clone(), p.tensor().clone()))
                    .collect();
                v.extend(l.buffers()?);
                Ok(v)
            }
        }
    }

    /// The running buffers (normalization statistics) inside the layer, with their state-dict names.
    pub fn buffers(&self) -> Result<Vec<(String, Tensor)>> {
        match self {
            Layer::Norm(n) => n.buffers(),
            Layer::SeqNorm(n) => n.buffers(),
            Layer::Spectral(l) => Ok(l.buffers()),
            Layer::Residual(b) => {
                let mut v = Vec::new();
                for l in b.parts() {
                    v.extend(l.buffers()?);
                }
                Ok(v)
            }
            Layer::Block(b) => {
                let mut v = Vec::new();
                for n in b.norms() {
                    v.extend(n.buffers()?);
                }
                Ok(v)
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Loads one buffer from a state dict; `false` when `name` is none of this layer's.
    pub fn load_buffer(&self, name: &str, t: &Tensor) -> Result<bool> {
        match self {
            Layer::Norm(n) => n.load_buffer(name, t),
            Layer::SeqNorm(n) => n.load_buffer(name, t),
            Layer::Spectral(l) => l.load_buffer(name, t),
            Layer::Residual(b) => {
                for l in b.parts() {
                    if l.load_buffer(name, t)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Layer::Block(b) => {
                for n in b.norms() {
                    if n.load_buffer(name, t)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    /// Applies the layer; `train` selects batch statistics (and updates running ones) in normalization layers.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_pass(x, train, None)
    }

    /// [`Layer::forward`] with the padding of a batch of sequences: `keep` has one flag per (example,
    /// position), false at padding, which normalization statistics leave out.
    pub fn forward_pass(&self, x: &Tensor, train: bool, keep: Option<&[bool]>) -> Result<Tensor> {
        Ok(match self {
            Layer::Linear { weight, bias } => {
                linear_nd(x, weight.tensor(), bias.as_ref().map(Param::tensor))?
            }
            Layer::Conv2d {
                weight,
                bias,
                padding,
                standardize,
            } => {
                let w = if *standardize {
                    weight_standardize(weight.tensor(), WsVariant::VarEps)?
                } else {
                    weight.tensor().clone()
                };
                let y = conv2d(x, &w, bias.as_ref().map(Param::tensor), *padding)?;
                if *standardize {
                    // The per-sample gradient of a standardized weight is not recorded: the privacy layer
                    // refuses the model.
                    y
                } else {
                    tape::probe(y, |probe| Site::Conv2d {
                        weight: weight.tensor().id(),
                        bias: bias.as_ref().map(|b| b.tensor().id()),
                        input: x.detach(),
                        padding: *padding,
                        probe,
                    })?
                }
            }
            Layer::Norm(n) => n.forward(x, train)?,
            Layer::Spectral(l) => l.forward(x, train)?,
            Layer::Residual(b) => b.forward(x, train)?,
            Layer::Act(a) => a.apply(x)?,
            Layer::MaxPool2 => super::pool::max_pool2(x)?,
            Layer::Flatten => x.flatten_from(1)?,
            Layer::Embed(e) => e.forward(x)?,
            Layer::Block(b) => b.forward(x, train, keep)?,
            Layer::SeqNorm(n) => n.forward(x, train, keep)?,
            Layer::Readout { weight, bias, mult } => linear_nd(
                &(x * *mult)?,
                weight.tensor(),
                bias.as_ref().map(Param::tensor),
            )?,
        })
    }

    /// The layer's parameters in state-dict order (weight, then bias).
    pub fn params(&self) -> Vec<&Param> {
        match self {
            Layer::Linear { weight, bias }
            | Layer::Conv2d { weight, bias, .. }
            | Layer::Readout { weight, bias, .. } => {
                std::iter::once(weight).chain(bias.iter()).collect()
            }
            Layer::Norm(n) => n.params(),
            Layer::Spectral(l) => l.params(),
            Layer::Residual(b) => b.parts().into_iter().flat_map(|l| l.params()).collect(),
            Layer::Embed(e) => vec![&e.tok, &e.pos],
            Layer::Block(b) => b.params(),
            Layer::SeqNorm(n) => n.params(),
            _ => Vec::new(),
        }
    }

    /// The layer's kind in one word (`linear`, `relu`, `block`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Layer::Linear { .. } | Layer::Spectral(_) => "linear",
            Layer::Conv2d { .. } => "conv",
            Layer::Norm(_) => "norm",
            Layer::Residual(_) => "residual",
            Layer::Act(a) => a.name(),
            Layer::MaxPool2 => "maxpool",
            Layer::Flatten => "flatten",
            Layer::Embed(_) => "embedding",
            Layer::Block(_) => "block",
            Layer::SeqNorm(_) => "norm",
            Layer::Readout { .. } => "linear",
        }
    }

    /// A short description, e.g. `Linear(64, 128)`.
    pub fn describe(&self) -> String {
        match self {
            Layer::Linear { weight, .. } => {
                let d = weight.var.dims();
                format!("Linear({}, {})", d[1], d[0])
            }
            Layer::Conv2d {
                weight,
                padding,
                standardize,
                ..
            } => {
                let d = weight.var.dims();
                let ws = if *standardize { "WS-" } else { "" };
                format!(
                    "{ws}Conv2d({}, {}, {}, padding={padding})",
                    d[1], d[0], d[2]
                )
            }
            Layer::Norm(n) => n.describe(),
            Layer::Spectral(l) => {
                let (out, inp) = l.dims();
                format!("SpectralNorm(Linear({inp}, {out}))")
            }
            Layer::Residual(b) => format!(
                "Residual[{}]",
                b.parts()
                    .iter()
                    .map(|l| l.describe())
                    .collect::<Vec<_>>()
                    .join(" - ")
            ),
            Layer::Act(a) => a.name().to_string(),
            Layer::MaxPool2 => "MaxPool2d(2)".into(),
            Layer::Flatten => "Flatten".into(),
            Layer::Embed(e) => {
                let (v, c) = (e.tok.var.dims()[0], e.tok.var.dims()[1]);
                format!(
                    "Embedding({v}, {c}) + Position({}, {c})",
                    e.pos.var.dims()[0]
                )
            }
            Layer::Block(b) => format!(
                "Block[{}attn({} heads) {}mlp({})]",
                b.norm1
                    .as_ref()
                    .map_or(String::new(), |n| n.describe() + " "),
                b.attn.heads,
                b.norm2
                    .as_ref()
                    .map_or(String::new(), |n| n.describe() + " "),
                b.fc.weight.var.dims()[0]
            ),
            Layer::SeqNorm(n) => n.describe(),
            Layer::Readout { weight, mult, .. } => {
                let d = weight.var.dims();
                format!("MuReadout({}, {}, x{mult})", d[1], d[0])
            }
        }
    }
}

/// Which normalization (P01's baselines and BCN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormKind {
    /// `nn.BatchNorm2d`.
    Batch,
    /// `nn.GroupNorm`.
    Group,
    /// Batch-Channel Normalization (BatchNorm, then the group step, then a per-group affine).
    Bcn,
    /// BCN with estimated channel statistics (EstBN: running statistics moving at 0.1 per step normalize in
    /// training too; P01's choice for micro-batches).
    BcnEstimated,
}

/// EstBN's moving speed (the official buffer defaults to 0, which never updates; 0.1 as BatchNorm's momentum).
pub const EST_SPEED: f64 = 0.1;

/// A normalization layer: its parameters (PyTorch names: `weight`, `bias`, and for BCN also `bn.weight`,
/// `bn.bias`) and, for batch statistics, the running buffers (shared by clones of the model).
#[derive(Debug, Clone)]
pub struct NormLayer {
    pub kind: NormKind,
    pub groups: usize,
    pub weight: Param,
    pub bias: Param,
    /// BCN's batch-norm affine.
    pub bn: Option<(Param, Param)>,
    pub stats: Option<Arc<Mutex<RunningStats>>>,
    /// The state-dict prefix of the buffers (`3.` or `3.bn.`).
    pub buffer_prefix: String,
}

impl NormLayer {
    /// A layer for `channels` channels whose state-dict names start with `prefix` (`3.` or `3.n1.`), weight 1
    /// and bias 0 (PyTorch's init).
    pub fn new(
        kind: NormKind,
        prefix: &str,
        channels: usize,
        groups: usize,
        dtype: DType,
    ) -> Result<Self> {
        let i = prefix.trim_end_matches('.');
        if kind != NormKind::Batch && (groups == 0 || !channels.is_multiple_of(groups)) {
            return Err(Error::invalid(format!(
                "{groups} groups do not divide {channels} channels"
            )));
        }
        let dev = candle_core::Device::Cpu;
        let param = |name: String, v: f64, shape: &[usize]| -> Result<Param> {
            Ok(Param {
                name,
                var: candle_core::Var::from_tensor(&(Tensor::ones(shape, dtype, &dev)? * v)?)?,
            })
        };
        let (wshape, bn, prefix) = match kind {
            NormKind::Bcn | NormKind::BcnEstimated => (
                vec![1, groups, 1],
                Some((
                    param(format!("{i}.bn.weight"), 1.0, &[channels])?,
                    param(format!("{i}.bn.bias"), 0.0, &[channels])?,
                )),
                format!("{i}.bn."),
            ),
            _ => (vec![channels], None, format!("{i}.")),
        };
        let stats = if kind == NormKind::Group {
            None
        } else {
            let mut s = RunningStats::new(channels, &dev)?;
            s.mean = s.mean.to_dtype(dtype)?;
            s.var = s.var.to_dtype(dtype)?;
            Some(Arc::new(Mutex::new(s)))
        };
        Ok(NormLayer {
            kind,
            groups,
            weight: param(format!("{i}.weight"), 1.0, &wshape)?,
            bias: param(format!("{i}.bias"), 0.0, &wshape)?,
            bn,
            stats,
            buffer_prefix: prefix,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (w, b) = (self.weight.tensor(), self.bias.tensor());
        match self.kind {
            NormKind::Group => group_norm(x, self.groups, w, b),
            NormKind::Batch => {
                let mut s = self
                    .stats
                    .as_ref()
                    .expect("batch norm stats")
                    .lock()
                    .expect("stats");
                batch_norm(x, w, b, &mut s, train)
            }
            NormKind::Bcn | NormKind::BcnEstimated => {
                let (bw, bb) = self.bn.as_ref().expect("BCN batch-norm affine");
                let p = BcnParams {
                    bn_weight: bw.tensor(),
                    bn_bias: bb.tensor(),
                    group_weight: w,
                    group_bias: b,
                    groups: self.groups,
                    channel: if self.kind == NormKind::Bcn {
                        ChannelStats::Batch
                    } else {
                        ChannelStats::Estimated { speed: EST_SPEED }
                    },
                };
                let mut s = self
                    .stats
                    .as_ref()
                    .expect("BCN stats")
                    .lock()
                    .expect("stats");
                bcn(x, &p, &mut s, train)
            }
        }
    }

    fn params(&self) -> Vec<&Param> {
        let mut v = vec![&self.weight, &self.bias];
        if let Some((w, b)) = &self.bn {
            v.extend([w, b]);
        }
        v
    }

    /// The running buffers with their state-dict names (PyTorch's `running_mean`, `running_var`,
    /// `num_batches_tracked`).
    pub fn buffers(&self) -> Result<Vec<(String, Tensor)>> {
        match &self.stats {
            None => Ok(Vec::new()),
            Some(s) => stats_buffers(&s.lock().expect("stats"), &self.buffer_prefix),
        }
    }

    /// Loads the running buffers from a state dict; `false` when `name` is not one of them.
    pub fn load_buffer(&self, name: &str, t: &Tensor) -> Result<bool> {
        match &self.stats {
            None => Ok(false),
            Some(s) => {
                load_stats_buffer(&mut s.lock().expect("stats"), &self.buffer_prefix, name, t)
            }
        }
    }

    fn describe(&self) -> String {
        let c = self
            .bn
            .as_ref()
            .map_or(self.weight.numel(), |(w, _)| w.numel());
        match self.kind {
            NormKind::Batch => format!("BatchNorm2d({c})"),
            NormKind::Group => format!("GroupNorm({}, {c})", self.groups),
            NormKind::Bcn => format!("BCNorm({c}, {})", self.groups),
            NormKind::BcnEstimated => format!("BCNorm({c}, {}, estimate=True)", self.groups),
        }
    }
}

/// A basic residual block: conv1 (3×3) - n1 - ReLU - conv2 (3×3) - n2, plus a shortcut (a 1×1 convolution when
/// the channel count changes, else the identity), then ReLU. Children are named `conv1`, `n1`, `conv2`, `n2`,
/// `shortcut` under the block's index, as a PyTorch module would name them.
#[derive(Debug, Clone)]
pub struct ResBlock {
    pub conv1: Box<Layer>,
    pub n1: Option<Box<Layer>>,
    pub conv2: Box<Layer>,
    pub n2: Option<Box<Layer>>,
    pub shortcut: Option<Box<Layer>>,
}

impl ResBlock {
    /// The children in registration order.
    pub fn parts(&self) -> Vec<&Layer> {
        let mut v: Vec<&Layer> = vec![&self.conv1];
        v.extend(self.n1.as_deref());
        v.push(&self.conv2);
        v.extend(self.n2.as_deref());
        v.extend(self.shortcut.as_deref());
        v
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut h = self.conv1.forward(x, train)?;
        if let Some(n) = &self.n1 {
            h = n.forward(&h, train)?;
        }
        h = self.conv2.forward(&h.relu()?, train)?;
        if let Some(n) = &self.n2 {
            h = n.forward(&h, train)?;
        }
        let skip = match &self.shortcut {
            Some(s) => s.forward(x, train)?,
            None => x.clone(),
        };
        Ok((h + skip)?.relu()?)
    }
}
