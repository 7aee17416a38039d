//! Gaussian-mixture targets, whose score is exact at every noise level: under x_t = α x_0 + σ ε a component
//! N(μ_k, s_k² I) becomes N(α μ_k, (α² s_k² + σ²) I), so p_t is again a mixture and
//! ∇ log p_t(x) = Σ_k γ_k(x) (α μ_k − x)/v_k with responsibilities γ_k ∝ w_k N(x; α μ_k, v_k I).
//! Presets: `line` (1-D), `ring` (8 modes on a circle), `grid` (5 × 5 = 25 modes), `gaussians` (random means in
//! d dimensions, e.g. d = 16); equal weights, or weights ∝ decayᵏ over the modes k = 0, 1, ... with `decay` below 1
//! (light modes, which a mode-seeking divergence may drop).

use super::process::Process;
use crate::rng::{normal, rng_for, Rng, Stream};
use crate::{Error, Result, Spec};
use rand::Rng as _;
use std::fmt;
use std::str::FromStr;

/// An isotropic Gaussian mixture in `dim` dimensions.
#[derive(Debug, Clone, PartialEq)]
pub struct Mixture {
    pub dim: usize,
    pub weights: Vec<f64>,
    /// One mean of `dim` coordinates per component.
    pub means: Vec<Vec<f64>>,
    /// One standard deviation per component.
    pub stds: Vec<f64>,
    spec: String,
}

/// The names `--target` accepts.
pub const TARGET_NAMES: &[&str] = &["line", "ring", "grid", "gaussians"];

impl Mixture {
    /// Equal weights; checks the sizes and values.
    pub fn new(means: Vec<Vec<f64>>, stds: Vec<f64>, weights: Option<Vec<f64>>) -> Result<Self> {
        let k = means.len();
        let dim = means.first().map_or(0, Vec::len);
        if k == 0 || dim == 0 || means.iter().any(|m| m.len() != dim) || stds.len() != k {
            return Err(Error::invalid(format!(
                "mixture: {k} means of equal, non-zero length and as many standard deviations are needed"
            )));
        }
        let weights = weights.unwrap_or_else(|| vec![1.0 / k as f64; k]);
        if weights.len() != k
            || weights.iter().any(|w| !(w.is_finite() && *w > 0.0))
            || (weights.iter().sum::<f64>() - 1.0).abs() > 1e-9
            || stds.iter().any(|s| !(s.is_finite() && *s > 0.0))
            || means.iter().flatten().any(|v| !v.is_finite())
        {
            return Err(Error::invalid(
                "mixture: weights must be positive and sum to 1, standard deviations positive, means finite",
            ));
        }
        Ok(Mixture {
            dim,
            weights,
            means,
            stds,
            spec: String::new(),
        })
    }

    /// `n` samples, row-major `[n, dim]`.
    pub fn sample(&self, n: usize, rng: &mut Rng) -> Vec<f64> {
        let mut out = Vec::with_capacity(n * self.dim);
        for _ in 0..n {
            let mut u = rng.gen::<f64>();
            let mut k = self.weights.len() - 1;
            for (i, w) in self.weights.iter().enumerate() {
                if u < *w {
                    k = i;
                    break;
                }
                u -= w;
            }
            for j in 0..self.dim {
                out.push(self.means[k][j] + self.stds[k] * normal(rng));
            }
        }
        out
    }

    /// log p_t(x) and ∇ log p_t(x) of one point under `process` at time t (t = 0: the target itself).
    pub fn log_density_and_score(&self, x: &[f64], process: &Process, t: f64) -> (f64, Vec<f64>) {
        let (a, s) = if t == 0.0 {
            (1.0, 0.0)
        } else {
            (process.alpha(t), process.sigma(t))
        };
        let d = self.dim as f64;
        // log w_k N(x; a μ_k, v_k I), then a log-sum-exp.
        let terms: Vec<(f64, f64)> = self
            .means
            .iter()
            .zip(&self.stds)
            .zip(&self.weights)
            .map(|((m, sd), w)| {
                let v = a * a * sd * sd + s * s;
                let r2: f64 = x.iter().zip(m).map(|(xi, mi)| (xi - a * mi).powi(2)).sum();
                (
                    w.ln() - 0.5 * d * (2.0 * std::f64::consts::PI * v).ln() - 0.5 * r2 / v,
                    v,
                )
            })
            .collect();
        let top = terms.iter().map(|t| t.0).fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = terms.iter().map(|t| (t.0 - top).exp()).sum();
        let mut score = vec![0.0; self.dim];
        for ((lt, v), m) in terms.iter().zip(&self.means) {
            let g = (lt - top).exp() / z;
            for j in 0..self.dim {
                score[j] += g * (a * m[j] - x[j]) / v;
            }
        }
        (top + z.ln(), score)
    }

