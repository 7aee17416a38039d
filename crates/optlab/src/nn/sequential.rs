//! `nn.Sequential`-shaped models: MLPs and a small CNN, with PyTorch's default initialisation and state-dict
//! names.

use super::layer::{NormKind, NormLayer, ResBlock};
use super::param::Init;
use super::transformer::{SeqNormKind, TransformerSpec};
use super::{Activation, Layer, Param};
use crate::rng::{rng_for, Stream};
use crate::spec::unknown_name;
use crate::tensor_io::{read_safetensors, write_safetensors};
use crate::{Error, Result, Spec};
use candle_core::{DType, Tensor, Var};
use std::collections::HashMap;
use std::path::Path;

/// The model families [`ModelSpec::parse`] knows.
pub const MODEL_NAMES: &[&str] = &["mlp", "cnn", "resnet", "transformer"];

/// How a model's initialisation and multipliers depend on its width (P42, Yang & Hu).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parametrization {
    /// PyTorch's defaults (the standard parametrization, SP).
    Standard,
    /// The Maximal Update Parametrization relative to a base width (microsoft/mup's conventions): a zero-initialised
    /// readout whose input is multiplied by 1/width_mult (MuReadout), biases drawn as at the base width, attention
    /// logits scaled by √d_head,base/d_head (1/d rather than 1/√d) with zero-initialised queries. The per-tensor
    /// learning rates come from [`crate::mup`] as optimizer parameter groups.
    Mup { base: usize },
}

impl Parametrization {
    pub(crate) fn parse(s: &mut Spec) -> Result<Self> {
        let kind = s.string("param", "sp");
        let base = s.usize("base", 64)?;
        match kind.as_str() {
            "sp" => Ok(Parametrization::Standard),
            "mup" if base > 0 => Ok(Parametrization::Mup { base }),
            "mup" => Err(Error::invalid("param=mup needs a positive base width")),
            other => Err(Error::invalid(format!(
                "param={other}: available: sp (standard), mup (with base=WIDTH)"
            ))),
        }
    }

    pub(crate) fn to_spec(self) -> String {
        match self {
            Parametrization::Standard => String::new(),
            Parametrization::Mup { base } => format!(",param=mup,base={base}"),
        }
    }

    /// dim/base_dim of every dimension that scales with the width (all scale together): width/base under
    /// muP, 1 under SP.
    pub fn width_mult(self, width: usize) -> f64 {
        match self {
            Parametrization::Standard => 1.0,
            Parametrization::Mup { base } => width as f64 / base as f64,
        }
    }
}

/// The output layer `<i>.weight` `[outputs, fan_in]`, `<i>.bias`: `nn.Linear` under SP; under muP microsoft/mup's
/// MuReadout with zero init, whose input is multiplied by 1/width_mult.
pub(crate) fn head(
    ini: &mut Init,
    i: usize,
    outputs: usize,
    fan_in: usize,
    param: Parametrization,
    width: usize,
) -> Result<Layer> {
    Ok(match param {
        Parametrization::Standard => {
            let bound = 1.0 / (fan_in as f64).sqrt();
            Layer::Linear {
                weight: ini.uniform(format!("{i}.weight"), &[outputs, fan_in], bound)?,
                bias: Some(ini.uniform(format!("{i}.bias"), &[outputs], bound)?),
            }
        }
        Parametrization::Mup { .. } => Layer::Readout {
            weight: ini.zeros(format!("{i}.weight"), &[outputs, fan_in])?,
            bias: Some(ini.zeros(format!("{i}.bias"), &[outputs])?),
            mult: 1.0 / param.width_mult(width),
        },
    })
}

