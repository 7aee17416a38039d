//! Composite stochastic mirror descent with the Euclidean mirror map (P06, Liu & Zhou) as a training optimizer:
//! projected / proximal SGD, p ← Π_X(prox_{η_t h}(p − η_t g)) for every parameter tensor, with P06's step rules
//! ([`crate::online::steps`]: `const`, `sqrt_t`, `sqrt_T`, `linear`, `strong`), the composite term
//! h = l1‖p‖₁ + l2/2‖p‖² and the domain X a box [−bound, bound] per coordinate and/or a ball of radius `radius` per
//! tensor (0 turns either off). The same step as [`crate::online::geometry::Geometry::step`], fused in place.
//!
//! ```
//! let opt = optlab::optim::from_spec("csmd:lr=0.5,rule=sqrt_t,l1=1e-4,radius=10").unwrap();
//! assert_eq!(opt.hyperparam("radius").unwrap(), 10.0);
//! ```

use super::hyper::{hyperparams, parse};
use super::kernel::{sum_squares, with_slice, Kernel, Real};
use super::{owned_names, update_each, HyperGroups, Optimizer, OptimizerState};
use crate::nn::Param;
use crate::online::steps::{StepRule, StepShape};
use crate::{Error, Result, Spec};
use candle_core::backprop::GradStore;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// The step-size rule by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsmdRule {
    Const,
    SqrtT,
    Sqrtt,
    Linear,
    Strong,
}

impl FromStr for CsmdRule {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "const" => CsmdRule::Const,
            "sqrt_T" => CsmdRule::SqrtT,
            "sqrt_t" => CsmdRule::Sqrtt,
            "linear" => CsmdRule::Linear,
            "strong" => CsmdRule::Strong,
            other => {
                return Err(crate::spec::unknown_name(
                    "csmd rule",
                    other,
                    StepRule::NAMES,
                ))
            }
        })
    }
}

impl fmt::Display for CsmdRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CsmdRule::Const => "const",
            CsmdRule::SqrtT => "sqrt_T",
            CsmdRule::Sqrtt => "sqrt_t",
            CsmdRule::Linear => "linear",
            CsmdRule::Strong => "strong",
        })
    }
}

hyperparams! {
    /// CSMD's hyperparameters (P06).
    pub struct CsmdConfig {
        /// The base step η of the rule.
        lr: f64 = 1e-2, NonNegative;
        /// Strong-convexity modulus μ (rule=strong: η_t = lr/(μ t)).
        mu: f64 = 0.0, NonNegative;
        /// Noise moment p ∈ (1, 2] of the sqrt rules (η/t^{1/p}).
        p: f64 = 2.0, Positive;
        /// The horizon T of the rules that need it (sqrt_T, linear).
        horizon: f64 = 0.0, Count;
        /// L1 weight of the composite term.
        l1: f64 = 0.0, NonNegative;
        /// L2² weight of the composite term (λ/2‖p‖²).
        l2: f64 = 0.0, NonNegative;
        /// Box bound: every coordinate in [−bound, bound] (0: none).
        bound: f64 = 0.0, NonNegative;
        /// Ball radius of every tensor (0: none).
        radius: f64 = 0.0, NonNegative;
    }
    options {
        /// The step rule: const, sqrt_t, sqrt_T, linear or strong.
        rule: CsmdRule = CsmdRule::Const;
    }
    relations = csmd_relations;
}

fn csmd_relations(c: &CsmdConfig, owner: &str) -> Result<()> {
    c.step_rule()
        .map(|_| ())
        .map_err(|e| Error::invalid(format!("{owner}: {e}")))
}

impl CsmdConfig {
    /// The typed step rule (checks μ, p and the horizon against the rule).
    pub fn step_rule(&self) -> Result<StepRule> {
        let shape = match self.rule {
            CsmdRule::Const => StepShape::Const,
            CsmdRule::SqrtT | CsmdRule::Linear if self.horizon < 1.0 => {
                return Err(Error::invalid(format!(
                    "rule={} needs horizon=T (the number of steps)",
                    self.rule
                )))
            }
            CsmdRule::SqrtT => StepShape::Horizon { p: self.p },
            CsmdRule::Linear => StepShape::Linear,
            CsmdRule::Sqrtt => StepShape::Anytime { p: self.p },
            CsmdRule::Strong => StepShape::Strong { mu: self.mu },
        };
        // lr = 0 freezes the parameters; the rule itself is checked with a positive stand-in.
        StepRule::new(shape, if self.lr > 0.0 { self.lr } else { 1.0 }, 0.0).map(|mut r| {
            r.eta = self.lr;
            r
        })
    }
}

/// CSMD (Euclidean): projected / proximal SGD with P06's step rules.
#[derive(Debug, Clone)]
pub struct Csmd {
    h: HyperGroups<CsmdConfig>,
    state: OptimizerState,
}

impl Csmd {
    /// CSMD with `config` (every value checked).
    pub fn new(config: CsmdConfig) -> Result<Self> {
        Ok(Csmd {
            h: HyperGroups::new("csmd", config)?,
            state: OptimizerState::new("csmd"),
        })
    }

