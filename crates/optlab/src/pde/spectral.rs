//! P22's preconditioned gradient descent in function space, u ← u − η (I − Δ)^(−1) DE(u), on the Dirichlet sine
//! basis φ_k(x) = Π_i sin(π k_i x_i), k ∈ {1..K}^d, of the unit cube (d ≤ 3): a spectral Galerkin discretisation
//! whose energy E(c) = ∫ L(u, ∇u) − f u is integrated by tensor Gauss–Legendre quadrature. In the basis, (I − Δ) is
//! diagonal (⟨φ_k, (I − Δ)φ_k⟩ = 2^(−d)(1 + π²|k|²)), so each step is c_k ← c_k − η ∂E/∂c_k / (2^(−d)(1 + π²|k|²)).
//! The paper proves E(u_t) − E* falls geometrically for L uniformly convex in ∇u; [`solve`] records the energy
//! per iteration and fits the rate.

use super::variational::Problem;
use crate::{Error, Result};
use rayon::prelude::*;
use serde::Serialize;
use std::f64::consts::PI;

/// The largest dimension of the spectral solver (K^d coefficients, Q^d quadrature points).
pub const MAX_DIM: usize = 3;

/// Gauss–Legendre nodes and weights on [0, 1] (Newton on P_n from Chebyshev guesses).
pub fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut x = vec![0.0; n];
    let mut w = vec![0.0; n];
    for i in 0..n {
        let mut z = (PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        let mut dp = 1.0;
        for _ in 0..100 {
            let (mut p0, mut p1) = (1.0, z);
            for k in 2..=n {
                let p2 = ((2 * k - 1) as f64 * z * p1 - (k - 1) as f64 * p0) / k as f64;
                p0 = p1;
                p1 = p2;
            }
            if n == 1 {
                p0 = 1.0;
                p1 = z;
            }
            dp = n as f64 * (z * p1 - p0) / (z * z - 1.0);
            let dz = p1 / dp;
            z -= dz;
            if dz.abs() < 1e-16 {
                break;
            }
        }
        // Map [−1, 1] to [0, 1].
        x[i] = 0.5 * (1.0 - z);
        w[i] = 1.0 / ((1.0 - z * z) * dp * dp);
    }
    (x, w)
}

/// Applies the matrix `m` (rows × cols, row-major) along `axis` of a row-major array of `shape`; returns the
/// result (shape with `shape[axis]` replaced by `rows`).
fn along(data: &[f64], shape: &[usize], axis: usize, m: &[f64], rows: usize) -> Vec<f64> {
    let cols = shape[axis];
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let mut out = vec![0.0; outer * rows * inner];
    out.par_chunks_mut(rows * inner)
        .zip(data.par_chunks(cols * inner))
        .for_each(|(o, x)| {
            for r in 0..rows {
                let orow = &mut o[r * inner..(r + 1) * inner];
                for c in 0..cols {
                    let a = m[r * cols + c];
                    if a != 0.0 {
                        let xrow = &x[c * inner..(c + 1) * inner];
                        orow.iter_mut().zip(xrow).for_each(|(o, x)| *o += a * x);
                    }
                }
            }
        });
    out
}

fn transpose(m: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut t = vec![0.0; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = m[r * cols + c];
        }
    }
    t
}

/// The sine basis of K modes per axis evaluated at Q Gauss points.
pub struct SineBasis {
    pub d: usize,
    pub modes: usize,
    /// Quadrature nodes and weights on [0, 1].
    pub nodes: Vec<f64>,
    pub weights: Vec<f64>,
    /// Q × K: sin(π k x_q) and its derivative π k cos(π k x_q); and their transposes.
    value: Vec<f64>,
    deriv: Vec<f64>,
    value_t: Vec<f64>,
    deriv_t: Vec<f64>,
}

impl SineBasis {
    pub fn new(d: usize, modes: usize, points: usize) -> Result<Self> {
        if d == 0 || d > MAX_DIM {
            return Err(Error::invalid(format!(
                "the spectral solver works in 1 to {MAX_DIM} dimensions, not {d}; use the Ritz solver above that"
            )));
        }
        if modes == 0 || modes > 64 || points < modes || points > 256 {
            return Err(Error::invalid(format!(
                "spectral: need 1 <= modes <= 64 and modes <= points <= 256, not {modes} modes, {points} points"
            )));
        }
        crate::memory::check(
            "the spectral quadrature grid",
            (points as f64).powi(d as i32) * 8.0 * (3.0 * d as f64 + 6.0),
            "lower --points",
        )?;
        let (nodes, weights) = gauss_legendre(points);
        let mut value = vec![0.0; points * modes];
        let mut deriv = vec![0.0; points * modes];
        for (q, &x) in nodes.iter().enumerate() {
            for k in 0..modes {
                let w = PI * (k + 1) as f64;
                value[q * modes + k] = (w * x).sin();
                deriv[q * modes + k] = w * (w * x).cos();
            }
        }
        Ok(SineBasis {
            d,
            modes,
            value_t: transpose(&value, points, modes),
            deriv_t: transpose(&deriv, points, modes),
            nodes,
            weights,
            value,
            deriv,
        })
    }

