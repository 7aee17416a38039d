//! Optimizers. An [`Optimizer`] sees all named parameters and their gradients at once, keeps typed state per
//! parameter, exposes every hyperparameter by name (so schedules can drive lr, betas or weight decay), and
//! saves/loads its state bit-exactly. Updates run as fused, threaded, in-place kernels ([`kernel`]).
//!
//! One step counter per optimizer drives bias corrections and decays (PyTorch keeps one per parameter): the
//! two agree whenever every parameter receives a gradient from the first step on, as in optlab's trainer; a
//! parameter that joins later (a frozen layer thawed at step t) starts its bias correction at t here.
//!
//! Build one from Rust values with its typed config, or from a spec string through the registry
//! ([`OPTIMIZERS`], [`from_spec`]):
//! ```
//! use optlab::optim::{lion::{Lion, LionConfig}, Optimizer};
//! let opt = Lion::new(LionConfig { lr: 3e-4, weight_decay: 0.1, ..Default::default() }).unwrap();
//! assert_eq!(opt.hyperparam("weight_decay").unwrap(), 0.1);
//! let same = optlab::optim::from_spec("lion:lr=3e-4,weight_decay=0.1").unwrap();
//! assert_eq!(same.spec(), opt.spec());
//! ```

/// The accessors every optimizer has, for a struct with fields `h: HyperGroups<_>` and `state: OptimizerState`;
/// with `fresh`, also [`Optimizer::fresh`] by cloning and clearing the state.
macro_rules! optimizer_accessors {
    () => {
        fn hypers(&self) -> &dyn $crate::optim::HyperTable {
            &self.h
        }
        fn hypers_mut(&mut self) -> &mut dyn $crate::optim::HyperTable {
            &mut self.h
        }
        fn state(&self) -> &$crate::optim::OptimizerState {
            &self.state
        }
        fn state_mut(&mut self) -> &mut $crate::optim::OptimizerState {
            &mut self.state
        }
    };
    (fresh) => {
        optimizer_accessors!();
        fn fresh(&self) -> Box<dyn $crate::optim::Optimizer> {
            let mut o = self.clone();
            o.state = $crate::optim::OptimizerState::new(self.name());
            Box::new(o)
        }
    };
}

