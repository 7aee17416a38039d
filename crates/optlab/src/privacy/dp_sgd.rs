//! DP-SGD (Abadi et al. 2016) as opacus runs it: Poisson-sampled batches, each example's gradient clipped to l2
//! norm C (flat, or per parameter tensor with C/√P each), Gaussian noise of standard deviation σC added to the
//! sum, divided by the expected batch size qN; the RDP accountant ([`super::rdp`]) tracks ε. Works with every
//! optimizer: the private gradient replaces the plain one.
//!
//! One backward pass of the plain mean loss gives both the unclipped gradient and, through the per-sample tape,
//! every example's norm (ghost norms for Linear layers, Goodfellow 2015; Li et al. 2022). When an example is
//! clipped, the clipped sum Σ_b c_b g_b is one weighted product per layer of the same pass's error signals and
//! inputs; when none is and there is no noise, the gradient is the plain one to the bit.

use super::per_sample;
use crate::nn::{Param, Sequential};
use crate::rng::Rng;
use crate::spec::Spec;
use crate::{Error, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor};
use std::fmt;
use std::str::FromStr;

/// How the noise is set: a budget ε (σ calibrated to the run's steps) or σ itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    Epsilon(f64),
    Noise(f64),
}

/// Flat: one norm over all parameters. Per-layer: each parameter tensor clipped to C/√P (P tensors), so the
/// whole gradient's sensitivity is still C.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clipping {
    Flat,
    PerLayer,
}

/// Poisson (each example in each batch with probability q: what the accountant assumes) or the trainer's
/// shuffled fixed-size batches (for comparison with non-private runs; the reported ε then assumes Poisson
/// sampling and is not a guarantee).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    Poisson,
    Shuffle,
}

/// `--privacy epsilon=3,delta=1e-5,clip=1.0` or `noise=1.1,clip=1.0,delta=1e-5`, with optional
/// `clipping=flat|per_layer` and `sampling=poisson|shuffle`. `clip=inf` turns clipping off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrivacySpec {
    pub budget: Budget,
    pub delta: f64,
    pub clip: f64,
    pub clipping: Clipping,
    pub sampling: Sampling,
}

impl PrivacySpec {
    /// Checks every value; one sentence names the first bad one.
    pub fn validate(&self) -> Result<()> {
        match self.budget {
            Budget::Epsilon(e) if !(e.is_finite() && e > 0.0) => {
                return Err(Error::invalid(format!(
                    "privacy: epsilon must be finite and > 0, got {e}"
                )))
            }
            Budget::Noise(s) if !(s.is_finite() && s >= 0.0) => {
                return Err(Error::invalid(format!(
                    "privacy: noise must be finite and >= 0, got {s}"
                )))
            }
            _ => {}
        }
        if !(self.delta > 0.0 && self.delta < 1.0) {
            return Err(Error::invalid(format!(
                "privacy: delta must lie in (0, 1), got {}",
                self.delta
            )));
        }
        if self.clip.is_nan() || self.clip <= 0.0 {
            return Err(Error::invalid(format!(
                "privacy: clip must be > 0 (or inf), got {}",
                self.clip
            )));
        }
        Ok(())
    }
}

impl FromStr for PrivacySpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let mut sp = Spec::parse(&format!("privacy:{s}"))?;
        let budget = match (sp.has("epsilon"), sp.has("noise")) {
            (true, false) => Budget::Epsilon(sp.f64("epsilon", 0.0)?),
            (false, true) => Budget::Noise(sp.f64("noise", 0.0)?),
            _ => {
                return Err(Error::invalid(format!(
                    "privacy '{s}': give exactly one of epsilon=E (noise calibrated to the run) or noise=SIGMA \
                     (example: epsilon=3,delta=1e-5,clip=1.0)"
                )))
            }
        };
        if !sp.has("delta") {
            return Err(Error::invalid(format!(
                "privacy '{s}': delta is required (example: epsilon=3,delta=1e-5,clip=1.0)"
            )));
        }
        let delta = sp.f64("delta", 0.0)?;
        let clip = match sp.string("clip", "1.0").as_str() {
            "inf" => f64::INFINITY,
            v => v.parse::<f64>().map_err(|_| {
                Error::invalid(format!("privacy: clip={v} is not a number (or inf)"))
            })?,
        };
        let clipping = match sp.string("clipping", "flat").as_str() {
            "flat" => Clipping::Flat,
            "per_layer" => Clipping::PerLayer,
            v => {
                return Err(Error::invalid(format!(
                    "privacy: clipping={v} is not flat or per_layer"
                )))
            }
        };
        let sampling = match sp.string("sampling", "poisson").as_str() {
            "poisson" => Sampling::Poisson,
            "shuffle" => Sampling::Shuffle,
            v => {
                return Err(Error::invalid(format!(
                    "privacy: sampling={v} is not poisson or shuffle"
                )))
            }
        };
        sp.finish()?;
        let p = PrivacySpec {
            budget,
            delta,
            clip,
            clipping,
            sampling,
        };
        p.validate()?;
        Ok(p)
    }
}

