//! P07's Stability measure of a point x for class c: R_{K,σ}(x) = (1/K)Σ m(x + n_i) − (1/K)Σ |m(x + n_i) − m(x)|,
//! n_i ~ N(0, σ²I), with m the class-c probability (the official `gaussian_volume` takes class 1, the
//! counterfactual class of its rejected applicants). One batched forward of the K samples; differentiable in x.

use super::probabilities;
use crate::nn::Sequential;
use crate::rng::{normal, Rng};
use crate::{Error, Result};
use candle_core::{Device, Tensor, Var};

/// K Gaussian perturbations N(0, σ²I) of a d-vector, `[K, d]` f32 (one draw for all points of a batch, as the
/// official code draws it).
pub fn gaussian_noise(k: usize, d: usize, sigma: f64, rng: &mut Rng) -> Result<Tensor> {
    if k == 0 || !(sigma.is_finite() && sigma > 0.0) {
        return Err(Error::invalid(
            "stability: K must be >= 1 and sigma finite and > 0",
        ));
    }
    crate::memory::check(
        "the stability samples",
        4.0 * k as f64 * d as f64,
        "lower K",
    )?;
    let v: Vec<f32> = (0..k * d).map(|_| (sigma * normal(rng)) as f32).collect();
    Ok(Tensor::from_vec(v, (k, d), &Device::Cpu)?)
}

/// R(x) for class `class` with the perturbations `noise` (`[K, d]`), as a scalar tensor that carries x's graph
/// (`x` is `[1, d]`).
pub fn stability(net: &Sequential, x: &Tensor, noise: &Tensor, class: usize) -> Result<Tensor> {
    let (_, d) = noise.dims2()?;
    if x.dims() != [1, d] {
        return Err(Error::Shape(format!(
            "stability: the point is {:?}, the noise has {d} columns",
            x.dims()
        )));
    }
    let p = |t: &Tensor| -> Result<Tensor> {
        let probs = probabilities(net, t)?;
        if class >= probs.dims()[1] {
            return Err(Error::invalid(format!(
                "stability: class {class} of a {}-class model",
                probs.dims()[1]
            )));
        }
        Ok(probs.narrow(1, class, 1)?)
    };
    let sampled = p(&noise.broadcast_add(x)?)?;
    // m(x) once (the official code evaluates it on K copies of x: the same value).
    let at_x = p(x)?;
    Ok(sampled
        .mean_all()?
        .sub(&sampled.broadcast_sub(&at_x)?.abs()?.mean_all()?)?)
}

/// R(x) without its gradient (`x` a d-vector): one forward of the K samples.
pub fn stability_value(net: &Sequential, x: &[f32], noise: &Tensor, class: usize) -> Result<f64> {
    let t = Tensor::from_slice(x, (1, x.len()), &Device::Cpu)?;
    Ok(stability(net, &t, noise, class)?.to_scalar::<f32>()? as f64)
}

/// R(x) and its gradient in x (`x` a d-vector).
pub fn stability_and_gradient(
    net: &Sequential,
    x: &[f32],
    noise: &Tensor,
    class: usize,
) -> Result<(f64, Vec<f32>)> {
    let v = Var::from_tensor(&Tensor::from_slice(x, (1, x.len()), &Device::Cpu)?)?;
    let r = stability(net, v.as_tensor(), noise, class)?;
    let g = r.backward()?;
    let grad = match g.get(v.as_tensor()) {
        Some(t) => t.flatten_all()?.to_vec1::<f32>()?,
        None => vec![0.0; x.len()],
    };
    Ok((r.to_scalar::<f32>()? as f64, grad))
}
