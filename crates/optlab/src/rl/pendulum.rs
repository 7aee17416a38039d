//! Pendulum-v1 as in Gymnasium 1.4 (`classic_control/pendulum.py`): g = 10, m = l = 1, dt = 0.05, torque clipped
//! to ±2, angular speed clipped to ±8, cost normalize(θ)² + 0.1 θ̇² + 0.001 u² (reward its negative, on the state
//! before the step), observation (cos θ, sin θ, θ̇), no termination, truncation after 200 steps, start
//! θ ~ U[−π, π], θ̇ ~ U[−1, 1].

use super::env::{check_state, continuous, uniform, Action, ActionSpace, Env, Step};
use crate::rng::Rng;
use crate::{Error, Result};
use std::f64::consts::PI;

pub const MAX_SPEED: f64 = 8.0;
pub const MAX_TORQUE: f64 = 2.0;
const DT: f64 = 0.05;
const M: f64 = 1.0;
const L: f64 = 1.0;

/// θ mapped to [−π, π) as `((θ + π) mod 2π) − π` with a floored modulo (numpy's `%`).
pub fn angle_normalize(x: f64) -> f64 {
    (x + PI).rem_euclid(2.0 * PI) - PI
}

/// Pendulum-v1: state (θ, θ̇), one torque in [−2, 2].
#[derive(Debug, Clone)]
pub struct Pendulum {
    pub g: f64,
    state: [f64; 2],
    steps: u64,
    done: bool,
    pub max_steps: u64,
}

impl Default for Pendulum {
    fn default() -> Self {
        Pendulum {
            g: 10.0,
            state: [0.0; 2],
            steps: 0,
            done: false,
            max_steps: 200,
        }
    }
}

impl Pendulum {
    fn obs(&self) -> Vec<f64> {
        let [th, thdot] = self.state;
        vec![th.cos(), th.sin(), thdot]
    }
}

impl Env for Pendulum {
    fn name(&self) -> &'static str {
        "Pendulum-v1"
    }
    fn obs_dim(&self) -> usize {
        3
    }
    fn action_space(&self) -> ActionSpace {
        ActionSpace::Box {
            low: vec![-MAX_TORQUE],
            high: vec![MAX_TORQUE],
        }
    }
    fn max_steps(&self) -> u64 {
        self.max_steps
    }
    fn reset(&mut self, rng: &mut Rng) -> Vec<f64> {
        self.state = [uniform(rng, -PI, PI), uniform(rng, -1.0, 1.0)];
        self.steps = 0;
        self.done = false;
        self.obs()
    }
    fn step(&mut self, action: &Action) -> Result<Step> {
        let u = continuous(self.name(), action, 1)?[0].clamp(-MAX_TORQUE, MAX_TORQUE);
        if self.done {
            return Err(Error::invalid(
                "Pendulum-v1: the episode has ended; reset before stepping again",
            ));
        }
        let [th, thdot] = self.state;
        let cost = angle_normalize(th).powi(2) + 0.1 * (thdot * thdot) + 0.001 * (u * u);
        let new_thdot = (thdot
            + (3.0 * self.g / (2.0 * L) * th.sin() + 3.0 / (M * L * L) * u) * DT)
            .clamp(-MAX_SPEED, MAX_SPEED);
        let new_th = th + new_thdot * DT;
        self.state = [new_th, new_thdot];
        self.steps += 1;
        let truncated = self.steps >= self.max_steps;
        self.done = truncated;
        Ok(Step {
            obs: self.obs(),
            reward: -cost,
            terminated: false,
            truncated,
        })
    }
    fn state(&self) -> &[f64] {
        &self.state
    }
    fn set_state(&mut self, state: &[f64]) -> Result<()> {
        check_state(self.name(), state, 2)?;
        self.state.copy_from_slice(state);
        self.steps = 0;
        self.done = false;
        Ok(())
    }
}
