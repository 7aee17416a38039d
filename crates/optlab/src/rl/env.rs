//! The environment interface: reset from a seeded generator, step with an action, observe; time limits as
//! Gymnasium's `TimeLimit` wrapper (truncation after `max_steps`).

use crate::rng::Rng;
use crate::{Error, Result};

/// What actions an environment takes.
#[derive(Debug, Clone, PartialEq)]
pub enum ActionSpace {
    /// Actions 0..n.
    Discrete(usize),
    /// Vectors in the box [low, high] (values outside are clipped by the environment, as Gymnasium's do).
    Box { low: Vec<f64>, high: Vec<f64> },
}

/// One action.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Discrete(usize),
    Continuous(Vec<f64>),
}

/// What a step returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub obs: Vec<f64>,
    pub reward: f64,
    /// The episode ended in a terminal state.
    pub terminated: bool,
    /// The episode hit the time limit.
    pub truncated: bool,
}

/// An environment. Observations are f64 (Gymnasium casts its classic-control observations to float32).
pub trait Env: Send {
    /// The name (`CartPole-v1`, ...).
    fn name(&self) -> &'static str;
    /// The length of an observation.
    fn obs_dim(&self) -> usize;
    /// The actions.
    fn action_space(&self) -> ActionSpace;
    /// The time limit.
    fn max_steps(&self) -> u64;
    /// Starts an episode from a random state drawn from `rng`; returns the observation.
    fn reset(&mut self, rng: &mut Rng) -> Vec<f64>;
    /// Takes one action (an error for an action outside the space, NaN, or a finished episode).
    fn step(&mut self, action: &Action) -> Result<Step>;
    /// The internal state (what Gymnasium keeps in `env.unwrapped.state`).
    fn state(&self) -> &[f64];
    /// Sets the internal state (a start for a reproducible trajectory); resets the step count.
    fn set_state(&mut self, state: &[f64]) -> Result<()>;
}

/// Checks a discrete action against `n` actions.
pub(crate) fn discrete(env: &str, action: &Action, n: usize) -> Result<usize> {
    match action {
        Action::Discrete(a) if *a < n => Ok(*a),
        other => Err(Error::invalid(format!(
            "{env}: the action must be Discrete(0..{n}), got {other:?}"
        ))),
    }
}

/// Checks a continuous action of length `dim` (finite values).
pub(crate) fn continuous<'a>(env: &str, action: &'a Action, dim: usize) -> Result<&'a [f64]> {
    match action {
        Action::Continuous(v) if v.len() == dim && v.iter().all(|x| x.is_finite()) => Ok(v),
        other => Err(Error::invalid(format!(
            "{env}: the action must be {dim} finite value(s), got {other:?}"
        ))),
    }
}

/// Checks a state's length and finiteness.
pub(crate) fn check_state(env: &str, state: &[f64], dim: usize) -> Result<()> {
    if state.len() != dim || state.iter().any(|v| !v.is_finite()) {
        return Err(Error::invalid(format!(
            "{env}: a state is {dim} finite values, got {state:?}"
        )));
    }
    Ok(())
}

/// Uniform in [lo, hi).
pub fn uniform(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    use rand::Rng as _;
    lo + (hi - lo) * rng.gen::<f64>()
}

/// `n` copies of an environment stepped together, each reset from its own seeded generator as soon as its
/// episode ends (Gymnasium's `SyncVectorEnv` in its same-step autoreset mode: the step that ends an episode
/// returns the reward and flags of the end and the first observation of the next episode).
pub struct VecEnv<E: Env + Clone> {
    envs: Vec<E>,
    rngs: Vec<Rng>,
}

impl<E: Env + Clone> VecEnv<E> {
    /// `n` copies of `env` (1 to 65 536), copy k drawing from `rng_for(seed, Data, k)`.
    pub fn new(env: E, n: usize, seed: u64) -> Result<Self> {
        if n == 0 || n > 65_536 {
            return Err(Error::invalid("vector env: 1 to 65536 copies"));
        }
        Ok(VecEnv {
            envs: vec![env; n],
            rngs: (0..n as u64)
                .map(|k| crate::rng::rng_for(seed, crate::rng::Stream::Data, k))
                .collect(),
        })
    }

    /// Copies.
    pub fn len(&self) -> usize {
        self.envs.len()
    }

    /// Whether there is no copy (never: [`VecEnv::new`] refuses 0).
    pub fn is_empty(&self) -> bool {
        self.envs.is_empty()
    }

    /// Resets every copy; their first observations.
    pub fn reset(&mut self) -> Vec<Vec<f64>> {
        self.envs
            .iter_mut()
            .zip(&mut self.rngs)
            .map(|(e, r)| e.reset(r))
            .collect()
    }

    /// One action per copy; finished copies restart at once.
    pub fn step(&mut self, actions: &[Action]) -> Result<Vec<Step>> {
        if actions.len() != self.envs.len() {
            return Err(Error::invalid(format!(
                "vector env: {} actions for {} copies",
                actions.len(),
                self.envs.len()
            )));
        }
        let mut out = Vec::with_capacity(actions.len());
        for ((e, r), a) in self.envs.iter_mut().zip(&mut self.rngs).zip(actions) {
            let mut s = e.step(a)?;
            if s.terminated || s.truncated {
                s.obs = e.reset(r);
            }
            out.push(s);
        }
        Ok(out)
    }
}
