//! CoLiDE (P40, "CoLiDE: Concomitant Linear DAG Estimation") and its baseline DAGMA: a weighted adjacency W of a
//! linear SEM from the sample covariance C, by path-following over the log-det acyclicity function
//! h_s(W) = −log det(sI − W∘W) + d log s. Round i minimises μ_i (S(W) + λ₁‖W‖₁) + h_{s_i}(W) with Adam from the
//! previous round's W, μ shrinking ×0.1 per round. The scores:
//!
//! - CoLiDE-EV: S = tr((I−W)ᵀC(I−W))/(2σ) + dσ/2, the noise scale σ = √(tr(...)/d) re-estimated after every step;
//! - CoLiDE-NV: S = ½ tr(Σ⁻¹(I−W)ᵀC(I−W)) + ½ Σ σ_i, σ_i = √diag(...) (one scale per variable);
//! - DAGMA: the least-squares score ½ tr((I−W)ᵀC(I−W)).
//!
//! As in the official code, a step that leaves the M-matrix domain (an entry of (sI − W∘W)⁻¹ below −1e-6, DAGMA:
//! below 0) is halved until it is back; a round that starts outside the domain, or fails with s ≤ 0.9, is rerun
//! from its start with half the learning rate and s + 0.1.

use crate::{Error, Result};
use faer::linalg::solvers::DenseSolveCore;
use faer::Mat;
use serde::Serialize;

/// The score function, i.e. the method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Score {
    /// CoLiDE with equal noise variances.
    ColideEv,
    /// CoLiDE with non-equal noise variances.
    ColideNv,
    /// DAGMA's least squares.
    Dagma,
}

impl Score {
    /// `ev`, `nv` or `dagma`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "ev" => Ok(Score::ColideEv),
            "nv" => Ok(Score::ColideNv),
            "dagma" => Ok(Score::Dagma),
            other => Err(Error::invalid(format!(
                "variant `{other}`: available: ev, nv, dagma"
            ))),
        }
    }
}

/// Path-following settings; [`DagOptions::colide`] and [`DagOptions::dagma`] are the official defaults.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DagOptions {
    pub lambda1: f64,
    /// The s of each round (the round count is its length).
    pub s: Vec<f64>,
    pub mu_init: f64,
    pub mu_factor: f64,
    /// Adam iterations of every round but the last ...
    pub warm_iter: u64,
    /// ... and of the last.
    pub max_iter: u64,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    /// Check the objective every this many iterations; stop a round when its relative change is <= `tol`.
    pub checkpoint: u64,
    pub tol: f64,
    /// Entries with |w| <= threshold are dropped by [`super::to_dag`] afterwards.
    pub threshold: f64,
}

impl DagOptions {
    /// CoLiDE's `main.py`: λ₁ = 0.05, s = [1, .9, .8, .7], 2e4 warm and 7e4 final iterations, lr 3e-4.
    pub fn colide() -> Self {
        DagOptions {
            lambda1: 0.05,
            s: vec![1.0, 0.9, 0.8, 0.7],
            mu_init: 1.0,
            mu_factor: 0.1,
            warm_iter: 20_000,
            max_iter: 70_000,
            lr: 3e-4,
            beta1: 0.99,
            beta2: 0.999,
            checkpoint: 1000,
            tol: 1e-6,
            threshold: 0.3,
        }
    }

    /// DAGMA's `fit` defaults: λ₁ = 0.03, s = [1, .9, .8, .7, .6], 3e4 warm and 6e4 final iterations.
    pub fn dagma() -> Self {
        DagOptions {
            lambda1: 0.03,
            s: vec![1.0, 0.9, 0.8, 0.7, 0.6],
            warm_iter: 30_000,
            max_iter: 60_000,
            ..Self::colide()
        }
    }

    /// The defaults of `score`'s method.
    pub fn for_score(score: Score) -> Self {
        match score {
            Score::Dagma => Self::dagma(),
            _ => Self::colide(),
        }
    }

