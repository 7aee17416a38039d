//! Reinforcement learning and control (the base of P16, P04, P24, P11): environments with the dynamics, rewards,
//! limits and termination of their Gymnasium versions ([`cartpole`], [`pendulum`], [`gridworld`] = FrozenLake) and a
//! linear-quadratic system with its optimal policy from the discrete Riccati equation ([`lqr`]), behind one trait
//! ([`env::Env`]); softmax, Gaussian and deterministic policies with differentiable log-probabilities and
//! Hessian-vector products ([`policy`]). Every reset and sample draws from an explicitly seeded generator.
//!
//! ```
//! use optlab::rl::{cartpole::CartPole, env::{Action, Env}};
//! let mut env = CartPole::default();
//! let mut rng = optlab::rng::rng_for(0, optlab::rng::Stream::Data, 0);
//! env.reset(&mut rng);
//! let mut ret = 0.0;
//! loop {
//!     let s = env.state().to_vec();
//!     let push_right = s[2] + 0.5 * s[3] > 0.0;
//!     let step = env.step(&Action::Discrete(push_right as usize))?;
//!     ret += step.reward;
//!     if step.terminated || step.truncated { break; }
//! }
//! assert!(ret > 100.0);
//! # Ok::<(), optlab::Error>(())
//! ```

pub mod bc;
pub mod cartpole;
pub mod env;
pub mod gail;
pub mod gridworld;
pub mod lqr;
pub mod mbpo;
pub mod pendulum;
pub mod pg;
pub mod policy;
pub mod td3;
