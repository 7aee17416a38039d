//! P20's two experiments on the tactile core, each by gradient descent through the simulator and by CMA-ES on
//! the same budget:
//!
//! - [`identify`]: system identification, recovering the pad's Young's modulus and the contact's friction from a
//!   tactile recording (markers and indenter force) of a press-and-slide;
//! - [`optimize`]: trajectory optimisation, finding the indenter's press-and-slide motion (knots of a
//!   piecewise-linear path) whose tactile reading matches a target reading.
//!
//! The loss is the reading mismatch [`ReadingMatch`], each part scaled by the target's mean square. Budgets are
//! counted in simulations: a gradient costs a forward run, a recomputed forward run and a backward run, so each
//! gradient step counts [`GRADIENT_COST`] = 3 simulations and CMA-ES gets that many evaluations per step (in wall
//! time a gradient measures 3.4 forward runs, `optlab-bench sim`: the count slightly favours gradient descent).

use super::contact::Indenter;
use super::fem::{Law, Material, Pad};
use super::gradient::{value, value_and_gradient, ReadingMatch};
use super::mesh::Mesh;
use super::tactile::{simulate, Recording};
use crate::optim::flat::FlatDescent;
use crate::solvers::cmaes::{cma_es, CmaConfig};
use crate::{Error, Result};
use serde::Serialize;

/// Simulations one gradient evaluation counts for in a budget.
pub const GRADIENT_COST: usize = 3;

/// The sensor: pad, indenter and time step.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    pub pad: Pad,
    pub indenter: Indenter,
    pub dt: f64,
    /// Steps per run.
    pub steps: usize,
}

impl Scene {
    /// The default sensor: a 2 × 0.5 pad (16 × 4 cells, density 1, damping 2) of the given law with E = 1,
    /// ν = 0.3; an indenter of radius 0.4, penalty 200, friction 0.5, smoothing 0.5, Hunt–Crossley dissipation 10; dt = 2e-3, 300 steps.
    pub fn sensor(law: Law) -> Result<Scene> {
        Ok(Scene {
            pad: Pad::new(
                Mesh::rectangle(2.0, 0.5, 16, 4)?,
                Material::with_law(law, 1.0, 0.3)?,
                0.01,
            )?
            .with_damping(40.0)?,
            indenter: Indenter::new(0.4, 100.0, 0.5, 0.5)?.with_dissipation(0.05)?,
            dt: 5e-4,
            steps: 3000,
        })
    }

    /// The same scene with Young's modulus `young` and friction `friction`.
    pub fn with_parameters(&self, young: f64, friction: f64) -> Result<Scene> {
        let mut s = self.clone();
        s.pad.material = Material::with_law(s.pad.material.law, young, s.pad.material.poisson)?;
        s.indenter = Indenter::new(
            s.indenter.radius,
            s.indenter.stiffness,
            friction,
            s.indenter.smoothing,
        )?
        .with_dissipation(s.indenter.dissipation)?;
        Ok(s)
    }

    /// The indenter's height at first touch of the undeformed pad.
    pub fn touch(&self) -> f64 {
        let top = self
            .pad
            .mesh
            .surface
            .iter()
            .map(|&i| self.pad.mesh.rest[i][1])
            .fold(f64::MIN, f64::max);
        top + self.indenter.radius
    }
}

/// A path of `steps` centres, piecewise linear through knots at equally spaced steps (the first at step 0, the
/// last at the last step).
pub fn knot_path(knots: &[[f64; 2]], steps: usize) -> Vec<[f64; 2]> {
    (0..steps)
        .map(|t| {
            let (k, a) = knot_weight(knots.len(), steps, t);
            let (p, q) = (knots[k], knots[(k + 1).min(knots.len() - 1)]);
            [(1.0 - a) * p[0] + a * q[0], (1.0 - a) * p[1] + a * q[1]]
        })
        .collect()
}

/// The knot before step t and the weight of the one after.
fn knot_weight(knots: usize, steps: usize, t: usize) -> (usize, f64) {
    if knots < 2 || steps < 2 {
        return (0, 0.0);
    }
    let s = t as f64 * (knots - 1) as f64 / (steps - 1) as f64;
    let k = (s.floor() as usize).min(knots - 2);
    (k, s - k as f64)
}