    /// From a spec `csmd:lr=..,rule=..,mu=..,p=..,horizon=..,l1=..,l2=..,bound=..,radius=..`.
    pub fn from_spec(s: &mut Spec) -> Result<Self> {
        Self::new(parse("csmd", CsmdConfig::default(), s)?)
    }
}

/// The gradient step, the proximal map and the box, elementwise.
struct ProxStep {
    eta: f64,
    l1: f64,
    l2: f64,
    bound: f64,
}

impl Kernel for ProxStep {
    #[inline(always)]
    fn run<T: Real>(&self, p: &mut [T], g: &[T], _s: &mut [&mut [T]]) {
        let eta = T::of(self.eta);
        let thr = T::of(self.eta * self.l1);
        let shrink = T::of(1.0 / (1.0 + self.eta * self.l2));
        let (bound, zero) = (T::of(self.bound), T::of(0.0));
        for (pi, &gi) in p.iter_mut().zip(g) {
            let mut v = *pi - eta * gi;
            if self.l1 > 0.0 {
                let a = if v < zero { zero - v } else { v };
                let m = if a > thr { a - thr } else { zero };
                v = if v < zero { zero - m } else { m };
            }
            v = v * shrink;
            if self.bound > 0.0 {
                v = if v > bound {
                    bound
                } else if v < zero - bound {
                    zero - bound
                } else {
                    v
                };
            }
            *pi = v;
        }
    }
}

/// Scales a tensor by a factor (the ball projection).
struct Scale(f64);

impl Kernel for Scale {
    #[inline(always)]
    fn run<T: Real>(&self, p: &mut [T], _g: &[T], _s: &mut [&mut [T]]) {
        let c = T::of(self.0);
        p.iter_mut().for_each(|v| *v = *v * c);
    }
}

impl Optimizer for Csmd {
    optimizer_accessors!(fresh);

    fn buffer_names(&self) -> Vec<String> {
        owned_names(&[])
    }

    fn step(&mut self, params: &[Param], grads: &GradStore) -> Result<()> {
        self.state.step += 1;
        let t = self.state.step;
        update_each(&mut self.state, &self.h, 0, params, grads, |_, h, _| {
            let rule = h.step_rule().expect("checked when set");
            ProxStep {
                eta: rule.eta(t, h.horizon as u64),
                l1: h.l1,
                l2: h.l2,
                bound: h.bound,
            }
        })?;
        // The ball, per tensor: p ← p · min(1, radius/‖p‖).
        let mut scales = HashMap::new();
        for p in params.iter().filter(|p| grads.get(p.tensor()).is_some()) {
            let radius = self.h.for_param(p).radius;
            if radius > 0.0 {
                let norm = with_slice(p.tensor(), sum_squares)?.sqrt();
                if norm > radius {
                    scales.insert(p.name.clone(), radius / norm);
                }
            }
        }
        if !scales.is_empty() {
            update_each(&mut self.state, &self.h, 0, params, grads, |p, _, _| {
                Scale(scales.get(&p.name).copied().unwrap_or(1.0))
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::online::geometry::{Composite, Domain, Geometry, Mirror};
    use crate::optim::from_spec;
    use candle_core::{Device, Tensor, Var};

    /// Two steps on a quadratic equal the online module's reference step (same rule, same geometry).
    #[test]
    fn matches_the_geometry_step() {
        let x0 = [3.0f64, -0.5, 0.05, 2.0];
        let v = Var::new(&x0, &Device::Cpu).unwrap();
        let params = [crate::nn::Param {
            name: "w".into(),
            var: v.clone(),
        }];
        let mut opt = from_spec("csmd:lr=0.4,rule=sqrt_t,l1=0.1,radius=2").unwrap();
        let geo = Geometry::new(
            Domain::Ball { radius: 2.0 },
            Mirror::Euclidean,
            Composite::L1(0.1),
        )
        .unwrap();
        let mut x = x0.to_vec();
        let target = Tensor::new(&[1.0f64, 1.0, -1.0, 0.0], &Device::Cpu).unwrap();
        for t in 1..=2u64 {
            // loss = ½‖w − target‖²: g = w − target.
            let loss = v
                .sub(&target)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .affine(0.5, 0.0)
                .unwrap();
            let g: Vec<f64> = x
                .iter()
                .zip([1.0, 1.0, -1.0, 0.0])
                .map(|(a, b)| a - b)
                .collect();
            opt.step(&params, &loss.backward().unwrap()).unwrap();
            geo.step(&mut x, &g, 0.4 / (t as f64).sqrt());
            let got: Vec<f64> = v.to_vec1().unwrap();
            for (a, b) in got.iter().zip(&x) {
                assert!((a - b).abs() < 1e-14, "step {t}: {got:?} vs {x:?}");
            }
        }
    }

    #[test]
    fn rules_that_need_a_horizon_ask_for_it() {
        let e = from_spec("csmd:rule=sqrt_T").unwrap_err();
        assert!(e.to_string().contains("horizon"), "{e}");
        assert!(from_spec("csmd:rule=strong").is_err());
        assert!(from_spec("csmd:rule=strong,mu=0.1").is_ok());
        assert!(from_spec("csmd:rule=cosine").is_err());
    }
}
