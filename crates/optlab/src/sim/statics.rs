//! Static equilibrium of the pad under a frictionless indenter (P20's quasi-static limit), and the Hertz check:
//! the force–indentation curve of a cylinder pressed into the pad against the analytic line contact.
//!
//! Equilibrium is found by Newton's method on the total energy Π = E_elastic + E_penalty over the free nodes,
//! each Newton system solved by conjugate gradients with a Jacobi preconditioner, its Hessian-vector products
//! the reverse passes of the forces (the same code the gradients through time use), and an Armijo line search.
//!
//! Hertz line contact (plane strain, E* = E/(1 − ν²)): a load P per unit length on a cylinder of radius R gives
//! the contact half-width a = 2√(PR/(πE*)) and the elliptic pressure p(x) = (2P/(πa))√(1 − x²/a²), so
//! ⟨x²⟩_p = a²/4. In 2-D the indentation needs a reference point; relative to the point on the axis at depth d
//! (a ≪ d ≪ the body) it is δ = (P/(πE*)) (2 ln(2d/a) − ν/(1 − ν)) (Flamant's solution integrated over the
//! Hertz pressure).

use super::contact::Indenter;
use super::fem::{Law, Material, Pad};
use super::mesh::Mesh;
use crate::{Error, Result};

/// An equilibrium and what it took.
#[derive(Debug, Clone, PartialEq)]
pub struct Equilibrium {
    pub x: Vec<[f64; 2]>,
    /// The force the pad exerts on the indenter.
    pub force: [f64; 2],
    pub newton: usize,
    pub cg: usize,
    /// ‖net force on the free nodes‖ / ‖contact force‖ at the end.
    pub residual: f64,
}

fn dot(a: &[[f64; 2]], b: &[[f64; 2]]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(p, q)| p[0] * q[0] + p[1] * q[1])
        .sum()
}

struct Problem<'a> {
    pad: &'a Pad,
    indenter: Indenter,
    c: [f64; 2],
    free: Vec<bool>,
    /// Zero velocities (statics has no friction or dissipation to feed).
    still: Vec<[f64; 2]>,
}

impl Problem<'_> {
    /// The net force on the free nodes (zero on the base), and the force on the indenter.
    fn residual(&self, x: &[[f64; 2]], r: &mut [[f64; 2]]) -> Result<[f64; 2]> {
        self.pad.elastic(x, Some(r))?;
        let force = self.indenter.forces(x, &self.still, self.c, [0.0; 2], r);
        self.mask(r);
        Ok(force)
    }

    fn energy(&self, x: &[[f64; 2]]) -> Result<f64> {
        Ok(self.pad.elastic(x, None)? + self.indenter.energy(x, self.c))
    }

    fn mask(&self, v: &mut [[f64; 2]]) {
        for (p, &f) in v.iter_mut().zip(&self.free) {
            if !f {
                *p = [0.0; 2];
            }
        }
    }

    /// The unit normal n = (x − c)/|x − c| of a node inside the indenter.
    fn normal(&self, x: [f64; 2]) -> Option<[f64; 2]> {
        let d = [x[0] - self.c[0], x[1] - self.c[1]];
        let r = d[0].hypot(d[1]);
        (r > 0.0 && r < self.indenter.radius).then(|| [d[0] / r, d[1] / r])
    }

    /// H p, H the Hessian of Π with the penalty's curvature term −k|g|/r (I − nnᵀ) left out: it is negative
    /// and, at a stiff penalty, larger than an element's stiffness, so the full Hessian is indefinite; what is
    /// kept, k nnᵀ per contact node, keeps H positive definite (a modified Newton method).
    fn hessian(&self, x: &[[f64; 2]], p: &[[f64; 2]], out: &mut [[f64; 2]]) -> Result<()> {
        out.iter_mut().for_each(|v| *v = [0.0; 2]);
        self.pad.elastic_vjp(x, p, out)?;
        let k = self.indenter.stiffness;
        for (i, xi) in x.iter().enumerate() {
            out[i] = [-out[i][0], -out[i][1]];
            if let Some(n) = self.normal(*xi) {
                let pn = k * (p[i][0] * n[0] + p[i][1] * n[1]);
                out[i][0] += pn * n[0];
                out[i][1] += pn * n[1];
            }
        }
        self.mask(out);
        Ok(())
    }

    /// The diagonal of [`Problem::hessian`]: per element A ⟨dP[G], G⟩ for G = ∂F/∂x_{a,k}, plus k n_k².
    fn diagonal(&self, x: &[[f64; 2]]) -> Result<Vec<[f64; 2]>> {
        let pad = self.pad;
        let mut diag = vec![[0.0; 2]; x.len()];
        for (e, t) in pad.mesh.tris.iter().enumerate() {
            let f = pad.deformation(x, e);
            let dm = pad.mesh.dm_inv[e];
            for (a, &node) in t.iter().enumerate() {
                for k in 0..2 {
                    // δD_s: row k is (1, 0), (0, 1) or (−1, −1) for local node 1, 2 or 0.
                    let row = [[-1.0, -1.0], [1.0, 0.0], [0.0, 1.0]][a];
                    let r = [
                        row[0] * dm[0] + row[1] * dm[2],
                        row[0] * dm[1] + row[1] * dm[3],
                    ];
                    let mut g = [0.0; 4];
                    g[2 * k] = r[0];
                    g[2 * k + 1] = r[1];
                    let (dp, _, _) = pad.material.stress_vjp(&f, &g).ok_or_else(|| {
                        Error::NonFinite(format!("the pad's element {e} inverted"))
                    })?;
                    diag[node][k] += pad.mesh.area[e] * (0..4).map(|q| dp[q] * g[q]).sum::<f64>();
                }
            }
        }
        for (i, xi) in x.iter().enumerate() {
            if let Some(n) = self.normal(*xi) {
                for k in 0..2 {
                    diag[i][k] += self.indenter.stiffness * n[k] * n[k];
                }
            }
        }
        Ok(diag)
    }
}

