//! optlab: the methods of 42 machine-learning optimization papers (ids P01..P42 in `PAPERS.md`) as tested,
//! fast Rust software on top of the candle tensor engine.
//!
//! The library is split by job:
//! - [`data`]: the embedded digits set, synthetic generators and loaders for CSV, IDX and safetensors files;
//! - [`nn`]: models whose parameter names follow PyTorch's `nn.Sequential` state dicts;
//! - [`mup`]: muP's base shapes, per-tensor learning rates and its width checks (P42);
//! - [`optim`]: the [`optim::Optimizer`] trait, fused in-place optimizers with typed configs, and their registry;
//! - [`schedule`]: learning-rate (and other hyperparameter) schedules;
//! - [`train`]: the training loop, observers, run directories and checkpoints;
//! - [`experiment`]: many runs and what they add up to (comparisons, width sweeps, reports, the demo);
//! - [`implicit`]: implicit differentiation of a solution through its optimality condition, and linear solvers (P10);
//! - [`curvature`], [`lipschitz`], [`solvers`], [`anneal_law`], [`scaling`]: analyses and standalone methods;
//! - [`method`]: what every registered method declares (name, paper, summary, module, muP rule);
//! - [`second_order`]: the probe every second-order API calls before differentiating twice.
//!
//! Inside, every choice is a typed value ([`train::TrainConfig`] holds a [`data::DataSpec`], a
//! [`nn::ModelSpec`], an [`optim::OptimizerSpec`] and a [`schedule::ScheduleSpec`]); spec strings and TOML are
//! parsed once, at the edge.
//!
//! ```no_run
//! use optlab::train::{TrainConfig, Trainer};
//! let mut cfg = TrainConfig::default(); // digits, MLP 64-128-10, AdamW
//! cfg.options.epochs = Some(2);
//! let summary = Trainer::new(cfg).unwrap().run(None, &mut []).unwrap();
//! println!("validation accuracy {:?}", summary.val_accuracy);
//! ```

pub mod alignment;
pub mod alloc;
pub mod anneal_law;
pub mod bilevel;
pub mod constrained;
pub mod curvature;
pub mod data;
pub mod distributed;
pub mod ep;
pub mod error;
pub mod eval;
pub mod experiment;
pub mod explain;
pub mod functions;
pub mod generative;
pub mod implicit;
pub mod linsolve;
pub mod lipschitz;
pub mod memory;
pub mod method;
pub mod mup;
pub mod nn;
pub mod online;
pub mod optim;
pub mod pde;
pub mod privacy;
pub mod refine;
pub mod registry;
pub mod rl;
pub mod rng;
pub mod runtime;
pub mod scalar;
pub mod scaling;
pub mod schedule;
pub mod second_order;
pub mod sim;
pub(crate) mod simd;
pub mod solvers;
pub mod spec;
pub mod tensor_io;
pub mod train;

pub use error::{Error, Result};
pub use second_order::{grad_of_inner, gradients, hvp, require_second_order, second_order_enabled};
pub use spec::Spec;