/// A model architecture, independent of the data's sizes.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSpec {
    /// `mlp:hidden=128-64,act=relu`: Linear/activation pairs, then a Linear to the outputs. `act` is one
    /// activation for every hidden layer or one per hidden layer (`act=relu-tanh`).
    Mlp {
        hidden: Vec<usize>,
        acts: Vec<Activation>,
        /// `param=mup,base=64`: muP relative to the base width (the first hidden width; the others scale with
        /// it).
        param: Parametrization,
    },
    /// `cnn:channels=8-16[,norm=bn|gn|bcn|bcn-est[+ws],groups=4]`: (Conv2d 3x3 pad 1 [weight-standardized], [norm],
    /// ReLU, MaxPool2d 2) per channel count, Flatten, Linear.
    Cnn {
        channels: Vec<usize>,
        norm: Option<NormKind>,
        ws: bool,
        groups: usize,
        /// `resnet:...` (same keys): each stage is a basic residual block (conv-norm-ReLU-conv-norm plus a 1×1
        /// shortcut, ReLU) before the pooling.
        residual: bool,
    },
    /// `transformer:layers=2,dim=64,heads=4,mlp=4,norm=ln|pn|bn|none[,pn_warmup=200][,param=mup,base=64]`: a
    /// pre-norm causal language model over token sequences (see [`TransformerSpec`]).
    Transformer(TransformerSpec),
}

impl ModelSpec {
    /// Parses a model spec string.
    pub fn parse(spec: &str) -> Result<Self> {
        let mut s = Spec::parse(spec)?;
        let m = match s.name.as_str() {
            "mlp" => {
                let hidden = s.usize_list("hidden", &[128])?;
                let acts = s
                    .string("act", "relu")
                    .split('-')
                    .map(Activation::parse)
                    .collect::<Result<Vec<_>>>()?;
                let acts = match acts.len() {
                    1 => vec![acts[0]; hidden.len()],
                    n if n == hidden.len() => acts,
                    n => {
                        return Err(Error::invalid(format!(
                        "{spec}: {n} activations for {} hidden layers; give one, or one per layer",
                        hidden.len()
                    )))
                    }
                };
                let param = Parametrization::parse(&mut s)?;
                ModelSpec::Mlp {
                    hidden,
                    acts,
                    param,
                }
            }
            "transformer" => ModelSpec::Transformer(TransformerSpec {
                layers: s.usize("layers", 2)?,
                dim: s.usize("dim", 64)?,
                heads: s.usize("heads", 4)?,
                mlp: s.usize("mlp", 4)?,
                norm: SeqNormKind::parse(&s.string("norm", "ln"))?,
                pn_warmup: s.usize("pn_warmup", 200)? as u64,
                param: Parametrization::parse(&mut s)?,
            }),
            "cnn" | "resnet" => {
                let norm_s = s.string("norm", "none");
                let (kind, ws) = match norm_s.strip_suffix("+ws") {
                    Some(k) => (k, true),
                    None if norm_s == "ws" => ("none", true),
                    None => (norm_s.as_str(), false),
                };
                let norm = match kind {
                    "none" => None,
                    "bn" => Some(NormKind::Batch),
                    "gn" => Some(NormKind::Group),
                    "bcn" => Some(NormKind::Bcn),
                    "bcn-est" => Some(NormKind::BcnEstimated),
                    other => {
                        return Err(Error::invalid(format!(
                            "{spec}: norm `{other}`: available: none, bn, gn, bcn, bcn-est, each optionally +ws (ws alone: weight standardization only)"
                        )))
                    }
                };
                ModelSpec::Cnn {
                    channels: s.usize_list("channels", &[8, 16])?,
                    norm,
                    ws,
                    groups: s.usize("groups", 4)?,
                    residual: s.name == "resnet",
                }
            }
            other => return Err(unknown_name("model", other, MODEL_NAMES)),
        };
        s.finish()?;
        match &m {
            ModelSpec::Mlp { hidden, .. } if hidden.contains(&0) => Err(Error::invalid(format!(
                "{spec}: hidden widths must be positive"
            ))),
            ModelSpec::Mlp {
                hidden,
                param: Parametrization::Mup { .. },
                ..
            } if hidden.is_empty() => Err(Error::invalid(format!(
                "{spec}: muP needs at least one hidden layer (a width to scale)"
            ))),
            ModelSpec::Transformer(t) => t
                .validate()
                .map(|_| m.clone())
                .map_err(|e| Error::invalid(format!("{spec}: {e}"))),
            ModelSpec::Cnn { channels, .. }
                if channels.is_empty() || channels.contains(&0) || channels.len() > 8 =>
            {
                Err(Error::invalid(format!(
                    "{spec}: give 1 to 8 positive channel counts (one per conv-pool stage)"
                )))
            }
            ModelSpec::Cnn {
                channels,
                norm: Some(NormKind::Group | NormKind::Bcn | NormKind::BcnEstimated),
                groups,
                ..
            } if *groups == 0 || channels.iter().any(|c| !c.is_multiple_of(*groups)) => {
                Err(Error::invalid(format!(
                    "{spec}: groups={groups} must divide every channel count {channels:?}"
                )))
            }
            _ => Ok(m),
        }
    }