/// An optimizer whose step is one fused kernel per parameter ([`update_each`]): the struct (typed
/// hyperparameters with groups, and the state), `new(config)`, `from_spec`, and the whole [`Optimizer`] impl, from
/// the method's [`FusedStep`] (its config type, buffers and kernel).
macro_rules! fused_optimizer {
    ($(#[$meta:meta])* pub struct $name:ident($owner:literal, $config:ty, defaults = $defaults:expr);) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        pub struct $name {
            h: $crate::optim::HyperGroups<$config>,
            state: $crate::optim::OptimizerState,
        }

        impl $name {
            #[doc = concat!("`", $owner, "` with `config` (every value checked).")]
            pub fn new(config: $config) -> $crate::Result<Self> {
                Ok($name {
                    h: $crate::optim::HyperGroups::new($owner, config)?,
                    state: $crate::optim::OptimizerState::new($owner),
                })
            }

            #[doc = concat!("From a spec `", $owner, ":key=value,...` (the keys are the config's fields).")]
            pub fn from_spec(s: &mut $crate::Spec) -> $crate::Result<Self> {
                Self::new($crate::optim::hyper::parse($owner, $defaults, s)?)
            }
        }

        impl $crate::optim::Optimizer for $name {
            optimizer_accessors!(fresh);

            fn buffer_names(&self) -> Vec<String> {
                $crate::optim::owned_names(<Self as $crate::optim::FusedStep>::BUFFERS)
            }

            fn step(
                &mut self,
                params: &[$crate::nn::Param],
                grads: &candle_core::backprop::GradStore,
            ) -> $crate::Result<()> {
                self.state.step += 1;
                let step = self.state.step;
                $crate::optim::update_each(
                    &mut self.state,
                    &self.h,
                    <Self as $crate::optim::FusedStep>::BUFFERS.len(),
                    params,
                    grads,
                    |p, h, fresh| <Self as $crate::optim::FusedStep>::kernel(p, h, fresh, step),
                )
            }
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
pub mod csmd;
pub mod diffgrad;
pub mod flat;
pub mod groups;
pub mod hyper;
pub mod kernel;
pub mod lion;
pub mod mfac;
pub mod nsgd;
mod registry;
pub mod rmsprop;
pub mod sgd;
mod state;

pub use groups::{HyperGroups, HyperTable, ParamGroup, Selector};
pub use hyper::{HyperDef, HyperSet, Range};
pub use kernel::Buf;
pub use registry::{entry, from_spec, optimizer_names, OptimizerEntry, OptimizerSpec, OPTIMIZERS};
pub use state::{load_state_file, save_state_file, OptimizerState};

use crate::method::{MupRule, MupSupport};
use crate::nn::Param;
use crate::{Error, Result};
use candle_core::backprop::GradStore;
use candle_core::Tensor;

/// A first-order optimizer over named parameters.
pub trait Optimizer: Send + std::fmt::Debug {
    /// The hyperparameters by name: the default group and any parameter groups.
    fn hypers(&self) -> &dyn HyperTable;

    /// The hyperparameters by name, mutably (validated on every set).
    fn hypers_mut(&mut self) -> &mut dyn HyperTable;

    /// One update of every parameter that has a gradient in `grads`.
    fn step(&mut self, params: &[Param], grads: &GradStore) -> Result<()>;

    /// The state: step count and per-parameter buffers.
    fn state(&self) -> &OptimizerState;

    /// The state, mutably (used by [`Optimizer::load_state`]).
    fn state_mut(&mut self) -> &mut OptimizerState;

    /// The names of the per-parameter buffers, in kernel order (PyTorch's names where they exist).
    fn buffer_names(&self) -> Vec<String>;

    /// How many buffers each parameter keeps (without making their names).
    fn buffer_count(&self) -> usize {
        self.buffer_names().len()
    }

    /// Bytes of state beyond the per-parameter buffers, for a model of `params` parameters (M-FAC's window of
    /// gradients in f64 and its Gram matrix); for the memory check before training.
    fn extra_state_bytes(&self, _params: f64) -> f64 {
        0.0
    }

    /// A new optimizer with the same hyperparameters and groups and no state.
    fn fresh(&self) -> Box<dyn Optimizer>;

    /// Whether [`Optimizer::step`] differentiates the gradients it is given (AdaHessian's Hessian-vector
    /// products): the backward pass that makes them must then keep their graph ([`crate::gradients`]).
    fn differentiates_gradients(&self) -> bool {
        false
    }

    /// One step on the gradients of `loss` (candle-nn's `backward_step`); the backward pass keeps their
    /// graph only when the step differentiates them.
    fn backward_step(&mut self, params: &[Param], loss: &Tensor) -> Result<()> {
        let grads = crate::gradients(loss, self.differentiates_gradients())?;
        self.step(params, &grads)
    }

    /// The method's name as written in spec strings.
    fn name(&self) -> &'static str {
        self.hypers().owner()
    }

    /// Adds a parameter group after the existing ones.
    fn add_group(&mut self, group: ParamGroup) -> Result<()> {
        let n = self.hypers().groups().len();
        self.insert_group(n, group)
    }

    /// Inserts a parameter group at position `index`: it takes precedence over the groups after it.
    fn insert_group(&mut self, index: usize, group: ParamGroup) -> Result<()> {
        self.hypers_mut().insert_group(index, group)
    }

    /// The current value of a hyperparameter.
    fn hyperparam(&self, key: &str) -> Result<f64> {
        self.hypers().get(key)
    }

    /// Sets a hyperparameter in every group, validating it.
    fn set_hyperparam(&mut self, key: &str, value: f64) -> Result<()> {
        self.hypers_mut().set(key, value)
    }

    /// Sets each group's `key` to its base value times `factor` (how schedules drive lr, momentum, ...).
    fn apply_schedule(&mut self, key: &str, factor: f64) -> Result<()> {
        self.hypers_mut().apply_factor(key, factor)
    }

    /// The current learning rate.
    fn lr(&self) -> Result<f64> {
        self.hypers().get("lr")
    }

    /// The canonical spec string of the hyperparameters (base values).
    fn spec(&self) -> String {
        self.hypers().to_spec()
    }

    /// muP's rule for this optimizer's per-tensor learning rates (P42), from the registry; an error says why
    /// none applies.
    fn mup_rule(&self) -> Result<MupRule> {
        match entry(self.name()).map(|e| e.mup) {
            Some(MupSupport::Rule(r)) => Ok(r),
            Some(MupSupport::Unsupported(why)) => Err(Error::invalid(format!(
                "muP: no scaling rule for optimizer '{}': {why}; set mup_rule = adam or sgd to force one",
                self.name()
            ))),
            Some(MupSupport::ByInstance) | None => Err(Error::invalid(format!(
                "muP: optimizer '{}' does not say how it scales; set mup_rule = adam or sgd",
                self.name()
            ))),
        }
    }

    /// Replaces the state with `state` after checking it against `params`.
    fn load_state(&mut self, state: OptimizerState, params: &[Param]) -> Result<()> {
        state.check(self.name(), &self.buffer_names(), params)?;
        *self.state_mut() = state;
        Ok(())
    }
}

/// A method whose update is one fused kernel per parameter (see `fused_optimizer!`).
pub(crate) trait FusedStep {
    /// The typed hyperparameters.
    type Config: HyperSet;
    /// The per-parameter update.
    type Kernel: kernel::Kernel;
    /// The per-parameter state buffers, in kernel order (PyTorch's names where they exist).
    const BUFFERS: &'static [&'static str];
    /// The kernel of step `step` (1-based) for parameter `p` under its group's values `h`; `fresh` on the
    /// parameter's first update.
    fn kernel(p: &Param, h: &Self::Config, fresh: bool, step: u64) -> Self::Kernel;
}

/// Owned buffer names from a static list.
pub(crate) fn owned_names(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Applies one fused kernel to every parameter that has a gradient, creating `buffers` zero state buffers on
/// first use. `kernel(p, h, fresh)` builds the kernel for parameter `p` from its group's hyperparameters `h`;
/// `fresh` is true on the parameter's first update.
pub(crate) fn update_each<C: HyperSet, K: kernel::Kernel>(
    state: &mut OptimizerState,
    hypers: &HyperGroups<C>,
    buffers: usize,
    params: &[Param],
    grads: &GradStore,
    kernel: impl Fn(&Param, &C, bool) -> K,
) -> Result<()> {
    for p in params {
        let Some(g) = grads.get(p.tensor()) else {
            continue;
        };
        let bufs = match state.buffers.entry(p.name.clone()) {
            std::collections::btree_map::Entry::Occupied(e) => (e.into_mut(), false),
            std::collections::btree_map::Entry::Vacant(e) => {
                let n = p.numel();
                let zeros = (0..buffers)
                    .map(|_| Buf::zeros(p.var.dtype(), n))
                    .collect::<Result<Vec<_>>>()?;
                (e.insert(zeros), true)
            }
        };
        let (bufs, fresh) = bufs;
        kernel::fused_update(p, g, bufs, &kernel(p, hypers.for_param(p), fresh))?;
    }
    Ok(())
}

/// A gradient store holding `grads` for the given parameters, for stepping an optimizer with gradients computed
/// some other way (a hypergradient, say) than one backward pass.
pub fn grads_for(params: &[Param], grads: &[Tensor]) -> Result<GradStore> {
    if params.len() != grads.len() {
        return Err(crate::Error::Shape(format!(
            "{} gradients for {} parameters",
            grads.len(),
            params.len()
        )));
    }
    // candle builds gradient stores only by a backward pass: that of a constant gives an empty one.
    let mut store = Tensor::new(0f32, &candle_core::Device::Cpu)?.backward()?;
    for (p, g) in params.iter().zip(grads) {
        if g.dims() != p.var.dims() || g.dtype() != p.var.dtype() {
            return Err(crate::Error::Shape(format!(
                "the gradient for {} has shape {:?} ({:?}), the parameter {:?} ({:?})",
                p.name,
                g.dims(),
                g.dtype(),
                p.var.dims(),
                p.var.dtype()
            )));
        }
        store.insert(p.tensor(), g.clone());
    }
    Ok(store)
}
