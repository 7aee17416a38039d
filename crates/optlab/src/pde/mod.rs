//! PDEs for physics-constrained learning (P08, "Scaling Physics-Informed Hard Constraints with Mixture-of-Experts";
//! official code ASK-Berkeley/physics-NNs-hard-constraints): the equations of its experiments and finite-difference
//! reference solutions ([`fd`]).
//!
//! - [`fisher_kpp`]: u_t = ν u_xx + ρ u(1 − u) (PDEBench's 1-D diffusion–reaction), periodic on [0, 1].
//! - [`diffusion_sorption`]: u_t = D / R(u) u_xx with the Freundlich retardation R(u) = 1 + (1 − φ)/φ ρ_s k n_f
//!   u^(n_f − 1), u(0, t) = 1 and u(1, t) = D u_x(1, t), on [0, 1] (PDEBench's 1-D diffusion–sorption constants).
//!
//! And the nonlinear elliptic variational PDEs of P22 ([`variational`]) with their two solvers: Deep Ritz with a
//! two-layer network ([`ritz`]) and preconditioned gradient descent on a sine basis ([`spectral`]).

pub mod fd;
pub mod fno;
pub mod hard;
pub mod lm;
pub mod ritz;
pub mod spectral;
pub mod variational;

use fd::{Boundary, ReactionDiffusion, Side};

/// Fisher–KPP u_t = ν u_xx + ρ u(1 − u) on [0, length] with the given boundary.
pub fn fisher_kpp(nu: f64, rho: f64, length: f64, boundary: Boundary) -> ReactionDiffusion {
    ReactionDiffusion {
        length,
        diffusion: Box::new(move |_| (nu, 0.0)),
        reaction: Box::new(move |u| (rho * u * (1.0 - u), rho * (1.0 - 2.0 * u))),
        boundary,
    }
}

/// PDEBench's diffusion–sorption constants: D, porosity φ, bulk density ρ_s, Freundlich k and exponent n_f.
pub const SORPTION_D: f64 = 5e-4;
pub const SORPTION_PHI: f64 = 0.29;
pub const SORPTION_RHO_S: f64 = 2880.0;
pub const SORPTION_K: f64 = 3.5e-4;
pub const SORPTION_NF: f64 = 0.874;

/// The retardation factor R(u) and R'(u) (u clamped to ≥ 1e-12, where u^(n_f − 1) is finite).
pub fn retardation(u: f64) -> (f64, f64) {
    let c = (1.0 - SORPTION_PHI) / SORPTION_PHI * SORPTION_RHO_S * SORPTION_K * SORPTION_NF;
    let u = u.max(1e-12);
    let r = 1.0 + c * u.powf(SORPTION_NF - 1.0);
    let dr = c * (SORPTION_NF - 1.0) * u.powf(SORPTION_NF - 2.0);
    (r, dr)
}

/// Diffusion–sorption on [0, 1]: u(0, t) = 1, u(1, t) − D u_x(1, t) = 0 (the latter as a one-sided algebraic
/// condition, see [`Side::OneSided`]: it holds u(1, t) at O(D) and is meant for grids with h ≫ D).
pub fn diffusion_sorption() -> ReactionDiffusion {
    ReactionDiffusion {
        length: 1.0,
        diffusion: Box::new(|u| {
            let (r, dr) = retardation(u);
            (SORPTION_D / r, -SORPTION_D * dr / (r * r))
        }),
        reaction: Box::new(|_| (0.0, 0.0)),
        boundary: Boundary::Sides(
            Side::Dirichlet(Box::new(|_| 1.0)),
            Side::OneSided {
                alpha: 1.0,
                beta: -SORPTION_D,
                gamma: 0.0,
            },
        ),
    }
}

/// The travelling wave u = (1 + exp(√(ρ/(6ν)) x − 5ρt/6))⁻² that solves Fisher–KPP exactly (Ablowitz–Zeppetella).
pub fn fisher_wave(nu: f64, rho: f64, x: f64, t: f64) -> f64 {
    let z = (rho / (6.0 * nu)).sqrt() * x - 5.0 * rho * t / 6.0;
    (1.0 + z.exp()).powi(-2)
}
