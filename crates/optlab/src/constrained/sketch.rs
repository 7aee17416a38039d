//! Randomized iterative sketching for a square linear system A z = b (P19's inner solver; the official code sketches
//! the Newton–KKT matrix). Each step draws a sketch S and projects the iterate onto {z : SᵀA z = Sᵀb}:
//! z ← z − Aᵀ S (SᵀA AᵀS)⁻¹ Sᵀ r with r = A z − b.
//! - [`Sketch::Kaczmarz`]: S = eᵢ with i uniform, as in the official code (randomized Kaczmarz: one row at a time);
//! - [`Sketch::Gaussian`]: S ~ N(0, I), one column;
//! - [`Sketch::Block`]: S an N × s Gaussian block;
//! - [`Sketch::Exact`]: an LU solve, for the deterministic variant.
//!
//! The residual is carried along (r ← r − A Aᵀ S y, with A Aᵀ formed once) and recomputed exactly every N steps
//! and before stopping.

use crate::rng::{normal, Rng};
use crate::{Error, Result};
use faer::linalg::solvers::Solve;
use faer::Mat;
use std::fmt;
use std::str::FromStr;

/// The sketch distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sketch {
    Kaczmarz,
    Gaussian,
    /// A Gaussian block with this many columns.
    Block(usize),
    /// No sketching: a direct solve.
    Exact,
}

impl FromStr for Sketch {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "kaczmarz" | "rk" => Sketch::Kaczmarz,
            "gaussian" | "gv" => Sketch::Gaussian,
            "exact" | "newton" => Sketch::Exact,
            _ => match s.strip_prefix("block") {
                Some(k) => match k.parse::<usize>() {
                    Ok(k) if k >= 1 => Sketch::Block(k),
                    _ => {
                        return Err(Error::invalid(format!(
                            "sketch '{s}': a block sketch names its size, e.g. block4"
                        )))
                    }
                },
                None => {
                    return Err(Error::invalid(format!(
                        "unknown sketch '{s}': use kaczmarz, gaussian, blockK (K columns) or exact"
                    )))
                }
            },
        })
    }
}

impl fmt::Display for Sketch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sketch::Kaczmarz => f.write_str("kaczmarz"),
            Sketch::Gaussian => f.write_str("gaussian"),
            Sketch::Block(k) => write!(f, "block{k}"),
            Sketch::Exact => f.write_str("exact"),
        }
    }
}

/// An iterate z and its residual r = A z − b.
#[derive(Debug, Clone)]
pub struct Iterate {
    pub z: Vec<f64>,
    pub r: Vec<f64>,
}

/// A sketch solver bound to one matrix.
pub struct SketchSolver<'a> {
    a: &'a Mat<f64>,
    b: &'a [f64],
    aat: Mat<f64>,
    /// A and AAᵀ row-major, for the row-at-a-time Kaczmarz steps (AAᵀ is symmetric: its row i is its column i).
    a_rows: Vec<f64>,
    aat_rows: Vec<f64>,
    kind: Sketch,
}

pub(crate) fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

impl<'a> SketchSolver<'a> {
    pub fn new(a: &'a Mat<f64>, b: &'a [f64], kind: Sketch) -> Result<Self> {
        let n = a.nrows();
        if a.ncols() != n || b.len() != n {
            return Err(Error::Shape(format!(
                "sketching needs a square system: A is {}×{}, b has {}",
                a.nrows(),
                a.ncols(),
                b.len()
            )));
        }
        let aat = if kind == Sketch::Exact {
            Mat::zeros(0, 0)
        } else {
            a * a.transpose()
        };
        let rows = |m: &Mat<f64>| -> Vec<f64> {
            (0..m.nrows())
                .flat_map(|i| (0..m.ncols()).map(move |j| (i, j)))
                .map(|(i, j)| m[(i, j)])
                .collect()
        };
        let (a_rows, aat_rows) = if kind == Sketch::Exact {
            (rows(a), Vec::new())
        } else {
            (rows(a), rows(&aat))
        };
        Ok(SketchSolver {
            a,
            b,
            aat,
            a_rows,
            aat_rows,
            kind,
        })
    }

    /// z = 0, r = −b.
    pub fn start(&self) -> Iterate {
        Iterate {
            z: vec![0.0; self.b.len()],
            r: self.b.iter().map(|v| -v).collect(),
        }
    }

    /// r = A z − b, exactly.
    fn residual(&self, z: &[f64]) -> Vec<f64> {
        (0..z.len())
            .map(|i| {
                let row = &self.a_rows[i * z.len()..(i + 1) * z.len()];
                row.iter().zip(z).map(|(a, z)| a * z).sum::<f64>() - self.b[i]
            })
            .collect()
    }

