//! Online learners for the SEA experiments of P32 (Chen, Zhang, Tu, Zhao, Zhang, "Optimistic Online Mirror Descent
//! for Bridging Stochastic and Adversarial Online Convex Optimization"; the paper has no code):
//!
//! - `ogd`: online (projected) gradient descent, x_{t+1} = Π(x_t − η_t g_t);
//! - `omd`: online mirror descent with the geometry's mirror map (entropic on the simplex);
//! - `oomd`: optimistic OMD, x_t = argmin ⟨M_t, x⟩ + B(x, x̂_t)/η_t and x̂_{t+1} = argmin ⟨g_t, x⟩ + B(x, x̂_t)/η_t,
//!   with the last gradient as hint, M_t = g_{t−1};
//! - `ons`: online Newton step (Hazan, Agarwal, Kale 2007) for exp-concave losses, optionally optimistic with the
//!   same hint and the metric built from g_s − M_s.
//!
//! Steps: `adaptive` (convex) is η_t = D / sqrt(δ + Σ‖g_s‖²_*) for OGD/OMD and D / sqrt(δ + Σ_{s<t}‖g_s − M_s‖²_*)
//! for OOMD, the paper's choice as restated by later work (its 4G² term is folded into δ); D is the domain's
//! diameter (2R for the ball, √2 for the simplex) or √(2 ln d) for the entropic map. `strong` is η_t = c/(λt)
//! (c = 1 for OGD/OMD; c = 2 for OOMD, recalled from the paper and unverified). Optimistic OMD's step is also
//! capped at 1/(4L) for L-smooth losses, as its analysis requires (L = 1 + λ for the least-squares losses).

use super::geometry::{Composite, Domain, Geometry, Mirror};
use super::sea::{dot, SeaConfig};
use crate::{Error, Result, Spec};
use std::fmt;

/// Which learner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LearnerKind {
    Ogd,
    Omd,
    Oomd,
    Ons,
}

/// The step-size rule of the first-order learners.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LearnerStep {
    /// η_t = D / sqrt(δ + accumulated squared (gradient or gradient-minus-hint) norms).
    Adaptive { delta: f64 },
    /// η_t = c / (λ t).
    Strong { c: f64 },
}

/// A learner and its settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LearnerConfig {
    pub kind: LearnerKind,
    pub step: LearnerStep,
    /// OMD/OOMD mirror map (None: entropic on the simplex, Euclidean on the ball).
    pub mirror: Option<Mirror>,
    /// ONS: the exp-concavity step γ and the initial metric εI.
    pub gamma: f64,
    pub eps: f64,
    /// ONS: use the last gradient as hint.
    pub optimistic: bool,
}

/// The names of the learners.
pub const LEARNERS: &[&str] = &["ogd", "omd", "oomd", "ons"];

/// The largest dimension ONS takes (it keeps a d × d metric).
pub const ONS_MAX_DIM: usize = 200;

impl LearnerConfig {
    /// From `ogd|omd|oomd|ons[:step=adaptive|strong,delta=..,c=..,mirror=..,gamma=..,eps=..,optimistic=..]`.
    pub fn from_spec(spec: &mut Spec) -> Result<Self> {
        let kind = match spec.name.as_str() {
            "ogd" => LearnerKind::Ogd,
            "omd" => LearnerKind::Omd,
            "oomd" => LearnerKind::Oomd,
            "ons" => LearnerKind::Ons,
            other => return Err(crate::spec::unknown_name("learner", other, LEARNERS)),
        };
        let step = match spec.string("step", "adaptive").as_str() {
            "adaptive" => LearnerStep::Adaptive {
                delta: spec.f64("delta", 1.0)?,
            },
            "strong" => LearnerStep::Strong {
                c: spec.f64("c", if kind == LearnerKind::Oomd { 2.0 } else { 1.0 })?,
            },
            other => {
                return Err(crate::spec::unknown_name(
                    "learner step",
                    other,
                    &["adaptive", "strong"],
                ))
            }
        };
        let mirror = if spec.has("mirror") {
            Some(spec.string("mirror", "euclidean").parse()?)
        } else {
            None
        };
        let cfg = LearnerConfig {
            kind,
            step,
            mirror,
            gamma: spec.f64("gamma", 0.125)?,
            eps: spec.f64("eps", 32.0)?,
            optimistic: spec.bool("optimistic", false)?,
        };
        spec.finish()?;
        match cfg.step {
            LearnerStep::Adaptive { delta } if delta <= 0.0 => {
                return Err(Error::invalid(format!(
                    "{}: delta must be > 0, got {delta}",
                    spec.name
                )))
            }
            LearnerStep::Strong { c } if c <= 0.0 => {
                return Err(Error::invalid(format!(
                    "{}: c must be > 0, got {c}",
                    spec.name
                )))
            }
            _ => {}
        }
        if !(cfg.gamma > 0.0 && cfg.eps > 0.0) {
            return Err(Error::invalid(format!(
                "{}: gamma and eps must be > 0, got gamma={}, eps={}",
                spec.name, cfg.gamma, cfg.eps
            )));
        }
        Ok(cfg)
    }

