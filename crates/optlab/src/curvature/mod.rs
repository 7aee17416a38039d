//! Curvature of a loss: exact Hessian-vector products (by Pearlmutter's R-operator for an MLP, by double backward
//! for any other model), and the estimators built on them —
//! Hutchinson's trace and diagonal, power iteration and Lanczos for extreme eigenvalues, stochastic Lanczos
//! quadrature for the spectral density (P36) — plus the stability criteria of P27/P36.
//!
//! Everything works through the [`HessianOperator`] trait on flattened f64 vectors (the model itself may run
//! in f32 or f64): [`FunctionHessian`] for the analytic test functions, [`ModelHessian`] for a model's mean
//! loss on a batch, [`FiniteDifferenceHessian`] as a fallback, and [`DenseHessian`] for tests.
//!
//! ```
//! use optlab::curvature::{lanczos, FunctionHessian, HessianOperator};
//! use optlab::functions::TestFunction;
//! let h = FunctionHessian::new(TestFunction::Quadratic, &[1.0, 2.0, 3.0]).unwrap();
//! let eig = lanczos(&h, 3, 0).unwrap();
//! assert!((eig.ritz_values.last().unwrap() - 10.0).abs() < 1e-8); // c_i spans [1, 10]
//! ```

mod eigen;
mod estimators;
mod operators;
mod rop;
mod rop_transformer;
mod stability;

pub use eigen::{jacobi_eigen, SymmetricEigen};
pub use estimators::{
    hutchinson_diagonal, hutchinson_trace, lanczos, power_iteration, slq_density, Estimate,
    Lanczos, Probe, SpectralDensity,
};
pub(crate) use estimators::{lanczos_basis, tridiagonal_eigen};
pub use operators::{
    DenseHessian, FiniteDifferenceHessian, FunctionHessian, HessianOperator, ModelHessian,
};
pub use stability::{stability_report, stable_lr_for_batch, StabilityReport};
