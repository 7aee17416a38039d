//! Finite-element elasticity of the pad (P20): per element the deformation gradient F = D_s D_m⁻¹, an energy
//! density ψ(F) (linear elasticity or the neo-Hookean model DiffTactile uses, plane strain), the elastic energy
//! Σ_e A_e ψ(F_e) and the nodal forces −∂E/∂x = −A_e P(F_e) D_m⁻ᵀ scattered to the element's nodes; and explicit
//! time stepping (symplectic Euler with lumped masses, the base clamped).

use super::mesh::{det, edge_matrix, Mesh};
use crate::{Error, Result};

/// The constitutive law (plane strain).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    /// ψ = μ ε:ε + λ/2 (tr ε)², ε = ½(F + Fᵀ) − I.
    Linear,
    /// ψ = μ/2 (tr FᵀF − 2) − μ ln J + λ/2 (ln J)², J = det F > 0.
    NeoHookean,
}

/// A material: its law, Young's modulus E and Poisson's ratio ν, and the Lamé parameters they give.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Material {
    pub law: Law,
    pub young: f64,
    pub poisson: f64,
    pub mu: f64,
    pub lambda: f64,
}

impl Material {
    /// `linear` or `neo-hookean` with Young's modulus `e` > 0 and Poisson's ratio 0 ≤ ν < ½.
    pub fn new(kind: &str, e: f64, nu: f64) -> Result<Self> {
        let law = match kind {
            "linear" => Law::Linear,
            "neo-hookean" => Law::NeoHookean,
            _ => {
                return Err(Error::invalid(format!(
                    "unknown material {kind:?}: use linear or neo-hookean"
                )))
            }
        };
        Self::with_law(law, e, nu)
    }

    /// The same law with other elastic constants.
    pub fn with_law(law: Law, e: f64, nu: f64) -> Result<Self> {
        if !(e.is_finite() && e > 0.0 && nu.is_finite() && (0.0..0.5).contains(&nu)) {
            return Err(Error::invalid(format!(
                "material: need Young's modulus > 0 and 0 <= Poisson's ratio < 0.5, not E = {e}, nu = {nu}"
            )));
        }
        Ok(Material {
            law,
            young: e,
            poisson: nu,
            mu: e / (2.0 * (1.0 + nu)),
            lambda: e * nu / ((1.0 + nu) * (1.0 - 2.0 * nu)),
        })
    }

