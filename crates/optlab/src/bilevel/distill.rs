//! Data set distillation by implicit differentiation (P10, Section 4 of the paper): learn one synthetic 8x8 image
//! per class so that a logistic regression trained on those ten images alone (the lower level, with a small L2
//! penalty) fits the real training split (the upper level, mean cross-entropy). The images start as ten random
//! real training images, one per class; the same ten images, undistilled, are the baseline. Accuracy is measured on
//! the validation split, which neither level sees.

use super::data::{digits_splits, Split};
use super::hypergrad::{hypergradient_descent, ImplicitConfig, ImplicitProblem};
use super::{Outcome, Progress};
use crate::implicit::linear::{SolveOptions, Solver};
use crate::implicit::Optimality;
use crate::nn::loss::cross_entropy;
use crate::nn::matmul::matmul;
use crate::rng::{rng_for, Stream};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use rand::Rng as _;
use std::collections::BTreeMap;
use std::time::Instant;

const CLASSES: usize = 10;

/// A run's settings.
#[derive(Debug, Clone)]
pub struct DistillConfig {
    /// The digits split and the choice of the starting images.
    pub seed: u64,
    pub implicit: ImplicitConfig,
    /// The lower level's L2 strength on the classifier's weights.
    pub inner_l2: f64,
}

impl Default for DistillConfig {
    fn default() -> Self {
        DistillConfig {
            seed: 0,
            implicit: ImplicitConfig {
                steps: 200,
                solve: SolveOptions {
                    solver: Solver::Cg,
                    ..SolveOptions::default()
                },
                outer: "adam:lr=0.02".parse().expect("a registered optimizer"),
                ..ImplicitConfig::default()
            },
            inner_l2: 1e-2,
        }
    }
}

/// The distilled images `[10, 64]` (row c is class c) with the run's outcome.
#[derive(Debug, Clone)]
pub struct Distilled {
    pub images: Tensor,
    pub outcome: Outcome,
}

fn with_intercept(x: &Tensor) -> Result<Tensor> {
    let ones = Tensor::ones((x.dims()[0], 1), x.dtype(), x.device())?;
    Ok(Tensor::cat(&[x, &ones], 1)?)
}

/// One random training image per class, by `seed`.
fn random_real_images(train: &Split, seed: u64) -> Result<Tensor> {
    let labels: Vec<u32> = train.labels.to_vec1()?;
    let mut rng = rng_for(seed, Stream::Init, 0);
    let mut pick = Vec::with_capacity(CLASSES);
    for c in 0..CLASSES as u32 {
        let of_c: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
        if of_c.is_empty() {
            return Err(Error::invalid(format!(
                "the training split has no image of class {c}"
            )));
        }
        pick.push(of_c[rng.gen_range(0..of_c.len())]);
    }
    Ok(train.rows(&pick)?.x)
}

/// Distills the digits; see the module docs.
pub fn run(cfg: &DistillConfig, progress: Option<Progress<'_>>) -> Result<Distilled> {
    if !(cfg.inner_l2.is_finite() && cfg.inner_l2 > 0.0) {
        return Err(Error::invalid(format!(
            "the inner L2 strength must be positive (it makes the lower level strongly convex), got {}",
            cfg.inner_l2
        )));
    }
    let start = Instant::now();
    let s = digits_splits(cfg.seed)?;
    let class_ids = Tensor::arange(0u32, CLASSES as u32, &Device::Cpu)?;
    let train_x = with_intercept(&s.train.x)?;
    let lam = cfg.inner_l2;
    let inner = |w: &Tensor, images: &Tensor| -> Result<Tensor> {
        let logits = matmul(&with_intercept(images)?, w)?;
        let penalty = w.sqr()?.sum_all()?.affine(0.5 * lam, 0.0)?;
        Ok(cross_entropy(&logits, &class_ids)?.add(&penalty)?)
    };
    let problem = ImplicitProblem {
        optimality: Optimality::stationary(inner),
        upper: Box::new(|w| cross_entropy(&matmul(&train_x, w)?, &s.train.labels)),
        inner: None,
    };
    let images0 = random_real_images(&s.train, cfg.seed)?;
    let w0 = Tensor::zeros((65, CLASSES), DType::F64, &Device::Cpu)?;
    let fit = |images: &Tensor| {
        problem.optimality.newton(
            &w0,
            images,
            &cfg.implicit.solve,
            cfg.implicit.inner_steps,
            cfg.implicit.inner_tol,
        )
    };
    let run = hypergradient_descent(&problem, &images0, &w0, &cfg.implicit, progress)?;
    let val_x = with_intercept(&s.val.x)?;
    let mut metrics = BTreeMap::new();
    for (name, images) in [("real", &images0), ("distilled", &run.theta)] {
        let w = fit(images)?;
        metrics.insert(
            format!("val_accuracy_{name}"),
            s.val.accuracy(&val_x.matmul(&w)?)?,
        );
        metrics.insert(
            format!("val_loss_{name}"),
            cross_entropy(&val_x.matmul(&w)?, &s.val.labels)?.to_scalar::<f64>()?,
        );
        metrics.insert(
            format!("train_loss_{name}"),
            cross_entropy(&train_x.matmul(&w)?, &s.train.labels)?.to_scalar::<f64>()?,
        );
    }
    Ok(Distilled {
        images: run.theta,
        outcome: Outcome {
            problem: "distill".into(),
            method: format!("implicit:solver={}", cfg.implicit.solve.solver),
            curve: run.curve,
            metrics,
            seconds: start.elapsed().as_secs_f64(),
        },
    })
}
