//! P18's comparison, end to end for the CLI: on grids of several sides, with and without obstacles, solve the
//! same right-hand sides by CG, IC(0)-PCG and DCDM (when a trained network is given) and report the iterations
//! and seconds each takes to reach every tolerance.

use super::dcdm::{dcdm, NetDirection, PoissonSystem};
use super::krylov::{cg, pcg, IncompleteCholesky, Solve, Stop};
use super::net::DirectionNet;
use super::poisson::Grid;
use super::ritz::{ritz_rhs, RitzConfig};
use crate::rng::{normal, rng_for, Stream};
use crate::{Error, Result};
use serde::Serialize;
use std::time::Instant;

/// The right-hand sides of a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Rhs {
    /// Independent standard normal values on the fluid cells (every frequency equally).
    Gaussian,
    /// Drawn as the training set is, from the test grid's own Ritz vectors.
    Ritz,
}

impl std::str::FromStr for Rhs {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "gaussian" => Ok(Rhs::Gaussian),
            "ritz" => Ok(Rhs::Ritz),
            _ => Err(Error::invalid(format!(
                "right-hand sides '{s}': available: gaussian, ritz"
            ))),
        }
    }
}

/// What a comparison runs.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchConfig {
    /// Grid sides.
    pub sides: Vec<usize>,
    /// Obstacle counts (0: an open grid); every side is run with each.
    pub obstacles: Vec<usize>,
    /// Right-hand sides per grid.
    pub count: usize,
    pub rhs: Rhs,
    /// Relative residuals reported; the solves run to the smallest.
    pub tols: Vec<f64>,
    pub max_iters: usize,
    pub seed: u64,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            sides: vec![64, 128],
            obstacles: vec![0, 4],
            count: 20,
            rhs: Rhs::Gaussian,
            tols: vec![1e-4, 1e-6],
            max_iters: 2000,
            seed: 0,
        }
    }
}

/// One method's result on one grid, over its right-hand sides.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MethodRow {
    pub method: String,
    pub side: usize,
    pub obstacles: usize,
    pub unknowns: usize,
    pub tol: f64,
    /// Right-hand sides that reached `tol` within `max_iters`.
    pub reached: usize,
    pub count: usize,
    /// Means over the right-hand sides that reached `tol`.
    pub mean_iterations: f64,
    pub max_iterations: usize,
    pub mean_seconds: f64,
    /// One-time work before the solves (the IC(0) factorization).
    pub setup_seconds: f64,
}

/// The residual history of one method on a grid's first right-hand side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Curve {
    pub method: String,
    pub side: usize,
    pub obstacles: usize,
    pub residuals: Vec<f64>,
}

/// A grid's solid cells and the solution of its first right-hand side (CG's), row-major.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Field {
    pub side: usize,
    pub obstacles: usize,
    pub solid: Vec<bool>,
    pub solution: Vec<f64>,
}

/// Everything a comparison measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchReport {
    pub rows: Vec<MethodRow>,
    pub curves: Vec<Curve>,
    #[serde(skip)]
    pub fields: Vec<Field>,
}

/// The right-hand sides of one grid (zero on solid cells).
pub fn test_rhs(
    system: &PoissonSystem,
    rhs: Rhs,
    count: usize,
    seed: u64,
) -> Result<Vec<Vec<f64>>> {
    let cells = system.grid.cells();
    crate::memory::check(
        "the test right-hand sides",
        count as f64 * cells as f64 * 8.0,
        "use fewer right-hand sides or smaller grids",
    )?;
    let mask = system.grid.fluid_mask();
    match rhs {
        Rhs::Gaussian => {
            let mut rng = rng_for(seed, Stream::Data, 182);
            Ok((0..count)
                .map(|_| mask.iter().map(|&m| m * normal(&mut rng)).collect())
                .collect())
        }
        Rhs::Ritz => {
            let cfg = RitzConfig {
                samples: count,
                seed: seed ^ 0x5eed,
                ..RitzConfig::default()
            };
            let flat = ritz_rhs(&system.matrix, &mask, &cfg)?;
            Ok(flat
                .chunks(cells)
                .map(|c| c.iter().map(|&v| f64::from(v)).collect())
                .collect())
        }
    }
}

