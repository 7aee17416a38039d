//! The baselines of P18: conjugate gradients and CG preconditioned by the zero-fill incomplete Cholesky
//! factorization IC(0), as the reference's `cg_normal` and `pcg_normal` run them (start from x = 0, stop when the
//! recurrence residual falls below `tol·‖b‖`).

use super::csr::{axpby, axpy, dot, norm, Csr};
use crate::{Error, Result};
use serde::Serialize;
use std::time::Instant;

/// When an iterative solve stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stop {
    /// Relative residual ‖r‖/‖r₀‖ to reach.
    pub tol: f64,
    pub max_iters: usize,
}

impl Default for Stop {
    fn default() -> Self {
        Stop {
            tol: 1e-4,
            max_iters: 1000,
        }
    }
}

impl Stop {
    pub(crate) fn check(&self) -> Result<()> {
        if !(self.tol > 0.0 && self.tol < 1.0) || self.max_iters == 0 {
            return Err(Error::invalid(format!(
                "linear solve: tol must be in (0, 1) and max_iters at least 1 (got tol {} and max_iters {})",
                self.tol, self.max_iters
            )));
        }
        Ok(())
    }
}

/// What a solve did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Solve {
    #[serde(skip)]
    pub x: Vec<f64>,
    /// ‖r‖ before the first iteration and after each one.
    pub residuals: Vec<f64>,
    /// Seconds since the start at each entry of `residuals`.
    #[serde(skip)]
    pub times: Vec<f64>,
    pub iterations: usize,
    pub converged: bool,
    pub seconds: f64,
}

impl Solve {
    /// The first iteration whose relative residual is at most `tol` (None if it never was).
    pub fn iterations_to(&self, tol: f64) -> Option<usize> {
        let r0 = self.residuals[0];
        self.residuals.iter().position(|&r| r <= tol * r0)
    }

    /// Seconds to the first iteration whose relative residual is at most `tol`.
    pub fn seconds_to(&self, tol: f64) -> Option<f64> {
        self.iterations_to(tol).map(|k| self.times[k])
    }
}

pub(crate) fn check_rhs(a: &Csr, b: &[f64]) -> Result<f64> {
    if b.len() != a.n {
        return Err(Error::Shape(format!(
            "linear solve: a right-hand side of {} values for {} unknowns",
            b.len(),
            a.n
        )));
    }
    let nb = norm(b);
    if !nb.is_finite() {
        return Err(Error::NonFinite(
            "linear solve: the right-hand side has a NaN or infinite value".into(),
        ));
    }
    Ok(nb)
}

/// A preconditioner M ≈ A: z = M⁻¹ r.
pub trait Preconditioner {
    fn apply(&self, r: &[f64], z: &mut [f64]);
}

/// No preconditioning (plain CG).
pub struct Identity;

impl Preconditioner for Identity {
    fn apply(&self, r: &[f64], z: &mut [f64]) {
        z.copy_from_slice(r);
    }
}

/// Conjugate gradients from x = 0.
pub fn cg(a: &Csr, b: &[f64], stop: Stop) -> Result<Solve> {
    pcg(a, b, &Identity, stop)
}

