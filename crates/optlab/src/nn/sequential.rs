//! `nn.Sequential`-shaped models: MLPs and a small CNN, with PyTorch's default initialisation and state-dict
//! names.

use super::build::build_layers;
use super::{Layer, ModelSpec, Param};
use crate::tensor_io::{read_safetensors, write_safetensors};
use crate::{Error, Result};
use candle_core::{DType, Tensor, Var};
use std::collections::HashMap;
use std::path::Path;

/// What [`Sequential::forward_traced`] records of one Linear layer.
#[derive(Debug, Clone)]
pub struct LinearTrace {
    pub weight: Param,
    pub bias: Option<Param>,
    /// The layer's input `[batch, in]`.
    pub input: Tensor,
    /// A zero variable added to the layer's output `[batch, out]`: its gradient is the output's gradient (the
    /// per-sample error signal).
    pub output_probe: Var,
}

/// A model: layers applied in order, parameters named `<layer index>.weight` / `<layer index>.bias`.
#[derive(Debug, Clone)]
pub struct Sequential {
    layers: Vec<Layer>,
    spec: ModelSpec,
    input_shape: Vec<usize>,
    dtype: DType,
}

impl Sequential {
    /// Builds `spec` for examples of `input_shape` and `outputs` outputs, initialised as PyTorch does
    /// (weights and biases uniform in ±1/sqrt(fan_in)) from `seed`.
    pub fn new(
        spec: &ModelSpec,
        input_shape: &[usize],
        outputs: usize,
        seed: u64,
        dtype: DType,
    ) -> Result<Self> {
        if outputs == 0 {
            return Err(Error::invalid("a model needs at least one output"));
        }
        if !matches!(dtype, DType::F32 | DType::F64) {
            return Err(Error::invalid(format!(
                "models train in f32 or f64, not {dtype:?}"
            )));
        }
        let input_shape = spec.input_shape(input_shape)?;
        let layers = build_layers(spec, &input_shape, outputs, seed, dtype)?;
        Ok(Sequential {
            layers,
            spec: spec.clone(),
            input_shape,
            dtype,
        })
    }

