//! Linear solvers for A x = b (P10's `linear_solve`): matrix-free conjugate gradients (CG, for symmetric
//! positive-definite A), CG on the normal equations (any nonsingular A; the default of implicit differentiation),
//! restarted GMRES and BiCGSTAB (non-symmetric A), and dense LU (partial pivoting) or Cholesky for small systems, which
//! materialise A column by column. Each works in f32 or f64 (inner products accumulate in f64), takes an optional
//! ridge (solving (A + ridge·I) x = b), and stops at a relative residual ‖b − A x‖/‖b‖ ≤ `tol`; a solve that does not
//! get there within `max_iter` is an error naming the residual reached, never a silently wrong answer.
//!
//! ```
//! use optlab::implicit::linear::{solve, DenseMatrix, Solver, SolveOptions};
//! let a = DenseMatrix::new(2, vec![4.0f64, 1.0, 1.0, 3.0]).unwrap();
//! let x = solve(&a, &[1.0, 2.0], &SolveOptions { solver: Solver::Cg, ..Default::default() }).unwrap().x;
//! assert!((4.0 * x[0] + x[1] - 1.0).abs() < 1e-9 && (x[0] + 3.0 * x[1] - 2.0).abs() < 1e-9);
//! ```

use crate::optim::kernel::Real;
use crate::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// A linear map given by its products: A·v and Aᵀ·v.
pub trait LinearOperator<T: Real> {
    /// The dimension n (A is n × n).
    fn dim(&self) -> usize;
    /// A·v.
    fn matvec(&self, v: &[T]) -> Result<Vec<T>>;
    /// Aᵀ·v (needed by normal-equation CG only).
    fn rmatvec(&self, v: &[T]) -> Result<Vec<T>>;
}

/// A dense row-major n × n matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseMatrix<T> {
    n: usize,
    a: Vec<T>,
}

impl<T: Real> DenseMatrix<T> {
    /// The matrix of row-major `a` (n² values).
    pub fn new(n: usize, a: Vec<T>) -> Result<Self> {
        if a.len() != n * n {
            return Err(Error::Shape(format!(
                "a {n} x {n} matrix needs {} values, got {}",
                n * n,
                a.len()
            )));
        }
        Ok(DenseMatrix { n, a })
    }

    /// The entry (i, j).
    pub fn get(&self, i: usize, j: usize) -> T {
        self.a[i * self.n + j]
    }
}

impl<T: Real> LinearOperator<T> for DenseMatrix<T> {
    fn dim(&self) -> usize {
        self.n
    }
    fn matvec(&self, v: &[T]) -> Result<Vec<T>> {
        Ok((0..self.n)
            .map(|i| T::of(dot(&self.a[i * self.n..(i + 1) * self.n], v)))
            .collect())
    }
    fn rmatvec(&self, v: &[T]) -> Result<Vec<T>> {
        let mut out = vec![0.0f64; self.n];
        for (i, &vi) in v.iter().enumerate() {
            for (o, &aij) in out.iter_mut().zip(&self.a[i * self.n..(i + 1) * self.n]) {
                *o += aij.to64() * vi.to64();
            }
        }
        Ok(out.into_iter().map(T::of).collect())
    }
}

/// Which solver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Solver {
    /// Conjugate gradients: A symmetric positive definite.
    Cg,
    /// CG on AᵀA x = Aᵀb: any nonsingular A (jaxopt's default for implicit differentiation).
    #[default]
    NormalCg,
    /// GMRES restarted every `restart` iterations.
    Gmres { restart: usize },
    /// BiCGSTAB.
    Bicgstab,
    /// Dense LU with partial pivoting (A materialised by n products).
    Lu,
    /// Dense Cholesky (A symmetric positive definite, materialised).
    Cholesky,
}

