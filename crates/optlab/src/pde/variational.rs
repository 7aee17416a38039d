//! Nonlinear elliptic variational PDEs (P22, "Neural Network Approximations of PDEs Beyond Linearity"): the energy
//! E(u) = ∫_Ω L(u, ∇u) − f u dx over the unit cube Ω = [0, 1]^d, whose minimiser solves the Euler–Lagrange equation
//! −div ∂_p L(u, ∇u) + ∂_u L(u, ∇u) = f, with Dirichlet data u = g on ∂Ω; and manufactured solutions u* with the f
//! and g that make them exact.

use crate::{Error, Result};
use std::f64::consts::PI;

/// The Lagrangian L(u, p) (p = ∇u). Both are convex in p, with D²_p L ≥ I.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Lagrangian {
    /// ½|p|² + (γ/4) u⁴: the semilinear −Δu + γu³ = f.
    Quartic { gamma: f64 },
    /// ½|p|² + (κ/q)|p|^q with q ≥ 2: the quasilinear p-Laplacian-type −div((1 + κ|∇u|^(q−2))∇u) = f.
    PLaplace { q: f64, kappa: f64 },
}

impl Lagrangian {
    /// Parses `quartic[:γ]` or `plaplace[:q[:κ]]` (defaults γ = 1, q = 4, κ = 1).
    pub fn parse(s: &str) -> Result<Self> {
        let mut parts = s.split(':');
        let name = parts.next().unwrap_or("");
        let nums: Vec<f64> = parts
            .map(|p| {
                p.parse::<f64>()
                    .map_err(|_| Error::invalid(format!("Lagrangian {s:?}: {p:?} is not a number")))
            })
            .collect::<Result<_>>()?;
        let l = match (name, nums.as_slice()) {
            ("quartic", []) => Lagrangian::Quartic { gamma: 1.0 },
            ("quartic", [g]) => Lagrangian::Quartic { gamma: *g },
            ("plaplace", []) => Lagrangian::PLaplace { q: 4.0, kappa: 1.0 },
            ("plaplace", [q]) => Lagrangian::PLaplace { q: *q, kappa: 1.0 },
            ("plaplace", [q, k]) => Lagrangian::PLaplace { q: *q, kappa: *k },
            _ => {
                return Err(Error::invalid(format!(
                    "unknown Lagrangian {s:?}: use quartic[:gamma] or plaplace[:q[:kappa]]"
                )))
            }
        };
        l.validate()?;
        Ok(l)
    }

