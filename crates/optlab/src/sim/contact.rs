//! Penalty contact between the pad and a rigid circular indenter (P20's contact model in 2-D): a node inside the
//! indenter (gap g = |x − c| − R < 0) feels the normal force k (−g) n, n = (x − c)/|x − c|, the gradient of the
//! penalty energy ½ k g²; and a smoothed Coulomb friction −μ |f_n| tanh(v_t/ε) t against its tangential velocity
//! relative to the indenter, which tends to Coulomb's law as ε → 0 and stays differentiable.

use crate::{Error, Result};

/// The indenter and the contact parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Indenter {
    pub radius: f64,
    /// Penalty stiffness k.
    pub stiffness: f64,
    /// Coulomb coefficient μ.
    pub friction: f64,
    /// Velocity scale ε of the smoothed friction.
    pub smoothing: f64,
}

impl Indenter {
    pub fn new(radius: f64, stiffness: f64, friction: f64, smoothing: f64) -> Result<Self> {
        let ok = |v: f64| v.is_finite() && v > 0.0;
        if !(ok(radius)
            && ok(stiffness)
            && ok(smoothing)
            && friction.is_finite()
            && friction >= 0.0)
        {
            return Err(Error::invalid(format!(
                "indenter: need radius, stiffness and smoothing > 0 and friction >= 0, not R = {radius}, \
                 k = {stiffness}, mu = {friction}, eps = {smoothing}"
            )));
        }
        Ok(Indenter {
            radius,
            stiffness,
            friction,
            smoothing,
        })
    }

    /// The penalty energy Σ ½ k g² over the nodes inside the indenter centred at `c`.
    pub fn energy(&self, x: &[[f64; 2]], c: [f64; 2]) -> f64 {
        x.iter()
            .map(|p| {
                let g = self.gap(*p, c);
                if g < 0.0 {
                    0.5 * self.stiffness * g * g
                } else {
                    0.0
                }
            })
            .sum()
    }

    /// g = |x − c| − R.
    pub fn gap(&self, x: [f64; 2], c: [f64; 2]) -> f64 {
        (x[0] - c[0]).hypot(x[1] - c[1]) - self.radius
    }

    /// Adds the contact forces on the nodes (positions `x`, velocities `v`) of an indenter at `c` moving at `vc`
    /// into `forces`; returns the total force the pad exerts on the indenter (minus the sum).
    pub fn forces(
        &self,
        x: &[[f64; 2]],
        v: &[[f64; 2]],
        c: [f64; 2],
        vc: [f64; 2],
        forces: &mut [[f64; 2]],
    ) -> [f64; 2] {
        let mut total = [0.0; 2];
        for ((p, vel), f) in x.iter().zip(v).zip(forces.iter_mut()) {
            let (dx, dy) = (p[0] - c[0], p[1] - c[1]);
            let r = dx.hypot(dy);
            let g = r - self.radius;
            if g >= 0.0 || r == 0.0 {
                continue;
            }
            let n = [dx / r, dy / r];
            let t = [-n[1], n[0]];
            let fnorm = self.stiffness * -g;
            let vt = (vel[0] - vc[0]) * t[0] + (vel[1] - vc[1]) * t[1];
            let ft = -self.friction * fnorm * (vt / self.smoothing).tanh();
            for k in 0..2 {
                let add = fnorm * n[k] + ft * t[k];
                f[k] += add;
                total[k] -= add;
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_normal_force_is_minus_the_penalty_gradient() {
        let ind = Indenter::new(0.5, 40.0, 0.0, 1e-3).unwrap();
        let c = [0.3, 1.35];
        let x = vec![[0.1, 0.95], [0.4, 1.0], [0.9, 1.0], [0.35, 0.9]];
        let v = vec![[0.0; 2]; x.len()];
        let mut f = vec![[0.0; 2]; x.len()];
        let total = ind.forces(&x, &v, c, [0.0; 2], &mut f);
        let h = 1e-7;
        for i in 0..x.len() {
            for k in 0..2 {
                let (mut a, mut b) = (x.clone(), x.clone());
                a[i][k] += h;
                b[i][k] -= h;
                let fd = -(ind.energy(&a, c) - ind.energy(&b, c)) / (2.0 * h);
                assert!(
                    (fd - f[i][k]).abs() < 1e-6,
                    "node {i}.{k}: {fd} vs {}",
                    f[i][k]
                );
            }
        }
        // Node 2 is outside; the reaction balances the nodal forces; the pad pushes the indenter up.
        assert_eq!(f[2], [0.0, 0.0]);
        let sum: f64 = f.iter().map(|v| v[1]).sum();
        assert!((total[1] + sum).abs() < 1e-15 && total[1] > 0.0);
    }

    #[test]
    fn friction_opposes_sliding_and_is_bounded_by_coulomb() {
        let ind = Indenter::new(1.0, 100.0, 0.4, 1e-4).unwrap();
        let c = [0.0, 1.95];
        let x = vec![[0.0, 1.0]];
        let mut f = vec![[0.0; 2]];
        // The indenter slides right over a resting node: friction drags the node right.
        ind.forces(&x, &[[0.0, 0.0]], c, [1.0, 0.0], &mut f);
        let fnorm = 100.0 * 0.05;
        assert!((f[0][1] + fnorm).abs() < 1e-12, "{f:?}");
        assert!((f[0][0] - 0.4 * fnorm).abs() < 1e-9, "{f:?}");
        let mut g = vec![[0.0; 2]];
        ind.forces(&x, &[[0.0, 0.0]], c, [0.0, 0.0], &mut g);
        assert_eq!(g[0][0], 0.0);
    }

    #[test]
    fn bad_indenters_are_refused() {
        assert!(Indenter::new(0.0, 1.0, 0.1, 1e-3).is_err());
        assert!(Indenter::new(1.0, f64::NAN, 0.1, 1e-3).is_err());
        assert!(Indenter::new(1.0, 1.0, -0.1, 1e-3).is_err());
        assert!(Indenter::new(1.0, 1.0, 0.1, 0.0).is_err());
    }
}
