//! Named, validated hyperparameters. Every optimizer keeps its hyperparameters here, so schedules can read and
//! set any of them by name (`lr`, `beta1`, `weight_decay`, ...) and saved state records them all.

use crate::{Error, Result, Spec};

/// What values a hyperparameter accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// x >= 0.
    NonNegative,
    /// x > 0.
    Positive,
    /// 0 <= x < 1 (betas, momenta).
    Beta,
    /// 0 <= x <= 1.
    Unit,
    /// 0 or 1, written `true`/`false` in specs.
    Bool,
    /// Any finite value.
    Any,
}

impl Range {
    fn check(self, x: f64) -> bool {
        x.is_finite()
            && match self {
                Range::NonNegative => x >= 0.0,
                Range::Positive => x > 0.0,
                Range::Beta => (0.0..1.0).contains(&x),
                Range::Unit => (0.0..=1.0).contains(&x),
                Range::Bool => x == 0.0 || x == 1.0,
                Range::Any => true,
            }
    }

    fn describe(self) -> &'static str {
        match self {
            Range::NonNegative => ">= 0",
            Range::Positive => "> 0",
            Range::Beta => "in [0, 1)",
            Range::Unit => "in [0, 1]",
            Range::Bool => "true or false",
            Range::Any => "finite",
        }
    }
}

/// A hyperparameter's name (the reference implementation's argument name), default and range.
#[derive(Debug, Clone, Copy)]
pub struct HyperDef {
    pub name: &'static str,
    pub default: f64,
    pub range: Range,
}

/// Shorthand for a [`HyperDef`].
pub const fn def(name: &'static str, default: f64, range: Range) -> HyperDef {
    HyperDef {
        name,
        default,
        range,
    }
}

/// The hyperparameter values of one optimizer (or of one parameter group). Each value has a base, set by the
/// user, and a current value, which a schedule may set to base × factor ([`Hypers::apply_factor`]).
#[derive(Debug, Clone)]
pub struct Hypers {
    owner: &'static str,
    defs: &'static [HyperDef],
    base: Vec<f64>,
    values: Vec<f64>,
}

impl Hypers {
    /// Reads every defined key from `spec` (defaults for the absent ones) and refuses unknown keys.
    pub fn from_spec(
        owner: &'static str,
        defs: &'static [HyperDef],
        spec: &mut Spec,
    ) -> Result<Self> {
        let values: Vec<f64> = defs.iter().map(|d| d.default).collect();
        let mut h = Hypers {
            owner,
            defs,
            base: values.clone(),
            values,
        };
        for (i, d) in defs.iter().enumerate() {
            let v = if d.range == Range::Bool {
                if spec.bool(d.name, d.default != 0.0)? {
                    1.0
                } else {
                    0.0
                }
            } else {
                spec.f64(d.name, d.default)?
            };
            h.set_index(i, v)?;
        }
        spec.finish()?;
        Ok(h)
    }

