//! AdaSketch-Newton (P19): an SQP method for min f(x) s.t. c(x) = 0 whose Newton–KKT system
//! [[B, Gᵀ], [G, 0]] (Δx; Δλ) = −(∇ₓL; c) is solved inexactly by randomized sketching, globalized by the exact
//! augmented Lagrangian L_η = f + λᵀc + η₁/2 ‖c‖² + η₂/2 ‖∇ₓL‖² with adaptive penalties (official code:
//! IlgeeHong/AdaSketch-Newton, `AdaSketchNewtonRK.jl` / `AdaSketchNewtonGV.jl`).
//!
//! Per iteration, as in the official code:
//! 1. ξ_G = λ_min(GGᵀ); below 1e-2 the Jacobian counts as rank deficient and the run stops (`Singular`).
//! 2. B = H = ∇²ₓL, or H + (ξ_B + ‖H‖_F) I when the reduced Hessian ZᵀHZ (Z spans null G) has an eigenvalue below
//!    `reduced_hessian_tol`.
//! 3. ψ = 20 max(‖B‖², 1)/(min(ξ_G, 1) min(ξ_B, 1)), Υ = max(‖G‖, ‖H‖, 1) (Frobenius norms), and the accuracy
//!    δ = max(min(δ, δ_trial), 1e-6) with δ_trial = (½ − β) η₂ / ((1 + η₁ + η₂) Υ² ψ²).
//! 4. Sketch steps from z = 0 until ‖K‖ ψ ‖r‖ ≤ δ ‖b‖ (K the KKT matrix, b the right-hand side).
//! 5. While the direction is not a sufficient descent direction of L_η (∇L_ηᵀz > −η₂/2 ‖b‖²): η₁ ← ν²η₁, η₂ ← η₂/ν,
//!    δ ← max(min(δ/ν⁴, δ_trial), 1e-6), and more sketch steps from the current z (unless η₁ > 1e8 or η₂ < 1e-8).
//! 6. Armijo backtracking on L_η (halving from α = 1): L_η(x + αΔx, λ + αΔλ) ≤ L_η + αβ ∇L_ηᵀz.
//!
//! With `hessian=products` (or a problem that gives only Hessian-vector products) the same iteration runs
//! matrix-free ([`super::operator`]): K is applied by products, the Frobenius norms come from n unit products
//! or Hutchinson's estimator and the reduced Hessian's smallest eigenvalue from Lanczos.
//!
//! Departures, each a defect of the reference code rather than of the method:
//! - ∇L_η's x-part uses ∇²ₓL (the paper's gradient of the merit); the official code uses ∇²f, which drops
//!   Σλᵢ∇²cᵢ.
//! - The sketch starts from r = Kz − b = −b; the official code starts from +b (a sign slip on the first step).
//! - Backtracking stops at α < 1e-12 with `LineSearchFailed`; the official loop has no floor.

use super::operator::{self, KktOperator, OperatorSketch};
use super::sketch::{Iterate, Sketch, SketchSolver};
use super::{dot, jac_mul, jac_t_mul, lagrangian_gradient, Nlp};
use crate::rng::{rng_for, Stream};
use crate::{Error, Result};
use faer::{Mat, Side};
use std::time::Instant;

/// Settings; the defaults are the official code's (`Param.jl`).
#[derive(Debug, Clone)]
pub struct AdaSketchConfig {
    pub sketch: Sketch,
    /// Outer iterations.
    pub max_iter: usize,
    /// Stop at ‖(∇ₓL; c)‖₂ ≤ tol.
    pub tol: f64,
    /// Initial penalties η₁ (on ‖c‖²) and η₂ (on ‖∇ₓL‖²).
    pub eta1: f64,
    pub eta2: f64,
    /// Initial sketch accuracy δ.
    pub delta: f64,
    /// Hessian modification shift ξ_B.
    pub xi_b: f64,
    /// Armijo constant.
    pub beta: f64,
    /// Penalty growth factor ν.
    pub nu: f64,
    /// Sketch steps allowed per solve (after which the inexact direction is used as it is).
    pub max_sketch_steps: usize,
    /// The reduced Hessian counts as positive definite above this eigenvalue.
    pub reduced_hessian_tol: f64,
    pub seed: u64,
    /// How the Hessian of the Lagrangian is used: dense, as products (matrix-free), or as the problem gives it.
    pub hessian: HessianUse,
}

