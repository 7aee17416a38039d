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
//!
//! An iteration costs one d×d inverse (Gauss–Jordan in `dense`, two pivots per pass) and one product C(I − W),
//! plus one fused pass for the gradient and Adam's step, all on buffers the inner solve reuses.

use super::dense;
use super::side::{CloseOnDrop, Side};
use crate::simd::{simd, simd_body, SimdBody};
use crate::{Error, Result};
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

/// The state an inner solve carries: W and σ (d×d matrices row-major, `w[i * d + j]` the weight of edge i → j).
#[derive(Clone)]
struct State {
    w: Vec<f64>,
    sigma: Vec<f64>,
    /// C (I − W) at `w`.
    rhs: Vec<f64>,
}

/// M⁻ᵀ + 1e-16, M = sI − W∘W, rows [`dense::padded`]`(d)` apart from a 64-byte boundary on
/// ([`dense::aligned_mut`]: no vector access of the inverse straddles two cache lines), and the pivots' scratch.
struct Inverse {
    buf: Vec<f64>,
    pivots: Vec<usize>,
}

impl Inverse {
    fn matrix(&mut self, d: usize) -> &mut [f64] {
        dense::aligned_mut(&mut self.buf, d * dense::padded(d))
    }
}

/// Buffers an inner solve reuses every iteration.
struct Work {
    /// I − W.
    dif: Vec<f64>,
    inv: Inverse,
    /// Each column's noise scale in the score's gradient.
    scale: Vec<f64>,
    m1: Vec<f64>,
    m2: Vec<f64>,
    step: Vec<f64>,
}

impl Work {
    fn new(d: usize) -> Self {
        let z = vec![0.0; d * d];
        Work {
            dif: z.clone(),
            inv: Inverse {
                buf: vec![0.0; d * dense::padded(d) + 7],
                pivots: Vec::with_capacity(d),
            },
            scale: Vec::with_capacity(d),
            m1: z.clone(),
            m2: z.clone(),
            step: z,
        }
    }
}

/// The refresh a side worker computes: a copy of W in, C (I − W), σ and I − W out (swapped with the state's).
struct Refresh {
    w: Vec<f64>,
    rhs: Vec<f64>,
    sigma: Vec<f64>,
    dif: Vec<f64>,
}

impl Refresh {
    fn new(d: usize) -> Self {
        let z = vec![0.0; d * d];
        Refresh {
            w: z.clone(),
            rhs: z.clone(),
            sigma: Vec::with_capacity(d),
            dif: z,
        }
    }
}

/// From this many variables up, an iteration's refresh runs on a second core beside the inverse, when rayon has two
/// threads or more. `optlab dag fit` on simulated data (`optlab dag simulate --d D --noise nv`), DAGMA, medians of 6
/// to 8 runs alternating RAYON_NUM_THREADS=1 and 2 on a 2-core Xeon: 7% slower at d = 40 (the refreshed product,
/// written on the other core, costs the Adam pass that reads it as much as the overlap saves), 7–9% faster at
/// d = 50, 12–23% at d = 100; 48 lies between the measured 40 and 50.
const SIDE_MIN_D: usize = 48;

/// The cores a fit of d variables uses here: 2 from d = 48 up when rayon has two threads or more (the refresh of
/// each iteration beside its inverse, on a thread of the fit's own, outside rayon's pool: rayon's thread count is
/// only the project's knob for how many cores to use), else 1.
pub fn cores_used(d: usize) -> usize {
    if d >= SIDE_MIN_D && rayon::current_num_threads() >= 2 {
        2
    } else {
        1
    }
}

struct Problem<'a> {
    /// C, row-major.
    cov: &'a [f64],
    score: Score,
    opts: &'a DagOptions,
    d: usize,
}

