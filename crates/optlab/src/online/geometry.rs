//! The geometry of a mirror-descent step (P06, P32): a feasible set X, a mirror map ψ and a composite term h.
//! [`Geometry::step`] solves x⁺ = argmin_{x∈X} ⟨g, x⟩ + h(x) + B_ψ(x, x₀)/η exactly, in O(d) without allocating:
//!
//! - Euclidean ψ = ½‖·‖²: the proximal map of ηh, then the projection onto X. This composition is the exact
//!   minimizer for every pair offered here (h is separable and X a box; h is isotropic or soft-thresholding
//!   and X a ball centred at 0; h = λ/2‖x‖² and X the simplex), and h = λ‖x‖₁ is constant on the simplex.
//! - Entropic ψ = Σ xᵢ ln xᵢ on the simplex: the multiplicative update x⁺ ∝ x₀ e^{−ηg}; with h = λ/2‖x‖² each
//!   coordinate solves ln xᵢ + ηλxᵢ = ln x₀ᵢ − ηgᵢ − c (Newton in ln xᵢ) and c is found so that Σ x⁺ = 1.

use crate::{Error, Result, Spec};
use std::fmt;
use std::str::FromStr;

/// The feasible set X.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Domain {
    /// Rᵈ (no constraint: the case P06 treats without a compact domain).
    Free,
    /// The box [lo, hi]ᵈ.
    Box { lo: f64, hi: f64 },
    /// The Euclidean ball {‖x‖₂ ≤ radius} around 0.
    Ball { radius: f64 },
    /// The probability simplex {x ≥ 0, Σx = 1}.
    Simplex,
}

/// The mirror map ψ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mirror {
    /// ψ = ½‖x‖²: B_ψ(x, y) = ½‖x − y‖² (projected / proximal SGD).
    Euclidean,
    /// ψ = Σ xᵢ ln xᵢ on the simplex: B_ψ is the KL divergence (exponentiated gradient).
    Entropic,
}

/// The composite term h, handled by its proximal (Bregman-proximal) map rather than by a gradient.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Composite {
    /// h = 0.
    None,
    /// h = λ‖x‖₁.
    L1(f64),
    /// h = λ/2 ‖x‖².
    L2Sq(f64),
}

impl Composite {
    /// h(x).
    pub fn value(&self, x: &[f64]) -> f64 {
        match *self {
            Composite::None => 0.0,
            Composite::L1(l) => l * x.iter().map(|v| v.abs()).sum::<f64>(),
            Composite::L2Sq(l) => 0.5 * l * x.iter().map(|v| v * v).sum::<f64>(),
        }
    }
}

/// A validated (X, ψ, h).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    pub domain: Domain,
    pub mirror: Mirror,
    pub composite: Composite,
}

impl Default for Geometry {
    fn default() -> Self {
        Geometry {
            domain: Domain::Free,
            mirror: Mirror::Euclidean,
            composite: Composite::None,
        }
    }
}

impl Geometry {
    /// Checks the values and the combination: the entropic map lives on the simplex.
    pub fn new(domain: Domain, mirror: Mirror, composite: Composite) -> Result<Self> {
        match domain {
            Domain::Box { lo, hi } if !(lo.is_finite() && hi.is_finite() && lo <= hi) => {
                return Err(Error::invalid(format!(
                    "box domain [{lo}, {hi}]: the bounds must be finite with lo <= hi"
                )))
            }
            Domain::Ball { radius } if !(radius.is_finite() && radius > 0.0) => {
                return Err(Error::invalid(format!(
                    "ball domain: radius must be finite and > 0, got {radius}"
                )))
            }
            _ => {}
        }
        if let Composite::L1(l) | Composite::L2Sq(l) = composite {
            if !(l.is_finite() && l >= 0.0) {
                return Err(Error::invalid(format!(
                    "composite term: lambda must be finite and >= 0, got {l}"
                )));
            }
        }
        if mirror == Mirror::Entropic && domain != Domain::Simplex {
            return Err(Error::invalid(
                "the entropic mirror map needs domain=simplex (use mirror=euclidean for a box, ball or free domain)",
            ));
        }
        Ok(Geometry {
            domain,
            mirror,
            composite,
        })
    }

    /// The starting point x₁: the centre of X (0, clamped into a box; the uniform vector on the simplex).
    pub fn start(&self, dim: usize) -> Vec<f64> {
        match self.domain {
            Domain::Simplex => vec![1.0 / dim as f64; dim],
            Domain::Box { lo, hi } => vec![0f64.clamp(lo, hi); dim],
            Domain::Free | Domain::Ball { .. } => vec![0.0; dim],
        }
    }

