//! muP, the Maximal Update Parametrization (P42, Yang & Hu, "Feature Learning in Infinite-Width Neural
//! Networks"), with microsoft/mup@1981497's conventions.
//!
//! - **Base shapes**: a model built with `param=mup,base=B` is compared with the same architecture at width B and
//!   at width 2B; the dimensions that differ are infinite (they grow with the width), the others finite
//!   ([`infshapes`]). Each tensor's width multiplier is that of its last infinite dimension (the fan-in of a
//!   hidden weight), `width / B`.
//! - **Initialisation and multipliers** live in the model ([`crate::nn::Parametrization`]): MuReadout (zero init,
//!   input × 1/width_mult), biases drawn as at the base width, 1/d attention with zero queries.
//! - **Learning rates and weight decay** ([`apply_groups`]) are optimizer parameter groups, so they work with every
//!   optimizer: the Adam rule (MuAdam) divides the lr of matrix-like tensors (two infinite dimensions) by
//!   width_mult and multiplies their weight decay by it; the SGD rule (MuSGD) multiplies the lr of vector-like
//!   tensors (one infinite dimension) by width_mult (weight decay divided) and divides that of matrix-like ones
//!   by fanin_mult/fanout_mult. Finite tensors keep the base values. As in microsoft/mup's default
//!   (`decoupled_wd=False`), lr × weight_decay stays invariant.
//! - **Checks** live in the experiments layer above the trainer: [`crate::experiment::width`] (the coordinate
//!   check and the learning-rate sweep across widths).

pub use crate::method::MupRule;
use crate::nn::{Param, Parametrization, Sequential};
use crate::optim::{Optimizer, ParamGroup, Selector};
use crate::{Error, Result};
use candle_core::DType;
use serde::Serialize;

/// One dimension of a tensor: infinite when it scales with the width (then `base` is its size at the base width).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct InfDim {
    pub base: Option<usize>,
    pub dim: usize,
}

impl InfDim {
    /// dim/base for an infinite dimension, 1 for a finite one.
    pub fn width_mult(&self) -> f64 {
        self.base.map_or(1.0, |b| self.dim as f64 / b as f64)
    }
}

/// A tensor's shape with finite/infinite bookkeeping (microsoft/mup `InfShape`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InfShape(pub Vec<InfDim>);

impl InfShape {
    /// Number of infinite dimensions: 0 finite, 1 vector-like, 2 matrix-like.
    pub fn ninf(&self) -> usize {
        self.0.iter().filter(|d| d.base.is_some()).count()
    }

    /// The width multiplier of the last infinite dimension (the fan-in of an `[out, in]` weight), 1 if none.
    pub fn width_mult(&self) -> f64 {
        self.0
            .iter()
            .rev()
            .find(|d| d.base.is_some())
            .map_or(1.0, InfDim::width_mult)
    }

    /// fan-in multiplier / fan-out multiplier (dimensions 1 and 0).
    pub fn fanin_fanout_mult_ratio(&self) -> f64 {
        match self.0.as_slice() {
            [out, inp, ..] => inp.width_mult() / out.width_mult(),
            _ => 1.0,
        }
    }
}

fn shapes(m: &Sequential) -> Vec<(String, Vec<usize>)> {
    m.params()
        .iter()
        .map(|p| (p.name.clone(), p.var.dims().to_vec()))
        .collect()
}

/// The [`InfShape`] of every parameter of `model` (state-dict order), from the same architecture at the base
/// width and at twice the base width. A model under the standard parametrization has only finite dimensions.
pub fn infshapes(model: &Sequential) -> Result<Vec<(String, InfShape)>> {
    let spec = model.spec();
    let Parametrization::Mup { base } = spec.parametrization() else {
        return Ok(shapes(model)
            .into_iter()
            .map(|(n, s)| {
                (
                    n,
                    InfShape(s.iter().map(|&dim| InfDim { base: None, dim }).collect()),
                )
            })
            .collect());
    };
    let input = model.input_shape();
    let outputs = model
        .params()
        .last()
        .map(|p| p.var.dims()[0])
        .ok_or_else(|| Error::invalid("a model without parameters has no base shapes"))?;
    let at = |w: usize| -> Result<Vec<(String, Vec<usize>)>> {
        let s = spec.with_width(w, Parametrization::Standard)?;
        Ok(shapes(&Sequential::new(&s, input, outputs, 0, DType::F32)?))
    };
    let (b, d) = (at(base)?, at(2 * base)?);
    shapes(model)
        .into_iter()
        .zip(b.into_iter().zip(d))
        .map(|((name, dims), ((nb, sb), (_, sd)))| {
            if name != nb || dims.len() != sb.len() {
                return Err(Error::invalid(format!(
                    "muP base shapes: parameter {name} does not match the base model's {nb}"
                )));
            }
            let inf = dims
                .iter()
                .zip(sb.iter().zip(&sd))
                .map(|(&dim, (&bd, &dd))| InfDim {
                    base: (bd != dd).then_some(bd),
                    dim,
                })
                .collect();
            Ok((name, InfShape(inf)))
        })
        .collect()
}