    /// A learner for the sequence `seq`, checked against it (ONS needs the simplex and a small dimension; the
    /// strong step needs a strongly convex loss; the entropic map needs the simplex).
    pub fn build(&self, seq: &SeaConfig) -> Result<Box<dyn Learner>> {
        let d = seq.dim;
        let domain = if seq.on_simplex() {
            Domain::Simplex
        } else {
            Domain::Ball { radius: seq.radius }
        };
        let mirror = match self.kind {
            LearnerKind::Ogd | LearnerKind::Ons => Mirror::Euclidean,
            _ => self.mirror.unwrap_or(if seq.on_simplex() {
                Mirror::Entropic
            } else {
                Mirror::Euclidean
            }),
        };
        let geometry = Geometry::new(domain, mirror, Composite::None)?;
        let lambda = seq.strong_convexity();
        if let LearnerStep::Strong { .. } = self.step {
            if lambda <= 0.0 {
                return Err(Error::invalid(format!(
                    "{self}: step=strong needs a strongly convex loss (loss=ridge), not {:?}",
                    seq.loss
                )));
            }
        }
        let diameter = match (mirror, domain) {
            (Mirror::Entropic, _) => (2.0 * (d as f64).ln()).sqrt(),
            (_, Domain::Ball { radius }) => 2.0 * radius,
            _ => 2f64.sqrt(),
        };
        let x = geometry.start(d);
        Ok(match self.kind {
            LearnerKind::Ons => {
                if !seq.on_simplex() {
                    return Err(Error::invalid("ons: the online Newton step is built for the exp-concave log loss on the simplex (loss=logloss)"));
                }
                if d > ONS_MAX_DIM {
                    return Err(Error::invalid(format!(
                        "ons keeps a d x d metric: dim must be <= {ONS_MAX_DIM}, got {d}"
                    )));
                }
                Box::new(Ons::new(d, self.gamma, self.eps, self.optimistic))
            }
            kind => Box::new(FirstOrder {
                optimistic: kind == LearnerKind::Oomd,
                geometry,
                step: self.step,
                diameter,
                lambda,
                cap: if kind == LearnerKind::Oomd && !seq.on_simplex() {
                    0.25 / (1.0 + lambda)
                } else {
                    f64::INFINITY
                },
                t: 0,
                acc: 0.0,
                hat: x.clone(),
                x,
                hint: vec![0.0; d],
            }),
        })
    }
}

impl fmt::Display for LearnerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LearnerKind::Ogd => "ogd",
            LearnerKind::Omd => "omd",
            LearnerKind::Oomd => "oomd",
            LearnerKind::Ons => "ons",
        })
    }
}

impl fmt::Display for LearnerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if self.kind == LearnerKind::Ons {
            return write!(
                f,
                ":gamma={},eps={},optimistic={}",
                self.gamma, self.eps, self.optimistic
            );
        }
        match self.step {
            LearnerStep::Adaptive { delta } => write!(f, ":step=adaptive,delta={delta}")?,
            LearnerStep::Strong { c } => write!(f, ":step=strong,c={c}")?,
        }
        if let Some(m) = self.mirror {
            write!(f, ",mirror={m}")?;
        }
        Ok(())
    }
}

/// An online learner: commits to a decision, then sees the gradient of that round's loss at it.
pub trait Learner: Send {
    /// x_t.
    fn decision(&self) -> &[f64];
    /// Takes g_t = ∇f_t(x_t) and moves to x_{t+1}.
    fn update(&mut self, g: &[f64]);
}

/// OGD, OMD and optimistic OMD: one mirror step (two with a hint) per round.
struct FirstOrder {
    optimistic: bool,
    geometry: Geometry,
    step: LearnerStep,
    diameter: f64,
    lambda: f64,
    /// The largest step (1/(4L) for optimistic OMD on smooth losses).
    cap: f64,
    t: u64,
    /// Accumulated squared dual norms (of g, or of g − M for the optimistic learner).
    acc: f64,
    /// x̂_t (the optimistic learner's secondary sequence; equal to x otherwise).
    hat: Vec<f64>,
    x: Vec<f64>,
    hint: Vec<f64>,
}

