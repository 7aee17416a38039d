//! Composite stochastic mirror descent, CSMD (P06, Liu & Zhou, "Revisiting the Last-Iterate Convergence of
//! Stochastic Gradient Methods"): x_{t+1} = argmin_{x∈X} ⟨g_t, x⟩ + h(x) + B_ψ(x, x_t)/η_t with g_t a stochastic
//! (sub)gradient of F at x_t, returning the **last iterate** x_{T+1}. The paper has no code; the update is its
//! Algorithm 1 in the standard form, the step rules are in [`super::steps`].
//!
//! Optional heavy-tailed noise: Student-t draws (ν degrees of freedom, finite p-th moments only for p < ν) added
//! to every coordinate of the gradient, the setting of the paper's heavy-tailed section.

use super::geometry::Geometry;
use super::problems::StochasticObjective;
use super::steps::StepRule;
use crate::rng::{ziggurat, Rng};
use crate::{Error, Result, Spec};
use rand::RngCore;

/// Extra noise on every stochastic gradient.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GradientNoise {
    None,
    /// `scale` times a Student-t draw with `dof` degrees of freedom, independently per coordinate.
    StudentT {
        dof: f64,
        scale: f64,
    },
}

impl GradientNoise {
    /// Checks dof > 0 and scale >= 0.
    pub fn student_t(dof: f64, scale: f64) -> Result<Self> {
        if !(dof.is_finite() && dof > 0.0 && scale.is_finite() && scale >= 0.0) {
            return Err(Error::invalid(format!(
                "Student-t noise: dof must be > 0 and scale >= 0, got dof={dof}, scale={scale}"
            )));
        }
        Ok(GradientNoise::StudentT { dof, scale })
    }
}

/// A Student-t draw: Z / sqrt(V/ν) with V ~ χ²_ν = 2·Gamma(ν/2).
pub fn student_t(rng: &mut Rng, dof: f64) -> f64 {
    let z = ziggurat(rng);
    let v = 2.0 * gamma(rng, 0.5 * dof);
    z / (v / dof).sqrt()
}

/// A Gamma(k, 1) draw by Marsaglia & Tsang (2000), with the k < 1 boost U^{1/k}.
pub fn gamma(rng: &mut Rng, k: f64) -> f64 {
    if k < 1.0 {
        return gamma(rng, k + 1.0) * unit_open(rng).powf(1.0 / k);
    }
    let d = k - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = ziggurat(rng);
        let v = 1.0 + c * x;
        if v <= 0.0 {
            continue;
        }
        let v = v * v * v;
        let u = unit_open(rng);
        if u < 1.0 - 0.0331 * x.powi(4) || u.ln() < 0.5 * x * x + d * (1.0 - v + v.ln()) {
            return d * v;
        }
    }
}

/// Uniform in (0, 1].
fn unit_open(rng: &mut Rng) -> f64 {
    ((rng.next_u64() >> 11) as f64 + 1.0) * (1.0 / (1u64 << 53) as f64)
}

/// CSMD: a geometry (X, ψ, h), a step rule and the gradient noise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Csmd {
    pub geometry: Geometry,
    pub rule: StepRule,
    pub noise: GradientNoise,
}

/// The iterates a run ends with.
#[derive(Debug, Clone, PartialEq)]
pub struct Iterates {
    /// x_{T+1}.
    pub last: Vec<f64>,
    /// The uniform average of x_2, ..., x_{T+1}.
    pub average: Vec<f64>,
}

impl Csmd {
    /// T steps from the geometry's centre.
    pub fn run(&self, f: &dyn StochasticObjective, horizon: u64, rng: &mut Rng) -> Iterates {
        let d = f.dim();
        let mut x = self.geometry.start(d);
        let mut g = vec![0.0; d];
        let mut sum = vec![0.0; d];
        for t in 1..=horizon {
            f.sample_gradient(&x, rng, &mut g);
            if let GradientNoise::StudentT { dof, scale } = self.noise {
                for gi in g.iter_mut() {
                    *gi += scale * student_t(rng, dof);
                }
            }
            self.geometry.step(&mut x, &g, self.rule.eta(t, horizon));
            for (s, xi) in sum.iter_mut().zip(&x) {
                *s += xi;
            }
        }
        let average = sum.iter().map(|s| s / horizon.max(1) as f64).collect();
        Iterates { last: x, average }
    }
}