impl Problem<'_> {
    /// The diagonal of (I − W)ᵀ C (I − W) from `dif` = I − W and `rhs` = C (I − W), Σᵢ difᵢⱼ rhsᵢⱼ, into `diag`.
    fn residual_diag(&self, dif: &[f64], rhs: &[f64], diag: &mut Vec<f64>) {
        let d = self.d;
        diag.clear();
        diag.resize(d, 0.0);
        simd(|| {
            for (a, b) in dif.chunks_exact(d).zip(rhs.chunks_exact(d)) {
                diag.iter_mut()
                    .zip(a.iter().zip(b))
                    .for_each(|(o, (x, y))| *o += x * y);
            }
        });
    }

    /// Updates the cached C (I − W) and σ after W changed (σ's buffer first holds the residual diagonal).
    fn refresh(&self, w: &[f64], rhs: &mut [f64], sigma: &mut Vec<f64>, dif: &mut [f64]) {
        let d = self.d;
        identity_minus(dif, w, d);
        dense::matmul_into(rhs, self.cov, dif, d);
        self.residual_diag(dif, rhs, sigma);
        match self.score {
            Score::ColideEv => {
                let ev = (sigma.iter().sum::<f64>() / d as f64).sqrt();
                sigma.clear();
                sigma.push(ev);
            }
            Score::ColideNv => sigma.iter_mut().for_each(|v| *v = v.sqrt()),
            Score::Dagma => sigma.clear(),
        }
    }

    /// [`Problem::refresh`] and [`Problem::m_inverse`] after W changed. Both read W only: with a `side` worker the
    /// refresh runs on a second core, on a copy of W, while this one inverts, and its buffers are swapped in
    /// after. (Run side by side through rayon's join they were measured no faster at d = 50: waking a pool thread
    /// costs what the overlap saves.)
    fn refresh_and_invert(
        &self,
        st: &mut State,
        s: f64,
        work: &mut Work,
        side: Option<&Side<Refresh>>,
    ) -> Option<f64> {
        let Some(side) = side else {
            self.refresh(&st.w, &mut st.rhs, &mut st.sigma, &mut work.dif);
            return self.m_inverse(&st.w, s, &mut work.inv);
        };
        side.post(|job| job.w.copy_from_slice(&st.w));
        let min = self.m_inverse(&st.w, s, &mut work.inv);
        side.finish(
            |job| self.refresh_job(job),
            |job| {
                std::mem::swap(&mut st.rhs, &mut job.rhs);
                std::mem::swap(&mut st.sigma, &mut job.sigma);
                std::mem::swap(&mut work.dif, &mut job.dif);
            },
        );
        min
    }

    fn refresh_job(&self, job: &mut Refresh) {
        self.refresh(&job.w, &mut job.rhs, &mut job.sigma, &mut job.dif);
    }

    fn score_value(&self, diag: &[f64], sigma: &[f64]) -> f64 {
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

    /// sI − W∘W, transposed when `transpose`, into `out` with rows `ld` apart (the padding left alone): 0 − w²
    /// off the diagonal, s − w² on it. (Writing each entry as s·δᵢⱼ − w² gives the same numbers, but its
    /// integer-to-float conversion made the build 4x slower, 8% of a d = 50 DAGMA iteration; the transposed build
    /// by 8×8 tiles took a fit 2–3% less time than an entry at a time.)
    fn m_matrix(&self, w: &[f64], s: f64, transpose: bool, out: &mut [f64], ld: usize) {
        let d = self.d;
        if transpose {
            dense::negated_squares_transposed(w, d, out, ld);
        } else {
            for (row, w) in out.chunks_exact_mut(ld).zip(w.chunks_exact(d)) {
                for (o, v) in row[..d].iter_mut().zip(w) {
                    *o = 0.0 - v * v;
                }
            }
        }
        for (i, row) in out.chunks_exact_mut(ld).enumerate() {
            let v = w[i * d + i];
            row[i] = s - v * v;
        }
    }

    /// (sI − W∘W)⁻ᵀ + 1e-16 into `inv` (the official code adds the 1e-16 to the inverse and keeps it in the
    /// gradient too), and its smallest entry; `None` when sI − W∘W is singular or the inverse overflows.
    fn m_inverse(&self, w: &[f64], s: f64, inv: &mut Inverse) -> Option<f64> {
        let (d, ld) = (self.d, dense::padded(self.d));
        let minv_t = dense::aligned_mut(&mut inv.buf, d * ld);
        self.m_matrix(w, s, true, minv_t, ld);
        if !dense::invert_in_place(minv_t, d, &mut inv.pivots) {
            return None;
        }
        let (min, finite) = dense::shift_and_min(minv_t, d, 1e-16);
        finite.then_some(min)
    }

    /// Whether M⁻¹'s smallest entry `min` (`None`: singular) puts W outside the M-matrix domain.
    fn out_of_domain(&self, min: Option<f64>) -> bool {
        let bound = if self.score == Score::Dagma {
            0.0
        } else {
            -1e-6
        };
        min.is_none_or(|m| m < bound)
    }

    /// μ(S + λ₁‖W‖₁) + h_s(W), h_s = −log|det(sI − W∘W)| + d log s, with `dif` = I − W as the last refresh left it.
    fn objective(&self, st: &State, mu: f64, s: f64, dif: &[f64]) -> f64 {
        let d = self.d;
        let mut m = vec![0.0; d * d];
        self.m_matrix(&st.w, s, false, &mut m, d);
        let logdet = dense::log_abs_det(&m, d);
        let l1: f64 = st.w.iter().map(|v| v.abs()).sum();
        let mut diag = Vec::with_capacity(d);
        self.residual_diag(dif, &st.rhs, &mut diag);
        mu * (self.score_value(&diag, &st.sigma) + self.opts.lambda1 * l1) - logdet
            + d as f64 * s.ln()
    }

    /// One Adam step (the official `_adam_update`, iteration `it`) on the gradient μ∇S + μλ₁ sign(W) + 2 W∘M⁻ᵀ:
    /// W ← W − lr·step. Every d×d pass of the iteration but the inverse and the product, fused row by row and
    /// compiled wide.
    fn adam_step(&self, st: &mut State, mu: f64, lr: f64, it: u64, work: &mut Work) {
        let (d, o) = (self.d, self.opts);
        work.scale.clear();
        work.scale.extend((0..d).map(|j| match self.score {
            Score::ColideEv => st.sigma[0],
            Score::ColideNv => st.sigma[j],
            Score::Dagma => 1.0,
        }));
        let mul = mu * o.lambda1;
        let (b1, b2) = (o.beta1, o.beta2);
        let (c1, c2) = (
            1.0 / (1.0 - b1.powi(it as i32)),
            1.0 / (1.0 - b2.powi(it as i32)),
        );
        simd_body(AdamRows {
            d,
            w: &mut st.w,
            m1: &mut work.m1,
            m2: &mut work.m2,
            step: &mut work.step,
            rhs: &st.rhs,
            minv_t: work.inv.matrix(d),
            scale: &work.scale,
            k: [mu, mul, b1, b2, c1, c2, lr],
        });
    }

    /// One inner solve (the official `minimize`): `None` when the round must be rerun with a smaller step.
    fn minimize(
        &self,
        mut st: State,
        mu: f64,
        max_iter: u64,
        s: f64,
        mut lr: f64,
        side: Option<&Side<Refresh>>,
    ) -> (Option<State>, u64) {
        let o = self.opts;
        let mut work = Work::new(self.d);
        let mut obj_prev = 1e16;
        // M⁻¹ at the current W; refreshed with C (I − W) after every step.
        let mut min = self.m_inverse(&st.w, s, &mut work.inv);
        for it in 1..=max_iter {
            while self.out_of_domain(min) {
                if it == 1 || s <= 0.9 {
                    return (None, it);
                }
                // Undo the last step, halve it and take it again.
                axpy(&mut st.w, lr, &work.step);
                lr *= 0.5;
                if lr <= 1e-16 {
                    return (Some(st), it);
                }
                axpy(&mut st.w, -lr, &work.step);
                min = self.refresh_and_invert(&mut st, s, &mut work, side);
            }
            self.adam_step(&mut st, mu, lr, it, &mut work);
            min = self.refresh_and_invert(&mut st, s, &mut work, side);
            if it % o.checkpoint == 0 || it == max_iter {
                let obj = self.objective(&st, mu, s, &work.dif);
                if ((obj_prev - obj) / obj_prev).abs() <= o.tol {
                    return (Some(st), it);
                }
                obj_prev = obj;
            }
        }
        (Some(st), max_iter)
    }
}