impl FirstOrder {
    fn dual_norm_sq(&self, v: &[f64]) -> f64 {
        match self.geometry.mirror {
            Mirror::Euclidean => dot(v, v),
            Mirror::Entropic => v.iter().fold(0.0f64, |m, x| m.max(x.abs())).powi(2),
        }
    }

    /// η_t for the coming round (t already counts it).
    fn eta(&self, delta_acc: f64) -> f64 {
        let eta = match self.step {
            LearnerStep::Adaptive { delta } => self.diameter / (delta + delta_acc).sqrt(),
            LearnerStep::Strong { c } => c / (self.lambda * self.t as f64),
        };
        eta.min(self.cap)
    }
}

impl Learner for FirstOrder {
    fn decision(&self) -> &[f64] {
        &self.x
    }

    fn update(&mut self, g: &[f64]) {
        self.t += 1;
        if self.optimistic {
            // η_t uses the deviations up to t − 1; x̂_{t+1} from x̂_t with g_t, then x_{t+1} from x̂_{t+1} with M = g_t.
            let eta = self.eta(self.acc);
            let dev = match self.geometry.mirror {
                Mirror::Euclidean => g
                    .iter()
                    .zip(&self.hint)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum(),
                Mirror::Entropic => g
                    .iter()
                    .zip(&self.hint)
                    .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()))
                    .powi(2),
            };
            self.geometry.step(&mut self.hat, g, eta);
            self.acc += dev;
            self.t += 1;
            let eta_next = self.eta(self.acc);
            self.t -= 1;
            self.hint.copy_from_slice(g);
            self.x.copy_from_slice(&self.hat);
            self.geometry.step(&mut self.x, &self.hint, eta_next);
        } else {
            self.acc += self.dual_norm_sq(g);
            let eta = self.eta(self.acc);
            self.geometry.step(&mut self.x, g, eta);
        }
    }
}

/// The online Newton step on the simplex, with the generalized projection min_{x∈Δ} (x − y)ᵀA(x − y) solved by
/// accelerated projected gradient.
struct Ons {
    gamma: f64,
    optimistic: bool,
    d: usize,
    a: Vec<f64>,
    a_inv: Vec<f64>,
    hat: Vec<f64>,
    x: Vec<f64>,
    hint: Vec<f64>,
}

impl Ons {
    fn new(d: usize, gamma: f64, eps: f64, optimistic: bool) -> Self {
        let mut a = vec![0.0; d * d];
        let mut a_inv = vec![0.0; d * d];
        for i in 0..d {
            a[i * d + i] = eps;
            a_inv[i * d + i] = 1.0 / eps;
        }
        Ons {
            gamma,
            optimistic,
            d,
            a,
            a_inv,
            hat: vec![1.0 / d as f64; d],
            x: vec![1.0 / d as f64; d],
            hint: vec![0.0; d],
        }
    }

    /// A += v vᵀ and A⁻¹ by Sherman–Morrison.
    fn add_outer(&mut self, v: &[f64]) {
        let d = self.d;
        let mut av = vec![0.0; d];
        for i in 0..d {
            for j in 0..d {
                self.a[i * d + j] += v[i] * v[j];
            }
            av[i] = dot(&self.a_inv[i * d..(i + 1) * d], v);
        }
        let den = 1.0 + dot(v, &av);
        for i in 0..d {
            for j in 0..d {
                self.a_inv[i * d + j] -= av[i] * av[j] / den;
            }
        }
    }

    /// from − (1/γ) A⁻¹ v, projected onto the simplex in the A-norm.
    fn newton_step(&self, from: &[f64], v: &[f64]) -> Vec<f64> {
        let d = self.d;
        let y: Vec<f64> = (0..d)
            .map(|i| from[i] - dot(&self.a_inv[i * d..(i + 1) * d], v) / self.gamma)
            .collect();
        project_a_norm(&self.a, &y, d)
    }
}

impl Learner for Ons {
    fn decision(&self) -> &[f64] {
        &self.x
    }

    fn update(&mut self, g: &[f64]) {
        if self.optimistic {
            let dev: Vec<f64> = g.iter().zip(&self.hint).map(|(a, b)| a - b).collect();
            self.add_outer(&dev);
            self.hat = self.newton_step(&self.hat.clone(), g);
            self.hint.copy_from_slice(g);
            self.x = self.newton_step(&self.hat.clone(), &self.hint.clone());
        } else {
            self.add_outer(g);
            self.x = self.newton_step(&self.x.clone(), g);
        }
    }
}