    /// Refuses parameters that make the energy non-convex or undefined.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Lagrangian::Quartic { gamma } if !(gamma.is_finite() && gamma >= 0.0) => Err(
                Error::invalid(format!("quartic: gamma must be finite and >= 0, not {gamma}")),
            ),
            Lagrangian::PLaplace { q, kappa }
                if !((2.0..=8.0).contains(&q) && kappa.is_finite() && kappa >= 0.0) =>
            {
                Err(Error::invalid(format!(
                    "plaplace: need 2 <= q <= 8 and kappa >= 0 (finite), not q = {q}, kappa = {kappa}"
                )))
            }
            _ => Ok(()),
        }
    }

    /// L(u, p).
    pub fn value(&self, u: f64, p: &[f64]) -> f64 {
        let p2: f64 = p.iter().map(|v| v * v).sum();
        match *self {
            Lagrangian::Quartic { gamma } => 0.5 * p2 + 0.25 * gamma * u.powi(4),
            Lagrangian::PLaplace { q, kappa } => 0.5 * p2 + kappa / q * p2.powf(0.5 * q),
        }
    }

    /// ∂_u L(u, p).
    pub fn du(&self, u: f64) -> f64 {
        match *self {
            Lagrangian::Quartic { gamma } => gamma * u * u * u,
            Lagrangian::PLaplace { .. } => 0.0,
        }
    }

    /// ∂²_u L(u, p).
    pub fn duu(&self, u: f64) -> f64 {
        match *self {
            Lagrangian::Quartic { gamma } => 3.0 * gamma * u * u,
            Lagrangian::PLaplace { .. } => 0.0,
        }
    }

    /// The flux coefficient a(|p|) with ∂_p L = a(|p|) p.
    pub fn flux_coefficient(&self, p2: f64) -> f64 {
        match *self {
            Lagrangian::Quartic { .. } => 1.0,
            Lagrangian::PLaplace { q, kappa } => 1.0 + kappa * p2.powf(0.5 * q - 1.0),
        }
    }

    /// ∂_p L(u, p) written into `out`.
    pub fn dp(&self, p: &[f64], out: &mut [f64]) {
        let a = self.flux_coefficient(p.iter().map(|v| v * v).sum());
        out.iter_mut().zip(p).for_each(|(o, v)| *o = a * v);
    }

    /// div ∂_p L(∇u) for a u with gradient p and Hessian h (row-major d × d): tr(D²_p L · h), where
    /// D²_p L = a I + κ(q − 2)|p|^(q−2) p̂ p̂ᵀ.
    pub fn divergence(&self, p: &[f64], h: &[f64]) -> f64 {
        let d = p.len();
        let p2: f64 = p.iter().map(|v| v * v).sum();
        let trace: f64 = (0..d).map(|i| h[i * d + i]).sum();
        let a = self.flux_coefficient(p2);
        let extra = match *self {
            Lagrangian::PLaplace { q, kappa } if p2 > 0.0 => {
                let php: f64 = (0..d)
                    .map(|i| p[i] * (0..d).map(|j| h[i * d + j] * p[j]).sum::<f64>())
                    .sum();
                kappa * (q - 2.0) * p2.powf(0.5 * q - 2.0) * php
            }
            _ => 0.0,
        };
        a * trace + extra
    }

    /// A bound on the largest eigenvalue of D²_p L for |p| ≤ r (the smallest is 1).
    pub fn flux_lipschitz(&self, r: f64) -> f64 {
        match *self {
            Lagrangian::Quartic { .. } => 1.0,
            Lagrangian::PLaplace { q, kappa } => 1.0 + kappa * (q - 1.0) * r.powf(q - 2.0),
        }
    }
}

/// A manufactured solution u* on [0, 1]^d.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Solution {
    /// u* = Π_i sin(π x_i): zero on ∂Ω, the first Dirichlet eigenfunction of −Δ.
    Product,
    /// u* = d^(−1/2) Σ_i sin(2π x_i): a sum of d one-dimensional ridges (‖u*‖²_L2 = ½ in every d), with
    /// non-zero boundary values.
    Additive,
}

impl Solution {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "product" => Ok(Solution::Product),
            "additive" => Ok(Solution::Additive),
            _ => Err(Error::invalid(format!(
                "unknown solution {s:?}: use product (prod sin(pi x_i), zero on the boundary) or additive \
                 (sum sin(2 pi x_i) / sqrt(d))"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Solution::Product => "product",
            Solution::Additive => "additive",
        }
    }

    /// Whether u* vanishes on ∂Ω.
    pub fn zero_on_boundary(self) -> bool {
        matches!(self, Solution::Product)
    }

    /// u*(x), writing ∇u*(x) into `grad` and, when given, the Hessian (row-major) into `hess`.
    pub fn eval(self, x: &[f64], grad: &mut [f64], hess: Option<&mut [f64]>) -> f64 {
        let d = x.len();
        match self {
            Solution::Product => {
                let s: Vec<f64> = x.iter().map(|&v| (PI * v).sin()).collect();
                let c: Vec<f64> = x.iter().map(|&v| PI * (PI * v).cos()).collect();
                // Products leaving out one (two) factors, stable where a sine vanishes.
                let without = |skip: &[usize]| -> f64 {
                    (0..d).filter(|k| !skip.contains(k)).map(|k| s[k]).product()
                };
                for i in 0..d {
                    grad[i] = c[i] * without(&[i]);
                }
                if let Some(h) = hess {
                    let u = without(&[]);
                    for i in 0..d {
                        for j in 0..d {
                            h[i * d + j] = if i == j {
                                -PI * PI * u
                            } else {
                                c[i] * c[j] * without(&[i, j])
                            };
                        }
                    }
                }
                without(&[])
            }
            Solution::Additive => {
                let scale = 1.0 / (d as f64).sqrt();
                let w = 2.0 * PI;
                for i in 0..d {
                    grad[i] = scale * w * (w * x[i]).cos();
                }
                if let Some(h) = hess {
                    h.iter_mut().for_each(|v| *v = 0.0);
                    for i in 0..d {
                        h[i * d + i] = -scale * w * w * (w * x[i]).sin();
                    }
                }
                scale * x.iter().map(|&v| (w * v).sin()).sum::<f64>()
            }
        }
    }
}

/// The problem: dimension, Lagrangian and manufactured solution (which fixes f and g).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Problem {
    pub d: usize,
    pub lagrangian: Lagrangian,
    pub solution: Solution,
}