    fn index(&self, key: &str) -> Result<usize> {
        self.defs.iter().position(|d| d.name == key).ok_or_else(|| {
            Error::invalid(format!(
                "{} has no hyperparameter '{key}'; it has: {}",
                self.owner,
                self.defs
                    .iter()
                    .map(|d| d.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }

    fn set_index(&mut self, i: usize, v: f64) -> Result<()> {
        let d = self.defs[i];
        if !d.range.check(v) {
            return Err(Error::invalid(format!(
                "{}: {}={v} is invalid; it must be {}",
                self.owner,
                d.name,
                d.range.describe()
            )));
        }
        self.values[i] = v;
        self.base[i] = v;
        Ok(())
    }

    /// Sets the current value of `key` to its base value times `factor` (a schedule's multiplier); the base
    /// is kept.
    pub fn apply_factor(&mut self, key: &str, factor: f64) -> Result<()> {
        let i = self.index(key)?;
        let v = self.base[i] * factor;
        if !self.defs[i].range.check(v) {
            return Err(Error::invalid(format!(
                "{}: scheduled {key}={v} (base {} x factor {factor}) is invalid; it must be {}",
                self.owner,
                self.base[i],
                self.defs[i].range.describe()
            )));
        }
        self.values[i] = v;
        Ok(())
    }

    /// The base value of `key` (what the user set, before any schedule factor).
    pub fn base(&self, key: &str) -> Result<f64> {
        Ok(self.base[self.index(key)?])
    }

    /// The optimizer name these hyperparameters belong to.
    pub fn owner(&self) -> &'static str {
        self.owner
    }

    /// Applies `key=value` overrides from a spec (a parameter group's settings); unknown keys are errors.
    pub fn with_overrides(&self, spec: &mut Spec) -> Result<Hypers> {
        let mut h = self.clone();
        for (i, d) in self.defs.iter().enumerate() {
            if !spec.has(d.name) {
                spec.f64(d.name, 0.0)?; // records the key as valid for the error message
                continue;
            }
            let v = if d.range == Range::Bool {
                if spec.bool(d.name, false)? {
                    1.0
                } else {
                    0.0
                }
            } else {
                spec.f64(d.name, 0.0)?
            };
            h.set_index(i, v)?;
        }
        spec.finish()?;
        Ok(h)
    }

    /// The value of `key`; unknown keys are a programming error inside an optimizer.
    pub fn get(&self, key: &str) -> f64 {
        self.values[self
            .index(key)
            .expect("optimizer reads its own hyperparameter")]
    }

    /// A boolean hyperparameter.
    pub fn flag(&self, key: &str) -> bool {
        self.get(key) != 0.0
    }

    /// The value of `key`, or an error naming the valid keys.
    pub fn try_get(&self, key: &str) -> Result<f64> {
        Ok(self.values[self.index(key)?])
    }

    /// Sets `key` after validating the value.
    pub fn set(&mut self, key: &str, v: f64) -> Result<()> {
        let i = self.index(key)?;
        self.set_index(i, v)
    }

    /// All (name, value) pairs in definition order.
    pub fn all(&self) -> Vec<(&'static str, f64)> {
        self.defs
            .iter()
            .map(|d| d.name)
            .zip(self.values.iter().copied())
            .collect()
    }

    /// All (name, base value) pairs in definition order.
    pub fn all_base(&self) -> Vec<(&'static str, f64)> {
        self.defs
            .iter()
            .map(|d| d.name)
            .zip(self.base.iter().copied())
            .collect()
    }

    /// The canonical spec string with every base value, e.g. `sgd:lr=0.1,momentum=0.9,...`.
    pub fn to_spec(&self) -> String {
        let kv: Vec<String> = self
            .defs
            .iter()
            .zip(&self.base)
            .map(|(d, v)| match d.range {
                Range::Bool => format!("{}={}", d.name, *v != 0.0),
                _ => format!("{}={}", d.name, fmt_number(*v)),
            })
            .collect();
        format!("{}:{}", self.owner, kv.join(","))
    }
}

/// Shortest readable text that parses back to the same f64: `0.9`, `0.001`, `1e-8`.
pub fn fmt_number(v: f64) -> String {
    if v == 0.0 || (1e-4..1e6).contains(&v.abs()) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFS: &[HyperDef] = &[
        def("lr", 1e-3, Range::NonNegative),
        def("beta1", 0.9, Range::Beta),
        def("nesterov", 0.0, Range::Bool),
    ];

    #[test]
    fn validates_and_round_trips() {
        let mut s = Spec::parse("x:lr=0.5,nesterov=true").unwrap();
        let mut h = Hypers::from_spec("x", DEFS, &mut s).unwrap();
        assert_eq!(h.get("lr"), 0.5);
        assert!(h.flag("nesterov"));
        h.set("beta1", 0.5).unwrap();
        let e = h.set("beta1", 1.0).unwrap_err().to_string();
        assert!(e.contains("beta1=1") && e.contains("[0, 1)"), "{e}");
        let e = h.set("beta3", 1.0).unwrap_err().to_string();
        assert!(e.contains("it has: lr, beta1, nesterov"), "{e}");
        let mut s2 = Spec::parse(&h.to_spec()).unwrap();
        let h2 = Hypers::from_spec("x", DEFS, &mut s2).unwrap();
        assert_eq!(h.all(), h2.all());
        assert_eq!(h.to_spec(), "x:lr=0.5,beta1=0.5,nesterov=true");
        assert_eq!(fmt_number(1e-8), "1e-8");
        assert_eq!(fmt_number(0.001), "0.001");
        let mut s = Spec::parse("x:lr=-1").unwrap();
        assert!(Hypers::from_spec("x", DEFS, &mut s)
            .unwrap_err()
            .to_string()
            .contains("lr=-1"));
    }
}
