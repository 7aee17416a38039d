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
