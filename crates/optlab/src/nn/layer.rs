//! The layers of a [`super::Sequential`] model, each with PyTorch's semantics.

use super::Param;
use crate::{Error, Result};
use candle_core::Tensor;

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

    fn apply(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::Relu => x.relu(),
            Activation::Tanh => x.tanh(),
            Activation::Gelu => x.gelu_erf(),
        }
    }
}

/// One entry of an `nn.Sequential`.
#[derive(Debug, Clone)]
pub enum Layer {
    /// `nn.Linear`: y = x Wᵀ + b, W of shape `[out, in]`.
    Linear { weight: Param, bias: Option<Param> },
    /// `nn.Conv2d` with square stride 1 and the given zero padding; weight `[out, in, k, k]`.
    Conv2d {
        weight: Param,
        bias: Option<Param>,
        padding: usize,
    },
    /// An activation.
    Act(Activation),
    /// `nn.MaxPool2d(2)`.
    MaxPool2,
    /// `nn.Flatten()`.
    Flatten,
}

impl Layer {
    /// Applies the layer.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Layer::Linear { weight, bias } => {
                super::linear::linear(x, weight.tensor(), bias.as_ref().map(Param::tensor))?
            }
            Layer::Conv2d {
                weight,
                bias,
                padding,
            } => {
                let y = x.conv2d(weight.tensor(), *padding, 1, 1, 1)?;
                match bias {
                    Some(b) => y.broadcast_add(&b.tensor().reshape((1, (), 1, 1))?)?,
                    None => y,
                }
            }
            Layer::Act(a) => a.apply(x)?,
            Layer::MaxPool2 => x.max_pool2d(2)?,
            Layer::Flatten => x.flatten_from(1)?,
        })
    }

    /// The layer's parameters in state-dict order (weight, then bias).
    pub fn params(&self) -> Vec<&Param> {
        match self {
            Layer::Linear { weight, bias } | Layer::Conv2d { weight, bias, .. } => {
                std::iter::once(weight).chain(bias.iter()).collect()
            }
            _ => Vec::new(),
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
                weight, padding, ..
            } => {
                let d = weight.var.dims();
                format!("Conv2d({}, {}, {}, padding={padding})", d[1], d[0], d[2])
            }
            Layer::Act(a) => a.name().to_string(),
            Layer::MaxPool2 => "MaxPool2d(2)".into(),
            Layer::Flatten => "Flatten".into(),
        }
    }
}