/// Dense Hessian and KKT matrix, or the matrix-free variant ([`super::operator`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HessianUse {
    /// Products when the problem gives only products ([`Nlp::products_only`]), the dense matrix otherwise.
    Auto,
    Dense,
    Products,
}

impl HessianUse {
    fn name(self) -> &'static str {
        match self {
            HessianUse::Auto => "auto",
            HessianUse::Dense => "dense",
            HessianUse::Products => "products",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "auto" => HessianUse::Auto,
            "dense" => HessianUse::Dense,
            "products" | "hvp" => HessianUse::Products,
            other => {
                return Err(Error::invalid(format!(
                    "adasketch: hessian '{other}': use auto, dense or products"
                )))
            }
        })
    }

    /// Whether a run on `nlp` is matrix-free.
    pub fn matrix_free(self, nlp: &dyn Nlp) -> bool {
        match self {
            HessianUse::Auto => nlp.products_only(),
            HessianUse::Dense => false,
            HessianUse::Products => true,
        }
    }
}

impl Default for AdaSketchConfig {
    fn default() -> Self {
        AdaSketchConfig {
            sketch: Sketch::Kaczmarz,
            max_iter: 10_000,
            tol: 1e-4,
            eta1: 1.0,
            eta2: 0.1,
            delta: 0.1,
            xi_b: 0.1,
            beta: 0.1,
            nu: 1.5,
            max_sketch_steps: 100_000,
            reduced_hessian_tol: 1e-6,
            seed: 0,
            hessian: HessianUse::Auto,
        }
    }
}

impl std::str::FromStr for AdaSketchConfig {
    type Err = Error;
    /// `adasketch[:sketch=kaczmarz|gaussian|blockK|exact,max_iter,tol,eta1,eta2,delta,xi_b,beta,nu,max_sketch_steps,
    /// reduced_hessian_tol,seed,hessian=auto|dense|products]`, or `newton[:...]` for the deterministic variant (an exact KKT solve).
    fn from_str(s: &str) -> Result<Self> {
        let mut spec = crate::Spec::parse(s)?;
        let d = AdaSketchConfig::default();
        let sketch = match spec.name.as_str() {
            "adasketch" => spec.string("sketch", &d.sketch.to_string()).parse()?,
            "newton" => Sketch::Exact,
            other => {
                return Err(crate::spec::unknown_name(
                    "constrained method",
                    other,
                    &["adasketch", "newton"],
                ))
            }
        };
        let c = AdaSketchConfig {
            sketch,
            max_iter: spec.usize("max_iter", d.max_iter)?,
            tol: spec.f64("tol", d.tol)?,
            eta1: spec.f64("eta1", d.eta1)?,
            eta2: spec.f64("eta2", d.eta2)?,
            delta: spec.f64("delta", d.delta)?,
            xi_b: spec.f64("xi_b", d.xi_b)?,
            beta: spec.f64("beta", d.beta)?,
            nu: spec.f64("nu", d.nu)?,
            max_sketch_steps: spec.usize("max_sketch_steps", d.max_sketch_steps)?,
            reduced_hessian_tol: spec.f64("reduced_hessian_tol", d.reduced_hessian_tol)?,
            seed: spec.usize("seed", d.seed as usize)? as u64,
            hessian: HessianUse::parse(&spec.string("hessian", d.hessian.name()))?,
        };
        spec.finish()?;
        c.validate()?;
        Ok(c)
    }
}

