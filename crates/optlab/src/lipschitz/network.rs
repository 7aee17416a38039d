//! Feed-forward networks for Lipschitz analysis, imported from a PyTorch `nn.Sequential` state dict
//! (safetensors): Linear, Conv2d, ReLU, Flatten and MaxMin (GroupSort of size 2), in f64.
//!
//! Architecture: weighted layers come from the `N.weight` / `N.bias` keys (2-D weight: Linear, 4-D: Conv2d); the
//! modules between two weighted indices are parameter-free. Without a spec, the gap after a Linear or Conv2d is a
//! ReLU, and a gap between a Conv2d and a Linear is ReLU then Flatten (`nn.Sequential(Conv2d, ReLU, Flatten,
//! Linear)`). A JSON spec names every module instead, e.g.
//! `{"input_shape": [1, 4, 4], "layers": ["conv2d:stride=1,padding=1", "relu", "flatten", "linear", "maxmin", "linear"]}`.
//! Any other key (a BatchNorm's `running_mean`, ...) is refused with its name.

use crate::{Error, Result};
use candle_core::{DType, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// One module of the network.
#[derive(Debug, Clone, PartialEq)]
pub enum Layer {
    /// y = W x + b, W row-major [out, in].
    Linear {
        w: Vec<f64>,
        b: Vec<f64>,
        out: usize,
        inp: usize,
    },
    /// 2-D convolution, weight [co, ci, kh, kw], zero padding, input [ci, h, w].
    Conv2d {
        w: Vec<f64>,
        b: Vec<f64>,
        shape: [usize; 4],
        stride: usize,
        padding: usize,
        /// Input [ci, h, w] (set when the network is built).
        input: [usize; 3],
    },
    Relu,
    /// Pairs (x_{2i}, x_{2i+1}) -> (max, min), as GroupSort with groups of 2 along the features.
    MaxMin,
    Flatten,
}

impl Layer {
    /// A short name for reports.
    pub fn name(&self) -> String {
        match self {
            Layer::Linear { out, inp, .. } => format!("Linear({inp}->{out})"),
            Layer::Conv2d {
                shape,
                stride,
                padding,
                ..
            } => format!(
                "Conv2d({}->{}, {}x{}, stride {stride}, padding {padding})",
                shape[1], shape[0], shape[2], shape[3]
            ),
            Layer::Relu => "ReLU".into(),
            Layer::MaxMin => "MaxMin".into(),
            Layer::Flatten => "Flatten".into(),
        }
    }

    /// Output size of a conv layer: [co, ho, wo].
    pub fn conv_output(&self) -> Option<[usize; 3]> {
        match self {
            Layer::Conv2d {
                shape,
                stride,
                padding,
                input,
                ..
            } => {
                let ho = (input[1] + 2 * padding - shape[2]) / stride + 1;
                let wo = (input[2] + 2 * padding - shape[3]) / stride + 1;
                Some([shape[0], ho, wo])
            }
            _ => None,
        }
    }
}

/// A sequential network and the size of its input.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    pub layers: Vec<Layer>,
    /// `[features]` or `[channels, height, width]`.
    pub input_shape: Vec<usize>,
}

/// A module name of a spec: `linear`, `conv2d[:stride=S,padding=P]`, `relu`, `maxmin`, `flatten`.
#[derive(Debug, Clone, PartialEq)]
enum SpecLayer {
    Linear,
    Conv {
        stride: usize,
        padding: Option<usize>,
    },
    Relu,
    MaxMin,
    Flatten,
}

fn parse_spec_layer(s: &str) -> Result<SpecLayer> {
    let mut spec = crate::Spec::parse(s)?;
    let out = match spec.name.as_str() {
        "linear" => SpecLayer::Linear,
        "conv2d" => {
            let stride = spec.usize("stride", 1)?;
            let padding = if spec.has("padding") {
                Some(spec.usize("padding", 0)?)
            } else {
                None
            };
            if stride == 0 {
                return Err(Error::invalid("conv2d: stride must be at least 1"));
            }
            SpecLayer::Conv { stride, padding }
        }
        "relu" => SpecLayer::Relu,
        "maxmin" | "groupsort" => SpecLayer::MaxMin,
        "flatten" => SpecLayer::Flatten,
        other => {
            return Err(Error::invalid(format!(
                "unsupported layer `{other}`: optlab analyses linear, conv2d, relu, maxmin (groupsort of 2) and flatten"
            )))
        }
    };
    spec.finish()?;
    Ok(out)
}