    /// x ← argmin_{x∈X} ⟨g, x⟩ + h(x) + B_ψ(x, x_old)/η, in place. `eta` must be > 0.
    pub fn step(&self, x: &mut [f64], g: &[f64], eta: f64) {
        debug_assert_eq!(x.len(), g.len());
        match self.mirror {
            Mirror::Euclidean => {
                for (xi, gi) in x.iter_mut().zip(g) {
                    *xi -= eta * gi;
                }
                self.prox_project(x, eta);
            }
            Mirror::Entropic => entropic_step(x, g, eta, self.composite),
        }
    }

    /// The Euclidean proximal map of ηh followed by the projection onto X (exact for every pair allowed).
    pub fn prox_project(&self, x: &mut [f64], eta: f64) {
        match (self.composite, self.domain) {
            // ‖x‖₁ = 1 on the simplex: h is constant there.
            (Composite::L1(_), Domain::Simplex) | (Composite::None, _) => {}
            (Composite::L1(l), _) => soft_threshold(x, eta * l),
            (Composite::L2Sq(l), _) => {
                let s = 1.0 / (1.0 + eta * l);
                x.iter_mut().for_each(|v| *v *= s);
            }
        }
        project(self.domain, x);
    }

    /// B_ψ(x, y) (used for the distance to the comparator).
    pub fn bregman(&self, x: &[f64], y: &[f64]) -> f64 {
        match self.mirror {
            Mirror::Euclidean => 0.5 * x.iter().zip(y).map(|(a, b)| (a - b) * (a - b)).sum::<f64>(),
            Mirror::Entropic => x
                .iter()
                .zip(y)
                .map(|(&a, &b)| if a > 0.0 { a * (a / b).ln() - a + b } else { b })
                .sum(),
        }
    }
}

/// The Euclidean projection onto X, in place.
pub fn project(domain: Domain, x: &mut [f64]) {
    match domain {
        Domain::Free => {}
        Domain::Box { lo, hi } => x.iter_mut().for_each(|v| *v = v.clamp(lo, hi)),
        Domain::Ball { radius } => {
            let n = x.iter().map(|v| v * v).sum::<f64>().sqrt();
            if n > radius {
                let s = radius / n;
                x.iter_mut().for_each(|v| *v *= s);
            }
        }
        Domain::Simplex => project_simplex(x),
    }
}

/// Soft thresholding by `t`: the proximal map of t‖·‖₁.
pub fn soft_threshold(x: &mut [f64], t: f64) {
    for v in x.iter_mut() {
        *v = v.signum() * (v.abs() - t).max(0.0);
    }
}

/// The Euclidean projection onto the simplex by Michelot's algorithm: the threshold τ of max(x − τ, 0) grows
/// monotonically as coordinates at or below it drop out; no sort, no allocation, a few O(d) passes.
pub fn project_simplex(x: &mut [f64]) {
    let d = x.len();
    if d == 0 {
        return;
    }
    let mut tau = (x.iter().sum::<f64>() - 1.0) / d as f64;
    let mut active = d;
    loop {
        let (mut s, mut k) = (0.0, 0usize);
        for &v in x.iter() {
            if v > tau {
                s += v;
                k += 1;
            }
        }
        let next = (s - 1.0) / k as f64;
        if k == active || next <= tau {
            tau = next.max(tau);
            break;
        }
        active = k;
        tau = next;
    }
    x.iter_mut().for_each(|v| *v = (*v - tau).max(0.0));
}

/// The entropic (KL-proximal) step on the simplex with composite term `h` (L1 is constant there).
fn entropic_step(x: &mut [f64], g: &[f64], eta: f64, h: Composite) {
    // a = ln x_old − ηg, computed stably; zero coordinates stay zero.
    for (xi, gi) in x.iter_mut().zip(g) {
        *xi = if *xi > 0.0 {
            xi.ln() - eta * gi
        } else {
            f64::NEG_INFINITY
        };
    }
    let amax = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    match h {
        Composite::L2Sq(l) if l > 0.0 => entropic_l2(x, eta * l, amax),
        _ => {
            let mut s = 0.0;
            for v in x.iter_mut() {
                *v = (*v - amax).exp();
                s += *v;
            }
            x.iter_mut().for_each(|v| *v /= s);
        }
    }
}