    fn points(&self) -> usize {
        self.nodes.len()
    }

    /// The coefficients' values at the quadrature grid, with the derivative along `diff` (if any).
    fn synthesise(&self, c: &[f64], diff: Option<usize>) -> Vec<f64> {
        let (k, q) = (self.modes, self.points());
        let mut shape = vec![k; self.d];
        let mut data = c.to_vec();
        for axis in 0..self.d {
            let m = if diff == Some(axis) {
                &self.deriv
            } else {
                &self.value
            };
            data = along(&data, &shape, axis, m, q);
            shape[axis] = q;
        }
        data
    }

    /// The transpose of [`Self::synthesise`]: Σ_q g_q ∂φ_k(x_q).
    fn analyse(&self, g: &[f64], diff: Option<usize>) -> Vec<f64> {
        let (k, q) = (self.modes, self.points());
        let mut shape = vec![q; self.d];
        let mut data = g.to_vec();
        for axis in 0..self.d {
            let m = if diff == Some(axis) {
                &self.deriv_t
            } else {
                &self.value_t
            };
            data = along(&data, &shape, axis, m, k);
            shape[axis] = k;
        }
        data
    }

    /// The tensor quadrature weight and point of flat index `i`.
    fn point(&self, mut i: usize, x: &mut [f64]) -> f64 {
        let q = self.points();
        let mut w = 1.0;
        for axis in (0..self.d).rev() {
            let j = i % q;
            i /= q;
            x[axis] = self.nodes[j];
            w *= self.weights[j];
        }
        w
    }

    /// |k|² of flat coefficient index `i`.
    fn k2(&self, mut i: usize) -> f64 {
        let mut s = 0.0;
        for _ in 0..self.d {
            let k = (i % self.modes + 1) as f64;
            i /= self.modes;
            s += k * k;
        }
        s
    }
}

/// The discrete problem: basis plus f, u* and ∇u* tabulated on the quadrature grid.
pub struct Galerkin {
    pub problem: Problem,
    pub basis: SineBasis,
    weight: Vec<f64>,
    source: Vec<f64>,
    exact: Vec<f64>,
    exact_grad: Vec<Vec<f64>>,
}

/// Energy, errors and the energy gradient at one iterate.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub energy: f64,
    /// ‖u − u*‖_L2 / ‖u*‖_L2 and ‖∇(u − u*)‖_L2 / ‖∇u*‖_L2.
    pub l2_error: f64,
    pub h1_error: f64,
    #[serde(skip)]
    pub gradient: Vec<f64>,
}

impl Galerkin {
    pub fn new(problem: Problem, modes: usize, points: usize) -> Result<Self> {
        if !problem.solution.zero_on_boundary() {
            return Err(Error::invalid(format!(
                "the spectral solver's sine basis vanishes on the boundary: the {} solution does not (use product)",
                problem.solution.name()
            )));
        }
        let basis = SineBasis::new(problem.d, modes, points)?;
        let d = problem.d;
        let n = points.pow(d as u32);
        let mut weight = vec![0.0; n];
        let mut source = vec![0.0; n];
        let mut exact = vec![0.0; n];
        let mut exact_grad = vec![vec![0.0; n]; d];
        let mut x = vec![0.0; d];
        let mut g = vec![0.0; d];
        for i in 0..n {
            weight[i] = basis.point(i, &mut x);
            source[i] = problem.source(&x);
            exact[i] = problem.exact(&x, &mut g);
            for a in 0..d {
                exact_grad[a][i] = g[a];
            }
        }
        Ok(Galerkin {
            problem,
            basis,
            weight,
            source,
            exact,
            exact_grad,
        })
    }