/// The body of [`Problem::adam_step`], for [`simd_body`] (a closure that large is not inlined into the wide
/// entry point). `k` = [μ, μλ₁, β₁, β₂, 1/(1 − β₁ᵗ), 1/(1 − β₂ᵗ), lr]; `scale` holds σⱼ. Adam's bias corrections
/// are products by reciprocals (about 2 µs an iteration at d = 50); the score's r/σⱼ stays a division, as in the
/// official code (as a product too, the fits moved further from the official ones: 27 instead of 29 identical
/// SHDs of 30 at d = 20).
struct AdamRows<'a> {
    d: usize,
    w: &'a mut [f64],
    m1: &'a mut [f64],
    m2: &'a mut [f64],
    step: &'a mut [f64],
    rhs: &'a [f64],
    minv_t: &'a [f64],
    scale: &'a [f64],
    k: [f64; 7],
}

impl SimdBody for AdamRows<'_> {
    type Out = ();
    #[inline(always)]
    fn run(self) {
        // DAGMA's scales are all 1: r/1 is r exactly, and the division (a third of the pass's divisions and
        // square roots, which bound it) is left out.
        if self.scale.iter().all(|&s| s == 1.0) {
            self.rows::<false>()
        } else {
            self.rows::<true>()
        }
    }
}