impl std::fmt::Display for AdaSketchConfig {
    /// The canonical spec (every setting), which parses back to the same configuration.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "adasketch:sketch={},max_iter={},tol={:e},eta1={},eta2={},delta={},xi_b={},beta={},nu={},max_sketch_steps={},reduced_hessian_tol={:e},seed={},hessian={}",
            self.sketch,
            self.max_iter,
            self.tol,
            self.eta1,
            self.eta2,
            self.delta,
            self.xi_b,
            self.beta,
            self.nu,
            self.max_sketch_steps,
            self.reduced_hessian_tol,
            self.seed,
            self.hessian.name()
        )
    }
}

impl AdaSketchConfig {
    /// Refuses settings the method cannot honour.
    pub fn validate(&self) -> Result<()> {
        let pos = |v: f64| v > 0.0 && v.is_finite();
        if !(pos(self.tol)
            && pos(self.eta1)
            && pos(self.eta2)
            && pos(self.delta)
            && pos(self.xi_b)
            && self.beta > 0.0
            && self.beta < 0.5
            && self.nu > 1.0
            && self.nu.is_finite()
            && self.max_iter >= 1
            && self.max_sketch_steps >= 1
            && self.reduced_hessian_tol.is_finite())
        {
            return Err(Error::invalid(format!(
                "adasketch: tol, eta1, eta2, delta and xi_b must be positive, 0 < beta < 0.5, nu > 1, max_iter and \
                 max_sketch_steps at least 1 (got {self})"
            )));
        }
        if self.sketch == Sketch::Exact && self.hessian == HessianUse::Products {
            return Err(Error::invalid(
                "adasketch: the exact variant forms the KKT matrix; a matrix-free run (hessian=products) needs a sketch",
            ));
        }
        if let Sketch::Block(0) = self.sketch {
            return Err(Error::invalid(
                "adasketch: a block sketch needs at least one column",
            ));
        }
        Ok(())
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Converged,
    IterationLimit,
    /// λ_min(GGᵀ) < 1e-2: the constraint Jacobian is (nearly) rank deficient.
    Singular,
    /// No step of the backtracking reduced the merit function.
    LineSearchFailed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Converged => "converged",
            Status::IterationLimit => "iteration limit",
            Status::Singular => "singular constraint Jacobian",
            Status::LineSearchFailed => "line search failed",
        }
    }
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub x: Vec<f64>,
    pub lambda: Vec<f64>,
    pub objective: f64,
    /// ‖(∇ₓL; c)‖₂ at the end.
    pub kkt: f64,
    /// ‖c‖₂ at the end.
    pub infeasibility: f64,
    pub status: Status,
    pub iterations: usize,
    /// Sketch steps over the whole run.
    pub sketch_steps: usize,
    /// Whether the run was matrix-free, and its Hessian-vector products (0 for a dense run).
    pub matrix_free: bool,
    pub hessian_products: usize,
    /// The KKT residual before each iteration and at the end.
    pub kkt_history: Vec<f64>,
    /// Final penalties.
    pub eta1: f64,
    pub eta2: f64,
    pub seconds: f64,
}

impl Outcome {
    pub fn converged(&self) -> bool {
        self.status == Status::Converged
    }
}

/// Everything the method needs at one primal-dual point.
struct Point {
    x: Vec<f64>,
    lambda: Vec<f64>,
    f: f64,
    c: Vec<f64>,
    jac: Mat<f64>,
    /// ∇ₓL = ∇f + Gᵀλ.
    gl: Vec<f64>,
}

impl Point {
    fn at(nlp: &dyn Nlp, x: Vec<f64>, lambda: Vec<f64>) -> Result<Self> {
        let f = nlp.objective(&x)?;
        let g = nlp.gradient(&x)?;
        let c = nlp.constraints(&x)?;
        let jac = nlp.jacobian(&x)?;
        if g.len() != x.len()
            || c.len() != lambda.len()
            || jac.nrows() != c.len()
            || jac.ncols() != x.len()
        {
            return Err(Error::Shape(format!(
                "{}: the derivatives do not fit n = {}, m = {} (gradient {}, constraints {}, Jacobian {}×{})",
                nlp.name(),
                x.len(),
                lambda.len(),
                g.len(),
                c.len(),
                jac.nrows(),
                jac.ncols()
            )));
        }
        let gl = lagrangian_gradient(&g, &jac, &lambda);
        Ok(Point {
            x,
            lambda,
            f,
            c,
            jac,
            gl,
        })
    }

