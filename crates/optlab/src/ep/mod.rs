//! P31 — holomorphic equilibrium propagation with Jacobian homeostasis (Laborieux & Zenke, "Improving equilibrium
//! propagation without weight symmetry through Jacobian homeostasis", ICLR 2024), following the official code
//! (Laborieux-Axel/generalized-holo-ep@30592f5, `models/vfs.py`, `models/dyn.py`): a layered vector field with
//! learnt feedback weights relaxed to a fixed point ([`net`]), the EP gradient estimates from real or complex
//! nudges and the exact gradient by recurrent backpropagation ([`grad`]), and the homeostatic penalty on the
//! Jacobian's asymmetric part ([`homeostasis`]).
//!
//! ```
//! use optlab::ep::grad::{agreement, neuron_estimate, rbp, weight_gradient, Estimator};
//! use optlab::ep::net::{EpNet, Planar, Shape};
//! let net = EpNet::new(Shape { input: 4, layers: vec![6, 3], classes: 3 }, 0.0, 0)?; // symmetric weights
//! let x = Planar::real(2, 4, &[0.1, 0.5, -0.3, 0.8, 0.0, 0.2, 0.9, -0.4]);
//! let labels = [0, 2];
//! let u = net.relax(&x, &labels, 200)?;
//! let g_ep = neuron_estimate(&net, &x, &labels, &u, Estimator::Fourier(4), 0.1, 200)?;
//! let g_rbp = rbp(&net, &labels, &u)?;
//! let a = agreement(
//!     &weight_gradient(&net, &x, &labels, &u, &g_ep)?,
//!     &weight_gradient(&net, &x, &labels, &u, &g_rbp)?,
//!     &g_ep, &g_rbp, 2,
//! );
//! assert!(a.cosine > 0.9999);
//! # Ok::<(), optlab::Error>(())
//! ```

pub mod check;
pub mod grad;
pub mod homeostasis;
pub mod net;
pub mod train;