impl fmt::Display for PrivacySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.budget {
            Budget::Epsilon(e) => write!(f, "epsilon={e}")?,
            Budget::Noise(s) => write!(f, "noise={s}")?,
        }
        write!(f, ",delta={},clip={}", self.delta, self.clip)?;
        if self.clipping == Clipping::PerLayer {
            write!(f, ",clipping=per_layer")?;
        }
        if self.sampling == Sampling::Shuffle {
            write!(f, ",sampling=shuffle")?;
        }
        Ok(())
    }
}

crate::spec::serde_via_string!(PrivacySpec);

/// The per-example loss of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExampleLoss {
    /// Cross-entropy of logits `[B, classes]` against labels `[B]`.
    CrossEntropy,
    /// Mean squared error over each example's outputs.
    Mse,
}

/// Per-example terms whose negated (cross-entropy) or plain (MSE) sum, scaled, is the loss; `[B, k]` so that
/// a weight per row reproduces the plain loss's operations when every weight is 1.
pub(crate) fn terms(kind: ExampleLoss, out: &Tensor, y: &Tensor) -> Result<Tensor> {
    Ok(match kind {
        ExampleLoss::CrossEntropy => {
            let labels: Vec<u32> = y.to_vec1()?;
            crate::nn::loss::cross_entropy_rows(out, &labels)?
                .neg()?
                .unsqueeze(1)?
        }
        ExampleLoss::Mse => {
            if out.dims() != y.dims() {
                return Err(Error::Shape(format!(
                    "model output {:?} vs targets {:?}",
                    out.dims(),
                    y.dims()
                )));
            }
            out.sub(y)?.sqr()?
        }
    })
}

/// (Σ_b w_b Σ_k t_bk) / denom, negated for cross-entropy: with w = 1 and denom the number of elements, the
/// same operations as `cross_entropy` / `mse`.
pub(crate) fn weighted(
    kind: ExampleLoss,
    t: &Tensor,
    w: Option<&Tensor>,
    denom: f64,
) -> Result<Tensor> {
    let t = match w {
        Some(w) => t.broadcast_mul(w)?,
        None => t.clone(),
    };
    let l = (t.sum_all()? / denom)?;
    Ok(match kind {
        ExampleLoss::CrossEntropy => l.neg()?,
        ExampleLoss::Mse => l,
    })
}

/// One private gradient: the batch's mean loss (for logging), the private gradients of `params`, and the
/// fraction of examples whose gradient was clipped.
pub struct PrivateGradient {
    pub loss: f64,
    pub grads: GradStore,
    pub clipped_fraction: f64,
}

/// The settings of one DP-SGD gradient.
#[derive(Debug, Clone, Copy)]
pub struct DpSgdStep {
    pub clip: f64,
    pub clipping: Clipping,
    pub noise_multiplier: f64,
    /// The divisor of the noisy sum: qN under Poisson sampling, the batch size otherwise.
    pub expected_batch: f64,
}

