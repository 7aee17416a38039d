//! Sparse linear systems and P18's learned solver: CSR matrices ([`csr`]), the 2-D Poisson problem of a fluid
//! pressure projection with solid cells ([`poisson`]), conjugate gradients and IC(0)-preconditioned CG
//! ([`krylov`]), and the deep conjugate direction method ([`dcdm`]) with its direction network ([`net`]) trained
//! on Ritz-vector right-hand sides ([`ritz`]); [`run`] compares them.
//!
//! ```
//! use optlab::linsolve::{krylov::{cg, pcg, IncompleteCholesky, Stop}, poisson::Grid};
//! let a = Grid::with_obstacles(32, 3, 0)?.laplacian()?;
//! let b = vec![1.0; a.n];
//! let stop = Stop { tol: 1e-8, max_iters: 1000 };
//! let plain = cg(&a, &b, stop)?;
//! let pre = pcg(&a, &b, &IncompleteCholesky::new(&a)?, stop)?;
//! assert!(plain.converged && pre.converged && pre.iterations < plain.iterations);
//! # Ok::<(), optlab::Error>(())
//! ```

pub mod csr;
pub mod dcdm;
pub mod krylov;
pub mod net;
pub mod poisson;
pub mod ritz;
pub mod run;
