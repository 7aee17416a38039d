//! Exact Hessian-vector products of an MLP's, a CNN's or a transformer language model's mean loss by Pearlmutter's
//! R-operator (forward-mode derivatives carried through the forward and the backward pass), for the curvature
//! analyses of P27/P36: no second graph is built, and H·v costs about two gradients' worth of matrix products
//! (double backward costs about three). The transformer's layers are in [`super::rop_transformer`].
//!
//! R(·) is the directional derivative along the parameter direction v. For an affine step y = (c·x) Wᵀ + b with
//! direction (V, v_b): R(y) = (c·x) Vᵀ + c·R(x) Wᵀ + v_b going forward; going back, with g = ∂L/∂y,
//! (H v)_W = R(g)ᵀ (c·x) + gᵀ c·R(x), (H v)_b = Σ_rows R(g), and R(∂L/∂x) = c·(R(g) W + g V). An activation
//! y = σ(a) gives R(y) = σ′(a) R(a) forward and R(∂L/∂a) = σ′(a) R(g) + σ″(a) R(a) g back. The loss closes the
//! loop: for the mean cross-entropy R(∂L/∂z) = (p ⊙ R(z) − p ⟨p, R(z)⟩)/count per row, for the MSE 2 R(z)/N.
//! A convolution is bilinear in (x, W) like the affine step, with the convolution, its input gradient and its
//! kernel gradient in place of the three products; 2×2 max pooling picks (and its gradient scatters to) the
//! input's window maxima, the same positions for the values and their R-derivatives (no second-order term).
//!
//! Models of other layers (batch, group and power normalization, weight-standardized or non-"same" convolutions)
//! and padded token batches keep double backward; the two are tested against each other to 1e-10 in f64.

use super::rop_transformer::{
    block_backward, block_covered, block_forward, block_params, layer_norm_params, norm_backward,
    norm_forward, BlockSaved, Dual, NormSaved,
};
use crate::data::IGNORE;
use crate::nn::conv::{bias_grad, conv_pair, flipped, is_same, weight_grad_op};
use crate::nn::fused::{relu_grad, sum_rows};
use crate::nn::matmul::{matmul_sum, right_operand_t};
use crate::nn::pool::{max_pool2, scatter_to_maxima, select_at_maxima};
use crate::nn::transformer::{Block, Embedding};
use crate::nn::{Activation, Layer, Sequential};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, D};

/// One step of the model as the R-operator sees it (the parameters detached: nothing here is recorded).
enum Step {
    /// y = (mult·x) Wᵀ + b.
    Affine {
        w: Tensor,
        b: Option<Tensor>,
        mult: f64,
    },
    /// y = conv(x, W) + b, stride 1, "same" zero padding.
    Conv {
        w: Tensor,
        b: Option<Tensor>,
    },
    Act(Activation),
    Pool,
    Flatten,
    /// Token and position embeddings of P12's language model (ids `[B, T]` to `[B, T, C]`).
    Embed(Embedding),
    /// LayerNorm over the last axis: weight, bias.
    Norm(Tensor, Tensor),
    /// A pre-norm transformer block with LayerNorm (or none).
    Block(Box<Block>),
}

/// The model's steps, or `None` when a layer is not one the R-operator covers (Linear, muP's readout, "same"
/// Conv2d, ReLU, tanh, GELU, 2×2 max pooling, Flatten, the embeddings, LayerNorm and LayerNorm blocks).
fn steps(model: &Sequential) -> Option<Vec<Step>> {
    model
        .layers()
        .iter()
        .map(|l| match l {
            Layer::Linear { weight, bias } => Some(Step::Affine {
                w: weight.tensor().detach(),
                b: bias.as_ref().map(|b| b.tensor().detach()),
                mult: 1.0,
            }),
            Layer::Readout { weight, bias, mult } => Some(Step::Affine {
                w: weight.tensor().detach(),
                b: bias.as_ref().map(|b| b.tensor().detach()),
                mult: *mult,
            }),
            Layer::Conv2d {
                weight,
                bias,
                padding,
                standardize: false,
            } if is_same(weight.tensor(), *padding).ok()? => Some(Step::Conv {
                w: weight.tensor().detach(),
                b: bias.as_ref().map(|b| b.tensor().detach()),
            }),
            Layer::Act(a) => Some(Step::Act(*a)),
            Layer::MaxPool2 => Some(Step::Pool),
            Layer::Flatten => Some(Step::Flatten),
            Layer::Embed(e) => Some(Step::Embed(e.clone())),
            Layer::SeqNorm(n) => layer_norm_params(n).map(|(w, b)| Step::Norm(w, b)),
            Layer::Block(b) if block_covered(b) => Some(Step::Block(b.clone())),
            _ => None,
        })
        .collect()
}

