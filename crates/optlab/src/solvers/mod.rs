//! Standalone solvers that need no neural-network engine: plain numerics on slices with rayon.
//!
//! - [`cbo`]: consensus-based optimization and consensus hopping (P23).
//! - [`cmaes`]: CMA-ES, the derivative-free baseline of P20's experiments.
//! - [`convex_relu`]: convex training of two-layer ReLU networks by ADMM (P28).
//! - [`dag`]: linear-SEM structure learning with CoLiDE and DAGMA (P40).

pub mod cbo;
pub mod cmaes;
pub mod convex_relu;
pub mod dag;
