//! The elastomer pad's mesh (P20, DiffTactile's 2-D analogue): linear triangles on a rectangle, with each
//! element's rest-shape inverse D_m⁻¹ and area, and the top surface's nodes where the markers sit.

use crate::{Error, Result};

/// A triangle mesh in its rest configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Mesh {
    /// Rest positions.
    pub rest: Vec<[f64; 2]>,
    /// Counter-clockwise node triples.
    pub tris: Vec<[usize; 3]>,
    /// Per element: D_m⁻¹ (row-major 2 × 2) of the rest edge matrix D_m = [X1 − X0, X2 − X0], and the area.
    pub dm_inv: Vec<[f64; 4]>,
    pub area: Vec<f64>,
    /// Nodes on the top edge, left to right (the tactile markers).
    pub surface: Vec<usize>,
    /// Nodes on the bottom edge (clamped to the sensor's back plate).
    pub base: Vec<usize>,
}

/// The largest node count accepted.
pub const MAX_NODES: usize = 1 << 20;

/// The 2 × 2 edge matrix [b − a, c − a] of positions (row-major: rows are x and y).
pub fn edge_matrix(a: [f64; 2], b: [f64; 2], c: [f64; 2]) -> [f64; 4] {
    [b[0] - a[0], c[0] - a[0], b[1] - a[1], c[1] - a[1]]
}

/// The determinant of a row-major 2 × 2 matrix.
pub fn det(m: &[f64; 4]) -> f64 {
    m[0] * m[3] - m[1] * m[2]
}

impl Mesh {
    /// A `width × height` pad split into `nx × ny` squares, each cut into two triangles along alternating
    /// diagonals (so the mesh has no preferred shear direction).
    pub fn rectangle(width: f64, height: f64, nx: usize, ny: usize) -> Result<Self> {
        if !(width.is_finite() && height.is_finite() && width > 0.0 && height > 0.0) {
            return Err(Error::invalid(format!(
                "the pad's width and height must be positive, not {width} x {height}"
            )));
        }
        if nx == 0 || ny == 0 || (nx + 1).saturating_mul(ny + 1) > MAX_NODES {
            return Err(Error::invalid(format!(
                "the pad needs 1 to {MAX_NODES} nodes' worth of cells, not {nx} x {ny}"
            )));
        }
        let xs: Vec<f64> = (0..=nx).map(|i| width * i as f64 / nx as f64).collect();
        let ys: Vec<f64> = (0..=ny).map(|j| height * j as f64 / ny as f64).collect();
        Self::grid(&xs, &ys)
    }

    /// The tensor-product mesh on increasing coordinates `xs × ys` (cells cut as in [`Mesh::rectangle`]): a
    /// graded mesh puts its nodes where the contact is.
    pub fn grid(xs: &[f64], ys: &[f64]) -> Result<Self> {
        let increasing = |v: &[f64]| {
            v.len() >= 2 && v.windows(2).all(|w| w[0] < w[1]) && v.iter().all(|c| c.is_finite())
        };
        if !(increasing(xs) && increasing(ys)) {
            return Err(Error::invalid(
                "a grid mesh needs at least two strictly increasing, finite coordinates each way",
            ));
        }
        let (nx, ny) = (xs.len() - 1, ys.len() - 1);
        if xs.len().saturating_mul(ys.len()) > MAX_NODES {
            return Err(Error::invalid(format!(
                "the pad needs at most {MAX_NODES} nodes, not {} x {}",
                xs.len(),
                ys.len()
            )));
        }
        let id = |i: usize, j: usize| j * (nx + 1) + i;
        let mut rest = Vec::with_capacity((nx + 1) * (ny + 1));
        for &y in ys {
            for &x in xs {
                rest.push([x, y]);
            }
        }
        let mut tris = Vec::with_capacity(2 * nx * ny);
        for j in 0..ny {
            for i in 0..nx {
                let (a, b, c, d) = (id(i, j), id(i + 1, j), id(i + 1, j + 1), id(i, j + 1));
                if (i + j) % 2 == 0 {
                    tris.push([a, b, c]);
                    tris.push([a, c, d]);
                } else {
                    tris.push([a, b, d]);
                    tris.push([b, c, d]);
                }
            }
        }
        Self::new(
            rest,
            tris,
            (0..=nx).map(|i| id(i, ny)).collect(),
            (0..=nx).map(|i| id(i, 0)).collect(),
        )
    }

