//! SVM cost selection (P13's hyperparameter-optimization experiment, on a binary subset of the digits): the lower
//! level is the soft-margin SVM with squared slacks,
//!     min_{w,b,ξ} ½‖w‖² + ½ Σᵢ e^{c(i)} ξᵢ²  s.t.  1 − ξᵢ − yᵢ(wᵀzᵢ + b) ≤ 0,
//! with one log-cost per class as the upper variables c; the upper level is the official smoothed 0-1 loss on the
//! validation split, mean LeakyReLU(2σ(−5·yᵢ(wᵀzᵢ + b)/‖w‖) − 1). Three routes: LV-HBA (Hessian-free, the
//! constraints through its multipliers), hypergradient descent through the KKT conditions (P10, the lower level
//! solved exactly by Newton's method on the equivalent squared-hinge problem), and a grid search.

use super::data::{binary_digits, Split};
use super::hypergrad::{hypergradient_descent, ImplicitConfig, ImplicitProblem};
use super::lvhba::{ConstrainedBilevel, Constraints};
use crate::implicit::linear::{SolveOptions, Solver};
use crate::implicit::optimality::Kkt;
use crate::implicit::Optimality;
use crate::nn::matmul::matmul;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::BTreeMap;

/// The data of one binary task: features `[n, 64]`, labels ±1 `[n]`, and the class one-hot `[n, 2]`.
#[derive(Debug, Clone)]
struct Part {
    z: Tensor,
    y: Tensor,
    classes: Tensor,
}

impl Part {
    fn new(split: &Split, signs: &Tensor) -> Result<Self> {
        let s: Vec<f64> = signs.to_vec1()?;
        let one_hot: Vec<f64> = s
            .iter()
            .flat_map(|&v| if v > 0.0 { [0.0, 1.0] } else { [1.0, 0.0] })
            .collect();
        Ok(Part {
            z: split.x.clone(),
            y: signs.clone(),
            classes: Tensor::from_vec(one_hot, (s.len(), 2), split.x.device())?,
        })
    }

    fn len(&self) -> usize {
        self.z.dims()[0]
    }

    /// wᵀzᵢ + b.
    fn scores(&self, w: &Tensor, b: &Tensor) -> Result<Tensor> {
        Ok(matmul(&self.z, &w.unsqueeze(1)?)?
            .squeeze(1)?
            .broadcast_add(b)?)
    }

    /// e^{c(i)} per example.
    fn costs(&self, c: &Tensor) -> Result<Tensor> {
        Ok(self.classes.matmul(&c.exp()?.unsqueeze(1)?)?.squeeze(1)?)
    }

    /// The fraction classified correctly by sign(wᵀz + b).
    fn accuracy(&self, w: &Tensor, b: &Tensor) -> Result<f64> {
        let m: Vec<f64> = self.scores(w, b)?.mul(&self.y)?.to_vec1()?;
        Ok(m.iter().filter(|&&v| v > 0.0).count() as f64 / m.len().max(1) as f64)
    }
}

/// The task: binary digits split 60/20/20.
#[derive(Debug, Clone)]
pub struct SvmTask {
    train: Part,
    val: Part,
    test: Part,
    /// The training rows a_i = (yᵢzᵢ, yᵢ) and the projection's dual variables, kept between calls (warm start).
    rows: Vec<Vec<f64>>,
    duals: std::cell::RefCell<Vec<f64>>,
}

const FEATURES: usize = 64;

impl SvmTask {
    /// Digits `classes.0` (label −1) against `classes.1` (+1), split by `seed`.
    pub fn new(classes: (u32, u32), seed: u64) -> Result<Self> {
        let (s, [yt, yv, ye]) = binary_digits(classes, seed)?;
        let train = Part::new(&s.train, &yt)?;
        let z: Vec<Vec<f64>> = train.z.to_vec2()?;
        let y: Vec<f64> = train.y.to_vec1()?;
        let rows = z
            .iter()
            .zip(&y)
            .map(|(zi, yi)| zi.iter().map(|v| v * yi).chain([*yi]).collect())
            .collect();
        Ok(SvmTask {
            duals: std::cell::RefCell::new(vec![0.0; y.len()]),
            rows,
            train,
            val: Part::new(&s.val, &yv)?,
            test: Part::new(&s.test, &ye)?,
        })
    }

