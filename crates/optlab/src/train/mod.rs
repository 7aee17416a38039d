//! Training: a configuration ([`TrainConfig`]), the loop ([`Trainer`]), observers that see metrics
//! ([`Observer`]), and run directories with checkpoints that resume bit-exactly ([`checkpoint`]).
//!
//! A run directory holds `config.toml` (resolved), `metrics.jsonl` (one JSON object per logged step or
//! evaluation), `summary.json`, `model.safetensors`, `optimizer.safetensors` + `optimizer.json`, and
//! `checkpoints/` (the last good checkpoint); a run on an embedded table also `encoding.json` (its one-hot layout
//! and standardization statistics). The CLI adds `plots/`.

pub mod batch_size;
pub mod checkpoint;
mod config;
mod metrics;
mod observer;
pub mod run_dir;
pub mod snapshot;
pub mod sso;
mod trainer;

pub use config::{HyperSchedule, LossChoice, Precision, Task, TrainConfig, TrainOptions};
pub use metrics::{
    read_metrics, EvalMetrics, MetricsLog, PrivacySummary, Record, StepMetrics, Summary,
};
pub use observer::{Observer, RunInfo};
pub use trainer::{RunOptions, Trainer};
