//! The library's integration tests, one binary (each module was a test binary of its own; linking candle and
//! the solvers once instead of sixteen times is most of the test build). Fixtures are in `tests/fixtures/`, made
//! by the scripts in `tools/reference/`.

mod common;

mod alignment;
mod anneal_law;
mod backward;
mod batch_tests_golden;
mod bc;
mod bilevel;
mod cbo;
mod colide;
mod constrained;
mod convex_relu;
mod curvature;
mod distributed;
mod dp_methods;
mod ep;
mod ep_golden;
mod explain;
mod gail;
mod generative;
mod implicit;
mod linsolve;
mod lipschitz;
#[cfg(feature = "lipsdp")]
mod lipsdp;
mod local_lipschitz;
mod lvhba;
mod mbpo;
mod mup;
mod norm;
mod optim_golden;
mod optim_properties;
mod pde;
mod pg;
mod privacy;
mod rl;
mod rl_resume;
mod spectral;
mod sso;
mod tactile;
mod torch_state_dict;
mod train;
mod transformer;
mod variational;
