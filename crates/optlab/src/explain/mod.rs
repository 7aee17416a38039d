//! Counterfactual explanations that stay valid when the model changes (P07, Hamman et al. 2023): the Stability
//! measure R_{K,σ}(x) = mean_i m(x_i) − mean_i |m(x_i) − m(x)| over Gaussian samples x_i ~ N(x, σ²I)
//! ([`stability`]), the base counterfactuals the official code starts from (ART's elastic-net attack with the L1
//! or L2 decision rule, [`ead`]) and the T-Rex search that raises a counterfactual's Stability to τ ([`trex`]).
//! The classifier is an MLP whose logits a softmax turns into class probabilities (the official Keras model ends
//! in a softmax).

pub mod ead;
pub mod stability;
pub mod trex;

use crate::nn::Sequential;
use crate::Result;
use candle_core::Tensor;

/// The class probabilities softmax(f(x)) of a classifier with logits f, `[n, classes]`.
pub fn probabilities(net: &Sequential, x: &Tensor) -> Result<Tensor> {
    crate::nn::fused::softmax_last(&net.forward(x)?)
}

/// The predicted class of each row of `x` (`[n, d]`, row-major f32).
pub fn predict(net: &Sequential, x: &[f32], d: usize) -> Result<Vec<usize>> {
    let n = x.len() / d.max(1);
    let p: Vec<Vec<f32>> = probabilities(net, &rows(x, n, d)?)?.to_vec2()?;
    Ok(p.iter().map(|r| argmax(r)).collect())
}

/// The index of the largest value (the first among equals, as NumPy's argmax).
pub(crate) fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

/// `x` as an `[n, d]` f32 tensor.
pub(crate) fn rows(x: &[f32], n: usize, d: usize) -> Result<Tensor> {
    Ok(Tensor::from_slice(x, (n, d), &candle_core::Device::Cpu)?)
}