    /// Training examples n (the lower level has 65 + n variables and n constraints).
    pub fn n(&self) -> usize {
        self.train.len()
    }

    /// (w, b, ξ) of a lower-level vector y = [w; b; ξ].
    fn parts(&self, y: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        Ok((
            y.narrow(0, 0, FEATURES)?,
            y.narrow(0, FEATURES, 1)?,
            y.narrow(0, FEATURES + 1, self.n())?,
        ))
    }

    /// The smoothed 0-1 loss of (w, b) on `part` (the official upper objective, as a mean).
    fn smoothed_error(part: &Part, w: &Tensor, b: &Tensor) -> Result<Tensor> {
        let norm = w.sqr()?.sum_all()?.sqrt()?;
        let margin = part.scores(w, b)?.mul(&part.y)?.broadcast_div(&norm)?;
        // 2σ(−5m) − 1 = 2/(1 + e^{5m}) − 1.
        let s = margin
            .affine(5.0, 0.0)?
            .exp()?
            .affine(1.0, 1.0)?
            .recip()?
            .affine(2.0, -1.0)?;
        Ok(s.maximum(&s.affine(0.01, 0.0)?)?.mean_all()?)
    }

    /// (val loss, val accuracy, test accuracy) of a lower-level vector [w; b; ...].
    pub fn evaluate(&self, y: &Tensor) -> Result<(f64, f64, f64)> {
        let (w, b) = (y.narrow(0, 0, FEATURES)?, y.narrow(0, FEATURES, 1)?);
        Ok((
            Self::smoothed_error(&self.val, &w, &b)?.to_scalar::<f64>()?,
            self.val.accuracy(&w, &b)?,
            self.test.accuracy(&w, &b)?,
        ))
    }

    /// The lower level solved exactly at log-costs c: Newton's method on the equivalent unconstrained problem
    /// ½‖w‖² + ½ Σ e^{c(i)} max(0, 1 − yᵢ(wᵀzᵢ + b))² (piecewise quadratic, so it ends in a few steps), then
    /// ξᵢ = max(0, 1 − margin) and the multipliers μᵢ = e^{c(i)} ξᵢ. Returns the KKT point [w; b; ξ; μ].
    pub fn solve_lower(&self, c: &Tensor, warm: Option<&Tensor>) -> Result<Tensor> {
        let train = &self.train;
        let hinge = Optimality::stationary(move |wb: &Tensor, c: &Tensor| {
            let (w, b) = (wb.narrow(0, 0, FEATURES)?, wb.narrow(0, FEATURES, 1)?);
            let slack = train
                .scores(&w, &b)?
                .mul(&train.y)?
                .affine(-1.0, 1.0)?
                .relu()?;
            let fit = slack.sqr()?.mul(&train.costs(c)?)?.sum_all()?;
            Ok(w.sqr()?.sum_all()?.add(&fit)?.affine(0.5, 0.0)?)
        });
        let start = match warm {
            Some(x) => x.narrow(0, 0, FEATURES + 1)?,
            None => Tensor::zeros(FEATURES + 1, DType::F64, &Device::Cpu)?,
        };
        let opts = SolveOptions {
            solver: Solver::Cg,
            ..SolveOptions::default()
        };
        let wb = hinge.newton(&start, c, &opts, 100, 1e-10)?;
        let (w, b) = (wb.narrow(0, 0, FEATURES)?, wb.narrow(0, FEATURES, 1)?);
        let xi = train
            .scores(&w, &b)?
            .mul(&train.y)?
            .affine(-1.0, 1.0)?
            .relu()?;
        let mu = xi.mul(&train.costs(c)?)?;
        Ok(Tensor::cat(&[&w, &b, &xi, &mu], 0)?)
    }

