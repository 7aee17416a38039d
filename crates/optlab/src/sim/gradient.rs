//! Reverse-mode gradients through time (P20's differentiability, by hand): the derivative of a scalar of a
//! tactile run, J = Σ_t j_t(s_{t+1}, force_t), with respect to the material (E, ν), the pad's damping, the
//! contact's penalty stiffness and friction, and every centre of the indenter's path. The forward pass keeps a
//! checkpoint every `every` steps; the backward pass recomputes one segment at a time, so memory is
//! O((T/every + every) nodes) instead of O(T nodes).
//!
//! ```
//! use optlab::sim::{contact::Indenter, fem::{Material, Pad}, mesh::Mesh, tactile::{ramp, simulate}};
//! use optlab::sim::gradient::{value_and_gradient, ReadingMatch};
//! let pad = Pad::new(Mesh::rectangle(2.0, 0.5, 8, 2)?, Material::new("neo-hookean", 1.0, 0.3)?, 1.0)?;
//! let ind = Indenter::new(0.4, 200.0, 0.3, 0.5)?;
//! let path = ramp([1.0, 0.9], [1.0, 0.86], 20, 10);
//! let target = simulate(&pad, &ind, &path, 2e-3)?;
//! // Against its own recording the loss is zero, and so is its gradient.
//! let (j, g) = value_and_gradient(&pad, &ind, &path, 2e-3, &ReadingMatch::new(target, 1.0, 1.0), 8)?;
//! assert!(j == 0.0 && g.young == 0.0 && g.friction == 0.0);
//! # Ok::<(), optlab::Error>(())
//! ```

// The backward pass walks several per-node arrays in step; index loops say that more plainly.
#![allow(clippy::needless_range_loop)]

use super::contact::Indenter;
use super::fem::{Pad, State};
use super::tactile::{check_run, indenter_velocity, Recording, Stepper};
use crate::{Error, Result};

/// Where an objective writes ∂j_t: the cotangents of the state after step t and of the force on the indenter.
pub struct Cotangent {
    pub x: Vec<[f64; 2]>,
    pub v: Vec<[f64; 2]>,
    pub force: [f64; 2],
}

/// A scalar of the trajectory, J = Σ_t j_t(s_{t+1}, force_t).
pub trait Objective {
    /// Refuses a run it cannot score (for example a path of another length than its target).
    fn check(&self, _pad: &Pad, _steps: usize) -> Result<()> {
        Ok(())
    }
    /// j_t, adding ∂j_t/∂s_{t+1} and ∂j_t/∂force_t into `grad` when given.
    fn term(
        &self,
        pad: &Pad,
        t: usize,
        s: &State,
        force: [f64; 2],
        grad: Option<&mut Cotangent>,
    ) -> f64;
}

/// The mismatch of a run's tactile reading with a target recording:
/// J = (1/T) Σ_t [w_m (1/M) Σ_i |m_{t,i} − m*_{t,i}|² + w_f |F_t − F*_t|²] over T steps and M markers.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadingMatch {
    pub target: Recording,
    pub markers_weight: f64,
    pub force_weight: f64,
}

impl ReadingMatch {
    pub fn new(target: Recording, markers_weight: f64, force_weight: f64) -> Self {
        ReadingMatch {
            target,
            markers_weight,
            force_weight,
        }
    }
}

impl Objective for ReadingMatch {
    fn check(&self, pad: &Pad, steps: usize) -> Result<()> {
        let m = pad.mesh.surface.len();
        if self.target.force.len() != steps
            || self.target.markers.len() != steps
            || self.target.markers.iter().any(|r| r.len() != m)
        {
            return Err(Error::invalid(format!(
                "the target recording has {} steps of {} markers; the run has {steps} of {m}",
                self.target.force.len(),
                self.target.markers.first().map_or(0, Vec::len)
            )));
        }
        Ok(())
    }