/// Which muP rule a run uses: `auto` (the optimizer's own, see [`Optimizer::mup_rule`]), or one forced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MupChoice {
    #[default]
    Auto,
    Adam,
    Sgd,
}

impl MupChoice {
    /// The rule for `opt`: its registered rule under `auto` (an error naming why when it has none).
    pub fn resolve(self, opt: &dyn Optimizer) -> Result<MupRule> {
        match self {
            MupChoice::Auto => opt.mup_rule(),
            MupChoice::Adam => Ok(MupRule::Adam),
            MupChoice::Sgd => Ok(MupRule::Sgd),
        }
    }
}

impl std::str::FromStr for MupChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(MupChoice::Auto),
            "adam" => Ok(MupChoice::Adam),
            "sgd" => Ok(MupChoice::Sgd),
            other => Err(Error::invalid(format!(
                "mup_rule={other} must be auto, adam or sgd"
            ))),
        }
    }
}

impl std::fmt::Display for MupChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MupChoice::Auto => "auto",
            MupChoice::Adam => "adam",
            MupChoice::Sgd => "sgd",
        })
    }
}

crate::spec::serde_via_string!(MupChoice);

/// The (lr, weight decay) multipliers of one tensor under `rule`.
pub fn multipliers(shape: &InfShape, rule: MupRule) -> Result<(f64, f64)> {
    Ok(match (rule, shape.ninf()) {
        (_, 0) => (1.0, 1.0),
        (MupRule::Adam, 1) => (1.0, 1.0),
        (MupRule::Adam, 2) => (1.0 / shape.width_mult(), shape.width_mult()),
        (MupRule::Sgd, 1) => (shape.width_mult(), 1.0 / shape.width_mult()),
        (MupRule::Sgd, 2) => {
            let r = shape.fanin_fanout_mult_ratio();
            (1.0 / r, r)
        }
        (_, n) => {
            return Err(Error::invalid(format!(
                "muP: a tensor with {n} infinite dimensions is not supported (at most 2)"
            )))
        }
    })
}

