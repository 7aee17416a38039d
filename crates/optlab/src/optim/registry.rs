//! The optimizer registry: one row per optimizer with its name, paper, summary, muP rule and builder. Spec
//! parsing, the list of names in errors, muP's defaults and `optlab papers` all read this table; adding an
//! optimizer is its module plus one row here.

use super::{
    adagrad, adagradnorm, adahessian, adam, adamp, chain, csmd, diffgrad, lion, mfac, nsgd,
};
use super::{rmsprop, sgd, Optimizer};
use crate::method::{Kind, Method, MupRule, MupSupport};
use crate::spec::unknown_name;
use crate::{Error, Result, Spec};
use std::fmt;
use std::str::FromStr;

/// One registered optimizer.
pub struct OptimizerEntry {
    /// Name, paper, summary, module and command.
    pub method: Method,
    /// How muP scales its per-tensor learning rates.
    pub mup: MupSupport,
    /// Builds it from a whole spec string `name:key=value,...`.
    pub parse: fn(&str) -> Result<Box<dyn Optimizer>>,
}

impl fmt::Debug for OptimizerEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OptimizerEntry")
            .field("method", &self.method)
            .field("mup", &self.mup)
            .finish()
    }
}

const fn optimizer(
    name: &'static str,
    paper: Option<&'static str>,
    summary: &'static str,
    module: &'static str,
    mup: MupSupport,
    parse: fn(&str) -> Result<Box<dyn Optimizer>>,
) -> OptimizerEntry {
    OptimizerEntry {
        method: Method {
            name,
            kind: Kind::Optimizer,
            paper,
            summary,
            module,
            command: "optlab train --optimizer NAME:key=value,...",
        },
        mup,
        parse,
    }
}

fn spec(s: &str) -> Result<Spec> {
    Spec::parse(s)
}

const ADAM: MupSupport = MupSupport::Rule(MupRule::Adam);
const SGD: MupSupport = MupSupport::Rule(MupRule::Sgd);

/// Every optimizer, in the order they are listed to users.
pub static OPTIMIZERS: &[OptimizerEntry] = &[
    optimizer(
        "sgd",
        None,
        "SGD with momentum, dampening, Nesterov and coupled weight decay, as torch.optim.SGD",
        "optlab::optim::sgd",
        SGD,
        |s| Ok(Box::new(sgd::Sgd::from_spec(&mut spec(s)?)?)),
    ),
    optimizer(
        "adam",
        None,
        "Adam with coupled L2 weight decay and AMSGrad, as torch.optim.Adam",
        "optlab::optim::adam",
        ADAM,
        |s| Ok(Box::new(adam::Adam::from_spec(&mut spec(s)?)?)),
    ),
    optimizer(
        "adamw",
        None,
        "Adam with decoupled weight decay, as torch.optim.AdamW",
        "optlab::optim::adam",
        ADAM,
        |s| Ok(Box::new(adam::AdamW::from_spec(&mut spec(s)?)?)),
    ),
    optimizer(
        "adagrad",
        None,
        "per-coordinate accumulated squared gradients, as torch.optim.Adagrad",
        "optlab::optim::adagrad",
        ADAM,
        |s| Ok(Box::new(adagrad::Adagrad::from_spec(&mut spec(s)?)?)),
    ),
    optimizer(
        "rmsprop",
        None,
        "running RMS normalisation with optional centering and momentum, as torch.optim.RMSprop",
        "optlab::optim::rmsprop",
        ADAM,
        |s| Ok(Box::new(rmsprop::RmsProp::from_spec(&mut spec(s)?)?)),
    ),
    optimizer(
        "lion",
        Some("P41"),
        "sign momentum with decoupled decay (a box constraint), and Lion-kappa for other convex K",
        "optlab::optim::lion",
        ADAM,
        |s| Ok(Box::new(lion::Lion::from_spec(&mut spec(s)?)?)),
    ),
    optimizer(
        "diffgrad",
        Some("P15"),
        "Adam whose first moment is damped by a friction term of the gradient change",
        "optlab::optim::diffgrad",
        ADAM,
        |s| Ok(Box::new(diffgrad::DiffGrad::from_spec(&mut spec(s)?)?)),
    ),
    optimizer(
        "adamp",
        Some("P30"),
        "Adam that removes the radial part of updates to scale-invariant weights",
        "optlab::optim::adamp",
        ADAM,
        |s| Ok(Box::new(adamp::AdamP::from_spec(&mut spec(s)?)?)),
    ),
    optimizer(
        "sgdp",
        Some("P30"),
        "SGD with the same projection of scale-invariant weights",
        "optlab::optim::adamp",
        SGD,
        |s| Ok(Box::new(adamp::SgdP::from_spec(&mut spec(s)?)?)),
    ),
    optimizer(
        "nsgd",
        Some("P05"),
        "normalized momentum SGD, the upper-level update of BO-REP",
        "optlab::optim::nsgd",
        MupSupport::Unsupported(
            "its step has length lr over all parameters together, so no per-tensor rule keeps it width-independent",
        ),
        |s| Ok(Box::new(nsgd::NormalizedSgd::from_spec(&mut spec(s)?)?)),
    ),
    optimizer(
        "csmd",
        Some("P06"),
        "composite stochastic mirror descent (Euclidean): projected / proximal SGD with P06's step rules, L1/L2 prox, box and ball domains",
        "optlab::optim::csmd",
        SGD,
        |s| Ok(Box::new(csmd::Csmd::from_spec(&mut spec(s)?)?)),
    ),
    optimizer(
        "adagradnorm",
        Some("P29"),
        "AdaGrad-Norm with one step size per output row, for adaptive batch sizes",
        "optlab::optim::adagradnorm",
        ADAM,
        |s| Ok(Box::new(adagradnorm::AdaGradNorm::from_spec(&mut spec(s)?)?)),
    ),
    optimizer(
        "adahessian",
        Some("P35"),
        "Adam on a Hutchinson estimate of the Hessian diagonal, spatially averaged",
        "optlab::optim::adahessian",
        ADAM,
        |s| Ok(Box::new(adahessian::AdaHessian::from_spec(&mut spec(s)?)?)),
    ),
    optimizer(
        "mfac",
        Some("P26"),
        "matrix-free inverse empirical Fisher over a sliding window of gradients",
        "optlab::optim::mfac",
        SGD,
        |s| Ok(Box::new(mfac::Mfac::from_spec(&mut spec(s)?)?)),
    ),
    optimizer(
        "chain",
        None,
        "optax-style recipes of small gradient transformations joined by +",
        "optlab::optim::chain",
        MupSupport::ByInstance,
        |s| {
            let items = s.split_once(':').map_or("", |(_, rest)| rest);
            Ok(Box::new(chain::Chain::parse(items)?))
        },
    ),
];