impl AdamRows<'_> {
    /// The pass, dividing the score's gradient by σⱼ when `DIVIDE`.
    #[inline(always)]
    fn rows<const DIVIDE: bool>(self) {
        let [mu, mul, b1, b2, c1, c2, lr] = self.k;
        let d = self.d;
        let rows = self
            .w
            .chunks_exact_mut(d)
            .zip(self.m1.chunks_exact_mut(d).zip(self.m2.chunks_exact_mut(d)))
            .zip(self.step.chunks_exact_mut(d))
            .zip(
                self.rhs
                    .chunks_exact(d)
                    .zip(self.minv_t.chunks_exact(dense::padded(d))),
            );
        for (((w, (m1, m2)), step), (rhs, minv)) in rows {
            let cols = w.iter_mut().zip(m1.iter_mut().zip(m2.iter_mut()));
            let inputs = step
                .iter_mut()
                .zip(rhs.iter().zip(minv.iter().zip(self.scale)));
            for ((w, (m1, m2)), (step, (&r, (&mi, &sc)))) in cols.zip(inputs) {
                let score = if DIVIDE { -mu * r / sc } else { -mu * r };
                let g = score + mul * sign(*w) + 2.0 * *w * mi;
                *m1 = b1 * *m1 + (1.0 - b1) * g;
                *m2 = b2 * *m2 + (1.0 - b2) * g * g;
                *step = (*m1 * c1) / ((*m2 * c2).sqrt() + 1e-8);
                *w -= lr * *step;
            }
        }
    }
}

/// dif = I − W (d×d, row-major).
fn identity_minus(dif: &mut [f64], w: &[f64], d: usize) {
    simd(|| {
        dif.iter_mut().zip(w).for_each(|(o, w)| *o = 0.0 - w);
    });
    for i in 0..d {
        dif[i * d + i] = 1.0 - w[i * d + i];
    }
}

/// y += a·x.
fn axpy(y: &mut [f64], a: f64, x: &[f64]) {
    y.iter_mut().zip(x).for_each(|(y, x)| *y += a * x);
}

#[inline(always)]
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
    fit_on(cov, score, opts, cores_used(cov.len()))
}

/// [`fit`] on `cores` cores (1, or 2: the refresh on a second core); the same bits either way.
fn fit_on(cov: &[Vec<f64>], score: Score, opts: &DagOptions, cores: usize) -> Result<DagFit> {
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
    let c: Vec<f64> = cov.iter().flatten().copied().collect();
    let prob = Problem {
        cov: &c,
        score,
        opts,
        d,
    };
    let scales: Vec<f64> = (0..d).map(|j| cov[j][j].sqrt()).collect();
    let st = State {
        w: vec![0.0; d * d],
        rhs: c.clone(),
        sigma: match score {
            Score::ColideEv => vec![scales.iter().copied().fold(f64::INFINITY, f64::min)],
            Score::ColideNv => scales,
            Score::Dagma => Vec::new(),
        },
    };
    let side = (cores >= 2).then(|| Side::new(Refresh::new(d)));
    std::thread::scope(|scope| {
        let _close = CloseOnDrop(side.as_ref());
        if let Some(side) = &side {
            let prob = &prob;
            scope.spawn(move || side.serve(|job| prob.refresh_job(job)));
        }
        path_following(&prob, st, side.as_ref())
    })
}

/// The rounds of the path-following from `st` (W = 0), each an inner solve, rerun from its start with half the
/// step and s + 0.1 when it leaves the domain.
fn path_following(prob: &Problem, mut st: State, side: Option<&Side<Refresh>>) -> Result<DagFit> {
    let (opts, d) = (prob.opts, prob.d);
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
            let (res, used) = prob.minimize(st.clone(), mu, iters, s, lr, side);
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
        w: st.w.chunks_exact(d).map(|r| r.to_vec()).collect(),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The refresh on a second core gives the bits of the one-core fit, for every score.
    #[test]
    fn a_second_core_leaves_the_fit_unchanged() {
        let sem = super::super::simulate(super::super::Graph::Er(2), 12, 300, false, 4).unwrap();
        let cov = super::super::covariance(&sem.x, 300, 12).unwrap();
        for score in [Score::ColideEv, Score::ColideNv, Score::Dagma] {
            let opts = DagOptions {
                warm_iter: 300,
                max_iter: 400,
                checkpoint: 100,
                ..DagOptions::for_score(score)
            };
            let (one, two) = (
                fit_on(&cov, score, &opts, 1).unwrap(),
                fit_on(&cov, score, &opts, 2).unwrap(),
            );
            let bits = |f: &DagFit| -> Vec<u64> {
                f.w.iter()
                    .flatten()
                    .chain(&f.sigma)
                    .map(|v| v.to_bits())
                    .collect()
            };
            assert_eq!(bits(&one), bits(&two), "{score:?}");
            assert_eq!(one.rounds, two.rounds, "{score:?}");
            assert!(
                one.w.iter().flatten().any(|v| v.abs() > 0.3),
                "{score:?}: no edge learnt"
            );
        }
    }
}