/// Buffers for ∇u* and its Hessian at one point.
#[derive(Debug, Clone)]
pub struct Scratch {
    grad: Vec<f64>,
    hess: Vec<f64>,
}

impl Scratch {
    pub fn new(d: usize) -> Self {
        Scratch {
            grad: vec![0.0; d],
            hess: vec![0.0; d * d],
        }
    }
}

/// The largest dimension accepted.
pub const MAX_DIM: usize = 64;

impl Problem {
    pub fn new(d: usize, lagrangian: Lagrangian, solution: Solution) -> Result<Self> {
        if d == 0 || d > MAX_DIM {
            return Err(Error::invalid(format!(
                "the dimension must be between 1 and {MAX_DIM}, not {d}"
            )));
        }
        lagrangian.validate()?;
        Ok(Problem {
            d,
            lagrangian,
            solution,
        })
    }

    /// f(x) = −div ∂_p L(u*, ∇u*) + ∂_u L(u*, ∇u*).
    pub fn source(&self, x: &[f64]) -> f64 {
        self.source_with(x, &mut Scratch::new(self.d))
    }

    /// [`Self::source`] with caller-owned buffers (no allocation per point).
    pub fn source_with(&self, x: &[f64], s: &mut Scratch) -> f64 {
        let u = self.solution.eval(x, &mut s.grad, Some(&mut s.hess));
        -self.lagrangian.divergence(&s.grad, &s.hess) + self.lagrangian.du(u)
    }

    /// u*(x) and ∇u*(x).
    pub fn exact(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        self.solution.eval(x, grad, None)
    }

    /// The Robin data g_β = u* + ∂_pL(∇u*)·n/(2β) on face `face` (2i + s: x_i = s, outward normal (2s − 1)e_i) at
    /// y: u* minimises E(u) + β∫_∂Ω (u − g_β)² exactly, since its natural boundary condition is
    /// ∂_pL(∇u)·n + 2β(u − g_β) = 0.
    pub fn robin_data(&self, y: &[f64], face: usize, beta: f64) -> f64 {
        let mut g = vec![0.0; self.d];
        let u = self.solution.eval(y, &mut g, None);
        let mut flux = vec![0.0; self.d];
        self.lagrangian.dp(&g, &mut flux);
        let normal = if face % 2 == 1 { 1.0 } else { -1.0 };
        u + normal * flux[face / 2] / (2.0 * beta)
    }

