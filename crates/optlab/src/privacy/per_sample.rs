//! Per-sample gradients without a per-sample loop, as opacus's grad samplers: one forward pass records each
//! parameterised primitive's input and output probe ([`crate::nn::tape`]); one backward pass of Σ_b ℓ_b gives
//! every probe's gradient, the per-example error signal; per-sample parameter gradients are then batched
//! products of the two (outer products for Linear, shifted-window products for Conv2d, Σ g·x̂ for the GroupNorm
//! and LayerNorm affines, row scatters for embeddings). Per-sample norms of Linear layers on unbatched rows use
//! ‖g_b‖²‖a_b‖² and never form the gradient ("ghost" norms, Goodfellow 2015).
//!
//! Layers that mix the samples of a batch (BatchNorm, BCN, PowerNorm) have no per-sample gradient and are refused,
//! as opacus refuses them.

use crate::nn::tape::{self, Site};

use crate::nn::transformer::SeqNorm;
use crate::nn::{Layer, NormKind, Param, Sequential};
use crate::{Error, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, TensorId, D};
use std::collections::HashMap;

/// What a recorded forward pass leaves for per-sample gradients.
#[derive(Debug)]
pub struct PerSampleTape {
    sites: Vec<Site>,
    batch: usize,
}

/// Refuses a model whose layers mix samples or whose parameters the tape cannot attribute to examples.
pub fn check_model(model: &Sequential) -> Result<()> {
    let mixing = "mixes the samples of a batch, so per-sample gradients (and DP-SGD) are undefined; use GroupNorm \
                  instead (norm=gn in a CNN, norm=ln in a transformer), as opacus requires";
    for l in model.layers() {
        check_layer(l, mixing)?;
    }
    Ok(())
}

fn check_layer(l: &Layer, mixing: &str) -> Result<()> {
    let layer_norm = |n: &SeqNorm| matches!(n, SeqNorm::Layer { .. });
    match l {
        Layer::Norm(n) if n.kind != NormKind::Group => {
            Err(Error::invalid(format!("{} {mixing}", l.describe())))
        }
        Layer::SeqNorm(n) if !layer_norm(n) => {
            Err(Error::invalid(format!("{} {mixing}", n.describe())))
        }
        Layer::Block(b) => {
            for n in b.norms() {
                if !layer_norm(n) {
                    return Err(Error::invalid(format!("{} {mixing}", n.describe())));
                }
            }
            Ok(())
        }
        Layer::Residual(b) => {
            for p in b.parts() {
                check_layer(p, mixing)?;
            }
            Ok(())
        }
        Layer::Conv2d {
            standardize: true, ..
        } => Err(Error::invalid(
            "per-sample gradients of weight-standardized convolutions are not implemented; use a CNN without ws",
        )),
        _ => Ok(()),
    }
}

/// The training-mode forward pass of `model` on `x`, recorded for per-sample gradients. The returned output
/// equals the plain forward pass's bit for bit.
pub fn forward(model: &Sequential, x: &Tensor) -> Result<(Tensor, PerSampleTape)> {
    check_model(model)?;
    let batch = x.dims().first().copied().unwrap_or(0);
    let (out, sites) = tape::record(|| model.forward_mode(x, true))?;
    // Uses of each parameter.
    let mut seen: HashMap<TensorId, usize> = HashMap::new();
    for s in &sites {
        for id in site_params(s) {
            *seen.entry(id).or_default() += 1;
        }
    }
    for p in model.params() {
        match seen.get(&p.tensor().id()) {
            None => {
                return Err(Error::invalid(format!(
                    "parameter '{}' is used by an operation without per-sample gradients",
                    p.name
                )))
            }
            Some(n) if *n > 1 => {
                return Err(Error::invalid(format!(
                    "parameter '{}' is used {n} times in one forward pass (shared weights have no per-sample gradients here)",
                    p.name
                )))
            }
            _ => {}
        }
    }
    Ok((out, PerSampleTape { sites, batch }))
}

fn site_params(s: &Site) -> Vec<TensorId> {
    match s {
        Site::Linear { weight, bias, .. } | Site::Conv2d { weight, bias, .. } => {
            std::iter::once(*weight).chain(*bias).collect()
        }
        Site::Affine { weight, bias, .. } => vec![*weight, *bias],
        Site::Embedding {
            token, position, ..
        } => vec![*token, *position],
    }
}

fn probe_of(s: &Site) -> &candle_core::Var {
    match s {
        Site::Linear { probe, .. }
        | Site::Conv2d { probe, .. }
        | Site::Affine { probe, .. }
        | Site::Embedding { probe, .. } => probe,
    }
}