    /// The lower level's KKT conditions over [w; b; ξ; μ] (P10's `make_kkt_optimality_fun`).
    pub fn kkt(&self) -> Optimality<'_> {
        let train = &self.train;
        let n = self.n();
        Kkt::new(move |v: &Tensor, c: &Tensor| {
            let w = v.narrow(0, 0, FEATURES)?;
            let xi = v.narrow(0, FEATURES + 1, n)?;
            let fit = xi.sqr()?.mul(&train.costs(c)?)?.sum_all()?;
            Ok(w.sqr()?.sum_all()?.add(&fit)?.affine(0.5, 0.0)?)
        })
        .ineq(n, move |v: &Tensor, _: &Tensor| {
            let (w, b, xi) = (
                v.narrow(0, 0, FEATURES)?,
                v.narrow(0, FEATURES, 1)?,
                v.narrow(0, FEATURES + 1, n)?,
            );
            Ok(train
                .scores(&w, &b)?
                .mul(&train.y)?
                .add(&xi)?
                .affine(-1.0, 1.0)?)
        })
        .optimality()
    }

    /// Hypergradient descent on the log-costs through the KKT conditions, from c = 0.
    pub fn implicit_route(
        &self,
        cfg: &ImplicitConfig,
        progress: Option<super::Progress<'_>>,
    ) -> Result<(Tensor, Tensor, Vec<super::CurvePoint>)> {
        let problem = ImplicitProblem {
            optimality: self.kkt(),
            upper: Box::new(|v| {
                let (w, b) = (v.narrow(0, 0, FEATURES)?, v.narrow(0, FEATURES, 1)?);
                Self::smoothed_error(&self.val, &w, &b)
            }),
            inner: Some(Box::new(|c, warm| self.solve_lower(c, Some(warm)))),
        };
        let c0 = Tensor::zeros(2, DType::F64, &Device::Cpu)?;
        let v0 = self.solve_lower(&c0, None)?;
        let run = hypergradient_descent(&problem, &c0, &v0, cfg, progress)?;
        Ok((run.theta, run.w, run.curve))
    }

    /// The best log-costs on a `points` × `points` grid over [lo, hi]² by the validation loss, with the lower
    /// solution there.
    pub fn grid_search(&self, lo: f64, hi: f64, points: usize) -> Result<(Tensor, Tensor, f64)> {
        if points < 2 || lo.is_nan() || hi.is_nan() || lo >= hi {
            return Err(Error::invalid(format!(
                "grid: {points} points over [{lo}, {hi}]: need at least 2 points and lo < hi"
            )));
        }
        let at = |i: usize| lo + (hi - lo) * i as f64 / (points - 1) as f64;
        let mut best: Option<(f64, Tensor, Tensor)> = None;
        let mut warm: Option<Tensor> = None;
        for i in 0..points {
            for j in 0..points {
                let c = Tensor::new(&[at(i), at(j)], &Device::Cpu)?;
                let v = self.solve_lower(&c, warm.as_ref())?;
                let (loss, _, _) = self.evaluate(&v)?;
                if best.as_ref().is_none_or(|b| loss < b.0) {
                    best = Some((loss, c, v.clone()));
                }
                warm = Some(v);
            }
        }
        let (loss, c, v) = best.ok_or_else(|| Error::invalid("grid: no points"))?;
        Ok((c, v, loss))
    }

    /// Metrics of a final lower-level vector.
    pub fn metrics(&self, c: &Tensor, y: &Tensor) -> Result<BTreeMap<String, f64>> {
        let (val_loss, val_acc, test_acc) = self.evaluate(y)?;
        let cs: Vec<f64> = c.to_vec1()?;
        Ok(BTreeMap::from([
            ("val_loss".to_string(), val_loss),
            ("val_accuracy".to_string(), val_acc),
            ("test_accuracy".to_string(), test_acc),
            ("log_cost_class0".to_string(), cs[0]),
            ("log_cost_class1".to_string(), cs[1]),
        ]))
    }
}