/// Whether [`hvp`] computes the products of `model` on `x` (it returns `None` otherwise): every layer is one it
/// covers, each convolution or pooling sees a batch of images, each block a batch of sequences, each affine step
/// rows (a last affine step may see sequences: its positions are the rows), token ids hold no padding, and the
/// model runs in f32 or f64 on the CPU.
pub(crate) fn applies(model: &Sequential, x: &Tensor) -> bool {
    steps(model).is_some_and(|steps| {
        covers(&steps, x.rank())
            && on_cpu(model, x)
            && match steps.first() {
                Some(Step::Embed(e)) => embedding_ids(e, x).is_some(),
                _ => true,
            }
    })
}

/// Whether the model and its input are f32 or f64 on the CPU, where the fused steps run.
fn on_cpu(model: &Sequential, x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(model.dtype(), DType::F32 | DType::F64)
}

/// Whether the steps fit inputs of rank `rank` (see [`applies`]).
fn covers(steps: &[Step], rank: usize) -> bool {
    let mut rank = rank;
    let last = steps.len().saturating_sub(1);
    steps.iter().enumerate().all(|(i, s)| match s {
        Step::Flatten => {
            rank = 2;
            true
        }
        Step::Affine { .. } => {
            let ok = rank == 2 || (i == last && rank > 2);
            rank = 2;
            ok
        }
        Step::Conv { .. } | Step::Pool => rank == 4,
        Step::Act(_) | Step::Norm(..) => rank >= 2,
        Step::Embed(_) => {
            let ok = rank == 2;
            rank = 3;
            ok
        }
        Step::Block(_) => rank == 3,
    })
}