/// argmin_{x∈Δ} ½(x − y)ᵀA(x − y) by FISTA with step 1/λ_max(A) (power iteration), to a 1e-13 step.
fn project_a_norm(a: &[f64], y: &[f64], d: usize) -> Vec<f64> {
    let matvec =
        |v: &[f64]| -> Vec<f64> { (0..d).map(|i| dot(&a[i * d..(i + 1) * d], v)).collect() };
    let mut v = vec![1.0; d];
    let mut lmax = 0.0;
    for _ in 0..50 {
        let w = matvec(&v);
        let n = dot(&w, &w).sqrt();
        if n == 0.0 {
            break;
        }
        lmax = n / dot(&v, &v).sqrt();
        v = w.iter().map(|x| x / n).collect();
    }
    let l = 1.05 * lmax.max(1e-300);
    let mut x = y.to_vec();
    super::geometry::project_simplex(&mut x);
    let mut z = x.clone();
    let mut tk = 1.0f64;
    for _ in 0..5000 {
        let diff: Vec<f64> = z.iter().zip(y).map(|(a, b)| a - b).collect();
        let grad = matvec(&diff);
        let mut next: Vec<f64> = z.iter().zip(&grad).map(|(a, g)| a - g / l).collect();
        super::geometry::project_simplex(&mut next);
        let t_next = 0.5 * (1.0 + (1.0 + 4.0 * tk * tk).sqrt());
        let moved: f64 = next
            .iter()
            .zip(&x)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        z = next
            .iter()
            .zip(&x)
            .map(|(n, o)| n + (tk - 1.0) / t_next * (n - o))
            .collect();
        x = next;
        tk = t_next;
        if moved < 1e-13 {
            break;
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learner(s: &str, seq: &SeaConfig) -> Box<dyn Learner> {
        LearnerConfig::from_spec(&mut Spec::parse(s).unwrap())
            .unwrap()
            .build(seq)
            .unwrap()
    }

    /// With a constant gradient the optimistic learner's hint is exact after one round: its decisions move two
    /// steps per round ahead of OGD's along the same direction until the ball stops them.
    #[test]
    fn optimistic_omd_uses_the_hint() {
        let seq = SeaConfig {
            dim: 2,
            radius: 10.0,
            ..Default::default()
        };
        let g = [1.0, 0.0];
        // η_1 = min(20/√1, 1/4) for x̂_2 = −η_1 e1; η_2 = min(20/√(1+1), 1/4) for x_2 = x̂_2 − η_2 g.
        let mut o = learner("oomd", &seq);
        o.update(&g);
        assert!((o.decision()[0] + 0.5).abs() < 1e-12, "{:?}", o.decision());
        let mut o = learner("oomd:delta=1e6", &seq);
        o.update(&g);
        let eta1 = 20.0 / 1e6f64.sqrt();
        let eta2 = 20.0 / (1e6f64 + 1.0).sqrt();
        assert!(
            (o.decision()[0] + eta1 + eta2).abs() < 1e-12,
            "{:?}",
            o.decision()
        );
        let mut p = learner("ogd:delta=1e6", &seq);
        p.update(&g);
        assert!((p.decision()[0] + 20.0 / (1e6f64 + 1.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn a_norm_projection_is_optimal() {
        let d = 4;
        let mut rng = crate::rng::rng_for(4, crate::rng::Stream::Probe, 0);
        let b: Vec<f64> = (0..d * d).map(|_| crate::rng::normal(&mut rng)).collect();
        let mut a = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                a[i * d + j] = (0..d).map(|k| b[i * d + k] * b[j * d + k]).sum::<f64>()
                    + if i == j { 0.1 } else { 0.0 };
            }
        }
        let y = [0.9, -0.4, 0.8, 0.1];
        let x = project_a_norm(&a, &y, d);
        let q = |x: &[f64]| -> f64 {
            let diff: Vec<f64> = x.iter().zip(&y).map(|(a, b)| a - b).collect();
            (0..d)
                .map(|i| diff[i] * dot(&a[i * d..(i + 1) * d], &diff))
                .sum::<f64>()
        };
        for _ in 0..3000 {
            let mut z: Vec<f64> = x
                .iter()
                .map(|v| v + 0.1 * crate::rng::normal(&mut rng))
                .collect();
            super::super::geometry::project_simplex(&mut z);
            assert!(q(&z) >= q(&x) - 1e-10);
        }
    }

    #[test]
    fn mismatched_learners_are_refused() {
        let ball = SeaConfig::default();
        let spec = |s: &str| LearnerConfig::from_spec(&mut Spec::parse(s).unwrap());
        assert!(spec("ons").unwrap().build(&ball).is_err());
        assert!(spec("ogd:step=strong").unwrap().build(&ball).is_err());
        assert!(spec("omd:mirror=entropic").unwrap().build(&ball).is_err());
        assert!(spec("adam").is_err());
        assert!(spec("ogd:delta=0").is_err());
    }
}