/// The registered names, in order.
pub fn optimizer_names() -> Vec<&'static str> {
    OPTIMIZERS.iter().map(|e| e.method.name).collect()
}

/// The registry row of `name`.
pub fn entry(name: &str) -> Option<&'static OptimizerEntry> {
    OPTIMIZERS.iter().find(|e| e.method.name == name)
}

/// Builds an optimizer from `name:key=value,...`; unknown names, unknown keys and invalid values are errors
/// that list what is valid.
pub fn from_spec(text: &str) -> Result<Box<dyn Optimizer>> {
    let text = text.trim();
    let name = text.split(':').next().unwrap_or("").trim();
    if name.is_empty() {
        // Spec's own message for an empty name.
        Spec::parse(text)?;
    }
    let name = name.to_ascii_lowercase();
    let e = entry(&name).ok_or_else(|| unknown_name("optimizer", &name, &optimizer_names()))?;
    (e.parse)(text)
}

/// A validated optimizer choice: the optimizer it builds, fresh, with its hyperparameters and groups. Parsed
/// from a spec string (`FromStr`), or made from an optimizer built in Rust (`From`); `Display` gives the canonical
/// spec, which parses back to the same optimizer.
#[derive(Debug)]
pub struct OptimizerSpec(Box<dyn Optimizer>);

impl OptimizerSpec {
    /// A new optimizer with these settings and no state.
    pub fn build(&self) -> Box<dyn Optimizer> {
        self.0.fresh()
    }

    /// The registered name.
    pub fn name(&self) -> &'static str {
        self.0.name()
    }

    /// The optimizer's base value of a hyperparameter.
    pub fn hyperparam(&self, key: &str) -> Result<f64> {
        self.0.hypers().base(key)
    }

    /// The same optimizer with `key` set to `value` (validated).
    pub fn with(&self, key: &str, value: f64) -> Result<OptimizerSpec> {
        let mut o = self.build();
        o.set_hyperparam(key, value)?;
        Ok(OptimizerSpec(o))
    }
}

impl<O: Optimizer + 'static> From<O> for OptimizerSpec {
    fn from(o: O) -> Self {
        OptimizerSpec(o.fresh())
    }
}

impl From<Box<dyn Optimizer>> for OptimizerSpec {
    fn from(o: Box<dyn Optimizer>) -> Self {
        OptimizerSpec(o.fresh())
    }
}

impl Clone for OptimizerSpec {
    fn clone(&self) -> Self {
        OptimizerSpec(self.0.fresh())
    }
}

impl PartialEq for OptimizerSpec {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl FromStr for OptimizerSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(OptimizerSpec(from_spec(s)?))
    }
}

impl fmt::Display for OptimizerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.spec())
    }
}

crate::spec::serde_via_string!(OptimizerSpec);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_optimizer_parses_round_trips_and_has_a_mup_answer() {
        for e in OPTIMIZERS {
            let name = e.method.name;
            let text = if name == "chain" {
                "chain:scale_by_adam+scale_by_learning_rate:lr=0.01".to_string()
            } else {
                name.to_string()
            };
            let o = from_spec(&text).unwrap();
            assert_eq!(o.name(), name);
            let again = from_spec(&o.spec()).unwrap();
            assert_eq!(again.spec(), o.spec(), "{name}");
            assert!(o.lr().is_ok(), "{name} has no lr");
            // muP either applies a rule or says why not; never a silent default.
            match (e.mup, o.mup_rule()) {
                (MupSupport::Unsupported(_), r) => {
                    let msg = r.unwrap_err().to_string();
                    assert!(msg.contains("mup_rule"), "{name}: {msg}");
                }
                (_, r) => {
                    r.unwrap();
                }
            }
        }
        let e = from_spec("adamq").unwrap_err().to_string();
        assert!(e.contains("available: sgd, adam, adamw"), "{e}");
        let spec: OptimizerSpec = "sgd:lr=0.1,momentum=0.9".parse().unwrap();
        assert_eq!(spec.to_string().parse::<OptimizerSpec>().unwrap(), spec);
        assert_eq!(spec.with("lr", 0.5).unwrap().hyperparam("lr").unwrap(), 0.5);
    }
}
