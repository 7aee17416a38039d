//! Standalone solvers that need no neural-network engine: plain numerics on slices with rayon.
//!
//! - [`cbo`]: consensus-based optimization and consensus hopping (P23).

pub mod cbo;
