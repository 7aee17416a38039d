//! Score-based diffusion on targets whose score is exact (P25, P39's teacher): forward processes
//! ([`process`]: VP and VE), Gaussian-mixture targets with their exact score at every noise level ([`mixture`]),
//! score functions — exact, or a time-conditioned network ([`score`]) trained by denoising score matching
//! ([`dsm`]) — samplers over a score ([`sample`]: Euler–Maruyama on the reverse SDE, Heun on the
//! probability-flow ODE) and the measures of a result ([`metrics`]: energy distance, mode recall, score error).
//!
//! ```
//! use optlab::generative::{metrics, mixture::Mixture, process::Process, sample::{sample, Sampler}, score::ExactScore};
//! use optlab::rng::{rng_for, Stream};
//! let target: Mixture = "ring:modes=8".parse()?;
//! let process = Process::default(); // VP, beta from 0.1 to 20
//! let mut rng = rng_for(0, Stream::Probe, 0);
//! let x = sample(&ExactScore { mixture: &target, process }, &process, Sampler::Heun, 400, 100, &mut rng)?;
//! assert_eq!(metrics::mode_recall(&target, &x).recalled, 8);
//! # Ok::<(), optlab::Error>(())
//! ```

pub mod distill;
pub mod dsm;
pub mod metrics;
pub mod mixture;
pub mod ntk;
pub mod process;
pub mod run;
pub mod sample;
pub mod score;
