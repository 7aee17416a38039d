//! Lipschitz control of linear layers (P04, P24, P11): spectral normalization with PyTorch's
//! `torch.nn.utils.spectral_norm` semantics, and the per-layer spectral projection applied after an optimizer step.
//!
//! [`SpectralLinear`] keeps the raw weight as the parameter `weight_orig` and unit vectors `weight_u` (out) and
//! `weight_v` (in) as buffers, under PyTorch's state-dict names and order (`bias`, `weight_orig`, `weight_u`,
//! `weight_v`). Each training forward runs one power iteration (v ← normalize(Wᵀu), u ← normalize(Wv), with
//! normalize(x) = x/max(‖x‖, 1e-12)) and stores u and v; every forward uses W/σ with σ = uᵀWv, differentiable in W
//! with u and v held constant. An eval forward uses the stored u and v without iterating. Golden against PyTorch
//! in tests/spectral.rs (tools/reference/spectral_norm_fixtures.py).

use super::transformer::linear_nd;
use super::Param;
use crate::rng::{normal, Rng};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use std::sync::{Arc, Mutex};

/// Which Linear layers of an MLP are spectrally normalized (`sn=` in a model spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpectralScope {
    /// None (`sn=0`).
    #[default]
    Off,
    /// Every layer (`sn=1`): the network is at most 1-Lipschitz (with 1-Lipschitz activations), as P04's
    /// discriminator.
    All,
    /// The hidden layers only (`sn=hidden`): the output layer keeps its scale, as spectral normalization is
    /// usually applied to value networks whose outputs span a large range.
    Hidden,
}

impl SpectralScope {
    /// Parses `0`, `1` (or `all`), `hidden`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "0" | "false" | "no" | "off" => Ok(SpectralScope::Off),
            "1" | "true" | "yes" | "all" => Ok(SpectralScope::All),
            "hidden" => Ok(SpectralScope::Hidden),
            other => Err(Error::invalid(format!(
                "sn={other}: give sn=1 (every layer), sn=hidden (hidden layers) or sn=0"
            ))),
        }
    }

    /// The spec suffix (`,sn=1`, `,sn=hidden`, or nothing).
    pub fn to_spec(self) -> &'static str {
        match self {
            SpectralScope::Off => "",
            SpectralScope::All => ",sn=1",
            SpectralScope::Hidden => ",sn=hidden",
        }
    }

    /// Whether layer `k` of `layers` Linear layers is normalized.
    pub fn covers(self, k: usize, layers: usize) -> bool {
        match self {
            SpectralScope::Off => false,
            SpectralScope::All => true,
            SpectralScope::Hidden => k + 1 < layers,
        }
    }
}

/// PyTorch's `eps` of `spectral_norm`.
pub const EPS: f64 = 1e-12;

/// The power-iteration vectors of one layer.
#[derive(Debug, Clone)]
pub struct PowerVectors {
    pub u: Tensor,
    pub v: Tensor,
}

/// `spectral_norm(nn.Linear(in, out))`.
#[derive(Debug, Clone)]
pub struct SpectralLinear {
    /// W before normalization, `[out, in]`, named `{prefix}weight_orig`.
    pub weight_orig: Param,
    pub bias: Option<Param>,
    vectors: Arc<Mutex<PowerVectors>>,
    /// The state-dict prefix of the buffers (`"0."`).
    prefix: String,
    /// Power iterations per training forward (PyTorch's `n_power_iterations`, 1).
    pub iterations: usize,
}

fn normalize(x: &Tensor) -> Result<Tensor> {
    let n = x
        .sqr()?
        .sum_all()?
        .sqrt()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?;
    Ok((x / n.max(EPS))?)
}