    /// The canonical spec string.
    pub fn to_spec(&self) -> String {
        let join = |v: &[usize]| {
            v.iter()
                .map(|w| w.to_string())
                .collect::<Vec<_>>()
                .join("-")
        };
        match self {
            ModelSpec::Mlp {
                hidden,
                acts,
                param,
            } => {
                let act = match acts.first() {
                    Some(a) if acts.iter().all(|b| b == a) => a.name().to_string(),
                    None => "relu".to_string(),
                    Some(_) => acts.iter().map(|a| a.name()).collect::<Vec<_>>().join("-"),
                };
                let hidden = if hidden.is_empty() {
                    "none".into()
                } else {
                    join(hidden)
                };
                format!("mlp:hidden={hidden},act={act}{}", param.to_spec())
            }
            ModelSpec::Transformer(t) => t.to_spec(),
            ModelSpec::Cnn {
                channels,
                norm,
                ws,
                groups,
                residual,
            } => {
                let kind = match norm {
                    None => "none",
                    Some(NormKind::Batch) => "bn",
                    Some(NormKind::Group) => "gn",
                    Some(NormKind::Bcn) => "bcn",
                    Some(NormKind::BcnEstimated) => "bcn-est",
                };
                let n = match (norm, ws) {
                    (None, false) => String::new(),
                    (None, true) => ",norm=ws".into(),
                    (_, true) => format!(",norm={kind}+ws"),
                    (_, false) => format!(",norm={kind}"),
                };
                let g = if matches!(
                    norm,
                    Some(NormKind::Group | NormKind::Bcn | NormKind::BcnEstimated)
                ) {
                    format!(",groups={groups}")
                } else {
                    String::new()
                };
                let family = if *residual { "resnet" } else { "cnn" };
                format!("{family}:channels={}{n}{g}", join(channels))
            }
        }
    }

    /// The width muP scales (the first hidden width of an MLP, a transformer's dim); `None` for CNNs.
    pub fn width(&self) -> Option<usize> {
        match self {
            ModelSpec::Mlp { hidden, .. } => hidden.first().copied(),
            ModelSpec::Transformer(t) => Some(t.dim),
            ModelSpec::Cnn { .. } => None,
        }
    }

    /// The parametrization (CNNs are always standard).
    pub fn parametrization(&self) -> Parametrization {
        match self {
            ModelSpec::Mlp { param, .. } => *param,
            ModelSpec::Transformer(t) => t.param,
            ModelSpec::Cnn { .. } => Parametrization::Standard,
        }
    }

