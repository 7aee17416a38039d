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
//! - **Checks**: [`coord_check`] (activation size against width after a few steps on one batch) and
//!   [`lr_sweep`] (final loss against learning rate per width).

use crate::data::load_spec;
pub use crate::method::MupRule;
use crate::nn::{ModelSpec, Param, Parametrization, Sequential};
use crate::optim::{from_spec, Optimizer, ParamGroup, Selector};
use crate::train::{TrainConfig, Trainer};
use crate::{Error, Result};
use candle_core::{DType, Device};
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

/// What [`coord_check`] and [`lr_sweep`] vary: the model family at each width, SP and muP.
#[derive(Debug, Clone)]
pub struct WidthSweep {
    /// The run's settings; `model` is the architecture (its width is replaced).
    pub config: TrainConfig,
    /// The widths.
    pub widths: Vec<usize>,
    /// muP's base width.
    pub base: usize,
    /// Seeds (each adds an independent run).
    pub seeds: Vec<u64>,
}

impl WidthSweep {
    /// The model spec at `width` under SP (`mup` false) or muP.
    pub fn model_at(&self, width: usize, mup: bool) -> Result<String> {
        let param = if mup {
            Parametrization::Mup { base: self.base }
        } else {
            Parametrization::Standard
        };
        Ok(ModelSpec::parse(&self.config.model)?
            .with_width(width, param)?
            .to_spec())
    }

    /// Checks the widths, seeds and base, and that the model scales to every width.
    pub fn check(&self) -> Result<()> {
        if self.widths.is_empty() || self.widths.contains(&0) || self.seeds.is_empty() {
            return Err(Error::invalid(
                "give at least one positive width and one seed",
            ));
        }
        if self.base == 0 {
            return Err(Error::invalid("the muP base width must be positive"));
        }
        for &w in &self.widths {
            for mup in [false, true] {
                self.model_at(w, mup)?;
            }
        }
        Ok(())
    }
}

/// One activation statistic of the coordinate check.
#[derive(Debug, Clone, Serialize)]
pub struct CoordRecord {
    /// `sp` or `mup`.
    pub param: &'static str,
    pub width: usize,
    pub seed: u64,
    /// 1 = at initialisation, t = after t − 1 updates.
    pub t: usize,
    /// `<index>:<kind>` of the layer whose output is measured.
    pub layer: String,
    /// mean |x| over the layer's output (microsoft/mup's `l1`).
    pub l1: f64,
}

/// microsoft/mup's coordinate check: for each width, parametrization and seed, train on one fixed batch for
/// `steps` steps and record mean |activation| of every layer's output in the forward pass of each step (before
/// that step's update). Under muP the curves against width are flat; under SP they grow after the first update.
pub fn coord_check(sweep: &WidthSweep, steps: usize) -> Result<Vec<CoordRecord>> {
    sweep.check()?;
    if steps == 0 {
        return Err(Error::invalid(
            "the coordinate check needs at least one step",
        ));
    }
    let mut out = Vec::new();
    for mup in [false, true] {
        for &width in &sweep.widths {
            for &seed in &sweep.seeds {
                let cfg = TrainConfig {
                    model: sweep.model_at(width, mup)?,
                    seed,
                    ..sweep.config.clone()
                };
                let (model, mut opt, x, y) = fixed_batch_setup(&cfg)?;
                for t in 1..=steps {
                    let (logits, stats) = model.forward_recorded(&x, true)?;
                    out.extend(stats.into_iter().map(|(layer, l1)| CoordRecord {
                        param: if mup { "mup" } else { "sp" },
                        width,
                        seed,
                        t,
                        layer,
                        l1,
                    }));
                    let loss = crate::nn::loss::cross_entropy(&logits, &y)?;
                    let grads = loss.backward()?;
                    opt.step(&model.params(), &grads)?;
                }
            }
        }
    }
    Ok(out)
}

/// The model, optimizer (with muP groups when the model is muP) and the first training batch of `cfg`.
fn fixed_batch_setup(
    cfg: &TrainConfig,
) -> Result<(
    Sequential,
    Box<dyn Optimizer>,
    candle_core::Tensor,
    candle_core::Tensor,
)> {
    cfg.validate()?;
    let spec = ModelSpec::parse(&cfg.model)?;
    let data = load_spec(&cfg.data, cfg.seed)?;
    let shape = spec.input_shape(&data.feature_shape)?;
    let data = data.reshaped(shape)?;
    if matches!(data.target, crate::data::Target::Values { .. }) {
        return Err(Error::invalid(
            "the coordinate check uses the cross-entropy loss; give a classification or text data set",
        ));
    }
    let dtype = if cfg.dtype == "f64" {
        DType::F64
    } else {
        DType::F32
    };
    let model = Sequential::new(
        &spec,
        &data.feature_shape,
        data.output_dim(),
        cfg.seed,
        dtype,
    )?;
    let mut opt = from_spec(&cfg.optimizer)?;
    if matches!(spec.parametrization(), Parametrization::Mup { .. }) {
        let rule = cfg.mup_rule.parse::<MupChoice>()?.resolve(opt.as_ref())?;
        apply_groups(opt.as_mut(), &model, rule)?;
    }
    let n = cfg.batch_size.min(data.len());
    let idx: Vec<usize> = (0..n).collect();
    let (x, y) = data.batch(&idx, dtype, &Device::Cpu)?;
    Ok((model, opt, x, y))
}

