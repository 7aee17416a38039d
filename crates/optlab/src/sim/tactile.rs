//! A tactile recording (P20): the pad (base clamped) under a rigid indenter that follows a path of centres, one
//! per step; the reading is the markers' displacement (the surface nodes' positions minus their rest positions)
//! and the force on the indenter at every step.

use super::contact::Indenter;
use super::fem::{step, Pad, State};
use crate::{Error, Result};

/// The readings of a run: per step, the surface markers' displacements (in `Pad::mesh.surface` order) and the
/// force the pad exerts on the indenter.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    pub markers: Vec<Vec<[f64; 2]>>,
    pub force: Vec<[f64; 2]>,
}

/// The most steps one run takes.
pub const MAX_STEPS: usize = 10_000_000;

/// Checks a run's time step and path: dt > 0 with the damping's factor 1 − α dt positive, 1 to [`MAX_STEPS`]
/// finite centres.
pub fn check_run(pad: &Pad, path: &[[f64; 2]], dt: f64) -> Result<()> {
    if !(dt.is_finite() && dt > 0.0 && pad.damping * dt < 1.0) {
        return Err(Error::invalid(format!(
            "the time step must be > 0 and below 1/damping, not {dt} (damping {})",
            pad.damping
        )));
    }
    if path.is_empty() || path.len() > MAX_STEPS || path.iter().flatten().any(|v| !v.is_finite()) {
        return Err(Error::invalid(format!(
            "the indenter's path needs 1 to {MAX_STEPS} finite centres, not {}",
            path.len()
        )));
    }
    Ok(())
}

/// The indenter's velocity during step t: the backward difference of the path (zero at the first step).
pub fn indenter_velocity(path: &[[f64; 2]], t: usize, dt: f64) -> [f64; 2] {
    if t == 0 {
        return [0.0; 2];
    }
    let (c, prev) = (path[t], path[t - 1]);
    [(c[0] - prev[0]) / dt, (c[1] - prev[1]) / dt]
}

/// The forward step of a run, with its buffers: contact forces at the state, then one [`step`] with the base
/// clamped.
pub struct Stepper<'a> {
    pub pad: &'a Pad,
    pub indenter: &'a Indenter,
    pub dt: f64,
    forces: Vec<[f64; 2]>,
    elastic: Vec<[f64; 2]>,
}

impl<'a> Stepper<'a> {
    pub fn new(pad: &'a Pad, indenter: &'a Indenter, dt: f64) -> Self {
        let n = pad.mesh.rest.len();
        Stepper {
            pad,
            indenter,
            dt,
            forces: vec![[0.0; 2]; n],
            elastic: vec![[0.0; 2]; n],
        }
    }

    /// Advances `s` by one step with the indenter at `c` moving at `vc`; returns the force on the indenter.
    pub fn advance(&mut self, s: &mut State, c: [f64; 2], vc: [f64; 2]) -> Result<[f64; 2]> {
        self.forces.iter_mut().for_each(|f| *f = [0.0; 2]);
        let force = self.indenter.forces(&s.x, &s.v, c, vc, &mut self.forces);
        step(
            self.pad,
            s,
            self.dt,
            &mut self.forces,
            true,
            &mut self.elastic,
        )?;
        Ok(force)
    }
}

/// Runs the pad from rest with the indenter at `path[t]` during step t, calling `visit(t, state after the step,
/// force on the indenter)`.
pub fn run(
    pad: &Pad,
    indenter: &Indenter,
    path: &[[f64; 2]],
    dt: f64,
    mut visit: impl FnMut(usize, &State, [f64; 2]),
) -> Result<()> {
    check_run(pad, path, dt)?;
    let mut s = State::rest(pad);
    let mut stepper = Stepper::new(pad, indenter, dt);
    for (t, &c) in path.iter().enumerate() {
        let force = stepper.advance(&mut s, c, indenter_velocity(path, t, dt))?;
        visit(t, &s, force);
    }
    Ok(())
}

/// The markers' displacements at state `s`.
pub fn markers(pad: &Pad, s: &State) -> Vec<[f64; 2]> {
    pad.mesh
        .surface
        .iter()
        .map(|&i| {
            [
                s.x[i][0] - pad.mesh.rest[i][0],
                s.x[i][1] - pad.mesh.rest[i][1],
            ]
        })
        .collect()
}