    /// The same architecture at another width (every hidden width of an MLP scaled with the first) and
    /// parametrization.
    pub fn with_width(&self, width: usize, param: Parametrization) -> Result<ModelSpec> {
        let mut m = self.clone();
        match &mut m {
            ModelSpec::Mlp {
                hidden, param: p, ..
            } => {
                let w0 = hidden.first().copied().ok_or_else(|| {
                    Error::invalid("an MLP without hidden layers has no width to scale")
                })?;
                for h in hidden.iter_mut() {
                    if !(*h * width).is_multiple_of(w0) {
                        return Err(Error::invalid(format!(
                            "hidden width {h} does not scale to an integer at width {width} (first hidden {w0})"
                        )));
                    }
                    *h = *h * width / w0;
                }
                *p = param;
            }
            ModelSpec::Transformer(t) => {
                t.dim = width;
                t.param = param;
            }
            ModelSpec::Cnn { .. } => {
                return Err(Error::invalid(
                    "width scaling (muP) is available for mlp and transformer models",
                ))
            }
        }
        ModelSpec::parse(&m.to_spec())
    }

    /// The example shape this model wants for data of `feature_shape`: MLPs take flat vectors, CNNs
    /// `[channels, h, w]` (a flat square vector is read as one channel).
    pub fn input_shape(&self, feature_shape: &[usize]) -> Result<Vec<usize>> {
        let d: usize = feature_shape.iter().product();
        match self {
            ModelSpec::Mlp { .. } => Ok(vec![d]),
            ModelSpec::Transformer(_) => match feature_shape {
                [t] => Ok(vec![*t]),
                other => Err(Error::Shape(format!(
                    "a transformer takes token sequences (e.g. --data text:context=64), not examples of shape {other:?}"
                ))),
            },
            ModelSpec::Cnn { channels, .. } => {
                let shape = match feature_shape {
                    [c, h, w] => vec![*c, *h, *w],
                    [h, w] => vec![1, *h, *w],
                    [n] => {
                        let side = (*n as f64).sqrt().round() as usize;
                        if side * side != *n {
                            return Err(Error::Shape(format!(
                                "a CNN needs image inputs; {n} features are not a square image"
                            )));
                        }
                        vec![1, side, side]
                    }
                    other => {
                        return Err(Error::Shape(format!(
                            "a CNN cannot take examples of shape {other:?}"
                        )))
                    }
                };
                let f = 1usize << channels.len();
                if shape[1] % f != 0 || shape[2] % f != 0 {
                    return Err(Error::Shape(format!(
                        "{} pooling stages need image sides divisible by {f}, got {}x{}",
                        channels.len(),
                        shape[1],
                        shape[2]
                    )));
                }
                Ok(shape)
            }
        }
    }
}

/// What [`Sequential::forward_traced`] records of one Linear layer.
#[derive(Debug, Clone)]
pub struct LinearTrace {
    pub weight: Param,
    pub bias: Option<Param>,
    /// The layer's input `[batch, in]`.
    pub input: Tensor,
    /// A zero variable added to the layer's output `[batch, out]`: its gradient is the output's gradient (the
    /// per-sample error signal).
    pub output_probe: Var,
}

/// A model: layers applied in order, parameters named `<layer index>.weight` / `<layer index>.bias`.
#[derive(Debug, Clone)]
pub struct Sequential {
    layers: Vec<Layer>,
    spec: ModelSpec,
    input_shape: Vec<usize>,
    dtype: DType,
}

