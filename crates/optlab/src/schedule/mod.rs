//! Hyperparameter schedules: a schedule maps the step (0-based) of a run of `total` steps to a factor that
//! multiplies the base value of a hyperparameter (usually the learning rate).
//!
//! Spec strings: `constant`, `cosine:warmup=100,min_factor=0`, `linear:warmup=100,end_factor=0`,
//! `step:step_size=1000,gamma=0.1` (PyTorch's StepLR), `exponential:gamma=0.999`,
//! `polynomial:power=2,end_factor=0`, `wsd:warmup=500,decay_frac=0.2,end_factor=0` (warmup-stable-decay: constant
//! until the last `decay_frac` of the run, then linear to `end_factor`). Warmup is
//! linear from `1/warmup` at step 0 to 1 at step `warmup - 1` (no step is wasted at factor 0); the decay then
//! runs over the remaining steps, reaching its end value at the last step.
//!
//! Composition (optax's `join_schedules`): `seq:SPEC@LEN;SPEC*SCALE@LEN;SPEC` runs the segments one after the
//! other, each over its own `LEN` steps (or `N%` of the run; the last segment takes the rest) and counting its
//! steps from 0, its factors multiplied by `SCALE` (default 1). E.g. `seq:linear:warmup=100@10%;cosine*0.5`.
//! `step` and `exponential` accept `gamma > 1` for growing hyperparameters (e.g. a batch-size ramp).
//!
//! ```
//! let s = optlab::schedule::from_spec("cosine:warmup=10", 110).unwrap();
//! assert_eq!(s.factor(9), 1.0);
//! assert!((s.factor(109) - 0.0).abs() < 1e-12);
//! ```

mod spec;
mod table;

pub use spec::{Decay, ScheduleSpec, Segment, SegmentLen};
pub use table::TabulatedSchedule;

use crate::Result;

/// A multiplier per step.
pub trait Schedule: Send + Sync + std::fmt::Debug {
    /// The factor at `step` (0-based).
    fn factor(&self, step: u64) -> f64;
    /// The canonical spec string.
    fn spec(&self) -> String;
}

/// The schedule names [`from_spec`] knows.
pub const SCHEDULE_NAMES: &[&str] = &[
    "constant",
    "cosine",
    "linear",
    "step",
    "exponential",
    "polynomial",
    "wsd",
];

/// Linear warmup followed by a decay.
#[derive(Debug, Clone, PartialEq)]
pub struct WarmupDecay {
    pub(crate) warmup: u64,
    pub(crate) total: u64,
    pub(crate) decay: Decay,
}