impl FromStr for Solver {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "cg" => Solver::Cg,
            "normal-cg" | "normal_cg" => Solver::NormalCg,
            "gmres" => Solver::Gmres { restart: 30 },
            "bicgstab" => Solver::Bicgstab,
            "lu" => Solver::Lu,
            "cholesky" => Solver::Cholesky,
            other => {
                return Err(crate::spec::unknown_name(
                    "linear solver",
                    other,
                    &["normal-cg", "cg", "gmres", "bicgstab", "lu", "cholesky"],
                ))
            }
        })
    }
}

impl fmt::Display for Solver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Solver::Cg => "cg",
            Solver::NormalCg => "normal-cg",
            Solver::Gmres { .. } => "gmres",
            Solver::Bicgstab => "bicgstab",
            Solver::Lu => "lu",
            Solver::Cholesky => "cholesky",
        })
    }
}

/// How to solve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SolveOptions {
    pub solver: Solver,
    /// Stop at ‖b − A x‖ ≤ tol·‖b‖.
    pub tol: f64,
    /// Iteration limit (matrix-vector products for the iterative solvers).
    pub max_iter: usize,
    /// Solve (A + ridge·I) x = b instead.
    pub ridge: f64,
    /// Measure the true residual with one more product once the solver stops, and refuse a solution above 10·tol
    /// (the default). Off, the solver's own residual (its recurrence) decides, as in jaxopt and scipy: one product
    /// fewer per solve, but the drift of that recurrence from the true residual, which rounding causes at
    /// tolerances near machine precision or in f32, goes unseen.
    pub verify: bool,
}

impl Default for SolveOptions {
    fn default() -> Self {
        SolveOptions {
            solver: Solver::NormalCg,
            tol: 1e-10,
            max_iter: 1000,
            ridge: 0.0,
            verify: true,
        }
    }
}

/// A solution and how it was reached.
#[derive(Debug, Clone, PartialEq)]
pub struct Solution<T> {
    pub x: Vec<T>,
    /// Iterations (products with A) used.
    pub iterations: usize,
    /// ‖b − A x‖/‖b‖ at the end (with the ridge); NaN when the solve was not verified.
    pub residual: f64,
}

fn dot<T: Real>(a: &[T], b: &[T]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x.to64() * y.to64()).sum()
}

fn norm<T: Real>(a: &[T]) -> f64 {
    dot(a, a).sqrt()
}

/// y ← y + α·x.
fn axpy<T: Real>(alpha: f64, x: &[T], y: &mut [T]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi = T::of(yi.to64() + alpha * xi.to64());
    }
}

/// (A + ridge·I)·v.
fn apply<T: Real>(op: &dyn LinearOperator<T>, v: &[T], ridge: f64) -> Result<Vec<T>> {
    let mut out = op.matvec(v)?;
    if out.len() != v.len() {
        return Err(Error::Shape(format!(
            "the operator returned {} values for a vector of {}",
            out.len(),
            v.len()
        )));
    }
    if ridge != 0.0 {
        axpy(ridge, v, &mut out);
    }
    Ok(out)
}

/// (A + ridge·I)ᵀ·v.
fn apply_t<T: Real>(op: &dyn LinearOperator<T>, v: &[T], ridge: f64) -> Result<Vec<T>> {
    let mut out = op.rmatvec(v)?;
    if ridge != 0.0 {
        axpy(ridge, v, &mut out);
    }
    Ok(out)
}

/// Solves (A + ridge·I) x = b; see the module docs.
pub fn solve<T: Real>(
    op: &dyn LinearOperator<T>,
    b: &[T],
    opts: &SolveOptions,
) -> Result<Solution<T>> {
    let sol = solve_unverified(op, b, opts)?;
    if !opts.verify {
        return Ok(sol);
    }
    let ax = op.matvec(&sol.x)?;
    verify(sol, b, &ax, opts)
}