    /// The forward pass on a batch `[b, input_shape...]` in evaluation mode (normalization layers use their
    /// running statistics).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_mode(x, false)
    }

    /// The forward pass in training mode (batch statistics, running statistics updated) or evaluation mode.
    pub fn forward_mode(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.check_input(x)?;
        let keep = self.padding(x)?;
        let mut h = x.clone();
        for l in &self.layers {
            h = l.forward_pass(&h, train, keep.as_deref())?;
        }
        Ok(h)
    }

    /// For a language model: one flag per (example, position) of a batch of token ids, false at padding (the id
    /// equal to the vocabulary size); `None` when nothing is padded or the model takes no tokens.
    fn padding(&self, x: &Tensor) -> Result<Option<Vec<bool>>> {
        match self.layers.first() {
            Some(Layer::Embed(e)) => e.keep(x),
            _ => Ok(None),
        }
    }

    fn check_input(&self, x: &Tensor) -> Result<()> {
        // A language model also takes sequences shorter than its context (the embedding checks the ids).
        let shorter_sequences = matches!(self.layers.first(), Some(Layer::Embed(_)))
            && x.rank() == 2
            && self.input_shape.len() == 1
            && x.dims()[1] >= 1
            && x.dims()[1] <= self.input_shape[0];
        if !shorter_sequences && &x.dims()[1.min(x.rank())..] != self.input_shape.as_slice() {
            return Err(Error::Shape(format!(
                "the model takes examples of shape {:?}, got a batch of shape {:?}",
                self.input_shape,
                x.dims()
            )));
        }
        Ok(())
    }

    /// The forward pass that also returns, for every layer, `<index>:<kind>` and the mean absolute value of its
    /// output (muP's coordinate check).
    pub fn forward_recorded(
        &self,
        x: &Tensor,
        train: bool,
    ) -> Result<(Tensor, Vec<(String, f64)>)> {
        self.check_input(x)?;
        let keep = self.padding(x)?;
        let mut h = x.clone();
        let mut stats = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            h = l.forward_pass(&h, train, keep.as_deref())?;
            let l1 = h
                .abs()?
                .mean_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
            stats.push((format!("{i}:{}", l.kind()), l1));
        }
        Ok((h, stats))
    }

    /// The forward pass that also returns, for each Linear layer, its weight, bias, input and output (for
    /// per-sample gradient statistics by outer products). `None` when the model has parameterised layers other
    /// than Linear (a CNN).
    pub fn forward_traced(&self, x: &Tensor) -> Result<Option<(Tensor, Vec<LinearTrace>)>> {
        if self.layers.iter().any(|l| {
            !matches!(
                l,
                Layer::Linear { .. } | Layer::Readout { .. } | Layer::Act(_) | Layer::Flatten
            )
        }) {
            return Ok(None);
        }
        let mut h = x.clone();
        let mut traces = Vec::new();
        for l in &self.layers {
            if let Layer::Readout { mult, .. } = l {
                // The Linear inside a readout sees the scaled input.
                h = (h * *mult)?;
            }
            let mut out = match l {
                Layer::Readout { weight, bias, .. } => {
                    super::linear::linear(&h, weight.tensor(), bias.as_ref().map(Param::tensor))?
                }
                l => l.forward(&h, true)?,
            };
            if let Layer::Linear { weight, bias } | Layer::Readout { weight, bias, .. } = l {
                // candle keeps gradients only for variables: a zero variable added to the output receives the
                // output's gradient.
                let probe = Var::zeros(out.dims(), out.dtype(), out.device())?;
                let input = h.clone();
                out = out.add(probe.as_tensor())?;
                traces.push(LinearTrace {
                    weight: weight.clone(),
                    bias: bias.clone(),
                    input,
                    output_probe: probe,
                });
            }
            h = out;
        }
        Ok(Some((h, traces)))
    }

    /// All parameters in state-dict order.
    pub fn params(&self) -> Vec<Param> {
        self.layers
            .iter()
            .flat_map(|l| l.params().into_iter().cloned())
            .collect()
    }

    /// Total number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.params().iter().map(Param::numel).sum()
    }

    /// The layers.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// The architecture.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The example shape the model takes.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// The parameter dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// A one-line description such as `Linear(64, 128) - relu - Linear(128, 10)`.
    pub fn describe(&self) -> String {
        self.layers
            .iter()
            .map(Layer::describe)
            .collect::<Vec<_>>()
            .join(" - ")
    }

    /// The parameters as a state dict.
    pub fn state_dict(&self) -> Vec<(String, Tensor)> {
        self.layers
            .iter()
            .flat_map(|l| l.state().expect("running statistics"))
            .collect()
    }

    /// Saves the state dict as safetensors (loadable by PyTorch's `load_state_dict`), atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        // One metadata key: safetensors writes a map's keys in random order, and equal models should give
        // byte-identical files.
        let info =
            serde_json::json!({"model": self.spec.to_spec(), "input_shape": self.input_shape});
        let meta = HashMap::from([("optlab".to_string(), info.to_string())]);
        write_safetensors(path, &self.state_dict(), Some(meta))
    }

    /// Loads a state dict saved by optlab or by PyTorch (`safetensors.torch.save_file(model.state_dict())`).
    /// Names and shapes must match exactly (keys starting with `__` are ignored); values are converted to the
    /// model's dtype.
    pub fn load(&self, path: &Path) -> Result<()> {
        let tensors = read_safetensors(path)?;
        self.load_state_dict(&tensors)
            .map_err(|e| Error::file(path, e.to_string()))
    }

    /// Copies the values of a state dict into the parameters (strict, as PyTorch's default).
    pub fn load_state_dict(&self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        let params = self.params();
        let mut buffers: Vec<String> = Vec::new();
        for l in &self.layers {
            buffers.extend(l.buffers()?.into_iter().map(|(k, _)| k));
        }
        let mut unexpected: Vec<&String> = tensors
            .keys()
            .filter(|k| {
                !k.starts_with("__")
                    && !params.iter().any(|p| &p.name == *k)
                    && !buffers.contains(k)
            })
            .collect();
        unexpected.sort();
        if !unexpected.is_empty() {
            return Err(Error::Shape(format!(
                "unexpected keys {unexpected:?} for model {} (expects {})",
                self.spec.to_spec(),
                params
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        for p in &params {
            let t = tensors.get(&p.name).ok_or_else(|| {
                Error::Shape(format!(
                    "missing key '{}' for model {}",
                    p.name,
                    self.spec.to_spec()
                ))
            })?;
            if t.dims() != p.var.dims() {
                return Err(Error::Shape(format!(
                    "'{}' has shape {:?} in the file but {:?} in the model",
                    p.name,
                    t.dims(),
                    p.var.dims()
                )));
            }
            // A copy: the source may share storage with the variable (a model's own state dict).
            let t = t.to_dtype(self.dtype)?.copy()?;
            if t.flatten_all()?
                .to_dtype(DType::F64)?
                .to_vec1::<f64>()?
                .iter()
                .any(|v| !v.is_finite())
            {
                return Err(Error::NonFinite(format!(
                    "'{}' contains NaN or infinite values",
                    p.name
                )));
            }
            p.var.set(&t)?;
        }
        for name in &buffers {
            let t = tensors.get(name).ok_or_else(|| {
                Error::Shape(format!(
                    "missing key '{name}' for model {}",
                    self.spec.to_spec()
                ))
            })?;
            for l in &self.layers {
                if l.load_buffer(name, t)? {
                    break;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn mlp_names_and_shapes_follow_pytorch() {
        let m = Sequential::new(
            &ModelSpec::parse("mlp:hidden=128-32,act=tanh").unwrap(),
            &[64],
            10,
            0,
            DType::F32,
        )
        .unwrap();
        let names: Vec<String> = m.params().iter().map(|p| p.name.clone()).collect();
        assert_eq!(
            names,
            ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
        );
        assert_eq!(m.params()[0].var.dims(), &[128, 64]);
        assert_eq!(
            m.num_params(),
            64 * 128 + 128 + 128 * 32 + 32 + 32 * 10 + 10
        );
        let x = Tensor::zeros((5, 64), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(m.forward(&x).unwrap().dims(), &[5, 10]);
        assert!(m
            .forward(&Tensor::zeros((5, 63), DType::F32, &Device::Cpu).unwrap())
            .is_err());
        let bound = 1.0 / 8.0;
        let w: Vec<f32> = m.params()[0]
            .tensor()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(w.iter().all(|v| v.abs() <= bound));
    }

    #[test]
    fn cnn_for_8x8_and_28x28() {
        let spec = ModelSpec::parse("cnn").unwrap();
        let m = Sequential::new(&spec, &[64], 10, 0, DType::F32).unwrap();
        let names: Vec<String> = m.params().iter().map(|p| p.name.clone()).collect();
        assert_eq!(
            names,
            ["0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias"]
        );
        let x = Tensor::zeros((2, 1, 8, 8), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(m.forward(&x).unwrap().dims(), &[2, 10]);
        let m = Sequential::new(&spec, &[784], 10, 0, DType::F32).unwrap();
        assert_eq!(m.params()[4].var.dims(), &[10, 16 * 7 * 7]);
        assert!(Sequential::new(&spec, &[10], 10, 0, DType::F32).is_err());
        assert!(Sequential::new(&spec, &[1, 6, 6], 10, 0, DType::F32).is_err());
    }

    #[test]
    fn bad_specs() {
        assert!(ModelSpec::parse("mlp:hidden=0").is_err());
        assert!(ModelSpec::parse("cnn:channels=1-1-1-1-1-1-1-1-1").is_err());
        assert!(ModelSpec::parse("mlp:act=sigmoid").is_err());
        assert!(ModelSpec::parse("mlp:hidden=4-4-4,act=relu-tanh").is_err());
        assert_eq!(
            ModelSpec::parse("mlp:hidden=4-4,act=relu-tanh")
                .unwrap()
                .to_spec(),
            "mlp:hidden=4-4,act=relu-tanh"
        );
        assert!(ModelSpec::parse("rnn")
            .unwrap_err()
            .to_string()
            .contains("available: mlp, cnn, resnet, transformer"));
        assert_eq!(
            ModelSpec::parse("mlp:hidden=64-32").unwrap().to_spec(),
            "mlp:hidden=64-32,act=relu"
        );
    }

    #[test]
    fn same_seed_same_bits() {
        let spec = ModelSpec::parse("mlp").unwrap();
        let a = Sequential::new(&spec, &[4], 2, 5, DType::F64).unwrap();
        let b = Sequential::new(&spec, &[4], 2, 5, DType::F64).unwrap();
        let c = Sequential::new(&spec, &[4], 2, 6, DType::F64).unwrap();
        let v = |m: &Sequential| {
            m.params()[0]
                .tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap()
        };
        assert_eq!(v(&a), v(&b));
        assert_ne!(v(&a), v(&c));
    }
}
