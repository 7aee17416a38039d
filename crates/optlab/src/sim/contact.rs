//! Penalty contact between the pad and a rigid circular indenter (P20's contact model in 2-D): a node inside the
//! indenter (gap g = |x − c| − R < 0, penetration δ = −g) feels the normal force f_n n, n = (x − c)/|x − c|, with
//! f_n = k δ max(0, 1 + h δ̇) — without dissipation (h = 0) the gradient of the penalty energy ½ k g², with it
//! the Hunt–Crossley law, whose damping vanishes with the penetration so the force stays continuous at touch and
//! a node does not bounce off the indenter; and a smoothed Coulomb friction −μ f_n tanh(v_t/ε) t against its
//! tangential velocity relative to the indenter, which tends to Coulomb's law as ε → 0 and stays differentiable.

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
    /// Hunt–Crossley dissipation h ≥ 0 (time per length).
    pub dissipation: f64,
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
            dissipation: 0.0,
        })
    }

    /// The indenter with Hunt–Crossley dissipation h ≥ 0.
    pub fn with_dissipation(mut self, h: f64) -> Result<Self> {
        if !(h.is_finite() && h >= 0.0) {
            return Err(Error::invalid(format!(
                "indenter: the contact's dissipation must be >= 0, not {h}"
            )));
        }
        self.dissipation = h;
        Ok(self)
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

    /// The contact force on one node at offset d = x − c from the centre, moving at w = v − v_c relative to the
    /// indenter; `None` outside.
    pub fn node_force(&self, d: [f64; 2], w: [f64; 2]) -> Option<[f64; 2]> {
        let r = d[0].hypot(d[1]);
        let g = r - self.radius;
        if g >= 0.0 || r == 0.0 {
            return None;
        }
        let n = [d[0] / r, d[1] / r];
        let t = [-n[1], n[0]];
        // δ̇ = −w·n.
        let fnorm =
            self.stiffness * -g * (1.0 - self.dissipation * (w[0] * n[0] + w[1] * n[1])).max(0.0);
        let vt = w[0] * t[0] + w[1] * t[1];
        let ft = -self.friction * fnorm * (vt / self.smoothing).tanh();
        Some([fnorm * n[0] + ft * t[0], fnorm * n[1] + ft * t[1]])
    }

    /// The reverse of [`Indenter::node_force`] for a cotangent `a` of the force: the cotangents of d and w, and
    /// ∂⟨a, f⟩/∂(k, μ). Zero outside.
    pub fn node_vjp(
        &self,
        d: [f64; 2],
        w: [f64; 2],
        a: [f64; 2],
    ) -> ([f64; 2], [f64; 2], [f64; 2]) {
        let r = d[0].hypot(d[1]);
        let g = r - self.radius;
        if g >= 0.0 || r == 0.0 {
            return ([0.0; 2], [0.0; 2], [0.0; 2]);
        }
        let n = [d[0] / r, d[1] / r];
        let t = [-n[1], n[0]];
        let wn = w[0] * n[0] + w[1] * n[1];
        let damp = (1.0 - self.dissipation * wn).max(0.0);
        let fnorm = self.stiffness * -g * damp;
        let vt = w[0] * t[0] + w[1] * t[1];
        let s = (vt / self.smoothing).tanh();
        let ft = -self.friction * fnorm * s;
        // f = f_n n + f_t t.
        let mut n_bar = [fnorm * a[0], fnorm * a[1]];
        let mut t_bar = [ft * a[0], ft * a[1]];
        let ft_bar = a[0] * t[0] + a[1] * t[1];
        // f_t = −μ f_n s, s = tanh(v_t/ε), v_t = w·t.
        let fn_bar = a[0] * n[0] + a[1] * n[1] - self.friction * s * ft_bar;
        let d_mu = -fnorm * s * ft_bar;
        let vt_bar = -self.friction * fnorm * ft_bar * (1.0 - s * s) / self.smoothing;
        let mut w_bar = [vt_bar * t[0], vt_bar * t[1]];
        t_bar[0] += vt_bar * w[0];
        t_bar[1] += vt_bar * w[1];
        // t = (−n₁, n₀).
        n_bar[0] += t_bar[1];
        n_bar[1] -= t_bar[0];
        // f_n = k δ max(0, 1 − h w·n), δ = −g = R − r, n = d/r.
        let d_k = -g * damp * fn_bar;
        let r_bar = -self.stiffness * damp * fn_bar;
        if damp > 0.0 {
            let wn_bar = -self.dissipation * self.stiffness * -g * fn_bar;
            for q in 0..2 {
                w_bar[q] += wn_bar * n[q];
                n_bar[q] += wn_bar * w[q];
            }
        }
        let nn = n_bar[0] * n[0] + n_bar[1] * n[1];
        let d_bar = [
            (n_bar[0] - nn * n[0]) / r + r_bar * n[0],
            (n_bar[1] - nn * n[1]) / r + r_bar * n[1],
        ];
        (d_bar, w_bar, [d_k, d_mu])
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
            let d = [p[0] - c[0], p[1] - c[1]];
            if let Some(add) = self.node_force(d, [vel[0] - vc[0], vel[1] - vc[1]]) {
                for k in 0..2 {
                    f[k] += add[k];
                    total[k] -= add[k];
                }
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
    fn the_reverse_of_a_node_force_matches_finite_differences() {
        for diss in [0.0, 2.5] {
            let ind = Indenter::new(0.5, 40.0, 0.6, 0.3)
                .unwrap()
                .with_dissipation(diss)
                .unwrap();
            let a = [0.8, -1.3];
            let d0 = [0.12, -0.41];
            let w0 = [0.2, 0.05];
            let f = |ind: &Indenter, d: [f64; 2], w: [f64; 2]| {
                let f = ind.node_force(d, w).unwrap();
                a[0] * f[0] + a[1] * f[1]
            };
            let (d_bar, w_bar, dp) = ind.node_vjp(d0, w0, a);
            let h = 1e-7;
            let close = |fd: f64, an: f64| (fd - an).abs() < 1e-6 * (1.0 + fd.abs());
            for k in 0..2 {
                let (mut dp_, mut dm) = (d0, d0);
                dp_[k] += h;
                dm[k] -= h;
                let fd = (f(&ind, dp_, w0) - f(&ind, dm, w0)) / (2.0 * h);
                assert!(close(fd, d_bar[k]), "d{k}: {fd} vs {}", d_bar[k]);
                let (mut wp, mut wm) = (w0, w0);
                wp[k] += h;
                wm[k] -= h;
                let fd = (f(&ind, d0, wp) - f(&ind, d0, wm)) / (2.0 * h);
                assert!(close(fd, w_bar[k]), "w{k}: {fd} vs {}", w_bar[k]);
            }
            let with = |k: f64, mu: f64| {
                Indenter::new(0.5, k, mu, 0.3)
                    .unwrap()
                    .with_dissipation(diss)
                    .unwrap()
            };
            let fd_k =
                (f(&with(40.0 + h, 0.6), d0, w0) - f(&with(40.0 - h, 0.6), d0, w0)) / (2.0 * h);
            let fd_mu =
                (f(&with(40.0, 0.6 + h), d0, w0) - f(&with(40.0, 0.6 - h), d0, w0)) / (2.0 * h);
            assert!(
                close(fd_k, dp[0]) && close(fd_mu, dp[1]),
                "{fd_k} {fd_mu} vs {dp:?}"
            );
            assert_eq!(
                ind.node_vjp([0.0, 0.6], w0, a),
                ([0.0; 2], [0.0; 2], [0.0; 2])
            );
        }
        assert!(Indenter::new(0.5, 40.0, 0.6, 0.3)
            .unwrap()
            .with_dissipation(-1.0)
            .is_err());
    }

    #[test]
    fn bad_indenters_are_refused() {
        assert!(Indenter::new(0.0, 1.0, 0.1, 1e-3).is_err());
        assert!(Indenter::new(1.0, f64::NAN, 0.1, 1e-3).is_err());
        assert!(Indenter::new(1.0, 1.0, -0.1, 1e-3).is_err());
        assert!(Indenter::new(1.0, 1.0, 0.1, 0.0).is_err());
    }
}