impl Schedule for WarmupDecay {
    fn factor(&self, step: u64) -> f64 {
        if step < self.warmup {
            return (step + 1) as f64 / self.warmup as f64;
        }
        let span = self
            .total
            .saturating_sub(self.warmup)
            .saturating_sub(1)
            .max(1);
        let progress = ((step - self.warmup) as f64 / span as f64).min(1.0);
        match self.decay {
            Decay::Constant => 1.0,
            Decay::Cosine { min_factor } => {
                min_factor
                    + (1.0 - min_factor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
            Decay::Linear { end_factor } => 1.0 - (1.0 - end_factor) * progress,
            Decay::Step { step_size, gamma } => {
                gamma.powi(((step - self.warmup) / step_size) as i32)
            }
            Decay::Exponential { gamma } => gamma.powf((step - self.warmup) as f64),
            Decay::Polynomial { power, end_factor } => {
                end_factor + (1.0 - end_factor) * (1.0 - progress).powf(power)
            }
            Decay::Wsd {
                decay_frac,
                end_factor,
            } => {
                let decay_steps = ((self.total as f64) * decay_frac).round() as u64;
                let start = self.total.saturating_sub(decay_steps).max(self.warmup);
                if step < start || decay_steps == 0 {
                    1.0
                } else {
                    let span = (self.total - start).saturating_sub(1).max(1);
                    let p = ((step - start) as f64 / span as f64).min(1.0);
                    1.0 - (1.0 - end_factor) * p
                }
            }
        }
    }

    fn spec(&self) -> String {
        ScheduleSpec::Decay {
            warmup: self.warmup,
            decay: self.decay,
        }
        .to_string()
    }
}

/// Segments run one after the other (see the module docs).
#[derive(Debug)]
pub struct Sequence {
    /// (first step, schedule over the segment's steps, scale).
    pub(crate) segments: Vec<(u64, Box<dyn Schedule>, f64)>,
    pub(crate) spec: String,
}

impl Schedule for Sequence {
    fn factor(&self, step: u64) -> f64 {
        let i = self
            .segments
            .iter()
            .rposition(|(start, _, _)| *start <= step)
            .unwrap_or(0);
        let (start, s, scale) = &self.segments[i];
        scale * s.factor(step - start)
    }

    fn spec(&self) -> String {
        self.spec.clone()
    }
}

/// Builds a schedule for a run of `total` steps from its spec string (see the module docs).
pub fn from_spec(spec: &str, total: u64) -> Result<Box<dyn Schedule>> {
    spec.parse::<ScheduleSpec>()?.build(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let c = from_spec("constant", 10).unwrap();
        assert!((0..10).all(|t| c.factor(t) == 1.0));
        let w = from_spec("constant:warmup=4", 10).unwrap();
        assert_eq!(
            [w.factor(0), w.factor(1), w.factor(3), w.factor(4)],
            [0.25, 0.5, 1.0, 1.0]
        );
        let cos = from_spec("cosine:min_factor=0.1", 101).unwrap();
        assert_eq!(cos.factor(0), 1.0);
        assert!((cos.factor(50) - 0.55).abs() < 1e-12);
        assert!((cos.factor(100) - 0.1).abs() < 1e-12);
        let lin = from_spec("linear:warmup=10", 111).unwrap();
        assert!((lin.factor(60) - 0.5).abs() < 1e-12);
        assert!(lin.factor(110).abs() < 1e-12);
        assert!((0..110).all(|t| lin.factor(t + 1) <= lin.factor(t) || t < 10));
    }

    #[test]
    fn step_exponential_polynomial_wsd() {
        let st = from_spec("step:step_size=10,gamma=0.5", 100).unwrap();
        assert_eq!(
            [st.factor(0), st.factor(9), st.factor(10), st.factor(25)],
            [1.0, 1.0, 0.5, 0.25]
        );
        let ex = from_spec("exponential:gamma=0.9", 100).unwrap();
        assert!((ex.factor(2) - 0.81).abs() < 1e-15);
        let po = from_spec("polynomial:power=2", 101).unwrap();
        assert!((po.factor(50) - 0.25).abs() < 1e-12 && po.factor(100).abs() < 1e-12);
        // 1000 steps, 100 warmup, the last 20% (200 steps) decaying linearly to 0.
        let w = from_spec("wsd:warmup=100,decay_frac=0.2", 1000).unwrap();
        assert_eq!(
            [w.factor(99), w.factor(500), w.factor(799)],
            [1.0, 1.0, 1.0]
        );
        assert!(
            w.factor(800) == 1.0
                && (w.factor(899) - 0.5).abs() < 0.01
                && w.factor(999).abs() < 1e-12
        );
        assert!(from_spec("step:step_size=0", 10).is_err());
        assert!(from_spec("exponential:gamma=0", 10).is_err());
        assert_eq!(
            from_spec("step:step_size=2,gamma=2", 10).unwrap().factor(5),
            4.0
        );
        assert!(from_spec("wsd:decay_frac=2", 10).is_err());
        let spec = w.spec();
        assert_eq!(from_spec(&spec, 1000).unwrap().spec(), spec);
    }

    #[test]
    fn sequences() {
        // constant for 80%, then linear decay: the same factors as WSD with decay_frac 0.2.
        let seq = from_spec("seq:constant@80%;linear", 1000).unwrap();
        let wsd = from_spec("wsd:decay_frac=0.2", 1000).unwrap();
        assert!((0..1000).all(|t| (seq.factor(t) - wsd.factor(t)).abs() < 1e-12));
        // Each segment counts its own steps; a scale multiplies it.
        let s = from_spec(
            "seq:linear:warmup=10,end_factor=0.5@20;constant*0.5@30;cosine*0.5",
            100,
        )
        .unwrap();
        assert_eq!([s.factor(0), s.factor(9)], [0.1, 1.0]);
        assert!((s.factor(19) - 0.5).abs() < 1e-12);
        assert_eq!([s.factor(20), s.factor(49), s.factor(50)], [0.5, 0.5, 0.5]);
        assert!(s.factor(99).abs() < 1e-12);
        assert_eq!(from_spec(&s.spec(), 100).unwrap().spec(), s.spec());
        for (bad, needle) in [
            ("seq:constant;linear", "needs a length"),
            ("seq:constant@200;linear", "ends at step 200"),
            ("seq:constant@x;linear", "not a whole number"),
            ("seq:constant@0;linear", "no steps"),
            ("seq:constant*-1@5;linear", "scale"),
            ("seq:constant@5;;linear", "empty segment"),
            ("seq:constant@5;seq:linear", "plain schedules"),
            ("seq:constant@5;cosin", "available"),
        ] {
            let e = from_spec(bad, 100).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn errors() {
        assert!(from_spec("cosin", 10)
            .unwrap_err()
            .to_string()
            .contains("available: constant, cosine, linear"));
        assert!(from_spec("cosine:min_factor=2", 10).is_err());
        assert!(from_spec("linear:warmup=20", 10).is_err());
        assert!(from_spec("cosine:warm=2", 10)
            .unwrap_err()
            .to_string()
            .contains("'warm'"));
    }
}