impl Sequential {
    /// Builds `spec` for examples of `input_shape` and `outputs` outputs, initialised as PyTorch does
    /// (weights and biases uniform in ±1/sqrt(fan_in)) from `seed`.
    pub fn new(
        spec: &ModelSpec,
        input_shape: &[usize],
        outputs: usize,
        seed: u64,
        dtype: DType,
    ) -> Result<Self> {
        if outputs == 0 {
            return Err(Error::invalid("a model needs at least one output"));
        }
        if !matches!(dtype, DType::F32 | DType::F64) {
            return Err(Error::invalid(format!(
                "models train in f32 or f64, not {dtype:?}"
            )));
        }
        let input_shape = spec.input_shape(input_shape)?;
        let mut ini = Init {
            rng: rng_for(seed, Stream::Init, 0),
            dtype,
        };
        let mut layers = Vec::new();
        if let ModelSpec::Transformer(t) = spec {
            layers = t.build(input_shape[0], outputs, &mut ini)?;
        }
        let mut init = |name: String, shape: &[usize], fan_in: usize| -> Result<Param> {
            ini.uniform(name, shape, 1.0 / (fan_in as f64).sqrt())
        };
        match spec {
            ModelSpec::Transformer(_) => {}
            ModelSpec::Mlp {
                hidden,
                acts,
                param: Parametrization::Standard,
            } => {
                let mut fan_in = input_shape[0];
                for (k, &w) in hidden.iter().chain(std::iter::once(&outputs)).enumerate() {
                    let i = layers.len();
                    let weight = init(format!("{i}.weight"), &[w, fan_in], fan_in)?;
                    let bias = init(format!("{i}.bias"), &[w], fan_in)?;
                    layers.push(Layer::Linear {
                        weight,
                        bias: Some(bias),
                    });
                    if let Some(a) = acts.get(k) {
                        layers.push(Layer::Act(*a));
                    }
                    fan_in = w;
                }
            }
            ModelSpec::Mlp {
                hidden,
                acts,
                param,
            } => {
                // muP: the input layer as in SP; hidden layers' biases drawn as at the base width; a MuReadout.
                let m = param.width_mult(hidden[0]);
                let mut fan_in = input_shape[0];
                for (k, &w) in hidden.iter().enumerate() {
                    let i = layers.len();
                    let bound = 1.0 / (fan_in as f64).sqrt();
                    let bias_bound = if k == 0 { bound } else { bound * m.sqrt() };
                    let weight = ini.uniform(format!("{i}.weight"), &[w, fan_in], bound)?;
                    let bias = ini.uniform(format!("{i}.bias"), &[w], bias_bound)?;
                    layers.push(Layer::Linear {
                        weight,
                        bias: Some(bias),
                    });
                    layers.push(Layer::Act(acts[k]));
                    fan_in = w;
                }
                let i = layers.len();
                layers.push(head(&mut ini, i, outputs, fan_in, *param, hidden[0])?);
            }
            ModelSpec::Cnn {
                channels,
                norm,
                ws,
                groups,
                residual,
            } => {
                let (mut c, mut h, mut w) = (input_shape[0], input_shape[1], input_shape[2]);
                for &co in channels {
                    let i = layers.len();
                    if *residual {
                        let mut conv = |name: &str, ci: usize, k: usize| -> Result<Box<Layer>> {
                            let fan_in = ci * k * k;
                            Ok(Box::new(Layer::Conv2d {
                                weight: init(
                                    format!("{i}.{name}.weight"),
                                    &[co, ci, k, k],
                                    fan_in,
                                )?,
                                bias: Some(init(format!("{i}.{name}.bias"), &[co], fan_in)?),
                                padding: k / 2,
                                // A fan-in of 1 (a 1×1 shortcut from one channel) cannot be standardized.
                                standardize: *ws && fan_in > 1,
                            }))
                        };
                        let conv1 = conv("conv1", c, 3)?;
                        let conv2 = conv("conv2", co, 3)?;
                        let shortcut = if c != co {
                            Some(conv("shortcut", c, 1)?)
                        } else {
                            None
                        };
                        let norm_layer = |name: &str| -> Result<Option<Box<Layer>>> {
                            norm.map(|kind| {
                                NormLayer::new(kind, &format!("{i}.{name}."), co, *groups, dtype)
                                    .map(|n| Box::new(Layer::Norm(n)))
                            })
                            .transpose()
                        };
                        layers.push(Layer::Residual(ResBlock {
                            conv1,
                            n1: norm_layer("n1")?,
                            conv2,
                            n2: norm_layer("n2")?,
                            shortcut,
                        }));
                        layers.push(Layer::MaxPool2);
                        (c, h, w) = (co, h / 2, w / 2);
                        continue;
                    }
                    let fan_in = c * 9;
                    let weight = init(format!("{i}.weight"), &[co, c, 3, 3], fan_in)?;
                    let bias = init(format!("{i}.bias"), &[co], fan_in)?;
                    layers.push(Layer::Conv2d {
                        weight,
                        bias: Some(bias),
                        padding: 1,
                        standardize: *ws,
                    });
                    if let Some(kind) = norm {
                        let i = layers.len();
                        layers.push(Layer::Norm(NormLayer::new(
                            *kind,
                            &format!("{i}."),
                            co,
                            *groups,
                            dtype,
                        )?));
                    }
                    layers.push(Layer::Act(Activation::Relu));
                    layers.push(Layer::MaxPool2);
                    (c, h, w) = (co, h / 2, w / 2);
                }
                layers.push(Layer::Flatten);
                let i = layers.len();
                let fan_in = c * h * w;
                let weight = init(format!("{i}.weight"), &[outputs, fan_in], fan_in)?;
                let bias = init(format!("{i}.bias"), &[outputs], fan_in)?;
                layers.push(Layer::Linear {
                    weight,
                    bias: Some(bias),
                });
            }
        }
        Ok(Sequential {
            layers,
            spec: spec.clone(),
            input_shape,
            dtype,
        })
    }

