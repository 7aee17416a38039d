//! Denoising score matching (Vincent 2011; score_sde's continuous-time loss): t ~ U(t_min, 1), ε ~ N(0, I),
//! x_t = α(t) x_0 + σ(t) ε, loss = mean over the batch of ‖ε̂(x_t, t) − ε‖², i.e. E‖σ s_θ − σ∇log p(x_t|x_0)‖²
//! with the weight λ(t) = σ²(t).

use super::score::ScoreNet;
use crate::optim::from_spec;
use crate::rng::{normal, rng_for, Rng, Stream};
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use rand::Rng as _;

/// How [`train`] runs.
#[derive(Debug, Clone, PartialEq)]
pub struct DsmConfig {
    pub steps: usize,
    pub batch_size: usize,
    pub optimizer: String,
    pub seed: u64,
}

impl Default for DsmConfig {
    fn default() -> Self {
        DsmConfig {
            steps: 5000,
            batch_size: 256,
            optimizer: "adam:lr=1e-3".into(),
            seed: 0,
        }
    }
}

/// One batch's DSM loss (differentiable) for data rows drawn with replacement from `data` (`[n, dim]`).
pub fn dsm_loss(net: &ScoreNet, data: &[f64], batch: usize, rng: &mut Rng) -> Result<Tensor> {
    let d = net.dim;
    let n = data.len() / d;
    let p = net.process;
    let (mut xt, mut eps, mut ts) = (
        Vec::with_capacity(batch * d),
        Vec::with_capacity(batch * d),
        Vec::with_capacity(batch),
    );
    for _ in 0..batch {
        let i = rng.gen_range(0..n);
        let t = p.t_min() + (1.0 - p.t_min()) * rng.gen::<f64>();
        let (a, s) = (p.alpha(t), p.sigma(t));
        for j in 0..d {
            let e = normal(rng);
            xt.push(a * data[i * d + j] + s * e);
            eps.push(e);
        }
        ts.push(t);
    }
    let dtype = net.net.dtype();
    let xt = Tensor::from_vec(xt, (batch, d), &Device::Cpu)?.to_dtype(dtype)?;
    let eps = Tensor::from_vec(eps, (batch, d), &Device::Cpu)?.to_dtype(dtype)?;
    let r = (net.noise(&xt, &ts)? - eps)?;
    Ok((r.sqr()?.sum_all()? / batch as f64)?)
}

/// Trains `net` on `data` (`[n, dim]`, row-major); `on_step(step, loss)` after every step.
pub fn train(
    net: &ScoreNet,
    data: &[f64],
    cfg: &DsmConfig,
    on_step: &mut dyn FnMut(usize, f64),
) -> Result<()> {
    if data.is_empty()
        || !data.len().is_multiple_of(net.dim)
        || cfg.batch_size == 0
        || cfg.steps == 0
    {
        return Err(Error::invalid(format!(
            "dsm: need data rows of {} values, steps >= 1 and batch_size >= 1",
            net.dim
        )));
    }
    let params = net.net.params();
    let mut opt = from_spec(&cfg.optimizer)?;
    let mut rng = rng_for(cfg.seed, Stream::Shuffle, 0);
    for step in 1..=cfg.steps {
        let loss = dsm_loss(net, data, cfg.batch_size, &mut rng)?;
        let v = loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
        if !v.is_finite() {
            return Err(Error::NonFinite(format!(
                "dsm: the loss became {v} at step {step}; lower the learning rate"
            )));
        }
        opt.backward_step(&params, &loss)?;
        on_step(step, v);
    }
    Ok(())
}