    /// The energy density L(u, ∇u) − f u at x.
    pub fn density(&self, x: &[f64], u: f64, p: &[f64], f: f64) -> f64 {
        let _ = x;
        self.lagrangian.value(u, p) - f * u
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The source term is −div ∂_pL + ∂_uL of u*: check it against central differences of the flux.
    #[test]
    fn source_matches_finite_differences_of_the_flux() {
        for (lag, sol) in [
            (Lagrangian::Quartic { gamma: 1.5 }, Solution::Product),
            (
                Lagrangian::PLaplace { q: 3.0, kappa: 0.7 },
                Solution::Product,
            ),
            (
                Lagrangian::PLaplace { q: 4.0, kappa: 1.0 },
                Solution::Additive,
            ),
        ] {
            let d = 3;
            let pb = Problem::new(d, lag, sol).unwrap();
            let x = [0.31, 0.62, 0.47];
            let flux = |y: &[f64]| {
                let mut g = vec![0.0; d];
                sol.eval(y, &mut g, None);
                let mut out = vec![0.0; d];
                lag.dp(&g, &mut out);
                out
            };
            let e = 1e-5;
            let mut div = 0.0;
            for i in 0..d {
                let (mut a, mut b) = (x.to_vec(), x.to_vec());
                a[i] += e;
                b[i] -= e;
                div += (flux(&a)[i] - flux(&b)[i]) / (2.0 * e);
            }
            let mut g = vec![0.0; d];
            let u = sol.eval(&x, &mut g, None);
            let want = -div + lag.du(u);
            assert!(
                (pb.source(&x) - want).abs() < 1e-6 * want.abs().max(1.0),
                "{lag:?} {sol:?}: {} vs {want}",
                pb.source(&x)
            );
        }
    }

    #[test]
    fn gradients_and_hessians_match_finite_differences() {
        for sol in [Solution::Product, Solution::Additive] {
            let x = [0.2, 0.7, 0.55, 0.9];
            let d = x.len();
            let mut g = vec![0.0; d];
            let mut h = vec![0.0; d * d];
            sol.eval(&x, &mut g, Some(&mut h));
            let e = 1e-6;
            for i in 0..d {
                let (mut a, mut b) = (x.to_vec(), x.to_vec());
                a[i] += e;
                b[i] -= e;
                let (mut ga, mut gb) = (vec![0.0; d], vec![0.0; d]);
                let fd = (sol.eval(&a, &mut ga, None) - sol.eval(&b, &mut gb, None)) / (2.0 * e);
                assert!((fd - g[i]).abs() < 1e-7, "{sol:?} grad {i}");
                for j in 0..d {
                    let fd = (ga[j] - gb[j]) / (2.0 * e);
                    assert!((fd - h[i * d + j]).abs() < 1e-6, "{sol:?} hess {i},{j}");
                }
            }
        }
    }

    /// With the Robin data, u* is a stationary point of the penalised energy: its first variation along any v
    /// vanishes (d = 1, Gauss–Legendre quadrature, v = 1 + x + x², both faces).
    #[test]
    fn the_robin_data_make_the_manufactured_solution_stationary() {
        let (xs, ws) = crate::pde::spectral::gauss_legendre(40);
        for lag in [
            Lagrangian::Quartic { gamma: 1.0 },
            Lagrangian::PLaplace { q: 4.0, kappa: 0.5 },
        ] {
            let pb = Problem::new(1, lag, Solution::Additive).unwrap();
            let beta = 3.0;
            let (v, dv) = (|x: f64| 1.0 + x + x * x, |x: f64| 1.0 + 2.0 * x);
            let mut first = 0.0;
            for (&x, &w) in xs.iter().zip(&ws) {
                let mut g = [0.0];
                let u = pb.exact(&[x], &mut g);
                let mut flux = [0.0];
                lag.dp(&g, &mut flux);
                first += w * ((lag.du(u) - pb.source(&[x])) * v(x) + flux[0] * dv(x));
            }
            for (face, y) in [(0, 0.0), (1, 1.0)] {
                let mut g = [0.0];
                let u = pb.exact(&[y], &mut g);
                first += 2.0 * beta * (u - pb.robin_data(&[y], face, beta)) * v(y);
            }
            assert!(first.abs() < 1e-9, "{lag:?}: first variation {first}");
        }
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(Lagrangian::parse("plaplace:1.5").is_err());
        assert!(Lagrangian::parse("quartic:-1").is_err());
        assert!(Lagrangian::parse("quartic:x").is_err());
        assert!(Lagrangian::parse("cubic").is_err());
        assert!(Problem::new(0, Lagrangian::Quartic { gamma: 1.0 }, Solution::Product).is_err());
        assert_eq!(
            Lagrangian::parse("plaplace:3").unwrap(),
            Lagrangian::PLaplace { q: 3.0, kappa: 1.0 }
        );
    }
}
