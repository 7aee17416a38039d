//! Spec strings `name:key=value,key=value` for optimizers, schedules, data sets and models
//! (`adamw:lr=1e-3,weight_decay=0.01`, `cosine:warmup=100`). Keys use the reference implementation's argument
//! names. Reading a spec records which keys the method knows, so an unknown key is reported with the list of
//! valid ones.

use crate::{Error, Result};
use std::collections::BTreeMap;
use std::fmt;

/// A parsed spec string.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// The method name before the colon, lower-cased.
    pub name: String,
    entries: BTreeMap<String, String>,
    asked: Vec<&'static str>,
}

impl Spec {
    /// Parses `name` or `name:key=value,key=value`.
    pub fn parse(s: &str) -> Result<Spec> {
        let s = s.trim();
        let (name, rest) = match s.split_once(':') {
            Some((n, r)) => (n.trim(), r.trim()),
            None => (s, ""),
        };
        if name.is_empty() {
            return Err(Error::invalid(format!(
                "empty name in spec '{s}': expected 'name' or 'name:key=value,...'"
            )));
        }
        let mut entries = BTreeMap::new();
        for item in rest.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (k, v) = item.split_once('=').ok_or_else(|| {
                Error::invalid(format!(
                    "spec '{s}': '{item}' is not key=value (example: adamw:lr=1e-3,weight_decay=0.01)"
                ))
            })?;
            let k = k.trim().to_string();
            if entries.insert(k.clone(), v.trim().to_string()).is_some() {
                return Err(Error::invalid(format!("spec '{s}': key '{k}' given twice")));
            }
        }
        Ok(Spec {
            name: name.to_ascii_lowercase(),
            entries,
            asked: Vec::new(),
        })
    }

    /// Whether the key was given.
    pub fn has(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    fn raw(&mut self, key: &'static str) -> Option<String> {
        if !self.asked.contains(&key) {
            self.asked.push(key);
        }
        self.entries.get(key).cloned()
    }

    fn parse_err(&self, key: &str, v: &str, what: &str) -> Error {
        Error::invalid(format!("{}: {key}={v} is not {what}", self.name))
    }

    /// A float, or `default` when absent. NaN and infinity are refused.
    pub fn f64(&mut self, key: &'static str, default: f64) -> Result<f64> {
        match self.raw(key) {
            None => Ok(default),
            Some(v) => match v.parse::<f64>() {
                Ok(x) if x.is_finite() => Ok(x),
                _ => Err(self.parse_err(key, &v, "a finite number")),
            },
        }
    }

    /// A non-negative integer, or `default` when absent.
    pub fn usize(&mut self, key: &'static str, default: usize) -> Result<usize> {
        match self.raw(key) {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| self.parse_err(key, &v, "a non-negative integer")),
        }
    }

    /// A boolean (`true`/`false`/`1`/`0`), or `default` when absent.
    pub fn bool(&mut self, key: &'static str, default: bool) -> Result<bool> {
        match self.raw(key) {
            None => Ok(default),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(self.parse_err(key, &v, "true or false")),
            },
        }
    }

    /// A string, or `default` when absent.
    pub fn string(&mut self, key: &'static str, default: &str) -> String {
        self.raw(key).unwrap_or_else(|| default.to_string())
    }

    /// A `-`-separated list of integers such as `128-64`.
    pub fn usize_list(&mut self, key: &'static str, default: &[usize]) -> Result<Vec<usize>> {
        match self.raw(key) {
            None => Ok(default.to_vec()),
            Some(v) if v.is_empty() || v == "none" => Ok(Vec::new()),
            Some(v) => v
                .split('-')
                .map(|p| p.trim().parse::<usize>())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|_| self.parse_err(key, &v, "a list of integers like 128-64")),
        }
    }

    /// Fails when a key was given that no reader asked for, listing the valid keys.
    pub fn finish(&self) -> Result<()> {
        let unknown: Vec<&String> = self
            .entries
            .keys()
            .filter(|k| !self.asked.contains(&k.as_str()))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let mut valid = self.asked.clone();
        valid.sort_unstable();
        Err(Error::invalid(format!(
            "unknown key{} {} for '{}'; valid keys: {}",
            if unknown.len() > 1 { "s" } else { "" },
            unknown
                .iter()
                .map(|k| format!("'{k}'"))
                .collect::<Vec<_>>()
                .join(", "),
            self.name,
            if valid.is_empty() {
                "none".to_string()
            } else {
                valid.join(", ")
            }
        )))
    }
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)?;
        for (i, (k, v)) in self.entries.iter().enumerate() {
            write!(f, "{}{k}={v}", if i == 0 { ':' } else { ',' })?;
        }
        Ok(())
    }
}

/// `Serialize` as the `Display` text and `Deserialize` through `FromStr`, so typed specs read and write as the
/// same strings users type (in TOML configs and JSON).
macro_rules! serde_via_string {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(
                d: D,
            ) -> std::result::Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use serde_via_string;

/// Fails with the list of known names.
pub fn unknown_name(kind: &str, name: &str, known: &[&str]) -> Error {
    Error::invalid(format!(
        "unknown {kind} '{name}'; available: {}",
        known.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_reads_typed_values() {
        let mut s = Spec::parse("AdamW: lr=1e-3, weight_decay=0.01,amsgrad=true").unwrap();
        assert_eq!(s.name, "adamw");
        assert_eq!(s.f64("lr", 0.1).unwrap(), 1e-3);
        assert_eq!(s.f64("weight_decay", 0.0).unwrap(), 0.01);
        assert!(s.bool("amsgrad", false).unwrap());
        assert_eq!(s.f64("eps", 1e-8).unwrap(), 1e-8);
        s.finish().unwrap();
        assert_eq!(
            s.to_string(),
            "adamw:amsgrad=true,lr=1e-3,weight_decay=0.01"
        );
    }

    #[test]
    fn unknown_keys_list_valid_ones() {
        let mut s = Spec::parse("sgd:lr=0.1,momentun=0.9").unwrap();
        s.f64("lr", 0.1).unwrap();
        s.f64("momentum", 0.0).unwrap();
        let e = s.finish().unwrap_err().to_string();
        assert!(
            e.contains("'momentun'") && e.contains("valid keys: lr, momentum"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(Spec::parse("sgd:lr").is_err());
        assert!(Spec::parse(":lr=1").is_err());
        assert!(Spec::parse("sgd:lr=1,lr=2").is_err());
        let mut s = Spec::parse("sgd:lr=abc,nesterov=maybe,steps=-1").unwrap();
        assert!(s.f64("lr", 0.0).is_err());
        assert!(s.bool("nesterov", false).is_err());
        assert!(s.usize("steps", 0).is_err());
        let mut s = Spec::parse("sgd:lr=nan").unwrap();
        assert!(s.f64("lr", 0.0).is_err());
    }
}
