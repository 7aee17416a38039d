//! Per-feature regularization strengths by hypergradient descent (P10's ridge example, grown to one strength per
//! pixel) on the embedded digits: the lower level fits a linear model on the training split with penalty
//! ½ Σ_j λ_j ‖W_j‖² (W_j the weights of pixel j, λ_j = exp θ_j, the intercept fixed at 1e-4); the upper level is
//! the loss on the validation split. It starts from the best single λ of a grid search, so the result reads as
//! what per-feature strengths gain over the best shared one; the test split is reported, never used.

use super::data::{digits_splits, Split};
use super::hypergrad::{hypergradient_descent, value_and_grad, ImplicitConfig, ImplicitProblem};
use super::{Outcome, Progress};
use crate::implicit::linear::{SolveOptions, Solver};
use crate::implicit::Optimality;
use crate::nn::loss::cross_entropy;
use crate::nn::matmul::matmul;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::BTreeMap;
use std::time::Instant;

/// The fixed strength on the intercept (keeps the lower level strongly convex).
const INTERCEPT_L2: f64 = 1e-4;
const CLASSES: usize = 10;

/// The lower-level model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// Ridge regression on one-hot targets; losses are ½ mean ‖x W − y‖² (problem `ridge-hparam`).
    Ridge,
    /// Multiclass logistic regression; losses are mean cross-entropy (problem `logreg-hparam`).
    Logreg,
}

/// A run's settings.
#[derive(Debug, Clone)]
pub struct HparamConfig {
    pub model: Model,
    /// The digits split.
    pub seed: u64,
    pub implicit: ImplicitConfig,
    /// The single strengths tried by the grid search.
    pub grid: Vec<f64>,
}

impl HparamConfig {
    /// The defaults for `model`: 100 Adam steps of 0.05 on log λ, a grid of 13 strengths from 1e-4 to 1e2.
    pub fn new(model: Model) -> Self {
        HparamConfig {
            model,
            seed: 0,
            implicit: ImplicitConfig {
                solve: SolveOptions {
                    solver: Solver::Cg,
                    ..SolveOptions::default()
                },
                ..ImplicitConfig::default()
            },
            grid: (0..13).map(|i| 10f64.powf(-4.0 + 0.5 * i as f64)).collect(),
        }
    }
}

struct Data {
    x: Tensor,
    y: Tensor,
    split: Split,
}

impl Data {
    fn of(split: &Split) -> Result<Self> {
        Ok(Data {
            x: split.with_intercept()?,
            y: split.one_hot(CLASSES)?,
            split: split.clone(),
        })
    }

    /// The loss of W on this split.
    fn loss(&self, model: Model, w: &Tensor) -> Result<Tensor> {
        let out = matmul(&self.x, w)?;
        match model {
            Model::Ridge => Ok(out
                .sub(&self.y)?
                .sqr()?
                .sum_all()?
                .affine(0.5 / self.split.len() as f64, 0.0)?),
            Model::Logreg => cross_entropy(&out, &self.split.labels),
        }
    }
}

/// Per-row strengths [65, 1]: exp θ for the pixels, then the intercept's.
fn strengths(theta: &Tensor) -> Result<Tensor> {
    let fixed = Tensor::new(&[INTERCEPT_L2], theta.device())?.to_dtype(theta.dtype())?;
    Ok(Tensor::cat(&[&theta.exp()?, &fixed], 0)?.unsqueeze(1)?)
}

fn optimality<'a>(model: Model, train: &'a Data) -> Optimality<'a> {
    match model {
        // The gradient in closed form: Xᵀ(XW − Y)/n + Λ W.
        Model::Ridge => Optimality::root(move |w, th| {
            let r = matmul(&train.x, w)?.sub(&train.y)?;
            let g = matmul(&train.x.t()?, &r)?.affine(1.0 / train.split.len() as f64, 0.0)?;
            Ok(g.add(&strengths(th)?.broadcast_mul(w)?)?)
        })
        .symmetric(),
        Model::Logreg => Optimality::stationary(move |w, th| {
            let penalty = strengths(th)?.broadcast_mul(&w.sqr()?)?.sum_all()?;
            Ok(train
                .loss(Model::Logreg, w)?
                .add(&penalty.affine(0.5, 0.0)?)?)
        }),
    }
}