    fn term(
        &self,
        pad: &Pad,
        t: usize,
        s: &State,
        force: [f64; 2],
        mut grad: Option<&mut Cotangent>,
    ) -> f64 {
        let steps = self.target.force.len() as f64;
        let surface = &pad.mesh.surface;
        let wm = self.markers_weight / (steps * surface.len().max(1) as f64);
        let wf = self.force_weight / steps;
        let mut j = 0.0;
        for (&i, want) in surface.iter().zip(&self.target.markers[t]) {
            for k in 0..2 {
                let r = s.x[i][k] - pad.mesh.rest[i][k] - want[k];
                j += wm * r * r;
                if let Some(g) = grad.as_deref_mut() {
                    g.x[i][k] += 2.0 * wm * r;
                }
            }
        }
        for k in 0..2 {
            let r = force[k] - self.target.force[t][k];
            j += wf * r * r;
            if let Some(g) = grad.as_deref_mut() {
                g.force[k] += 2.0 * wf * r;
            }
        }
        j
    }
}

/// ∂J with respect to everything a run depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct Gradient {
    /// Young's modulus and Poisson's ratio.
    pub young: f64,
    pub poisson: f64,
    pub damping: f64,
    /// The contact's penalty stiffness and Coulomb coefficient.
    pub stiffness: f64,
    pub friction: f64,
    /// One entry per centre of the path.
    pub path: Vec<[f64; 2]>,
}

/// J alone, by one forward run.
pub fn value(
    pad: &Pad,
    indenter: &Indenter,
    path: &[[f64; 2]],
    dt: f64,
    objective: &dyn Objective,
) -> Result<f64> {
    objective.check(pad, path.len())?;
    let mut j = 0.0;
    super::tactile::run(pad, indenter, path, dt, |t, s, force| {
        j += objective.term(pad, t, s, force, None)
    })?;
    Ok(j)
}

