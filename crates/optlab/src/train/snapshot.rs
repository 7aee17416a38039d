//! Checkpoints of runs the [`crate::train::Trainer`] does not drive (reinforcement learning, preference tuning),
//! in the run directory's `checkpoints/step-<N>/` layout of
//! [`crate::train::checkpoint`]: networks and optimizer states as safetensors, vectors (replay buffers, flat
//! parameters) as f64 safetensors, and counters and generator positions in `state.json`, which is written last
//! and then published atomically as `checkpoints/latest.json`. A generator is saved as its seed, stream and word
//! position, so a resumed run draws exactly the numbers the uninterrupted one would have.

use crate::nn::{Param, Sequential};
use crate::optim::{load_state_file, save_state_file, Optimizer};
use crate::rng::Rng;
use crate::tensor_io::{read_safetensors, write_safetensors};
use crate::train::checkpoint::{latest_text, publish, step_dir, step_name};
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A checkpoint being written: files go into its directory at once; [`Writer::commit`] publishes it.
pub struct Writer {
    run_dir: PathBuf,
    dir: PathBuf,
    step: u64,
    meta: Map<String, Value>,
}

impl Writer {
    /// Starts the checkpoint of `run_dir` after `step` steps (environment steps or iterations).
    pub fn begin(run_dir: &Path, step: u64) -> Result<Self> {
        Ok(Writer {
            run_dir: run_dir.to_path_buf(),
            dir: step_dir(run_dir, step)?,
            step,
            meta: Map::new(),
        })
    }

    /// Records a value under `key`.
    pub fn value(&mut self, key: &str, v: impl Serialize) -> Result<()> {
        let v = serde_json::to_value(v)
            .map_err(|e| Error::invalid(format!("checkpoint: cannot record {key}: {e}")))?;
        self.meta.insert(key.to_string(), v);
        Ok(())
    }

    /// Records a generator's position.
    pub fn rng(&mut self, key: &str, rng: &Rng) -> Result<()> {
        let seed: String = rng.get_seed().iter().map(|b| format!("{b:02x}")).collect();
        self.value(
            key,
            json!({"seed": seed, "stream": rng.get_stream(), "word_pos": rng.get_word_pos().to_string()}),
        )
    }

    /// Saves a network's state dict (parameters and buffers) as `<name>.safetensors`.
    pub fn net(&mut self, name: &str, net: &Sequential) -> Result<()> {
        net.save(&self.dir.join(format!("{name}.safetensors")))
    }

    /// Saves an optimizer's state over `params` as `<name>.safetensors` and `<name>.json`.
    pub fn optimizer(&mut self, name: &str, opt: &dyn Optimizer, params: &[Param]) -> Result<()> {
        save_state_file(
            opt,
            params,
            &self.dir.join(format!("{name}.safetensors")),
            &self.dir.join(format!("{name}.json")),
        )
    }

    /// Saves named tensors as `<name>.safetensors`.
    pub fn tensors(&mut self, name: &str, tensors: &[(String, Tensor)]) -> Result<()> {
        write_safetensors(&self.dir.join(format!("{name}.safetensors")), tensors, None)
    }

    /// Saves parameters under their names as `<name>.safetensors`.
    pub fn params(&mut self, name: &str, params: &[Param]) -> Result<()> {
        let named: Vec<(String, Tensor)> = params
            .iter()
            .map(|p| (p.name.clone(), p.tensor().clone()))
            .collect();
        self.tensors(name, &named)
    }

    /// Saves named f64 vectors as `<name>.safetensors`.
    pub fn vectors(&mut self, name: &str, vectors: &[(&str, &[f64])]) -> Result<()> {
        let tensors = vectors
            .iter()
            .map(|(k, v)| Ok((k.to_string(), Tensor::from_slice(v, v.len(), &Device::Cpu)?)))
            .collect::<Result<Vec<_>>>()?;
        self.tensors(name, &tensors)
    }

    /// Writes the index and makes this checkpoint the latest (older ones are removed).
    pub fn commit(mut self) -> Result<PathBuf> {
        self.meta.insert("step".into(), json!(self.step));
        self.meta.insert("dir".into(), json!(step_name(self.step)));
        let text = serde_json::to_string_pretty(&Value::Object(self.meta))
            .map_err(|e| Error::invalid(format!("cannot write the checkpoint index: {e}")))?;
        publish(&self.run_dir, self.step, &text)?;
        Ok(self.dir)
    }
}