    fn kkt(&self) -> f64 {
        (dot(&self.gl, &self.gl) + dot(&self.c, &self.c)).sqrt()
    }

    /// L_η = f + λᵀc + η₁/2 ‖c‖² + η₂/2 ‖∇ₓL‖².
    fn merit(&self, eta1: f64, eta2: f64) -> f64 {
        self.f
            + dot(&self.lambda, &self.c)
            + 0.5 * eta1 * dot(&self.c, &self.c)
            + 0.5 * eta2 * dot(&self.gl, &self.gl)
    }

    fn finite(&self) -> bool {
        self.f.is_finite() && self.c.iter().chain(&self.gl).all(|v| v.is_finite())
    }
}

fn smallest_eigenvalue(m: &Mat<f64>) -> Result<f64> {
    if m.nrows() == 0 {
        return Ok(f64::INFINITY);
    }
    let sym = Mat::from_fn(m.nrows(), m.ncols(), |i, j| 0.5 * (m[(i, j)] + m[(j, i)]));
    let ev = sym
        .self_adjoint_eigenvalues(Side::Lower)
        .map_err(|e| Error::invalid(format!("eigenvalues: {e:?}")))?;
    Ok(ev[0])
}

/// B: H, or H + (ξ_B + ‖H‖_F) I when the reduced Hessian on null(G) is not positive definite enough.
fn modified_hessian(h: &Mat<f64>, jac: &Mat<f64>, cfg: &AdaSketchConfig) -> Result<Mat<f64>> {
    let (m, n) = (jac.nrows(), jac.ncols());
    if m >= n {
        return Ok(h.clone());
    }
    let reduced = if m == 0 {
        h.clone()
    } else {
        let q = jac.transpose().to_owned().qr().compute_Q();
        let z = q.subcols(m, n - m).to_owned();
        z.transpose() * h * &z
    };
    let shift = hessian_shift(
        smallest_eigenvalue(&reduced)?,
        h.norm_l2(),
        cfg.xi_b,
        cfg.reduced_hessian_tol,
    );
    Ok(Mat::from_fn(n, n, |i, j| {
        h[(i, j)] + if i == j { shift } else { 0.0 }
    }))
}

/// The Hessian modification: none when the reduced Hessian's smallest eigenvalue reaches `tol`, otherwise the shift
/// ξ_B + ‖H‖_F (as the official code).
pub(crate) fn hessian_shift(reduced_min: f64, h_norm: f64, xi_b: f64, tol: f64) -> f64 {
    if reduced_min >= tol {
        0.0
    } else {
        xi_b + h_norm
    }
}

/// The sketch solver of one iteration: on the dense KKT matrix or on the operator.
enum KktSolver<'a, 'b> {
    Dense(SketchSolver<'a>),
    Free(OperatorSketch<'a, 'b>),
}

impl KktSolver<'_, '_> {
    fn start(&self) -> Iterate {
        match self {
            KktSolver::Dense(s) => s.start(),
            KktSolver::Free(s) => s.start(),
        }
    }

