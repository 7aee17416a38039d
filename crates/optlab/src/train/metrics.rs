//! Metrics records, the `metrics.jsonl` log and `summary.json`.

use super::{Observer, RunInfo};
use crate::error::PathContext;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// One optimizer step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Steps done so far (1 after the first step).
    pub step: u64,
    /// 0-based epoch of this step.
    pub epoch: u64,
    /// Mini-batch loss before the update.
    pub loss: f64,
    /// Learning rate used for the update.
    pub lr: f64,
    /// Global l2 norm of the gradient before clipping.
    pub grad_norm: f64,
    /// Examples in the mini-batch.
    pub batch_size: usize,
    /// Seconds since the run started (resumed runs include the earlier time).
    pub time_s: f64,
    /// Training examples per second over the run so far.
    pub samples_per_s: f64,
    /// Under DP-SGD: ε spent so far (at the run's δ).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
}

/// One evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    pub step: u64,
    pub epoch: u64,
    /// Mean mini-batch training loss since the previous evaluation.
    pub train_loss: f64,
    /// Loss on the validation split (absent without one).
    pub val_loss: Option<f64>,
    /// Accuracy on the validation split (classification only).
    pub val_accuracy: Option<f64>,
    pub time_s: f64,
}

/// A line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    Train(StepMetrics),
    Eval(EvalMetrics),
}

impl Record {
    /// The step the record belongs to.
    pub fn step(&self) -> u64 {
        match self {
            Record::Train(m) => m.step,
            Record::Eval(m) => m.step,
        }
    }
}

/// The result of a run, written to `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub data: String,
    pub model: String,
    pub optimizer: String,
    pub schedule: String,
    pub steps: u64,
    pub epochs: f64,
    pub num_params: usize,
    pub final_train_loss: f64,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub best_val_accuracy: Option<f64>,
    pub wall_time_s: f64,
    pub samples_per_s: f64,
    /// Under DP-SGD: the guarantee (ε at δ) and the noise multiplier used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<PrivacySummary>,
}

/// What a private run spent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrivacySummary {
    pub epsilon: f64,
    pub delta: f64,
    pub noise_multiplier: f64,
    pub sample_rate: f64,
    pub clip: f64,
}

/// Appends records to `metrics.jsonl`, one JSON object per line, every `log_every` steps and at every
/// evaluation.
pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
    log_every: u64,
}

impl MetricsLog {
    /// Opens `path` for appending, first dropping any record after `keep_until_step` (records a crashed run
    /// wrote after its last checkpoint).
    pub fn open(path: &Path, log_every: u64, keep_until_step: u64) -> Result<Self> {
        if path.exists() && keep_until_step == 0 {
            std::fs::write(path, b"").at_path(path)?;
        } else if path.exists() {
            let kept: Vec<Record> = read_metrics(path)?
                .into_iter()
                .filter(|r| r.step() <= keep_until_step)
                .collect();
            let mut text = String::new();
            for r in &kept {
                text.push_str(&serde_json::to_string(r).expect("json"));
                text.push('\n');
            }
            crate::tensor_io::write_atomic(path, text.as_bytes())?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .at_path(path)?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            file,
            log_every,
        })
    }

    fn write(&mut self, r: &Record) {
        let line = serde_json::to_string(r).expect("json") + "\n";
        if let Err(e) = self.file.write_all(line.as_bytes()) {
            eprintln!("warning: cannot append to {}: {e}", self.path.display());
        }
    }
}

impl Observer for MetricsLog {
    fn on_start(&mut self, _info: &RunInfo) {}
    fn on_step(&mut self, m: &StepMetrics) {
        if m.step.is_multiple_of(self.log_every) {
            self.write(&Record::Train(m.clone()));
        }
    }
    fn on_eval(&mut self, m: &EvalMetrics) {
        self.write(&Record::Eval(m.clone()));
    }
    fn on_checkpoint(&mut self, _step: u64, _dir: &Path) {
        // The log must hold every step up to the checkpoint before the checkpoint counts.
        let _ = self.file.sync_data();
    }
}

/// Reads `metrics.jsonl`; a malformed line is an error naming the line. A torn final line (a crash in the
/// middle of a write) is dropped.
pub fn read_metrics(path: &Path) -> Result<Vec<Record>> {
    let text = std::fs::read_to_string(path).at_path(path)?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str::<Record>(line) {
            Ok(r) => out.push(r),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => break,
            Err(e) => return Err(Error::file(path, format!("line {}: {e}", i + 1))),
        }
    }
    Ok(out)
}
