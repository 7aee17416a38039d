//! Samplers from a score, written as small functions over a [`ScoreFn`] as in k-diffusion: Euler–Maruyama on
//! the reverse SDE dx = [f(x,t) − g²(t) s(x,t)] dt + g(t) dw̄ and Heun's method on the probability-flow ODE
//! dx/dt = f(x,t) − ½ g²(t) s(x,t), both from the prior at t = 1 down to the process's t_min. The last
//! Euler–Maruyama step adds no noise (score_sde's "noise removal").

use super::process::Process;
use super::score::ScoreFn;
use crate::rng::{normal, Rng};
use crate::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// Which sampler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampler {
    /// Euler–Maruyama on the reverse SDE (one score evaluation per step).
    EulerMaruyama,
    /// Heun on the probability-flow ODE (two per step, one in the last).
    Heun,
}

impl fmt::Display for Sampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Sampler::EulerMaruyama => "em",
            Sampler::Heun => "heun",
        })
    }
}

impl FromStr for Sampler {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "em" | "euler-maruyama" => Ok(Sampler::EulerMaruyama),
            "heun" | "ode" => Ok(Sampler::Heun),
            other => Err(crate::spec::unknown_name("sampler", other, &["em", "heun"])),
        }
    }
}

/// `n` samples (`[n, dim]`, row-major) in `steps` steps.
pub fn sample(
    score: &dyn ScoreFn,
    process: &Process,
    sampler: Sampler,
    n: usize,
    steps: usize,
    rng: &mut Rng,
) -> Result<Vec<f64>> {
    let d = score.dim();
    if steps == 0 || n == 0 {
        return Err(Error::invalid(
            "sampling needs at least one step and one sample",
        ));
    }
    crate::memory::check(
        "the samples",
        n as f64 * d as f64 * 8.0 * 4.0,
        "draw fewer samples",
    )?;
    let mut x: Vec<f64> = (0..n * d)
        .map(|_| process.prior_std() * normal(rng))
        .collect();
    let t_end = process.t_min();
    let h = (1.0 - t_end) / steps as f64;
    // The ODE's velocity dx/dt = f − ½ g² s (for Heun), or the SDE's drift f − g² s.
    let velocity = |x: &[f64], t: f64, c: f64| -> Result<Vec<f64>> {
        let s = score.score(x, t)?;
        let (f, g2) = (process.drift(t), process.g2(t));
        Ok(x.iter()
            .zip(&s)
            .map(|(xi, si)| f * xi - c * g2 * si)
            .collect())
    };
    for i in 0..steps {
        let t = 1.0 - i as f64 * h;
        match sampler {
            Sampler::EulerMaruyama => {
                let v = velocity(&x, t, 1.0)?;
                let last = i + 1 == steps;
                let g = (process.g2(t) * h).sqrt();
                for (xi, vi) in x.iter_mut().zip(&v) {
                    *xi -= vi * h;
                    if !last {
                        *xi += g * normal(rng);
                    }
                }
            }
            Sampler::Heun => {
                let v1 = velocity(&x, t, 0.5)?;
                let pred: Vec<f64> = x.iter().zip(&v1).map(|(a, b)| a - b * h).collect();
                if i + 1 == steps {
                    x = pred;
                } else {
                    let v2 = velocity(&pred, t - h, 0.5)?;
                    for ((xi, a), b) in x.iter_mut().zip(&v1).zip(&v2) {
                        *xi -= 0.5 * h * (a + b);
                    }
                }
            }
        }
        if x.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!(
                "sampling diverged at t = {t:.4}: use more steps or check the score"
            )));
        }
    }
    Ok(x)
}