    fn run(
        &self,
        it: &mut Iterate,
        stop: f64,
        max_steps: usize,
        rng: &mut crate::rng::Rng,
    ) -> Result<usize> {
        match self {
            KktSolver::Dense(s) => s.run(it, stop, max_steps, rng),
            KktSolver::Free(s) => s.run(it, stop, max_steps, rng),
        }
    }
}

/// Runs AdaSketch-Newton from the problem's starting point.
pub fn solve(nlp: &dyn Nlp, cfg: &AdaSketchConfig) -> Result<Outcome> {
    solve_from(nlp, nlp.x0(), nlp.lambda0(), cfg)
}

/// Runs AdaSketch-Newton from (x₀, λ₀).
pub fn solve_from(
    nlp: &dyn Nlp,
    x0: Vec<f64>,
    lambda0: Vec<f64>,
    cfg: &AdaSketchConfig,
) -> Result<Outcome> {
    cfg.validate()?;
    let (n, m) = (nlp.n(), nlp.m());
    if x0.len() != n || lambda0.len() != m {
        return Err(Error::Shape(format!(
            "{}: start has {} variables and {} multipliers, the problem {n} and {m}",
            nlp.name(),
            x0.len(),
            lambda0.len()
        )));
    }
    let matrix_free = cfg.hessian.matrix_free(nlp);
    if matrix_free && cfg.sketch == Sketch::Exact {
        return Err(Error::invalid(format!(
            "{}: its Hessian comes as products only; the exact variant needs the matrix (use a sketch)",
            nlp.name()
        )));
    }
    if !matrix_free {
        let (n, k) = (n as f64, (n + m) as f64);
        crate::memory::check(
            &format!("{}: the dense Newton–KKT system", nlp.name()),
            8.0 * (4.0 * k * k + 2.0 * n * n),
            "use adasketch:hessian=products (matrix-free)",
        )?;
    }
    let start = Instant::now();
    let mut rng = rng_for(cfg.seed, Stream::Solver, 0);
    // Hutchinson probes and Lanczos starts of a matrix-free run, apart from the sketches' stream.
    let mut probe_rng = rng_for(cfg.seed, Stream::Probe, 19);
    let mut hessian_products = 0;
    let mut p = Point::at(nlp, x0, lambda0)?;
    if !p.finite() {
        return Err(Error::NonFinite(format!(
            "{}: the objective, constraints or gradient are not finite at the starting point",
            nlp.name()
        )));
    }
    let (mut eta1, mut eta2, mut delta) = (cfg.eta1, cfg.eta2, cfg.delta);
    let mut history = vec![p.kkt()];
    let mut sketch_steps = 0;
    let mut status = Status::IterationLimit;
    let mut iterations = 0;
    while iterations < cfg.max_iter {
        if p.kkt() <= cfg.tol {
            status = Status::Converged;
            break;
        }
        let ggt = &p.jac * p.jac.transpose();
        let xi_g = if m == 0 {
            1.0
        } else {
            smallest_eigenvalue(&ggt)?
        };
        if xi_g < 1e-2 {
            status = Status::Singular;
            break;
        }
        // The Newton–KKT system K (Δx; Δλ) = −(∇ₓL; c), K dense or an operator, with ‖H‖_F, ‖B‖_F, ‖K‖_F and H∇ₓL.
        let rhs: Vec<f64> = p.gl.iter().chain(&p.c).map(|v| -v).collect();
        let (kkt_mat, mut op);
        let (h_norm, b_norm, k_norm, h_gl, solver) = if matrix_free {
            op = KktOperator::new(nlp, &p.x, &p.lambda, &p.jac);
            let k = operator::prepare(
                &mut op,
                &ggt,
                cfg.xi_b,
                cfg.reduced_hessian_tol,
                &mut probe_rng,
            )?;
            let h_gl = op.hvp(&p.gl)?;
            let solver = KktSolver::Free(OperatorSketch::new(&op, &rhs, cfg.sketch)?);
            (k.h_norm, k.b_norm, k.k_norm, h_gl, solver)
        } else {
            let h = nlp.lagrangian_hessian(&p.x, &p.lambda)?;
            if h.nrows() != n || h.ncols() != n {
                return Err(Error::Shape(format!(
                    "{}: the Hessian of the Lagrangian is {}×{}, not {n}×{n}",
                    nlp.name(),
                    h.nrows(),
                    h.ncols()
                )));
            }
            let b_mat = modified_hessian(&h, &p.jac, cfg)?;
            kkt_mat = Mat::from_fn(n + m, n + m, |i, j| match (i < n, j < n) {
                (true, true) => b_mat[(i, j)],
                (true, false) => p.jac[(j - n, i)],
                (false, true) => p.jac[(i - n, j)],
                (false, false) => 0.0,
            });
            let h_gl: Vec<f64> = (0..n)
                .map(|i| (0..n).map(|j| h[(i, j)] * p.gl[j]).sum())
                .collect();
            let solver = KktSolver::Dense(SketchSolver::new(&kkt_mat, &rhs, cfg.sketch)?);
            (
                h.norm_l2(),
                b_mat.norm_l2(),
                kkt_mat.norm_l2(),
                h_gl,
                solver,
            )
        };
        let psi = 20.0 * b_norm.powi(2).max(1.0) / (xi_g.min(1.0) * cfg.xi_b.min(1.0));
        let upsilon = p.jac.norm_l2().max(h_norm).max(1.0);
        let delta_trial = |e1: f64, e2: f64| {
            (0.5 - cfg.beta) * e2 / ((1.0 + e1 + e2) * upsilon.powi(2) * psi.powi(2))
        };
        delta = delta.min(delta_trial(eta1, eta2)).max(1e-6);
        let rhs_norm = dot(&rhs, &rhs).sqrt();
        let mut it: Iterate = solver.start();
        // ∇L_η: x-part ∇ₓL + η₂ H ∇ₓL + η₁ Gᵀc, λ-part c + η₂ G ∇ₓL.
        let gt_c = jac_t_mul(&p.jac, &p.c);
        let g_gl = jac_mul(&p.jac, &p.gl);
        let slope = |z: &[f64], e1: f64, e2: f64| -> f64 {
            let dx: f64 = (0..n)
                .map(|j| (p.gl[j] + e2 * h_gl[j] + e1 * gt_c[j]) * z[j])
                .sum();
            let dl: f64 = (0..m).map(|i| (p.c[i] + e2 * g_gl[i]) * z[n + i]).sum();
            dx + dl
        };
        let d = loop {
            let stop = delta * rhs_norm / (k_norm * psi);
            sketch_steps += solver.run(&mut it, stop, cfg.max_sketch_steps, &mut rng)?;
            let d = slope(&it.z, eta1, eta2);
            if eta1 > 1e8 || eta2 < 1e-8 || d <= -0.5 * eta2 * rhs_norm * rhs_norm {
                break d;
            }
            eta1 *= cfg.nu * cfg.nu;
            eta2 /= cfg.nu;
            delta = (delta / cfg.nu.powi(4))
                .min(delta_trial(eta1, eta2))
                .max(1e-6);
        };
        if let KktSolver::Free(f) = &solver {
            hessian_products += f.products();
        }
        // Armijo backtracking on L_η.
        let merit0 = p.merit(eta1, eta2);
        let mut alpha = 1.0;
        let next = loop {
            let x: Vec<f64> = (0..n).map(|j| p.x[j] + alpha * it.z[j]).collect();
            let lambda: Vec<f64> = (0..m).map(|i| p.lambda[i] + alpha * it.z[n + i]).collect();
            let trial = Point::at(nlp, x, lambda)?;
            if trial.finite() && trial.merit(eta1, eta2) <= merit0 + alpha * cfg.beta * d {
                break Some(trial);
            }
            alpha *= 0.5;
            if alpha < 1e-12 {
                break None;
            }
        };
        iterations += 1;
        match next {
            Some(q) => p = q,
            None => {
                status = Status::LineSearchFailed;
                break;
            }
        }
        history.push(p.kkt());
    }
    if status == Status::IterationLimit && p.kkt() <= cfg.tol {
        status = Status::Converged;
    }
    Ok(Outcome {
        objective: p.f,
        kkt: p.kkt(),
        infeasibility: dot(&p.c, &p.c).sqrt(),
        x: p.x,
        lambda: p.lambda,
        status,
        iterations,
        sketch_steps,
        matrix_free,
        hessian_products,
        kkt_history: history,
        eta1,
        eta2,
        seconds: start.elapsed().as_secs_f64(),
    })
}
