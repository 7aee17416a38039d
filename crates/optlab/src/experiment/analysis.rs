//! A stability report and a certificate for a trained run: its curvature against the learning rate (λ_max and
//! tr(H) against 2/η, P27/P36) and, for ReLU MLPs, sound Lipschitz bounds (the naive product of layer norms and
//! P02's local bound on an l∞ box around a validation point).

use crate::curvature::{
    hutchinson_trace, lanczos, stability_report, HessianOperator, ModelHessian, Probe,
    StabilityReport,
};
use crate::lipschitz::bab::local_lipschitz;
use crate::lipschitz::local::LocalOptions;
use crate::lipschitz::naive::{naive_bound, Norm};
use crate::lipschitz::network::Network;
use crate::nn::{Activation, ModelSpec, Parametrization};
use crate::train::{TrainConfig, Trainer};
use crate::{Error, Result};
use candle_core::{DType, Device};
use serde::Serialize;
use std::path::Path;

/// How much work the analysis does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnalysisOptions {
    /// Half-width of the l∞ box of the local Lipschitz bound.
    pub eps: f64,
    /// Training examples in the Hessian's batch.
    pub batch: usize,
    /// Lanczos steps for λ_max.
    pub lanczos_steps: usize,
    /// Rademacher probes for Hutchinson's trace.
    pub probes: usize,
    /// Seed of the probes.
    pub seed: u64,
}

impl Default for AnalysisOptions {
    fn default() -> Self {
        AnalysisOptions {
            eps: 0.05,
            batch: 256,
            lanczos_steps: 20,
            probes: 20,
            seed: 0,
        }
    }
}

/// Sound Lipschitz bounds of the trained network (each ≥ the true constant).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LipschitzReport {
    /// Product of the layers' l∞ operator norms: a global bound for the l∞ input norm.
    pub naive_linf: f64,
    /// Product of spectral norms: a global bound for the l2 input norm.
    pub naive_l2: f64,
    /// The l∞ box's half-width.
    pub eps: f64,
    /// P02's local bound (l∞ input norm) on the box around the first validation example.
    pub local_linf: f64,
}

/// What [`analyse_run`] finds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunAnalysis {
    /// Curvature at the trained parameters against the run's base learning rate.
    pub curvature: StabilityReport,
    /// Standard error of the trace estimate.
    pub trace_stderr: f64,
    /// Examples in the Hessian's batch.
    pub hessian_batch: usize,
    /// The bounds, or why this model has none.
    pub lipschitz: std::result::Result<LipschitzReport, String>,
}

/// Curvature and Lipschitz bounds of the model a finished run directory holds (`config.toml`,
/// `model.safetensors`).
pub fn analyse_run(dir: &Path, opts: &AnalysisOptions) -> Result<RunAnalysis> {
    let config = TrainConfig::from_toml_file(&dir.join("config.toml"))?;
    let lr = config.optimizer.hyperparam("lr")?;
    let model_spec = config.model.clone();
    let t = Trainer::new(config)?;
    t.model().load(&dir.join("model.safetensors"))?;
    let data = t.train_data();
    let idx: Vec<usize> = (0..opts.batch.min(data.len())).collect();
    if idx.is_empty() {
        return Err(Error::invalid(
            "the curvature analysis needs a batch of at least one example",
        ));
    }
    let (x, y) = data.batch(&idx, t.dtype(), &Device::Cpu)?;
    let op = ModelHessian::new(t.model(), x, y, t.is_classification())?;
    let steps = opts.lanczos_steps.clamp(1, op.dim());
    let top = lanczos(&op, steps, opts.seed)?;
    let lambda_max = top
        .ritz_values
        .last()
        .copied()
        .ok_or_else(|| Error::invalid("Lanczos returned no Ritz value"))?;
    let trace = hutchinson_trace(&op, opts.probes.max(1), Probe::Rademacher, opts.seed)?;
    let curvature = stability_report(lambda_max, trace.mean, lr)?;
    let center = t.val_data().unwrap_or(t.train_data());
    let lipschitz = lipschitz_of(&t, &model_spec, center, opts.eps).map_err(|e| e.to_string());
    Ok(RunAnalysis {
        curvature,
        trace_stderr: trace.stderr,
        hessian_batch: idx.len(),
        lipschitz,
    })
}

fn lipschitz_of(
    t: &Trainer,
    spec: &ModelSpec,
    data: &crate::data::Dataset,
    eps: f64,
) -> Result<LipschitzReport> {
    let relu_mlp = matches!(spec, ModelSpec::Mlp { acts, param: Parametrization::Standard, .. }
        if acts.iter().all(|a| *a == Activation::Relu));
    if !relu_mlp {
        return Err(Error::invalid(
            "Lipschitz bounds here cover ReLU MLPs under the standard parametrization; export other models and use `optlab lipschitz` with a network spec",
        ));
    }
    let net = Network::from_model(t.model())?;
    let (x, _) = data.batch(&[0], DType::F64, &Device::Cpu)?;
    let x0: Vec<f64> = x.flatten_all()?.to_vec1()?;
    let local = local_lipschitz(&net, &x0, &LocalOptions::new(eps), None)?;
    Ok(LipschitzReport {
        naive_linf: naive_bound(&net, Norm::Inf)?.bound,
        naive_l2: naive_bound(&net, Norm::Two)?.bound,
        eps,
        local_linf: local.bound,
    })
}

impl RunAnalysis {
    /// A Markdown section about the model of `label`.
    pub fn markdown(&self, label: &str) -> String {
        let c = &self.curvature;
        let verdict = |ok: bool| if ok { "stable" } else { "unstable" };
        let mut md = format!(
            "## Stability and certificate of the best model (`{label}`)\n\n\
             Curvature of the training loss at the trained parameters ({} examples, P27/P36), against the base \
             learning rate η = {:.3e} (2/η = {:.4e}; the criteria are those of (S)GD):\n\n\
             | quantity | value | criterion | verdict |\n|---|---|---|---|\n\
             | λ_max(H) (Lanczos) | {:.4e} | λ_max ≤ 2/η | {} |\n\
             | tr(H) (Hutchinson, ± {:.1e}) | {:.4e} | tr(H) ≤ 2/η | {} |\n\n",
            self.hessian_batch,
            c.lr,
            c.threshold,
            c.lambda_max,
            verdict(c.gd_stable),
            self.trace_stderr,
            c.trace,
            verdict(c.sgd_stable),
        );
        match &self.lipschitz {
            Ok(l) => md.push_str(&format!(
                "Lipschitz bounds of the network (sound upper bounds, P02):\n\n\
                 | bound | value |\n|---|---|\n\
                 | naive, l∞ input norm (product of layer norms) | {:.4e} |\n\
                 | naive, l2 input norm (product of spectral norms) | {:.4e} |\n\
                 | local, l∞ box of radius {} around a validation point | {:.4e} |\n",
                l.naive_linf, l.naive_l2, l.eps, l.local_linf
            )),
            Err(why) => md.push_str(&format!("No Lipschitz bound: {why}.\n")),
        }
        md
    }
}
