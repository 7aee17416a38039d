//! Counterfactual explanations that stay valid when the model changes (P07, Hamman et al. 2023): the Stability
//! measure R_{K,σ}(x) = mean_i m(x_i) − mean_i |m(x_i) − m(x)| over Gaussian samples x_i ~ N(x, σ²I)
//! ([`stability`]), the base counterfactuals the official code starts from (ART's elastic-net attack with the L1
//! or L2 decision rule, [`ead`]) and the T-Rex search that raises a counterfactual's Stability to τ ([`trex`]).
//! The classifier is an MLP whose logits a softmax turns into class probabilities (the official Keras model ends
//! in a softmax).
//!
//! ```
//! use optlab::explain::{ead::{elastic_net, EadConfig}, predict, stability, trex::{trex, TrexConfig}, Bounds};
//! use optlab::nn::{ModelSpec, Sequential};
//! use optlab::rng::{rng_for, Stream};
//!
//! // A two-class MLP on 4 features in [0, 1] and a point it gives class c.
//! let spec = ModelSpec::parse("mlp:hidden=16,act=relu")?;
//! let net = Sequential::new(&spec, &[4], 2, 1, candle_core::DType::F32)?;
//! let x = [0.2f32, 0.7, 0.4, 0.9];
//! let c = predict(&net, &x, 4)?[0];
//! let bounds = Bounds::uniform(4, 0.0, 1.0)?;
//! // The official base search (ART's elastic-net attack, L2 rule), then T-Rex from its result.
//! let base = elastic_net(&net, &x, 4, &[c], &EadConfig { initial_const: 10.0, ..EadConfig::l2() }, &bounds)?;
//! let mut rng = rng_for(0, Stream::Probe, 0);
//! let cfg = TrexConfig { k: 200, ..TrexConfig::default() };
//! let robust = trex(&net, &base, &cfg, &bounds, &mut rng)?;
//! // The Stability at the result, for the class T-Rex kept.
//! let noise = stability::gaussian_noise(200, 4, 0.05, &mut rng)?;
//! let r = stability::stability_value(&net, &robust.counterfactual, &noise, robust.class)?;
//! assert!(r <= 1.0 && robust.counterfactual.iter().all(|v| (0.0..=1.0).contains(v)));
//! # Ok::<(), optlab::Error>(())
//! ```

pub mod ead;
pub mod stability;
pub mod table;
pub mod trex;
pub mod validity;

use crate::data::tabular::{Encoding, Mutability};
use crate::nn::Sequential;
use crate::{Error, Result};
use candle_core::Tensor;

/// Where counterfactuals may go, per feature of a batch of rows (row-major, like the points): a box, and the
/// features that must keep the original row's value (immutable columns). A column that may only grow has the
/// original value as its lower bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounds {
    pub lo: Vec<f32>,
    pub hi: Vec<f32>,
    pub frozen: Vec<bool>,
}

impl Bounds {
    /// The same box [lo, hi] for `len` features, none frozen (the official code's clamp).
    pub fn uniform(len: usize, lo: f32, hi: f32) -> Result<Self> {
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(Error::invalid(format!("bounds: [{lo}, {hi}] is not a box")));
        }
        Ok(Bounds {
            lo: vec![lo; len],
            hi: vec![hi; len],
            frozen: vec![false; len],
        })
    }

    /// The bounds of one encoded row `x` of a table: the data's range of each numeric column, [0, 1] for one-hot
    /// entries, immutable columns frozen, increase-only columns bounded below by `x`.
    pub fn for_row(enc: &Encoding, x: &[f32]) -> Result<Self> {
        if x.len() != enc.features {
            return Err(Error::Shape(format!(
                "bounds: a row of {} features for an encoding of {}",
                x.len(),
                enc.features
            )));
        }
        let (mut lo, hi) = enc.feature_box();
        let mut frozen = vec![false; x.len()];
        for (j, c) in enc.columns.iter().enumerate() {
            let width = c.levels.len().max(1);
            let at = enc.offsets[j];
            for f in at..at + width {
                match c.mutability {
                    Mutability::Free => {}
                    Mutability::Immutable => frozen[f] = true,
                    Mutability::IncreaseOnly => lo[f] = lo[f].max(x[f]),
                }
            }
        }
        Ok(Bounds { lo, hi, frozen })
    }

    /// [`Bounds::for_row`] with the immutable columns free: to ask whether they are what stands between a row
    /// and a counterfactual.
    pub fn for_row_immutables_free(enc: &Encoding, x: &[f32]) -> Result<Self> {
        let mut b = Self::for_row(enc, x)?;
        for (j, c) in enc.columns.iter().enumerate() {
            if c.mutability == Mutability::Immutable {
                let at = enc.offsets[j];
                b.frozen[at..at + c.levels.len().max(1)].fill(false);
            }
        }
        Ok(b)
    }

    /// The bounds of several rows, one after the other.
    pub fn stack(rows: &[Bounds]) -> Bounds {
        Bounds {
            lo: rows.iter().flat_map(|b| b.lo.clone()).collect(),
            hi: rows.iter().flat_map(|b| b.hi.clone()).collect(),
            frozen: rows.iter().flat_map(|b| b.frozen.clone()).collect(),
        }
    }

    /// Feature `j` of an iterate with value `v` whose original value is `orig`.
    pub fn project(&self, j: usize, v: f32, orig: f32) -> f32 {
        if self.frozen[j] {
            orig
        } else {
            v.clamp(self.lo[j], self.hi[j])
        }
    }

    /// Checks that the bounds cover `len` features with finite boxes.
    pub(crate) fn check(&self, len: usize) -> Result<()> {
        if self.lo.len() != len || self.hi.len() != len || self.frozen.len() != len {
            return Err(Error::Shape(format!(
                "bounds for {} features, the points have {len}",
                self.lo.len()
            )));
        }
        if self
            .lo
            .iter()
            .zip(&self.hi)
            .any(|(a, b)| !(a.is_finite() && b.is_finite() && a <= b))
        {
            return Err(Error::invalid(
                "bounds: every box must be finite with lo <= hi",
            ));
        }
        Ok(())
    }
}

/// The local Lipschitz constant of the classifier's logits around `x`: a sound upper bound (P02's bound
/// propagation, ℓ∞ input ball of radius `eps`, the largest over the logits) from `optlab::lipschitz`, which P07
/// ties to the Stability of a counterfactual.
pub fn local_lipschitz(net: &Sequential, x: &[f32], eps: f64) -> Result<f64> {
    let lnet = crate::lipschitz::network::Network::from_model(net)?;
    let centre: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    Ok(crate::lipschitz::bab::local_lipschitz(
        &lnet,
        &centre,
        &crate::lipschitz::local::LocalOptions::new(eps),
        None,
    )?
    .bound)
}

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