/// Pulls a gradient with respect to the path back to the knots.
pub fn knot_gradient(path_grad: &[[f64; 2]], knots: usize) -> Vec<[f64; 2]> {
    let mut g = vec![[0.0; 2]; knots];
    for (t, pg) in path_grad.iter().enumerate() {
        let (k, a) = knot_weight(knots, path_grad.len(), t);
        for q in 0..2 {
            g[k][q] += (1.0 - a) * pg[q];
            if knots > 1 {
                g[(k + 1).min(knots - 1)][q] += a * pg[q];
            }
        }
    }
    g
}

/// The press-and-slide of the experiments: from just above the pad at x = `x0`, down `depth` below first touch
/// over the first third, then `slide` to the right, as `knots` equally spaced knots (at least 3).
pub fn press_and_slide(
    scene: &Scene,
    x0: f64,
    depth: f64,
    slide: f64,
    knots: usize,
) -> Vec<[f64; 2]> {
    let k = knots.max(3);
    let top = scene.touch() + 0.01;
    let bottom = scene.touch() - depth;
    (0..k)
        .map(|i| {
            let s = i as f64 / (k - 1) as f64;
            if s <= 1.0 / 3.0 {
                [x0, top + (bottom - top) * 3.0 * s]
            } else {
                [x0 + slide * (s - 1.0 / 3.0) * 1.5, bottom]
            }
        })
        .collect()
}

/// The reading mismatch with each part scaled by the target's mean square.
pub fn normalized_match(target: Recording) -> ReadingMatch {
    let [m, f] = mean_squares(&target).map(|v| v.max(1e-300));
    ReadingMatch::new(target, 1.0 / (2.0 * m), 1.0 / (2.0 * f))
}

/// The mean squares of a recording's marker coordinates and of its force components.
fn mean_squares(rec: &Recording) -> [f64; 2] {
    let ms = |v: &mut dyn Iterator<Item = f64>| {
        let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x * x, n + 1));
        s / n.max(1) as f64
    };
    [
        ms(&mut rec.markers.iter().flatten().flatten().copied()),
        ms(&mut rec.force.iter().flatten().copied()),
    ]
}

/// One logged point of a run: the simulations spent, the loss and the parameters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub simulations: usize,
    pub loss: f64,
    pub params: Vec<f64>,
}

/// Both methods' runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub truth: Vec<f64>,
    pub start: Vec<f64>,
    pub gradient: Vec<Point>,
    pub cma: Vec<Point>,
}

/// The settings both experiments share.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    /// Gradient steps; CMA-ES gets `iterations × GRADIENT_COST` simulations.
    pub iterations: usize,
    /// The optimizer spec for gradient descent (over the search coordinates).
    pub optimizer: String,
    pub schedule: String,
    /// CMA-ES's initial step size in the search coordinates.
    pub sigma: f64,
    pub seed: u64,
}

impl Search {
    /// Refuses settings no run can honour (before any simulation).
    pub fn check(&self) -> Result<()> {
        if self.iterations == 0 || self.iterations > 1_000_000 {
            return Err(Error::invalid(format!(
                "iterations must be 1 to 1000000, not {}",
                self.iterations
            )));
        }
        if !(self.sigma.is_finite() && self.sigma > 0.0) {
            return Err(Error::invalid(format!(
                "CMA-ES's sigma must be > 0, not {}",
                self.sigma
            )));
        }
        Ok(())
    }
}

/// A loss with its gradient over the search coordinates.
type LossAndGradient<'a> = &'a dyn Fn(&[f64]) -> Result<(f64, Vec<f64>)>;