/// The most Newton steps, and conjugate-gradient steps per Newton step.
const MAX_NEWTON: usize = 60;
const MAX_CG: usize = 50_000;
/// The relative residual each Newton system is solved to (inexact Newton).
const CG_TOL: f64 = 1e-6;

/// The equilibrium of the pad (base clamped) under the indenter at `c` without friction, from `start`, to a
/// net force `tol` times the contact force.
pub fn equilibrium(
    pad: &Pad,
    indenter: &Indenter,
    c: [f64; 2],
    start: &[[f64; 2]],
    tol: f64,
) -> Result<Equilibrium> {
    let n = pad.mesh.rest.len();
    if start.len() != n || !(tol > 0.0 && tol < 1.0) || c.iter().any(|v| !v.is_finite()) {
        return Err(Error::invalid(format!(
            "equilibrium: need {n} starting positions, a finite centre and 0 < tol < 1"
        )));
    }
    let mut free = vec![true; n];
    pad.mesh.base.iter().for_each(|&i| free[i] = false);
    let prob = Problem {
        pad,
        indenter: Indenter {
            friction: 0.0,
            ..*indenter
        },
        c,
        free,
        still: vec![[0.0; 2]; n],
    };
    let mut x = start.to_vec();
    let (mut r, mut hp) = (vec![[0.0; 2]; n], vec![[0.0; 2]; n]);
    let mut cg_total = 0;
    for newton in 0..=MAX_NEWTON {
        let force = prob.residual(&x, &mut r)?;
        let scale = force[0].hypot(force[1]).max(f64::MIN_POSITIVE);
        let residual = dot(&r, &r).sqrt() / scale;
        if residual <= tol || force == [0.0; 2] && dot(&r, &r) == 0.0 {
            return Ok(Equilibrium {
                x,
                force,
                newton,
                cg: cg_total,
                residual,
            });
        }
        if newton == MAX_NEWTON {
            break;
        }
        // Solve H u = r by preconditioned CG (stopping at negative curvature).
        let diag = prob.diagonal(&x)?;
        let inv: Vec<[f64; 2]> = diag
            .iter()
            .map(|d| [1.0 / d[0].max(1e-300), 1.0 / d[1].max(1e-300)])
            .collect();
        let precondition = |v: &[[f64; 2]], out: &mut Vec<[f64; 2]>| {
            out.clear();
            out.extend(v.iter().zip(&inv).map(|(a, b)| [a[0] * b[0], a[1] * b[1]]));
        };
        let mut u = vec![[0.0; 2]; n];
        let mut res = r.clone();
        let mut z = Vec::with_capacity(n);
        precondition(&res, &mut z);
        prob.mask(&mut z);
        let mut p = z.clone();
        let mut rz = dot(&res, &z);
        let r0 = dot(&r, &r).sqrt();
        for _ in 0..MAX_CG {
            cg_total += 1;
            prob.hessian(&x, &p, &mut hp)?;
            let curvature = dot(&p, &hp);
            if curvature <= 0.0 {
                if dot(&u, &u) == 0.0 {
                    u.clone_from(&r);
                }
                break;
            }
            let alpha = rz / curvature;
            for i in 0..n {
                for k in 0..2 {
                    u[i][k] += alpha * p[i][k];
                    res[i][k] -= alpha * hp[i][k];
                }
            }
            if dot(&res, &res).sqrt() <= CG_TOL * r0 {
                break;
            }
            precondition(&res, &mut z);
            prob.mask(&mut z);
            let rz_new = dot(&res, &z);
            let beta = rz_new / rz;
            rz = rz_new;
            for (pi, zi) in p.iter_mut().zip(&z) {
                pi[0] = zi[0] + beta * pi[0];
                pi[1] = zi[1] + beta * pi[1];
            }
        }
        // Armijo on Π along u (a descent direction: ⟨∇Π, u⟩ = −⟨r, u⟩ < 0).
        let e0 = prob.energy(&x)?;
        let slope = -dot(&r, &u);
        let mut step = 1.0;
        loop {
            let trial: Vec<[f64; 2]> = x
                .iter()
                .zip(&u)
                .map(|(a, b)| [a[0] + step * b[0], a[1] + step * b[1]])
                .collect();
            let ok = match prob.energy(&trial) {
                Ok(e) => e <= e0 + 1e-4 * step * slope || (e - e0).abs() <= 1e-15 * e0.abs(),
                Err(_) => false,
            };
            if ok {
                x = trial;
                break;
            }
            step *= 0.5;
            if step < 1e-12 {
                return Err(Error::invalid(
                    "equilibrium: the line search failed (the indentation is too deep for the mesh)",
                ));
            }
        }
    }
    Err(Error::invalid(format!(
        "equilibrium: no convergence to {tol:e} in {MAX_NEWTON} Newton steps"
    )))
}

