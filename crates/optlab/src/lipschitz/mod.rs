//! Lipschitz analysis and robustness certificates of trained feed-forward networks (P02, P14, P03): network import
//! from PyTorch state dicts, naive global bounds (product of sound per-layer operator norms, l∞ and l2), and
//! randomized-smoothing certificates.
//!
//! ```
//! use optlab::lipschitz::{naive::{naive_bound, Norm}, network::{Layer, Network}};
//! // y = [[1, -2], [3, 0.5]] x: l∞ norm 3.5 (the largest absolute row sum).
//! let net = Network {
//!     layers: vec![Layer::Linear { w: vec![1.0, -2.0, 3.0, 0.5], b: vec![0.0; 2], out: 2, inp: 2 }],
//!     input_shape: vec![2],
//! };
//! assert_eq!(naive_bound(&net, Norm::Inf).unwrap().bound, 3.5);
//! ```

pub mod bab;
pub mod chain;
pub mod exact;
#[cfg(feature = "lipsdp")]
pub mod lipsdp;
pub mod local;
pub mod lvm;
pub mod naive;
pub mod network;
pub mod smoothing;
