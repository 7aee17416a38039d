//! Finite-element elasticity of the pad (P20): per element the deformation gradient F = D_s D_m⁻¹, an energy
//! density ψ(F) (linear elasticity or the neo-Hookean model DiffTactile uses, plane strain), the elastic energy
//! Σ_e A_e ψ(F_e) and the nodal forces −∂E/∂x = −A_e P(F_e) D_m⁻ᵀ scattered to the element's nodes; and explicit
//! time stepping (symplectic Euler with lumped masses, the base clamped).

use super::mesh::{det, edge_matrix, Mesh};
use crate::{Error, Result};

/// The constitutive model with its Lamé parameters (from Young's modulus E and Poisson's ratio ν, plane strain).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Material {
    /// ψ = μ ε:ε + λ/2 (tr ε)², ε = ½(F + Fᵀ) − I.
    Linear { mu: f64, lambda: f64 },
    /// ψ = μ/2 (tr FᵀF − 2) − μ ln J + λ/2 (ln J)², J = det F > 0.
    NeoHookean { mu: f64, lambda: f64 },
}

impl Material {
    /// `linear` or `neo-hookean` with Young's modulus `e` > 0 and Poisson's ratio 0 ≤ ν < ½.
    pub fn new(kind: &str, e: f64, nu: f64) -> Result<Self> {
        if !(e.is_finite() && e > 0.0 && nu.is_finite() && (0.0..0.5).contains(&nu)) {
            return Err(Error::invalid(format!(
                "material: need Young's modulus > 0 and 0 <= Poisson's ratio < 0.5, not E = {e}, nu = {nu}"
            )));
        }
        let mu = e / (2.0 * (1.0 + nu));
        let lambda = e * nu / ((1.0 + nu) * (1.0 - 2.0 * nu));
        match kind {
            "linear" => Ok(Material::Linear { mu, lambda }),
            "neo-hookean" => Ok(Material::NeoHookean { mu, lambda }),
            _ => Err(Error::invalid(format!(
                "unknown material {kind:?}: use linear or neo-hookean"
            ))),
        }
    }

    /// ψ(F) and the first Piola–Kirchhoff stress P = ∂ψ/∂F (row-major 2 × 2); `None` for an inverted element
    /// under the neo-Hookean model.
    pub fn stress(&self, f: &[f64; 4]) -> Option<(f64, [f64; 4])> {
        match *self {
            Material::Linear { mu, lambda } => {
                let e = [
                    f[0] - 1.0,
                    0.5 * (f[1] + f[2]),
                    0.5 * (f[1] + f[2]),
                    f[3] - 1.0,
                ];
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
            Material::NeoHookean { mu, lambda } => {
                let j = det(f);
                if !(j.is_finite() && j > 0.0) {
                    return None;
                }
                let lj = j.ln();
                // F⁻ᵀ = [f3, −f2; −f1, f0] / J.
                let fit = [f[3] / j, -f[2] / j, -f[1] / j, f[0] / j];
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

/// The pad: mesh, material and density.
#[derive(Debug, Clone, PartialEq)]
pub struct Pad {
    pub mesh: Mesh,
    pub material: Material,
    pub density: f64,
    /// Lumped nodal masses.
    pub mass: Vec<f64>,
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
        })
    }

    /// The deformation gradient of element `e` at positions `x`.
    pub fn deformation(&self, x: &[[f64; 2]], e: usize) -> [f64; 4] {
        let t = self.mesh.tris[e];
        mul(
            &edge_matrix(x[t[0]], x[t[1]], x[t[2]]),
            &self.mesh.dm_inv[e],
        )
    }

    /// The elastic energy at `x`, and the elastic forces −∂E/∂x written into `forces` when given. An element
    /// the neo-Hookean model cannot take (det F ≤ 0) is an error naming it.
    pub fn elastic(&self, x: &[[f64; 2]], mut forces: Option<&mut [[f64; 2]]>) -> Result<f64> {
        if let Some(f) = forces.as_deref_mut() {
            f.iter_mut().for_each(|v| *v = [0.0; 2]);
        }
        let mut energy = 0.0;
        for (e, t) in self.mesh.tris.iter().enumerate() {
            let f = self.deformation(x, e);
            let (psi, p) = self.material.stress(&f).ok_or_else(|| {
                Error::NonFinite(format!(
                    "the pad's element {e} inverted (det F = {:.3e}); lower the time step or the indentation",
                    det(&f)
                ))
            })?;
            let a = self.mesh.area[e];
            energy += a * psi;
            if let Some(out) = forces.as_deref_mut() {
                // H = A P D_m⁻ᵀ; its columns are ∂E/∂x1 and ∂E/∂x2.
                let d = self.mesh.dm_inv[e];
                let h = mul(&p, &[d[0], d[2], d[1], d[3]]);
                let g1 = [a * h[0], a * h[2]];
                let g2 = [a * h[1], a * h[3]];
                for k in 0..2 {
                    out[t[1]][k] -= g1[k];
                    out[t[2]][k] -= g2[k];
                    out[t[0]][k] += g1[k] + g2[k];
                }
            }
        }
        Ok(energy)
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

/// One symplectic Euler step of length `dt` under the elastic forces plus `external` (per node), with the base
/// nodes clamped when `clamp_base`: v ← v + dt f/m, x ← x + dt v.
pub fn step(
    pad: &Pad,
    s: &mut State,
    dt: f64,
    external: &[[f64; 2]],
    clamp_base: bool,
) -> Result<()> {
    let mut f = vec![[0.0; 2]; s.x.len()];
    pad.elastic(&s.x, Some(&mut f))?;
    for i in 0..s.x.len() {
        for k in 0..2 {
            s.v[i][k] += dt * (f[i][k] + external[i][k]) / pad.mass[i];
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
            let zero = vec![[0.0; 2]; s.x.len()];
            let e0 = p.elastic(&s.x, None).unwrap();
            let mut worst: f64 = 0.0;
            for _ in 0..4000 {
                step(&p, &mut s, 2e-3, &zero, false).unwrap();
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