    /// The exact score of a batch `[n, dim]` (row-major) at time t.
    pub fn score(&self, x: &[f64], process: &Process, t: f64) -> Vec<f64> {
        x.chunks(self.dim)
            .flat_map(|row| self.log_density_and_score(row, process, t).1)
            .collect()
    }

    /// The index of the nearest mean of each sample and its distance in units of that component's std.
    pub fn nearest(&self, x: &[f64]) -> Vec<(usize, f64)> {
        x.chunks(self.dim)
            .map(|row| {
                self.means
                    .iter()
                    .zip(&self.stds)
                    .enumerate()
                    .map(|(k, (m, s))| {
                        let r: f64 = row
                            .iter()
                            .zip(m)
                            .map(|(a, b)| (a - b).powi(2))
                            .sum::<f64>()
                            .sqrt();
                        (k, r / s)
                    })
                    .fold(
                        (0, f64::INFINITY),
                        |best, c| if c.1 < best.1 { c } else { best },
                    )
            })
            .collect()
    }
}

impl fmt::Display for Mixture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.spec.is_empty() {
            write!(
                f,
                "mixture of {} in {} dimensions",
                self.weights.len(),
                self.dim
            )
        } else {
            write!(f, "{}", self.spec)
        }
    }
}

impl FromStr for Mixture {
    type Err = Error;

    /// `line[:modes=2,spacing=4,std=0.5]`, `ring[:modes=8,radius=4,std=0.2]`, `grid[:side=5,spacing=2,std=0.2]`,
    /// `gaussians[:dim=16,modes=4,spread=3,std=0.5,seed=0]`; each also takes `decay` (default 1: equal weights;
    /// below 1, mode k weighs ∝ decayᵏ).
    fn from_str(s: &str) -> Result<Self> {
        let mut spec = Spec::parse(s)?;
        let count = |v: usize, what: &str, max: usize| -> Result<usize> {
            if v == 0 || v > max {
                Err(Error::invalid(format!(
                    "target '{s}': {what} = {v} must lie in 1..={max}"
                )))
            } else {
                Ok(v)
            }
        };
        let (means, std) = match spec.name.as_str() {
            "line" => {
                let k = count(spec.usize("modes", 2)?, "modes", 1000)?;
                let gap = spec.f64("spacing", 4.0)?;
                let c = 0.5 * (k as f64 - 1.0);
                (
                    (0..k)
                        .map(|i| vec![(i as f64 - c) * gap])
                        .collect::<Vec<_>>(),
                    spec.f64("std", 0.5)?,
                )
            }
            "ring" => {
                let k = count(spec.usize("modes", 8)?, "modes", 1000)?;
                let r = spec.f64("radius", 4.0)?;
                let means = (0..k)
                    .map(|i| {
                        let a = 2.0 * std::f64::consts::PI * i as f64 / k as f64;
                        vec![r * a.cos(), r * a.sin()]
                    })
                    .collect();
                (means, spec.f64("std", 0.2)?)
            }
            "grid" => {
                let side = count(spec.usize("side", 5)?, "side", 30)?;
                let gap = spec.f64("spacing", 2.0)?;
                let c = 0.5 * (side as f64 - 1.0);
                let means = (0..side * side)
                    .map(|i| vec![((i / side) as f64 - c) * gap, ((i % side) as f64 - c) * gap])
                    .collect();
                (means, spec.f64("std", 0.2)?)
            }
            "gaussians" => {
                let d = count(spec.usize("dim", 16)?, "dim", 4096)?;
                let k = count(spec.usize("modes", 4)?, "modes", 1000)?;
                let spread = spec.f64("spread", 3.0)?;
                let mut rng = rng_for(spec.usize("seed", 0)? as u64, Stream::Data, 0);
                let means = (0..k)
                    .map(|_| (0..d).map(|_| spread * normal(&mut rng)).collect())
                    .collect();
                (means, spec.f64("std", 0.5)?)
            }
            other => return Err(crate::spec::unknown_name("target", other, TARGET_NAMES)),
        };
        let decay = spec.f64("decay", 1.0)?;
        spec.finish()?;
        let weights = decayed_weights(decay, means.len())
            .map_err(|e| Error::invalid(format!("target '{s}': {e}")))?;
        if !(std.is_finite() && std > 0.0)
            || means
                .iter()
                .flatten()
                .any(|v: &f64| !v.is_finite() || v.abs() > 1e6)
        {
            return Err(Error::invalid(format!(
                "target '{s}': std must be positive and the means finite (spacing, radius, spread below 1e6)"
            )));
        }
        let k = means.len();
        let mut m = Mixture::new(means, vec![std; k], weights)?;
        m.spec = s.trim().to_string();
        Ok(m)
    }
}