impl SpectralLinear {
    /// Wraps a linear layer's weight (named `{prefix}weight`) and bias; u and v start as normalized standard
    /// normal draws from `rng`, as PyTorch's.
    pub fn new(weight: Param, bias: Option<Param>, rng: &mut Rng) -> Result<Self> {
        let dims = weight.tensor().dims().to_vec();
        if dims.len() != 2 {
            return Err(Error::Shape(format!(
                "spectral norm: a linear weight is [out, in], got {dims:?}"
            )));
        }
        let prefix = weight
            .name
            .strip_suffix("weight")
            .unwrap_or_default()
            .to_string();
        let dtype = weight.tensor().dtype();
        let draw = |n: usize, rng: &mut Rng| -> Result<Tensor> {
            let v: Vec<f64> = (0..n).map(|_| normal(rng)).collect();
            normalize(&Tensor::from_vec(v, n, &Device::Cpu)?.to_dtype(dtype)?)
        };
        let vectors = PowerVectors {
            u: draw(dims[0], rng)?,
            v: draw(dims[1], rng)?,
        };
        let weight_orig = Param {
            name: format!("{prefix}weight_orig"),
            var: weight.var,
        };
        Ok(SpectralLinear {
            weight_orig,
            bias,
            vectors: Arc::new(Mutex::new(vectors)),
            prefix,
            iterations: 1,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PowerVectors> {
        self.vectors.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The parameters in state-dict order: bias, then weight_orig (PyTorch re-registers the weight last).
    pub fn params(&self) -> Vec<&Param> {
        self.bias
            .iter()
            .chain(std::iter::once(&self.weight_orig))
            .collect()
    }

    /// The buffers `weight_u` and `weight_v`.
    pub fn buffers(&self) -> Vec<(String, Tensor)> {
        let pv = self.lock();
        vec![
            (format!("{}weight_u", self.prefix), pv.u.clone()),
            (format!("{}weight_v", self.prefix), pv.v.clone()),
        ]
    }

    /// Loads `weight_u` or `weight_v` (checked shape); `false` for another name.
    pub fn load_buffer(&self, name: &str, t: &Tensor) -> Result<bool> {
        let Some(which) = name.strip_prefix(self.prefix.as_str()) else {
            return Ok(false);
        };
        let mut pv = self.lock();
        let slot = match which {
            "weight_u" => &mut pv.u,
            "weight_v" => &mut pv.v,
            _ => return Ok(false),
        };
        if t.dims() != slot.dims() {
            return Err(Error::Shape(format!(
                "{name}: expected shape {:?}, got {:?}",
                slot.dims(),
                t.dims()
            )));
        }
        *slot = t.to_dtype(slot.dtype())?;
        Ok(true)
    }

    /// W/σ with σ = uᵀWv; with `train`, after the power iterations that update u and v.
    pub fn weight(&self, train: bool) -> Result<Tensor> {
        let w = self.weight_orig.tensor();
        let mut pv = self.lock();
        if train {
            let wd = w.detach();
            for _ in 0..self.iterations {
                let v = normalize(&wd.t()?.matmul(&pv.u.unsqueeze(1)?)?.squeeze(1)?)?;
                let u = normalize(&wd.matmul(&v.unsqueeze(1)?)?.squeeze(1)?)?;
                pv.u = u;
                pv.v = v;
            }
        }
        let sigma =
            pv.u.unsqueeze(0)?
                .matmul(&w.matmul(&pv.v.unsqueeze(1)?)?)?
                .squeeze(1)?
                .squeeze(0)?;
        Ok(w.broadcast_div(&sigma)?)
    }

    /// The layer's output.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let w = self.weight(train)?;
        linear_nd(x, &w, self.bias.as_ref().map(Param::tensor))
    }

    /// `[out, in]`.
    pub fn dims(&self) -> (usize, usize) {
        let d = self.weight_orig.tensor().dims();
        (d[0], d[1])
    }
}

/// The largest singular value of a `[rows, cols]` matrix (row-major f64) by power iteration on WᵀW to a relative
/// change of 1e-12 (at most 10 000 iterations), from a deterministic start.
pub fn spectral_norm_of(w: &[f64], rows: usize, cols: usize) -> f64 {
    if rows == 0 || cols == 0 {
        return 0.0;
    }
    let mut v: Vec<f64> = (0..cols).map(|j| 1.0 + 0.01 * j as f64).collect();
    let mut sigma = 0.0;
    for _ in 0..10_000 {
        let wv: Vec<f64> = (0..rows)
            .map(|i| (0..cols).map(|j| w[i * cols + j] * v[j]).sum())
            .collect();
        let mut wtwv: Vec<f64> = (0..cols)
            .map(|j| (0..rows).map(|i| w[i * cols + j] * wv[i]).sum())
            .collect();
        let n = wtwv.iter().map(|x| x * x).sum::<f64>().sqrt();
        if n == 0.0 {
            return 0.0;
        }
        wtwv.iter_mut().for_each(|x| *x /= n);
        let next = n.sqrt();
        v = wtwv;
        if (next - sigma).abs() <= 1e-12 * next {
            return next;
        }
        sigma = next;
    }
    sigma
}

/// The per-layer spectral projection after an optimizer step (P11's constraint): every weight W of the given
/// `[out, in]` parameters is scaled to W·min(1, bound/‖W‖₂), so the network's Lipschitz bound (the product of
/// the layers' norms, for 1-Lipschitz activations) is at most bound^layers. Returns the norms before projection.
pub fn project(weights: &[&Param], bound: f64) -> Result<Vec<f64>> {
    if !(bound.is_finite() && bound > 0.0) {
        return Err(Error::invalid(
            "spectral projection: the bound must be finite and > 0",
        ));
    }
    let mut norms = Vec::with_capacity(weights.len());
    for p in weights {
        let t = p.tensor();
        let d = t.dims().to_vec();
        if d.len() != 2 {
            return Err(Error::Shape(format!(
                "spectral projection: {} is not a matrix ({d:?})",
                p.name
            )));
        }
        let w: Vec<f64> = t.flatten_all()?.to_dtype(DType::F64)?.to_vec1()?;
        let s = spectral_norm_of(&w, d[0], d[1]);
        if s > bound {
            p.var.set(&(t * (bound / s))?)?;
        }
        norms.push(s);
    }
    Ok(norms)
}

/// A state dict with every spectrally normalized weight folded into a plain `weight`: the triple
/// `N.weight_orig`, `N.weight_u`, `N.weight_v` becomes `N.weight` = W/(uᵀ W v), W reshaped to `[out, rest]` (the
/// weight PyTorch's module uses in eval mode). Other tensors pass through; an incomplete triple is an error.
pub fn fold_spectral_norm(
    tensors: &std::collections::HashMap<String, Tensor>,
) -> Result<std::collections::HashMap<String, Tensor>> {
    let mut out = std::collections::HashMap::new();
    for (k, t) in tensors {
        if let Some(base) = k.strip_suffix("weight_orig") {
            let get = |suffix: &str| {
                tensors.get(&format!("{base}{suffix}")).ok_or_else(|| {
                    Error::invalid(format!(
                        "{k}: a spectrally normalized weight needs {base}weight_u and {base}weight_v"
                    ))
                })
            };
            let (u, v) = (
                get("weight_u")?.to_dtype(DType::F64)?,
                get("weight_v")?.to_dtype(DType::F64)?,
            );
            let w = t.to_dtype(DType::F64)?;
            let rows = w.dims().first().copied().unwrap_or(0);
            let mat = w.reshape((rows, ()))?;
            if u.dims() != [rows] || v.dims() != [mat.dims()[1]] {
                return Err(Error::Shape(format!(
                    "{k}: weight_u must have {rows} and weight_v {} entries",
                    mat.dims()[1]
                )));
            }
            let sigma = u
                .unsqueeze(0)?
                .matmul(&mat.matmul(&v.unsqueeze(1)?)?)?
                .flatten_all()?
                .to_vec1::<f64>()?[0];
            if !(sigma.is_finite() && sigma.abs() > EPS) {
                return Err(Error::invalid(format!(
                    "{k}: the spectral estimate u'Wv is {sigma}; cannot normalize"
                )));
            }
            out.insert(format!("{base}weight"), (w / sigma)?.to_dtype(t.dtype())?);
        } else if k.ends_with("weight_u") || k.ends_with("weight_v") {
            let base = &k[..k.len() - "weight_u".len()];
            if !tensors.contains_key(&format!("{base}weight_orig")) {
                return Err(Error::invalid(format!(
                    "{k} without {base}weight_orig: not a spectrally normalized layer"
                )));
            }
        } else {
            out.insert(k.clone(), t.clone());
        }
    }
    Ok(out)
}