/// The JSON architecture spec.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// `[features]` or `[channels, height, width]`; needed for convolutions.
    pub input_shape: Option<Vec<usize>>,
    /// Every module in order.
    pub layers: Option<Vec<String>>,
}

impl NetworkSpec {
    /// Reads a spec file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e.to_string()))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::file(path, format!("invalid network spec: {e}")))
    }
}

fn to_f64(t: &Tensor) -> Result<Vec<f64>> {
    let v: Vec<f64> = t.flatten_all()?.to_dtype(DType::F64)?.to_vec1()?;
    if v.iter().any(|x| !x.is_finite()) {
        return Err(Error::invalid("a weight is NaN or infinite"));
    }
    Ok(v)
}

impl Network {
    /// The network of an optlab ReLU MLP (its state dict with the default spec).
    pub fn from_model(model: &crate::nn::Sequential) -> Result<Self> {
        let tensors: HashMap<_, _> = model.state_dict().into_iter().collect();
        Self::from_state_dict(&tensors, &NetworkSpec::default())
    }

    /// Imports a state dict (`tensors` from a safetensors file) with an optional spec.
    pub fn from_state_dict(tensors: &HashMap<String, Tensor>, spec: &NetworkSpec) -> Result<Self> {
        // Spectrally normalized layers (weight_orig, weight_u, weight_v) enter with their effective weight.
        let folded = crate::nn::spectral::fold_spectral_norm(tensors)?;
        let tensors = &folded;
        // index -> (weight, bias)
        let mut weighted: BTreeMap<usize, (Option<&Tensor>, Option<&Tensor>)> = BTreeMap::new();
        for (k, t) in tensors {
            let (idx, kind) = k
                .split_once('.')
                .and_then(|(i, kind)| i.parse::<usize>().ok().map(|i| (i, kind)))
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "unsupported tensor `{k}`: expected nn.Sequential keys like `0.weight` and `0.bias`"
                    ))
                })?;
            let e = weighted.entry(idx).or_default();
            match kind {
                "weight" => e.0 = Some(t),
                "bias" => e.1 = Some(t),
                other => {
                    return Err(Error::invalid(format!(
                        "unsupported layer at index {idx}: tensor `{k}` ({other}) belongs to a module optlab cannot analyse (only Linear, Conv2d, ReLU, MaxMin and Flatten)"
                    )))
                }
            }
        }
        if weighted.is_empty() {
            return Err(Error::invalid("the state dict has no weights"));
        }
        let spec_layers: Option<Vec<SpecLayer>> = spec
            .layers
            .as_ref()
            .map(|ls| ls.iter().map(|s| parse_spec_layer(s)).collect())
            .transpose()?;
        let idx: Vec<usize> = weighted.keys().copied().collect();
        let mut layers = Vec::new();
        // With a spec: walk it, taking weights in index order for each weighted module.
        if let Some(ls) = &spec_layers {
            let mut w_iter = idx.iter();
            for l in ls {
                match l {
                    SpecLayer::Linear | SpecLayer::Conv { .. } => {
                        let i = w_iter.next().ok_or_else(|| {
                            Error::invalid("the spec has more weighted layers than the state dict")
                        })?;
                        layers.push(Self::weighted_layer(*i, weighted[i], Some(l))?);
                    }
                    SpecLayer::Relu => layers.push(Layer::Relu),
                    SpecLayer::MaxMin => layers.push(Layer::MaxMin),
                    SpecLayer::Flatten => layers.push(Layer::Flatten),
                }
            }
            if let Some(i) = w_iter.next() {
                return Err(Error::invalid(format!(
                    "the spec has fewer weighted layers than the state dict (index {i} is left over)"
                )));
            }
        } else {
            for (n, i) in idx.iter().enumerate() {
                let layer = Self::weighted_layer(*i, weighted[i], None)?;
                let is_conv = matches!(layer, Layer::Conv2d { .. });
                layers.push(layer);
                if let Some(next) = idx.get(n + 1) {
                    let gap = next - i - 1;
                    let next_is_linear = weighted[next].0.map(|t| t.rank() == 2).unwrap_or(false);
                    match (gap, is_conv && next_is_linear) {
                        (0, false) => {}
                        (0, true) => layers.push(Layer::Flatten),
                        (1, false) => layers.push(Layer::Relu),
                        (2, true) => {
                            layers.push(Layer::Relu);
                            layers.push(Layer::Flatten);
                        }
                        _ => {
                            return Err(Error::invalid(format!(
                                "{gap} parameter-free modules between indices {i} and {next}: give a --spec naming them"
                            )))
                        }
                    }
                }
            }
        }
        let mut net = Network {
            layers,
            input_shape: spec.input_shape.clone().unwrap_or_default(),
        };
        net.resolve_shapes()?;
        Ok(net)
    }

    fn weighted_layer(
        i: usize,
        (w, b): (Option<&Tensor>, Option<&Tensor>),
        spec: Option<&SpecLayer>,
    ) -> Result<Layer> {
        let w = w.ok_or_else(|| Error::invalid(format!("index {i} has a bias but no weight")))?;
        let dims = w.dims().to_vec();
        if !matches!(dims.len(), 2 | 4) || dims.contains(&0) {
            return Err(Error::invalid(format!(
                "unsupported layer at index {i}: weight of shape {dims:?} (Linear needs [out, in], Conv2d [out, in, kh, kw], all non-empty)"
            )));
        }
        let out = dims[0];
        let bias = match b {
            Some(b) => {
                if b.dims() != [out] {
                    return Err(Error::Shape(format!(
                        "{i}.bias has shape {:?} but {i}.weight has {out} outputs",
                        b.dims()
                    )));
                }
                to_f64(b)?
            }
            None => vec![0.0; out],
        };
        match (dims.len(), spec) {
            (2, None | Some(SpecLayer::Linear)) => Ok(Layer::Linear {
                w: to_f64(w)?,
                b: bias,
                out,
                inp: dims[1],
            }),
            (4, None) | (4, Some(SpecLayer::Conv { .. })) => {
                let (stride, padding) = match spec {
                    Some(SpecLayer::Conv { stride, padding }) => {
                        (*stride, padding.unwrap_or(dims[2] / 2))
                    }
                    _ => (1, dims[2] / 2),
                };
                Ok(Layer::Conv2d {
                    w: to_f64(w)?,
                    b: bias,
                    shape: [dims[0], dims[1], dims[2], dims[3]],
                    stride,
                    padding,
                    input: [dims[1], 0, 0],
                })
            }
            (r, _) => Err(Error::invalid(format!(
                "unsupported layer at index {i}: a weight of rank {r} ({dims:?}) does not match {}",
                match spec {
                    Some(SpecLayer::Linear) => "the spec's linear",
                    Some(SpecLayer::Conv { .. }) => "the spec's conv2d",
                    _ => "Linear (rank 2) or Conv2d (rank 4)",
                }
            ))),
        }
    }

    /// Checks that every layer's input size matches the previous output and fills in conv input shapes.
    fn resolve_shapes(&mut self) -> Result<()> {
        let mut shape: Vec<usize> = self.input_shape.clone();
        if shape.is_empty() {
            match self.layers.first() {
                Some(Layer::Linear { inp, .. }) => shape = vec![*inp],
                _ => {
                    return Err(Error::invalid(
                        "a network that starts with a convolution needs input_shape [channels, height, width] in the spec",
                    ))
                }
            }
            self.input_shape = shape.clone();
        }
        for (k, layer) in self.layers.iter_mut().enumerate() {
            let size: usize = shape.iter().product();
            match layer {
                Layer::Linear { inp, out, .. } => {
                    if shape.len() != 1 || *inp != size {
                        return Err(Error::Shape(format!(
                            "layer {k} (Linear with {inp} inputs) receives shape {shape:?}{}",
                            if shape.len() > 1 {
                                " (a Flatten is missing?)"
                            } else {
                                ""
                            }
                        )));
                    }
                    shape = vec![*out];
                }
                Layer::Conv2d {
                    shape: ks,
                    input,
                    padding,
                    ..
                } => {
                    if shape.len() != 3 || shape[0] != ks[1] {
                        return Err(Error::Shape(format!(
                            "layer {k} (Conv2d with {} input channels) receives shape {shape:?}",
                            ks[1]
                        )));
                    }
                    if shape[1] + 2 * *padding < ks[2] || shape[2] + 2 * *padding < ks[3] {
                        return Err(Error::Shape(format!(
                            "layer {k}: a {}x{} kernel does not fit a {}x{} input",
                            ks[2], ks[3], shape[1], shape[2]
                        )));
                    }
                    *input = [shape[0], shape[1], shape[2]];
                    shape = layer.conv_output().expect("conv").to_vec();
                }
                Layer::Relu => {}
                Layer::MaxMin => {
                    if !size.is_multiple_of(2) {
                        return Err(Error::Shape(format!(
                            "layer {k} (MaxMin) needs an even number of features, got {size}"
                        )));
                    }
                }
                Layer::Flatten => shape = vec![size],
            }
            if shape.contains(&0) {
                return Err(Error::Shape(format!("layer {k} has an empty output")));
            }
        }
        if shape.len() != 1 {
            return Err(Error::Shape(format!(
                "the network ends with shape {shape:?}; expected a vector (a final Flatten or Linear)"
            )));
        }
        Ok(())
    }

    /// Imports safetensors bytes (the fuzz target's entry point): malformed bytes are errors, never panics.
    pub fn from_bytes(bytes: &[u8], spec: &NetworkSpec) -> Result<Self> {
        Self::from_state_dict(&crate::tensor_io::parse_safetensors_bytes(bytes)?, spec)
    }

    /// Reads a safetensors state dict and an optional spec file.
    pub fn load(path: &Path, spec: Option<&Path>) -> Result<Self> {
        let tensors = crate::tensor_io::read_safetensors(path)?;
        let spec = match spec {
            Some(p) => NetworkSpec::load(p)?,
            None => NetworkSpec::default(),
        };
        Self::from_state_dict(&tensors, &spec).map_err(|e| Error::file(path, e.to_string()))
    }

    /// Input size (product of the input shape).
    pub fn input_dim(&self) -> usize {
        self.input_shape.iter().product()
    }

    /// Output size.
    pub fn output_dim(&self) -> usize {
        let mut size = self.input_dim();
        for l in &self.layers {
            match l {
                Layer::Linear { out, .. } => size = *out,
                Layer::Conv2d { .. } => size = l.conv_output().expect("conv").iter().product(),
                _ => {}
            }
        }
        size
    }

    /// The forward pass in f64.
    pub fn forward(&self, x: &[f64]) -> Result<Vec<f64>> {
        if x.len() != self.input_dim() {
            return Err(Error::Shape(format!(
                "the input has {} values, the network takes {}",
                x.len(),
                self.input_dim()
            )));
        }
        let mut h = x.to_vec();
        for l in &self.layers {
            h = match l {
                Layer::Linear { w, b, out, inp } => (0..*out)
                    .map(|r| {
                        b[r] + w[r * inp..(r + 1) * inp]
                            .iter()
                            .zip(&h)
                            .map(|(a, c)| a * c)
                            .sum::<f64>()
                    })
                    .collect(),
                Layer::Conv2d { b, .. } => {
                    let mut y = conv2d(l, &h, false);
                    let [co, ho, wo] = l.conv_output().expect("conv");
                    for c in 0..co {
                        y[c * ho * wo..(c + 1) * ho * wo]
                            .iter_mut()
                            .for_each(|v| *v += b[c]);
                    }
                    y
                }
                Layer::Relu => h.iter().map(|v| v.max(0.0)).collect(),
                Layer::MaxMin => h
                    .chunks_exact(2)
                    .flat_map(|p| [p[0].max(p[1]), p[0].min(p[1])])
                    .collect(),
                Layer::Flatten => h,
            };
        }
        Ok(h)
    }
}

