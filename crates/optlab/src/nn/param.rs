//! Named trainable parameters.

use crate::{Error, Result, Spec};
use candle_core::{Tensor, Var};

/// A trainable tensor with its state-dict name. Cloning shares the storage.
#[derive(Debug, Clone)]
pub struct Param {
    /// State-dict name, e.g. `0.weight`.
    pub name: String,
    /// The variable the optimizer updates in place.
    pub var: Var,
}

impl Param {
    /// The parameter as a tensor (shares storage).
    pub fn tensor(&self) -> &Tensor {
        self.var.as_tensor()
    }

    /// Number of scalar values.
    pub fn numel(&self) -> usize {
        self.var.elem_count()
    }
}

/// Seeded parameter initialisation in PyTorch's default schemes (one generator for a whole model, so the same
/// seed gives the same bits).
pub(crate) struct Init {
    pub rng: crate::rng::Rng,
    pub dtype: candle_core::DType,
}

impl Init {
    /// A parameter of `shape` whose values are `draw()` in order, rounded to the dtype: drawn straight into
    /// the variable's buffer, with no f64 copy of a large weight.
    fn param(
        dtype: candle_core::DType,
        name: String,
        shape: &[usize],
        mut draw: impl FnMut() -> f64,
    ) -> crate::Result<Param> {
        let n: usize = shape.iter().product();
        let dev = &candle_core::Device::Cpu;
        let var = match dtype {
            candle_core::DType::F32 => {
                Var::from_vec((0..n).map(|_| draw() as f32).collect(), shape, dev)?
            }
            candle_core::DType::F64 => Var::from_vec((0..n).map(|_| draw()).collect(), shape, dev)?,
            other => {
                let t = Tensor::from_vec((0..n).map(|_| draw()).collect(), shape, dev)?;
                Var::from_tensor(&t.to_dtype(other)?)?
            }
        };
        Ok(Param { name, var })
    }

    /// Uniform in ±bound (`nn.Linear`/`nn.Conv2d` weights and biases use bound 1/√fan_in).
    pub fn uniform(&mut self, name: String, shape: &[usize], bound: f64) -> crate::Result<Param> {
        use rand::Rng as _;
        let rng = &mut self.rng;
        Init::param(self.dtype, name, shape, || rng.gen_range(-bound..bound))
    }

    /// Standard normal times `std` (`nn.Embedding`'s N(0, 1)).
    pub fn normal(&mut self, name: String, shape: &[usize], std: f64) -> crate::Result<Param> {
        let rng = &mut self.rng;
        Init::param(self.dtype, name, shape, || std * crate::rng::normal(rng))
    }

    /// All zeros (muP's zero-initialised readout and queries).
    pub fn zeros(&self, name: String, shape: &[usize]) -> crate::Result<Param> {
        Init::param(self.dtype, name, shape, || 0.0)
    }
}

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
