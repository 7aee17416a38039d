//! The scaling law with learning-rate annealing (P38, "Scaling Law with Learning Rate Annealing"): the loss after
//! `s` steps is
//!
//! L(s) = L0 + A·S1(s)^-α − C·S2(s),
//!
//! where S1 = Σ η_i is the forward area and S2 = Σ m_i the annealing area, with the annealing momentum
//! m_i = λ·m_{i-1} + (η_{i-1} − η_i), m_0 = 0, λ = 0.999. Warmup steps count as the peak lr (the paper's §3.4).
//!
//! The four parameters are fitted to one or more (schedule, loss curve) pairs by minimising the Huber loss
//! (δ = 1e-3) of log-loss residuals, with L-BFGS (argmin) on log-transformed parameters — which keeps every
//! parameter positive — started from the paper's grid of 54 points. A fitted law then predicts the whole loss
//! curve of any other schedule.
//!
//! ```
//! use optlab::anneal_law::{areas, AnnealLaw};
//! let lrs = vec![1e-3; 1000];
//! let law = AnnealLaw { l0: 2.0, a: 0.5, alpha: 0.5, c: 0.3, lambda: 0.999 };
//! let curve = law.curve(&lrs);
//! assert!(curve[999] < curve[10]); // the loss falls with the forward area
//! assert_eq!(areas(&lrs, 0.999).s2[999], 0.0); // a constant schedule never anneals
//! ```

mod curves;
mod file;
pub use curves::{bin_points, curve_from_csv, curve_from_run, LossSource};
pub use file::{
    check_curve, fit_curves, ranks_right, skipped_updates, CurveCheck, FitFile, FIT_FILE_KIND,
};

use crate::{Error, Result};
use argmin::core::{CostFunction, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The paper's annealing-momentum decay λ.
pub const DEFAULT_LAMBDA: f64 = 0.999;
/// The paper's Huber threshold on log-loss residuals.
pub const DEFAULT_HUBER_DELTA: f64 = 1e-3;

/// S1 and S2 after each number of steps: index `k` holds the areas after `k` updates (index 0 is all zeros).
#[derive(Debug, Clone, PartialEq)]
pub struct Areas {
    pub s1: Vec<f64>,
    pub s2: Vec<f64>,
}

/// The learning rates the law sees: every step before the first peak counts as the peak (warmup, P38 §3.4).
pub fn law_lrs(lrs: &[f64]) -> Vec<f64> {
    let Some(peak_at) = lrs
        .iter()
        .enumerate()
        .fold(None, |best: Option<(usize, f64)>, (i, &v)| match best {
            Some((_, b)) if b >= v => best,
            _ => Some((i, v)),
        })
    else {
        return Vec::new();
    };
    let mut out = lrs.to_vec();
    out[..peak_at.0].iter_mut().for_each(|v| *v = peak_at.1);
    out
}

/// The lr of each of `steps` updates under schedule `spec` with peak `peak_lr`.
pub fn schedule_lrs(spec: &str, steps: u64, peak_lr: f64) -> Result<Vec<f64>> {
    if !(peak_lr.is_finite() && peak_lr > 0.0) {
        return Err(Error::invalid(format!(
            "the peak lr {peak_lr} must be positive"
        )));
    }
    if steps == 0 {
        return Err(Error::invalid("the run needs at least one step"));
    }
    let s = crate::schedule::from_spec(spec, steps)?;
    Ok((0..steps).map(|t| peak_lr * s.factor(t)).collect())
}

/// The areas of the lr sequence `lrs` (the lr of update 0, 1, ...), after the warmup rule of [`law_lrs`].
pub fn areas(lrs: &[f64], lambda: f64) -> Areas {
    let lrs = law_lrs(lrs);
    let n = lrs.len();
    let (mut s1, mut s2) = (vec![0.0; n + 1], vec![0.0; n + 1]);
    let mut m = 0.0;
    for i in 0..n {
        if i > 0 {
            m = lambda * m + (lrs[i - 1] - lrs[i]);
        }
        s1[i + 1] = s1[i] + lrs[i];
        s2[i + 1] = s2[i] + m;
    }
    Areas { s1, s2 }
}

/// A fitted (or given) law.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AnnealLaw {
    pub l0: f64,
    pub a: f64,
    pub alpha: f64,
    pub c: f64,
    /// The annealing-momentum decay the areas use.
    pub lambda: f64,
}

