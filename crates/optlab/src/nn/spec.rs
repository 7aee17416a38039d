//! [`ModelSpec`]: a model architecture as a typed value, independent of the data's sizes. Parsed from spec
//! strings (`mlp:hidden=128,act=relu`, `cnn:channels=8-16,norm=gn`, `transformer:layers=2,dim=64`) with errors
//! that list the valid names and keys; `Display` writes the canonical spec back.

use super::layer::NormKind;
use super::spectral::SpectralScope;
use super::transformer::{SeqNormKind, TransformerSpec};
use super::{Activation, Parametrization};
use crate::spec::unknown_name;
use crate::{Error, Result, Spec};
use std::fmt;
use std::str::FromStr;

/// The model families [`ModelSpec::parse`] knows.
pub const MODEL_NAMES: &[&str] = &["mlp", "cnn", "resnet", "transformer"];

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
        /// `sn=1` / `sn=hidden`: Linear layers spectrally normalized (PyTorch's `spectral_norm`, P04/P24).
        spectral: SpectralScope,
    },
    /// `cnn:channels=8-16[,norm=bn|gn|bcn|bcn-est[+ws],groups=4]`: (Conv2d 3x3 pad 1 (weight-standardized with `+ws`), the norm,
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
                let spectral = SpectralScope::parse(&s.string("sn", "0"))
                    .map_err(|e| Error::invalid(format!("{spec}: {e}")))?;
                if spectral != SpectralScope::Off && param != Parametrization::Standard {
                    return Err(Error::invalid(format!(
                        "{spec}: spectral normalization (sn=1) works with the standard parametrization only"
                    )));
                }
                ModelSpec::Mlp {
                    hidden,
                    acts,
                    param,
                    spectral,
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
                spectral,
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
                format!(
                    "mlp:hidden={hidden},act={act}{}{}",
                    param.to_spec(),
                    spectral.to_spec()
                )
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

impl FromStr for ModelSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        ModelSpec::parse(s)
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_spec())
    }
}

crate::spec::serde_via_string!(ModelSpec);