fn rows(
    method: &str,
    grid: &Grid,
    obstacles: usize,
    solves: &[Solve],
    setup: f64,
    cfg: &BenchConfig,
) -> Vec<MethodRow> {
    cfg.tols
        .iter()
        .map(|&tol| {
            let hits: Vec<(usize, f64)> = solves
                .iter()
                .filter_map(|s| Some((s.iterations_to(tol)?, s.seconds_to(tol)?)))
                .collect();
            let k = hits.len().max(1) as f64;
            MethodRow {
                method: method.into(),
                side: grid.n,
                obstacles,
                unknowns: grid.cells(),
                tol,
                reached: hits.len(),
                count: solves.len(),
                mean_iterations: hits.iter().map(|h| h.0 as f64).sum::<f64>() / k,
                max_iterations: hits.iter().map(|h| h.0).max().unwrap_or(0),
                mean_seconds: hits.iter().map(|h| h.1).sum::<f64>() / k,
                setup_seconds: setup,
            }
        })
        .collect()
}

/// Runs the comparison; `on_grid(side, obstacles)` as each grid starts.
pub fn bench(
    net: Option<&DirectionNet>,
    cfg: &BenchConfig,
    on_grid: &mut dyn FnMut(usize, usize),
) -> Result<BenchReport> {
    if cfg.sides.is_empty() || cfg.obstacles.is_empty() || cfg.tols.is_empty() || cfg.count == 0 {
        return Err(Error::invalid(
            "linsolve bench: need at least one grid side, obstacle count, tolerance and right-hand side",
        ));
    }
    if let Some(t) = cfg.tols.iter().find(|t| !(**t > 0.0 && **t < 1.0)) {
        return Err(Error::invalid(format!(
            "linsolve bench: a tolerance must be in (0, 1), not {t}"
        )));
    }
    if net.is_some() {
        if let Some(n) = cfg.sides.iter().find(|n| *n % 2 != 0) {
            return Err(Error::invalid(format!(
                "linsolve bench: DCDM's network pools by 2, so every grid side must be even (got {n})"
            )));
        }
    }
    let stop = Stop {
        tol: cfg.tols.iter().copied().fold(1.0, f64::min),
        max_iters: cfg.max_iters,
    };
    let mut out = BenchReport {
        rows: Vec::new(),
        curves: Vec::new(),
        fields: Vec::new(),
    };
    let mut record = |method: &str, grid: &Grid, obstacles: usize, solves: &[Solve], setup: f64| {
        out.rows
            .extend(rows(method, grid, obstacles, solves, setup, cfg));
        out.curves.push(Curve {
            method: method.into(),
            side: grid.n,
            obstacles,
            residuals: solves[0].residuals.clone(),
        });
    };
    let mut fields = Vec::new();
    for &side in &cfg.sides {
        for &obstacles in &cfg.obstacles {
            on_grid(side, obstacles);
            let grid = Grid::with_obstacles(side, obstacles, cfg.seed)?;
            let system = PoissonSystem::new(grid)?;
            let a = &system.matrix;
            let bs = test_rhs(&system, cfg.rhs, cfg.count, cfg.seed)?;
            let solves = bs
                .iter()
                .map(|b| cg(a, b, stop))
                .collect::<Result<Vec<_>>>()?;
            record("cg", &system.grid, obstacles, &solves, 0.0);
            fields.push(Field {
                side,
                obstacles,
                solid: system.grid.solid.clone(),
                solution: solves[0].x.clone(),
            });
            let t = Instant::now();
            let ic = IncompleteCholesky::new(a)?;
            let setup = t.elapsed().as_secs_f64();
            let solves = bs
                .iter()
                .map(|b| pcg(a, b, &ic, stop))
                .collect::<Result<Vec<_>>>()?;
            record("ic-pcg", &system.grid, obstacles, &solves, setup);
            if let Some(net) = net {
                let dir = NetDirection {
                    net,
                    system: &system,
                };
                let solves = bs
                    .iter()
                    .map(|b| dcdm(a, b, &dir, stop))
                    .collect::<Result<Vec<_>>>()?;
                record("dcdm", &system.grid, obstacles, &solves, 0.0);
            }
        }
    }
    out.fields = fields;
    Ok(out)
}