/// J and its gradient, by a forward run with a checkpoint every `every` steps and a backward run that recomputes
/// one segment at a time.
pub fn value_and_gradient(
    pad: &Pad,
    indenter: &Indenter,
    path: &[[f64; 2]],
    dt: f64,
    objective: &dyn Objective,
    every: usize,
) -> Result<(f64, Gradient)> {
    check_run(pad, path, dt)?;
    objective.check(pad, path.len())?;
    if every == 0 {
        return Err(Error::invalid(
            "checkpoints need an interval of at least 1 step",
        ));
    }
    let steps = path.len();
    let n = pad.mesh.rest.len();
    crate::memory::check(
        "the gradient's checkpoints",
        (steps.div_ceil(every) + every + 1) as f64 * (32 * n) as f64,
        "use a coarser mesh or a shorter path",
    )?;
    let mut stepper = Stepper::new(pad, indenter, dt);

    // Forward: the value and the checkpoints.
    let mut checkpoints = Vec::with_capacity(steps.div_ceil(every));
    let mut s = State::rest(pad);
    let mut j = 0.0;
    for (t, &c) in path.iter().enumerate() {
        if t % every == 0 {
            checkpoints.push(s.clone());
        }
        let force = stepper.advance(&mut s, c, indenter_velocity(path, t, dt))?;
        j += objective.term(pad, t, &s, force, None);
    }

    // Backward, one segment at a time.
    let mut grad = Gradient {
        young: 0.0,
        poisson: 0.0,
        damping: 0.0,
        stiffness: 0.0,
        friction: 0.0,
        path: vec![[0.0; 2]; steps],
    };
    let mut cot = Cotangent {
        x: vec![[0.0; 2]; n],
        v: vec![[0.0; 2]; n],
        force: [0.0; 2],
    };
    let mut fbar = vec![[0.0; 2]; n];
    let mut lame = [0.0; 2];
    let keep = 1.0 - pad.damping * dt;
    let mut base = vec![false; n];
    pad.mesh.base.iter().for_each(|&i| base[i] = true);
    // The segment's states, allocated once and overwritten per segment.
    let mut segment: Vec<State> = vec![State::rest(pad); (every + 1).min(steps + 1)];
    let mut forces: Vec<[f64; 2]> = Vec::with_capacity(every);
    for (k, start) in checkpoints.into_iter().enumerate().rev() {
        let t0 = k * every;
        let t1 = (t0 + every).min(steps);
        forces.clear();
        segment[0] = start;
        for t in t0..t1 {
            let (done, rest) = segment.split_at_mut(t - t0 + 1);
            let next = &mut rest[0];
            next.x.copy_from_slice(&done[t - t0].x);
            next.v.copy_from_slice(&done[t - t0].v);
            forces.push(stepper.advance(next, path[t], indenter_velocity(path, t, dt))?);
        }
        for t in (t0..t1).rev() {
            let (before, after) = (&segment[t - t0], &segment[t - t0 + 1]);
            cot.force = [0.0; 2];
            objective.term(pad, t, after, forces[t - t0], Some(&mut cot));
            // The clamped base is constant.
            for i in 0..n {
                if base[i] {
                    cot.x[i] = [0.0; 2];
                    cot.v[i] = [0.0; 2];
                }
            }
            // x_{t+1} = x_t + dt v_{t+1}; v_{t+1} = (1 − α dt) v_t + dt f/m.
            for i in 0..n {
                for d in 0..2 {
                    cot.v[i][d] += dt * cot.x[i][d];
                    fbar[i][d] = dt * cot.v[i][d] / pad.mass[i];
                    grad.damping -= dt * before.v[i][d] * cot.v[i][d];
                    cot.v[i][d] *= keep;
                }
            }
            let d_lame = pad.elastic_vjp(&before.x, &fbar, &mut cot.x)?;
            lame[0] += d_lame[0];
            lame[1] += d_lame[1];
            // The contact forces, and the force on the indenter (minus their sum).
            let c = path[t];
            let vc = indenter_velocity(path, t, dt);
            let mut vc_bar = [0.0; 2];
            for i in 0..n {
                let p = before.x[i];
                let d = [p[0] - c[0], p[1] - c[1]];
                if indenter.gap(p, c) >= 0.0 {
                    continue;
                }
                let w = [before.v[i][0] - vc[0], before.v[i][1] - vc[1]];
                let a = [fbar[i][0] - cot.force[0], fbar[i][1] - cot.force[1]];
                let (d_bar, w_bar, dp) = indenter.node_vjp(d, w, a);
                for q in 0..2 {
                    cot.x[i][q] += d_bar[q];
                    cot.v[i][q] += w_bar[q];
                    grad.path[t][q] -= d_bar[q];
                    vc_bar[q] -= w_bar[q];
                }
                grad.stiffness += dp[0];
                grad.friction += dp[1];
            }
            if t > 0 {
                for q in 0..2 {
                    grad.path[t][q] += vc_bar[q] / dt;
                    grad.path[t - 1][q] -= vc_bar[q] / dt;
                }
            }
        }
    }
    [grad.young, grad.poisson] = pad.material.lame_to_young_poisson(lame[0], lame[1]);
    Ok((j, grad))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::fem::Material;
    use crate::sim::mesh::Mesh;
    use crate::sim::tactile::{ramp, simulate};

    #[test]
    fn checkpoints_do_not_change_the_gradient() {
        let pad = Pad::new(
            Mesh::rectangle(1.0, 0.4, 5, 2).unwrap(),
            Material::new("linear", 1.0, 0.3).unwrap(),
            1.0,
        )
        .unwrap();
        let ind = Indenter::new(0.3, 100.0, 0.4, 0.5).unwrap();
        let path = ramp([0.5, 0.72], [0.6, 0.66], 23, 0);
        let target = simulate(&pad, &ind, &ramp([0.5, 0.72], [0.55, 0.67], 23, 0), 5e-3).unwrap();
        let obj = ReadingMatch::new(target, 1.0, 0.5);
        let (j1, g1) = value_and_gradient(&pad, &ind, &path, 5e-3, &obj, 1).unwrap();
        for every in [4, 7, 23, 100] {
            let (j, g) = value_and_gradient(&pad, &ind, &path, 5e-3, &obj, every).unwrap();
            assert_eq!((j, &g), (j1, &g1), "every {every}");
        }
        assert!(j1 > 0.0 && g1.path.iter().flatten().any(|v| *v != 0.0));
        assert_eq!(value(&pad, &ind, &path, 5e-3, &obj).unwrap(), j1);
        assert!(value_and_gradient(&pad, &ind, &path, 5e-3, &obj, 0).is_err());
        assert!(value(&pad, &ind, &path[1..], 5e-3, &obj).is_err());
    }
}
