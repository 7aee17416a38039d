//! Schedules tabulated in a file: the factors of a refined schedule (P33, `optlab schedule refine`), resampled
//! to the run's length by linear interpolation.

use super::Schedule;
use crate::error::PathContext;
use crate::{Error, Result};
use std::path::Path;

/// A schedule given by its factors per step (resampled to the run's length).
#[derive(Debug, Clone, PartialEq)]
pub struct TabulatedSchedule {
    factors: Vec<f64>,
    total: u64,
    source: String,
}

impl TabulatedSchedule {
    /// Reads a refined-schedule JSON file.
    pub fn load(path: &Path, total: u64) -> Result<Self> {
        let text = std::fs::read_to_string(path).at_path(path)?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::file(path, format!("invalid JSON: {e}")))?;
        let factors: Vec<f64> = v["factors"]
            .as_array()
            .ok_or_else(|| Error::file(path, "no \"factors\" array"))?
            .iter()
            .map(|x| x.as_f64().filter(|f| f.is_finite() && *f >= 0.0))
            .collect::<Option<_>>()
            .ok_or_else(|| Error::file(path, "\"factors\" must hold non-negative numbers"))?;
        if factors.is_empty() {
            return Err(Error::file(path, "\"factors\" is empty"));
        }
        Ok(TabulatedSchedule {
            factors,
            total,
            source: path.display().to_string(),
        })
    }

    /// Writes factors as a refined-schedule JSON file.
    pub fn save(factors: &[f64], path: &Path) -> Result<()> {
        let v = serde_json::json!({"kind": "optlab-refined-schedule", "paper": "P33", "factors": factors});
        crate::tensor_io::write_atomic(path, v.to_string().as_bytes())
    }
}

impl Schedule for TabulatedSchedule {
    fn factor(&self, step: u64) -> f64 {
        let n = self.factors.len();
        if n == 1 || self.total <= 1 {
            return self.factors[0];
        }
        let pos = step as f64 / (self.total - 1) as f64 * (n - 1) as f64;
        let (i, frac) = (pos.floor() as usize, pos.fract());
        if i + 1 >= n {
            return self.factors[n - 1];
        }
        self.factors[i] * (1.0 - frac) + self.factors[i + 1] * frac
    }

    fn spec(&self) -> String {
        format!("file:{}", self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabulated_schedule_resamples_and_round_trips() {
        let dir = std::env::temp_dir().join(format!("optlab-table-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("r.json");
        TabulatedSchedule::save(&[1.0, 0.5, 0.0], &p).unwrap();
        let s = TabulatedSchedule::load(&p, 5).unwrap();
        assert_eq!(
            [s.factor(0), s.factor(1), s.factor(2), s.factor(4)],
            [1.0, 0.75, 0.5, 0.0]
        );
        std::fs::write(&p, "{\"factors\": []}").unwrap();
        assert!(TabulatedSchedule::load(&p, 5).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
