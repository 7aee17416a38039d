//! End-to-end tests of the `optlab` binary, one module per command: each runs the real binary and checks its
//! files, its output, and one clear error (non-zero exit, no panic) for each kind of bad input.

mod common;

mod align;
mod bad_input;
mod bilevel;
mod cbo;
mod certify;
mod charlm;
mod convex_relu;
mod curvature;
mod dag;
mod demo;
mod diffusion;
mod distill;
mod dp;
mod ep;
mod eval;
mod explain;
mod fuzz;
mod help;
mod linsolve;
mod lipschitz;
mod mup;
mod nlp;
mod online;
mod optimize;
mod papers;
mod pde;
mod privacy;
mod reliability;
mod rl;
mod scaling;
mod schedule;
mod sim;
mod train;