/// The solve without its final check: `residual` is NaN until [`verify`] measures it (from a product A·x the caller
/// may get as a by-product of work it does anyway).
pub(crate) fn solve_unverified<T: Real>(
    op: &dyn LinearOperator<T>,
    b: &[T],
    opts: &SolveOptions,
) -> Result<Solution<T>> {
    let n = op.dim();
    if b.len() != n {
        return Err(Error::Shape(format!(
            "the right-hand side has {} values, the operator's dimension is {n}",
            b.len()
        )));
    }
    if !(opts.tol > 0.0 && opts.tol.is_finite() && opts.ridge.is_finite()) || opts.max_iter == 0 {
        return Err(Error::invalid(format!(
            "linear solve: tol={} must be positive, ridge={} finite and max_iter={} at least 1",
            opts.tol, opts.ridge, opts.max_iter
        )));
    }
    if let Some(v) = b.iter().find(|v| !v.to64().is_finite()) {
        return Err(Error::NonFinite(format!(
            "linear solve: the right-hand side holds {v:?}"
        )));
    }
    let bn = norm(b);
    if bn == 0.0 {
        return Ok(Solution {
            x: vec![T::zero(); n],
            iterations: 0,
            residual: f64::NAN,
        });
    }
    let (x, iterations) = match opts.solver {
        Solver::Cg => cg(op, b, opts, bn)?,
        Solver::NormalCg => normal_cg(op, b, opts, bn)?,
        Solver::Gmres { restart } => gmres(op, b, opts, bn, restart.max(1))?,
        Solver::Bicgstab => bicgstab(op, b, opts, bn)?,
        Solver::Lu => (dense(op, opts.ridge)?.lu_solve(b)?, n),
        Solver::Cholesky => (dense(op, opts.ridge)?.cholesky_solve(b)?, n),
    };
    Ok(Solution {
        x,
        iterations,
        residual: f64::NAN,
    })
}

/// [`solve_unverified`] started from `x0` (a warm start, e.g. the solution of a nearby system): solves
/// A δ = b − A x0 to the same absolute residual tol·‖b‖ and returns x0 + δ. One product more than a cold start; `x0`
/// already within tolerance costs that product only.
pub(crate) fn solve_unverified_from<T: Real>(
    op: &dyn LinearOperator<T>,
    b: &[T],
    x0: &[T],
    opts: &SolveOptions,
) -> Result<Solution<T>> {
    if x0.len() != b.len() {
        return Err(Error::Shape(format!(
            "the warm start has {} values, the right-hand side {}",
            x0.len(),
            b.len()
        )));
    }
    let ax0 = apply(op, x0, opts.ridge)?;
    let r0: Vec<T> = b
        .iter()
        .zip(&ax0)
        .map(|(bi, ai)| T::of(bi.to64() - ai.to64()))
        .collect();
    let (bn, rn) = (norm(b), norm(&r0));
    if !rn.is_finite() {
        return solve_unverified(op, b, opts);
    }
    if rn <= opts.tol * bn {
        return Ok(Solution {
            x: x0.to_vec(),
            iterations: 1,
            residual: f64::NAN,
        });
    }
    let mut sol = solve_unverified(
        op,
        &r0,
        &SolveOptions {
            tol: opts.tol * bn / rn,
            ..*opts
        },
    )?;
    axpy(1.0, x0, &mut sol.x);
    sol.iterations += 1;
    Ok(sol)
}

/// Measures the true residual ‖b − (A + ridge·I) x‖/‖b‖ from `ax` = A·x and refuses a solution above the tolerance:
/// the iterative solvers stop on their own residual estimate, the true one decides.
pub(crate) fn verify<T: Real>(
    mut sol: Solution<T>,
    b: &[T],
    ax: &[T],
    opts: &SolveOptions,
) -> Result<Solution<T>> {
    if ax.len() != b.len() {
        return Err(Error::Shape(format!(
            "the operator returned {} values for a vector of {}",
            ax.len(),
            b.len()
        )));
    }
    let bn = norm(b);
    if bn == 0.0 {
        sol.residual = 0.0;
        return Ok(sol);
    }
    let r2: f64 = b
        .iter()
        .zip(ax)
        .zip(&sol.x)
        .map(|((bi, ai), xi)| {
            let r = bi.to64() - ai.to64() - opts.ridge * xi.to64();
            r * r
        })
        .sum();
    sol.residual = r2.sqrt() / bn;
    // f32 arithmetic cannot reach below about 1e-6 relative.
    let floor = if std::mem::size_of::<T>() == 4 {
        1e-6
    } else {
        0.0
    };
    if sol.residual.is_nan() || sol.residual > opts.tol.max(floor) * 10.0 {
        return Err(not_converged(opts, sol.residual, sol.iterations));
    }
    Ok(sol)
}

