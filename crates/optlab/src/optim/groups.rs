//! Parameter groups: hyperparameters per group of parameters, selected by name pattern or tensor rank
//! (e.g. no weight decay on biases and norm scales), as PyTorch's param groups and optax's masks.
//!
//! A group is written `SELECTOR:key=value,...`:
//! - `rank<=1:weight_decay=0` — every parameter of rank at most 1 (biases, norm scales);
//! - `rank=4:lr=0.01` — a given rank (conv kernels);
//! - `*.bias:weight_decay=0`, `0.*:lr=1e-4` — a glob on the state-dict name (`*` any run, `?` one character).
//!
//! A parameter belongs to the first group that selects it, else to the default group.

use super::hyper::{def_of, fmt_number, set_checked, to_spec, validate, HyperSet};
use crate::nn::Param;
use crate::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// Which parameters a group holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Names matching a glob.
    Name(String),
    /// Tensors of exactly this rank.
    Rank(usize),
    /// Tensors of at most this rank.
    RankAtMost(usize),
}

impl Selector {
    /// Parses `rank<=N`, `rank=N` or a name glob.
    pub fn parse(s: &str) -> Result<Selector> {
        let s = s.trim();
        let num = |v: &str| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| Error::invalid(format!("group selector '{s}': '{v}' is not a rank")))
        };
        if let Some(v) = s.strip_prefix("rank<=") {
            Ok(Selector::RankAtMost(num(v)?))
        } else if let Some(v) = s.strip_prefix("rank=") {
            Ok(Selector::Rank(num(v)?))
        } else if s.is_empty() {
            Err(Error::invalid(
                "empty group selector; use rank<=N, rank=N or a name glob like *.bias",
            ))
        } else {
            Ok(Selector::Name(s.to_string()))
        }
    }

    /// Whether the selector picks `p`.
    pub fn selects(&self, p: &Param) -> bool {
        match self {
            Selector::Name(g) => glob(g.as_bytes(), p.name.as_bytes()),
            Selector::Rank(r) => p.var.rank() == *r,
            Selector::RankAtMost(r) => p.var.rank() <= *r,
        }
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selector::Name(g) => write!(f, "{g}"),
            Selector::Rank(r) => write!(f, "rank={r}"),
            Selector::RankAtMost(r) => write!(f, "rank<={r}"),
        }
    }
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&p[1..], s) || (!s.is_empty() && glob(p, &s[1..])),
        (Some(b'?'), Some(_)) => glob(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => glob(&p[1..], &s[1..]),
        _ => false,
    }
}

/// A parameter group: the parameters a [`Selector`] picks and the hyperparameters it sets for them (the others
/// keep the optimizer's values). Written `SELECTOR:key=value,...`; `true`/`false` stand for 1 and 0.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamGroup {
    pub selector: Selector,
    /// (hyperparameter, value) pairs, applied in order.
    pub values: Vec<(String, f64)>,
}

impl ParamGroup {
    /// A group of `selector` setting `values`.
    pub fn new(selector: Selector, values: Vec<(String, f64)>) -> Self {
        ParamGroup { selector, values }
    }
}

impl FromStr for ParamGroup {
    type Err = Error;

    fn from_str(spec: &str) -> Result<Self> {
        let (sel, rest) = spec.split_once(':').ok_or_else(|| {
            Error::invalid(format!(
                "group '{spec}' needs SELECTOR:key=value (e.g. rank<=1:weight_decay=0)"
            ))
        })?;
        let selector = Selector::parse(sel)?;
        let mut values: Vec<(String, f64)> = Vec::new();
        for item in rest.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (k, v) = item.split_once('=').ok_or_else(|| {
                Error::invalid(format!(
                    "group '{spec}': '{item}' is not key=value (e.g. rank<=1:weight_decay=0)"
                ))
            })?;
            let (k, v) = (k.trim(), v.trim());
            let x = match v.to_ascii_lowercase().as_str() {
                "true" | "yes" => 1.0,
                "false" | "no" => 0.0,
                _ => v
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| {
                        Error::invalid(format!("group '{spec}': {k}={v} is not a finite number"))
                    })?,
            };
            if values.iter().any(|(name, _)| name == k) {
                return Err(Error::invalid(format!(
                    "group '{spec}': key '{k}' given twice"
                )));
            }
            values.push((k.to_string(), x));
        }
        Ok(ParamGroup { selector, values })
    }
}

impl fmt::Display for ParamGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kv: Vec<String> = self
            .values
            .iter()
            .map(|(k, v)| format!("{k}={}", fmt_number(*v)))
            .collect();
        write!(f, "{}:{}", self.selector, kv.join(","))
    }
}