impl Csmd {
    /// From a spec `csmd:rule=sqrt_T,eta=0.5,mirror=..,domain=..,prox=..,lambda=..` (the keys of
    /// [`Geometry::from_spec`] and [`StepRule::from_spec`], the rule by `rule`, default `sqrt_T`). Noise is set apart.
    pub fn from_spec(spec: &mut Spec) -> Result<Self> {
        if spec.name != "csmd" {
            return Err(crate::spec::unknown_name("method", &spec.name, &["csmd"]));
        }
        let geometry = Geometry::from_spec(spec)?;
        let rule_name = spec.string("rule", "sqrt_T");
        let rule = StepRule::from_spec(&rule_name, spec)?;
        spec.finish()?;
        Ok(Csmd {
            geometry,
            rule,
            noise: GradientNoise::None,
        })
    }
}

impl std::fmt::Display for Csmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rule = self.rule.to_string();
        let (name, keys) = rule.split_once(':').unwrap_or((&rule, ""));
        write!(f, "csmd:rule={name},{keys},{}", self.geometry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::online::geometry::{Composite, Domain, Mirror};
    use crate::online::problems::{LinearLoss, Pointwise};
    use crate::online::steps::StepShape;
    use crate::rng::{rng_for, Stream};

    #[test]
    fn student_t_and_gamma_have_their_moments() {
        let mut rng = rng_for(1, Stream::Probe, 0);
        let n = 400_000;
        for k in [0.4, 1.0, 3.5] {
            let m: f64 = (0..n).map(|_| gamma(&mut rng, k)).sum::<f64>() / n as f64;
            assert!((m - k).abs() < 0.02 * k.max(1.0), "Gamma({k}) mean {m}");
        }
        // t with ν = 5: variance ν/(ν−2) = 5/3; median 0.
        let xs: Vec<f64> = (0..n).map(|_| student_t(&mut rng, 5.0)).collect();
        let var = xs.iter().map(|x| x * x).sum::<f64>() / n as f64;
        assert!((var - 5.0 / 3.0).abs() < 0.05, "{var}");
        let below = xs.iter().filter(|&&x| x < 0.0).count() as f64 / n as f64;
        assert!((below - 0.5).abs() < 0.005);
        // P(|t_1| > 1) = 1/2 for the Cauchy distribution (ν = 1).
        let tail = (0..n)
            .filter(|_| student_t(&mut rng, 1.0).abs() > 1.0)
            .count() as f64
            / n as f64;
        assert!((tail - 0.5).abs() < 0.005, "{tail}");
    }

    /// Projected SGD on a 1-D median problem in a box lands near the constrained optimum, and a deterministic
    /// gradient (one row) gives exactly the hand-computed iterates.
    #[test]
    fn csmd_follows_its_update() {
        let f = LinearLoss::new(Pointwise::Squared, vec![1.0], vec![2.0], 1).unwrap();
        let csmd = Csmd {
            geometry: Geometry::new(
                Domain::Box { lo: -1.0, hi: 1.5 },
                Mirror::Euclidean,
                Composite::L1(0.5),
            )
            .unwrap(),
            rule: StepRule::new(StepShape::Anytime { p: 2.0 }, 0.5, 0.0).unwrap(),
            noise: GradientNoise::None,
        };
        let mut rng = rng_for(0, Stream::Solver, 0);
        let it = csmd.run(&f, 2, &mut rng);
        // t=1: η=0.5, g = (0−2) → 0 + 1 = 1, soft-threshold by 0.25 → 0.75.
        // t=2: η=0.5/√2, g = 0.75−2 = −1.25 → 0.75 + η·1.25 − η·0.5, in the box.
        let e2 = 0.5 / 2f64.sqrt();
        let x2 = 0.75 + e2 * 1.25 - e2 * 0.5;
        assert!((it.last[0] - x2).abs() < 1e-15, "{:?}", it.last);
        assert!((it.average[0] - 0.5 * (0.75 + x2)).abs() < 1e-15);
    }
}