/// Gradient descent and CMA-ES on `loss` over search coordinates `z` from `z0`. `loss_and_grad(z)` gives the
/// loss and its gradient; `params(z)` maps search coordinates to reported parameters.
fn compare(
    z0: &[f64],
    search: &Search,
    loss: &(dyn Fn(&[f64]) -> Result<f64> + Sync),
    loss_and_grad: LossAndGradient,
    params: &dyn Fn(&[f64]) -> Vec<f64>,
    progress: &mut dyn FnMut(usize, f64),
) -> Result<(Vec<Point>, Vec<Point>)> {
    search.check()?;
    let mut gd = FlatDescent::new(
        z0,
        &search.optimizer,
        &search.schedule,
        search.iterations as u64,
    )?;
    let mut gradient = Vec::with_capacity(search.iterations + 1);
    for it in 0..=search.iterations {
        let z = gd.x()?;
        let (j, g) = if it < search.iterations {
            loss_and_grad(&z)?
        } else {
            (loss(&z)?, Vec::new())
        };
        gradient.push(Point {
            simulations: it * GRADIENT_COST,
            loss: j,
            params: params(&z),
        });
        progress(it, j);
        if it < search.iterations {
            gd.step(&g)?;
        }
    }
    let budget = search.iterations * GRADIENT_COST;
    let f = |z: &[f64]| loss(z).unwrap_or(f64::INFINITY);
    let n = z0.len() as f64;
    let lambda = (4 + (3.0 * n.ln()).floor() as usize).min(budget.max(2));
    let r = cma_es(
        &f,
        z0,
        &CmaConfig {
            sigma: search.sigma,
            population: Some(lambda),
            budget: budget.max(lambda + 1),
            seed: search.seed,
        },
    )?;
    // CMA-ES's best point per generation; its parameters are re-derived at the end only.
    let mut cma: Vec<Point> = r
        .history
        .iter()
        .map(|&(simulations, loss)| Point {
            simulations,
            loss,
            params: Vec::new(),
        })
        .collect();
    if let Some(last) = cma.last_mut() {
        last.params = params(&r.x);
    }
    Ok((gradient, cma))
}

/// The identification experiment's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Identify {
    /// The true Young's modulus and friction the recording is made with.
    pub truth: [f64; 2],
    /// The starting guess.
    pub start: [f64; 2],
    /// Gaussian noise on the recorded markers and force, as a fraction of their RMS.
    pub noise: f64,
    pub search: Search,
}

impl Default for Identify {
    fn default() -> Self {
        Identify {
            truth: [1.0, 0.5],
            start: [2.5, 0.2],
            noise: 0.0,
            search: Search {
                iterations: 60,
                optimizer: "adam:lr=0.05".into(),
                schedule: "cosine".into(),
                sigma: 0.5,
                seed: 0,
            },
        }
    }
}

/// System identification: the search runs over (ln E, ln μ) on the scene's press-and-slide recording.
pub fn identify(
    scene: &Scene,
    cfg: &Identify,
    progress: &mut dyn FnMut(usize, f64),
) -> Result<Comparison> {
    cfg.search.check()?;
    let z0 = [cfg.start[0].ln(), cfg.start[1].ln()];
    if z0.iter().any(|v| !v.is_finite()) {
        return Err(Error::invalid(
            "the starting stiffness and friction must be > 0",
        ));
    }
    let path = knot_path(&press_and_slide(scene, 0.7, 0.06, 0.5, 4), scene.steps);
    let truth = scene.with_parameters(cfg.truth[0], cfg.truth[1])?;
    let mut target = simulate(&truth.pad, &truth.indenter, &path, truth.dt)?;
    if cfg.noise > 0.0 {
        add_noise(&mut target, cfg.noise, cfg.search.seed)?;
    } else if !(cfg.noise == 0.0) {
        return Err(Error::invalid(format!(
            "the noise must be >= 0, not {}",
            cfg.noise
        )));
    }
    let obj = normalized_match(target);
    let at = |z: &[f64]| scene.with_parameters(z[0].exp(), z[1].exp());
    let loss = |z: &[f64]| {
        let s = at(z)?;
        value(&s.pad, &s.indenter, &path, s.dt, &obj)
    };
    let loss_and_grad = |z: &[f64]| {
        let s = at(z)?;
        let (j, g) = value_and_gradient(&s.pad, &s.indenter, &path, s.dt, &obj, 32)?;
        Ok((j, vec![g.young * z[0].exp(), g.friction * z[1].exp()]))
    };
    let params = |z: &[f64]| vec![z[0].exp(), z[1].exp()];
    let (gradient, cma) = compare(&z0, &cfg.search, &loss, &loss_and_grad, &params, progress)?;
    Ok(Comparison {
        truth: cfg.truth.to_vec(),
        start: cfg.start.to_vec(),
        gradient,
        cma,
    })
}

/// Adds N(0, (noise · RMS)²) to every recorded marker coordinate and force component.
fn add_noise(rec: &mut Recording, noise: f64, seed: u64) -> Result<()> {
    if !noise.is_finite() {
        return Err(Error::invalid(format!(
            "the noise must be finite, not {noise}"
        )));
    }
    let [m, f] = mean_squares(rec).map(f64::sqrt);
    let mut rng = crate::rng::rng_for(seed, crate::rng::Stream::Data, 0);
    let mut z = crate::rng::Normals::default();
    for v in rec.markers.iter_mut().flatten().flatten() {
        *v += noise * m * z.next(&mut rng);
    }
    for v in rec.force.iter_mut().flatten() {
        *v += noise * f * z.next(&mut rng);
    }
    Ok(())
}

