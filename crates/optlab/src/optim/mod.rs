//! Optimizers. An [`Optimizer`] sees all named parameters and their gradients at once, keeps typed state per
//! parameter, exposes every hyperparameter by name (so schedules can drive lr, betas or weight decay), and
//! saves/loads its state bit-exactly. Updates run as fused, threaded, in-place kernels ([`kernel`]).
//!
//! One step counter per optimizer drives bias corrections and decays (PyTorch keeps one per parameter): the
//! two agree whenever every parameter receives a gradient from the first step on, as in optlab's trainer; a
//! parameter that joins later (a frozen layer thawed at step t) starts its bias correction at t here.
//!
//! Build one from a spec string with [`from_spec`]:
//! ```
//! let opt = optlab::optim::from_spec("adamw:lr=1e-3,weight_decay=0.01").unwrap();
//! assert_eq!(opt.hyperparam("weight_decay").unwrap(), 0.01);
//! ```

/// The four accessors every optimizer has, for a struct with fields `h: HyperGroups` and
/// `state: OptimizerState`.
macro_rules! field_accessors {
    () => {
        fn hypers(&self) -> &HyperGroups {
            &self.h
        }
        fn hypers_mut(&mut self) -> &mut HyperGroups {
            &mut self.h
        }
        fn state(&self) -> &OptimizerState {
            &self.state
        }
        fn state_mut(&mut self) -> &mut OptimizerState {
            &mut self.state
        }
    };
}

pub mod adagrad;
pub mod adagradnorm;
pub mod adahessian;
pub mod adam;
pub mod adamp;
pub mod chain;
pub mod clip;
pub mod diffgrad;
pub mod groups;
pub mod hyper;
pub mod kernel;
pub mod lion;
pub mod mfac;
pub mod nsgd;
pub mod rmsprop;
pub mod sgd;
mod state;

pub use groups::{HyperGroups, Selector};
pub use hyper::{HyperDef, Hypers, Range};
pub use kernel::Buf;
pub use state::{load_state_file, save_state_file, OptimizerState};

use crate::nn::Param;
use crate::spec::unknown_name;
use crate::{Result, Spec};
use candle_core::backprop::GradStore;

/// A first-order optimizer over named parameters.
pub trait Optimizer: Send + std::fmt::Debug {
    /// The method's name as written in spec strings.
    fn name(&self) -> &'static str;

    /// The hyperparameters of the default group and of any parameter groups.
    fn hypers(&self) -> &HyperGroups;

    /// The hyperparameters, mutably (validated on every set).
    fn hypers_mut(&mut self) -> &mut HyperGroups;

    /// Constraints between hyperparameters beyond each one's range (checked for every group).
    fn validate(&self, _h: &Hypers) -> Result<()> {
        Ok(())
    }

    /// Adds a parameter group `SELECTOR:key=value,...` (see [`groups`]) after the existing ones.
    fn add_group(&mut self, spec: &str) -> Result<()> {
        let n = self.hypers().group_specs().len();
        self.insert_group(n, spec)
    }

    /// Inserts a parameter group at position `index`: it takes precedence over the groups after it.
    fn insert_group(&mut self, index: usize, spec: &str) -> Result<()> {
        let mut hg = self.hypers().clone();
        hg.insert_group(index, spec)?;
        hg.check_each(|h| self.validate(h))?;
        *self.hypers_mut() = hg;
        Ok(())
    }

    /// One update of every parameter that has a gradient in `grads`.
    fn step(&mut self, params: &[Param], grads: &GradStore) -> Result<()>;

    /// The state: step count and per-parameter buffers.
    fn state(&self) -> &OptimizerState;

    /// The state, mutably (used by [`Optimizer::load_state`]).
    fn state_mut(&mut self) -> &mut OptimizerState;