    /// A mesh from its parts; an element that is degenerate or clockwise in the rest shape is refused.
    pub fn new(
        rest: Vec<[f64; 2]>,
        tris: Vec<[usize; 3]>,
        surface: Vec<usize>,
        base: Vec<usize>,
    ) -> Result<Self> {
        let n = rest.len();
        if let Some(t) = tris.iter().find(|t| t.iter().any(|&v| v >= n)) {
            return Err(Error::invalid(format!(
                "mesh: element {t:?} names a node beyond the {n} nodes"
            )));
        }
        let mut dm_inv = Vec::with_capacity(tris.len());
        let mut area = Vec::with_capacity(tris.len());
        for (e, t) in tris.iter().enumerate() {
            let dm = edge_matrix(rest[t[0]], rest[t[1]], rest[t[2]]);
            let j = det(&dm);
            if !(j.is_finite() && j > 1e-300) {
                return Err(Error::invalid(format!(
                    "mesh: element {e} is inverted or degenerate in the rest shape (signed area {})",
                    0.5 * j
                )));
            }
            dm_inv.push([dm[3] / j, -dm[1] / j, -dm[2] / j, dm[0] / j]);
            area.push(0.5 * j);
        }
        Ok(Mesh {
            rest,
            tris,
            dm_inv,
            area,
            surface,
            base,
        })
    }

    /// Lumped nodal masses of a pad of density ρ (a third of each element's mass to each of its nodes).
    pub fn lumped_masses(&self, density: f64) -> Vec<f64> {
        let mut m = vec![0.0; self.rest.len()];
        for (t, a) in self.tris.iter().zip(&self.area) {
            for &v in t {
                m[v] += density * a / 3.0;
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rectangle_tiles_the_pad() {
        let m = Mesh::rectangle(2.0, 1.0, 4, 3).unwrap();
        assert_eq!(m.rest.len(), 20);
        assert_eq!(m.tris.len(), 24);
        assert!((m.area.iter().sum::<f64>() - 2.0).abs() < 1e-14);
        assert_eq!(m.surface.len(), 5);
        assert!(m.surface.iter().all(|&v| m.rest[v][1] == 1.0));
        assert!(m.base.iter().all(|&v| m.rest[v][1] == 0.0));
        let g = Mesh::grid(&[0.0, 0.1, 0.5], &[-1.0, 0.0]).unwrap();
        assert_eq!((g.rest.len(), g.tris.len(), g.surface.len()), (6, 4, 3));
        assert!((g.area.iter().sum::<f64>() - 0.5).abs() < 1e-15);
        assert!(Mesh::grid(&[0.0, 0.0], &[0.0, 1.0]).is_err());
        assert!(Mesh::grid(&[0.0], &[0.0, 1.0]).is_err());
        assert!((m.lumped_masses(3.0).iter().sum::<f64>() - 6.0).abs() < 1e-13);
    }

    #[test]
    fn bad_meshes_are_refused() {
        assert!(Mesh::rectangle(0.0, 1.0, 2, 2).is_err());
        assert!(Mesh::rectangle(1.0, 1.0, 0, 2).is_err());
        assert!(Mesh::rectangle(1.0, 1.0, 1 << 20, 1 << 20).is_err());
        let rest = vec![[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]];
        // Clockwise: inverted.
        assert!(Mesh::new(rest.clone(), vec![[0, 2, 1]], vec![], vec![]).is_err());
        assert!(Mesh::new(rest.clone(), vec![[0, 1, 3]], vec![], vec![]).is_err());
        assert!(Mesh::new(rest, vec![[0, 1, 2]], vec![], vec![]).is_ok());
    }
}