impl AnnealLaw {
    /// L at areas (s1, s2); s1 must be positive.
    pub fn loss(&self, s1: f64, s2: f64) -> f64 {
        self.l0 + self.a * s1.powf(-self.alpha) - self.c * s2
    }

    /// The predicted loss after each number of updates 1..=len of the lr sequence `lrs` (index k-1 holds the loss
    /// after k updates).
    pub fn curve(&self, lrs: &[f64]) -> Vec<f64> {
        let ar = areas(lrs, self.lambda);
        (1..=lrs.len())
            .map(|k| self.loss(ar.s1[k], ar.s2[k]))
            .collect()
    }
}

/// One observed point: the areas after some number of updates and the loss measured there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LawPoint {
    pub s1: f64,
    pub s2: f64,
    pub loss: f64,
}

/// A training curve: the lr of every update and losses observed after some numbers of updates.
#[derive(Debug, Clone, PartialEq)]
pub struct LossCurve {
    pub name: String,
    /// The lr of update 0, 1, ... (the whole run, also where no loss was observed).
    pub lrs: Vec<f64>,
    /// (updates done, loss), updates >= 1.
    pub losses: Vec<(usize, f64)>,
}

impl LossCurve {
    /// Checks the curve and turns it into law points, dropping those before `skip` updates.
    pub fn points(&self, lambda: f64, skip: usize) -> Result<Vec<LawPoint>> {
        if let Some(v) = self.lrs.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
            return Err(Error::invalid(format!(
                "{}: learning rates must be finite and non-negative, found {v}",
                self.name
            )));
        }
        if self.lrs.iter().all(|v| *v == 0.0) {
            return Err(Error::invalid(format!(
                "{}: every learning rate is 0",
                self.name
            )));
        }
        let ar = areas(&self.lrs, lambda);
        let mut out = Vec::new();
        for &(k, loss) in &self.losses {
            if k == 0 || k > self.lrs.len() {
                return Err(Error::invalid(format!(
                    "{}: a loss after {k} updates, but the run has lrs for 1..={} updates",
                    self.name,
                    self.lrs.len()
                )));
            }
            if !(loss.is_finite() && loss > 0.0) {
                return Err(Error::invalid(format!(
                    "{}: the law fits log-losses, so every loss must be positive and finite (found {loss} after {k} updates)",
                    self.name
                )));
            }
            if k >= skip && ar.s1[k] > 0.0 {
                out.push(LawPoint {
                    s1: ar.s1[k],
                    s2: ar.s2[k],
                    loss,
                });
            }
        }
        Ok(out)
    }
}

/// Fitting options (the paper's defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct FitOptions {
    pub lambda: f64,
    pub huber_delta: f64,
    /// L-BFGS iterations per starting point.
    pub max_iters: u64,
    /// Starting values of L0, A, C and α; all combinations are tried.
    pub l0_grid: Vec<f64>,
    pub a_grid: Vec<f64>,
    pub c_grid: Vec<f64>,
    pub alpha_grid: Vec<f64>,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            lambda: DEFAULT_LAMBDA,
            huber_delta: DEFAULT_HUBER_DELTA,
            max_iters: 500,
            l0_grid: vec![0.1, 2.1],
            a_grid: vec![1.0, 11.5, 22.0],
            c_grid: vec![1.0, 11.5, 22.0],
            alpha_grid: vec![0.0, 0.4, 0.8],
        }
    }
}

/// The parameter names in [`FitReport::rel_stderr`] order.
pub const PARAMETERS: [&str; 4] = ["L0", "A", "alpha", "C"];

/// The result of [`fit`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitReport {
    pub law: AnnealLaw,
    /// The minimised Huber objective.
    pub objective: f64,
    /// Coefficient of determination of the fitted points.
    pub r2: f64,
    /// Mean absolute percentage error over the fitted points.
    pub mape: f64,
    pub points: usize,
    /// Starting points tried, and how many of them ended without a solver error.
    pub starts: usize,
    pub converged_starts: usize,
    /// Relative standard error of L0, A, α and C (from the Gauss-Newton covariance of the log-loss residuals at
    /// the fit); `None` for a parameter the data do not determine, or without spare points to estimate the noise.
    #[serde(default)]
    pub rel_stderr: [Option<f64>; 4],
    /// Whether the data determine each parameter: false where the fit is flat along it (the curvature has a null
    /// direction carrying it), so any value fits as well.
    #[serde(default = "identified4")]
    pub identifiable: [bool; 4],
}

fn identified4() -> [bool; 4] {
    [true; 4]
}