    /// The forward pass on a batch `[b, input_shape...]` in evaluation mode (normalization layers use their
    /// running statistics).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_mode(x, false)
    }

    /// The forward pass in training mode (batch statistics, running statistics updated) or evaluation mode.
    pub fn forward_mode(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.check_input(x)?;
        let keep = self.padding(x)?;
        let mut h = x.clone();
        for l in &self.layers {
            h = l.forward_pass(&h, train, keep.as_deref())?;
        }
        Ok(h)
    }

    /// For a language model: one flag per (example, position) of a batch of token ids, false at padding (the id
    /// equal to the vocabulary size); `None` when nothing is padded or the model takes no tokens.
    fn padding(&self, x: &Tensor) -> Result<Option<Vec<bool>>> {
        match self.layers.first() {
            Some(Layer::Embed(e)) => e.keep(x),
            _ => Ok(None),
        }
    }

    fn check_input(&self, x: &Tensor) -> Result<()> {
        if &x.dims()[1.min(x.rank())..] != self.input_shape.as_slice() {
            return Err(Error::Shape(format!(
                "the model takes examples of shape {:?}, got a batch of shape {:?}",
                self.input_shape,
                x.dims()
            )));
        }
        Ok(())
    }

    /// The forward pass that also returns, for every layer, `<index>:<kind>` and the mean absolute value of its
    /// output (muP's coordinate check).
    pub fn forward_recorded(
        &self,
        x: &Tensor,
        train: bool,
    ) -> Result<(Tensor, Vec<(String, f64)>)> {
        self.check_input(x)?;
        let keep = self.padding(x)?;
        let mut h = x.clone();
        let mut stats = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            h = l.forward_pass(&h, train, keep.as_deref())?;
            let l1 = h
                .abs()?
                .mean_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
            stats.push((format!("{i}:{}", l.kind()), l1));
        }
        Ok((h, stats))
    }

    /// The forward pass that also returns, for each Linear layer, its weight, bias, input and output (for
    /// per-sample gradient statistics by outer products). `None` when the model has parameterised layers other
    /// than Linear (a CNN).
    pub fn forward_traced(&self, x: &Tensor) -> Result<Option<(Tensor, Vec<LinearTrace>)>> {
        if self.layers.iter().any(|l| {
            !matches!(
                l,
                Layer::Linear { .. } | Layer::Readout { .. } | Layer::Act(_) | Layer::Flatten
            )
        }) {
            return Ok(None);
        }
        let mut h = x.clone();
        let mut traces = Vec::new();
        for l in &self.layers {
            if let Layer::Readout { mult, .. } = l {
                // The Linear inside a readout sees the scaled input.
                h = (h * *mult)?;
            }
            let mut out = match l {
                Layer::Readout { weight, bias, .. } => {
                    super::linear::linear(&h, weight.tensor(), bias.as_ref().map(Param::tensor))?
                }
                l => l.forward(&h, true)?,
            };
            if let Layer::Linear { weight, bias } | Layer::Readout { weight, bias, .. } = l {
                // candle keeps gradients only for variables: a zero variable added to the output receives the
                // output's gradient.
                let probe = Var::zeros(out.dims(), out.dtype(), out.device())?;
                let input = h.clone();
                out = out.add(probe.as_tensor())?;
                traces.push(LinearTrace {
                    weight: weight.clone(),
                    bias: bias.clone(),
                    input,
                    output_probe: probe,
                });
            }
            h = out;
        }
        Ok(Some((h, traces)))
    }

    /// All parameters in state-dict order.
    pub fn params(&self) -> Vec<Param> {
        self.layers
            .iter()
            .flat_map(|l| l.params().into_iter().cloned())
            .collect()
    }

    /// Total number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.params().iter().map(Param::numel).sum()
    }

    /// The layers.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// The architecture.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The example shape the model takes.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// The parameter dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// A one-line description such as `Linear(64, 128) - relu - Linear(128, 10)`.
    pub fn describe(&self) -> String {
        self.layers
            .iter()
            .map(Layer::describe)
            .collect::<Vec<_>>()
            .join(" - ")
    }

    /// The parameters as a state dict.
    pub fn state_dict(&self) -> Vec<(String, Tensor)> {
        self.layers
            .iter()
            .flat_map(|l| l.state().expect("running statistics"))
            .collect()
    }

    /// Saves the state dict as safetensors (loadable by PyTorch's `load_state_dict`), atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        // One metadata key: safetensors writes a map's keys in random order, and equal models should give
        // byte-identical files.
        let info =
            serde_json::json!({"model": self.spec.to_spec(), "input_shape": self.input_shape});
        let meta = HashMap::from([("optlab".to_string(), info.to_string())]);
        write_safetensors(path, &self.state_dict(), Some(meta))
    }

    /// Loads a state dict saved by optlab or by PyTorch (`safetensors.torch.save_file(model.state_dict())`).
    /// Names and shapes must match exactly (keys starting with `__` are ignored); values are converted to the
    /// model's dtype.
    pub fn load(&self, path: &Path) -> Result<()> {
        let tensors = read_safetensors(path)?;
        self.load_state_dict(&tensors)
            .map_err(|e| Error::file(path, e.to_string()))
    }

    /// Copies the values of a state dict into the parameters (strict, as PyTorch's default).
    pub fn load_state_dict(&self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        let params = self.params();
        let mut buffers: Vec<String> = Vec::new();
        for l in &self.layers {
            buffers.extend(l.buffers()?.into_iter().map(|(k, _)| k));
        }
        let mut unexpected: Vec<&String> = tensors
            .keys()
            .filter(|k| {
                !k.starts_with("__")
                    && !params.iter().any(|p| &p.name == *k)
                    && !buffers.contains(k)
            })
            .collect();
        unexpected.sort();
        if !unexpected.is_empty() {
            return Err(Error::Shape(format!(
                "unexpected keys {unexpected:?} for model {} (expects {})",
                self.spec.to_spec(),
                params
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        for p in &params {
            let t = tensors.get(&p.name).ok_or_else(|| {
                Error::Shape(format!(
                    "missing key '{}' for model {}",
                    p.name,
                    self.spec.to_spec()
                ))
            })?;
            if t.dims() != p.var.dims() {
                return Err(Error::Shape(format!(
                    "'{}' has shape {:?} in the file but {:?} in the model",
                    p.name,
                    t.dims(),
                    p.var.dims()
                )));
            }
            // A copy: the source may share storage with the variable (a model's own state dict).
            let t = t.to_dtype(self.dtype)?.copy()?;
            if t.flatten_all()?
                .to_dtype(DType::F64)?
                .to_vec1::<f64>()?
                .iter()
                .any(|v| !v.is_finite())
            {
                return Err(Error::NonFinite(format!(
                    "'{}' contains NaN or infinite values",
                    p.name
                )));
            }
            p.var.set(&t)?;
        }
        for name in &buffers {
            let t = tensors.get(name).ok_or_else(|| {
                Error::Shape(format!(
                    "missing key '{name}' for model {}",
                    self.spec.to_spec()
                ))
            })?;
            for l in &self.layers {
                if l.load_buffer(name, t)? {
                    break;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn mlp_names_and_shapes_follow_pytorch() {
        let m = Sequential::new(
            &ModelSpec::parse("mlp:hidden=128-32,act=tanh").unwrap(),
            &[64],
            10,
            0,
            DType::F32,
        )
        .unwrap();
        let names: Vec<String> = m.params().iter().map(|p| p.name.clone()).collect();
        assert_eq!(
            names,
            ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
        );
        assert_eq!(m.params()[0].var.dims(), &[128, 64]);
        assert_eq!(
            m.num_params(),
            64 * 128 + 128 + 128 * 32 + 32 + 32 * 10 + 10
        );
        let x = Tensor::zeros((5, 64), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(m.forward(&x).unwrap().dims(), &[5, 10]);
        assert!(m
            .forward(&Tensor::zeros((5, 63), DType::F32, &Device::Cpu).unwrap())
            .is_err());
        let bound = 1.0 / 8.0;
        let w: Vec<f32> = m.params()[0]
            .tensor()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(w.iter().all(|v| v.abs() <= bound));
    }

    #[test]
    fn cnn_for_8x8_and_28x28() {
        let spec = ModelSpec::parse("cnn").unwrap();
        let m = Sequential::new(&spec, &[64], 10, 0, DType::F32).unwrap();
        let names: Vec<String> = m.params().iter().map(|p| p.name.clone()).collect();
        assert_eq!(
            names,
            ["0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias"]
        );
        let x = Tensor::zeros((2, 1, 8, 8), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(m.forward(&x).unwrap().dims(), &[2, 10]);
        let m = Sequential::new(&spec, &[784], 10, 0, DType::F32).unwrap();
        assert_eq!(m.params()[4].var.dims(), &[10, 16 * 7 * 7]);
        assert!(Sequential::new(&spec, &[10], 10, 0, DType::F32).is_err());
        assert!(Sequential::new(&spec, &[1, 6, 6], 10, 0, DType::F32).is_err());
    }

    #[test]
    fn bad_specs() {
        assert!(ModelSpec::parse("mlp:hidden=0").is_err());
        assert!(ModelSpec::parse("cnn:channels=1-1-1-1-1-1-1-1-1").is_err());
        assert!(ModelSpec::parse("mlp:act=sigmoid").is_err());
        assert!(ModelSpec::parse("mlp:hidden=4-4-4,act=relu-tanh").is_err());
        assert_eq!(
            ModelSpec::parse("mlp:hidden=4-4,act=relu-tanh")
                .unwrap()
                .to_spec(),
            "mlp:hidden=4-4,act=relu-tanh"
        );
        assert!(ModelSpec::parse("rnn")
            .unwrap_err()
            .to_string()
            .contains("available: mlp, cnn, resnet, transformer"));
        assert_eq!(
            ModelSpec::parse("mlp:hidden=64-32").unwrap().to_spec(),
            "mlp:hidden=64-32,act=relu"
        );
    }

    #[test]
    fn same_seed_same_bits() {
        let spec = ModelSpec::parse("mlp").unwrap();
        let a = Sequential::new(&spec, &[4], 2, 5, DType::F64).unwrap();
        let b = Sequential::new(&spec, &[4], 2, 5, DType::F64).unwrap();
        let c = Sequential::new(&spec, &[4], 2, 6, DType::F64).unwrap();
        let v = |m: &Sequential| {
            m.params()[0]
                .tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap()
        };
        assert_eq!(v(&a), v(&b));
        assert_ne!(v(&a), v(&c));
    }
}