    /// Sketch steps from `it` until ‖r‖ ≤ `stop` or `max_steps` steps; returns the steps taken. An exact solve takes
    /// none (and refuses a singular A).
    pub fn run(
        &self,
        it: &mut Iterate,
        stop: f64,
        max_steps: usize,
        rng: &mut Rng,
    ) -> Result<usize> {
        let n = it.z.len();
        if self.kind == Sketch::Exact {
            let rhs = Mat::from_fn(n, 1, |i, _| self.b[i]);
            let z = self.a.partial_piv_lu().solve(&rhs);
            it.z = (0..n).map(|i| z[(i, 0)]).collect();
            if it.z.iter().any(|v| !v.is_finite()) {
                return Err(Error::NonFinite(
                    "the KKT matrix is singular: the exact solve gave non-finite values".into(),
                ));
            }
            it.r = self.residual(&it.z);
            return Ok(0);
        }
        let mut steps = 0;
        while steps < max_steps {
            if norm(&it.r) <= stop {
                // The carried residual says done: confirm with the exact one.
                it.r = self.residual(&it.z);
                if norm(&it.r) <= stop {
                    break;
                }
            }
            self.step(it, rng);
            steps += 1;
            if steps % n.max(1) == 0 {
                it.r = self.residual(&it.z);
            }
        }
        it.r = self.residual(&it.z);
        Ok(steps)
    }

    /// One projection z ← z − Aᵀ S y, r ← r − A Aᵀ S y with y = (Sᵀ A Aᵀ S)⁻¹ Sᵀ r.
    fn step(&self, it: &mut Iterate, rng: &mut Rng) {
        use rand::Rng as _;
        let n = it.z.len();
        let cols = match self.kind {
            Sketch::Kaczmarz => {
                let i = rng.gen_range(0..n);
                let d = self.aat_rows[i * n + i];
                if d <= 0.0 {
                    return; // a zero row carries no information
                }
                let y = it.r[i] / d;
                let (a_i, aat_i) = (
                    &self.a_rows[i * n..(i + 1) * n],
                    &self.aat_rows[i * n..(i + 1) * n],
                );
                for (z, a) in it.z.iter_mut().zip(a_i) {
                    *z -= y * a;
                }
                for (r, g) in it.r.iter_mut().zip(aat_i) {
                    *r -= y * g;
                }
                return;
            }
            Sketch::Gaussian => 1,
            Sketch::Block(k) => k.min(n),
            Sketch::Exact => unreachable!("exact solves do not step"),
        };
        let s = Mat::from_fn(n, cols, |_, _| normal(rng));
        let aats = &self.aat * &s; // n × cols
        let gram = s.transpose() * &aats; // cols × cols, SᵀAAᵀS
        let str_ = Mat::from_fn(cols, 1, |k, _| (0..n).map(|i| s[(i, k)] * it.r[i]).sum());
        let y = gram.partial_piv_lu().solve(&str_);
        if (0..cols).any(|k| !y[(k, 0)].is_finite()) {
            return;
        }
        let sy = &s * &y; // n × 1
        for j in 0..n {
            let atsy: f64 = (0..n).map(|i| self.a[(i, j)] * sy[(i, 0)]).sum();
            it.z[j] -= atsy;
            it.r[j] -= (0..cols).map(|k| aats[(j, k)] * y[(k, 0)]).sum::<f64>();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{rng_for, Stream};

    #[test]
    fn every_sketch_solves_an_indefinite_kkt_system() {
        // [[B, Gᵀ], [G, 0]] with B = diag(2, 1, 3) and G = [1 1 1]: symmetric indefinite.
        let a = Mat::from_fn(4, 4, |i, j| match (i, j) {
            (0, 0) => 2.0,
            (1, 1) => 1.0,
            (2, 2) => 3.0,
            (3, k) | (k, 3) if k < 3 => 1.0,
            _ => 0.0,
        });
        let b = [1.0, -2.0, 0.5, 3.0];
        let exact = {
            let s = SketchSolver::new(&a, &b, Sketch::Exact).unwrap();
            let mut it = s.start();
            s.run(&mut it, 0.0, 0, &mut rng_for(0, Stream::Solver, 0))
                .unwrap();
            it.z
        };
        for kind in [Sketch::Kaczmarz, Sketch::Gaussian, Sketch::Block(2)] {
            let s = SketchSolver::new(&a, &b, kind).unwrap();
            let mut it = s.start();
            let steps = s
                .run(
                    &mut it,
                    1e-10,
                    1_000_000,
                    &mut rng_for(1, Stream::Solver, 0),
                )
                .unwrap();
            assert!(steps > 0 && norm(&it.r) <= 1e-10, "{kind}: {steps} steps");
            for (u, v) in it.z.iter().zip(&exact) {
                assert!((u - v).abs() < 1e-8, "{kind}: {:?} vs {exact:?}", it.z);
            }
        }
        assert!("block0".parse::<Sketch>().is_err() && "sparse".parse::<Sketch>().is_err());
        assert_eq!("block4".parse::<Sketch>().unwrap(), Sketch::Block(4));
    }
}