/// Runs the grid search, then hypergradient descent from its best strength.
pub fn run(cfg: &HparamConfig, progress: Option<Progress<'_>>) -> Result<Outcome> {
    if cfg.grid.is_empty() || cfg.grid.iter().any(|l| !(l.is_finite() && *l > 0.0)) {
        return Err(Error::invalid(
            "the grid of strengths must hold positive finite values",
        ));
    }
    let start = Instant::now();
    let s = digits_splits(cfg.seed)?;
    let (train, val, test) = (Data::of(&s.train)?, Data::of(&s.val)?, Data::of(&s.test)?);
    let model = cfg.model;
    let problem = ImplicitProblem {
        optimality: optimality(model, &train),
        upper: Box::new(|w| val.loss(model, w)),
        inner: None,
    };
    let features = 64;
    let w0 = Tensor::zeros((features + 1, CLASSES), DType::F64, &Device::Cpu)?;
    let solve = |theta: &Tensor, warm: &Tensor| {
        problem.optimality.newton(
            warm,
            theta,
            &cfg.implicit.solve,
            cfg.implicit.inner_steps,
            cfg.implicit.inner_tol,
        )
    };
    // Grid search over one shared strength.
    let mut best = (f64::INFINITY, 0.0, w0.clone());
    let mut warm = w0.clone();
    for &lam in &cfg.grid {
        let theta = Tensor::full(lam.ln(), features, &Device::Cpu)?;
        warm = solve(&theta, &warm)?;
        let v = val.loss(model, &warm)?.to_scalar::<f64>()?;
        if v < best.0 {
            best = (v, lam, warm.clone());
        }
    }
    let (grid_val, grid_lambda, grid_w) = best;
    let theta0 = Tensor::full(grid_lambda.ln(), features, &Device::Cpu)?;
    let run = hypergradient_descent(&problem, &theta0, &grid_w, &cfg.implicit, progress)?;
    let mut metrics = BTreeMap::new();
    let mut put = |k: &str, v: f64| {
        metrics.insert(k.to_string(), v);
    };
    put("grid_lambda", grid_lambda);
    put("val_loss_grid", grid_val);
    put("val_loss_before", run.curve[0].upper);
    put(
        "val_loss_after",
        run.curve.last().map_or(f64::NAN, |c| c.upper),
    );
    for (name, w) in [("grid", &grid_w), ("learned", &run.w)] {
        put(
            &format!("test_loss_{name}"),
            test.loss(model, w)?.to_scalar::<f64>()?,
        );
        put(
            &format!("test_accuracy_{name}"),
            test.split.accuracy(&test.x.matmul(w)?)?,
        );
        put(
            &format!("val_accuracy_{name}"),
            val.split.accuracy(&val.x.matmul(w)?)?,
        );
    }
    let lambdas: Vec<f64> = run.theta.exp()?.to_vec1()?;
    let (lo, hi) = lambdas
        .iter()
        .fold((f64::INFINITY, 0.0f64), |(a, b), &l| (a.min(l), b.max(l)));
    put("learned_lambda_min", lo);
    put("learned_lambda_max", hi);
    // The last hypergradient's size, a stationarity check of the upper level.
    let (_, v) = value_and_grad(&*problem.upper, &run.w)?;
    let g = problem
        .optimality
        .vjp(&run.w, &run.theta, &v, &cfg.implicit.solve)?;
    put(
        "final_hypergradient_norm",
        g.sqr()?.sum_all()?.to_scalar::<f64>()?.sqrt(),
    );
    Ok(Outcome {
        problem: match model {
            Model::Ridge => "ridge-hparam",
            Model::Logreg => "logreg-hparam",
        }
        .into(),
        method: format!("implicit:solver={}", cfg.implicit.solve.solver),
        curve: run.curve,
        metrics,
        seconds: start.elapsed().as_secs_f64(),
    })
}