    fn validate(&self) -> Result<()> {
        let pos = [
            ("lr", self.lr),
            ("mu_init", self.mu_init),
            ("mu_factor", self.mu_factor),
            ("tol", self.tol),
        ];
        if let Some((k, v)) = pos.iter().find(|(_, v)| !(v.is_finite() && *v > 0.0)) {
            return Err(Error::invalid(format!("{k}={v} must be positive")));
        }
        if !(self.lambda1.is_finite() && self.lambda1 >= 0.0 && self.threshold >= 0.0) {
            return Err(Error::invalid("lambda1 and threshold must be non-negative"));
        }
        if self.s.is_empty() || self.s.iter().any(|s| !(*s > 0.0 && s.is_finite())) {
            return Err(Error::invalid("s must list one positive value per round"));
        }
        if self.warm_iter == 0 || self.max_iter == 0 || self.checkpoint == 0 {
            return Err(Error::invalid(
                "warm_iter, max_iter and checkpoint must be at least 1",
            ));
        }
        if !((0.0..1.0).contains(&self.beta1) && (0.0..1.0).contains(&self.beta2)) {
            return Err(Error::invalid("beta1 and beta2 must be in [0, 1)"));
        }
        Ok(())
    }
}

/// One call of the inner solver.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Round {
    pub mu: f64,
    pub s: f64,
    pub lr: f64,
    pub iterations: u64,
    pub success: bool,
}

/// The estimate before thresholding.
#[derive(Debug, Clone, PartialEq)]
pub struct DagFit {
    /// Raw W (d × d), `W[i][j]` the weight of edge i → j.
    pub w: Vec<Vec<f64>>,
    /// The noise scale(s): one for EV, d for NV, none for DAGMA.
    pub sigma: Vec<f64>,
    pub rounds: Vec<Round>,
}

/// The state an inner solve carries: W and σ.
#[derive(Clone)]
struct State {
    w: Mat<f64>,
    sigma: Vec<f64>,
    /// C (I − W) at `w`.
    rhs: Mat<f64>,
}

struct Problem<'a> {
    cov: &'a Mat<f64>,
    score: Score,
    opts: &'a DagOptions,
    d: usize,
}

