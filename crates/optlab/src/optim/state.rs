//! Optimizer state and its files: `optimizer.safetensors` holds one tensor per parameter and buffer
//! (`<param>.<buffer>`, e.g. `0.weight.exp_avg`), `optimizer.json` the method, step count and hyperparameters.
//! Loading restores the exact bits, so a resumed run continues identically.

use super::{from_spec, Buf, Optimizer};
use crate::error::PathContext;
use crate::nn::Param;
use crate::tensor_io::{read_safetensors, write_atomic, write_safetensors};
use crate::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Step count and per-parameter buffers (buffer order as in [`Optimizer::buffer_names`]).
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizerState {
    /// The method that owns the state.
    pub method: String,
    /// Number of steps taken.
    pub step: u64,
    /// Buffers by parameter name.
    pub buffers: BTreeMap<String, Vec<Buf>>,
}

impl OptimizerState {
    /// Empty state of `method`.
    pub fn new(method: &str) -> Self {
        OptimizerState {
            method: method.to_string(),
            step: 0,
            buffers: BTreeMap::new(),
        }
    }

    /// Checks that the state fits `params` and the method's buffers.
    pub fn check(&self, method: &str, names: &[String], params: &[Param]) -> Result<()> {
        if self.method != method {
            return Err(Error::invalid(format!(
                "optimizer state belongs to '{}', not '{method}'",
                self.method
            )));
        }
        for (name, bufs) in &self.buffers {
            let p = params.iter().find(|p| &p.name == name).ok_or_else(|| {
                Error::Shape(format!("optimizer state for unknown parameter '{name}'"))
            })?;
            if bufs.len() != names.len() {
                return Err(Error::Shape(format!(
                    "'{name}' has {} state buffers, {method} keeps {}",
                    bufs.len(),
                    names.len()
                )));
            }
            if let Some(b) = bufs
                .iter()
                .find(|b| b.len() != p.numel() || b.dtype() != p.var.dtype())
            {
                return Err(Error::Shape(format!(
                    "state of '{name}' has {} {:?} values, the parameter {} {:?}",
                    b.len(),
                    b.dtype(),
                    p.numel(),
                    p.var.dtype()
                )));
            }
        }
        Ok(())
    }
}

/// Saves `opt`'s state to `tensors_path` (safetensors) and `meta_path` (JSON), each atomically.
pub fn save_state_file(
    opt: &dyn Optimizer,
    params: &[Param],
    tensors_path: &Path,
    meta_path: &Path,
) -> Result<()> {
    let st = opt.state();
    let names = opt.buffer_names();
    let mut tensors = Vec::new();
    for p in params {
        if let Some(bufs) = st.buffers.get(&p.name) {
            for (b, bn) in bufs.iter().zip(&names) {
                tensors.push((format!("{}.{bn}", p.name), b.to_tensor(p.var.dims())?));
            }
        }
    }
    let hyper: serde_json::Map<String, serde_json::Value> = opt
        .hypers()
        .base_values()
        .into_iter()
        .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
        .collect();
    let meta = serde_json::json!({
        "method": opt.name(),
        "spec": opt.spec(),
        "step": st.step,
        "hyperparams": hyper,
        "groups": opt.hypers().groups().iter().map(|g| g.to_string()).collect::<Vec<_>>(),
        "buffers": names,
    });
    let text = serde_json::to_string_pretty(&meta).expect("json");
    let st_meta = HashMap::from([("optlab_optimizer".to_string(), text.clone())]);
    write_safetensors(tensors_path, &tensors, Some(st_meta))?;
    write_atomic(meta_path, text.as_bytes())
}

/// Rebuilds an optimizer with its hyperparameters and exact state from files written by [`save_state_file`].
pub fn load_state_file(
    params: &[Param],
    tensors_path: &Path,
    meta_path: &Path,
) -> Result<Box<dyn Optimizer>> {
    let text = std::fs::read_to_string(meta_path).at_path(meta_path)?;
    let meta: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::file(meta_path, format!("invalid JSON: {e}")))?;
    let spec = meta["spec"]
        .as_str()
        .ok_or_else(|| Error::file(meta_path, "missing \"spec\""))?;
    let step = meta["step"]
        .as_u64()
        .ok_or_else(|| Error::file(meta_path, "missing \"step\""))?;
    let mut opt = from_spec(spec).map_err(|e| Error::file(meta_path, e.to_string()))?;
    // Restore the exact f64 values (the spec string round-trips through decimal text).
    if let Some(h) = meta["hyperparams"].as_object() {
        for (k, v) in h {
            let v = v.as_f64().ok_or_else(|| {
                Error::file(meta_path, format!("hyperparameter '{k}' is not a number"))
            })?;
            opt.set_hyperparam(k, v)
                .map_err(|e| Error::file(meta_path, e.to_string()))?;
        }
    }
    if let Some(groups) = meta["groups"].as_array() {
        for g in groups {
            let g = g
                .as_str()
                .ok_or_else(|| Error::file(meta_path, "a group is not a string"))?;
            g.parse()
                .and_then(|g| opt.add_group(g))
                .map_err(|e| Error::file(meta_path, e.to_string()))?;
        }
    }
    let tensors = read_safetensors(tensors_path)?;
    let mut state = super::OptimizerState::new(opt.name());
    state.step = step;
    let names = opt.buffer_names();
    for p in params {
        let found: Vec<Option<&candle_core::Tensor>> = names
            .iter()
            .map(|bn| tensors.get(&format!("{}.{bn}", p.name)))
            .collect();
        if found.iter().all(Option::is_none) {
            continue;
        }
        let mut bufs = Vec::with_capacity(names.len());
        for (t, bn) in found.into_iter().zip(&names) {
            let t = t.ok_or_else(|| {
                Error::file(tensors_path, format!("missing tensor '{}.{bn}'", p.name))
            })?;
            if t.dims() != p.var.dims() {
                return Err(Error::file(
                    tensors_path,
                    format!(
                        "'{}.{bn}' has shape {:?}, the parameter {:?}",
                        p.name,
                        t.dims(),
                        p.var.dims()
                    ),
                ));
            }
            bufs.push(Buf::from_tensor(t, p.var.dtype())?);
        }
        state.buffers.insert(p.name.clone(), bufs);
    }
    let expected = state.buffers.len() * names.len();
    if tensors.len() != expected {
        return Err(Error::file(
            tensors_path,
            format!(
                "{} tensors, but the model's parameters account for {expected}",
                tensors.len()
            ),
        ));
    }
    opt.load_state(state, params)?;
    Ok(opt)
}