impl FitReport {
    /// The parameters the data do not determine: not identifiable, or known only to within more than their
    /// own size (relative standard error above 1).
    pub fn undetermined(&self) -> Vec<&'static str> {
        PARAMETERS
            .iter()
            .zip(self.identifiable.iter().zip(self.rel_stderr))
            .filter(|(_, (ok, se))| !**ok || se.is_some_and(|se| se > 1.0))
            .map(|(n, _)| *n)
            .collect()
    }
}

/// Relative standard errors and identifiability of the law's four parameters at `law`, from the Jacobian J of
/// the log-loss residuals with respect to (L0, A, α, C): a parameter is not identifiable when its column of J is
/// zero or it moves along a null direction of the column-normalised JᵀJ (any value fits as well); its standard
/// error is that of the Gauss-Newton covariance σ²(JᵀJ)⁻¹, σ² the residual variance.
fn uncertainty(points: &[LawPoint], law: &AnnealLaw) -> ([Option<f64>; 4], [bool; 4]) {
    let mut jtj = [0.0f64; 16];
    let mut rss = 0.0;
    for pt in points {
        let power = pt.s1.powf(-law.alpha);
        let pred = law.loss(pt.s1, pt.s2);
        // d ln(pred) / d (L0, A, α, C).
        let row = [
            1.0 / pred,
            power / pred,
            -law.a * power * pt.s1.ln() / pred,
            -pt.s2 / pred,
        ];
        for i in 0..4 {
            for j in 0..4 {
                jtj[i * 4 + j] += row[i] * row[j];
            }
        }
        rss += (pt.loss.ln() - pred.ln()).powi(2);
    }
    let norm: Vec<f64> = (0..4).map(|i| jtj[i * 4 + i].sqrt()).collect();
    let mut ok = [0, 1, 2, 3].map(|i| norm[i] > 0.0 && norm[i].is_finite());
    let mut n = [0.0f64; 16];
    for i in 0..4 {
        for j in 0..4 {
            n[i * 4 + j] = match (ok[i], ok[j]) {
                (true, true) => jtj[i * 4 + j] / (norm[i] * norm[j]),
                _ => f64::from(u8::from(i == j)),
            };
        }
    }
    let eig = crate::curvature::jacobi_eigen(&n, 4);
    let top = eig.values.iter().copied().fold(0.0, f64::max);
    let dof = points.len().saturating_sub(4);
    let sigma2 = if dof > 0 { rss / dof as f64 } else { f64::NAN };
    let mut var = [0.0f64; 4];
    for (k, &lambda) in eig.values.iter().enumerate() {
        let null = lambda.is_nan() || lambda <= 1e-10 * top;
        for (i, v) in var.iter_mut().enumerate() {
            let w = eig.vectors[i * 4 + k].powi(2);
            if null && w > 0.01 {
                ok[i] = false;
            }
            *v += w / lambda;
        }
    }
    let value = [law.l0, law.a, law.alpha, law.c];
    let se = [0, 1, 2, 3].map(|i| {
        let se = (sigma2 * var[i]).sqrt() / norm[i] / value[i].abs();
        (ok[i] && se.is_finite()).then_some(se)
    });
    (se, ok)
}

/// A parameter value of 0 starts here instead (the log transform cannot represent 0).
const START_FLOOR: f64 = 1e-4;

/// The objective on θ = ln(L0, A, α, C).
struct HuberLogFit<'a> {
    points: &'a [LawPoint],
    delta: f64,
}

impl HuberLogFit<'_> {
    /// The objective and its gradient with respect to θ.
    fn eval(&self, theta: &[f64]) -> (f64, [f64; 4]) {
        let p: Vec<f64> = theta.iter().map(|t| t.exp()).collect();
        let (l0, a, alpha, c) = (p[0], p[1], p[2], p[3]);
        let (mut f, mut g) = (0.0, [0.0; 4]);
        for pt in self.points {
            let power = pt.s1.powf(-alpha);
            let pred = l0 + a * power - c * pt.s2;
            // Below `floor` the log is continued by its tangent, so a start whose prediction goes negative gets a
            // large but finite cost whose gradient points back.
            let floor = 1e-3 * pt.loss;
            let (log_pred, dlog) = if pred > floor {
                (pred.ln(), 1.0 / pred)
            } else {
                (floor.ln() + (pred - floor) / floor, 1.0 / floor)
            };
            let r = pt.loss.ln() - log_pred;
            let (h, dh) = if r.abs() < self.delta {
                (0.5 * r * r, r)
            } else {
                (
                    self.delta * r.abs() - 0.5 * self.delta * self.delta,
                    self.delta * r.signum(),
                )
            };
            f += h;
            // d h / d pred = dh · dr/dpred = -dh · dlog.
            let dp = -dh * dlog;
            g[0] += dp;
            g[1] += dp * power;
            g[2] += dp * (-a * power * pt.s1.ln());
            g[3] += dp * (-pt.s2);
        }
        for (gi, pi) in g.iter_mut().zip(&p) {
            *gi *= pi;
        }
        (f, g)
    }
}