/// Solves ln xᵢ + κ xᵢ = aᵢ − c for all i with Σ xᵢ = 1 (`a` in `x` on entry, its maximum `amax`).
fn entropic_l2(x: &mut [f64], kappa: f64, amax: f64) {
    // u + κ eᵘ = b is increasing and convex in u: Newton from any start where it is >= 0 decreases monotonically.
    let solve = |b: f64| -> f64 {
        if b == f64::NEG_INFINITY {
            return 0.0;
        }
        // A start with f(u₀) >= 0 near the root: b itself, or ln(b/κ) (clamped at 0) when b > 0.
        let mut u = if b > 0.0 {
            b.min((b / kappa).ln().max(0.0))
        } else {
            b
        };
        for _ in 0..60 {
            let e = u.exp();
            let f = u + kappa * e - b;
            let step = f / (1.0 + kappa * e);
            u -= step;
            if step.abs() <= 1e-15 * (1.0 + u.abs()) {
                break;
            }
        }
        u.exp()
    };
    let total = |x: &[f64], c: f64| x.iter().map(|&a| solve(a - c)).sum::<f64>();
    // Bracket c around amax, widening until the sum crosses 1, then bisect (the sum is continuous and decreasing
    // in c).
    let (mut lo, mut hi) = (amax - 1.0, amax + 1.0);
    while total(x, lo) < 1.0 {
        lo -= 2.0 * (hi - lo);
    }
    while total(x, hi) > 1.0 {
        hi += 2.0 * (hi - lo);
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if total(x, mid) > 1.0 {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= 1e-15 * (1.0 + mid.abs()) {
            break;
        }
    }
    let c = 0.5 * (lo + hi);
    for v in x.iter_mut() {
        *v = solve(*v - c);
    }
    // Remove the last rounding of the bisection.
    let s: f64 = x.iter().sum();
    x.iter_mut().for_each(|v| *v /= s);
}

impl Geometry {
    /// From the keys `mirror` (euclidean|entropic), `domain` (free|box|ball|simplex, with `lo`, `hi`, `radius`),
    /// `prox` (none|l1|l2) and `lambda` of `spec`. The entropic map defaults to the simplex.
    pub fn from_spec(spec: &mut Spec) -> Result<Self> {
        let mirror: Mirror = spec.string("mirror", "euclidean").parse()?;
        let default_domain = if mirror == Mirror::Entropic {
            "simplex"
        } else {
            "free"
        };
        let domain = match spec.string("domain", default_domain).as_str() {
            "free" => Domain::Free,
            "box" => Domain::Box {
                lo: spec.f64("lo", -1.0)?,
                hi: spec.f64("hi", 1.0)?,
            },
            "ball" => Domain::Ball {
                radius: spec.f64("radius", 1.0)?,
            },
            "simplex" => Domain::Simplex,
            other => {
                return Err(crate::spec::unknown_name(
                    "domain",
                    other,
                    &["free", "box", "ball", "simplex"],
                ))
            }
        };
        let composite = match spec.string("prox", "none").as_str() {
            "none" => Composite::None,
            "l1" => Composite::L1(spec.f64("lambda", 0.0)?),
            "l2" => Composite::L2Sq(spec.f64("lambda", 0.0)?),
            other => {
                return Err(crate::spec::unknown_name(
                    "composite term (prox)",
                    other,
                    &["none", "l1", "l2"],
                ))
            }
        };
        Geometry::new(domain, mirror, composite)
    }
}

impl fmt::Display for Geometry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mirror={}", self.mirror)?;
        match self.domain {
            Domain::Free => write!(f, ",domain=free")?,
            Domain::Box { lo, hi } => write!(f, ",domain=box,lo={lo},hi={hi}")?,
            Domain::Ball { radius } => write!(f, ",domain=ball,radius={radius}")?,
            Domain::Simplex => write!(f, ",domain=simplex")?,
        }
        match self.composite {
            Composite::None => Ok(()),
            Composite::L1(l) => write!(f, ",prox=l1,lambda={l}"),
            Composite::L2Sq(l) => write!(f, ",prox=l2,lambda={l}"),
        }
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Domain::Free => write!(f, "free"),
            Domain::Box { lo, hi } => write!(f, "box[{lo},{hi}]"),
            Domain::Ball { radius } => write!(f, "ball({radius})"),
            Domain::Simplex => write!(f, "simplex"),
        }
    }
}