/// The private gradient of `model` on the batch (x, y): per-sample clipping, Gaussian noise from `rng`.
/// An empty batch gives pure noise (and a NaN loss).
pub fn private_gradient(
    model: &Sequential,
    x: &Tensor,
    y: &Tensor,
    kind: ExampleLoss,
    step: &DpSgdStep,
    rng: &mut Rng,
) -> Result<PrivateGradient> {
    let params = model.params();
    let b = x.dims().first().copied().unwrap_or(0);
    if b == 0 {
        let grads = noise_only(&params, step, rng)?;
        return Ok(PrivateGradient {
            loss: f64::NAN,
            grads,
            clipped_fraction: 0.0,
        });
    }
    // The noise depends on the parameters' shapes alone: it is drawn on the pool while this thread computes the
    // clipped sum (the seeds come from `rng` in the same order either way).
    let shapes = noise_shapes(&params);
    let mut noise = Ok(Vec::new());
    let clipped_sum = || -> Result<_> {
        let (out, tape) = per_sample::forward(model, x)?;
        let t = terms(kind, &out, y)?;
        let per_row = t.elem_count() / b;
        // Σ_b ℓ_b / E, the plain mean loss's operations when E = B: its parameter gradients are the unclipped sum,
        // its probes' gradients give every example's gradient (of ℓ_b / E).
        let first = weighted(kind, &t, None, step.expected_batch * per_row as f64)?.backward()?;
        let norms = tape.squared_norms(&first, &params)?;
        // Clip weights per parameter, or one per example (flat).
        let factors: Vec<Vec<f64>> = match step.clipping {
            Clipping::Flat => vec![per_sample::total_norms(&norms)?
                .iter()
                .map(|n| clip_factor(step.clip, n * step.expected_batch))
                .collect()],
            Clipping::PerLayer => {
                let per = step.clip / (params.len() as f64).sqrt();
                norms
                    .iter()
                    .map(|(_, n)| {
                        let n: Vec<f64> = n.to_dtype(DType::F64)?.to_vec1()?;
                        Ok(n.iter()
                            .map(|s| clip_factor(per, s.sqrt() * step.expected_batch))
                            .collect())
                    })
                    .collect::<Result<_>>()?
            }
        };
        let clipped = (0..b)
            .filter(|&i| factors.iter().any(|c| c[i] < 1.0))
            .count();
        // None clipped: the plain gradient, to the bit. Otherwise Σ_b c_b ∇ℓ_b / E directly, one weighted product
        // per layer (not the plain sum plus a correction, whose rounding would let a huge example leak past C).
        let mut grads = first;
        if clipped > 0 {
            let per_factor = factors
                .into_iter()
                .map(|c| Ok(Tensor::from_vec(c, b, x.device())?))
                .collect::<Result<Vec<_>>>()?;
            // One shared weight tensor for every parameter under flat clipping.
            let weights: Vec<Tensor> = (0..params.len())
                .map(|k| per_factor[k.min(per_factor.len() - 1)].clone())
                .collect();
            let sums = tape.weighted_sums(&grads, &params, &weights)?;
            for ((_, s), p) in sums.into_iter().zip(&params) {
                grads.insert(p.tensor(), s);
            }
        }
        Ok((grads, clipped, t, per_row))
    };
    let mut sum = None;
    rayon::in_place_scope(|s| {
        s.spawn(|_| noise = draw_noise(&shapes, step, rng));
        sum = Some(clipped_sum());
    });
    let (mut grads, clipped, t, per_row) = sum.expect("the scope ran the clipped sum")?;
    add_drawn(&params, &mut grads, noise?)?;
    // The batch's mean loss, for the log.
    let loss_v = weighted(kind, &t, None, b as f64 * per_row as f64)?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?;
    Ok(PrivateGradient {
        loss: loss_v,
        grads,
        clipped_fraction: clipped as f64 / b as f64,
    })
}

/// opacus's clip factor: min(1, C/(‖g‖ + 1e-6)); exactly 1 without clipping (C = ∞).
fn clip_factor(clip: f64, norm: f64) -> f64 {
    (clip / (norm + 1e-6)).min(1.0)
}

fn noise_only(params: &[Param], step: &DpSgdStep, rng: &mut Rng) -> Result<GradStore> {
    let mut grads = GradStore::default();
    for p in params {
        grads.insert(p.tensor(), p.tensor().zeros_like()?);
    }
    add_drawn(
        params,
        &mut grads,
        draw_noise(&noise_shapes(params), step, rng)?,
    )?;
    Ok(grads)
}

/// Elements of noise drawn by one generator: the chunks are filled in parallel, each from its own generator
/// seeded in order from the step's stream, so the noise does not depend on the thread count.
const NOISE_CHUNK: usize = 1 << 12;

/// `n` draws of N(0, std²) as `T`.
pub(crate) fn gaussian<T: num_traits::Float + Send>(n: usize, std: f64, rng: &mut Rng) -> Vec<T> {
    use rand::{Rng as _, SeedableRng};
    use rayon::prelude::*;
    let seeds: Vec<u64> = (0..n.div_ceil(NOISE_CHUNK)).map(|_| rng.gen()).collect();
    let mut out = vec![T::zero(); n];
    out.par_chunks_mut(NOISE_CHUNK)
        .zip(seeds)
        .for_each(|(chunk, seed)| {
            crate::rng::fill_scaled_normals(&mut Rng::seed_from_u64(seed), std, chunk);
        });
    out
}

/// The shape and dtype of each parameter, all the noise depends on.
fn noise_shapes(params: &[Param]) -> Vec<(Vec<usize>, DType)> {
    params
        .iter()
        .map(|p| (p.tensor().dims().to_vec(), p.tensor().dtype()))
        .collect()
}

