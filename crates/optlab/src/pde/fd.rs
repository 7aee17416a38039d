//! Finite-difference reference solutions of 1-D reaction–diffusion equations u_t = a(u) u_xx + f(u) on [0, L]
//! (P08's reference fields): the method of lines with second-order central differences and Crank–Nicolson in time,
//! each step solved by Newton's method on the (cyclic) tridiagonal system. Second order in space and time (tested
//! on the exact travelling wave of Fisher–KPP).
//!
//! Boundaries: periodic, or one condition per side — Dirichlet u = g(t), or Robin αu + βu_x = γ (a ghost node
//! eliminated with the centred difference).

use crate::{Error, Result};

/// A condition at one end of the interval.
pub enum Side {
    /// u = g(t).
    Dirichlet(Box<dyn Fn(f64) -> f64 + Send + Sync>),
    /// α u + β u_x = γ (β ≠ 0), by a ghost node and the centred difference (second order).
    Robin { alpha: f64, beta: f64, gamma: f64 },
    /// α u + β u_x = γ as an algebraic equation for the end node with the one-sided difference (first order in
    /// β h): for conditions like diffusion–sorption's u = D u_x with D ≪ h, whose ghost-node form has a boundary
    /// mode growing like e^{t/(R D)}.
    OneSided { alpha: f64, beta: f64, gamma: f64 },
}

/// The boundary conditions.
pub enum Boundary {
    /// u(0) = u(L); nodes x_i = i L / nx, i < nx.
    Periodic,
    /// Left and right conditions; nodes x_i = i L / (nx − 1), both ends included.
    Sides(Side, Side),
}

/// The equation u_t = a(u) u_xx + f(u), with a, a', f and f'.
pub struct ReactionDiffusion {
    pub length: f64,
    pub diffusion: Box<dyn Fn(f64) -> (f64, f64) + Send + Sync>,
    pub reaction: Box<dyn Fn(f64) -> (f64, f64) + Send + Sync>,
    pub boundary: Boundary,
}

/// A solution on the grid: `u[k][i]` at time `t[k]` and node `x[i]`.
#[derive(Debug, Clone)]
pub struct Field {
    pub x: Vec<f64>,
    pub t: Vec<f64>,
    pub u: Vec<Vec<f64>>,
}

impl Field {
    /// Linear interpolation in x and t (clamped to the grid), for comparing with a model at arbitrary points.
    pub fn at(&self, x: f64, t: f64) -> f64 {
        let locate = |v: &[f64], q: f64| -> (usize, f64) {
            if v.len() < 2 {
                return (0, 0.0);
            }
            let q = q.clamp(v[0], v[v.len() - 1]);
            let k = v.partition_point(|&p| p <= q).clamp(1, v.len() - 1) - 1;
            let w = (q - v[k]) / (v[k + 1] - v[k]);
            (k, w)
        };
        let (k, wt) = locate(&self.t, t);
        let (i, wx) = locate(&self.x, x);
        let row = |k: usize| {
            let r = &self.u[k];
            if r.len() < 2 {
                r[0]
            } else {
                r[i] * (1.0 - wx) + r[(i + 1).min(r.len() - 1)] * wx
            }
        };
        if self.t.len() < 2 {
            return row(0);
        }
        row(k) * (1.0 - wt) + row(k + 1) * wt
    }
}

/// Solves a tridiagonal system (sub, diag, sup; `cyclic` adds the corners sub[0] and sup[n−1]) by the Thomas
/// algorithm, with Sherman–Morrison for the cyclic case. Overwrites `rhs` with the solution.
fn tridiagonal(
    sub: &[f64],
    diag: &[f64],
    sup: &[f64],
    rhs: &mut [f64],
    cyclic: bool,
) -> Result<()> {
    let n = diag.len();
    let thomas = |a: &[f64], b: &[f64], c: &[f64], d: &mut [f64]| -> Result<()> {
        let mut cp = vec![0.0; n];
        let mut bp = b[0];
        if bp == 0.0 {
            return Err(Error::invalid(
                "finite differences: a singular tridiagonal system",
            ));
        }
        cp[0] = c[0] / bp;
        d[0] /= bp;
        for i in 1..n {
            bp = b[i] - a[i] * cp[i - 1];
            if bp == 0.0 || !bp.is_finite() {
                return Err(Error::invalid(
                    "finite differences: a singular tridiagonal system",
                ));
            }
            cp[i] = c[i] / bp;
            d[i] = (d[i] - a[i] * d[i - 1]) / bp;
        }
        for i in (0..n - 1).rev() {
            d[i] -= cp[i] * d[i + 1];
        }
        Ok(())
    };
    if !cyclic || n < 3 {
        return thomas(sub, diag, sup, rhs);
    }
    // Sherman–Morrison with the corners α = sup[n−1] (row n−1, column 0) and β = sub[0] (row 0, column n−1).
    let (alpha, beta) = (sup[n - 1], sub[0]);
    let gamma = -diag[0];
    let mut b = diag.to_vec();
    b[0] -= gamma;
    b[n - 1] -= alpha * beta / gamma;
    thomas(sub, &b, sup, rhs)?;
    let mut u = vec![0.0; n];
    u[0] = gamma;
    u[n - 1] = alpha;
    thomas(sub, &b, sup, &mut u)?;
    let fact = (rhs[0] + beta * rhs[n - 1] / gamma) / (1.0 + u[0] + beta * u[n - 1] / gamma);
    for i in 0..n {
        rhs[i] -= fact * u[i];
    }
    Ok(())
}