/// Runs the pad from rest with the indenter at `path[t]` during step t (its velocity by backward differences of
/// the path), gravity off, time step `dt`, and records the reading. The stepping is explicit, so the friction's
/// smoothing must resolve the time step: its damping μ f_n/ε on a node of mass m needs dt < 2m ε/(μ f_n), or the
/// tangential force chatters (and a symmetric press turns asymmetric).
pub fn simulate(pad: &Pad, indenter: &Indenter, path: &[[f64; 2]], dt: f64) -> Result<Recording> {
    check_run(pad, path, dt)?;
    crate::memory::check(
        "the tactile recording",
        path.len() as f64 * (pad.mesh.surface.len() + 2) as f64 * 16.0,
        "record fewer steps or markers",
    )?;
    let mut rec = Recording {
        markers: Vec::with_capacity(path.len()),
        force: Vec::with_capacity(path.len()),
    };
    run(pad, indenter, path, dt, |_, s, force| {
        rec.force.push(force);
        rec.markers.push(markers(pad, s));
    })?;
    Ok(rec)
}

/// A straight path from `from` to `to` in `steps` steps, then held for `hold` steps.
pub fn ramp(from: [f64; 2], to: [f64; 2], steps: usize, hold: usize) -> Vec<[f64; 2]> {
    let mut p: Vec<[f64; 2]> = (1..=steps)
        .map(|k| {
            let a = k as f64 / steps as f64;
            [
                from[0] + a * (to[0] - from[0]),
                from[1] + a * (to[1] - from[1]),
            ]
        })
        .collect();
    p.extend(std::iter::repeat_n(to, hold));
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::fem::Material;
    use crate::sim::mesh::Mesh;

    fn pad() -> Pad {
        Pad::new(
            Mesh::rectangle(2.0, 0.5, 16, 4).unwrap(),
            Material::new("neo-hookean", 1.0, 0.3).unwrap(),
            1.0,
        )
        .unwrap()
    }

    #[test]
    fn a_centred_press_dents_the_surface_symmetrically_and_pushes_back() {
        let p = pad();
        let ind = Indenter::new(0.4, 200.0, 0.3, 0.5).unwrap();
        // From just above the surface to 0.05 deep over 300 steps, then held.
        let path = ramp([1.0, 0.9], [1.0, 0.85], 300, 600);
        let rec = simulate(&p, &ind, &path, 2e-3).unwrap();
        let last = rec.markers.last().unwrap();
        let m = last.len();
        let middle = last[m / 2][1];
        assert!(
            middle < -0.02,
            "the marker under the indenter moves down: {middle}"
        );
        assert!(
            last[0][1].abs() < 0.25 * middle.abs(),
            "far markers move less"
        );
        for i in 0..m {
            let (a, b) = (last[i], last[m - 1 - i]);
            assert!(
                (a[1] - b[1]).abs() < 1e-9 && (a[0] + b[0]).abs() < 1e-9,
                "symmetry at {i}: {a:?} {b:?}"
            );
        }
        let f = rec.force.last().unwrap();
        assert!(f[1] > 0.0 && f[0].abs() < 1e-9, "{f:?}");
        // Deeper presses push back harder (the pad is undamped, so compare the mean over the hold).
        let hold = |r: &Recording| r.force[300..].iter().map(|f| f[1]).sum::<f64>() / 600.0;
        let deeper = simulate(&p, &ind, &ramp([1.0, 0.9], [1.0, 0.83], 300, 600), 2e-3).unwrap();
        assert!(
            hold(&deeper) > 1.2 * hold(&rec),
            "{} vs {}",
            hold(&deeper),
            hold(&rec)
        );
    }

    #[test]
    fn sliding_drags_the_markers_along() {
        let p = pad();
        let ind = Indenter::new(0.4, 200.0, 0.5, 0.5).unwrap();
        let mut path = ramp([0.8, 0.9], [0.8, 0.86], 200, 200);
        path.extend(ramp([0.8, 0.86], [1.0, 0.86], 300, 0));
        let rec = simulate(&p, &ind, &path, 2e-3).unwrap();
        let last = rec.markers.last().unwrap();
        let under = last[last.len() / 2];
        assert!(
            under[0] > 1e-3,
            "friction pulls the surface right: {under:?}"
        );
        assert!(
            rec.force.last().unwrap()[0] < 0.0,
            "and the pad pulls the indenter back"
        );
    }

    #[test]
    fn bad_paths_are_refused() {
        let p = pad();
        let ind = Indenter::new(0.4, 200.0, 0.3, 1e-3).unwrap();
        assert!(simulate(&p, &ind, &[], 1e-3).is_err());
        assert!(simulate(&p, &ind, &[[f64::NAN, 1.0]], 1e-3).is_err());
        assert!(simulate(&p, &ind, &[[1.0, 1.0]], 0.0).is_err());
    }
}