fn not_converged(opts: &SolveOptions, residual: f64, iterations: usize) -> Error {
    Error::invalid(format!(
        "linear solve ({}) did not converge: relative residual {residual:.3e} after {iterations} iterations, tol {:e}; \
         raise max_iter, add a ridge, or use another solver (cg needs a symmetric positive-definite system)",
        opts.solver, opts.tol
    ))
}

fn cg<T: Real>(
    op: &dyn LinearOperator<T>,
    b: &[T],
    opts: &SolveOptions,
    bn: f64,
) -> Result<(Vec<T>, usize)> {
    let n = b.len();
    let mut x = vec![T::zero(); n];
    let mut r = b.to_vec();
    let mut p = r.clone();
    let mut rr = dot(&r, &r);
    let mut replaced_at = usize::MAX;
    for k in 0..opts.max_iter {
        if rr.sqrt() <= opts.tol * bn {
            // The recursive residual drifts from the true one on ill-conditioned systems: check the true residual
            // and, once per stretch of progress, restart from it.
            let ax = apply(op, &x, opts.ridge)?;
            r = b
                .iter()
                .zip(&ax)
                .map(|(bi, ai)| T::of(bi.to64() - ai.to64()))
                .collect();
            rr = dot(&r, &r);
            if rr.sqrt() <= opts.tol * bn || replaced_at == k {
                return Ok((x, k));
            }
            replaced_at = k + 1;
            p.clone_from(&r);
        }
        let ap = apply(op, &p, opts.ridge)?;
        let pap = dot(&p, &ap);
        if pap.is_nan() || pap <= 0.0 {
            return Err(Error::invalid(format!(
                "linear solve (cg): pᵀAp = {pap:e} at iteration {k}: the system is not symmetric positive definite; \
                 use normal-cg, gmres or bicgstab"
            )));
        }
        let alpha = rr / pap;
        axpy(alpha, &p, &mut x);
        axpy(-alpha, &ap, &mut r);
        let rr_next = dot(&r, &r);
        let beta = rr_next / rr;
        rr = rr_next;
        for (pi, &ri) in p.iter_mut().zip(&r) {
            *pi = T::of(ri.to64() + beta * pi.to64());
        }
    }
    if rr.sqrt() <= opts.tol * bn {
        return Ok((x, opts.max_iter));
    }
    Err(not_converged(opts, rr.sqrt() / bn, opts.max_iter))
}

/// CG on the normal equations (A + rI)ᵀ(A + rI) x = (A + rI)ᵀ b in the CGLS form, which carries the residual
/// b − (A + rI) x itself and so stops on the caller's criterion (the normal residual would need the square of it).
fn normal_cg<T: Real>(
    op: &dyn LinearOperator<T>,
    b: &[T],
    opts: &SolveOptions,
    bn: f64,
) -> Result<(Vec<T>, usize)> {
    let n = b.len();
    let mut x = vec![T::zero(); n];
    let mut r = b.to_vec();
    if opts.tol >= 1.0 {
        return Ok((x, 0));
    }
    let mut s = apply_t(op, &r, opts.ridge)?;
    let mut p = s.clone();
    let mut gamma = dot(&s, &s);
    for k in 0..opts.max_iter {
        if gamma == 0.0 {
            return Ok((x, k));
        }
        let q = apply(op, &p, opts.ridge)?;
        let qq = dot(&q, &q);
        if qq == 0.0 {
            return Ok((x, k));
        }
        let alpha = gamma / qq;
        axpy(alpha, &p, &mut x);
        axpy(-alpha, &q, &mut r);
        // Stop on the updated residual before the product Aᵀr that only the next iteration would use.
        if norm(&r) <= opts.tol * bn {
            return Ok((x, k + 1));
        }
        s = apply_t(op, &r, opts.ridge)?;
        let gamma_next = dot(&s, &s);
        let beta = gamma_next / gamma;
        gamma = gamma_next;
        for (pi, &si) in p.iter_mut().zip(&s) {
            *pi = T::of(si.to64() + beta * pi.to64());
        }
    }
    Ok((x, opts.max_iter))
}

