//! Checkpoints: `checkpoints/step-<N>/` holds the model, the optimizer state, the loop counters and the run's
//! configuration as recorded when it started; `checkpoints/latest.json` names the newest complete one and is
//! replaced atomically after the directory is fully written, so a crash at any moment leaves the previous
//! checkpoint intact. Loading trusts nothing in the index: every counter is checked against the run.

use crate::error::PathContext;
use crate::nn::{Param, Sequential};
use crate::optim::{load_state_file, save_state_file, Optimizer};
use crate::tensor_io::write_atomic;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The loop counters saved beside the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopState {
    /// Steps done.
    pub step: u64,
    /// Current epoch and the position in its shuffled order (examples already used).
    pub epoch: u64,
    pub cursor: usize,
    /// Current batch size (grows under an adaptive batch-size test).
    pub batch_size: usize,
    /// Sum and count of mini-batch losses since the last evaluation.
    pub loss_sum: f64,
    pub loss_count: u64,
    /// Best validation accuracy so far.
    pub best_val_accuracy: Option<f64>,
    /// Seconds spent before this checkpoint.
    pub time_s: f64,
    /// The checkpoint directory, relative to `checkpoints/`.
    pub dir: String,
    /// Under DP-SGD: the privacy accountant's history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accountant: Option<crate::privacy::rdp::RdpAccountant>,
}