/// Preconditioned conjugate gradients from x = 0.
pub fn pcg(a: &Csr, b: &[f64], m: &dyn Preconditioner, stop: Stop) -> Result<Solve> {
    stop.check()?;
    let nb = check_rhs(a, b)?;
    let start = Instant::now();
    let n = a.n;
    let mut x = vec![0.0; n];
    let mut r = b.to_vec();
    let mut residuals = vec![nb];
    let mut times = vec![0.0];
    let done = |r: f64| r <= stop.tol * nb;
    if nb == 0.0 {
        return Ok(Solve {
            x,
            residuals,
            times,
            iterations: 0,
            converged: true,
            seconds: start.elapsed().as_secs_f64(),
        });
    }
    let mut z = vec![0.0; n];
    m.apply(&r, &mut z);
    let mut p = z.clone();
    let mut ap = vec![0.0; n];
    let mut rz = dot(&r, &z);
    let mut converged = false;
    for _ in 0..stop.max_iters {
        a.matvec_into(&p, &mut ap);
        let pap = dot(&p, &ap);
        if pap.is_nan() || pap <= 0.0 {
            return Err(Error::invalid(format!(
                "conjugate gradients: pᵀAp = {pap:e} at iteration {}; the matrix is not positive definite",
                residuals.len()
            )));
        }
        let alpha = rz / pap;
        axpy(alpha, &p, &mut x);
        axpy(-alpha, &ap, &mut r);
        let nr = norm(&r);
        residuals.push(nr);
        times.push(start.elapsed().as_secs_f64());
        if done(nr) {
            converged = true;
            break;
        }
        m.apply(&r, &mut z);
        let rz_new = dot(&r, &z);
        let beta = rz_new / rz;
        rz = rz_new;
        axpby(1.0, &z, beta, &mut p);
    }
    Ok(Solve {
        x,
        iterations: residuals.len() - 1,
        residuals,
        times,
        converged,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The zero-fill incomplete Cholesky factor L (lower triangular, the sparsity of A's lower triangle): A ≈ L Lᵀ.
pub struct IncompleteCholesky {
    l: Csr,
}

impl IncompleteCholesky {
    /// Factors a symmetric matrix; a non-positive pivot (A not positive definite, or not an M-matrix where IC(0)
    /// can break down) is one clear error.
    pub fn new(a: &Csr) -> Result<Self> {
        let n = a.n;
        let mut row_ptr = vec![0];
        let (mut col_idx, mut values): (Vec<usize>, Vec<f64>) = (Vec::new(), Vec::new());
        for i in 0..n {
            let start = col_idx.len();
            for (j, v) in a.row(i).filter(|&(j, _)| j <= i) {
                // L_ij = (A_ij − Σ_{k<j} L_ik L_jk) / L_jj, and the diagonal's square root.
                let mut s = v;
                let ri = start..col_idx.len();
                let rj = if j == i {
                    ri.clone()
                } else {
                    row_ptr[j]..row_ptr[j + 1]
                };
                let (mut p, mut q) = (ri.start, rj.start);
                while p < ri.end && q < rj.end {
                    let (cp, cq) = (col_idx[p], col_idx[q]);
                    if cp >= j || cq >= j {
                        break;
                    }
                    match cp.cmp(&cq) {
                        std::cmp::Ordering::Less => p += 1,
                        std::cmp::Ordering::Greater => q += 1,
                        std::cmp::Ordering::Equal => {
                            s -= values[p] * values[q];
                            p += 1;
                            q += 1;
                        }
                    }
                }
                if j == i {
                    if s.is_nan() || s <= 0.0 {
                        return Err(Error::invalid(format!(
                            "incomplete Cholesky: pivot {s:e} at row {i}; the matrix is not positive definite (or \
                             IC(0) breaks down on it)"
                        )));
                    }
                    col_idx.push(i);
                    values.push(s.sqrt());
                } else {
                    let d = values[row_ptr[j + 1] - 1];
                    col_idx.push(j);
                    values.push(s / d);
                }
            }
            if col_idx.last() != Some(&i) {
                return Err(Error::invalid(format!(
                    "incomplete Cholesky: row {i} has no diagonal entry"
                )));
            }
            row_ptr.push(col_idx.len());
        }
        Ok(IncompleteCholesky {
            l: Csr::new(n, row_ptr, col_idx, values)?,
        })
    }

    /// The factor L.
    pub fn factor(&self) -> &Csr {
        &self.l
    }
}

impl Preconditioner for IncompleteCholesky {
    /// z = (L Lᵀ)⁻¹ r: forward substitution, then backward by columns of L.
    fn apply(&self, r: &[f64], z: &mut [f64]) {
        let l = &self.l;
        for i in 0..l.n {
            let (lo, hi) = (l.row_ptr[i], l.row_ptr[i + 1] - 1);
            let mut s = r[i];
            for k in lo..hi {
                s -= l.values[k] * z[l.col_idx[k]];
            }
            z[i] = s / l.values[hi];
        }
        for i in (0..l.n).rev() {
            let (lo, hi) = (l.row_ptr[i], l.row_ptr[i + 1] - 1);
            z[i] /= l.values[hi];
            let zi = z[i];
            for k in lo..hi {
                z[l.col_idx[k]] -= l.values[k] * zi;
            }
        }
    }
}
