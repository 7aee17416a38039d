//! The differentiable tactile-contact core of P20 (DiffTactile, a 2-D analogue), built up in parts. So far: the
//! elastomer pad's triangle mesh ([`mesh`]), its finite-element elasticity with explicit time stepping ([`fem`]:
//! linear and neo-Hookean, plane strain) and penalty contact with a rigid circular indenter and smoothed Coulomb
//! friction ([`contact`]), and a tactile recording of the markers and the indenter force along a path of the
//! indenter ([`tactile`]). The reverse-mode gradients through time, the Hertz check and the identification and
//! trajectory-optimisation experiments are not built yet.

pub mod contact;
pub mod fem;
pub mod mesh;
pub mod tactile;
