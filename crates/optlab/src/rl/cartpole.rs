//! CartPole-v1 as in Gymnasium 1.4 (`classic_control/cartpole.py`, Barto, Sutton & Anderson 1983): explicit Euler
//! with τ = 0.02, force ±10, termination beyond |x| > 2.4 or |θ| > 12°, reward 1 per step (also on the
//! terminating step), truncation after 500 steps, start uniform in [−0.05, 0.05]⁴.

use super::env::{check_state, discrete, uniform, Action, ActionSpace, Env, Step};
use crate::rng::Rng;
use crate::{Error, Result};

const GRAVITY: f64 = 9.8;
const MASS_CART: f64 = 1.0;
const MASS_POLE: f64 = 0.1;
const TOTAL_MASS: f64 = MASS_POLE + MASS_CART;
/// Half the pole's length.
const LENGTH: f64 = 0.5;
const POLEMASS_LENGTH: f64 = MASS_POLE * LENGTH;
const FORCE_MAG: f64 = 10.0;
const TAU: f64 = 0.02;
const X_THRESHOLD: f64 = 2.4;

/// The angle beyond which an episode ends: 12 degrees.
pub fn theta_threshold() -> f64 {
    12.0 * 2.0 * std::f64::consts::PI / 360.0
}

/// CartPole-v1: state (x, ẋ, θ, θ̇), actions 0 (push left) and 1 (push right).
#[derive(Debug, Clone)]
pub struct CartPole {
    state: [f64; 4],
    steps: u64,
    done: bool,
    pub max_steps: u64,
}

impl Default for CartPole {
    fn default() -> Self {
        CartPole {
            state: [0.0; 4],
            steps: 0,
            done: false,
            max_steps: 500,
        }
    }
}

impl Env for CartPole {
    fn name(&self) -> &'static str {
        "CartPole-v1"
    }
    fn obs_dim(&self) -> usize {
        4
    }
    fn action_space(&self) -> ActionSpace {
        ActionSpace::Discrete(2)
    }
    fn max_steps(&self) -> u64 {
        self.max_steps
    }
    fn reset(&mut self, rng: &mut Rng) -> Vec<f64> {
        for v in self.state.iter_mut() {
            *v = uniform(rng, -0.05, 0.05);
        }
        self.steps = 0;
        self.done = false;
        self.state.to_vec()
    }
    fn step(&mut self, action: &Action) -> Result<Step> {
        let a = discrete(self.name(), action, 2)?;
        if self.done {
            return Err(Error::invalid(
                "CartPole-v1: the episode has ended; reset before stepping again",
            ));
        }
        let [x, x_dot, theta, theta_dot] = self.state;
        let force = if a == 1 { FORCE_MAG } else { -FORCE_MAG };
        let (sin, cos) = (theta.sin(), theta.cos());
        // Products grouped as Gymnasium's numpy expressions, so the rounding is the same.
        let temp = (force + POLEMASS_LENGTH * (theta_dot * theta_dot) * sin) / TOTAL_MASS;
        let theta_acc = (GRAVITY * sin - cos * temp)
            / (LENGTH * (4.0 / 3.0 - MASS_POLE * (cos * cos) / TOTAL_MASS));
        let x_acc = temp - POLEMASS_LENGTH * theta_acc * cos / TOTAL_MASS;
        self.state = [
            x + TAU * x_dot,
            x_dot + TAU * x_acc,
            theta + TAU * theta_dot,
            theta_dot + TAU * theta_acc,
        ];
        self.steps += 1;
        let [x, _, theta, _] = self.state;
        let limit = theta_threshold();
        let terminated =
            !(-X_THRESHOLD..=X_THRESHOLD).contains(&x) || !(-limit..=limit).contains(&theta);
        let truncated = !terminated && self.steps >= self.max_steps;
        self.done = terminated || truncated;
        Ok(Step {
            obs: self.state.to_vec(),
            reward: 1.0,
            terminated,
            truncated,
        })
    }
    fn state(&self) -> &[f64] {
        &self.state
    }
    fn set_state(&mut self, state: &[f64]) -> Result<()> {
        check_state(self.name(), state, 4)?;
        self.state.copy_from_slice(state);
        self.steps = 0;
        self.done = false;
        Ok(())
    }
}