/// The trajectory-optimisation experiment's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Optimize {
    /// Knots of the path.
    pub knots: usize,
    /// The target motion's press depth and slide; the starting motion's.
    pub target: [f64; 2],
    pub start: [f64; 2],
    pub search: Search,
}

impl Default for Optimize {
    fn default() -> Self {
        Optimize {
            knots: 5,
            target: [0.06, 0.4],
            start: [0.03, 0.0],
            search: Search {
                iterations: 100,
                optimizer: "adam:lr=0.01".into(),
                schedule: "cosine".into(),
                sigma: 0.02,
                seed: 0,
            },
        }
    }
}

/// Trajectory optimisation: the search runs over the knots' coordinates (2 per knot) to match the reading of
/// the target press-and-slide; the reported parameters are the knots.
pub fn optimize(
    scene: &Scene,
    cfg: &Optimize,
    progress: &mut dyn FnMut(usize, f64),
) -> Result<Comparison> {
    cfg.search.check()?;
    if !(3..=64).contains(&cfg.knots) {
        return Err(Error::invalid(format!(
            "knots must be 3 to 64, not {}",
            cfg.knots
        )));
    }
    let ok = |d: [f64; 2]| {
        d.iter().all(|v| v.is_finite()) && d[0] >= 0.0 && d[0] < 0.5 * scene.indenter.radius
    };
    if !(ok(cfg.target) && ok(cfg.start)) {
        return Err(Error::invalid(format!(
            "the press depths must be in [0, {}) and the slides finite",
            0.5 * scene.indenter.radius
        )));
    }
    let x0 = 0.6;
    let truth = press_and_slide(scene, x0, cfg.target[0], cfg.target[1], cfg.knots);
    let start = press_and_slide(scene, x0, cfg.start[0], cfg.start[1], cfg.knots);
    let target = simulate(
        &scene.pad,
        &scene.indenter,
        &knot_path(&truth, scene.steps),
        scene.dt,
    )?;
    let obj = normalized_match(target);
    let knots_of = |z: &[f64]| -> Vec<[f64; 2]> { z.chunks(2).map(|c| [c[0], c[1]]).collect() };
    let loss = |z: &[f64]| {
        value(
            &scene.pad,
            &scene.indenter,
            &knot_path(&knots_of(z), scene.steps),
            scene.dt,
            &obj,
        )
    };
    let loss_and_grad = |z: &[f64]| {
        let (j, g) = value_and_gradient(
            &scene.pad,
            &scene.indenter,
            &knot_path(&knots_of(z), scene.steps),
            scene.dt,
            &obj,
            32,
        )?;
        Ok((j, knot_gradient(&g.path, cfg.knots).concat()))
    };
    let params = |z: &[f64]| z.to_vec();
    let (gradient, cma) = compare(
        &start.concat(),
        &cfg.search,
        &loss,
        &loss_and_grad,
        &params,
        progress,
    )?;
    Ok(Comparison {
        truth: truth.concat(),
        start: start.concat(),
        gradient,
        cma,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knots_interpolate_and_pull_back() {
        let knots = [[0.0, 1.0], [1.0, 0.0], [3.0, 2.0]];
        let p = knot_path(&knots, 5);
        assert_eq!(
            p,
            vec![[0.0, 1.0], [0.5, 0.5], [1.0, 0.0], [2.0, 1.0], [3.0, 2.0]]
        );
        // ⟨knot_gradient(g), k⟩ = ⟨g, path(k)⟩: the pull-back is the adjoint of the (linear) path map.
        let g: Vec<[f64; 2]> = (0..5).map(|t| [t as f64, 1.0 - t as f64]).collect();
        let kg = knot_gradient(&g, 3);
        let lhs: f64 = kg
            .iter()
            .zip(&knots)
            .map(|(a, b)| a[0] * b[0] + a[1] * b[1])
            .sum();
        let rhs: f64 = g
            .iter()
            .zip(&p)
            .map(|(a, b)| a[0] * b[0] + a[1] * b[1])
            .sum();
        assert!((lhs - rhs).abs() < 1e-12);
    }
}