impl CostFunction for HuberLogFit<'_> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, theta: &Self::Param) -> std::result::Result<f64, argmin::core::Error> {
        let f = self.eval(theta).0;
        // A non-finite cost (an overflowing exponent) ends this start: argmin's line search would not.
        if f.is_finite() {
            Ok(f)
        } else {
            Err(argmin::core::Error::msg("non-finite objective"))
        }
    }
}

impl Gradient for HuberLogFit<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, theta: &Self::Param) -> std::result::Result<Vec<f64>, argmin::core::Error> {
        let g = self.eval(theta).1;
        if g.iter().all(|v| v.is_finite()) {
            Ok(g.to_vec())
        } else {
            Err(argmin::core::Error::msg("non-finite gradient"))
        }
    }
}

/// Fits the law to `points` from every starting point of the options' grid (in parallel) and keeps the best.
pub fn fit(points: &[LawPoint], opts: &FitOptions) -> Result<FitReport> {
    if points.len() < 4 {
        return Err(Error::invalid(format!(
            "the law has 4 parameters but only {} loss points were given",
            points.len()
        )));
    }
    if let Some(p) = points.iter().find(|p| {
        !(p.s1 > 0.0 && p.s1.is_finite() && p.s2.is_finite() && p.loss > 0.0 && p.loss.is_finite())
    }) {
        return Err(Error::invalid(format!(
            "every point needs S1 > 0, a finite S2 and a positive finite loss, found {p:?}"
        )));
    }
    if !(opts.lambda > 0.0 && opts.lambda < 1.0) {
        return Err(Error::invalid(format!(
            "lambda={} must be in (0, 1)",
            opts.lambda
        )));
    }
    let (lo, hi) = points.iter().fold((f64::INFINITY, 0.0f64), |(a, b), p| {
        (a.min(p.loss), b.max(p.loss))
    });
    if hi - lo <= 1e-12 * hi {
        return Err(Error::invalid(format!(
            "every loss is {hi}: a flat curve determines none of the law's terms; fit curves whose loss falls"
        )));
    }
    if points.iter().all(|p| p.s2 == 0.0) {
        return Err(Error::invalid(
            "the annealing term C cannot be identified: S2 = 0 at every point (every curve keeps its learning rate \
             constant after warmup); fit together with a curve whose learning rate decays (cosine, linear, WSD)",
        ));
    }
    if opts.huber_delta.is_nan() || opts.huber_delta <= 0.0 {
        return Err(Error::invalid(format!(
            "huber_delta={} must be positive",
            opts.huber_delta
        )));
    }
    let mut starts = Vec::new();
    for &l0 in &opts.l0_grid {
        for &a in &opts.a_grid {
            for &c in &opts.c_grid {
                for &alpha in &opts.alpha_grid {
                    starts.push([l0, a, alpha, c].map(|v: f64| v.max(START_FLOOR).ln()));
                }
            }
        }
    }
    if starts.is_empty() {
        return Err(Error::invalid("the starting grid is empty"));
    }
    // The grid is the paper's, for areas of order one (lr ~ 2e-4 over ~1e4 steps). Other lr scales start from the
    // same grid on areas divided by the largest S1, an exact reparametrisation undone below.
    let scale = points.iter().map(|p| p.s1).fold(0.0, f64::max);
    let scaled: Vec<LawPoint> = points
        .iter()
        .map(|p| LawPoint {
            s1: p.s1 / scale,
            s2: p.s2 / scale,
            loss: p.loss,
        })
        .collect();
    let problem_for = || HuberLogFit {
        points: &scaled,
        delta: opts.huber_delta,
    };
    let results: Vec<Option<(f64, Vec<f64>)>> = starts
        .par_iter()
        .map(|start| {
            let solver = LBFGS::new(MoreThuenteLineSearch::new(), 10)
                .with_tolerance_grad(1e-12)
                .ok()?
                .with_tolerance_cost(1e-14)
                .ok()?;
            let res = Executor::new(problem_for(), solver)
                .configure(|s| s.param(start.to_vec()).max_iters(opts.max_iters))
                .run()
                .ok()?;
            let theta = res.state().get_best_param()?.clone();
            let cost = res.state().get_best_cost();
            cost.is_finite().then_some((cost, theta))
        })
        .collect();
    let converged = results.iter().filter(|r| r.is_some()).count();
    let (objective, theta) = results
        .into_iter()
        .flatten()
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .ok_or_else(|| Error::invalid("the law's fit failed from every starting point"))?;
    let p: Vec<f64> = theta.iter().map(|t| t.exp()).collect();
    // A'·(S1/s)^-α = A'·s^α·S1^-α and C'·S2/s = (C'/s)·S2.
    let law = AnnealLaw {
        l0: p[0],
        a: p[1] * scale.powf(p[2]),
        alpha: p[2],
        c: p[3] / scale,
        lambda: opts.lambda,
    };
    let preds: Vec<f64> = points.iter().map(|pt| law.loss(pt.s1, pt.s2)).collect();
    let obs: Vec<f64> = points.iter().map(|pt| pt.loss).collect();
    let mean = obs.iter().sum::<f64>() / obs.len() as f64;
    let ss_res: f64 = obs.iter().zip(&preds).map(|(o, p)| (o - p).powi(2)).sum();
    let ss_tot: f64 = obs.iter().map(|o| (o - mean).powi(2)).sum();
    let (rel_stderr, identifiable) = uncertainty(points, &law);
    Ok(FitReport {
        law,
        objective,
        r2: 1.0 - ss_res / ss_tot,
        mape: mape(&preds, &obs),
        points: points.len(),
        starts: starts.len(),
        converged_starts: converged,
        rel_stderr,
        identifiable,
    })
}