/// Restarted GMRES with modified Gram-Schmidt and Givens rotations.
fn gmres<T: Real>(
    op: &dyn LinearOperator<T>,
    b: &[T],
    opts: &SolveOptions,
    bn: f64,
    restart: usize,
) -> Result<(Vec<T>, usize)> {
    let n = b.len();
    let m = restart.min(n);
    let mut x = vec![0.0f64; n];
    let mut used = 0;
    let to_t = |v: &[f64]| v.iter().map(|&a| T::of(a)).collect::<Vec<T>>();
    let matvec = |v: &[f64]| -> Result<Vec<f64>> {
        Ok(apply(op, &to_t(v), opts.ridge)?
            .iter()
            .map(|a| a.to64())
            .collect())
    };
    while used < opts.max_iter {
        let ax = matvec(&x)?;
        let r: Vec<f64> = b.iter().zip(&ax).map(|(bi, ai)| bi.to64() - ai).collect();
        let beta = r.iter().map(|v| v * v).sum::<f64>().sqrt();
        if beta <= opts.tol * bn {
            return Ok((to_t(&x), used));
        }
        let mut v: Vec<Vec<f64>> = vec![r.iter().map(|ri| ri / beta).collect()];
        let mut h = vec![vec![0.0f64; m]; m + 1];
        let (mut cs, mut sn) = (vec![0.0f64; m], vec![0.0f64; m]);
        let mut g = vec![0.0f64; m + 1];
        g[0] = beta;
        let mut k_end = 0;
        for k in 0..m {
            if used >= opts.max_iter {
                break;
            }
            used += 1;
            let mut w = matvec(&v[k])?;
            for (i, vi) in v.iter().enumerate() {
                let hik: f64 = w.iter().zip(vi).map(|(a, b)| a * b).sum();
                h[i][k] = hik;
                w.iter_mut().zip(vi).for_each(|(a, b)| *a -= hik * b);
            }
            let wn = w.iter().map(|a| a * a).sum::<f64>().sqrt();
            h[k + 1][k] = wn;
            for i in 0..k {
                let t = cs[i] * h[i][k] + sn[i] * h[i + 1][k];
                h[i + 1][k] = -sn[i] * h[i][k] + cs[i] * h[i + 1][k];
                h[i][k] = t;
            }
            let d = (h[k][k] * h[k][k] + h[k + 1][k] * h[k + 1][k]).sqrt();
            (cs[k], sn[k]) = if d == 0.0 {
                (1.0, 0.0)
            } else {
                (h[k][k] / d, h[k + 1][k] / d)
            };
            h[k][k] = d;
            h[k + 1][k] = 0.0;
            g[k + 1] = -sn[k] * g[k];
            g[k] *= cs[k];
            k_end = k + 1;
            if g[k + 1].abs() <= opts.tol * bn || wn == 0.0 {
                break;
            }
            v.push(w.iter().map(|a| a / wn).collect());
        }
        // Back substitution for the least-squares coefficients, then the update.
        let mut y = vec![0.0f64; k_end];
        for i in (0..k_end).rev() {
            let s: f64 = (i + 1..k_end).map(|j| h[i][j] * y[j]).sum();
            y[i] = if h[i][i] == 0.0 {
                0.0
            } else {
                (g[i] - s) / h[i][i]
            };
        }
        for (j, yj) in y.iter().enumerate() {
            x.iter_mut().zip(&v[j]).for_each(|(a, b)| *a += yj * b);
        }
        if g[k_end].abs() <= opts.tol * bn {
            return Ok((to_t(&x), used));
        }
    }
    Ok((to_t(&x), used))
}

