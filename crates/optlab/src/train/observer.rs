//! Observers see a run's metrics as they happen (argmin style): progress bars, logs, live plots.

use super::{EvalMetrics, StepMetrics, Summary};
use std::path::Path;

/// What a run is about to do.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// Total optimizer steps of the run.
    pub total_steps: u64,
    /// The step the run starts from (non-zero when resumed).
    pub start_step: u64,
    /// Steps per pass over the training split.
    pub steps_per_epoch: u64,
    /// Training and validation examples.
    pub train_examples: usize,
    pub val_examples: usize,
    /// Scalar parameters of the model.
    pub num_params: usize,
    /// The model's layers, e.g. `Linear(64, 128) - relu - Linear(128, 10)`.
    pub model: String,
    /// The optimizer's canonical spec.
    pub optimizer: String,
}

/// Callbacks of a training run; every method has an empty default.
pub trait Observer {
    fn on_start(&mut self, _info: &RunInfo) {}
    fn on_step(&mut self, _m: &StepMetrics) {}
    fn on_eval(&mut self, _m: &EvalMetrics) {}
    fn on_checkpoint(&mut self, _step: u64, _dir: &Path) {}
    fn on_end(&mut self, _s: &Summary) {}
}
