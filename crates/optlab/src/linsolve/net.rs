//! P18's direction network, the reference's N = 64 model (`src/train.py`) in 2-D: a linear 3×3 convolution to
//! `filters` channels, residual ReLU 3×3 convolutions at full resolution (4), a 2×2 average pool, residual
//! convolutions at half resolution (6), nearest upsampling added to the last full-resolution features, residual
//! convolutions (4) and a per-pixel linear read-out to one channel. Zero padding ('same'); Keras's default
//! initialisation (Glorot-uniform kernels, zero biases). Fully convolutional: one network serves every even grid
//! side.

use crate::nn::conv::conv2d_same;
use crate::nn::{Init, Param};
use crate::rng::{rng_for, Stream};
use crate::tensor_io::{read_safetensors, read_safetensors_metadata, write_safetensors};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// 3×3 convolutions in the network (the read-out is a 16th, 1×1).
const CONVS: usize = 15;

/// The direction network f_θ: a residual r/‖r‖ on the grid to a search direction.
pub struct DirectionNet {
    pub filters: usize,
    params: Vec<Param>,
}

impl DirectionNet {
    /// A freshly initialised network (seeded).
    pub fn new(filters: usize, seed: u64) -> Result<Self> {
        if !(1..=256).contains(&filters) {
            return Err(Error::invalid(format!(
                "DCDM network: filters must be from 1 to 256, not {filters}"
            )));
        }
        let mut init = Init {
            rng: rng_for(seed, Stream::Init, 18),
            dtype: DType::F32,
        };
        let mut params = Vec::with_capacity(2 * CONVS + 2);
        for i in 0..=CONVS {
            let (cin, cout, k) = match i {
                0 => (1, filters, 3),
                CONVS => (filters, 1, 1),
                _ => (filters, filters, 3),
            };
            let bound = (6.0 / ((cin + cout) * k * k) as f64).sqrt();
            params.push(init.uniform(format!("conv{i}.weight"), &[cout, cin, k, k], bound)?);
            params.push(init.zeros(format!("conv{i}.bias"), &[cout])?);
        }
        Ok(DirectionNet { filters, params })
    }

    pub fn params(&self) -> &[Param] {
        &self.params
    }

    fn conv(&self, x: &Tensor, i: usize, detach: bool) -> Result<Tensor> {
        let (w, b) = (self.params[2 * i].tensor(), self.params[2 * i + 1].tensor());
        let (w, b) = if detach {
            (w.detach(), b.detach())
        } else {
            (w.clone(), b.clone())
        };
        let y = conv2d_same(x, &w)?;
        Ok(y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?)?)
    }

    /// f_θ(x) for x of shape `[batch, 1, n, n]` with n even; `detach` skips the autodiff graph (inference).
    pub fn forward(&self, x: &Tensor, detach: bool) -> Result<Tensor> {
        let (_, c, h, w) = x.dims4()?;
        if c != 1 || h != w || h % 2 != 0 || h < 2 {
            return Err(Error::Shape(format!(
                "DCDM network: input [batch, 1, n, n] with an even n, not [_, {c}, {h}, {w}] (the network pools by 2)"
            )));
        }
        // About a dozen full-resolution feature maps are alive at once (more with the autodiff graph).
        let maps = if detach { 12.0 } else { 40.0 };
        crate::memory::check(
            "the DCDM network's feature maps",
            maps * x.dim(0)? as f64 * (h * w) as f64 * self.filters as f64 * 4.0,
            "use a smaller grid or batch",
        )?;
        let conv = |x: &Tensor, i: usize| self.conv(x, i, detach);
        let relu = |x: &Tensor, i: usize| -> Result<Tensor> { Ok(conv(x, i)?.relu()?) };
        let first = conv(x, 0)?;
        let mut la = relu(&first, 1)?;
        let mut lb = relu(&la, 2)?;
        la = (relu(&lb, 3)? + &la)?;
        lb = relu(&la, 4)?;
        let mut apa = lb.avg_pool2d(2)?;
        for i in [5, 7, 9] {
            let apb = relu(&apa, i)?;
            apa = (relu(&apb, i + 1)? + &apa)?;
        }
        let mut upa = (apa.upsample_nearest2d(h, w)? + &lb)?;
        for i in [11, 13] {
            let upb = relu(&upa, i)?;
            upa = (relu(&upb, i + 1)? + &upa)?;
        }
        conv(&upa, CONVS)
    }

    /// Saves the weights as safetensors (with the filter count in the metadata).
    pub fn save(&self, path: &Path) -> Result<()> {
        let tensors: Vec<(String, Tensor)> = self
            .params
            .iter()
            .map(|p| (p.name.clone(), p.tensor().clone()))
            .collect();
        let meta = serde_json::json!({"model": "dcdm", "filters": self.filters});
        let meta = HashMap::from([("optlab".to_string(), meta.to_string())]);
        write_safetensors(path, &tensors, Some(meta))
    }

    /// Loads a network saved by [`DirectionNet::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let meta = read_safetensors_metadata(path)?;
        let info: serde_json::Value = meta
            .get("optlab")
            .and_then(|s| serde_json::from_str(s).ok())
            .ok_or_else(|| {
                Error::file(path, "not a DCDM network saved by optlab linsolve train")
            })?;
        let filters = match (info["model"].as_str(), info["filters"].as_u64()) {
            (Some("dcdm"), Some(f)) => f as usize,
            _ => {
                return Err(Error::file(
                    path,
                    "not a DCDM network saved by optlab linsolve train",
                ))
            }
        };
        let net = DirectionNet::new(filters, 0)?;
        let tensors = read_safetensors(path)?;
        for p in &net.params {
            let t = tensors
                .get(&p.name)
                .ok_or_else(|| Error::file(path, format!("the tensor {} is missing", p.name)))?;
            if t.dims() != p.tensor().dims() {
                return Err(Error::file(
                    path,
                    format!(
                        "{} has shape {:?}, expected {:?}",
                        p.name,
                        t.dims(),
                        p.tensor().dims()
                    ),
                ));
            }
            let t = t.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
            if t.flatten_all()?
                .to_vec1::<f32>()?
                .iter()
                .any(|v| !v.is_finite())
            {
                return Err(Error::file(
                    path,
                    format!("{} has a NaN or infinite value", p.name),
                ));
            }
            p.var.set(&t)?;
        }
        Ok(net)
    }
}