/// The kernel size k of a square stride-1 convolution of `input` (`[B, Cin, H, W]`, zero-padded by `padding`)
/// with output `ho × wo`, and its k² input windows in row-major tap order, each `[B, Cin, ho·wo]`.
fn conv_windows(
    input: &Tensor,
    padding: usize,
    ho: usize,
    wo: usize,
) -> Result<(usize, Vec<Tensor>)> {
    let (b, cin, h, w) = input.dims4()?;
    let k = h + 2 * padding + 1 - ho;
    if w + 2 * padding + 1 - wo != k {
        return Err(Error::Shape("non-square convolution kernel".into()));
    }
    let a = input
        .pad_with_zeros(2, padding, padding)?
        .pad_with_zeros(3, padding, padding)?;
    let mut windows = Vec::with_capacity(k * k);
    for ky in 0..k {
        for kx in 0..k {
            windows.push(
                a.narrow(2, ky, ho)?
                    .narrow(3, kx, wo)?
                    .reshape((b, cin, ho * wo))?,
            );
        }
    }
    Ok((k, windows))
}

/// `[B, T, k]` from `[B, ..., k]` (T = 1 for a matrix).
fn as_rows(t: &Tensor) -> Result<Tensor> {
    let b = t.dims()[0];
    let k = *t.dims().last().expect("rank >= 2");
    Ok(t.reshape((b, t.elem_count() / (b * k).max(1), k))?)
}

impl PerSampleTape {
    /// The batch size B.
    pub fn batch(&self) -> usize {
        self.batch
    }

    fn signal(&self, s: &Site, grads: &GradStore) -> Result<Tensor> {
        let p = probe_of(s);
        match grads.get(p.as_tensor()) {
            Some(g) => Ok(g.clone()),
            None => Ok(p.as_tensor().zeros_like()?),
        }
    }

    /// Each site's per-sample gradients `(param id, [B, shape...])`.
    fn site_grads(&self, s: &Site, grads: &GradStore) -> Result<Vec<(TensorId, Tensor)>> {
        let g = self.signal(s, grads)?;
        let b = self.batch;
        Ok(match s {
            Site::Linear {
                weight,
                bias,
                input,
                ..
            } => {
                let (a, g) = (as_rows(input)?, as_rows(&g)?);
                let gw = g.transpose(1, 2)?.contiguous()?.matmul(&a.contiguous()?)?;
                let mut v = vec![(*weight, gw)];
                if let Some(bias) = bias {
                    v.push((*bias, g.sum(1)?));
                }
                v
            }
            Site::Conv2d {
                weight,
                bias,
                input,
                padding,
                ..
            } => {
                let (_, cout, ho, wo) = g.dims4()?;
                let (k, windows) = conv_windows(input, *padding, ho, wo)?;
                let cin = input.dims()[1];
                let g2 = g.reshape((b, cout, ho * wo))?;
                let mut taps = Vec::with_capacity(k * k);
                for win in windows {
                    // [B, Cout, HW] · [B, HW, Cin] → [B, Cout, Cin]
                    taps.push(
                        g2.matmul(&win.transpose(1, 2)?.contiguous()?)?
                            .unsqueeze(3)?,
                    );
                }
                let gw = Tensor::cat(&taps, 3)?.reshape((b, cout, cin, k, k))?;
                let mut v = vec![(*weight, gw)];
                if let Some(bias) = bias {
                    v.push((*bias, g2.sum(2)?));
                }
                v
            }
            Site::Affine {
                weight,
                bias,
                normalized,
                channel_axis,
                ..
            } => {
                let per_channel = |t: Tensor| -> Result<Tensor> {
                    let t = if *channel_axis != 1 {
                        t.transpose(1, *channel_axis)?.contiguous()?
                    } else {
                        t
                    };
                    Ok(if t.rank() > 2 {
                        t.flatten_from(2)?.sum(2)?
                    } else {
                        t
                    })
                };
                vec![
                    (*weight, per_channel(g.mul(normalized)?)?),
                    (*bias, per_channel(g)?),
                ]
            }
            Site::Embedding {
                token,
                position,
                ids,
                batch,
                seq,
                vocab,
                context,
                ..
            } => {
                let (v, ctx) = (*vocab, *context);
                let c = g.dim(D::Minus1)?;
                let rows = g.reshape((batch * seq, c))?;
                // Example b's rows of the table are b·V..(b + 1)·V.
                let tok =
                    scatter_tokens(&rows, ids, batch * v, |r, id| (r / seq) * v + id as usize)?;
                let pos = g.pad_with_zeros(1, 0, ctx - seq)?;
                vec![(*token, tok.reshape((*batch, v, c))?), (*position, pos)]
            }
        })
    }