/// The latest checkpoint of a run, read back; every getter says which file or key is wrong.
pub struct Reader {
    dir: PathBuf,
    meta: Map<String, Value>,
    /// The steps (environment steps or iterations) the checkpoint was taken after.
    pub step: u64,
}

impl Reader {
    /// The latest checkpoint of `run_dir`, `None` where there is none.
    pub fn latest(run_dir: &Path) -> Result<Option<Self>> {
        let Some((text, root)) = latest_text(run_dir)? else {
            return Ok(None);
        };
        let index = root.join("latest.json");
        let bad = |m: String| Error::file(&index, m);
        let meta = match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err(bad("the checkpoint index is not a JSON object".into())),
            Err(e) => return Err(bad(format!("invalid checkpoint index: {e}"))),
        };
        let step = meta
            .get("step")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad("the checkpoint index has no step".into()))?;
        let dir = meta.get("dir").and_then(Value::as_str).unwrap_or_default();
        if dir != step_name(step) {
            return Err(bad(format!(
                "the checkpoint index names `{dir}`, not `{}`: refused (checkpoints live in checkpoints/step-<N>/)",
                step_name(step)
            )));
        }
        Ok(Some(Reader {
            dir: root.join(dir),
            meta,
            step,
        }))
    }

    fn index(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// The value recorded under `key`.
    pub fn value<T: DeserializeOwned>(&self, key: &str) -> Result<T> {
        let v = self
            .meta
            .get(key)
            .ok_or_else(|| Error::file(self.index(), format!("no `{key}` in the checkpoint")))?;
        serde_json::from_value(v.clone())
            .map_err(|e| Error::file(self.index(), format!("`{key}`: {e}")))
    }

    /// The generator recorded under `key`, at its recorded position.
    pub fn rng(&self, key: &str) -> Result<Rng> {
        let v: Value = self.value(key)?;
        let bad = || Error::file(self.index(), format!("`{key}` is not a generator state"));
        let hex = v["seed"].as_str().ok_or_else(bad)?;
        if hex.len() != 64 || !hex.is_ascii() {
            return Err(bad());
        }
        let mut seed = [0u8; 32];
        for (i, b) in seed.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        let stream = v["stream"].as_u64().ok_or_else(bad)?;
        let pos: u128 = v["word_pos"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)?;
        let mut r = Rng::from_seed(seed);
        r.set_stream(stream);
        r.set_word_pos(pos);
        Ok(r)
    }

    /// Loads `<name>.safetensors` into `net` (names and shapes must match).
    pub fn net(&self, name: &str, net: &Sequential) -> Result<()> {
        net.load(&self.dir.join(format!("{name}.safetensors")))
    }

    /// The optimizer saved as `name` over `params`; its own step count must be `step`.
    pub fn optimizer(&self, name: &str, params: &[Param], step: u64) -> Result<Box<dyn Optimizer>> {
        let path = self.dir.join(format!("{name}.json"));
        let opt = load_state_file(params, &self.dir.join(format!("{name}.safetensors")), &path)?;
        if opt.state().step != step {
            return Err(Error::file(
                &path,
                format!(
                    "the optimizer is at step {} but the checkpoint implies {step}",
                    opt.state().step
                ),
            ));
        }
        Ok(opt)
    }

    /// The tensors saved as `name`.
    pub fn tensors(&self, name: &str) -> Result<HashMap<String, Tensor>> {
        read_safetensors(&self.dir.join(format!("{name}.safetensors")))
    }

    /// Sets every parameter to its tensor saved by [`Writer::params`] as `name` (an error names a missing one).
    pub fn load_params(&self, name: &str, params: &[Param]) -> Result<()> {
        let tensors = self.tensors(name)?;
        for p in params {
            let t = tensors.get(&p.name).ok_or_else(|| {
                Error::file(self.dir(), format!("the checkpoint lacks {}", p.name))
            })?;
            p.var.set(t)?;
        }
        Ok(())
    }

    /// The f64 vectors saved as `name`; each must be present.
    pub fn vectors(&self, name: &str, keys: &[&str]) -> Result<HashMap<String, Vec<f64>>> {
        let path = self.dir.join(format!("{name}.safetensors"));
        let t = read_safetensors(&path)?;
        keys.iter()
            .map(|k| {
                let v = t
                    .get(*k)
                    .ok_or_else(|| Error::file(&path, format!("no `{k}`")))?;
                if v.rank() != 1 || v.dtype() != candle_core::DType::F64 {
                    return Err(Error::file(&path, format!("`{k}` is not an f64 vector")));
                }
                Ok((k.to_string(), v.to_vec1::<f64>()?))
            })
            .collect()
    }

    /// The checkpoint's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