fn bicgstab<T: Real>(
    op: &dyn LinearOperator<T>,
    b: &[T],
    opts: &SolveOptions,
    bn: f64,
) -> Result<(Vec<T>, usize)> {
    let n = b.len();
    let mut x = vec![T::zero(); n];
    let mut r = b.to_vec();
    let r0 = r.clone();
    let (mut rho, mut alpha, mut omega) = (1.0f64, 1.0f64, 1.0f64);
    let mut v = vec![T::zero(); n];
    let mut p = vec![T::zero(); n];
    for k in 0..opts.max_iter {
        if norm(&r) <= opts.tol * bn {
            return Ok((x, k));
        }
        let rho_next = dot(&r0, &r);
        if rho_next == 0.0 || omega == 0.0 {
            return Err(Error::invalid(format!(
                "linear solve (bicgstab) broke down at iteration {k}; use gmres or normal-cg"
            )));
        }
        let beta = (rho_next / rho) * (alpha / omega);
        rho = rho_next;
        for i in 0..n {
            p[i] = T::of(r[i].to64() + beta * (p[i].to64() - omega * v[i].to64()));
        }
        v = apply(op, &p, opts.ridge)?;
        let r0v = dot(&r0, &v);
        if r0v == 0.0 {
            return Err(Error::invalid(format!(
                "linear solve (bicgstab) broke down at iteration {k}; use gmres or normal-cg"
            )));
        }
        alpha = rho / r0v;
        let s: Vec<T> = r
            .iter()
            .zip(&v)
            .map(|(ri, vi)| T::of(ri.to64() - alpha * vi.to64()))
            .collect();
        if norm(&s) <= opts.tol * bn {
            axpy(alpha, &p, &mut x);
            return Ok((x, k + 1));
        }
        let t = apply(op, &s, opts.ridge)?;
        let tt = dot(&t, &t);
        omega = if tt == 0.0 { 0.0 } else { dot(&t, &s) / tt };
        axpy(alpha, &p, &mut x);
        axpy(omega, &s, &mut x);
        r = s
            .iter()
            .zip(&t)
            .map(|(si, ti)| T::of(si.to64() - omega * ti.to64()))
            .collect();
    }
    Ok((x, opts.max_iter))
}

/// A + ridge·I materialised in f64 by n products with the unit vectors.
fn dense<T: Real>(op: &dyn LinearOperator<T>, ridge: f64) -> Result<DenseMatrix<f64>> {
    let n = op.dim();
    crate::memory::check(
        &format!("a dense {n} x {n} system"),
        (n as f64).powi(2) * 16.0,
        "use an iterative solver (normal-cg, cg, gmres, bicgstab)",
    )?;
    let mut a = vec![0.0f64; n * n];
    let mut e = vec![T::zero(); n];
    for j in 0..n {
        e[j] = T::one();
        let col = apply(op, &e, ridge)?;
        e[j] = T::zero();
        for (i, c) in col.iter().enumerate() {
            a[i * n + j] = c.to64();
        }
    }
    DenseMatrix::new(n, a)
}

impl DenseMatrix<f64> {
    /// x with A x = b by LU with partial pivoting.
    pub(crate) fn lu_solve<T: Real>(mut self, b: &[T]) -> Result<Vec<T>> {
        let n = self.n;
        let a = &mut self.a;
        let mut x: Vec<f64> = b.iter().map(|v| v.to64()).collect();
        let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for k in 0..n {
            let (piv, pmax) = (k..n)
                .map(|i| (i, a[i * n + k].abs()))
                .fold((k, -1.0), |best, c| if c.1 > best.1 { c } else { best });
            if pmax <= 1e-14 * scale || pmax == 0.0 {
                return Err(Error::invalid(format!(
                    "linear solve (lu): the matrix is singular (pivot {pmax:e} in column {k}); add a ridge"
                )));
            }
            if piv != k {
                for j in 0..n {
                    a.swap(k * n + j, piv * n + j);
                }
                x.swap(k, piv);
            }
            for i in k + 1..n {
                let f = a[i * n + k] / a[k * n + k];
                if f != 0.0 {
                    for j in k..n {
                        a[i * n + j] -= f * a[k * n + j];
                    }
                    x[i] -= f * x[k];
                }
            }
        }
        for i in (0..n).rev() {
            let s: f64 = (i + 1..n).map(|j| a[i * n + j] * x[j]).sum();
            x[i] = (x[i] - s) / a[i * n + i];
        }
        Ok(x.into_iter().map(T::of).collect())
    }

