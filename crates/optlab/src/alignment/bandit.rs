//! The exact check of f-DPO (P37): a categorical policy over K responses, a reference policy π_ref and rewards r
//! that label preferences by Bradley–Terry, P(i ≻ j) = σ(r_i − r_j). Over all pairs the population loss is
//! minimised exactly when β(f′(u_i) − f′(u_j)) = r_i − r_j for every pair, u = π/π_ref; so the optimum solves
//! f′(π_i/π_ref,i) = r_i/β + c with the one constant c that makes π sum to 1 (a 1-D root, found by bisection; for
//! reverse KL it is the familiar π ∝ π_ref e^{r/β}). [`PreferenceBandit::fit`] trains softmax logits on the
//! population loss with an optimizer from the suite, so the two can be compared.

use super::divergence::Divergence;
use super::loss::DpoLoss;
use crate::nn::Param;
use crate::optim::from_spec;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};

/// A reference policy and Bradley–Terry rewards over K responses.
#[derive(Debug, Clone, PartialEq)]
pub struct PreferenceBandit {
    pub reference: Vec<f64>,
    pub reward: Vec<f64>,
}

/// How [`PreferenceBandit::fit`] trains.
#[derive(Debug, Clone, PartialEq)]
pub struct FitConfig {
    /// The optimizer spec.
    pub optimizer: String,
    /// The most full-batch steps.
    pub steps: usize,
    /// Stop once the largest gradient entry falls below this.
    pub grad_tol: f64,
}

impl Default for FitConfig {
    fn default() -> Self {
        FitConfig {
            optimizer: "adam:lr=0.02".into(),
            steps: 20_000,
            grad_tol: 1e-9,
        }
    }
}

/// A trained categorical policy.
#[derive(Debug, Clone, PartialEq)]
pub struct BanditFit {
    pub policy: Vec<f64>,
    pub steps: usize,
    pub loss: f64,
    /// The largest gradient entry at the end.
    pub grad_max: f64,
}

impl PreferenceBandit {
    /// Checks that the reference is a distribution with positive entries and the rewards are finite.
    pub fn new(reference: Vec<f64>, reward: Vec<f64>) -> Result<Self> {
        if reference.len() < 2 || reference.len() != reward.len() {
            return Err(Error::invalid(format!(
                "preference bandit: {} reference probabilities and {} rewards (need the same K >= 2)",
                reference.len(),
                reward.len()
            )));
        }
        if reference.iter().any(|p| !(p.is_finite() && *p > 0.0))
            || (reference.iter().sum::<f64>() - 1.0).abs() > 1e-9
        {
            return Err(Error::invalid(
                "preference bandit: the reference probabilities must be positive and sum to 1",
            ));
        }
        if reward.iter().any(|r| !r.is_finite()) {
            return Err(Error::invalid("preference bandit: a reward is not finite"));
        }
        // The population loss holds every ordered pair: indices, weights and the loss's intermediates.
        let k = reference.len() as f64;
        crate::memory::check(
            "the preference bandit's pairs",
            k * k * 96.0,
            "use fewer responses",
        )?;
        Ok(PreferenceBandit { reference, reward })
    }

    /// The optimal policy of the f-DPO population loss (label smoothing 0): f′(π_i/π_ref,i) = r_i/β + c.
    pub fn optimum(&self, divergence: Divergence, beta: f64) -> Result<Vec<f64>> {
        DpoLoss {
            divergence,
            beta,
            ..DpoLoss::default()
        }
        .validate()?;
        let z: Vec<f64> = self.reward.iter().map(|r| r / beta).collect();
        let zmax = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        // Σ π_ref u(z + c) grows from 0 to ∞ as c runs up to sup f′ − max z; bisect for the value 1.
        let mass = |c: f64| -> Option<f64> {
            self.reference
                .iter()
                .zip(&z)
                .map(|(p, zi)| divergence.fprime_inverse(zi + c).map(|u| p * u))
                .sum()
        };
        let sup = divergence.link_sup();
        let (mut lo, mut hi) = if sup.is_finite() {
            // Below the supremum: step down until the mass is below 1.
            let hi = sup - zmax;
            let mut width = 1.0;
            while mass(hi - width).is_some_and(|m| m > 1.0) {
                width *= 2.0;
                if width > 1e300 {
                    return Err(Error::invalid(
                        "preference bandit: no normalising constant found",
                    ));
                }
            }
            (hi - width, hi)
        } else {
            let (mut lo, mut hi) = (-zmax - 1.0, -zmax + 1.0);
            while mass(lo).is_some_and(|m| m > 1.0) {
                lo -= hi - lo;
            }
            while mass(hi).is_some_and(|m| m < 1.0) {
                hi += hi - lo;
            }
            (lo, hi)
        };
        for _ in 0..400 {
            let mid = 0.5 * (lo + hi);
            if mid <= lo || mid >= hi {
                break;
            }
            match mass(mid) {
                Some(m) if m < 1.0 => lo = mid,
                _ => hi = mid,
            }
        }
        let c = 0.5 * (lo + hi);
        let pi: Vec<f64> = self
            .reference
            .iter()
            .zip(&z)
            .map(|(p, zi)| p * divergence.fprime_inverse(zi + c).unwrap_or(0.0))
            .collect();
        let total: f64 = pi.iter().sum();
        Ok(pi.into_iter().map(|p| p / total).collect())
    }