impl ReactionDiffusion {
    /// The nodes for `nx` points.
    pub fn nodes(&self, nx: usize) -> Vec<f64> {
        match self.boundary {
            Boundary::Periodic => (0..nx)
                .map(|i| i as f64 * self.length / nx as f64)
                .collect(),
            Boundary::Sides(..) => (0..nx)
                .map(|i| i as f64 * self.length / (nx - 1) as f64)
                .collect(),
        }
    }

    /// L(u) = a(u) u_xx + f(u) at every node, and its tridiagonal Jacobian (sub, diag, sup).
    fn operator(&self, u: &[f64], h: f64) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
        let n = u.len();
        let h2 = h * h;
        let (mut l, mut sub, mut diag, mut sup) =
            (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        for i in 0..n {
            // Neighbours and d(neighbour)/d(u_i-1), d/du_i, d/du_i+1 through ghost nodes.
            let (left, dl_left, dl_self) = match &self.boundary {
                Boundary::Periodic => (u[(i + n - 1) % n], 1.0, 0.0),
                Boundary::Sides(side, _) if i == 0 => match side {
                    Side::Dirichlet(_) | Side::OneSided { .. } => (0.0, 0.0, 0.0),
                    // u_g = u_1 − 2h (γ − α u_0)/β
                    Side::Robin { alpha, beta, gamma } => (
                        u[1] - 2.0 * h * (gamma - alpha * u[0]) / beta,
                        0.0,
                        2.0 * h * alpha / beta,
                    ),
                },
                Boundary::Sides(..) => (u[i - 1], 1.0, 0.0),
            };
            let (right, dr_right, dr_self) = match &self.boundary {
                Boundary::Periodic => (u[(i + 1) % n], 1.0, 0.0),
                Boundary::Sides(_, side) if i == n - 1 => match side {
                    Side::Dirichlet(_) | Side::OneSided { .. } => (0.0, 0.0, 0.0),
                    // u_g = u_{n−2} + 2h (γ − α u_{n−1})/β
                    Side::Robin { alpha, beta, gamma } => (
                        u[n - 2] + 2.0 * h * (gamma - alpha * u[n - 1]) / beta,
                        0.0,
                        -2.0 * h * alpha / beta,
                    ),
                },
                Boundary::Sides(..) => (u[i + 1], 1.0, 0.0),
            };
            let dirichlet_node = matches!(
                (&self.boundary, i == 0, i == n - 1),
                (Boundary::Sides(Side::Dirichlet(_), _), true, _)
                    | (Boundary::Sides(_, Side::Dirichlet(_)), _, true)
            );
            if dirichlet_node {
                continue; // fixed by the condition; handled by the stepper
            }
            let lap = (left - 2.0 * u[i] + right) / h2;
            let (a, da) = (self.diffusion)(u[i]);
            let (f, df) = (self.reaction)(u[i]);
            l[i] = a * lap + f;
            diag[i] = da * lap + a * (-2.0 + dl_self + dr_self) / h2 + df;
            // Ghost nodes fold onto the inner neighbour: the Robin ghost depends on u_1 (left) or u_{n−2} (right).
            let ghost_left =
                matches!(&self.boundary, Boundary::Sides(Side::Robin { .. }, _)) && i == 0;
            let ghost_right =
                matches!(&self.boundary, Boundary::Sides(_, Side::Robin { .. })) && i == n - 1;
            if ghost_left {
                sup[i] += a / h2; // from the ghost
            }
            if ghost_right {
                sub[i] += a / h2;
            }
            match &self.boundary {
                Boundary::Periodic => {
                    sub[i] += a * dl_left / h2;
                    sup[i] += a * dr_right / h2;
                }
                Boundary::Sides(..) => {
                    if i > 0 {
                        sub[i] += a * dl_left / h2;
                    }
                    if i < n - 1 {
                        sup[i] += a * dr_right / h2;
                    }
                }
            }
        }
        (l, sub, diag, sup)
    }

