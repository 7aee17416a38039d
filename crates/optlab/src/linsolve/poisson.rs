//! The 2-D Poisson problem of P18's fluid setting: the 5-point Laplacian on an n×n cell grid, Dirichlet (zero)
//! outside the grid, Neumann at interior solid cells (a fluid cell's diagonal counts only its non-solid
//! neighbours, as in a pressure projection). Every cell is an unknown (index `y·n + x`); a solid cell carries an
//! identity row and a zero right-hand side, so x = 0 there and the fluid block is the reduced system the
//! reference's IC-PCG solves after dropping the solid rows. The matrix is unscaled (4 on an open diagonal, −1
//! off it), as in the reference's matrices.

use super::csr::Csr;
use crate::rng::{rng_for, Stream};
use crate::{Error, Result};
use rand::Rng as _;

/// The largest grid side (n² unknowns; 4096² ≈ 16.8M).
pub const MAX_SIDE: usize = 4096;

/// A square cell grid with solid cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    pub n: usize,
    /// Row-major n×n: true where the cell is solid.
    pub solid: Vec<bool>,
}

impl Grid {
    /// An open n×n grid.
    pub fn empty(n: usize) -> Result<Grid> {
        check_side(n)?;
        Ok(Grid {
            n,
            solid: vec![false; n * n],
        })
    }

    /// A grid with a given solid mask; refuses a mask of the wrong size and fluid cut off from the boundary (its
    /// pure-Neumann block would make the system singular).
    pub fn from_mask(n: usize, solid: Vec<bool>) -> Result<Grid> {
        check_side(n)?;
        if solid.len() != n * n {
            return Err(Error::Shape(format!(
                "grid: a solid mask of {} cells for a {n}x{n} grid (need {})",
                solid.len(),
                n * n
            )));
        }
        let g = Grid { n, solid };
        let enclosed = g.enclosed();
        if let Some(i) = enclosed.iter().position(|&e| e) {
            return Err(Error::invalid(format!(
                "grid: fluid cell ({}, {}) is enclosed by solid cells, which makes the system singular; open it to \
                 the boundary or mark it solid",
                i % n,
                i / n
            )));
        }
        if g.solid.iter().all(|&s| s) {
            return Err(Error::invalid("grid: every cell is solid"));
        }
        Ok(g)
    }

    /// `count` solid disks with seeded centres in the middle 70% of the grid and radii of 5–12% of its side;
    /// fluid the disks cut off from the boundary is filled in (made solid).
    pub fn with_obstacles(n: usize, count: usize, seed: u64) -> Result<Grid> {
        let mut g = Grid::empty(n)?;
        if count > n * n {
            return Err(Error::invalid(format!(
                "grid: {count} obstacles on a {n}x{n} grid; use at most one per cell"
            )));
        }
        let mut rng = rng_for(seed, Stream::Data, 18);
        let nf = n as f64;
        for _ in 0..count {
            let cx = nf * rng.gen_range(0.15..0.85);
            let cy = nf * rng.gen_range(0.15..0.85);
            let r = nf * rng.gen_range(0.05..0.12);
            for y in 0..n {
                for x in 0..n {
                    let (dx, dy) = (x as f64 + 0.5 - cx, y as f64 + 0.5 - cy);
                    if dx * dx + dy * dy <= r * r {
                        g.solid[y * n + x] = true;
                    }
                }
            }
        }
        let enclosed = g.enclosed();
        g.solid.iter_mut().zip(enclosed).for_each(|(s, e)| *s |= e);
        if g.solid.iter().all(|&s| s) {
            return Err(Error::invalid(
                "grid: the obstacles cover every cell; use fewer obstacles or a larger grid",
            ));
        }
        Ok(g)
    }

    /// Fluid cells with no fluid path to a cell on the grid's edge.
    fn enclosed(&self) -> Vec<bool> {
        let n = self.n;
        let mut reached = vec![false; n * n];
        let mut stack: Vec<usize> = (0..n * n)
            .filter(|&i| {
                let (x, y) = (i % n, i / n);
                !self.solid[i] && (x == 0 || y == 0 || x + 1 == n || y + 1 == n)
            })
            .collect();
        stack.iter().for_each(|&i| reached[i] = true);
        while let Some(i) = stack.pop() {
            for j in self.neighbours(i).into_iter().flatten() {
                if !self.solid[j] && !reached[j] {
                    reached[j] = true;
                    stack.push(j);
                }
            }
        }
        (0..n * n).map(|i| !self.solid[i] && !reached[i]).collect()
    }

    /// The in-grid neighbours of cell `i` (left, right, down, up).
    fn neighbours(&self, i: usize) -> [Option<usize>; 4] {
        let n = self.n;
        let (x, y) = (i % n, i / n);
        [
            (x > 0).then(|| i - 1),
            (x + 1 < n).then(|| i + 1),
            (y > 0).then(|| i - n),
            (y + 1 < n).then(|| i + n),
        ]
    }

    /// Number of unknowns, n².
    pub fn cells(&self) -> usize {
        self.n * self.n
    }

    /// 1 on fluid cells, 0 on solid ones.
    pub fn fluid_mask(&self) -> Vec<f64> {
        self.solid
            .iter()
            .map(|&s| if s { 0.0 } else { 1.0 })
            .collect()
    }

    /// The diagonal of the Laplacian: 4 less the solid neighbours on a fluid cell, 1 on a solid one.
    pub fn diagonal(&self) -> Vec<f64> {
        (0..self.cells())
            .map(|i| {
                if self.solid[i] {
                    return 1.0;
                }
                let solid_nbrs = self
                    .neighbours(i)
                    .into_iter()
                    .flatten()
                    .filter(|&j| self.solid[j])
                    .count();
                (4 - solid_nbrs) as f64
            })
            .collect()
    }

    /// The 5-point Laplacian as a CSR matrix (symmetric positive definite).
    pub fn laplacian(&self) -> Result<Csr> {
        let cells = self.cells();
        crate::memory::check(
            "the Poisson matrix",
            cells as f64 * 5.0 * 16.0,
            "use a smaller grid",
        )?;
        let diag = self.diagonal();
        let mut row_ptr = Vec::with_capacity(cells + 1);
        let (mut col_idx, mut values) =
            (Vec::with_capacity(5 * cells), Vec::with_capacity(5 * cells));
        row_ptr.push(0);
        for (i, &di) in diag.iter().enumerate() {
            if self.solid[i] {
                col_idx.push(i);
                values.push(1.0);
            } else {
                let [l, r, d, u] = self.neighbours(i);
                let fluid = |j: Option<usize>| j.filter(|&j| !self.solid[j]);
                for j in [fluid(d), fluid(l)].into_iter().flatten() {
                    col_idx.push(j);
                    values.push(-1.0);
                }
                col_idx.push(i);
                values.push(di);
                for j in [fluid(r), fluid(u)].into_iter().flatten() {
                    col_idx.push(j);
                    values.push(-1.0);
                }
            }
            row_ptr.push(col_idx.len());
        }
        Csr::new(cells, row_ptr, col_idx, values)
    }
}

fn check_side(n: usize) -> Result<()> {
    if !(2..=MAX_SIDE).contains(&n) {
        return Err(Error::invalid(format!(
            "grid: the side must be from 2 to {MAX_SIDE} cells, not {n}"
        )));
    }
    Ok(())
}