/// A set's value as the user gave it (base) and as the schedules currently set it.
#[derive(Debug, Clone, PartialEq)]
struct Slot<C> {
    base: C,
    current: C,
}

impl<C: Clone> Slot<C> {
    fn new(c: C) -> Self {
        Slot {
            base: c.clone(),
            current: c,
        }
    }
}

/// An optimizer's typed hyperparameters: the default set plus one per parameter group.
#[derive(Debug, Clone, PartialEq)]
pub struct HyperGroups<C> {
    owner: &'static str,
    default: Slot<C>,
    groups: Vec<(ParamGroup, Slot<C>)>,
}

impl<C: HyperSet> HyperGroups<C> {
    /// The default set of optimizer `owner` (checked against every range and relation).
    pub fn new(owner: &'static str, config: C) -> Result<Self> {
        validate(owner, &config)?;
        Ok(HyperGroups {
            owner,
            default: Slot::new(config),
            groups: Vec::new(),
        })
    }

    /// The values that apply to `p` now (its group's, else the default's).
    pub fn for_param(&self, p: &Param) -> &C {
        self.groups
            .iter()
            .find(|(g, _)| g.selector.selects(p))
            .map_or(&self.default.current, |(_, s)| &s.current)
    }

    /// The default set's current values.
    pub fn config(&self) -> &C {
        &self.default.current
    }

    fn slot_for(&self, p: &Param) -> &Slot<C> {
        self.groups
            .iter()
            .find(|(g, _)| g.selector.selects(p))
            .map_or(&self.default, |(_, s)| s)
    }

    fn slots_mut(&mut self) -> impl Iterator<Item = &mut Slot<C>> {
        std::iter::once(&mut self.default).chain(self.groups.iter_mut().map(|(_, s)| s))
    }

    fn value(&self, c: &C, key: &str) -> Result<f64> {
        def_of::<C>(self.owner, key)?;
        Ok(c.value(key).unwrap_or(f64::NAN))
    }
}

/// Hyperparameters by name, for schedules, parameter groups, muP and saved state; every unknown name is an
/// error listing the valid ones.
pub trait HyperTable: fmt::Debug + Send {
    /// The optimizer's name.
    fn owner(&self) -> &'static str;
    /// The hyperparameter names.
    fn names(&self) -> Vec<&'static str>;
    /// The values `key` accepts.
    fn range(&self, key: &str) -> Result<super::Range>;
    /// The default group's current value of `key`.
    fn get(&self, key: &str) -> Result<f64>;
    /// The default group's base value of `key` (before any schedule factor).
    fn base(&self, key: &str) -> Result<f64>;
    /// The current value of `key` for parameter `p` (its group's).
    fn get_for(&self, p: &Param, key: &str) -> Result<f64>;
    /// The base value of `key` for parameter `p`.
    fn base_for(&self, p: &Param, key: &str) -> Result<f64>;
    /// Sets `key` in every group (as assigning `group[key]` in each PyTorch param group), validating it.
    fn set(&mut self, key: &str, v: f64) -> Result<()>;
    /// Sets each group's current `key` to its base value times `factor` (a schedule step), keeping group ratios.
    fn apply_factor(&mut self, key: &str, factor: f64) -> Result<()>;
    /// Inserts a parameter group at `index`: it takes precedence over the groups after it; its other values are
    /// the default group's.
    fn insert_group(&mut self, index: usize, group: ParamGroup) -> Result<()>;
    /// The parameter groups, in precedence order.
    fn groups(&self) -> Vec<ParamGroup>;
    /// Fails when a group selects none of `params` (almost always a typo in its selector).
    fn check_selects(&self, params: &[Param]) -> Result<()>;
    /// The default group's base values, in definition order.
    fn base_values(&self) -> Vec<(&'static str, f64)>;
    /// The canonical spec of the default group's base values.
    fn to_spec(&self) -> String;
}

impl<C: HyperSet> HyperTable for HyperGroups<C> {
    fn owner(&self) -> &'static str {
        self.owner
    }