    /// x with A x = b by Cholesky (A symmetric positive definite).
    fn cholesky_solve<T: Real>(self, b: &[T]) -> Result<Vec<T>> {
        let n = self.n;
        let a = &self.a;
        let mut l = vec![0.0f64; n * n];
        for i in 0..n {
            for j in 0..=i {
                let s: f64 = (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum();
                if i == j {
                    let d = a[i * n + i] - s;
                    if d.is_nan() || d <= 0.0 {
                        return Err(Error::invalid(format!(
                            "linear solve (cholesky): the matrix is not positive definite (pivot {d:e} at {i}); \
                             use lu, or add a ridge"
                        )));
                    }
                    l[i * n + i] = d.sqrt();
                } else {
                    l[i * n + j] = (a[i * n + j] - s) / l[j * n + j];
                }
            }
        }
        let mut y: Vec<f64> = b.iter().map(|v| v.to64()).collect();
        for i in 0..n {
            let s: f64 = (0..i).map(|k| l[i * n + k] * y[k]).sum();
            y[i] = (y[i] - s) / l[i * n + i];
        }
        for i in (0..n).rev() {
            let s: f64 = (i + 1..n).map(|k| l[k * n + i] * y[k]).sum();
            y[i] = (y[i] - s) / l[i * n + i];
        }
        Ok(y.into_iter().map(T::of).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{normal, rng_for, Stream};

    fn random(n: usize, seed: u64) -> Vec<f64> {
        let mut rng = rng_for(seed, Stream::Solver, 7);
        (0..n).map(|_| normal(&mut rng)).collect()
    }

    /// SPD (MᵀM + I), non-symmetric (I·n + M) and ill-conditioned SPD (eigenvalues 1 .. 1e8) systems.
    fn systems(n: usize) -> Vec<(&'static str, DenseMatrix<f64>)> {
        let m = random(n * n, 1);
        let mut spd = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                spd[i * n + j] = (0..n).map(|k| m[k * n + i] * m[k * n + j]).sum::<f64>()
                    + if i == j { 1.0 } else { 0.0 };
            }
        }
        let nonsym: Vec<f64> = (0..n * n)
            .map(|k| m[k] + if k / n == k % n { n as f64 } else { 0.0 })
            .collect();
        // Q diag(λ) Qᵀ with Q from Gram-Schmidt of random vectors.
        let mut q = random(n * n, 2);
        for i in 0..n {
            for j in 0..i {
                let d: f64 = (0..n).map(|k| q[i * n + k] * q[j * n + k]).sum();
                for k in 0..n {
                    q[i * n + k] -= d * q[j * n + k];
                }
            }
            let nn: f64 = (0..n).map(|k| q[i * n + k].powi(2)).sum::<f64>().sqrt();
            (0..n).for_each(|k| q[i * n + k] /= nn);
        }
        let lam: Vec<f64> = (0..n)
            .map(|i| 10f64.powf(8.0 * i as f64 / (n - 1) as f64))
            .collect();
        let mut ill = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                ill[i * n + j] = (0..n).map(|k| q[k * n + i] * lam[k] * q[k * n + j]).sum();
            }
        }
        vec![
            ("spd", DenseMatrix::new(n, spd).unwrap()),
            ("nonsymmetric", DenseMatrix::new(n, nonsym).unwrap()),
            ("ill-conditioned", DenseMatrix::new(n, ill).unwrap()),
        ]
    }

    #[test]
    fn every_solver_matches_the_dense_solve() {
        let n = 24;
        let b = random(n, 3);
        for (name, a) in systems(n) {
            let exact = solve(
                &a,
                &b,
                &SolveOptions {
                    solver: Solver::Lu,
                    ..Default::default()
                },
            )
            .unwrap()
            .x;
            let symmetric = name != "nonsymmetric";
            for solver in [
                Solver::Cg,
                Solver::NormalCg,
                // Restarted GMRES stalls on a spread spectrum (24 eigenvalues over 8 decades): no restart there.
                Solver::Gmres {
                    restart: if name == "ill-conditioned" { n } else { 10 },
                },
                Solver::Bicgstab,
                Solver::Cholesky,
            ] {
                if !symmetric && matches!(solver, Solver::Cg | Solver::Cholesky) {
                    continue;
                }
                // cond 1e8 in f64: a relative residual of about 1e-8 is what rounding allows.
                let opts = SolveOptions {
                    solver,
                    tol: if name == "ill-conditioned" {
                        1e-8
                    } else {
                        1e-10
                    },
                    max_iter: 5000,
                    ridge: 0.0,
                    verify: true,
                };
                let s = solve(&a, &b, &opts).unwrap_or_else(|e| panic!("{name} {solver}: {e}"));
                let scale = exact.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                let err =
                    s.x.iter()
                        .zip(&exact)
                        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
                let bound = if name == "ill-conditioned" {
                    1e-2
                } else {
                    1e-8
                };
                assert!(err <= bound * scale, "{name} {solver}: error {err:e}");
            }
        }
    }

    #[test]
    fn ridge_f32_and_failures() {
        let a = DenseMatrix::new(2, vec![1.0f64, 0.0, 0.0, 1.0]).unwrap();
        let s = solve(
            &a,
            &[2.0, 4.0],
            &SolveOptions {
                ridge: 1.0,
                ..Default::default()
            },
        )
        .unwrap();
        assert!((s.x[0] - 1.0).abs() < 1e-9 && (s.x[1] - 2.0).abs() < 1e-9);
        let a32 = DenseMatrix::new(2, vec![4.0f32, 1.0, 1.0, 3.0]).unwrap();
        let s = solve(
            &a32,
            &[1.0f32, 2.0],
            &SolveOptions {
                solver: Solver::Cg,
                tol: 1e-6,
                ..Default::default()
            },
        )
        .unwrap();
        assert!((4.0 * s.x[0] + s.x[1] - 1.0).abs() < 1e-5);
        // CG on an indefinite system, too few iterations, a singular LU: clear errors.
        let indefinite = DenseMatrix::new(2, vec![1.0f64, 0.0, 0.0, -1.0]).unwrap();
        let cg = SolveOptions {
            solver: Solver::Cg,
            ..Default::default()
        };
        assert!(solve(&indefinite, &[1.0, 1.0], &cg)
            .unwrap_err()
            .to_string()
            .contains("not symmetric positive definite"));
        let (_, a) = &systems(24)[1];
        let few = SolveOptions {
            solver: Solver::Gmres { restart: 2 },
            max_iter: 3,
            ..Default::default()
        };
        assert!(solve(a, &random(24, 9), &few)
            .unwrap_err()
            .to_string()
            .contains("did not converge"));
        let singular = DenseMatrix::new(2, vec![1.0f64, 2.0, 2.0, 4.0]).unwrap();
        let lu = SolveOptions {
            solver: Solver::Lu,
            ..Default::default()
        };
        assert!(solve(&singular, &[1.0, 1.0], &lu)
            .unwrap_err()
            .to_string()
            .contains("singular"));
        assert_eq!(
            "gmres".parse::<Solver>().unwrap(),
            Solver::Gmres { restart: 30 }
        );
        assert!("qr".parse::<Solver>().is_err());
    }
}
