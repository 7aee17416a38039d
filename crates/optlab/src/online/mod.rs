//! Online and stochastic optimization (P06, P32):
//! - [`geometry`]: the mirror-descent step over a domain (free, box, ball, simplex) with a Euclidean or entropic
//!   mirror map and a composite term handled by its proximal map;
//! - [`steps`]: the step-size rules of P06 (η/√T, η/√t, linear decay, 1/(μt), heavy-tailed exponents);
//! - [`csmd`]: composite stochastic mirror descent and its last iterate (P06);
//! - [`problems`]: stochastic objectives with an exactly computed optimum (least absolute deviations on the RAND
//!   HIE data, the hinge loss on digits);
//! - [`rates`]: last-iterate suboptimality against the horizon over many seeds, with fitted log-log slopes;
//! - [`sea`], [`learners`], [`regret`]: the online-convex-optimization harness of P32: loss sequences between
//!   stochastic and adversarial, OGD, OMD, optimistic OMD and the online Newton step, and their exact regret.
//!
//! ```
//! use optlab::online::{csmd::Csmd, problems, rates::{measure, RateConfig}};
//! let f = problems::LinearLoss::new(problems::Pointwise::Absolute, vec![1.0; 4], vec![1.0, 2.0, 3.0, 9.0], 1)?;
//! let method = Csmd::from_spec(&mut optlab::Spec::parse("csmd:rule=sqrt_T,eta=2")?)?;
//! let (f_star, _) = problems::optimum(&f, &method.geometry)?;
//! let cfg = RateConfig { horizons: vec![100, 1000], seeds: 8, seed: 0 };
//! let report = measure(&f, &method, f_star, &cfg)?;
//! assert!(report.points[1].last.median <= report.points[0].last.median);
//! # Ok::<(), optlab::Error>(())
//! ```

pub mod csmd;
pub mod geometry;
pub mod learners;
pub mod problems;
pub mod rates;
pub mod regret;
pub mod sea;
pub mod steps;
