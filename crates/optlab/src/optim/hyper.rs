//! Typed, validated hyperparameters. Each optimizer has a config struct (`SgdConfig`, `LionConfig`, ...) made
//! by the `hyperparams!` macro: plain fields with the reference implementation's names and defaults, each with the
//! [`Range`] of values it accepts. Optimizers read the fields directly; schedules, parameter groups and saved
//! state reach the same values by name through [`HyperTable`](super::HyperTable), where an unknown name is an
//! error listing the valid ones.

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
    /// `true`/`false` (0 or 1 by name).
    Bool,
    /// Any finite value.
    Any,
    /// A whole number >= 0.
    Count,
    /// A whole number >= 1.
    PositiveCount,
}

impl Range {
    /// Whether `x` is acceptable.
    pub fn check(self, x: f64) -> bool {
        let whole = x.fract() == 0.0 && x <= u64::MAX as f64;
        x.is_finite()
            && match self {
                Range::NonNegative => x >= 0.0,
                Range::Positive => x > 0.0,
                Range::Beta => (0.0..1.0).contains(&x),
                Range::Unit => (0.0..=1.0).contains(&x),
                Range::Bool => x == 0.0 || x == 1.0,
                Range::Any => true,
                Range::Count => whole && x >= 0.0,
                Range::PositiveCount => whole && x >= 1.0,
            }
    }

    /// The accepted values in words.
    pub fn describe(self) -> &'static str {
        match self {
            Range::NonNegative => ">= 0",
            Range::Positive => "> 0",
            Range::Beta => "in [0, 1)",
            Range::Unit => "in [0, 1]",
            Range::Bool => "true or false",
            Range::Any => "finite",
            Range::Count => "a whole number >= 0",
            Range::PositiveCount => "a whole number >= 1",
        }
    }
}

/// A hyperparameter's name (the reference implementation's argument name) and range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HyperDef {
    pub name: &'static str,
    pub range: Range,
}

/// The value types a hyperparameter field may have; by name every value is an f64 (booleans 0/1).
pub trait HyperValue: Copy {
    fn to_f64(self) -> f64;
    /// The field value of a number already checked against its [`Range`].
    fn from_f64(v: f64) -> Self;
}

impl HyperValue for f64 {
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(v: f64) -> Self {
        v
    }
}

impl HyperValue for bool {
    fn to_f64(self) -> f64 {
        if self {
            1.0
        } else {
            0.0
        }
    }
    fn from_f64(v: f64) -> Self {
        v != 0.0
    }
}

impl HyperValue for u64 {
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(v: f64) -> Self {
        v as u64
    }
}

impl HyperValue for usize {
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(v: f64) -> Self {
        v as usize
    }
}

/// A typed hyperparameter set (made by the `hyperparams!` macro). Values are reached by name as f64 for schedules and
/// saved state; non-numeric options (Lion's `mode`) are read from and written to spec strings only.
pub trait HyperSet: Clone + std::fmt::Debug + PartialEq + Send + Sync + 'static {
    /// Names and ranges of the numeric hyperparameters, in spec order.
    const DEFS: &'static [HyperDef];
    /// The value of `key` as f64, `None` for an unknown name.
    fn value(&self, key: &str) -> Option<f64>;
    /// Stores `v` (already range-checked) in `key`; false for an unknown name.
    fn assign(&mut self, key: &str, v: f64) -> bool;
    /// Constraints between values beyond each one's range (Nesterov needs momentum).
    fn check_relations(&self, _owner: &str) -> Result<()> {
        Ok(())
    }
    /// Reads the non-numeric options from a spec.
    fn read_options(&mut self, _spec: &mut Spec) -> Result<()> {
        Ok(())
    }
    /// The non-numeric options as `key=value`.
    fn write_options(&self) -> Vec<String> {
        Vec::new()
    }
}

/// `{owner} has no hyperparameter '{key}'; it has: ...`.
pub fn unknown_key(owner: &str, defs: &[HyperDef], key: &str) -> Error {
    Error::invalid(format!(
        "{owner} has no hyperparameter '{key}'; it has: {}",
        defs.iter().map(|d| d.name).collect::<Vec<_>>().join(", ")
    ))
}

/// The definition of `key` in `C`, or an error naming the valid keys.
pub fn def_of<C: HyperSet>(owner: &str, key: &str) -> Result<HyperDef> {
    C::DEFS
        .iter()
        .find(|d| d.name == key)
        .copied()
        .ok_or_else(|| unknown_key(owner, C::DEFS, key))
}

/// Range-checks `v` for `key` and stores it.
pub fn set_checked<C: HyperSet>(owner: &str, c: &mut C, key: &str, v: f64) -> Result<()> {
    let d = def_of::<C>(owner, key)?;
    if !d.range.check(v) {
        return Err(Error::invalid(format!(
            "{owner}: {key}={v} is invalid; it must be {}",
            d.range.describe()
        )));
    }
    c.assign(key, v);
    Ok(())
}

/// Checks every value of a config built in Rust against its range, then the relations between values.
pub fn validate<C: HyperSet>(owner: &str, c: &C) -> Result<()> {
    for d in C::DEFS {
        let v = c.value(d.name).unwrap_or(f64::NAN);
        if !d.range.check(v) {
            return Err(Error::invalid(format!(
                "{owner}: {}={v} is invalid; it must be {}",
                d.name,
                d.range.describe()
            )));
        }
    }
    c.check_relations(owner)
}