    /// The number of coefficients K^d.
    pub fn len(&self) -> usize {
        self.basis.modes.pow(self.problem.d as u32)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// E(c), the errors, and ∂E/∂c.
    pub fn evaluate(&self, c: &[f64]) -> Evaluation {
        let d = self.problem.d;
        let lag = self.problem.lagrangian;
        let u = self.basis.synthesise(c, None);
        let grads: Vec<Vec<f64>> = (0..d).map(|a| self.basis.synthesise(c, Some(a))).collect();
        let n = u.len();
        let mut energy = 0.0;
        let (mut e2, mut n2, mut g2, mut gn2) = (0.0, 0.0, 0.0, 0.0);
        let mut r = vec![0.0; n];
        let mut flux = vec![vec![0.0; n]; d];
        let mut p = vec![0.0; d];
        let mut fl = vec![0.0; d];
        for i in 0..n {
            let w = self.weight[i];
            for a in 0..d {
                p[a] = grads[a][i];
            }
            energy += w * (lag.value(u[i], &p) - self.source[i] * u[i]);
            r[i] = w * (lag.du(u[i]) - self.source[i]);
            lag.dp(&p, &mut fl);
            for a in 0..d {
                flux[a][i] = w * fl[a];
                let de = p[a] - self.exact_grad[a][i];
                g2 += w * de * de;
                gn2 += w * self.exact_grad[a][i] * self.exact_grad[a][i];
            }
            let e = u[i] - self.exact[i];
            e2 += w * e * e;
            n2 += w * self.exact[i] * self.exact[i];
        }
        let mut gradient = self.basis.analyse(&r, None);
        for (a, f) in flux.iter().enumerate() {
            let part = self.basis.analyse(f, Some(a));
            gradient.iter_mut().zip(&part).for_each(|(g, v)| *g += v);
        }
        Evaluation {
            energy,
            l2_error: (e2 / n2).sqrt(),
            h1_error: (g2 / gn2).sqrt(),
            gradient,
        }
    }

    /// A safe step 1/M, M bounding the preconditioned Hessian (I − Δ)⁻¹ D²E near u*: the Rayleigh quotient
    /// (⟨∇v, D²_pL ∇v⟩ + ⟨v, ∂²_uL v⟩) / (‖v‖² + ‖∇v‖²) ≤ (Λt + μ)/(1 + t) with t = ‖∇v‖²/‖v‖² ≥ π²d
    /// (Poincaré on the cube), so M = max(Λ, (Λπ²d + μ)/(1 + π²d)); Λ = sup D²_pL and μ = sup ∂²_uL are taken
    /// over 1.2 times the range of u* and ∇u* on the grid.
    pub fn auto_step(&self) -> f64 {
        let lag = self.problem.lagrangian;
        let n = self.exact.len();
        let gmax = (0..n)
            .map(|i| {
                self.exact_grad
                    .iter()
                    .map(|g| g[i] * g[i])
                    .sum::<f64>()
                    .sqrt()
            })
            .fold(0.0, f64::max);
        let umax = self.exact.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        let big = lag.flux_lipschitz(1.2 * gmax);
        let mu = lag.duu(1.2 * umax);
        let t = PI * PI * self.problem.d as f64;
        1.0 / big.max((big * t + mu) / (1.0 + t))
    }

    /// The preconditioned step direction (I − Δ)^(−1) applied to the gradient, in coefficients.
    pub fn precondition(&self, g: &[f64]) -> Vec<f64> {
        let norm = 0.5f64.powi(self.problem.d as i32);
        g.iter()
            .enumerate()
            .map(|(i, v)| v / (norm * (1.0 + PI * PI * self.basis.k2(i))))
            .collect()
    }
}

/// Settings of [`solve`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpectralConfig {
    pub modes: usize,
    pub points: usize,
    /// The step η; `None` for [`Galerkin::auto_step`].
    pub step: Option<f64>,
    pub iterations: usize,
}

impl Default for SpectralConfig {
    fn default() -> Self {
        SpectralConfig {
            modes: 8,
            points: 24,
            step: None,
            iterations: 100,
        }
    }
}

/// One iterate's record.
#[derive(Debug, Clone, Serialize)]
pub struct SpectralRow {
    pub iteration: usize,
    pub energy: f64,
    pub l2_error: f64,
    pub h1_error: f64,
    /// ‖(I − Δ)^(−1) DE(u)‖ in the H¹ metric.
    pub gradient_norm: f64,
}

