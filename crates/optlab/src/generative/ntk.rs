//! P25's setting (Han, Razaviyayn & Xu, "Neural network-based score estimation in diffusion models: optimization
//! and generalization"): denoising score matching as regression with noisy labels, learnt by a wide two-layer
//! ReLU network under full-batch gradient descent, next to the kernel-regression predictor that GD on the
//! network's neural tangent kernel (NTK) follows.
//!
//! At one diffusion time t the pairs (x_i, y_i) = (α x0_i + σ ε_i, −ε_i/σ) are noisy labels of the score:
//! E[y | x] = ∇log p_t(x). The network f(x) = m^{-1/2} Σ_r a_r relu(w_r·x̃), x̃ = (x, 1), has fixed outer signs
//! a_r ∈ {±1}^d and trained inner weights w_r ~ N(0, I), in pairs (w, a) and (w, −a) so that f_0 ≡ 0. GD on
//! (1/2n) Σ‖f(x_i) − y_i‖² with step η. Its infinite-width NTK is K(x, x′) = x̃·x̃′ (π − θ)/(2π), θ the angle
//! between x̃ and x̃′, the same for every output; linearized GD gives the closed form
//! f_k(x) = K(x, X) U diag((1 − (1 − ηλ/n)^k)/λ) Uᵀ Y with K(X, X) = U diag(λ) Uᵀ.
//! The score error E_{x ~ p_t}‖f_k(x) − ∇log p_t(x)‖² is measured on fresh points with the exact score.
//!
//! Two stopping times are reported: the hold-out one (the minimum of the squared error on held-out noisy labels,
//! whose expectation is the score error plus the label noise), and the kernel-complexity rule of Raskutti,
//! Wainwright & Yu (JMLR 2014) for GD on a kernel, in the form Yang (ICML 2025, eq. 8) states it for GD-trained
//! two-layer ReLU networks ([`complexity_stopping_time`]). The ICLR 2024 paper states no explicit rule: its
//! Assumption 3.11 asks for a stopping time that "an extension of classical early stopping rules for scalar-valued
//! kernel regression" satisfies (the paper's words, quoted in its public review). This is that classical rule, on
//! each output coordinate with the shared kernel. The explicit rule for unbounded inputs of the extended version
//! (arXiv v4, 2026) was not reachable and is not built.

use super::mixture::Mixture;
use super::process::Process;
use crate::rng::{normal, rng_for, Rng, Stream};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use faer::{Mat, Side};
use serde::Serialize;

/// Noisy score labels at one time: `x` and `y` row-major `[n, dim]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreRegression {
    pub dim: usize,
    pub x: Vec<f64>,
    pub y: Vec<f64>,
}