/// Reads every hyperparameter of `C` from `spec` (the values of `defaults` for the absent ones), refuses unknown
/// keys and checks the result.
pub fn parse<C: HyperSet>(owner: &str, defaults: C, spec: &mut Spec) -> Result<C> {
    let mut c = defaults;
    for d in C::DEFS {
        let default = c.value(d.name).unwrap_or(0.0);
        let v = if d.range == Range::Bool {
            f64::from(u8::from(spec.bool(d.name, default != 0.0)?))
        } else {
            spec.f64(d.name, default)?
        };
        set_checked(owner, &mut c, d.name, v)?;
    }
    c.read_options(spec)?;
    spec.finish()?;
    c.check_relations(owner)?;
    Ok(c)
}

/// The canonical spec string `owner:key=value,...` with every value (booleans as true/false).
pub fn to_spec<C: HyperSet>(owner: &str, c: &C) -> String {
    let mut kv: Vec<String> = C::DEFS
        .iter()
        .map(|d| {
            let v = c.value(d.name).unwrap_or(f64::NAN);
            match d.range {
                Range::Bool => format!("{}={}", d.name, v != 0.0),
                _ => format!("{}={}", d.name, fmt_number(v)),
            }
        })
        .collect();
    kv.extend(c.write_options());
    format!("{owner}:{}", kv.join(","))
}

/// Shortest readable text that parses back to the same f64: `0.9`, `0.001`, `1e-8`.
pub fn fmt_number(v: f64) -> String {
    if v == 0.0 || (1e-4..1e6).contains(&v.abs()) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

/// Defines an optimizer's hyperparameter struct: public typed fields with defaults and ranges, `Default`, and
/// [`HyperSet`]. Non-numeric options (parsed with `FromStr`, written with `Display`) follow in `options { }`;
/// `relations = path;` names a function checking constraints between values.
///
/// ```text
/// hyperparams! {
///     /// `torch.optim.SGD`'s hyperparameters.
///     pub struct SgdConfig {
///         /// Learning rate.
///         lr: f64 = 1e-3, NonNegative;
///         nesterov: bool = false, Bool;
///     }
///     relations = sgd_relations;
/// }
/// ```
macro_rules! hyperparams {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $default:expr, $range:ident; )*
        }
        $( options { $( $(#[$ometa:meta])* $opt:ident : $oty:ty = $odefault:expr; )* } )?
        $( relations = $relations:path; )?
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
            $( $( $(#[$ometa])* pub $opt: $oty, )* )?
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    $( $field: $default, )*
                    $( $( $opt: $odefault, )* )?
                }
            }
        }

        impl $crate::optim::hyper::HyperSet for $name {
            const DEFS: &'static [$crate::optim::hyper::HyperDef] = &[
                $( $crate::optim::hyper::HyperDef {
                    name: stringify!($field),
                    range: $crate::optim::hyper::Range::$range,
                }, )*
            ];

            fn value(&self, key: &str) -> Option<f64> {
                match key {
                    $( stringify!($field) => Some($crate::optim::hyper::HyperValue::to_f64(self.$field)), )*
                    _ => None,
                }
            }

            fn assign(&mut self, key: &str, v: f64) -> bool {
                match key {
                    $( stringify!($field) => {
                        self.$field = $crate::optim::hyper::HyperValue::from_f64(v);
                        true
                    } )*
                    _ => false,
                }
            }

            $(
                fn check_relations(&self, owner: &str) -> $crate::Result<()> {
                    $relations(self, owner)
                }
            )?

            $(
                fn read_options(&mut self, spec: &mut $crate::Spec) -> $crate::Result<()> {
                    $(
                        if spec.has(stringify!($opt)) {
                            self.$opt = spec.string(stringify!($opt), "").parse::<$oty>()?;
                        } else {
                            spec.string(stringify!($opt), "");
                        }
                    )*
                    Ok(())
                }

                fn write_options(&self) -> Vec<String> {
                    vec![ $( format!("{}={}", stringify!($opt), self.$opt), )* ]
                }
            )?
        }
    };
}
pub(crate) use hyperparams;

#[cfg(test)]
mod tests {
    use super::*;

    hyperparams! {
        /// A test set.
        pub struct X {
            lr: f64 = 1e-3, NonNegative;
            beta1: f64 = 0.9, Beta;
            nesterov: bool = false, Bool;
            period: u64 = 1, PositiveCount;
        }
    }

    #[test]
    fn validates_and_round_trips() {
        let mut s = Spec::parse("x:lr=0.5,nesterov=true").unwrap();
        let mut h = parse("x", X::default(), &mut s).unwrap();
        assert_eq!(h.lr, 0.5);
        assert!(h.nesterov);
        set_checked("x", &mut h, "beta1", 0.5).unwrap();
        let e = set_checked("x", &mut h, "beta1", 1.0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("beta1=1") && e.contains("[0, 1)"), "{e}");
        let e = set_checked("x", &mut h, "beta3", 1.0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("it has: lr, beta1, nesterov, period"), "{e}");
        let e = set_checked("x", &mut h, "period", 1.5)
            .unwrap_err()
            .to_string();
        assert!(e.contains("whole number"), "{e}");
        let mut s2 = Spec::parse(&to_spec("x", &h)).unwrap();
        let h2 = parse("x", X::default(), &mut s2).unwrap();
        assert_eq!(h, h2);
        assert_eq!(
            to_spec("x", &h),
            "x:lr=0.5,beta1=0.5,nesterov=true,period=1"
        );
        assert_eq!(fmt_number(1e-8), "1e-8");
        assert_eq!(fmt_number(0.001), "0.001");
        let mut s = Spec::parse("x:lr=-1").unwrap();
        assert!(parse("x", X::default(), &mut s)
            .unwrap_err()
            .to_string()
            .contains("lr=-1"));
        assert!(validate(
            "x",
            &X {
                lr: -1.0,
                ..X::default()
            }
        )
        .is_err());
        validate("x", &X::default()).unwrap();
    }
}