impl Problem<'_> {
    /// C (I − W), which the score, its gradient and σ all use.
    fn rhs(&self, w: &Mat<f64>) -> Mat<f64> {
        let d = self.d;
        let dif = Mat::<f64>::from_fn(d, d, |i, j| f64::from(u8::from(i == j)) - w[(i, j)]);
        self.cov * &dif
    }

    /// The diagonal of (I − W)ᵀ C (I − W) from `rhs` = C (I − W).
    fn residual_diag(&self, w: &Mat<f64>, rhs: &Mat<f64>) -> Vec<f64> {
        let d = self.d;
        (0..d)
            .map(|j| {
                (0..d)
                    .map(|i| (f64::from(u8::from(i == j)) - w[(i, j)]) * rhs[(i, j)])
                    .sum()
            })
            .collect()
    }

    /// Updates the cached C (I − W) and σ after W changed.
    fn refresh(&self, st: &mut State) {
        st.rhs = self.rhs(&st.w);
        st.sigma = self.sigma_of(&st.w, &st.rhs);
    }

    fn sigma_of(&self, w: &Mat<f64>, rhs: &Mat<f64>) -> Vec<f64> {
        let diag = self.residual_diag(w, rhs);
        match self.score {
            Score::ColideEv => vec![(diag.iter().sum::<f64>() / self.d as f64).sqrt()],
            Score::ColideNv => diag.iter().map(|v| v.sqrt()).collect(),
            Score::Dagma => Vec::new(),
        }
    }

    fn score_value(&self, w: &Mat<f64>, rhs: &Mat<f64>, sigma: &[f64]) -> f64 {
        let diag = self.residual_diag(w, rhs);
        match self.score {
            Score::ColideEv => {
                0.5 * diag.iter().sum::<f64>() / sigma[0] + 0.5 * sigma[0] * self.d as f64
            }
            Score::ColideNv => {
                0.5 * (diag.iter().zip(sigma).map(|(a, s)| a / s).sum::<f64>()
                    + sigma.iter().sum::<f64>())
            }
            Score::Dagma => 0.5 * diag.iter().sum::<f64>(),
        }
    }

    /// (sI − W∘W)⁻¹ + 1e-16 (as the official code, which keeps the 1e-16 in the gradient too), or `None` when
    /// sI − W∘W is singular.
    fn m_inverse(&self, w: &Mat<f64>, s: f64) -> Option<Mat<f64>> {
        let d = self.d;
        let m = Mat::<f64>::from_fn(d, d, |i, j| {
            s * f64::from(u8::from(i == j)) - w[(i, j)] * w[(i, j)]
        });
        let inv = m.partial_piv_lu().inverse();
        let out = Mat::<f64>::from_fn(d, d, |i, j| inv[(i, j)] + 1e-16);
        let finite = out.col_iter().all(|c| c.iter().all(|v| v.is_finite()));
        finite.then_some(out)
    }

    fn out_of_domain(&self, minv: &Mat<f64>) -> bool {
        let bound = if self.score == Score::Dagma {
            0.0
        } else {
            -1e-6
        };
        minv.col_iter().any(|c| c.iter().any(|v| *v < bound))
    }

    /// μ(S + λ₁‖W‖₁) + h_s(W), h_s = −log|det(sI − W∘W)| + d log s.
    fn objective(&self, st: &State, mu: f64, s: f64) -> f64 {
        let (w, sigma) = (&st.w, &st.sigma);
        let d = self.d;
        let m = Mat::<f64>::from_fn(d, d, |i, j| {
            s * f64::from(u8::from(i == j)) - w[(i, j)] * w[(i, j)]
        });
        let logdet = m.determinant().abs().ln();
        let l1: f64 = w
            .col_iter()
            .map(|c| c.iter().map(|v| v.abs()).sum::<f64>())
            .sum();
        mu * (self.score_value(w, &st.rhs, sigma) + self.opts.lambda1 * l1) - logdet
            + d as f64 * s.ln()
    }

    /// The gradient μ∇S + μλ₁ sign(W) + 2 W∘M⁻ᵀ.
    fn gradient(&self, st: &State, mu: f64, minv: &Mat<f64>) -> Mat<f64> {
        let (w, sigma, rhs) = (&st.w, &st.sigma, &st.rhs);
        Mat::<f64>::from_fn(self.d, self.d, |i, j| {
            let scale = match self.score {
                Score::ColideEv => sigma[0],
                Score::ColideNv => sigma[j],
                Score::Dagma => 1.0,
            };
            let wij = w[(i, j)];
            -mu * rhs[(i, j)] / scale
                + mu * self.opts.lambda1 * sign(wij)
                + 2.0 * wij * minv[(j, i)]
        })
    }

    /// One inner solve (the official `minimize`): `None` when the round must be rerun with a smaller step.
    fn minimize(
        &self,
        mut st: State,
        mu: f64,
        max_iter: u64,
        s: f64,
        mut lr: f64,
    ) -> (Option<State>, u64) {
        let d = self.d;
        let o = self.opts;
        let (mut m1, mut m2) = (Mat::<f64>::zeros(d, d), Mat::<f64>::zeros(d, d));
        let mut step = Mat::<f64>::zeros(d, d);
        let mut obj_prev = 1e16;
        for it in 1..=max_iter {
            let mut minv = match self.m_inverse(&st.w, s) {
                Some(m) => m,
                None if it == 1 || s <= 0.9 => return (None, it),
                None => Mat::<f64>::from_fn(d, d, |_, _| -1.0),
            };
            while self.out_of_domain(&minv) {
                if it == 1 || s <= 0.9 {
                    return (None, it);
                }
                // Undo the last step, halve it and take it again.
                st.w += lr * &step;
                lr *= 0.5;
                if lr <= 1e-16 {
                    return (Some(st), it);
                }
                st.w -= lr * &step;
                self.refresh(&mut st);
                minv = self
                    .m_inverse(&st.w, s)
                    .unwrap_or_else(|| Mat::<f64>::from_fn(d, d, |_, _| -1.0));
            }
            let g = self.gradient(&st, mu, &minv);
            let (b1, b2) = (o.beta1, o.beta2);
            let (c1, c2) = (1.0 - b1.powi(it as i32), 1.0 - b2.powi(it as i32));
            step = Mat::<f64>::from_fn(d, d, |i, j| {
                let gij = g[(i, j)];
                m1[(i, j)] = b1 * m1[(i, j)] + (1.0 - b1) * gij;
                m2[(i, j)] = b2 * m2[(i, j)] + (1.0 - b2) * gij * gij;
                (m1[(i, j)] / c1) / ((m2[(i, j)] / c2).sqrt() + 1e-8)
            });
            st.w -= lr * &step;
            self.refresh(&mut st);
            if it % o.checkpoint == 0 || it == max_iter {
                let obj = self.objective(&st, mu, s);
                if ((obj_prev - obj) / obj_prev).abs() <= o.tol {
                    return (Some(st), it);
                }
                obj_prev = obj;
            }
        }
        (Some(st), max_iter)
    }
}

