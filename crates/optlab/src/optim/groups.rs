//! Parameter groups: hyperparameters per group of parameters, selected by name pattern or tensor rank
//! (e.g. no weight decay on biases and norm scales), as PyTorch's param groups and optax's masks.
//!
//! A group is written `SELECTOR:key=value,...`:
//! - `rank<=1:weight_decay=0` — every parameter of rank at most 1 (biases, norm scales);
//! - `rank=4:lr=0.01` — a given rank (conv kernels);
//! - `*.bias:weight_decay=0`, `0.*:lr=1e-4` — a glob on the state-dict name (`*` any run, `?` one character).
//!
//! A parameter belongs to the first group that selects it, else to the default group.

use super::hyper::Hypers;
use crate::nn::Param;
use crate::{Error, Result, Spec};

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

/// The default hyperparameters plus any parameter groups.
#[derive(Debug, Clone)]
pub struct HyperGroups {
    default: Hypers,
    groups: Vec<(Selector, Hypers, String)>,
}

impl HyperGroups {
    /// Only the default group.
    pub fn new(default: Hypers) -> Self {
        HyperGroups {
            default,
            groups: Vec::new(),
        }
    }

    /// Adds a group from `SELECTOR:key=value,...`; its other hyperparameters are the current defaults.
    pub fn add_group(&mut self, spec: &str) -> Result<()> {
        self.insert_group(self.groups.len(), spec)
    }

    /// Inserts a group at position `index` (a parameter belongs to the first group that selects it).
    pub fn insert_group(&mut self, index: usize, spec: &str) -> Result<()> {
        let (sel, rest) = spec.split_once(':').ok_or_else(|| {
            Error::invalid(format!(
                "group '{spec}' needs SELECTOR:key=value (e.g. rank<=1:weight_decay=0)"
            ))
        })?;
        let selector = Selector::parse(sel)?;
        let mut s = Spec::parse(&format!("{}:{rest}", self.default.owner()))?;
        let h = self.default.with_overrides(&mut s)?;
        self.groups.insert(
            index.min(self.groups.len()),
            (selector, h, rest.trim().to_string()),
        );
        Ok(())
    }

    /// The group specs, as given to [`HyperGroups::add_group`].
    pub fn group_specs(&self) -> Vec<String> {
        self.groups
            .iter()
            .map(|(sel, _, rest)| format!("{sel}:{rest}"))
            .collect()
    }

    /// Fails when a group selects none of `params` (almost always a typo in its selector).
    pub fn check_selects(&self, params: &[Param]) -> Result<()> {
        for (sel, _, rest) in &self.groups {
            if !params.iter().any(|p| sel.selects(p)) {
                return Err(Error::invalid(format!(
                    "group '{sel}:{rest}' selects no parameter; the parameters are {}",
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

    /// The hyperparameters that apply to `p`.
    pub fn for_param(&self, p: &Param) -> &Hypers {
        self.groups
            .iter()
            .find(|(s, _, _)| s.selects(p))
            .map_or(&self.default, |(_, h, _)| h)
    }

    /// The default group.
    pub fn default_group(&self) -> &Hypers {
        &self.default
    }

    /// A default-group value (used by optimizers for settings that cannot differ by group).
    pub fn get(&self, key: &str) -> f64 {
        self.default.get(key)
    }

    /// A default-group flag.
    pub fn flag(&self, key: &str) -> bool {
        self.default.flag(key)
    }

    /// A default-group value, or an error naming the valid keys.
    pub fn try_get(&self, key: &str) -> Result<f64> {
        self.default.try_get(key)
    }

    /// Sets `key` in every group (as assigning `group[key]` in each PyTorch param group).
    pub fn set(&mut self, key: &str, v: f64) -> Result<()> {
        self.default.set(key, v)?;
        for (_, h, _) in &mut self.groups {
            h.set(key, v)?;
        }
        Ok(())
    }

    /// Multiplies each group's base value of `key` by `factor` (a schedule step), keeping group ratios.
    pub fn apply_factor(&mut self, key: &str, factor: f64) -> Result<()> {
        self.default.apply_factor(key, factor)?;
        for (_, h, _) in &mut self.groups {
            h.apply_factor(key, factor)?;
        }
        Ok(())
    }

    /// Checks every group against the hyperparameter constraints of a method (e.g. Nesterov needs momentum).
    pub fn check_each(&self, check: impl Fn(&Hypers) -> Result<()>) -> Result<()> {
        check(&self.default)?;
        self.groups.iter().try_for_each(|(_, h, _)| check(h))
    }

    /// The canonical spec of the default group.
    pub fn to_spec(&self) -> String {
        self.default.to_spec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::hyper::{def, HyperDef, Range};
    use candle_core::{DType, Device, Var};

    const DEFS: &[HyperDef] = &[
        def("lr", 0.1, Range::NonNegative),
        def("weight_decay", 0.01, Range::NonNegative),
    ];

    fn param(name: &str, shape: &[usize]) -> Param {
        Param {
            name: name.into(),
            var: Var::zeros(shape, DType::F32, &Device::Cpu).unwrap(),
        }
    }

    #[test]
    fn selects_by_rank_and_name() {
        let mut s = Spec::parse("x").unwrap();
        let mut g = HyperGroups::new(Hypers::from_spec("x", DEFS, &mut s).unwrap());
        g.add_group("rank<=1:weight_decay=0").unwrap();
        g.add_group("2.*:lr=0.5").unwrap();
        let (w0, b0, w2) = (
            param("0.weight", &[3, 2]),
            param("0.bias", &[3]),
            param("2.weight", &[1, 3]),
        );
        assert_eq!(g.for_param(&b0).get("weight_decay"), 0.0);
        assert_eq!(g.for_param(&w0).get("weight_decay"), 0.01);
        assert_eq!(g.for_param(&w2).get("lr"), 0.5);
        g.apply_factor("lr", 0.5).unwrap();
        assert_eq!(g.for_param(&w2).get("lr"), 0.25);
        assert_eq!(g.for_param(&w0).get("lr"), 0.05);
        assert_eq!(
            g.group_specs(),
            vec!["rank<=1:weight_decay=0", "2.*:lr=0.5"]
        );
        assert!(g.add_group("rank<=x:lr=1").is_err());
        assert!(g
            .add_group("*.bias:momentum=1")
            .unwrap_err()
            .to_string()
            .contains("'momentum'"));
        assert!(g.add_group("*.bias").is_err());
        assert!(glob(b"*.b?as", b"10.bias") && !glob(b"*.bias", b"0.weight"));
    }
}