impl ConstrainedBilevel for SvmTask {
    /// Log-costs 0; as the official script, w = 1 (the upper loss divides by ‖w‖), b = 0 and ξ = 1; θ = y.
    fn init(&self) -> Result<(Tensor, Tensor, Tensor)> {
        let x = Tensor::zeros(2, DType::F64, &Device::Cpu)?;
        let y = Tensor::cat(
            &[
                &Tensor::ones(FEATURES, DType::F64, &Device::Cpu)?,
                &Tensor::zeros(1, DType::F64, &Device::Cpu)?,
                &Tensor::ones(self.n(), DType::F64, &Device::Cpu)?,
            ],
            0,
        )?;
        Ok((x, y.clone(), y))
    }

    fn upper(&self, _c: &Tensor, y: &Tensor) -> Result<Tensor> {
        let (w, b, _) = self.parts(y)?;
        Self::smoothed_error(&self.val, &w, &b)
    }

    fn lower(&self, c: &Tensor, y: &Tensor) -> Result<Tensor> {
        let (w, _, xi) = self.parts(y)?;
        let fit = xi.sqr()?.mul(&self.train.costs(c)?)?.sum_all()?;
        Ok(w.sqr()?.sum_all()?.add(&fit)?.affine(0.5, 0.0)?)
    }

    fn constraints(&self, _c: &Tensor, y: &Tensor) -> Result<Tensor> {
        let (w, b, xi) = self.parts(y)?;
        Ok(self
            .train
            .scores(&w, &b)?
            .mul(&self.train.y)?
            .add(&xi)?
            .affine(-1.0, 1.0)?)
    }

    fn kind(&self) -> Constraints {
        Constraints::Inequality
    }

    /// As the official script (which calls cvxpy + ECOS): (w, b, ξ) onto {yᵢ(wᵀzᵢ + b) + ξᵢ ≥ 1 for all i}, the
    /// lower level's constraint set, by Hildreth's method (coordinate ascent on the projection's dual, warm-started
    /// from the previous call) to a violation below 1e-9.
    fn project(&self, c: Tensor, y: Tensor) -> Result<(Tensor, Tensor)> {
        let mut v: Vec<f64> = y.to_vec1()?;
        let n = self.n();
        let mut mu = self.duals.borrow_mut();
        // v = p + Σ μᵢ aᵢ for the warm duals, aᵢ = (yᵢzᵢ, yᵢ, eᵢ).
        for (i, (row, &m)) in self.rows.iter().zip(mu.iter()).enumerate() {
            v.iter_mut().zip(row).for_each(|(a, r)| *a += m * r);
            v[FEATURES + 1 + i] += m;
        }
        let norms: Vec<f64> = self
            .rows
            .iter()
            .map(|r| r.iter().map(|a| a * a).sum::<f64>() + 1.0)
            .collect();
        for _ in 0..20_000 {
            let mut worst = 0.0f64;
            for i in 0..n {
                let row = &self.rows[i];
                let dot: f64 =
                    row.iter().zip(&v).map(|(a, b)| a * b).sum::<f64>() + v[FEATURES + 1 + i];
                let r = 1.0 - dot;
                let delta = (r / norms[i]).max(-mu[i]);
                if delta != 0.0 {
                    mu[i] += delta;
                    v.iter_mut().zip(row).for_each(|(a, b)| *a += delta * b);
                    v[FEATURES + 1 + i] += delta;
                }
                worst = worst.max(r.max(0.0)).max((delta * norms[i]).abs());
            }
            if worst <= 1e-9 {
                let len = v.len();
                return Ok((c, Tensor::from_vec(v, len, y.device())?));
            }
        }
        Err(Error::invalid(
            "svm-hparam: the projection onto the SVM's constraints did not converge in 20000 sweeps",
        ))
    }
}
