//! A diffusion run end to end, for the CLI: data drawn from a mixture target, a score network trained by DSM,
//! and the report of a score (network or exact): score error over time, samples and how close they are.

use super::dsm::{train, DsmConfig};
use super::metrics::{energy_distance, mode_recall, score_error, ModeReport, ScoreError};
use super::mixture::Mixture;
use super::process::Process;
use super::sample::{sample, Sampler};
use super::score::{ScoreFn, ScoreNet};
use crate::nn::ModelSpec;
use crate::rng::{rng_for, Stream};
use crate::{Error, Result};
use serde::Serialize;

/// The times at which the score error is reported.
pub const SCORE_TIMES: [f64; 6] = [0.01, 0.05, 0.1, 0.2, 0.5, 1.0];

/// The most samples the energy distance (quadratic in their number) is computed on.
pub const ENERGY_SAMPLES: usize = 2000;

/// What a diffusion training run needs.
#[derive(Debug, Clone)]
pub struct DiffusionConfig {
    pub target: Mixture,
    pub process: Process,
    /// Training samples drawn from the target.
    pub n: usize,
    pub model: ModelSpec,
    pub dsm: DsmConfig,
}

/// The training samples of a run (seeded by the run's seed).
pub fn training_data(cfg: &DiffusionConfig) -> Result<Vec<f64>> {
    if cfg.n == 0 {
        return Err(Error::invalid(
            "diffusion: n must be at least 1 training sample",
        ));
    }
    crate::memory::check(
        "the training samples",
        cfg.n as f64 * cfg.target.dim as f64 * 8.0,
        "use a smaller --n",
    )?;
    Ok(cfg
        .target
        .sample(cfg.n, &mut rng_for(cfg.dsm.seed, Stream::Data, 0)))
}

/// The score network of a run, untrained.
pub fn score_net(cfg: &DiffusionConfig) -> Result<ScoreNet> {
    ScoreNet::new(
        &cfg.model,
        cfg.target.dim,
        cfg.process,
        cfg.dsm.seed,
        candle_core::DType::F32,
    )
}

/// Draws the data and trains the network; `on_step(step, loss)` after every step.
pub fn fit(cfg: &DiffusionConfig, on_step: &mut dyn FnMut(usize, f64)) -> Result<ScoreNet> {
    let data = training_data(cfg)?;
    let net = score_net(cfg)?;
    train(&net, &data, &cfg.dsm, on_step)?;
    Ok(net)
}

/// Samples of a score, measured against the target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SampleReport {
    pub sampler: String,
    pub steps: usize,
    pub n: usize,
    pub seconds: f64,
    pub samples_per_second: f64,
    /// Between (up to 2000 of) the samples and as many fresh target samples.
    pub energy_distance: f64,
    /// Between two fresh target sample sets of that size: the noise floor of the energy distance.
    pub energy_floor: f64,
    pub modes: ModeReport,
    #[serde(skip)]
    pub samples: Vec<f64>,
}

/// Samples `n` points from `score` and measures them.
pub fn sample_report(
    score: &dyn ScoreFn,
    target: &Mixture,
    process: &Process,
    sampler: Sampler,
    n: usize,
    steps: usize,
    seed: u64,
) -> Result<SampleReport> {
    if score.dim() != target.dim {
        return Err(Error::Shape(format!(
            "a score of dimension {} for a target of dimension {}",
            score.dim(),
            target.dim
        )));
    }
    let mut rng = rng_for(seed, Stream::Probe, 0);
    let start = std::time::Instant::now();
    let x = sample(score, process, sampler, n, steps, &mut rng)?;
    let seconds = start.elapsed().as_secs_f64();
    let m = n.min(ENERGY_SAMPLES);
    let a = target.sample(m, &mut rng);
    let b = target.sample(m, &mut rng);
    let d = target.dim;
    Ok(SampleReport {
        sampler: sampler.to_string(),
        steps,
        n,
        seconds,
        samples_per_second: n as f64 / seconds.max(1e-12),
        energy_distance: energy_distance(&x[..m * d], &a, d),
        energy_floor: energy_distance(&b, &a, d),
        modes: mode_recall(target, &x),
        samples: x,
    })
}

/// The score error of `score` at [`SCORE_TIMES`] over `n` points each.
pub fn score_errors(
    score: &dyn ScoreFn,
    target: &Mixture,
    process: &Process,
    n: usize,
    seed: u64,
) -> Result<Vec<ScoreError>> {
    if n == 0 {
        return Err(Error::invalid("the score error needs at least one point"));
    }
    crate::memory::check(
        "the score-error points",
        n as f64 * target.dim as f64 * 32.0,
        "use a smaller --n",
    )?;
    score_error(
        score,
        target,
        process,
        &SCORE_TIMES,
        n,
        &mut rng_for(seed, Stream::Probe, 1),
    )
}