    /// Integrates from u₀ (given at the nodes) over [0, t_end] in `nt` Crank–Nicolson steps on `nx` nodes.
    pub fn solve(
        &self,
        u0: impl Fn(f64) -> f64,
        nx: usize,
        nt: usize,
        t_end: f64,
    ) -> Result<Field> {
        if nx < 3 || nt == 0 || !(t_end > 0.0 && t_end.is_finite() && self.length > 0.0) {
            return Err(Error::invalid(format!(
                "finite differences: need at least 3 nodes, 1 step and positive lengths (nx = {nx}, nt = {nt}, \
                 t_end = {t_end}, L = {})",
                self.length
            )));
        }
        crate::memory::check(
            "the finite-difference field",
            ((nt + 1) * nx) as f64 * 8.0,
            "use fewer nodes or steps",
        )?;
        let x = self.nodes(nx);
        let h = x[1] - x[0];
        let dt = t_end / nt as f64;
        let cyclic = matches!(self.boundary, Boundary::Periodic);
        let mut u: Vec<f64> = x.iter().map(|&xi| u0(xi)).collect();
        self.apply_dirichlet(&mut u, 0.0);
        let mut field = vec![u.clone()];
        let mut times = vec![0.0];
        for k in 0..nt {
            let t1 = (k + 1) as f64 * dt;
            let (l0, ..) = self.operator(&u, h);
            let mut v = u.clone();
            self.apply_dirichlet(&mut v, t1);
            let mut converged = false;
            for _ in 0..50 {
                let (l1, sub, diag, sup) = self.operator(&v, h);
                // G(v) = v − u − dt/2 (L(v) + L(u)); J = I − dt/2 ∂L.
                let mut g: Vec<f64> = (0..nx)
                    .map(|i| v[i] - u[i] - 0.5 * dt * (l1[i] + l0[i]))
                    .collect();
                let mut jd: Vec<f64> = diag.iter().map(|d| 1.0 - 0.5 * dt * d).collect();
                let mut js: Vec<f64> = sub.iter().map(|s| -0.5 * dt * s).collect();
                let mut jp: Vec<f64> = sup.iter().map(|s| -0.5 * dt * s).collect();
                for i in self.dirichlet_nodes(nx) {
                    g[i] = 0.0;
                    jd[i] = 1.0;
                    js[i] = 0.0;
                    jp[i] = 0.0;
                }
                self.one_sided_rows(&v, h, &mut g, &mut js, &mut jd, &mut jp);
                let gn = g.iter().map(|v| v * v).sum::<f64>().sqrt();
                if !gn.is_finite() {
                    return Err(Error::NonFinite(format!(
                        "finite differences: the solution blew up at t = {t1}; use more steps"
                    )));
                }
                if gn <= 1e-13 * (1.0 + v.iter().map(|v| v * v).sum::<f64>().sqrt()) {
                    converged = true;
                    break;
                }
                tridiagonal(&js, &jd, &jp, &mut g, cyclic)?;
                for (vi, di) in v.iter_mut().zip(&g) {
                    *vi -= di;
                }
            }
            if !converged {
                return Err(Error::invalid(format!(
                    "finite differences: Newton's method did not converge in step {} (t = {t1}); use more steps",
                    k + 1
                )));
            }
            u = v;
            field.push(u.clone());
            times.push(t1);
        }
        Ok(Field {
            x,
            t: times,
            u: field,
        })
    }

    /// The rows of one-sided Robin ends: α u_e + β (u_inner − u_e)/(±h) − γ.
    fn one_sided_rows(
        &self,
        v: &[f64],
        h: f64,
        g: &mut [f64],
        js: &mut [f64],
        jd: &mut [f64],
        jp: &mut [f64],
    ) {
        let n = v.len();
        if let Boundary::Sides(l, r) = &self.boundary {
            if let Side::OneSided { alpha, beta, gamma } = l {
                // u_x ≈ (u_1 − u_0)/h
                g[0] = alpha * v[0] + beta * (v[1] - v[0]) / h - gamma;
                (js[0], jd[0], jp[0]) = (0.0, alpha - beta / h, beta / h);
            }
            if let Side::OneSided { alpha, beta, gamma } = r {
                // u_x ≈ (u_{n−1} − u_{n−2})/h
                g[n - 1] = alpha * v[n - 1] + beta * (v[n - 1] - v[n - 2]) / h - gamma;
                (js[n - 1], jd[n - 1], jp[n - 1]) = (-beta / h, alpha + beta / h, 0.0);
            }
        }
    }

    fn dirichlet_nodes(&self, nx: usize) -> Vec<usize> {
        match &self.boundary {
            Boundary::Periodic => vec![],
            Boundary::Sides(l, r) => {
                let mut v = vec![];
                if matches!(l, Side::Dirichlet(_)) {
                    v.push(0);
                }
                if matches!(r, Side::Dirichlet(_)) {
                    v.push(nx - 1);
                }
                v
            }
        }
    }

    fn apply_dirichlet(&self, u: &mut [f64], t: f64) {
        if let Boundary::Sides(l, r) = &self.boundary {
            if let Side::Dirichlet(g) = l {
                u[0] = g(t);
            }
            if let Side::Dirichlet(g) = r {
                let n = u.len();
                u[n - 1] = g(t);
            }
        }
    }
}