/// How much a coordinate-check curve grows with width: the least-squares slope of log2(l1) against log2(width)
/// at step `t`, per (parametrization, layer), averaged over seeds first.
pub fn coord_slopes(records: &[CoordRecord], t: usize) -> Vec<(&'static str, String, f64)> {
    let mut keys: Vec<(&'static str, String)> = records
        .iter()
        .filter(|r| r.t == t)
        .map(|r| (r.param, r.layer.clone()))
        .collect();
    keys.dedup();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|(param, layer)| {
            let mut widths: Vec<usize> = records.iter().map(|r| r.width).collect();
            widths.sort_unstable();
            widths.dedup();
            let pts: Vec<(f64, f64)> = widths
                .iter()
                .filter_map(|&w| {
                    let v: Vec<f64> = records
                        .iter()
                        .filter(|r| {
                            r.t == t && r.param == param && r.layer == layer && r.width == w
                        })
                        .map(|r| r.l1)
                        .collect();
                    let m = v.iter().sum::<f64>() / v.len().max(1) as f64;
                    (!v.is_empty() && m > 0.0).then(|| ((w as f64).log2(), m.log2()))
                })
                .collect();
            (param, layer, slope(&pts))
        })
        .collect()
}

fn slope(pts: &[(f64, f64)]) -> f64 {
    let n = pts.len() as f64;
    if pts.len() < 2 {
        return 0.0;
    }
    let (mx, my) = (
        pts.iter().map(|p| p.0).sum::<f64>() / n,
        pts.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

/// One run of the learning-rate sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepRecord {
    pub param: &'static str,
    pub width: usize,
    pub lr: f64,
    pub seed: u64,
    /// Mean training loss over the last tenth of the steps (NaN when the run diverged).
    pub train_loss: f64,
    pub val_loss: Option<f64>,
    pub diverged: bool,
}

/// Trains every (parametrization, width, lr, seed) for the configured steps; the optimizer's base lr is
/// replaced by each value of `lrs`.
pub fn lr_sweep(
    sweep: &WidthSweep,
    lrs: &[f64],
    mut progress: impl FnMut(&SweepRecord),
) -> Result<Vec<SweepRecord>> {
    sweep.check()?;
    if lrs.is_empty() || lrs.iter().any(|l| !(l.is_finite() && *l > 0.0)) {
        return Err(Error::invalid(
            "the learning rates must be positive numbers",
        ));
    }
    let steps = sweep
        .config
        .steps
        .ok_or_else(|| Error::invalid("the learning-rate sweep needs a number of steps"))?;
    let mut out = Vec::new();
    for mup in [false, true] {
        for &width in &sweep.widths {
            for &lr in lrs {
                for &seed in &sweep.seeds {
                    let mut cfg = TrainConfig {
                        model: sweep.model_at(width, mup)?,
                        seed,
                        ..sweep.config.clone()
                    };
                    let mut opt = from_spec(&cfg.optimizer)?;
                    opt.set_hyperparam("lr", lr)?;
                    cfg.optimizer = opt.spec();
                    // Evaluate (and so average the training loss) over the last tenth of the run.
                    cfg.eval_every = (steps / 10).max(1);
                    let mut t = Trainer::new(cfg)?;
                    let r = match t.run(None, &mut []) {
                        Ok(s) => SweepRecord {
                            param: if mup { "mup" } else { "sp" },
                            width,
                            lr,
                            seed,
                            train_loss: s.final_train_loss,
                            val_loss: s.val_loss,
                            diverged: !s.final_train_loss.is_finite(),
                        },
                        Err(Error::NonFinite(_)) => SweepRecord {
                            param: if mup { "mup" } else { "sp" },
                            width,
                            lr,
                            seed,
                            train_loss: f64::NAN,
                            val_loss: None,
                            diverged: true,
                        },
                        Err(e) => return Err(e),
                    };
                    progress(&r);
                    out.push(r);
                }
            }
        }
    }
    Ok(out)
}

/// Per (parametrization, width): the lr with the lowest mean (over seeds) training loss, and that loss.
/// Diverged runs count as +∞.
pub fn best_lrs(records: &[SweepRecord]) -> Vec<(&'static str, usize, f64, f64)> {
    let mut keys: Vec<(&'static str, usize)> = records.iter().map(|r| (r.param, r.width)).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|(param, width)| {
            let mut lrs: Vec<f64> = records
                .iter()
                .filter(|r| r.param == param && r.width == width)
                .map(|r| r.lr)
                .collect();
            lrs.sort_by(f64::total_cmp);
            lrs.dedup();
            lrs.into_iter()
                .map(|lr| {
                    let v: Vec<f64> = records
                        .iter()
                        .filter(|r| r.param == param && r.width == width && r.lr == lr)
                        .map(|r| {
                            if r.diverged {
                                f64::INFINITY
                            } else {
                                r.train_loss
                            }
                        })
                        .collect();
                    (lr, v.iter().sum::<f64>() / v.len() as f64)
                })
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(lr, loss)| (param, width, lr, loss))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