/// Mean absolute percentage error of `pred` against `truth`, in percent.
pub fn mape(pred: &[f64], truth: &[f64]) -> f64 {
    let n = pred.len().min(truth.len()).max(1);
    100.0
        * pred
            .iter()
            .zip(truth)
            .map(|(p, t)| ((p - t) / t).abs())
            .sum::<f64>()
        / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn areas_by_hand() {
        // Warmup 0.5, 1 counts as 1, 1; then 1 -> 0.5 -> 0.5.
        let ar = areas(&[0.5, 1.0, 1.0, 0.5, 0.5], 0.5);
        assert_eq!(ar.s1, vec![0.0, 1.0, 2.0, 3.0, 3.5, 4.0]);
        // m: 0, 0, 0, 0.5, 0.25 -> S2 cumulative.
        assert_eq!(ar.s2, vec![0.0, 0.0, 0.0, 0.0, 0.5, 0.75]);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let law = AnnealLaw {
            l0: 1.5,
            a: 0.7,
            alpha: 0.4,
            c: 0.2,
            lambda: 0.999,
        };
        let pts: Vec<LawPoint> = (1..40)
            .map(|k| LawPoint {
                s1: 0.1 * k as f64,
                s2: 0.01 * (k as f64).sqrt(),
                loss: 2.0 + 0.3 * ((k * 7 % 5) as f64 - 2.0) * 1e-3 * (k as f64),
            })
            .collect();
        let theta = [law.l0, law.a, law.alpha, law.c].map(f64::ln);
        let fit = HuberLogFit {
            points: &pts,
            delta: 1e-3,
        };
        let (_, g) = fit.eval(&theta);
        for i in 0..4 {
            let h = 1e-6;
            let (mut tp, mut tm) = (theta, theta);
            tp[i] += h;
            tm[i] -= h;
            let fd = (fit.eval(&tp).0 - fit.eval(&tm).0) / (2.0 * h);
            assert!(
                (fd - g[i]).abs() <= 1e-5 * (1.0 + g[i].abs()),
                "{i}: {fd} vs {}",
                g[i]
            );
        }
    }

    #[test]
    fn rejects_bad_curves() {
        let c = LossCurve {
            name: "c".into(),
            lrs: vec![1e-3; 10],
            losses: vec![(11, 1.0)],
        };
        assert!(c
            .points(0.999, 0)
            .unwrap_err()
            .to_string()
            .contains("1..=10"));
        let c = LossCurve {
            losses: vec![(3, -1.0)],
            ..c
        };
        assert!(c
            .points(0.999, 0)
            .unwrap_err()
            .to_string()
            .contains("positive"));
        assert!(fit(&[], &FitOptions::default()).is_err());
    }
}