impl ScoreRegression {
    /// `n` pairs (α x0 + σ ε, −ε/σ) with x0 from the target.
    pub fn draw(target: &Mixture, process: &Process, t: f64, n: usize, rng: &mut Rng) -> Self {
        let (a, s) = (process.alpha(t), process.sigma(t));
        let x0 = target.sample(n, rng);
        let eps: Vec<f64> = (0..x0.len()).map(|_| normal(rng)).collect();
        ScoreRegression {
            dim: target.dim,
            x: x0.iter().zip(&eps).map(|(x, e)| a * x + s * e).collect(),
            y: eps.iter().map(|e| -e / s).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.x.len() / self.dim
    }

    pub fn is_empty(&self) -> bool {
        self.x.is_empty()
    }
}

/// The NTK of the two-layer ReLU network with trained inner weights: x̃·x̃′ (π − θ)/(2π), x̃ = (x, 1).
pub fn ntk(a: &[f64], b: &[f64]) -> f64 {
    let dot = a.iter().zip(b).map(|(u, v)| u * v).sum::<f64>() + 1.0;
    let na = (a.iter().map(|u| u * u).sum::<f64>() + 1.0).sqrt();
    let nb = (b.iter().map(|v| v * v).sum::<f64>() + 1.0).sqrt();
    let cos = (dot / (na * nb)).clamp(-1.0, 1.0);
    dot * (std::f64::consts::PI - cos.acos()) / (2.0 * std::f64::consts::PI)
}

fn gram(a: &[f64], b: &[f64], d: usize) -> Mat<f64> {
    let (na, nb) = (a.len() / d, b.len() / d);
    Mat::from_fn(na, nb, |i, j| {
        ntk(&a[i * d..(i + 1) * d], &b[j * d..(j + 1) * d])
    })
}

/// The empirical kernel complexity R̂(ε) = (n⁻¹ Σᵢ min(λ̂ᵢ, ε²))^½ of the eigenvalues λ̂ of the empirical kernel
/// K(X, X)/n (a negative eigenvalue, from rounding, counts as 0).
pub fn kernel_complexity(lambda_n: &[f64], eps: f64) -> f64 {
    let e2 = eps * eps;
    let sum: f64 = lambda_n.iter().map(|&l| l.max(0.0).min(e2)).sum();
    (sum / lambda_n.len().max(1) as f64).sqrt()
}

/// The kernel-complexity stopping time of GD with step η on the empirical kernel (f ← f − η K̂ (f − y), K̂ = K/n
/// with eigenvalues `lambda_n`) for labels with noise level σ₀: T̂ = min{t ≥ 1 : R̂(1/√(ηt)) > 1/(σ₀ηt)} − 1
/// (Raskutti, Wainwright & Yu 2014; the constant as Yang, ICML 2025, eq. 8 writes it, for η λ̂_max < 1). The
/// condition, that σ₀R̂(ε)/ε² exceeds 1 at ε² = 1/(ηt), only turns on as t grows, so a bisection finds the first
/// t. `None` when it never does before 10¹⁸ steps (σ₀ = 0: labels without noise need no stop).
pub fn complexity_stopping_time(lambda_n: &[f64], eta: f64, sigma0: f64) -> Result<Option<u64>> {
    if !(eta > 0.0 && eta.is_finite() && sigma0 >= 0.0 && sigma0.is_finite()) {
        return Err(Error::invalid(format!(
            "stopping time: need eta > 0 and a finite noise level >= 0, got eta {eta}, sigma {sigma0}"
        )));
    }
    let stops = |t: u64| {
        let et = eta * t as f64;
        kernel_complexity(lambda_n, 1.0 / et.sqrt()) > 1.0 / (sigma0 * et)
    };
    const CAP: u64 = 1_000_000_000_000_000_000;
    if sigma0 == 0.0 || !stops(CAP) {
        return Ok(None);
    }
    // stops(hi), and not stops(lo) unless lo = 1.
    let (mut lo, mut hi) = (1u64, CAP);
    if stops(lo) {
        return Ok(Some(0));
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if stops(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(Some(hi - 1))
}

/// GD on the NTK in closed form.
pub struct KernelFlow {
    data: ScoreRegression,
    u: Mat<f64>,
    lambda: Vec<f64>,
    /// Uᵀ Y, `[n, dim]`.
    uty: Mat<f64>,
    eta: f64,
}

impl KernelFlow {
    /// The eigendecomposition of K(X, X) for step `eta`.
    pub fn new(data: ScoreRegression, eta: f64) -> Result<Self> {
        let (n, d) = (data.len(), data.dim);
        let k = gram(&data.x, &data.x, d);
        let evd = k
            .self_adjoint_eigen(Side::Lower)
            .map_err(|e| Error::invalid(format!("NTK eigendecomposition: {e:?}")))?;
        let u = evd.U().to_owned();
        let lambda: Vec<f64> = (0..n).map(|i| evd.S().column_vector()[i]).collect();
        let y = Mat::from_fn(n, d, |i, j| data.y[i * d + j]);
        let uty = u.transpose() * &y;
        Ok(KernelFlow {
            data,
            u,
            lambda,
            uty,
            eta,
        })
    }

    /// The largest eigenvalue of K(X, X).
    pub fn lambda_max(&self) -> f64 {
        self.lambda.last().copied().unwrap_or(0.0)
    }

    /// The eigenvalues of the empirical kernel K(X, X)/n.
    pub fn empirical_eigenvalues(&self) -> Vec<f64> {
        let n = self.data.len() as f64;
        self.lambda.iter().map(|l| l / n).collect()
    }

    /// f_k at the points `xq` (`[nq, dim]`) after `k` GD steps.
    pub fn predict(&self, k: f64, xq: &[f64]) -> Vec<f64> {
        let (n, d) = (self.data.len(), self.data.dim);
        let h = self.eta / n as f64;
        // (1 − (1 − hλ)^k)/λ, → k h as λ → 0; 1 − hλ may be 0 or negative (η up to 2n/λ_max).
        let g: Vec<f64> = self
            .lambda
            .iter()
            .map(|&l| {
                if l <= 1e-12 {
                    return k * h;
                }
                let base = 1.0 - h * l;
                let one_minus_pow = if k == 0.0 {
                    0.0
                } else if base > 0.0 {
                    -(k * (-h * l).ln_1p()).exp_m1()
                } else if base == 0.0 {
                    1.0
                } else {
                    let mag = (k * (-base).ln()).exp();
                    1.0 - if k % 2.0 == 0.0 { mag } else { -mag }
                };
                one_minus_pow / l
            })
            .collect();
        let coef = &self.u * Mat::from_fn(n, d, |i, j| g[i] * self.uty[(i, j)]);
        let kq = gram(xq, &self.data.x, d);
        let out = kq * coef;
        (0..xq.len() / d)
            .flat_map(|i| (0..d).map(move |j| (i, j)))
            .map(|(i, j)| out[(i, j)])
            .collect()
    }
}

/// The two-layer ReLU network of the module doc, trained by full-batch GD (f64).
pub struct TwoLayerRelu {
    w: Tensor,
    a: Tensor,
    width: usize,
}

impl TwoLayerRelu {
    /// Width `m` (even), inputs of dimension `dim`, seeded.
    pub fn new(width: usize, dim: usize, seed: u64) -> Result<Self> {
        if width < 2 || !width.is_multiple_of(2) {
            return Err(Error::invalid(format!(
                "two-layer network: width {width} must be even and at least 2"
            )));
        }
        crate::memory::check(
            "the two-layer network",
            width as f64 * (2 * dim + 1) as f64 * 8.0 * 4.0,
            "use a smaller width",
        )?;
        let mut rng = rng_for(seed, Stream::Init, 0);
        let half = width / 2;
        let w: Vec<f64> = (0..half * (dim + 1)).map(|_| normal(&mut rng)).collect();
        let a: Vec<f64> = (0..half * dim)
            .map(|_| if rng_bit(&mut rng) { 1.0 } else { -1.0 })
            .collect();
        let w = Tensor::from_vec([w.clone(), w].concat(), (width, dim + 1), &Device::Cpu)?;
        let a = Tensor::from_vec(
            [a.clone(), a.iter().map(|v| -v).collect()].concat(),
            (width, dim),
            &Device::Cpu,
        )?;
        Ok(TwoLayerRelu { w, a, width })
    }

    fn with_ones(x: &[f64], dim: usize) -> Result<Tensor> {
        let n = x.len() / dim;
        let v: Vec<f64> = x
            .chunks(dim)
            .flat_map(|r| r.iter().copied().chain([1.0]))
            .collect();
        Ok(Tensor::from_vec(v, (n, dim + 1), &Device::Cpu)?)
    }

    /// f(x) for the rows of `x`.
    pub fn predict(&self, x: &[f64]) -> Result<Vec<f64>> {
        let d = self.a.dims()[1];
        let z = Self::with_ones(x, d)?.matmul(&self.w.t()?)?;
        let f = (z.relu()?.matmul(&self.a)? / (self.width as f64).sqrt())?;
        Ok(f.flatten_all()?.to_vec1()?)
    }

    /// One GD step on (1/2n) Σ‖f(x_i) − y_i‖².
    pub fn gd_step(&mut self, x: &Tensor, y: &Tensor, eta: f64) -> Result<()> {
        let n = x.dims()[0] as f64;
        let sm = (self.width as f64).sqrt();
        let z = x.matmul(&self.w.t()?)?;
        let mask = z.gt(0.0)?.to_dtype(DType::F64)?;
        let r = ((z.relu()?.matmul(&self.a)? / sm)? - y)?;
        let back = (r.matmul(&self.a.t()?)? * mask)?;
        let grad = (back.t()?.matmul(x)? / (n * sm))?;
        self.w = (&self.w - (grad * eta)?)?;
        Ok(())
    }
}

fn rng_bit(rng: &mut Rng) -> bool {
    use rand::Rng as _;
    rng.gen::<bool>()
}

/// The P25 experiment's settings.
#[derive(Debug, Clone)]
pub struct NtkConfig {
    pub target: Mixture,
    pub process: Process,
    /// The diffusion time of the regression.
    pub time: f64,
    /// Training pairs.
    pub n: usize,
    pub widths: Vec<usize>,
    /// GD steps of the networks (the kernel predictor is also followed far beyond, to its interpolation limit).
    pub steps: u64,
    /// η = eta_factor · n / λ_max(K(X, X)).
    pub eta_factor: f64,
    /// Fresh points for the score error.
    pub test_points: usize,
    /// Held-out noisy pairs for the stopping time.
    pub holdout: usize,
    pub seed: u64,
}

/// Score error (and hold-out loss) along training of one predictor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Curve {
    /// "kernel" or "width m".
    pub name: String,
    pub steps: Vec<f64>,
    pub score_error: Vec<f64>,
    pub holdout: Vec<f64>,
    /// For networks: mean ‖f_net − f_kernel‖² over the test points, relative to mean ‖f_kernel‖².
    pub gap_to_kernel: Vec<f64>,
    /// The checkpoint of the smallest score error, and that error.
    pub best_step: f64,
    pub best_error: f64,
    /// The checkpoint of the smallest hold-out loss, and the score error there.
    pub stop_step: f64,
    pub stop_error: f64,
    /// The score error at the kernel-complexity stopping time ([`NtkReport::rule_step`]), evaluated there apart
    /// from the checkpoints of `steps`; `None` past this predictor's horizon or without a stop.
    pub rule_error: Option<f64>,
}

/// What [`run`] measures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NtkReport {
    pub time: f64,
    pub n: usize,
    pub eta: f64,
    pub lambda_max: f64,
    /// E‖y − ∇log p_t(x)‖² of the labels (the noise a predictor that interpolates them inherits).
    pub label_noise: f64,
    /// E‖∇log p_t‖² on the test points, for scale.
    pub score_norm2: f64,
    /// The labels' noise level per coordinate that the stopping rule takes, σ₀ = (label_noise/dim)^½: measured
    /// against the exact score, which this experiment knows (the rule assumes σ₀ known).
    pub noise_sd: f64,
    /// The kernel-complexity stopping time ([`complexity_stopping_time`]) in GD steps.
    pub rule_step: Option<f64>,
    pub curves: Vec<Curve>,
}

/// Checkpoints 0, 1, 2, 5, 10, 20, 50, ... up to `max`.
pub fn log_grid(max: f64) -> Vec<f64> {
    let mut v = vec![0.0];
    let mut decade = 1.0;
    while decade <= max {
        for m in [1.0, 2.0, 5.0] {
            if m * decade <= max {
                v.push(m * decade);
            }
        }
        decade *= 10.0;
    }
    v
}

fn mse(a: &[f64], b: &[f64], rows: usize) -> f64 {
    a.iter().zip(b).map(|(u, v)| (u - v).powi(2)).sum::<f64>() / rows as f64
}

/// `grid` with `step` in its place (when given and within the grid's horizon): the checkpoints a network visits,
/// the rule's step among them, while its curve keeps the grid's.
fn with_step(mut grid: Vec<f64>, step: Option<f64>) -> Vec<f64> {
    if let Some(t) = step {
        if t <= grid.last().copied().unwrap_or(0.0) && !grid.contains(&t) {
            let at = grid.partition_point(|&k| k < t);
            grid.insert(at, t);
        }
    }
    grid
}

fn finish(
    name: String,
    steps: Vec<f64>,
    score_error: Vec<f64>,
    holdout: Vec<f64>,
    gap: Vec<f64>,
    rule_error: Option<f64>,
) -> Curve {
    let argmin = |v: &[f64]| {
        v.iter()
            .enumerate()
            .fold(0, |b, (i, x)| if *x < v[b] { i } else { b })
    };
    let (b, s) = (argmin(&score_error), argmin(&holdout));
    Curve {
        rule_error,
        name,
        best_step: steps[b],
        best_error: score_error[b],
        stop_step: steps[s],
        stop_error: score_error[s],
        steps,
        score_error,
        holdout,
        gap_to_kernel: gap,
    }
}

/// The kernel predictor over a long horizon and each width's network over `steps` GD steps.
pub fn run(cfg: &NtkConfig, on_progress: &mut dyn FnMut(&str, u64, u64)) -> Result<NtkReport> {
    let bad_time = cfg.time.is_nan() || cfg.time <= 0.0 || cfg.time > 1.0;
    let bad_eta = cfg.eta_factor.is_nan() || cfg.eta_factor <= 0.0 || cfg.eta_factor >= 2.0;
    if bad_time || bad_eta || cfg.n < 2 || cfg.test_points == 0 || cfg.holdout == 0 {
        return Err(Error::invalid(
            "ntk: need 0 < time <= 1, n >= 2, test points and hold-out pairs >= 1 and 0 < eta_factor < 2",
        ));
    }
    // The n x n kernel, its eigenvectors and the test Gram matrix (n_test x n).
    crate::memory::check(
        "the NTK matrices",
        (3.0 * (cfg.n as f64).powi(2) + (cfg.test_points + cfg.holdout) as f64 * cfg.n as f64)
            * 8.0,
        "use a smaller --n or fewer test points",
    )?;
    let d = cfg.target.dim;
    let mut rng = rng_for(cfg.seed, Stream::Data, 0);
    let train = ScoreRegression::draw(&cfg.target, &cfg.process, cfg.time, cfg.n, &mut rng);
    let hold = ScoreRegression::draw(&cfg.target, &cfg.process, cfg.time, cfg.holdout, &mut rng);
    let test = ScoreRegression::draw(
        &cfg.target,
        &cfg.process,
        cfg.time,
        cfg.test_points,
        &mut rng,
    );
    let exact = cfg.target.score(&test.x, &cfg.process, cfg.time);
    let label_noise = mse(
        &cfg.target.score(&train.x, &cfg.process, cfg.time),
        &train.y,
        cfg.n,
    );
    if !label_noise.is_finite() {
        return Err(Error::NonFinite(format!(
            "ntk: the labels -eps/sigma overflow at time {:e} (sigma {:e}); use a larger time",
            cfg.time,
            cfg.process.sigma(cfg.time)
        )));
    }
    let score_norm2 = exact.iter().map(|v| v * v).sum::<f64>() / cfg.test_points as f64;
    let mut flow = KernelFlow::new(train.clone(), 1.0)?;
    let eta = cfg.eta_factor * cfg.n as f64 / flow.lambda_max();
    flow.eta = eta;
    let noise_sd = (label_noise / d as f64).sqrt();
    let rule =
        complexity_stopping_time(&flow.empirical_eigenvalues(), eta, noise_sd)?.map(|t| t as f64);
    let (nt, nh) = (cfg.test_points, hold.len());
    // The kernel far past the networks' horizon, to its interpolation limit.
    let long = log_grid((cfg.steps as f64).max(1.0) * 1e6);
    let mut curves = Vec::new();
    let (mut se, mut ho) = (Vec::new(), Vec::new());
    for &k in &long {
        se.push(mse(&flow.predict(k, &test.x), &exact, nt));
        ho.push(mse(&flow.predict(k, &hold.x), &hold.y, nh));
    }
    let kernel_rule = rule.map(|t| mse(&flow.predict(t, &test.x), &exact, nt));
    curves.push(finish(
        "kernel".into(),
        long,
        se,
        ho,
        Vec::new(),
        kernel_rule,
    ));
    let grid = log_grid(cfg.steps as f64);
    let kernel_at: Vec<Vec<f64>> = grid.iter().map(|&k| flow.predict(k, &test.x)).collect();
    let x = TwoLayerRelu::with_ones(&train.x, d)?;
    let y = Tensor::from_slice(&train.y, (cfg.n, d), &Device::Cpu)?;
    for &m in &cfg.widths {
        let mut net = TwoLayerRelu::new(m, d, cfg.seed)?;
        let (mut se, mut ho, mut gap) = (Vec::new(), Vec::new(), Vec::new());
        let (mut done, mut rule_error, mut g) = (0u64, None, 0);
        for k in with_step(grid.clone(), rule) {
            while (done as f64) < k {
                net.gd_step(&x, &y, eta)?;
                done += 1;
                if done.is_multiple_of(100) {
                    on_progress(&format!("width {m}"), done, cfg.steps);
                }
            }
            let f = net.predict(&test.x)?;
            if f.iter().any(|v| !v.is_finite()) {
                return Err(Error::NonFinite(format!(
                    "ntk: the width-{m} network diverged at step {done}; lower eta_factor"
                )));
            }
            if rule == Some(k) {
                rule_error = Some(mse(&f, &exact, nt));
            }
            // The rule's own step, when it is not a checkpoint, stays out of the curve.
            if grid.get(g) != Some(&k) {
                continue;
            }
            se.push(mse(&f, &exact, nt));
            ho.push(mse(&net.predict(&hold.x)?, &hold.y, nh));
            let kn = &kernel_at[g];
            let norm = kn.iter().map(|v| v * v).sum::<f64>();
            gap.push(if norm > 0.0 {
                mse(&f, kn, 1) / norm
            } else {
                mse(&f, kn, nt)
            });
            g += 1;
        }
        curves.push(finish(
            format!("width {m}"),
            grid.clone(),
            se,
            ho,
            gap,
            rule_error,
        ));
    }
    Ok(NtkReport {
        time: cfg.time,
        n: cfg.n,
        eta,
        lambda_max: flow.lambda_max(),
        label_noise,
        score_norm2,
        noise_sd,
        rule_step: rule,
        curves,
    })
}