    /// The law's name as [`Material::new`] takes it.
    pub fn kind(&self) -> &'static str {
        match self.law {
            Law::Linear => "linear",
            Law::NeoHookean => "neo-hookean",
        }
    }

    /// Pulls a gradient with respect to (μ, λ) back to (E, ν).
    pub fn lame_to_young_poisson(&self, d_mu: f64, d_lambda: f64) -> [f64; 2] {
        let (e, nu) = (self.young, self.poisson);
        let q = (1.0 + nu) * (1.0 - 2.0 * nu);
        [
            d_mu / (2.0 * (1.0 + nu)) + d_lambda * nu / q,
            -d_mu * e / (2.0 * (1.0 + nu) * (1.0 + nu))
                + d_lambda * e * (1.0 + 2.0 * nu * nu) / (q * q),
        ]
    }

    /// ψ(F) and the first Piola–Kirchhoff stress P = ∂ψ/∂F (row-major 2 × 2); `None` for an inverted element
    /// under the neo-Hookean model.
    pub fn stress(&self, f: &[f64; 4]) -> Option<(f64, [f64; 4])> {
        let (mu, lambda) = (self.mu, self.lambda);
        match self.law {
            Law::Linear => {
                let e = strain(f);
                let tr = e[0] + e[3];
                let ee: f64 = e.iter().map(|v| v * v).sum();
                let p = [
                    2.0 * mu * e[0] + lambda * tr,
                    2.0 * mu * e[1],
                    2.0 * mu * e[2],
                    2.0 * mu * e[3] + lambda * tr,
                ];
                Some((mu * ee + 0.5 * lambda * tr * tr, p))
            }
            Law::NeoHookean => {
                let (j, fit) = inverse_transpose(f)?;
                let lj = j.ln();
                let i1: f64 = f.iter().map(|v| v * v).sum();
                let psi = 0.5 * mu * (i1 - 2.0) - mu * lj + 0.5 * lambda * lj * lj;
                let mut p = [0.0; 4];
                for k in 0..4 {
                    p[k] = mu * (f[k] - fit[k]) + lambda * lj * fit[k];
                }
                Some((psi, p))
            }
        }
    }

    /// The reverse of [`Material::stress`] for a cotangent G of P: ∂⟨P, G⟩/∂F = dP[G] (the Hessian of ψ is
    /// symmetric), and ∂⟨P, G⟩/∂μ, ∂⟨P, G⟩/∂λ. `None` where `stress` is.
    pub fn stress_vjp(&self, f: &[f64; 4], g: &[f64; 4]) -> Option<([f64; 4], f64, f64)> {
        let (mu, lambda) = (self.mu, self.lambda);
        let dot = |a: &[f64; 4], b: &[f64; 4]| (0..4).map(|k| a[k] * b[k]).sum::<f64>();
        match self.law {
            Law::Linear => {
                let e = strain(f);
                let (tr_e, tr_g) = (e[0] + e[3], g[0] + g[3]);
                let sym = 0.5 * (g[1] + g[2]);
                let df = [
                    2.0 * mu * g[0] + lambda * tr_g,
                    2.0 * mu * sym,
                    2.0 * mu * sym,
                    2.0 * mu * g[3] + lambda * tr_g,
                ];
                Some((df, 2.0 * dot(&e, g), tr_e * tr_g))
            }
            Law::NeoHookean => {
                let (j, fit) = inverse_transpose(f)?;
                let lj = j.ln();
                // dF⁻ᵀ[G] = −F⁻ᵀ Gᵀ F⁻ᵀ.
                let gt = [g[0], g[2], g[1], g[3]];
                let m = mul(&mul(&fit, &gt), &fit);
                let c = dot(&fit, g);
                let mut df = [0.0; 4];
                let mut d_mu = 0.0;
                for k in 0..4 {
                    df[k] = mu * g[k] + (mu - lambda * lj) * m[k] + lambda * c * fit[k];
                    d_mu += (f[k] - fit[k]) * g[k];
                }
                Some((df, d_mu, lj * c))
            }
        }
    }
}

/// The small strain ε = ½(F + Fᵀ) − I.
fn strain(f: &[f64; 4]) -> [f64; 4] {
    let s = 0.5 * (f[1] + f[2]);
    [f[0] - 1.0, s, s, f[3] - 1.0]
}

/// det F and F⁻ᵀ, or `None` when det F is not positive.
fn inverse_transpose(f: &[f64; 4]) -> Option<(f64, [f64; 4])> {
    let j = det(f);
    if !(j.is_finite() && j > 0.0) {
        return None;
    }
    Some((j, [f[3] / j, -f[2] / j, -f[1] / j, f[0] / j]))
}

/// a · b for row-major 2 × 2 matrices.
fn mul(a: &[f64; 4], b: &[f64; 4]) -> [f64; 4] {
    [
        a[0] * b[0] + a[1] * b[2],
        a[0] * b[1] + a[1] * b[3],
        a[2] * b[0] + a[3] * b[2],
        a[2] * b[1] + a[3] * b[3],
    ]
}

/// The pad: mesh, material, density and mass-proportional damping.
#[derive(Debug, Clone, PartialEq)]
pub struct Pad {
    pub mesh: Mesh,
    pub material: Material,
    pub density: f64,
    /// Lumped nodal masses.
    pub mass: Vec<f64>,
    /// Mass-proportional (viscous) damping α ≥ 0, in 1/time: the force −α m v on every node.
    pub damping: f64,
}

impl Pad {
    pub fn new(mesh: Mesh, material: Material, density: f64) -> Result<Self> {
        if !(density.is_finite() && density > 0.0) {
            return Err(Error::invalid(format!(
                "the pad's density must be > 0, not {density}"
            )));
        }
        Ok(Pad {
            mass: mesh.lumped_masses(density),
            mesh,
            material,
            density,
            damping: 0.0,
        })
    }

    /// The pad with damping α ≥ 0.
    pub fn with_damping(mut self, alpha: f64) -> Result<Self> {
        if !(alpha.is_finite() && alpha >= 0.0) {
            return Err(Error::invalid(format!(
                "the pad's damping must be >= 0, not {alpha}"
            )));
        }
        self.damping = alpha;
        Ok(self)
    }