/// The outcome of [`solve`].
#[derive(Debug, Clone, Serialize)]
pub struct SpectralReport {
    pub rows: Vec<SpectralRow>,
    /// The per-iteration factor of E(u_t) − E_final, fitted on the iterates whose gap is above 1e-13 relative.
    pub rate: Option<f64>,
    /// The step used.
    pub step: f64,
    #[serde(skip)]
    pub coefficients: Vec<f64>,
}

/// Preconditioned gradient descent from u₀ = 0. A step that raises the energy is refused: for a convex energy
/// with η below 2/M every step lowers it, so a rise means η is too large.
pub fn solve(
    problem: Problem,
    cfg: SpectralConfig,
    on_row: &mut dyn FnMut(&SpectralRow),
) -> Result<SpectralReport> {
    if let Some(step) = cfg.step {
        if !(step.is_finite() && step > 0.0) {
            return Err(Error::invalid(format!(
                "spectral: the step must be > 0, not {step}"
            )));
        }
    }
    let g = Galerkin::new(problem, cfg.modes, cfg.points)?;
    let step = cfg.step.unwrap_or_else(|| g.auto_step());
    let mut c = vec![0.0; g.len()];
    let mut rows = Vec::with_capacity(cfg.iterations + 1);
    for it in 0..=cfg.iterations {
        let ev = g.evaluate(&c);
        let previous = rows.last().map(|r: &SpectralRow| r.energy);
        if !ev.energy.is_finite()
            || previous.is_some_and(|e| ev.energy > e + 1e-12 * e.abs().max(1.0))
        {
            return Err(Error::invalid(format!(
                "spectral: the energy rose at iteration {it} (step {step} is above 2/M for this problem); \
                 lower --step or leave it to auto ({:.3e})",
                g.auto_step()
            )));
        }
        let dir = g.precondition(&ev.gradient);
        let gn: f64 = dir
            .iter()
            .zip(&ev.gradient)
            .map(|(a, b)| a * b)
            .sum::<f64>()
            .max(0.0)
            .sqrt();
        let row = SpectralRow {
            iteration: it,
            energy: ev.energy,
            l2_error: ev.l2_error,
            h1_error: ev.h1_error,
            gradient_norm: gn,
        };
        on_row(&row);
        rows.push(row);
        if it < cfg.iterations {
            c.iter_mut().zip(&dir).for_each(|(c, v)| *c -= step * v);
        }
    }
    let rate = fit_rate(&rows);
    Ok(SpectralReport {
        rows,
        rate,
        step,
        coefficients: c,
    })
}

/// The geometric rate of E_t − E_final by least squares on log(gap) over the iterates with a gap above 1e-13
/// of |E_final| (at least three needed).
fn fit_rate(rows: &[SpectralRow]) -> Option<f64> {
    let last = rows.last()?.energy;
    let floor = 1e-13 * last.abs().max(1e-300);
    let pts: Vec<(f64, f64)> = rows
        .iter()
        .take(rows.len().saturating_sub(1))
        .filter(|r| r.energy - last > floor)
        .map(|r| (r.iteration as f64, (r.energy - last).ln()))
        .collect();
    if pts.len() < 3 {
        return None;
    }
    let n = pts.len() as f64;
    let (sx, sy) = pts.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = pts.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    Some((num / den).exp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pde::variational::{Lagrangian, Solution};

    #[test]
    fn gauss_legendre_integrates_polynomials_exactly() {
        let (x, w) = gauss_legendre(5);
        for p in 0..10 {
            let s: f64 = x.iter().zip(&w).map(|(x, w)| w * x.powi(p)).sum();
            assert!((s - 1.0 / (p as f64 + 1.0)).abs() < 1e-14, "x^{p}: {s}");
        }
    }

    #[test]
    fn the_energy_gradient_matches_finite_differences() {
        let pb = Problem::new(
            2,
            Lagrangian::PLaplace { q: 3.0, kappa: 0.5 },
            Solution::Product,
        )
        .unwrap();
        let g = Galerkin::new(pb, 4, 10).unwrap();
        let c: Vec<f64> = (0..g.len())
            .map(|i| 0.3 * ((i * 7 % 5) as f64 - 2.0) / 3.0)
            .collect();
        let ev = g.evaluate(&c);
        for i in 0..g.len() {
            let (mut a, mut b) = (c.clone(), c.clone());
            a[i] += 1e-6;
            b[i] -= 1e-6;
            let fd = (g.evaluate(&a).energy - g.evaluate(&b).energy) / 2e-6;
            assert!(
                (fd - ev.gradient[i]).abs() < 1e-6,
                "{i}: {fd} vs {}",
                ev.gradient[i]
            );
        }
    }
}