/// The most coordinates one direction of a graded mesh takes.
pub const MAX_GRADED: usize = 1024;

/// Coordinates from `-extent` to `extent` (or, with `one_sided`, from `-extent` to 0): uniform with spacing `h`
/// over |s| ≤ `fine`, then growing geometrically by `growth` > 1 per cell; an error past [`MAX_GRADED`].
pub fn graded(h: f64, fine: f64, extent: f64, growth: f64, one_sided: bool) -> Result<Vec<f64>> {
    if !(h > 0.0 && extent.is_finite() && extent > 0.0 && growth.is_finite() && growth > 1.0) {
        return Err(Error::invalid(format!(
            "graded coordinates need spacing > 0, a finite extent > 0 and growth > 1, not {h}, {extent}, {growth}"
        )));
    }
    let mut half = vec![0.0];
    let (mut s, mut dh) = (0.0, h);
    while s < extent - 1e-12 * extent {
        if half.len() > MAX_GRADED {
            return Err(Error::invalid(format!(
                "a graded mesh of spacing {h} near the contact would need more than {MAX_GRADED} nodes each way; \
                 use a coarser spacing"
            )));
        }
        if s >= fine - 1e-12 {
            dh *= growth;
        }
        s = (s + dh).min(extent);
        half.push(s);
    }
    let mut out: Vec<f64> = half.iter().rev().map(|v| -v).collect();
    if !one_sided {
        out.extend(&half[1..]);
    }
    Ok(out)
}

/// One point of the Hertz check.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct HertzPoint {
    /// How far the indenter is pushed below the first touch.
    pub depth: f64,
    /// The load per unit length.
    pub force: f64,
    /// The surface's indentation relative to the axis point at depth `reference` (simulated, then Hertz's).
    pub delta: f64,
    pub delta_hertz: f64,
    /// The contact half-width from the pressure's second moment, a = 2√⟨x²⟩ (simulated, then Hertz's).
    pub half_width: f64,
    pub half_width_hertz: f64,
    pub reference: f64,
    pub newton: usize,
    pub cg: usize,
}

/// The Hertz check's setting: a linear-elastic body (E, ν) of half-width and depth `size` with a graded mesh of
/// spacing `spacing` near the contact, a cylinder of radius `radius` pushed to the `depths`, the indentation
/// referred to the axis point at depth `reference`.
#[derive(Debug, Clone, PartialEq)]
pub struct HertzSetup {
    pub young: f64,
    pub poisson: f64,
    pub radius: f64,
    pub size: f64,
    pub spacing: f64,
    pub reference: f64,
    pub depths: Vec<f64>,
}

impl Default for HertzSetup {
    fn default() -> Self {
        HertzSetup {
            young: 1.0,
            poisson: 0.3,
            radius: 1.0,
            size: 8.0,
            spacing: 0.01,
            reference: 1.0,
            depths: vec![0.002, 0.004, 0.006, 0.008, 0.010],
        }
    }
}