    fn names(&self) -> Vec<&'static str> {
        C::DEFS.iter().map(|d| d.name).collect()
    }

    fn range(&self, key: &str) -> Result<super::Range> {
        Ok(def_of::<C>(self.owner, key)?.range)
    }

    fn get(&self, key: &str) -> Result<f64> {
        self.value(&self.default.current, key)
    }

    fn base(&self, key: &str) -> Result<f64> {
        self.value(&self.default.base, key)
    }

    fn get_for(&self, p: &Param, key: &str) -> Result<f64> {
        self.value(&self.slot_for(p).current, key)
    }

    fn base_for(&self, p: &Param, key: &str) -> Result<f64> {
        self.value(&self.slot_for(p).base, key)
    }

    fn set(&mut self, key: &str, v: f64) -> Result<()> {
        let owner = self.owner;
        let mut next = self.clone();
        for s in next.slots_mut() {
            set_checked(owner, &mut s.base, key, v)?;
            set_checked(owner, &mut s.current, key, v)?;
            s.base.check_relations(owner)?;
        }
        *self = next;
        Ok(())
    }

    fn apply_factor(&mut self, key: &str, factor: f64) -> Result<()> {
        let owner = self.owner;
        let d = def_of::<C>(owner, key)?;
        let mut next = self.clone();
        for s in next.slots_mut() {
            let base = s.base.value(key).unwrap_or(f64::NAN);
            let v = base * factor;
            if !d.range.check(v) {
                return Err(Error::invalid(format!(
                    "{owner}: scheduled {key}={v} (base {base} x factor {factor}) is invalid; it must be {}",
                    d.range.describe()
                )));
            }
            s.current.assign(key, v);
        }
        *self = next;
        Ok(())
    }

    fn insert_group(&mut self, index: usize, group: ParamGroup) -> Result<()> {
        let mut c = self.default.base.clone();
        for (k, v) in &group.values {
            set_checked(self.owner, &mut c, k, *v)?;
        }
        c.check_relations(self.owner)?;
        let at = index.min(self.groups.len());
        self.groups.insert(at, (group, Slot::new(c)));
        Ok(())
    }

    fn groups(&self) -> Vec<ParamGroup> {
        self.groups.iter().map(|(g, _)| g.clone()).collect()
    }

    fn check_selects(&self, params: &[Param]) -> Result<()> {
        for (g, _) in &self.groups {
            if !params.iter().any(|p| g.selector.selects(p)) {
                return Err(Error::invalid(format!(
                    "group '{g}' selects no parameter; the parameters are {}",
                    params
                        .iter()
                        .map(|p| format!("{} (rank {})", p.name, p.var.rank()))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        Ok(())
    }

    fn base_values(&self) -> Vec<(&'static str, f64)> {
        C::DEFS
            .iter()
            .map(|d| (d.name, self.default.base.value(d.name).unwrap_or(f64::NAN)))
            .collect()
    }

    fn to_spec(&self) -> String {
        to_spec(self.owner, &self.default.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::hyper::hyperparams;
    use candle_core::{DType, Device, Var};

    hyperparams! {
        /// Test values.
        pub struct X {
            lr: f64 = 0.1, NonNegative;
            weight_decay: f64 = 0.01, NonNegative;
        }
    }

    fn param(name: &str, shape: &[usize]) -> Param {
        Param {
            name: name.into(),
            var: Var::zeros(shape, DType::F32, &Device::Cpu).unwrap(),
        }
    }

    #[test]
    fn selects_by_rank_and_name() {
        let mut g = HyperGroups::new("x", X::default()).unwrap();
        g.insert_group(0, "rank<=1:weight_decay=0".parse().unwrap())
            .unwrap();
        g.insert_group(1, "2.*:lr=0.5".parse().unwrap()).unwrap();
        let (w0, b0, w2) = (
            param("0.weight", &[3, 2]),
            param("0.bias", &[3]),
            param("2.weight", &[1, 3]),
        );
        assert_eq!(g.for_param(&b0).weight_decay, 0.0);
        assert_eq!(g.for_param(&w0).weight_decay, 0.01);
        assert_eq!(g.for_param(&w2).lr, 0.5);
        g.apply_factor("lr", 0.5).unwrap();
        assert_eq!(g.for_param(&w2).lr, 0.25);
        assert_eq!(g.for_param(&w0).lr, 0.05);
        assert_eq!(g.base_for(&w2, "lr").unwrap(), 0.5);
        let specs: Vec<String> = g.groups().iter().map(|g| g.to_string()).collect();
        assert_eq!(specs, vec!["rank<=1:weight_decay=0", "2.*:lr=0.5"]);
        assert!("rank<=x:lr=1".parse::<ParamGroup>().is_err());
        let e = g
            .insert_group(0, "*.bias:momentum=1".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("'momentum'"), "{e}");
        assert!("*.bias".parse::<ParamGroup>().is_err());
        assert!("*.bias:lr=x".parse::<ParamGroup>().is_err());
        assert!(g.get("lrr").unwrap_err().to_string().contains("it has: lr"));
        assert!(glob(b"*.b?as", b"10.bias") && !glob(b"*.bias", b"0.weight"));
    }
}
