//! Checkpoints: `checkpoints/step-<N>/` holds the model, the optimizer state and the loop counters;
//! `checkpoints/latest.json` names the newest complete one and is replaced atomically after the directory is
//! fully written, so a crash at any moment leaves the previous checkpoint intact.

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
}

fn root(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

/// Writes a checkpoint and makes it the latest; older checkpoints are removed afterwards.
pub fn save(
    run_dir: &Path,
    model: &Sequential,
    opt: &dyn Optimizer,
    state: &LoopState,
) -> Result<PathBuf> {
    let root = root(run_dir);
    let name = format!("step-{:09}", state.step);
    let dir = root.join(&name);
    std::fs::create_dir_all(&dir).at_path(&dir)?;
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
    let text = serde_json::to_string_pretty(&st).expect("json");
    write_atomic(&dir.join("state.json"), text.as_bytes())?;
    write_atomic(&root.join("latest.json"), text.as_bytes())?;
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if n.starts_with("step-") && n != name {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    Ok(dir)
}

/// Whether `run_dir` has a checkpoint.
pub fn exists(run_dir: &Path) -> bool {
    root(run_dir).join("latest.json").exists()
}

/// Loads the latest checkpoint into `model` and returns the rebuilt optimizer and the loop counters.
pub fn load(run_dir: &Path, model: &Sequential) -> Result<(Box<dyn Optimizer>, LoopState)> {
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
    let dir = root(run_dir).join(&st.dir);
    model.load(&dir.join("model.safetensors"))?;
    let params: Vec<Param> = model.params();
    let opt = load_state_file(
        &params,
        &dir.join("optimizer.safetensors"),
        &dir.join("optimizer.json"),
    )?;
    if opt.state().step != st.step {
        return Err(Error::file(
            &dir,
            format!(
                "optimizer state is at step {} but the checkpoint at step {}",
                opt.state().step,
                st.step
            ),
        ));
    }
    Ok((opt, st))
}