fn root(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

/// The directory name of the checkpoint after `step` steps.
fn dir_name(step: u64) -> String {
    format!("step-{step:09}")
}

/// The file a checkpoint records the run's configuration in.
const CONFIG: &str = "config.toml";

impl LoopState {
    /// Checks the counters against the run they belong to: `train_len` training examples, `total_steps` steps,
    /// batches of at most `max_batch`. A message says what is wrong.
    pub fn validate(&self, train_len: usize, total_steps: u64, max_batch: usize) -> Result<()> {
        let bad = |what: String| {
            Err(Error::invalid(format!(
                "the checkpoint index is not this run's: {what}"
            )))
        };
        if self.dir != dir_name(self.step) {
            return bad(format!(
                "dir `{}` is not `{}` (checkpoints live in checkpoints/step-<N>/)",
                self.dir,
                dir_name(self.step)
            ));
        }
        if self.step == 0 || self.step > total_steps {
            return bad(format!(
                "step {} is outside the run's 1..={total_steps}",
                self.step
            ));
        }
        if self.cursor >= train_len {
            return bad(format!(
                "cursor {} is past the {train_len} training examples",
                self.cursor
            ));
        }
        if self.batch_size == 0 || self.batch_size > max_batch.max(train_len) {
            return bad(format!(
                "batch size {} is outside 1..={}",
                self.batch_size,
                max_batch.max(train_len)
            ));
        }
        if self.epoch > self.step || self.loss_count > self.step {
            return bad(format!(
                "epoch {} and loss count {} cannot follow {} steps",
                self.epoch, self.loss_count, self.step
            ));
        }
        if !(self.loss_sum.is_finite() && self.time_s.is_finite() && self.time_s >= 0.0) {
            return bad(format!(
                "loss sum {} and time {} s must be finite",
                self.loss_sum, self.time_s
            ));
        }
        if let Some(a) = self.best_val_accuracy.filter(|a| !(0.0..=1.0).contains(a)) {
            return bad(format!("best validation accuracy {a} is not in [0, 1]"));
        }
        Ok(())
    }
}

/// Writes a checkpoint (with the run's configuration text `config`) and makes it the latest; older
/// checkpoints are removed afterwards.
pub fn save(
    run_dir: &Path,
    model: &Sequential,
    opt: &dyn Optimizer,
    state: &LoopState,
    config: &str,
) -> Result<PathBuf> {
    let name = dir_name(state.step);
    let dir = step_dir(run_dir, state.step)?;
    model.save(&dir.join("model.safetensors"))?;
    let params = model.params();
    save_state_file(
        opt,
        &params,
        &dir.join("optimizer.safetensors"),
        &dir.join("optimizer.json"),
    )?;
    let st = LoopState {
        dir: name.clone(),
        ..state.clone()
    };
    let text = serde_json::to_string_pretty(&st)
        .map_err(|e| Error::invalid(format!("cannot write the checkpoint index: {e}")))?;
    write_atomic(&dir.join(CONFIG), config.as_bytes())?;
    publish(run_dir, state.step, &text)?;
    Ok(dir)
}

/// The directory of the checkpoint after `step` steps (created).
pub(crate) fn step_dir(run_dir: &Path, step: u64) -> Result<PathBuf> {
    let dir = root(run_dir).join(dir_name(step));
    std::fs::create_dir_all(&dir).at_path(&dir)?;
    Ok(dir)
}

/// Makes the fully written checkpoint after `step` steps the latest: its index `text` goes to `state.json`
/// inside it and then, atomically, to `checkpoints/latest.json`; older checkpoints are removed afterwards.
pub(crate) fn publish(run_dir: &Path, step: u64, text: &str) -> Result<()> {
    let root = root(run_dir);
    let name = dir_name(step);
    write_atomic(&root.join(&name).join("state.json"), text.as_bytes())?;
    write_atomic(&root.join("latest.json"), text.as_bytes())?;
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if n.starts_with("step-") && n != name {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    Ok(())
}

/// The latest checkpoint's index text and directory, `None` where the run has none.
pub(crate) fn latest_text(run_dir: &Path) -> Result<Option<(String, PathBuf)>> {
    let latest = root(run_dir).join("latest.json");
    match std::fs::read_to_string(&latest) {
        Ok(t) => Ok(Some((t, root(run_dir)))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::file(&latest, e.to_string())),
    }
}

/// The name of the checkpoint directory after `step` steps, for checking an index.
pub(crate) fn step_name(step: u64) -> String {
    dir_name(step)
}

/// Where the checkpoint `st` recorded the run's configuration.
pub fn recorded_config(run_dir: &Path, st: &LoopState) -> PathBuf {
    root(run_dir).join(dir_name(st.step)).join(CONFIG)
}

/// Whether `run_dir` has a checkpoint.
pub fn exists(run_dir: &Path) -> bool {
    root(run_dir).join("latest.json").exists()
}

/// The latest checkpoint's index and the configuration it recorded (`None` for checkpoints of versions that did
/// not record it). The index is parsed, not yet checked against the run ([`LoopState::validate`]).
pub fn latest(run_dir: &Path) -> Result<(LoopState, Option<String>)> {
    let latest = root(run_dir).join("latest.json");
    let text = std::fs::read_to_string(&latest).map_err(|e| {
        Error::file(
            &latest,
            format!(
                "no checkpoint to resume from ({e}); was the run started with a run directory?"
            ),
        )
    })?;
    let st: LoopState = serde_json::from_str(&text)
        .map_err(|e| Error::file(&latest, format!("invalid checkpoint index: {e}")))?;
    if st.dir != dir_name(st.step) {
        return Err(Error::file(
            &latest,
            format!(
                "the checkpoint index names `{}`, not `{}`: refused (checkpoints live in checkpoints/step-<N>/)",
                st.dir,
                dir_name(st.step)
            ),
        ));
    }
    let recorded = root(run_dir).join(&st.dir).join(CONFIG);
    let config = match std::fs::read_to_string(&recorded) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::file(&recorded, e.to_string())),
    };
    Ok((st, config))
}

/// Loads the checkpoint `st` (from [`latest`], already validated) into `model` and rebuilds the optimizer, whose
/// own step count must be `optimizer_step` (the run's steps times the optimizer steps each takes).
pub fn load(
    run_dir: &Path,
    st: &LoopState,
    model: &Sequential,
    optimizer_step: u64,
) -> Result<Box<dyn Optimizer>> {
    let dir = root(run_dir).join(dir_name(st.step));
    model.load(&dir.join("model.safetensors"))?;
    let params: Vec<Param> = model.params();
    let opt = load_state_file(
        &params,
        &dir.join("optimizer.safetensors"),
        &dir.join("optimizer.json"),
    )?;
    if opt.state().step != optimizer_step {
        return Err(Error::file(
            &dir,
            format!(
                "optimizer state is at step {} but the checkpoint at step {} implies {optimizer_step}",
                opt.state().step,
                st.step
            ),
        ));
    }
    Ok(opt)
}
