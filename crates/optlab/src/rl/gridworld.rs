//! A tabular grid world: FrozenLake-v1 of Gymnasium 1.4 (`toy_text/frozen_lake.py`). Cells S (start), F (frozen),
//! H (hole, terminal), G (goal, terminal, reward 1); actions 0 left, 1 down, 2 right, 3 up; on slippery ice the
//! move goes the intended way with probability 1/3 and to each perpendicular side with 1/3; truncation after 100
//! steps. [`GridWorld::transitions`] is Gymnasium's `env.P` entry for entry; observations are one-hot.

use super::env::{check_state, discrete, Action, ActionSpace, Env, Step};
use crate::rng::Rng;
use crate::{Error, Result};
use rand::{Rng as _, SeedableRng};

/// The 4 × 4 map of FrozenLake-v1.
pub const MAP_4X4: [&str; 4] = ["SFFF", "FHFH", "FFFH", "HFFG"];

/// One transition: (probability, next state, reward, terminated).
pub type Transition = (f64, usize, f64, bool);

/// FrozenLake.
#[derive(Debug, Clone)]
pub struct GridWorld {
    map: Vec<Vec<u8>>,
    pub slippery: bool,
    pub max_steps: u64,
    table: Vec<[Vec<Transition>; 4]>,
    s: usize,
    state: [f64; 1],
    steps: u64,
    done: bool,
    /// Draws the slips; seeded from the generator given to `reset`.
    slip_rng: Rng,
}

impl GridWorld {
    /// A grid from its rows (equal lengths, letters S, F, H, G, exactly one S).
    pub fn new(rows: &[&str], slippery: bool) -> Result<Self> {
        let map: Vec<Vec<u8>> = rows.iter().map(|r| r.as_bytes().to_vec()).collect();
        let ncol = map.first().map_or(0, Vec::len);
        if map.is_empty() || ncol == 0 || map.iter().any(|r| r.len() != ncol) {
            return Err(Error::invalid(
                "grid world: the rows must be non-empty and of equal length",
            ));
        }
        if map.iter().flatten().any(|c| !b"SFHG".contains(c))
            || map.iter().flatten().filter(|&&c| c == b'S').count() != 1
        {
            return Err(Error::invalid(
                "grid world: cells are S, F, H or G, with exactly one S",
            ));
        }
        let (nrow, ns) = (map.len(), map.len() * ncol);
        let moved = |row: usize, col: usize, a: usize| -> (usize, usize) {
            match a {
                0 => (row, col.saturating_sub(1)),
                1 => ((row + 1).min(nrow - 1), col),
                2 => (row, (col + 1).min(ncol - 1)),
                _ => (row.saturating_sub(1), col),
            }
        };
        let outcome = |row: usize, col: usize, a: usize| -> (usize, f64, bool) {
            let (r, c) = moved(row, col, a);
            let letter = map[r][c];
            (
                r * ncol + c,
                if letter == b'G' { 1.0 } else { 0.0 },
                letter == b'G' || letter == b'H',
            )
        };
        let mut table = Vec::with_capacity(ns);
        for (row, cells) in map.iter().enumerate() {
            for (col, letter) in cells.iter().enumerate() {
                let s = row * ncol + col;
                let entry: [Vec<Transition>; 4] = std::array::from_fn(|a| {
                    if b"GH".contains(letter) {
                        vec![(1.0, s, 0.0, true)]
                    } else if slippery {
                        [(a + 3) % 4, a, (a + 1) % 4]
                            .iter()
                            .map(|&b| {
                                let (s2, r, t) = outcome(row, col, b);
                                (
                                    if b == a {
                                        1.0 / 3.0
                                    } else {
                                        (1.0 - 1.0 / 3.0) / 2.0
                                    },
                                    s2,
                                    r,
                                    t,
                                )
                            })
                            .collect()
                    } else {
                        let (s2, r, t) = outcome(row, col, a);
                        vec![(1.0, s2, r, t)]
                    }
                });
                table.push(entry);
            }
        }
        let start = map
            .iter()
            .flatten()
            .position(|&c| c == b'S')
            .expect("one S");
        Ok(GridWorld {
            map,
            slippery,
            max_steps: 100,
            table,
            s: start,
            state: [start as f64],
            steps: 0,
            done: false,
            slip_rng: Rng::seed_from_u64(0),
        })
    }

    /// FrozenLake-v1's 4 × 4 map.
    pub fn frozen_lake(slippery: bool) -> Self {
        Self::new(&MAP_4X4, slippery).expect("the built-in map is valid")
    }

    /// The number of states.
    pub fn states(&self) -> usize {
        self.table.len()
    }

    /// The transitions of action `a` in state `s` (Gymnasium's `env.P[s][a]`).
    pub fn transitions(&self, s: usize, a: usize) -> &[Transition] {
        &self.table[s][a]
    }

    fn one_hot(&self) -> Vec<f64> {
        let mut v = vec![0.0; self.states()];
        v[self.s] = 1.0;
        v
    }

    fn start(&self) -> usize {
        self.map
            .iter()
            .flatten()
            .position(|&c| c == b'S')
            .expect("one S")
    }
}

impl Env for GridWorld {
    fn name(&self) -> &'static str {
        "FrozenLake-v1"
    }
    fn obs_dim(&self) -> usize {
        self.states()
    }
    fn action_space(&self) -> ActionSpace {
        ActionSpace::Discrete(4)
    }
    fn max_steps(&self) -> u64 {
        self.max_steps
    }
    fn reset(&mut self, rng: &mut Rng) -> Vec<f64> {
        self.slip_rng = Rng::seed_from_u64(rng.gen());
        self.s = self.start();
        self.state = [self.s as f64];
        self.steps = 0;
        self.done = false;
        self.one_hot()
    }
    fn step(&mut self, action: &Action) -> Result<Step> {
        let a = discrete(self.name(), action, 4)?;
        if self.done {
            return Err(Error::invalid(
                "FrozenLake-v1: the episode has ended; reset before stepping again",
            ));
        }
        let ts = &self.table[self.s][a];
        let u: f64 = self.slip_rng.gen();
        let mut acc = 0.0;
        let mut pick = ts[ts.len() - 1];
        for t in ts {
            acc += t.0;
            if u < acc {
                pick = *t;
                break;
            }
        }
        let (_, s2, r, terminated) = pick;
        self.s = s2;
        self.state = [s2 as f64];
        self.steps += 1;
        let truncated = !terminated && self.steps >= self.max_steps;
        self.done = terminated || truncated;
        Ok(Step {
            obs: self.one_hot(),
            reward: r,
            terminated,
            truncated,
        })
    }
    fn state(&self) -> &[f64] {
        &self.state
    }
    fn set_state(&mut self, state: &[f64]) -> Result<()> {
        check_state(self.name(), state, 1)?;
        let s = state[0];
        if s < 0.0 || s.fract() != 0.0 || s as usize >= self.states() {
            return Err(Error::invalid(format!(
                "{}: state {s} is not a cell index",
                self.name()
            )));
        }
        self.s = s as usize;
        self.state = [s];
        self.steps = 0;
        self.done = false;
        Ok(())
    }
}
