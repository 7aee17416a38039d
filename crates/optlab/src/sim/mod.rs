//! The differentiable tactile-contact core of P20 (DiffTactile, a 2-D analogue): the elastomer pad's triangle
//! mesh ([`mesh`]), its finite-element elasticity with explicit, damped time stepping ([`fem`]: linear and
//! neo-Hookean, plane strain), penalty contact with a rigid circular indenter and smoothed Coulomb friction
//! ([`contact`]), a tactile recording of the markers and the indenter force along a path of the indenter
//! ([`tactile`]), reverse-mode gradients through time of any scalar of the run with respect to the material,
//! the contact and the path, checkpointed ([`gradient`]), static equilibria and the Hertz line-contact check
//! ([`statics`]), and the two experiments, system identification and trajectory optimisation by gradients
//! against CMA-ES ([`tasks`]).

pub mod contact;
pub mod fem;
pub mod gradient;
pub mod mesh;
pub mod statics;
pub mod tactile;
pub mod tasks;
