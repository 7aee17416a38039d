//! Experiments: many training runs and what they add up to. Sweeps over seeds and axes (optimizers, models,
//! widths, learning rates), their run directories, aggregation over seeds (mean, standard deviation, mean
//! curves) and reports (Markdown and chart data; the CLI draws the charts). This layer sits above the trainer:
//! it calls [`crate::train::Trainer`], never the other way round.

pub mod analysis;
pub mod compare;
pub mod demo;
pub mod report;
pub mod width;

pub use analysis::{analyse_run, AnalysisOptions, RunAnalysis};
pub use compare::{Comparison, ComparisonResult, Outcome, Plan, RunOutcome};
pub use report::{Chart, Report, Series};
