//! The demo (`optlab demo`): the default MLP on the embedded digits data with every optimizer the library has,
//! one report; then the best model's stability report and Lipschitz certificate ([`super::analysis`]).

use super::analysis::{analyse_run, AnalysisOptions, RunAnalysis};
use super::compare::{Comparison, ComparisonResult, Plan};
use super::report::Report;
use crate::train::{Observer, TrainConfig};
use crate::Result;
use std::path::Path;

/// The demo's optimizers: every method the library has, with settings that suit the digits MLP.
pub const DEMO_OPTIMIZERS: &[&str] = &[
    "sgd:lr=0.1",
    "sgd:lr=0.1,momentum=0.9,nesterov=true",
    "adam:lr=1e-3",
    "adamw:lr=1e-3,weight_decay=0.01",
    "adagrad:lr=0.05",
    "rmsprop:lr=1e-3",
    "lion:lr=1e-3",
    "diffgrad:lr=3e-3",
    "adamp:lr=3e-3",
    "sgdp:lr=0.1,momentum=0.9",
    "nsgd:lr=0.1",
    "adagradnorm:lr=0.5",
    "adahessian:lr=0.15",
];

/// The demo's comparison: [`DEMO_OPTIMIZERS`] on the default task for `epochs` epochs, seed 0.
pub fn comparison(epochs: u64) -> Result<Comparison> {
    let mut base = TrainConfig::default();
    (base.options.epochs, base.options.steps) = (Some(epochs), None);
    let optimizers = DEMO_OPTIMIZERS
        .iter()
        .map(|s| Ok((s.to_string(), s.parse()?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(Comparison {
        base,
        models: Vec::new(),
        optimizers,
        seeds: vec![0],
    })
}

/// Plans the demo into `out`.
pub fn plan(out: &Path, epochs: u64) -> Result<Plan> {
    comparison(epochs)?.plan(out)
}

/// Runs a planned demo: the comparison, then the analysis of its best model, one report.
pub fn run(
    plan: Plan,
    observer: &mut dyn FnMut(&str) -> Box<dyn Observer>,
) -> Result<(ComparisonResult, Option<RunAnalysis>, Report)> {
    let result = plan.run(observer)?;
    let mut report = result.report()?;
    let analysis = match result.best() {
        Some((label, best)) => {
            let a = analyse_run(&best.dir, &AnalysisOptions::default())?;
            report.markdown.push('\n');
            report.markdown.push_str(&a.markdown(label));
            Some(a)
        }
        None => None,
    };
    Ok((result, analysis, report))
}