    /// Σ_b w_{b,p} ∇_p ℓ_b for every parameter p, with one weight per example and parameter (`weights[p]`,
    /// `[B]`, in `params` order): the per-layer clipped sum, computed from the signals scaled by the weights
    /// without forming per-sample gradients (one product per parameter, as a backward pass).
    pub fn weighted_sums(
        &self,
        grads: &GradStore,
        params: &[Param],
        weights: &[Tensor],
    ) -> Result<Vec<(String, Tensor)>> {
        let by_param: HashMap<TensorId, &Tensor> = params
            .iter()
            .zip(weights)
            .map(|(p, w)| (p.tensor().id(), w))
            .collect();
        // The signal of `s` with each example's rows scaled by parameter `id`'s weight.
        let scaled = |g: &Tensor, id: TensorId| -> Result<Tensor> {
            let w = by_param.get(&id).ok_or_else(|| {
                Error::invalid("a recorded parameter has no clipping weight".to_string())
            })?;
            let mut shape = vec![self.batch];
            shape.extend(std::iter::repeat_n(1, g.rank() - 1));
            Ok(g.broadcast_mul(&w.reshape(shape)?.to_dtype(g.dtype())?)?)
        };
        let same_weights = |p: TensorId, q: TensorId| match (by_param.get(&p), by_param.get(&q)) {
            (Some(a), Some(b)) => a.id() == b.id(),
            _ => false,
        };
        let mut by_id: HashMap<TensorId, Tensor> = HashMap::new();
        let b = self.batch;
        for s in &self.sites {
            let g = self.signal(s, grads)?;
            let mut put = |id: TensorId, t: Tensor| {
                by_id.insert(id, t);
            };
            match s {
                Site::Linear {
                    weight,
                    bias,
                    input,
                    ..
                } => {
                    let k = *input.dims().last().expect("rank >= 2");
                    let a = input.reshape((input.elem_count() / k.max(1), k))?;
                    let flat = |t: Tensor| -> Result<Tensor> {
                        let o = *t.dims().last().expect("rank >= 2");
                        Ok(t.reshape((t.elem_count() / o.max(1), o))?)
                    };
                    let gw = flat(scaled(&g, *weight)?)?;
                    put(*weight, gw.t()?.matmul(&a)?);
                    if let Some(bias) = bias {
                        // The weight's scaled signal serves the bias when both have the same weights (flat).
                        let gb = if same_weights(*weight, *bias) {
                            gw
                        } else {
                            flat(scaled(&g, *bias)?)?
                        };
                        put(*bias, column_sums(&gb)?);
                    }
                }
                Site::Conv2d {
                    weight,
                    bias,
                    input,
                    padding,
                    ..
                } => {
                    let (_, cout, ho, wo) = g.dims4()?;
                    let (k, windows) = conv_windows(input, *padding, ho, wo)?;
                    let cin = input.dims()[1];
                    // [Cout, B·HW]
                    let gw = scaled(&g, *weight)?
                        .reshape((b, cout, ho * wo))?
                        .transpose(0, 1)?
                        .contiguous()?
                        .reshape((cout, b * ho * wo))?;
                    let mut taps = Vec::with_capacity(k * k);
                    for win in windows {
                        let win = win
                            .transpose(1, 2)?
                            .contiguous()?
                            .reshape((b * ho * wo, cin))?;
                        taps.push(gw.matmul(&win)?.unsqueeze(2)?);
                    }
                    put(*weight, Tensor::cat(&taps, 2)?.reshape((cout, cin, k, k))?);
                    if let Some(bias) = bias {
                        put(*bias, scaled(&g, *bias)?.sum((0, 2, 3))?);
                    }
                }
                Site::Affine {
                    weight,
                    bias,
                    normalized,
                    channel_axis,
                    ..
                } => {
                    let per_channel = |t: Tensor| -> Result<Tensor> {
                        let t = t.transpose(0, *channel_axis)?.contiguous()?;
                        let c = t.dims()[0];
                        Ok(t.reshape((c, t.elem_count() / c.max(1)))?.sum(1)?)
                    };
                    put(*weight, per_channel(scaled(&g, *weight)?.mul(normalized)?)?);
                    put(*bias, per_channel(scaled(&g, *bias)?)?);
                }
                Site::Embedding {
                    token,
                    position,
                    ids,
                    batch,
                    seq,
                    vocab,
                    context,
                    ..
                } => {
                    let c = g.dim(D::Minus1)?;
                    let rows = scaled(&g, *token)?.reshape((batch * seq, c))?;
                    put(
                        *token,
                        scatter_tokens(&rows, ids, *vocab, |_, id| id as usize)?,
                    );
                    let pos = scaled(&g, *position)?
                        .sum(0)?
                        .pad_with_zeros(0, 0, context - seq)?;
                    put(*position, pos);
                }
            }
        }
        assemble(by_id, params, |p| p.tensor().dims().to_vec())
    }