    /// The deformation gradient of element `e` at positions `x`.
    pub fn deformation(&self, x: &[[f64; 2]], e: usize) -> [f64; 4] {
        let t = self.mesh.tris[e];
        mul(
            &edge_matrix(x[t[0]], x[t[1]], x[t[2]]),
            &self.mesh.dm_inv[e],
        )
    }

    /// Scatters M D_m⁻ᵀ of element `e` to its nodes: its columns to nodes 1 and 2, minus their sum to node 0.
    fn scatter(&self, e: usize, m: &[f64; 4], out: &mut [[f64; 2]]) {
        let t = self.mesh.tris[e];
        let d = self.mesh.dm_inv[e];
        let h = mul(m, &[d[0], d[2], d[1], d[3]]);
        for k in 0..2 {
            out[t[1]][k] += h[2 * k];
            out[t[2]][k] += h[2 * k + 1];
            out[t[0]][k] -= h[2 * k] + h[2 * k + 1];
        }
    }

    fn inverted(&self, x: &[[f64; 2]], e: usize) -> Error {
        Error::NonFinite(format!(
            "the pad's element {e} inverted (det F = {:.3e}); lower the time step or the indentation",
            det(&self.deformation(x, e))
        ))
    }

    /// The elastic energy at `x`, and the elastic forces −∂E/∂x written into `forces` when given. An element
    /// the neo-Hookean model cannot take (det F ≤ 0) is an error naming it.
    pub fn elastic(&self, x: &[[f64; 2]], mut forces: Option<&mut [[f64; 2]]>) -> Result<f64> {
        if let Some(f) = forces.as_deref_mut() {
            f.iter_mut().for_each(|v| *v = [0.0; 2]);
        }
        let mut energy = 0.0;
        for e in 0..self.mesh.tris.len() {
            let (psi, p) = self
                .material
                .stress(&self.deformation(x, e))
                .ok_or_else(|| self.inverted(x, e))?;
            let a = self.mesh.area[e];
            energy += a * psi;
            if let Some(out) = forces.as_deref_mut() {
                // ∂E/∂x of the element's nodes is A P D_m⁻ᵀ, scattered.
                self.scatter(e, &p.map(|v| -a * v), out);
            }
        }
        Ok(energy)
    }

    /// The reverse of the elastic forces f(x) = −∂E/∂x: for a cotangent `fbar` of the forces, adds
    /// ∂⟨f̄, f⟩/∂x (that is −∇²E f̄) to `dx` and returns ∂⟨f̄, f⟩/∂(μ, λ).
    pub fn elastic_vjp(
        &self,
        x: &[[f64; 2]],
        fbar: &[[f64; 2]],
        dx: &mut [[f64; 2]],
    ) -> Result<[f64; 2]> {
        let mut d_lame = [0.0; 2];
        for e in 0..self.mesh.tris.len() {
            // ⟨f̄, f⟩ over the element is ⟨G, P(F)⟩ with G = −A E(f̄) D_m⁻¹.
            let a = self.mesh.area[e];
            let g = self.deformation(fbar, e).map(|v| -a * v);
            let (df, d_mu, d_lambda) = self
                .material
                .stress_vjp(&self.deformation(x, e), &g)
                .ok_or_else(|| self.inverted(x, e))?;
            d_lame[0] += d_mu;
            d_lame[1] += d_lambda;
            // F = D_s D_m⁻¹, so D̄_s = F̄ D_m⁻ᵀ.
            self.scatter(e, &df, dx);
        }
        Ok(d_lame)
    }
}

/// Positions and velocities of the pad's nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub x: Vec<[f64; 2]>,
    pub v: Vec<[f64; 2]>,
}

impl State {
    /// The rest state.
    pub fn rest(pad: &Pad) -> Self {
        State {
            x: pad.mesh.rest.clone(),
            v: vec![[0.0; 2]; pad.mesh.rest.len()],
        }
    }

    /// Kinetic energy ½ Σ m |v|².
    pub fn kinetic(&self, pad: &Pad) -> f64 {
        self.v
            .iter()
            .zip(&pad.mass)
            .map(|(v, m)| 0.5 * m * (v[0] * v[0] + v[1] * v[1]))
            .sum()
    }
}