/// The linear part of a Conv2d layer applied to `x` (input layout [ci, h, w]), or its transpose applied to an
/// output-shaped `x` when `transpose`.
pub fn conv2d(layer: &Layer, x: &[f64], transpose: bool) -> Vec<f64> {
    let Layer::Conv2d {
        w,
        shape: [co, ci, kh, kw],
        stride,
        padding,
        input: [_, h, wd],
        ..
    } = layer
    else {
        panic!("conv2d called on {}", layer.name());
    };
    let [_, ho, wo] = layer.conv_output().expect("conv");
    let (p, s) = (*padding as isize, *stride as isize);
    let mut out = vec![0.0; if transpose { ci * h * wd } else { co * ho * wo }];
    for o in 0..*co {
        for i in 0..*ci {
            for a in 0..*kh {
                for bb in 0..*kw {
                    let k = w[((o * ci + i) * kh + a) * kw + bb];
                    for y in 0..ho {
                        let iy = y as isize * s + a as isize - p;
                        if iy < 0 || iy >= *h as isize {
                            continue;
                        }
                        for xcol in 0..wo {
                            let ix = xcol as isize * s + bb as isize - p;
                            if ix < 0 || ix >= *wd as isize {
                                continue;
                            }
                            let (src, dst) = (
                                (i * h + iy as usize) * wd + ix as usize,
                                (o * ho + y) * wo + xcol,
                            );
                            if transpose {
                                out[src] += k * x[dst];
                            } else {
                                out[dst] += k * x[src];
                            }
                        }
                    }
                }
            }
        }
    }
    out
}