    /// The names of the per-parameter buffers, in kernel order (PyTorch's names where they exist).
    fn buffer_names(&self) -> &'static [&'static str];

    /// The current value of a hyperparameter.
    fn hyperparam(&self, key: &str) -> Result<f64> {
        self.hypers().try_get(key)
    }

    /// Sets a hyperparameter in every group, validating it.
    fn set_hyperparam(&mut self, key: &str, value: f64) -> Result<()> {
        let mut hg = self.hypers().clone();
        hg.set(key, value)?;
        hg.check_each(|h| self.validate(h))?;
        *self.hypers_mut() = hg;
        Ok(())
    }

    /// Sets each group's `key` to its base value times `factor` (how schedules drive lr, momentum, ...).
    fn apply_schedule(&mut self, key: &str, factor: f64) -> Result<()> {
        self.hypers_mut().apply_factor(key, factor)
    }

    /// The learning rate.
    fn lr(&self) -> f64 {
        self.hypers().get("lr")
    }

    /// The canonical spec string of the current hyperparameters.
    fn spec(&self) -> String {
        self.hypers().to_spec()
    }

    /// Replaces the state with `state` after checking it against `params`.
    fn load_state(&mut self, state: OptimizerState, params: &[Param]) -> Result<()> {
        state.check(self.name(), self.buffer_names(), params)?;
        *self.state_mut() = state;
        Ok(())
    }
}

/// The optimizer names [`from_spec`] knows.
pub const OPTIMIZER_NAMES: &[&str] = &[
    "sgd",
    "adam",
    "adamw",
    "adagrad",
    "rmsprop",
    "lion",
    "diffgrad",
    "adamp",
    "sgdp",
    "nsgd",
    "adagradnorm",
    "adahessian",
    "mfac",
    "chain",
];

/// Builds an optimizer from `name:key=value,...`; unknown names, unknown keys and invalid values are errors
/// that list what is valid.
pub fn from_spec(spec: &str) -> Result<Box<dyn Optimizer>> {
    if let Some(items) = spec.trim().strip_prefix("chain:") {
        return Ok(Box::new(chain::Chain::parse(items)?));
    }
    let mut s = Spec::parse(spec)?;
    Ok(match s.name.as_str() {
        "sgd" => Box::new(sgd::Sgd::from_spec(&mut s)?),
        "adam" => Box::new(adam::Adam::from_spec(&mut s, false)?),
        "adamw" => Box::new(adam::Adam::from_spec(&mut s, true)?),
        "adagrad" => Box::new(adagrad::Adagrad::from_spec(&mut s)?),
        "rmsprop" => Box::new(rmsprop::RmsProp::from_spec(&mut s)?),
        "lion" => Box::new(lion::Lion::from_spec(&mut s)?),
        "diffgrad" => Box::new(diffgrad::DiffGrad::from_spec(&mut s)?),
        "adamp" => Box::new(adamp::AdamP::from_spec(&mut s, false)?),
        "sgdp" => Box::new(adamp::AdamP::from_spec(&mut s, true)?),
        "nsgd" => Box::new(nsgd::NormalizedSgd::from_spec(&mut s)?),
        "adagradnorm" => Box::new(adagradnorm::AdaGradNorm::from_spec(&mut s)?),
        "adahessian" => Box::new(adahessian::AdaHessian::from_spec(&mut s)?),
        "mfac" => Box::new(mfac::Mfac::from_spec(&mut s)?),
        other => return Err(unknown_name("optimizer", other, OPTIMIZER_NAMES)),
    })
}

/// Applies one fused kernel to every parameter that has a gradient, creating zero state buffers on first
/// use. `kernel(p, h, fresh)` builds the kernel for parameter `p` from its group's hyperparameters `h`;
/// `fresh` is true on the parameter's first update.
pub(crate) fn update_each<K: kernel::Kernel>(
    state: &mut OptimizerState,
    hypers: &HyperGroups,
    names: &[&str],
    params: &[Param],
    grads: &GradStore,
    kernel: impl Fn(&Param, &Hypers, bool) -> K,
) -> Result<()> {
    for p in params {
        let Some(g) = grads.get(p.tensor()) else {
            continue;
        };
        let fresh = !state.buffers.contains_key(&p.name);
        if fresh {
            let n = p.numel();
            let bufs = names
                .iter()
                .map(|_| Buf::zeros(p.var.dtype(), n))
                .collect::<Result<Vec<_>>>()?;
            state.buffers.insert(p.name.clone(), bufs);
        }
        let bufs = state.buffers.get_mut(&p.name).expect("inserted above");
        kernel::fused_update(p, g, bufs, &kernel(p, hypers.for_param(p), fresh))?;
    }
    Ok(())
}