/// One symplectic Euler step of length `dt`: `forces` holds the external forces per node on entry and the total
/// (elastic added) on return; v ← (1 − α dt) v + dt f/m, the base nodes clamped when `clamp_base`, x ← x + dt v.
pub fn step(
    pad: &Pad,
    s: &mut State,
    dt: f64,
    forces: &mut [[f64; 2]],
    clamp_base: bool,
    elastic: &mut [[f64; 2]],
) -> Result<()> {
    pad.elastic(&s.x, Some(elastic))?;
    let keep = 1.0 - pad.damping * dt;
    for i in 0..s.x.len() {
        for k in 0..2 {
            forces[i][k] += elastic[i][k];
            s.v[i][k] = keep * s.v[i][k] + dt * forces[i][k] / pad.mass[i];
        }
    }
    if clamp_base {
        for &i in &pad.mesh.base {
            s.v[i] = [0.0; 2];
            s.x[i] = pad.mesh.rest[i];
        }
    }
    for (x, v) in s.x.iter_mut().zip(&s.v) {
        x[0] += dt * v[0];
        x[1] += dt * v[1];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pad(kind: &str) -> Pad {
        Pad::new(
            Mesh::rectangle(2.0, 1.0, 6, 3).unwrap(),
            Material::new(kind, 1.0, 0.3).unwrap(),
            1.0,
        )
        .unwrap()
    }

    /// A smooth non-affine deformation of the rest shape.
    fn deformed(p: &Pad) -> Vec<[f64; 2]> {
        p.mesh
            .rest
            .iter()
            .map(|x| {
                [
                    1.05 * x[0] + 0.03 * (2.0 * x[1]).sin(),
                    0.97 * x[1] + 0.02 * x[0] * x[0],
                ]
            })
            .collect()
    }

    #[test]
    fn the_forces_are_minus_the_energy_gradient() {
        for kind in ["linear", "neo-hookean"] {
            let p = pad(kind);
            let x = deformed(&p);
            let mut f = vec![[0.0; 2]; x.len()];
            p.elastic(&x, Some(&mut f)).unwrap();
            let h = 1e-6;
            for i in 0..x.len() {
                for k in 0..2 {
                    let (mut a, mut b) = (x.clone(), x.clone());
                    a[i][k] += h;
                    b[i][k] -= h;
                    let fd =
                        -(p.elastic(&a, None).unwrap() - p.elastic(&b, None).unwrap()) / (2.0 * h);
                    assert!(
                        (fd - f[i][k]).abs() < 1e-8,
                        "{kind} node {i}.{k}: {fd} vs {}",
                        f[i][k]
                    );
                }
            }
            // The rest shape is stress-free, and the two models agree to first order near it.
            let rest = p.mesh.rest.clone();
            assert!(p.elastic(&rest, Some(&mut f)).unwrap().abs() < 1e-14);
            assert!(f.iter().flatten().all(|v| v.abs() < 1e-12));
        }
    }

    #[test]
    fn the_reverse_of_the_forces_matches_finite_differences() {
        for kind in ["linear", "neo-hookean"] {
            let p = pad(kind);
            let x = deformed(&p);
            let n = x.len();
            // A fixed cotangent of the forces.
            let fbar: Vec<[f64; 2]> = (0..n)
                .map(|i| [(0.7 * i as f64).sin(), (0.3 * i as f64 + 1.0).cos()])
                .collect();
            let scalar = |pad: &Pad, x: &[[f64; 2]]| {
                let mut f = vec![[0.0; 2]; n];
                pad.elastic(x, Some(&mut f)).unwrap();
                f.iter()
                    .zip(&fbar)
                    .map(|(a, b)| a[0] * b[0] + a[1] * b[1])
                    .sum::<f64>()
            };
            let mut dx = vec![[0.0; 2]; n];
            let d_lame = p.elastic_vjp(&x, &fbar, &mut dx).unwrap();
            let h = 1e-6;
            for i in 0..n {
                for k in 0..2 {
                    let (mut a, mut b) = (x.clone(), x.clone());
                    a[i][k] += h;
                    b[i][k] -= h;
                    let fd = (scalar(&p, &a) - scalar(&p, &b)) / (2.0 * h);
                    assert!(
                        (fd - dx[i][k]).abs() < 1e-6 * (1.0 + fd.abs()),
                        "{kind} node {i}.{k}: {fd} vs {}",
                        dx[i][k]
                    );
                }
            }
            // (μ, λ) and, through them, (E, ν).
            let m = p.material;
            let at = |e: f64, nu: f64| {
                let mut q = p.clone();
                q.material = Material::with_law(m.law, e, nu).unwrap();
                scalar(&q, &x)
            };
            let d_young_poisson = m.lame_to_young_poisson(d_lame[0], d_lame[1]);
            let fd_e = (at(m.young + h, m.poisson) - at(m.young - h, m.poisson)) / (2.0 * h);
            let fd_nu = (at(m.young, m.poisson + h) - at(m.young, m.poisson - h)) / (2.0 * h);
            assert!(
                (fd_e - d_young_poisson[0]).abs() < 1e-7 * (1.0 + fd_e.abs()),
                "{kind}: {fd_e} vs {d_young_poisson:?}"
            );
            assert!(
                (fd_nu - d_young_poisson[1]).abs() < 1e-7 * (1.0 + fd_nu.abs()),
                "{kind}: {fd_nu} vs {d_young_poisson:?}"
            );
        }
    }

    #[test]
    fn damping_drains_the_free_pad() {
        let p = pad("neo-hookean").with_damping(2.0).unwrap();
        let mut s = State::rest(&p);
        s.x = deformed(&p);
        let mut forces = vec![[0.0; 2]; s.x.len()];
        let mut elastic = forces.clone();
        let e0 = p.elastic(&s.x, None).unwrap();
        for _ in 0..3000 {
            forces.iter_mut().for_each(|f| *f = [0.0; 2]);
            step(&p, &mut s, 2e-3, &mut forces, false, &mut elastic).unwrap();
        }
        let e = p.elastic(&s.x, None).unwrap() + s.kinetic(&p);
        assert!(e < 1e-3 * e0, "{e} of {e0} left");
        assert!(pad("linear").with_damping(-1.0).is_err());
    }

    #[test]
    fn an_inverted_element_is_one_clear_error() {
        let p = pad("neo-hookean");
        let mut x = p.mesh.rest.clone();
        let top = p.mesh.surface[2];
        x[top][1] = -2.0;
        let e = p.elastic(&x, None).unwrap_err().to_string();
        assert!(e.contains("inverted"), "{e}");
        // Linear elasticity has no such limit (and no such protection).
        assert!(pad("linear").elastic(&x, None).is_ok());
    }

    #[test]
    fn the_free_pad_keeps_its_energy_and_momentum() {
        for kind in ["linear", "neo-hookean"] {
            let p = pad(kind);
            let mut s = State::rest(&p);
            s.x = deformed(&p);
            let mut forces = vec![[0.0; 2]; s.x.len()];
            let mut elastic = forces.clone();
            let e0 = p.elastic(&s.x, None).unwrap();
            let mut worst: f64 = 0.0;
            for _ in 0..4000 {
                forces.iter_mut().for_each(|f| *f = [0.0; 2]);
                step(&p, &mut s, 2e-3, &mut forces, false, &mut elastic).unwrap();
                let e = p.elastic(&s.x, None).unwrap() + s.kinetic(&p);
                worst = worst.max((e - e0).abs() / e0);
            }
            assert!(worst < 0.02, "{kind}: energy drift {worst}");
            let momentum = s.v.iter().zip(&p.mass).fold([0.0; 2], |acc, (v, m)| {
                [acc[0] + m * v[0], acc[1] + m * v[1]]
            });
            assert!(
                momentum.iter().all(|m| m.abs() < 1e-12),
                "{kind}: {momentum:?}"
            );
        }
    }

    #[test]
    fn bad_materials_are_refused() {
        assert!(Material::new("linear", 0.0, 0.3).is_err());
        assert!(Material::new("linear", 1.0, 0.5).is_err());
        assert!(Material::new("rubber", 1.0, 0.3).is_err());
        assert!(Pad::new(
            Mesh::rectangle(1.0, 1.0, 1, 1).unwrap(),
            Material::new("linear", 1.0, 0.3).unwrap(),
            0.0
        )
        .is_err());
    }
}