/// Adds one parameter group per tensor whose multipliers differ from 1, ahead of the existing groups: its
/// hyperparameters are those the tensor had (default or user group) with lr and weight decay scaled by
/// [`multipliers`]. Returns the groups added.
pub fn apply_groups(
    opt: &mut dyn Optimizer,
    model: &Sequential,
    rule: MupRule,
) -> Result<Vec<ParamGroup>> {
    if opt.hyperparam("lr").is_err() {
        return Err(Error::invalid(format!(
            "muP scales learning rates; optimizer '{}' has no lr",
            opt.name()
        )));
    }
    let params: Vec<Param> = model.params();
    let names = opt.hypers().names();
    let mut added = Vec::new();
    for ((name, shape), p) in infshapes(model)?.into_iter().zip(&params) {
        let (lr_mult, wd_mult) = multipliers(&shape, rule)?;
        if lr_mult == 1.0 && wd_mult == 1.0 {
            continue;
        }
        let mut values = Vec::with_capacity(names.len());
        for &key in &names {
            let mult = match key {
                "lr" => lr_mult,
                "weight_decay" => wd_mult,
                _ => 1.0,
            };
            values.push((key.to_string(), opt.hypers().base_for(p, key)? * mult));
        }
        let group = ParamGroup::new(Selector::Name(name), values);
        opt.insert_group(added.len(), group.clone())?;
        added.push(group);
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::ModelSpec;
    use crate::optim::from_spec;

    #[test]
    fn infshapes_of_an_mlp_and_a_transformer() {
        let m = Sequential::new(
            &ModelSpec::parse("mlp:hidden=256-256,param=mup,base=64").unwrap(),
            &[64],
            10,
            0,
            DType::F32,
        )
        .unwrap();
        let s = infshapes(&m).unwrap();
        let ninf: Vec<usize> = s.iter().map(|(_, i)| i.ninf()).collect();
        // input weight (inf, fin), its bias (inf), hidden (inf, inf), bias, readout (fin, inf), its bias (fin).
        assert_eq!(ninf, [1, 1, 2, 1, 1, 0]);
        assert_eq!(s[2].1.width_mult(), 4.0);
        assert_eq!(s[4].1.width_mult(), 4.0);
        assert_eq!(s[0].1.width_mult(), 4.0);
        assert_eq!(s[2].1.fanin_fanout_mult_ratio(), 1.0);
        assert_eq!(s[0].1.fanin_fanout_mult_ratio(), 0.25);
        assert_eq!(multipliers(&s[2].1, MupRule::Adam).unwrap(), (0.25, 4.0));
        assert_eq!(multipliers(&s[0].1, MupRule::Adam).unwrap(), (1.0, 1.0));
        assert_eq!(multipliers(&s[4].1, MupRule::Sgd).unwrap(), (4.0, 0.25));
        assert_eq!(multipliers(&s[2].1, MupRule::Sgd).unwrap(), (1.0, 1.0));
        assert_eq!(multipliers(&s[5].1, MupRule::Sgd).unwrap(), (1.0, 1.0));
        let t = Sequential::new(
            &ModelSpec::parse("transformer:layers=1,dim=32,heads=2,param=mup,base=8").unwrap(),
            &[6],
            11,
            0,
            DType::F32,
        )
        .unwrap();
        let s: std::collections::HashMap<String, InfShape> =
            infshapes(&t).unwrap().into_iter().collect();
        assert_eq!(s["0.tok.weight"].ninf(), 1);
        assert_eq!(s["1.attn.qkv.weight"].ninf(), 2);
        assert_eq!(s["1.attn.qkv.weight"].width_mult(), 4.0);
        assert_eq!(s["1.mlp.proj.weight"].width_mult(), 4.0);
        assert_eq!(s["1.norm1.weight"].ninf(), 1);
        assert_eq!(s["3.weight"].ninf(), 1);
        assert_eq!(s["3.bias"].ninf(), 0);
    }

    #[test]
    fn groups_compose_with_user_groups_and_schedules() {
        let m = Sequential::new(
            &ModelSpec::parse("mlp:hidden=128-128,param=mup,base=32").unwrap(),
            &[8],
            3,
            0,
            DType::F32,
        )
        .unwrap();
        let mut opt = from_spec("adamw:lr=0.01,weight_decay=0.1").unwrap();
        opt.add_group("rank<=1:weight_decay=0".parse().unwrap())
            .unwrap();
        let added = apply_groups(opt.as_mut(), &m, MupRule::Adam).unwrap();
        assert_eq!(added.len(), 1, "{added:?}");
        let p = m.params();
        let h = |i: usize, k: &str| opt.hypers().get_for(&p[i], k).unwrap();
        assert!((h(2, "lr") - 0.0025).abs() < 1e-15);
        assert!((h(2, "weight_decay") - 0.4).abs() < 1e-12);
        assert_eq!(h(0, "lr"), 0.01);
        assert_eq!(
            h(1, "weight_decay"),
            0.0,
            "the user's group still holds for biases"
        );
        opt.apply_schedule("lr", 0.5).unwrap();
        assert!((opt.hypers().get_for(&p[2], "lr").unwrap() - 0.00125).abs() < 1e-15);
        let auto = |s: &str| MupChoice::Auto.resolve(from_spec(s).unwrap().as_ref());
        let e = auto("nsgd").unwrap_err().to_string();
        assert!(e.contains("nsgd") && e.contains("mup_rule"), "{e}");
        assert_eq!(auto("lion").unwrap(), MupRule::Adam);
        assert_eq!(auto("sgd").unwrap(), MupRule::Sgd);
        assert_eq!(
            MupChoice::Sgd
                .resolve(from_spec("nsgd").unwrap().as_ref())
                .unwrap(),
            MupRule::Sgd
        );
    }
}