/// Weights ∝ decayᵏ for k modes, normalized; `None` (equal weights) for decay 1. The lightest must keep at least
/// [`MIN_WEIGHT`].
fn decayed_weights(decay: f64, k: usize) -> std::result::Result<Option<Vec<f64>>, String> {
    if !(decay > 0.0 && decay <= 1.0) {
        return Err(format!("decay = {decay} must lie in (0, 1]"));
    }
    if decay == 1.0 {
        return Ok(None);
    }
    let raw: Vec<f64> = (0..k).map(|i| decay.powi(i as i32)).collect();
    let total: f64 = raw.iter().sum();
    let weights: Vec<f64> = raw.iter().map(|w| w / total).collect();
    match weights.last() {
        Some(&w) if w < MIN_WEIGHT => Err(format!(
            "decay = {decay} leaves the lightest of {k} modes a weight of {w:.1e}, below {MIN_WEIGHT:e}"
        )),
        _ => Ok(Some(weights)),
    }
}

/// The smallest mode weight `decay` may leave.
const MIN_WEIGHT: f64 = 1e-6;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_score_is_the_gradient_of_the_log_density() {
        let p = Process::default();
        for target in ["line", "ring", "grid:side=3", "gaussians:dim=5,modes=3"] {
            let m: Mixture = target.parse().unwrap();
            let mut rng = rng_for(1, Stream::Probe, 0);
            let x = m.sample(4, &mut rng);
            for &t in &[0.0, 0.01, 0.3, 0.9] {
                for row in x.chunks(m.dim) {
                    let (_, g) = m.log_density_and_score(row, &p, t);
                    for j in 0..m.dim {
                        let h = 1e-5;
                        let mut up = row.to_vec();
                        up[j] += h;
                        let mut dn = row.to_vec();
                        dn[j] -= h;
                        let fd = (m.log_density_and_score(&up, &p, t).0
                            - m.log_density_and_score(&dn, &p, t).0)
                            / (2.0 * h);
                        assert!(
                            (fd - g[j]).abs() < 1e-4 * (1.0 + g[j].abs()),
                            "{target} t={t}: {fd} vs {}",
                            g[j]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn presets_and_refusals() {
        let g: Mixture = "grid".parse().unwrap();
        assert_eq!((g.dim, g.weights.len()), (2, 25));
        let r: Mixture = "ring".parse().unwrap();
        assert_eq!((r.dim, r.weights.len()), (2, 8));
        assert_eq!("gaussians".parse::<Mixture>().unwrap().dim, 16);
        let light: Mixture = "ring:modes=4,decay=0.5".parse().unwrap();
        let expect = [8.0 / 15.0, 4.0 / 15.0, 2.0 / 15.0, 1.0 / 15.0];
        for (w, e) in light.weights.iter().zip(expect) {
            assert!((w - e).abs() < 1e-15, "{w} vs {e}");
        }
        assert_eq!(
            r.weights,
            "ring:decay=1".parse::<Mixture>().unwrap().weights
        );
        for bad in [
            "ring:modes=0",
            "ring:std=0",
            "grid:side=100",
            "moons",
            "ring:radius=nan",
            "line:spacing=1e300",
            "ring:colour=1",
            "ring:decay=0",
            "ring:decay=1.5",
            "ring:decay=nan",
            "grid:decay=0.1",
        ] {
            assert!(bad.parse::<Mixture>().is_err(), "{bad}");
        }
    }
}