/// What the loss compares the model's output with.
pub(crate) enum Target<'a> {
    /// Class labels `[batch]` (u32, [`IGNORE`] left out): the mean cross-entropy.
    Classes(&'a Tensor),
    /// Values of the output's shape: the mean squared error over all entries.
    Values(&'a Tensor),
}

/// What the backward pass needs of one step: its input and the input's R-derivative (`None`: zero), and what a
/// step of several operations keeps.
struct Saved {
    input: Tensor,
    r_input: Option<Tensor>,
    extra: Extra,
}

enum Extra {
    None,
    /// The input's dims, where an affine step saw its positions as rows.
    Dims(Vec<usize>),
    Norm(NormSaved),
    Block(Box<BlockSaved>),
}

/// σ′(a) and σ″(a) (`None`: zero).
pub(super) fn derivatives(act: Activation, a: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
    Ok(match act {
        // PyTorch's and the fused op's gradient: [a > 0], none at 0.
        Activation::Relu => (a.gt(0.0)?.to_dtype(a.dtype())?, None),
        Activation::Tanh => {
            let t = a.tanh()?;
            let d1 = t.sqr()?.affine(-1.0, 1.0)?;
            let d2 = (&t * &d1)?.affine(-2.0, 0.0)?;
            (d1, Some(d2))
        }
        Activation::Gelu => {
            // σ = a Φ(a): σ′ = Φ + a φ, σ″ = φ (2 − a²).
            let cdf = (a * std::f64::consts::FRAC_1_SQRT_2)?
                .erf()?
                .affine(0.5, 0.5)?;
            let a2 = a.sqr()?;
            let pdf = a2.affine(-0.5, 0.0)?.exp()?.affine(
                0.5 * std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2,
                0.0,
            )?;
            let d1 = (cdf + (a * &pdf)?)?;
            let d2 = (pdf * a2.affine(-1.0, 2.0)?)?;
            (d1, Some(d2))
        }
    })
}

/// σ′(a) ⊙ t (for ReLU in one pass).
fn times_derivative(act: Activation, a: &Tensor, t: &Tensor) -> Result<Tensor> {
    Ok(match act {
        Activation::Relu => relu_grad(a, t)?,
        _ => (t * derivatives(act, a)?.0)?,
    })
}

/// ∂L/∂z and R(∂L/∂z) for the output z and its R-derivative `rz`.
fn loss_derivatives(z: &Tensor, rz: &Tensor, target: &Target<'_>) -> Result<(Tensor, Tensor)> {
    match target {
        Target::Values(y) => {
            if y.elem_count() != z.elem_count() {
                return Err(Error::Shape(format!(
                    "targets of shape {:?} for outputs of shape {:?}",
                    y.dims(),
                    z.dims()
                )));
            }
            let y = &y.reshape(z.dims())?;
            let scale = 2.0 / z.elem_count().max(1) as f64;
            Ok((
                (z - y.to_dtype(z.dtype())?)?.affine(scale, 0.0)?,
                rz.affine(scale, 0.0)?,
            ))
        }
        Target::Classes(labels) => {
            let (rows, classes) = z.dims2()?;
            let ids: Vec<u32> = labels.flatten_all()?.to_vec1()?;
            if ids.len() != rows {
                return Err(Error::Shape(format!(
                    "{} labels for {rows} outputs",
                    ids.len()
                )));
            }
            if let Some(bad) = ids.iter().find(|&&l| l != IGNORE && l as usize >= classes) {
                return Err(Error::invalid(format!(
                    "label {bad} is out of range for {classes} classes"
                )));
            }
            let count = ids.iter().filter(|&&l| l != IGNORE).count().max(1) as f64;
            let zs: Vec<f64> = z.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
            let rs: Vec<f64> = rz.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
            let (mut g, mut rg) = (vec![0.0; rows * classes], vec![0.0; rows * classes]);
            for (i, &label) in ids.iter().enumerate() {
                if label == IGNORE {
                    continue;
                }
                let span = i * classes..(i + 1) * classes;
                let (z, r) = (&zs[span.clone()], &rs[span.clone()]);
                let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = z.iter().map(|v| (v - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                let p_r: f64 = e.iter().zip(r).map(|(e, r)| e / sum * r).sum();
                for (k, (&ek, &rk)) in e.iter().zip(r).enumerate() {
                    let p = ek / sum;
                    g[i * classes + k] = (p - f64::from(k == label as usize)) / count;
                    rg[i * classes + k] = p * (rk - p_r) / count;
                }
            }
            let back = |v: Vec<f64>| -> Result<Tensor> {
                Ok(Tensor::from_vec(v, (rows, classes), &Device::Cpu)?.to_dtype(z.dtype())?)
            };
            Ok((back(g)?, back(rg)?))
        }
    }
}

/// A value and its R-derivative (zero when `None`).
fn dual(h: &Tensor, rh: &Option<Tensor>) -> Result<Dual> {
    Ok(Dual {
        v: h.clone(),
        r: match rh {
            Some(r) => r.clone(),
            None => h.zeros_like()?,
        },
    })
}

/// The token ids of a batch `[B, T]` as `[B·T]` u32, or `None` when the model refuses them (its own check) or one
/// is padding.
fn embedding_ids(e: &Embedding, x: &Tensor) -> Option<Tensor> {
    let (ids, _, _) = e.ids(x).ok()?;
    let vocab = e.tok.var.dims()[0];
    if ids.iter().any(|&i| i as usize >= vocab) {
        return None;
    }
    let n = ids.len();
    Tensor::from_vec(ids, n, x.device()).ok()
}

/// An affine map on rows under R: y = x Wᵀ + b and R(y) = x Vᵀ + v_b + R(x) Wᵀ (R(x) `None`: zero), from
/// [W, V] and [b, v_b]; each output is one buffer the products accumulate into.
pub(super) fn affine_forward(
    x: &Tensor,
    rx: Option<&Tensor>,
    [w, vw]: [&Tensor; 2],
    [b, vb]: [Option<&Tensor>; 2],
) -> Result<(Tensor, Tensor)> {
    let (wt, vt) = (right_operand_t(w)?, right_operand_t(vw)?);
    let y = matmul_sum(&[(x, &wt)], b)?;
    let r = match rx {
        Some(rx) => matmul_sum(&[(x, &vt), (rx, &wt)], vb)?,
        None => matmul_sum(&[(x, &vt)], vb)?,
    };
    Ok((y, r))
}

/// An affine map's weight block of H v, R(g)ᵀ x + gᵀ R(x), from its input x, R(x) and the output's [g, R(g)].
pub(super) fn affine_weight_hv(
    x: &Tensor,
    rx: Option<&Tensor>,
    [g, rg]: [&Tensor; 2],
) -> Result<Tensor> {
    let rgt = rg.t()?;
    Ok(match rx {
        Some(rx) => matmul_sum(&[(&rgt, x), (&g.t()?, rx)], None)?,
        None => matmul_sum(&[(&rgt, x)], None)?,
    })
}

/// An affine map's input [g W, R(g) W + g V] from the output's [g, R(g)] and [W, V].
pub(super) fn affine_input_grad(
    [w, vw]: [&Tensor; 2],
    [g, rg]: [&Tensor; 2],
) -> Result<[Tensor; 2]> {
    Ok([
        matmul_sum(&[(g, w)], None)?,
        matmul_sum(&[(rg, w), (g, vw)], None)?,
    ])
}

/// A step's saved values, and the value and R-derivative it passes on.
type Stepped = (Saved, Tensor, Option<Tensor>);

impl Step {
    /// One step forward with R-derivatives on the value `h` and its R-derivative `rh` (`None`: zero), its
    /// parameters' directions from `v[*next]` on (`next` moves past them): what its backward step needs, and the
    /// new value and R-derivative; `None` when the input is one the R-operator leaves to double backward (padded
    /// token ids).
    fn forward(
        &self,
        h: Tensor,
        rh: Option<Tensor>,
        v: &[Tensor],
        next: &mut usize,
    ) -> Result<Option<Stepped>> {
        let (mut h, mut rh) = (h, rh);
        let saved = match self {
            Step::Affine { w, b, mult } => {
                // A sequence model's readout: positions as rows.
                let dims = (h.rank() > 2).then(|| h.dims().to_vec());
                if dims.is_some() {
                    let c = h.dim(D::Minus1)?;
                    h = h.reshape(((), c))?;
                    rh = rh.map(|r| r.reshape(((), c))).transpose()?;
                }
                let (input, r_input) = if *mult == 1.0 {
                    (h.clone(), rh.clone())
                } else {
                    ((&h * *mult)?, rh.as_ref().map(|r| r * *mult).transpose()?)
                };
                let (vw, vb) = (&v[*next], b.as_ref().map(|_| &v[*next + 1]));
                *next += 1 + usize::from(b.is_some());
                let (y, r) = affine_forward(&input, r_input.as_ref(), [w, vw], [b.as_ref(), vb])?;
                (h, rh) = (y, Some(r));
                Saved {
                    input,
                    r_input,
                    extra: dims.map_or(Extra::None, Extra::Dims),
                }
            }
            Step::Conv { w, b } => {
                let s = Saved {
                    input: h.clone(),
                    r_input: rh.take(),
                    extra: Extra::None,
                };
                let (vw, vb) = (&v[*next], b.as_ref().map(|_| &v[*next + 1]));
                *next += 1 + usize::from(b.is_some());
                let [y, r] = conv_pair(&s.input, s.r_input.as_ref(), [w, vw, w], [b.as_ref(), vb])?;
                (h, rh) = (y, Some(r));
                s
            }
            Step::Act(act) => {
                let s = Saved {
                    input: h.clone(),
                    r_input: rh.clone(),
                    extra: Extra::None,
                };
                if let Some(r) = &rh {
                    rh = Some(times_derivative(*act, &h, r)?);
                }
                h = act.apply(&h)?;
                s
            }
            Step::Pool => {
                let s = Saved {
                    input: h.clone(),
                    r_input: rh.take(),
                    extra: Extra::None,
                };
                rh = s
                    .r_input
                    .as_ref()
                    .map(|r| select_at_maxima(&s.input, r))
                    .transpose()?;
                h = max_pool2(&s.input)?;
                s
            }
            Step::Flatten => {
                let s = Saved {
                    input: h.clone(),
                    r_input: rh.clone(),
                    extra: Extra::None,
                };
                h = h.flatten_from(1)?;
                rh = rh.map(|r| r.flatten_from(1)).transpose()?;
                s
            }
            Step::Embed(e) => {
                let Some(ids) = embedding_ids(e, &h) else {
                    // Padding, or ids the model refuses: double backward (and the model's own error).
                    return Ok(None);
                };
                let (tok, pos) = (&e.tok.tensor().detach(), &e.pos.tensor().detach());
                let (batch, t) = h.dims2()?;
                let c = tok.dim(1)?;
                let embed = |tok: &Tensor, pos: &Tensor| -> Result<Tensor> {
                    Ok(tok
                        .index_select(&ids, 0)?
                        .reshape((batch, t, c))?
                        .broadcast_add(&pos.narrow(0, 0, t)?)?)
                };
                h = embed(tok, pos)?;
                rh = Some(embed(&v[*next], &v[*next + 1])?);
                *next += 2;
                Saved {
                    input: ids,
                    r_input: None,
                    extra: Extra::None,
                }
            }
            Step::Norm(w, b) => {
                let x = dual(&h, &rh)?;
                let (y, saved) = norm_forward(&x, &(w.clone(), b.clone()), &v[*next..*next + 2])?;
                *next += 2;
                (h, rh) = (y.v, Some(y.r));
                Saved {
                    input: x.v,
                    r_input: None,
                    extra: Extra::Norm(saved),
                }
            }
            Step::Block(b) => {
                let n = block_params(b);
                let x = dual(&h, &rh)?;
                let (y, saved) = block_forward(b, &v[*next..*next + n], &x)?;
                *next += n;
                (h, rh) = (y.v, Some(y.r));
                Saved {
                    input: x.v,
                    r_input: None,
                    extra: Extra::Block(Box::new(saved)),
                }
            }
        };
        Ok(Some((saved, h, rh)))
    }

    /// One step back: its parameters' H v into `out` (from index `k`) from the output's gradient and its
    /// R-derivative, and the input's when `needs_input`.
    fn backward(
        &self,
        s: &Saved,
        k: usize,
        v: &[Tensor],
        (g, rg): (Tensor, Tensor),
        needs_input: bool,
        out: &mut [Option<Tensor>],
    ) -> Result<(Tensor, Tensor)> {
        let (mut g, mut rg) = (g, rg);
        match self {
            Step::Affine { w, b, mult } => {
                out[k] = Some(affine_weight_hv(&s.input, s.r_input.as_ref(), [&g, &rg])?);
                if b.is_some() {
                    out[k + 1] = Some(sum_rows(&rg)?);
                }
                if needs_input {
                    let [gi, rgi] = affine_input_grad([w, &v[k]], [&g, &rg])?;
                    (g, rg) = if *mult == 1.0 {
                        (gi, rgi)
                    } else {
                        ((gi * *mult)?, (rgi * *mult)?)
                    };
                    if let Extra::Dims(dims) = &s.extra {
                        (g, rg) = (g.reshape(dims.as_slice())?, rg.reshape(dims.as_slice())?);
                    }
                }
            }
            Step::Conv { w, b, .. } => {
                let size = w.dim(3)?;
                // R(g) against x and g against R(x), as for the affine step.
                let mut gw = weight_grad_op(&rg, &s.input, size)?;
                if let Some(ri) = &s.r_input {
                    gw = (gw + weight_grad_op(&g, ri, size)?)?;
                }
                out[k] = Some(gw);
                if b.is_some() {
                    out[k + 1] = Some(bias_grad(&rg)?);
                }
                if needs_input {
                    let wf = flipped(w)?;
                    [g, rg] = conv_pair(&g, Some(&rg), [&wf, &flipped(&v[k])?, &wf], [None, None])?;
                }
            }
            Step::Pool if needs_input => {
                g = scatter_to_maxima(&s.input, &g)?;
                rg = scatter_to_maxima(&s.input, &rg)?;
            }
            Step::Act(Activation::Relu) if needs_input => {
                // σ″ = 0: both in one pass each.
                rg = relu_grad(&s.input, &rg)?;
                g = relu_grad(&s.input, &g)?;
            }
            Step::Act(act) if needs_input => {
                let (d1, d2) = derivatives(*act, &s.input)?;
                let mut r = (&rg * &d1)?;
                if let (Some(d2), Some(ra)) = (d2, &s.r_input) {
                    r = (r + (&g * d2)?.mul(ra)?)?;
                }
                g = (g * d1)?;
                rg = r;
            }
            Step::Embed(e) => {
                let (tok, pos) = (e.tok.tensor(), e.pos.tensor());
                let (batch, t, c) = rg.dims3()?;
                out[k] = Some(tok.zeros_like()?.index_add(
                    &s.input,
                    &rg.reshape((batch * t, c))?,
                    0,
                )?);
                let per_position = rg.sum(0)?;
                let ctx = pos.dim(0)?;
                out[k + 1] = Some(if ctx > t {
                    Tensor::cat(
                        &[&per_position, &pos.narrow(0, t, ctx - t)?.zeros_like()?],
                        0,
                    )?
                } else {
                    per_position
                });
            }
            Step::Norm(..) => {
                let Extra::Norm(saved) = &s.extra else {
                    return Err(Error::invalid(
                        "R-operator: a norm step without its statistics",
                    ));
                };
                let ([hg, hb], gi) = norm_backward(saved, &Dual { v: g, r: rg })?;
                (out[k], out[k + 1]) = (Some(hg), Some(hb));
                (g, rg) = (gi.v, gi.r);
            }
            Step::Block(b) => {
                let Extra::Block(saved) = &s.extra else {
                    return Err(Error::invalid(
                        "R-operator: a block step without its values",
                    ));
                };
                let n = block_params(b);
                let (hv, gi) = block_backward(b, &v[k..k + n], saved, &Dual { v: g, r: rg })?;
                for (j, t) in hv.into_iter().enumerate() {
                    out[k + j] = Some(t);
                }
                (g, rg) = (gi.v, gi.r);
            }
            Step::Flatten if needs_input => {
                g = g.reshape(s.input.dims())?;
                rg = rg.reshape(s.input.dims())?;
            }
            _ => {}
        }
        Ok((g, rg))
    }
}

/// H v of the model's mean loss on (x, target), with v and the result one tensor per parameter in state-dict
/// order; `None` when the model has a layer the R-operator does not cover.
pub(crate) fn hvp(
    model: &Sequential,
    x: &Tensor,
    target: &Target<'_>,
    v: &[Tensor],
) -> Result<Option<Vec<Tensor>>> {
    let steps = match steps(model) {
        Some(steps) if covers(&steps, x.rank()) && on_cpu(model, x) => steps,
        _ => return Ok(None),
    };
    let params = model.params();
    if v.len() != params.len() || v.iter().zip(&params).any(|(v, p)| v.dims() != p.var.dims()) {
        return Err(Error::Shape(
            "the direction needs one tensor per parameter, of its shape".into(),
        ));
    }
    let v: Vec<Tensor> = v
        .iter()
        .map(|t| t.detach().to_dtype(model.dtype()))
        .collect::<candle_core::Result<_>>()?;
    // The forward pass with R-derivatives; `first[i]` is the index in v of step i's weight.
    let (mut h, mut rh) = (x.detach(), None::<Tensor>);
    let mut saved = Vec::with_capacity(steps.len());
    let mut first = Vec::with_capacity(steps.len());
    let mut next = 0;
    for step in &steps {
        first.push(next);
        let Some((s, h2, rh2)) = step.forward(h, rh, &v, &mut next)? else {
            return Ok(None);
        };
        (h, rh) = (h2, rh2);
        saved.push(s);
    }
    let rz = match rh {
        Some(r) => r,
        None => h.zeros_like()?,
    };
    let (mut g, mut rg) = loss_derivatives(&h, &rz, target)?;
    // Back through the steps; inputs' derivatives only while a parameter lies further back.
    let mut out: Vec<Option<Tensor>> = vec![None; v.len()];
    for (i, (step, s)) in steps.iter().zip(&saved).enumerate().rev() {
        let needs_input = i > 0 && first[i] > 0;
        (g, rg) = step.backward(s, first[i], &v, (g, rg), needs_input, &mut out)?;
    }
    Ok(Some(
        out.into_iter()
            .zip(&params)
            .map(|(t, p)| match t {
                Some(t) => Ok(t),
                None => Ok(p.tensor().zeros_like()?),
            })
            .collect::<Result<_>>()?,
    ))
}