/// The force–indentation curve of the Hertz check, one equilibrium per depth (each from the previous one).
pub fn hertz_curve(setup: &HertzSetup) -> Result<Vec<HertzPoint>> {
    let s = setup;
    let ok = |v: f64| v.is_finite() && v > 0.0;
    if !(ok(s.radius) && ok(s.size) && ok(s.spacing) && ok(s.reference))
        || s.reference >= s.size
        || s.spacing * 20.0 > s.size
        || s.depths.is_empty()
        || s.depths.iter().any(|d| !ok(*d) || *d >= 0.5 * s.radius)
    {
        return Err(Error::invalid(
            "hertz: need 0 < spacing <= size/20, 0 < reference < size and depths in (0, radius/2)",
        ));
    }
    let material = Material::with_law(Law::Linear, s.young, s.poisson)?;
    let fine = (10.0 * s.spacing)
        .max(2.0 * (2.0 * s.radius * s.depths.iter().cloned().fold(0.0, f64::max)).sqrt());
    let xs = graded(s.spacing, fine, s.size, 1.15, false)?;
    let ys = graded(s.spacing, fine, s.size, 1.15, true)?;
    let mesh = Mesh::grid(&xs, &ys)?;
    let pad = Pad::new(mesh, material, 1.0)?;
    // The penalty: stiff against the elastic element stiffness at the finest spacing.
    let indenter = Indenter::new(s.radius, 1e3 * s.young, 0.0, 1.0)?;
    let top = pad.mesh.surface[xs.len() / 2];
    let axis: Vec<usize> = (0..pad.mesh.rest.len())
        .filter(|&i| pad.mesh.rest[i][0] == 0.0)
        .collect();
    let below = *axis
        .iter()
        .min_by(|&&a, &&b| {
            let d = |i: usize| (pad.mesh.rest[i][1] + s.reference).abs();
            d(a).total_cmp(&d(b))
        })
        .expect("the axis has nodes");
    let reference = -pad.mesh.rest[below][1];
    let e_star = s.young / (1.0 - s.poisson * s.poisson);
    let mut x = pad.mesh.rest.clone();
    let mut out = Vec::with_capacity(s.depths.len());
    for &depth in &s.depths {
        let c = [0.0, s.radius - depth];
        let eq = equilibrium(&pad, &indenter, c, &x, 1e-7)?;
        x = eq.x;
        let p = eq.force[1];
        let (mut m0, mut m2) = (0.0, 0.0);
        for xi in &x {
            if let Some(f) = indenter.node_force([xi[0] - c[0], xi[1] - c[1]], [0.0; 2]) {
                m0 += f[1];
                m2 += f[1] * xi[0] * xi[0];
            }
        }
        let a_hertz = 2.0 * (p * s.radius / (std::f64::consts::PI * e_star)).sqrt();
        out.push(HertzPoint {
            depth,
            force: p,
            delta: -(x[top][1] - pad.mesh.rest[top][1]) + (x[below][1] - pad.mesh.rest[below][1]),
            delta_hertz: p / (std::f64::consts::PI * e_star)
                * (2.0 * (2.0 * reference / a_hertz).ln() - s.poisson / (1.0 - s.poisson)),
            half_width: 2.0 * (m2 / m0).sqrt(),
            half_width_hertz: a_hertz,
            reference,
            newton: eq.newton,
            cg: eq.cg,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graded_coordinates_are_fine_near_the_contact_and_reach_the_edges() {
        let g = graded(0.1, 0.3, 2.0, 1.5, false).unwrap();
        assert_eq!((g[0], *g.last().unwrap()), (-2.0, 2.0));
        assert!(g.windows(2).all(|w| w[1] > w[0]));
        let mid = g.len() / 2;
        assert!((g[mid + 1] - g[mid] - 0.1).abs() < 1e-12);
        assert_eq!(
            *graded(0.1, 0.3, 2.0, 1.5, true).unwrap().last().unwrap(),
            0.0
        );
        assert!(graded(1e-9, 0.3, 2.0, 1.5, true).is_err());
        assert!(graded(0.1, 0.3, 2.0, 1.0, true).is_err());
    }

    #[test]
    fn the_equilibrium_balances_the_forces() {
        let pad = Pad::new(
            Mesh::rectangle(2.0, 1.0, 16, 8).unwrap(),
            Material::new("neo-hookean", 1.0, 0.3).unwrap(),
            1.0,
        )
        .unwrap();
        let ind = Indenter::new(0.5, 100.0, 0.3, 0.1).unwrap();
        let eq = equilibrium(&pad, &ind, [1.0, 1.45], &pad.mesh.rest, 1e-8).unwrap();
        assert!(eq.residual <= 1e-8 && eq.force[1] > 0.0, "{eq:?}");
        // Symmetric press, symmetric answer.
        assert!(eq.force[0].abs() < 1e-9 * eq.force[1]);
        assert!(equilibrium(&pad, &ind, [1.0, 1.45], &pad.mesh.rest[1..], 1e-8).is_err());
    }
}