fn sign(v: f64) -> f64 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// Fits `score`'s method to the covariance `cov` (d × d, of centred data divided by n).
pub fn fit(cov: &[Vec<f64>], score: Score, opts: &DagOptions) -> Result<DagFit> {
    opts.validate()?;
    // Each iteration is a handful of d×d products and one LU for d of tens to hundreds: faer's rayon dispatch costs
    // more than the arithmetic (measured 10x on d = 10), so faer runs sequentially (a process-wide faer setting).
    faer::set_global_parallelism(faer::Par::Seq);
    let d = cov.len();
    if d < 2 || cov.iter().any(|r| r.len() != d) {
        return Err(Error::Shape(format!(
            "the covariance must be a square matrix of at least 2 variables, got {d} rows"
        )));
    }
    if cov.iter().flatten().any(|v| !v.is_finite()) {
        return Err(Error::invalid(
            "the covariance contains NaN or infinite values",
        ));
    }
    if let Some(j) = (0..d).find(|&j| cov[j][j] <= 0.0) {
        return Err(Error::invalid(format!(
            "variable {j} has zero variance (a constant column): no linear SEM can explain it"
        )));
    }
    let c = Mat::<f64>::from_fn(d, d, |i, j| cov[i][j]);
    let prob = Problem {
        cov: &c,
        score,
        opts,
        d,
    };
    let scales: Vec<f64> = (0..d).map(|j| cov[j][j].sqrt()).collect();
    let mut st = State {
        w: Mat::<f64>::zeros(d, d),
        rhs: c.clone(),
        sigma: match score {
            Score::ColideEv => vec![scales.iter().copied().fold(f64::INFINITY, f64::min)],
            Score::ColideNv => scales,
            Score::Dagma => Vec::new(),
        },
    };
    let mut mu = opts.mu_init;
    let mut rounds = Vec::new();
    let t = opts.s.len();
    for (i, &s0) in opts.s.iter().enumerate() {
        let iters = if i + 1 == t {
            opts.max_iter
        } else {
            opts.warm_iter
        };
        let (mut lr, mut s) = (opts.lr, s0);
        loop {
            let (res, used) = prob.minimize(st.clone(), mu, iters, s, lr);
            rounds.push(Round {
                mu,
                s,
                lr,
                iterations: used,
                success: res.is_some(),
            });
            match res {
                Some(next) => {
                    st = next;
                    break;
                }
                None if rounds.len() > 200 => {
                    return Err(Error::invalid(
                        "the path-following kept leaving the M-matrix domain (200 retries)",
                    ))
                }
                None => {
                    lr *= 0.5;
                    s += 0.1;
                }
            }
        }
        mu *= opts.mu_factor;
    }
    Ok(DagFit {
        w: (0..d)
            .map(|i| (0..d).map(|j| st.w[(i, j)]).collect())
            .collect(),
        sigma: st.sigma,
        rounds,
    })
}

/// The official post-processing of each method's raw estimate: CoLiDE's `to_dag(threshold)` (drop |w| <= threshold,
/// then break cycles at the weakest edges); DAGMA's `fit` only zeroes |w| < threshold (strictly).
pub fn official_postprocess(w: &[Vec<f64>], score: Score, threshold: f64) -> Vec<Vec<f64>> {
    match score {
        Score::Dagma => w
            .iter()
            .map(|r| {
                r.iter()
                    .map(|v| if v.abs() < threshold { 0.0 } else { *v })
                    .collect()
            })
            .collect(),
        _ => super::to_dag(w, threshold),
    }
}