/// N(0, (σC)²) / E for a gradient of each shape, in order (none when σ = 0, so the gradient keeps its bits).
fn draw_noise(
    shapes: &[(Vec<usize>, DType)],
    step: &DpSgdStep,
    rng: &mut Rng,
) -> Result<Vec<Tensor>> {
    if step.noise_multiplier == 0.0 {
        return Ok(Vec::new());
    }
    if !step.clip.is_finite() {
        return Err(Error::invalid(
            "privacy: noise needs a finite clip (the noise scale is noise × clip)",
        ));
    }
    let std = step.noise_multiplier * step.clip / step.expected_batch;
    let dev = candle_core::Device::Cpu;
    shapes
        .iter()
        .map(|(dims, dtype)| {
            let n = dims.iter().product();
            Ok(match dtype {
                DType::F32 => {
                    Tensor::from_vec(gaussian::<f32>(n, std, rng), dims.as_slice(), &dev)?
                }
                DType::F64 => {
                    Tensor::from_vec(gaussian::<f64>(n, std, rng), dims.as_slice(), &dev)?
                }
                other => {
                    return Err(Error::invalid(format!(
                        "privacy: gradients in {other:?} are not supported (f32 or f64)"
                    )))
                }
            })
        })
        .collect()
}

/// Adds the drawn noise to each parameter's gradient (the noise alone where a parameter has none).
fn add_drawn(params: &[Param], grads: &mut GradStore, noise: Vec<Tensor>) -> Result<()> {
    for (p, z) in params.iter().zip(noise) {
        let g = match grads.get(p.tensor()) {
            Some(g) => g.add(&z)?,
            None => z,
        };
        grads.insert(p.tensor(), g);
    }
    Ok(())
}

/// The privacy side of a training run: the noise multiplier (given or calibrated to the run's steps), the
/// sampling rate q = batch/N, and ε after any number of steps (from the RDP of one step, computed once).
#[derive(Debug, Clone)]
pub struct PrivateTraining {
    pub spec: PrivacySpec,
    pub noise_multiplier: f64,
    pub sample_rate: f64,
    /// Training examples N.
    pub examples: usize,
    orders: Vec<f64>,
    rdp_per_step: Vec<f64>,
}

impl PrivateTraining {
    /// The run of `total_steps` steps over `examples` examples in batches of `batch_size` (expected size under
    /// Poisson sampling).
    pub fn new(
        spec: PrivacySpec,
        examples: usize,
        batch_size: usize,
        total_steps: u64,
    ) -> Result<Self> {
        spec.validate()?;
        if examples == 0 || batch_size == 0 {
            return Err(Error::invalid("privacy: the run has no training examples"));
        }
        let q = (batch_size as f64 / examples as f64).min(1.0);
        let noise_multiplier = match spec.budget {
            Budget::Noise(s) => s,
            Budget::Epsilon(e) => {
                super::rdp::noise_multiplier(e, spec.delta, q, total_steps, 0.01)?
            }
        };
        if noise_multiplier > 0.0 && !spec.clip.is_finite() {
            return Err(Error::invalid(
                "privacy: noise needs a finite clip (the noise scale is noise × clip); set clip=C",
            ));
        }
        let orders = super::rdp::default_orders();
        let rdp_per_step = super::rdp::compute_rdp(q, noise_multiplier, 1, &orders);
        Ok(PrivateTraining {
            spec,
            noise_multiplier,
            sample_rate: q,
            examples,
            orders,
            rdp_per_step,
        })
    }

    /// ε spent after `steps` steps at the run's δ (infinite without noise or clipping).
    pub fn epsilon_after(&self, steps: u64) -> f64 {
        if steps == 0 {
            return 0.0;
        }
        if !self.spec.clip.is_finite() {
            return f64::INFINITY;
        }
        let rdp: Vec<f64> = self.rdp_per_step.iter().map(|r| r * steps as f64).collect();
        super::rdp::privacy_spent(&self.orders, &rdp, self.spec.delta).epsilon
    }

    /// A caution about the run's settings that does not stop it: δ ≥ 1/N lets a mechanism publish an example.
    pub fn warning(&self) -> Option<String> {
        (self.spec.delta >= 1.0 / self.examples as f64).then(|| {
            format!(
                "privacy: delta {} is not below 1/N = {:.2e} ({} training examples); such a delta allows releasing an example outright",
                self.spec.delta,
                1.0 / self.examples as f64,
                self.examples
            )
        })
    }

    /// Which examples of `0..N` step `step` uses: each independently with probability q, from the seeded
    /// stream of that step (so a resumed run draws the same batches).
    pub fn poisson_batch(&self, seed: u64, step: u64) -> Vec<usize> {
        use rand::Rng as _;
        let mut rng = crate::rng::rng_for(seed, crate::rng::Stream::Privacy, step);
        (0..self.examples)
            .filter(|_| rng.gen::<f64>() < self.sample_rate)
            .collect()
    }

    /// The settings of one gradient; `batch` is the size of a shuffled (fixed) batch.
    pub fn step(&self, batch: usize) -> DpSgdStep {
        DpSgdStep {
            clip: self.spec.clip,
            clipping: self.spec.clipping,
            noise_multiplier: self.noise_multiplier,
            expected_batch: match self.spec.sampling {
                Sampling::Poisson => self.sample_rate * self.examples as f64,
                Sampling::Shuffle => batch as f64,
            },
        }
    }
}