impl FromStr for Mirror {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "euclidean" => Ok(Mirror::Euclidean),
            "entropic" => Ok(Mirror::Entropic),
            _ => Err(crate::spec::unknown_name(
                "mirror map",
                s,
                &["euclidean", "entropic"],
            )),
        }
    }
}

impl fmt::Display for Mirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mirror::Euclidean => "euclidean",
            Mirror::Entropic => "entropic",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute-force minimizer of the step objective over a fine grid of the 2-simplex / a box.
    fn objective(geo: &Geometry, x: &[f64], x0: &[f64], g: &[f64], eta: f64) -> f64 {
        let lin: f64 = x.iter().zip(g).map(|(a, b)| a * b).sum();
        lin + geo.composite.value(x) + geo.bregman(x, x0) / eta
    }

    #[test]
    fn simplex_projection_matches_the_sorting_algorithm() {
        let cases: &[&[f64]] = &[
            &[0.5, 0.1],
            &[3.0, -1.0, 0.2, 0.2],
            &[0.1, 0.1, 0.1],
            &[-5.0, -6.0, -7.0],
        ];
        for c in cases {
            let mut x = c.to_vec();
            project_simplex(&mut x);
            // Duchi et al.: sort descending, largest k with u_k − (Σ_{j≤k} u_j − 1)/k > 0.
            let mut u = c.to_vec();
            u.sort_by(|a, b| b.partial_cmp(a).unwrap());
            let (mut cum, mut tau) = (0.0, 0.0);
            for (k, &v) in u.iter().enumerate() {
                cum += v;
                let t = (cum - 1.0) / (k + 1) as f64;
                if v - t > 0.0 {
                    tau = t;
                }
            }
            for (a, b) in x.iter().zip(c.iter()) {
                assert!((a - (b - tau).max(0.0)).abs() < 1e-14, "{c:?}");
            }
            assert!((x.iter().sum::<f64>() - 1.0).abs() < 1e-14);
        }
    }

    #[test]
    fn every_step_is_the_minimizer_of_its_objective() {
        let x0 = [0.2, 0.5, 0.3];
        let g = [1.0, -2.0, 0.5];
        let eta = 0.3;
        let geos = [
            Geometry::new(Domain::Simplex, Mirror::Entropic, Composite::None).unwrap(),
            Geometry::new(Domain::Simplex, Mirror::Entropic, Composite::L2Sq(3.0)).unwrap(),
            Geometry::new(Domain::Simplex, Mirror::Entropic, Composite::L2Sq(500.0)).unwrap(),
            Geometry::new(Domain::Simplex, Mirror::Euclidean, Composite::L2Sq(3.0)).unwrap(),
            Geometry::new(Domain::Simplex, Mirror::Euclidean, Composite::L1(0.7)).unwrap(),
            Geometry::new(
                Domain::Box { lo: 0.0, hi: 0.4 },
                Mirror::Euclidean,
                Composite::L1(0.7),
            )
            .unwrap(),
            Geometry::new(
                Domain::Ball { radius: 0.5 },
                Mirror::Euclidean,
                Composite::L1(0.7),
            )
            .unwrap(),
            Geometry::new(
                Domain::Ball { radius: 0.5 },
                Mirror::Euclidean,
                Composite::L2Sq(2.0),
            )
            .unwrap(),
        ];
        for geo in geos {
            let mut x = x0.to_vec();
            geo.step(&mut x, &g, eta);
            let best = objective(&geo, &x, &x0, &g, eta);
            // Feasible perturbations never do better (random directions, projected back).
            let mut rng = crate::rng::rng_for(5, crate::rng::Stream::Probe, 0);
            for _ in 0..4000 {
                let mut y: Vec<f64> = x
                    .iter()
                    .map(|v| v + 0.05 * crate::rng::normal(&mut rng))
                    .collect();
                project(geo.domain, &mut y);
                let v = objective(&geo, &y, &x0, &g, eta);
                assert!(v >= best - 1e-12, "{geo:?}: {y:?} gives {v} < {best}");
            }
        }
    }

    #[test]
    fn entropic_map_needs_the_simplex() {
        let e = Geometry::new(Domain::Free, Mirror::Entropic, Composite::None).unwrap_err();
        assert!(e.to_string().contains("simplex"), "{e}");
        assert!(Geometry::new(
            Domain::Ball { radius: -1.0 },
            Mirror::Euclidean,
            Composite::None
        )
        .is_err());
    }
}