    /// The population loss of softmax `logits` [K] over every ordered pair (i chosen, j rejected), each weighted
    /// by π_ref(i) π_ref(j) σ(r_i − r_j): both responses sampled from the reference, labelled by Bradley–Terry.
    pub fn population_loss(&self, logits: &Tensor, loss: &DpoLoss) -> Result<Tensor> {
        let k = self.reference.len();
        if logits.dims() != [k] {
            return Err(Error::Shape(format!(
                "bandit logits {:?} for K = {k}",
                logits.dims()
            )));
        }
        let dev = logits.device();
        let (mut ci, mut ri, mut w) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..k {
            for j in 0..k {
                if i != j {
                    ci.push(i as u32);
                    ri.push(j as u32);
                    let p = 1.0 / (1.0 + (self.reward[j] - self.reward[i]).exp());
                    w.push(self.reference[i] * self.reference[j] * p);
                }
            }
        }
        let total: f64 = w.iter().sum();
        let w = (Tensor::new(w.as_slice(), dev)?.to_dtype(logits.dtype())? / total)?;
        let ci = Tensor::new(ci.as_slice(), dev)?;
        let ri = Tensor::new(ri.as_slice(), dev)?;
        let logp = candle_nn::ops::log_softmax(logits, 0)?;
        let logref = Tensor::new(self.reference.as_slice(), dev)?
            .to_dtype(logits.dtype())?
            .log()?;
        let out = loss.forward(
            &logp.index_select(&ci, 0)?,
            &logp.index_select(&ri, 0)?,
            &logref.index_select(&ci, 0)?,
            &logref.index_select(&ri, 0)?,
        )?;
        Ok((out.losses * w)?.sum_all()?)
    }

    /// Trains softmax logits, started at the reference, on the population loss (f64, full batch).
    pub fn fit(&self, loss: &DpoLoss, cfg: &FitConfig) -> Result<BanditFit> {
        loss.validate()?;
        if cfg.steps == 0 || cfg.grad_tol.is_nan() || cfg.grad_tol < 0.0 {
            return Err(Error::invalid(format!(
                "preference bandit: steps = {} must be at least 1 and grad_tol = {} non-negative",
                cfg.steps, cfg.grad_tol
            )));
        }
        let mut opt = from_spec(&cfg.optimizer)?;
        let start: Vec<f64> = self.reference.iter().map(|p| p.ln()).collect();
        let var =
            Var::from_tensor(&Tensor::new(start.as_slice(), &Device::Cpu)?.to_dtype(DType::F64)?)?;
        let params = [Param {
            name: "logits".into(),
            var,
        }];
        let (mut value, mut grad_max, mut steps) = (f64::NAN, f64::INFINITY, 0);
        while steps < cfg.steps {
            let l = self.population_loss(params[0].tensor(), loss)?;
            value = l.to_scalar::<f64>()?;
            let grads = l.backward()?;
            let g = grads
                .get(params[0].tensor())
                .ok_or_else(|| Error::invalid("bandit: no gradient for the logits"))?;
            grad_max = g.abs()?.max_all()?.to_scalar::<f64>()?;
            if !value.is_finite() || !grad_max.is_finite() {
                return Err(Error::NonFinite(format!(
                    "bandit: the loss became {value} at step {steps}"
                )));
            }
            if grad_max < cfg.grad_tol {
                break;
            }
            opt.step(&params, &grads)?;
            steps += 1;
        }
        let policy: Vec<f64> = candle_nn::ops::softmax(params[0].tensor(), 0)?.to_vec1()?;
        Ok(BanditFit {
            policy,
            steps,
            loss: value,
            grad_max,
        })
    }
}