    /// Per-sample gradients of every parameter, `(name, [B, shape...])` in `params` order, from the gradients
    /// of a backward pass of Σ_b ℓ_b (any loss whose b-th term depends on example b alone; for a mean, the
    /// per-sample gradients are those of ℓ_b / B).
    pub fn gradients(&self, grads: &GradStore, params: &[Param]) -> Result<Vec<(String, Tensor)>> {
        let mut by_id: HashMap<TensorId, Tensor> = HashMap::new();
        for s in &self.sites {
            by_id.extend(self.site_grads(s, grads)?);
        }
        assemble(by_id, params, |p| {
            let mut want = vec![self.batch];
            want.extend_from_slice(p.tensor().dims());
            want
        })
    }

    /// The squared l2 norm of every example's gradient, per parameter: `(name, [B])` in `params` order.
    pub fn squared_norms(
        &self,
        grads: &GradStore,
        params: &[Param],
    ) -> Result<Vec<(String, Tensor)>> {
        let mut by_id: HashMap<TensorId, Tensor> = HashMap::new();
        for s in &self.sites {
            match s {
                Site::Linear {
                    weight,
                    bias,
                    input,
                    ..
                } if input.rank() == 2 => {
                    // One row per example: ‖g aᵀ‖² = ‖g‖²‖a‖².
                    let g = self.signal(s, grads)?;
                    let gg = g.sqr()?.sum(1)?;
                    by_id.insert(*weight, gg.mul(&input.sqr()?.sum(1)?)?);
                    if let Some(bias) = bias {
                        by_id.insert(*bias, gg);
                    }
                }
                _ => {
                    for (id, t) in self.site_grads(s, grads)? {
                        by_id.insert(id, t.sqr()?.flatten_from(1)?.sum(1)?);
                    }
                }
            }
        }
        params
            .iter()
            .map(|p| {
                by_id
                    .remove(&p.tensor().id())
                    .map(|t| (p.name.clone(), t))
                    .ok_or_else(|| {
                        Error::invalid(format!("'{}' was not in the recorded pass", p.name))
                    })
            })
            .collect()
    }
}

/// The column sums of a matrix `[rows, cols]` as `[cols]`, by a product with a row of ones (a reduction over
/// the leading dimension is several times slower than the product on the CPU).
fn column_sums(t: &Tensor) -> Result<Tensor> {
    let (rows, cols) = t.dims2()?;
    let ones = Tensor::ones((1, rows), t.dtype(), t.device())?;
    Ok(ones.matmul(t)?.reshape(cols)?)
}

/// Each parameter's gradient, in `params` order, checked against the shape `want` gives.
fn assemble(
    mut by_id: HashMap<TensorId, Tensor>,
    params: &[Param],
    want: impl Fn(&Param) -> Vec<usize>,
) -> Result<Vec<(String, Tensor)>> {
    params
        .iter()
        .map(|p| {
            let t = by_id.remove(&p.tensor().id()).ok_or_else(|| {
                Error::invalid(format!("'{}' was not in the recorded pass", p.name))
            })?;
            let want = want(p);
            if t.dims() != want.as_slice() {
                return Err(Error::Shape(format!(
                    "gradient of '{}' has shape {:?}, expected {want:?}",
                    p.name,
                    t.dims()
                )));
            }
            Ok((p.name.clone(), t))
        })
        .collect()
}

/// Adds row r of `rows` (`[B·T, C]`) into row `slot(r, id)` of a zero `[slots, C]` table, for every position
/// r whose token is not padding.
fn scatter_tokens(
    rows: &Tensor,
    ids: &[Option<u32>],
    slots: usize,
    slot: impl Fn(usize, u32) -> usize,
) -> Result<Tensor> {
    let (mut dst, mut src) = (Vec::new(), Vec::new());
    for (r, id) in ids.iter().enumerate() {
        if let Some(id) = id {
            dst.push(slot(r, *id) as u32);
            src.push(r as u32);
        }
    }
    let dev = rows.device();
    let picked = rows.index_select(&Tensor::new(src.as_slice(), dev)?, 0)?;
    Ok(
        Tensor::zeros((slots, rows.dim(1)?), rows.dtype(), dev)?.index_add(
            &Tensor::new(dst.as_slice(), dev)?,
            &picked,
            0,
        )?,
    )
}

/// The per-sample gradient norms (l2 over all parameters) in f64.
pub fn total_norms(squared: &[(String, Tensor)]) -> Result<Vec<f64>> {
    let mut acc: Option<Vec<f64>> = None;
    for (_, t) in squared {
        let v: Vec<f64> = t.to_dtype(DType::F64)?.to_vec1()?;
        acc = Some(match acc {
            None => v,
            Some(a) => a.iter().zip(&v).map(|(x, y)| x + y).collect(),
        });
    }
    Ok(acc.unwrap_or_default().iter().map(|s| s.sqrt()).collect())
}
