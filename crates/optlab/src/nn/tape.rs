//! The per-sample gradient tape: while [`record`] runs a forward pass on this thread, every parameterised
//! primitive (linear over the last dimension, stride-1 convolution, GroupNorm and LayerNorm affines, token and
//! position embeddings) notes what per-sample gradients need — its input and a zero variable added to its output,
//! whose gradient is the per-sample error signal — as opacus's module hooks do. The arithmetic that turns a site
//! into per-sample gradients lives in `crate::privacy::per_sample`; the layers only record.
//!
//! Adding the zero variable leaves the forward values unchanged (x + 0 = x), so a recorded pass computes the
//! same loss, to the bit, as a plain one.

use crate::Result;
use candle_core::{Tensor, TensorId, Var};
use std::cell::RefCell;

/// One use of parameters in a recorded forward pass. Inputs are detached copies (values only).
#[derive(Debug, Clone)]
pub enum Site {
    /// y = x Wᵀ + b over the last dimension; `input` is `[B, ..., in]`, the probe `[B, ..., out]`.
    Linear {
        weight: TensorId,
        bias: Option<TensorId>,
        input: Tensor,
        probe: Var,
    },
    /// `conv2d` with stride 1 and zero `padding`; `input` `[B, Cin, H, W]`, the probe `[B, Cout, H', W']`.
    Conv2d {
        weight: TensorId,
        bias: Option<TensorId>,
        input: Tensor,
        padding: usize,
        probe: Var,
    },
    /// y = x̂ · w + b per channel of `normalized` (x̂, before the affine), channels on `channel_axis`
    /// (1 for GroupNorm on `[B, C, ...]`, the last for LayerNorm on `[B, T, C]`).
    Affine {
        weight: TensorId,
        bias: TensorId,
        normalized: Tensor,
        channel_axis: usize,
        probe: Var,
    },
    /// Token embeddings (row `ids[b·T + t]` for position t of example b, or none at padding) plus position
    /// embeddings (row t); the probe is the `[B, T, C]` output.
    Embedding {
        token: TensorId,
        position: TensorId,
        ids: Vec<Option<u32>>,
        batch: usize,
        seq: usize,
        /// Rows of the token and position tables.
        vocab: usize,
        context: usize,
        probe: Var,
    },
}

thread_local! {
    static TAPE: RefCell<Option<Vec<Site>>> = const { RefCell::new(None) };
}

/// Clears the tape when the recorded closure returns or unwinds.
struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        TAPE.with(|t| t.borrow_mut().take());
    }
}

/// Runs `f` (a forward pass) with the tape on and returns its value with the sites it recorded, in the order
/// the primitives ran. Nested recording is refused.
pub fn record<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, Vec<Site>)> {
    let nested = TAPE.with(|t| t.borrow().is_some());
    if nested {
        return Err(crate::Error::invalid(
            "per-sample recording is already running on this thread",
        ));
    }
    TAPE.with(|t| *t.borrow_mut() = Some(Vec::new()));
    let _guard = Guard;
    let out = f()?;
    let sites = TAPE.with(|t| t.borrow_mut().take()).unwrap_or_default();
    Ok((out, sites))
}

/// Whether a recording is running on this thread.
pub fn active() -> bool {
    TAPE.with(|t| t.borrow().is_some())
}

/// When recording: adds a zero variable to `out`, lets `site` build the record from it, and returns the probed
/// output; otherwise returns `out` untouched.
pub(crate) fn probe(out: Tensor, site: impl FnOnce(Var) -> Site) -> Result<Tensor> {
    if !active() {
        return Ok(out);
    }
    let var = Var::zeros(out.dims(), out.dtype(), out.device())?;
    let probed = out.add(var.as_tensor())?;
    let s = site(var);
    TAPE.with(|t| {
        if let Some(v) = t.borrow_mut().as_mut() {
            v.push(s);
        }
    });
    Ok(probed)
}
