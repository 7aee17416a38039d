//! Adaptive batch sizes (P29, AdAdaGrad): every `interval` steps a test on the per-sample gradients of the
//! current batch decides whether the batch is too small, and the batch grows to what the test asks (capped).
//!
//! With per-sample gradients g_i (i = 1..b) and their mean ḡ:
//! - norm test: b' = ⌈Σ_coords Var_i(g_i) / (η² ‖ḡ‖²)⌉;
//! - inner-product test: b' = ⌈Var_i(⟨g_i, ḡ⟩) / (θ² ‖ḡ‖⁴)⌉;
//! - augmented inner-product test: the larger of the inner-product test and the orthogonality test
//!   ⌈Σ_coords Var_i(g_i - ⟨g_i, ḡ⟩ ḡ/‖ḡ‖²) / (ν² ‖ḡ‖²)⌉;
//!
//! all variances with Bessel's correction, and the batch never shrinks. Every statistic follows from each
//! sample's ‖g_i‖² and ⟨g_i, ḡ⟩, which for a Linear layer come from batched outer products: g_i = δ_i a_iᵀ, so
//! ‖g_i‖² = ‖δ_i‖²‖a_i‖² (+ ‖δ_i‖² for the bias) and ⟨g_i, Ḡ⟩ = δ_iᵀ Ḡ a_i (+ δ_i·ḡ_b), without materialising a
//! per-sample gradient. As in the paper, the inner products are of whole gradient vectors; the reference
//! code (timlautk/AdAdaGrad `tests.py`) sums the variances of per-tensor inner products instead, which drops
//! the covariances between tensors.

use crate::nn::LinearTrace;
use crate::spec::unknown_name;
use crate::{Error, Result, Spec};
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor};

/// Per-sample gradient statistics of one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct GradStats {
    /// ‖g_i‖² for each sample.
    pub sq_norms: Vec<f64>,
    /// ⟨g_i, ḡ⟩ for each sample.
    pub inner: Vec<f64>,
    /// ‖ḡ‖².
    pub mean_sq_norm: f64,
}

impl GradStats {
    fn b(&self) -> f64 {
        self.sq_norms.len() as f64
    }

    /// Σ_coords Var_i(g_i) = (Σ‖g_i‖² - b‖ḡ‖²)/(b-1).
    pub fn variance_sum(&self) -> f64 {
        (self.sq_norms.iter().sum::<f64>() - self.b() * self.mean_sq_norm) / (self.b() - 1.0)
    }

    /// Var_i(⟨g_i, ḡ⟩) (Bessel).
    pub fn inner_variance(&self) -> f64 {
        let mean = self.inner.iter().sum::<f64>() / self.b();
        self.inner.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (self.b() - 1.0)
    }

    /// Σ_coords Var_i of the components orthogonal to ḡ: Σ(‖g_i‖² - ⟨g_i,ḡ⟩²/‖ḡ‖²)/(b-1) (their mean is 0).
    pub fn orthogonal_variance_sum(&self) -> f64 {
        let s: f64 = self
            .sq_norms
            .iter()
            .zip(&self.inner)
            .map(|(n, i)| n - i * i / self.mean_sq_norm)
            .sum();
        s / (self.b() - 1.0)
    }
}

/// Per-sample statistics of a mean loss over `b` samples from the traces of an MLP's Linear layers and the
/// batch gradients `grads` of that loss.
pub fn linear_grad_stats(traces: &[LinearTrace], grads: &GradStore, b: usize) -> Result<GradStats> {
    let mut sq = Tensor::zeros(b, DType::F64, traces[0].input.device())?;
    let mut inner = sq.clone();
    let mut mean_sq = 0.0;
    for t in traces {
        let out_grad = grads.get(t.output_probe.as_tensor()).ok_or_else(|| {
            Error::invalid(
                "no gradient for a layer output; was the loss computed from this forward pass?",
            )
        })?;
        // δ_i = b · ∂L/∂z_i for L the mean of the per-sample losses.
        let delta = out_grad.to_dtype(DType::F64)?.affine(b as f64, 0.0)?;
        let a = t.input.to_dtype(DType::F64)?;
        let gw = grads
            .get(t.weight.tensor())
            .ok_or_else(|| Error::invalid(format!("no gradient for {}", t.weight.name)))?
            .to_dtype(DType::F64)?;
        let d2 = delta.sqr()?.sum(1)?;
        let a2 = a.sqr()?.sum(1)?;
        sq = sq.add(&d2.mul(&a2)?)?;
        // δ_iᵀ Ḡ a_i = Σ_k (δ Ḡ)_{ik} a_{ik}
        inner = inner.add(&delta.matmul(&gw)?.mul(&a)?.sum(1)?)?;
        mean_sq += gw.sqr()?.sum_all()?.to_scalar::<f64>()?;
        if let Some(bias) = &t.bias {
            let gb = grads
                .get(bias.tensor())
                .ok_or_else(|| Error::invalid(format!("no gradient for {}", bias.name)))?
                .to_dtype(DType::F64)?;
            sq = sq.add(&d2)?;
            inner = inner.add(&delta.matmul(&gb.unsqueeze(1)?)?.squeeze(1)?)?;
            mean_sq += gb.sqr()?.sum_all()?.to_scalar::<f64>()?;
        }
    }
    Ok(GradStats {
        sq_norms: sq.to_vec1()?,
        inner: inner.to_vec1()?,
        mean_sq_norm: mean_sq,
    })
}

/// Which test, with its constant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BatchTest {
    Norm { eta: f64 },
    InnerProduct { theta: f64 },
    Augmented { theta: f64, nu: f64 },
}

/// A test, how often it runs and the largest batch it may ask for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchSchedule {
    pub test: BatchTest,
    /// Test every this many steps.
    pub interval: u64,
    /// The cap.
    pub max_batch: usize,
}

/// The test names [`BatchSchedule::parse`] knows.
pub const BATCH_TEST_NAMES: &[&str] = &["norm", "inner_product", "augmented"];

impl BatchSchedule {
    /// Parses `norm:eta=0.5,interval=10,max_batch=1024`, `inner_product:theta=0.5,...` or
    /// `augmented:theta=0.5,nu=0.5,...`.
    pub fn parse(spec: &str) -> Result<Self> {
        let mut s = Spec::parse(spec)?;
        let positive = |s: &mut Spec, k: &'static str, d: f64| -> Result<f64> {
            let v = s.f64(k, d)?;
            if v <= 0.0 {
                return Err(Error::invalid(format!(
                    "{}: {k}={v} must be positive",
                    s.name
                )));
            }
            Ok(v)
        };
        let test = match s.name.as_str() {
            "norm" => BatchTest::Norm {
                eta: positive(&mut s, "eta", 0.5)?,
            },
            "inner_product" => BatchTest::InnerProduct {
                theta: positive(&mut s, "theta", 0.5)?,
            },
            "augmented" => BatchTest::Augmented {
                theta: positive(&mut s, "theta", 0.5)?,
                nu: positive(&mut s, "nu", 0.5)?,
            },
            other => return Err(unknown_name("batch-size test", other, BATCH_TEST_NAMES)),
        };
        let interval = s.usize("interval", 10)? as u64;
        let max_batch = s.usize("max_batch", 1024)?;
        s.finish()?;
        if interval == 0 || max_batch == 0 {
            return Err(Error::invalid(format!(
                "{spec}: interval and max_batch must be at least 1"
            )));
        }
        Ok(BatchSchedule {
            test,
            interval,
            max_batch,
        })
    }

    /// The canonical spec, e.g. `norm:eta=0.5,interval=10,max_batch=1024`.
    pub fn spec(&self) -> String {
        let test = match self.test {
            BatchTest::Norm { eta } => format!("norm:eta={eta}"),
            BatchTest::InnerProduct { theta } => format!("inner_product:theta={theta}"),
            BatchTest::Augmented { theta, nu } => format!("augmented:theta={theta},nu={nu}"),
        };
        format!(
            "{test},interval={},max_batch={}",
            self.interval, self.max_batch
        )
    }

    /// The batch size the test asks for after a batch of `b` with statistics `st`: never below `b`, at most
    /// `max_batch`. A zero mean gradient (a stationary point) keeps `b`.
    pub fn next_batch(&self, b: usize, st: &GradStats) -> usize {
        let g2 = st.mean_sq_norm;
        if b < 2 || g2 <= 0.0 || !g2.is_finite() {
            return b;
        }
        let want = match self.test {
            BatchTest::Norm { eta } => st.variance_sum() / (eta * eta * g2),
            BatchTest::InnerProduct { theta } => st.inner_variance() / (theta * theta * g2 * g2),
            BatchTest::Augmented { theta, nu } => (st.inner_variance() / (theta * theta * g2 * g2))
                .max(st.orthogonal_variance_sum() / (nu * nu * g2)),
        };
        if !want.is_finite() {
            return self.max_batch.max(b);
        }
        (want.ceil() as usize).max(b).min(self.max_batch.max(b))
    }
}

impl std::str::FromStr for BatchSchedule {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        BatchSchedule::parse(s)
    }
}

impl std::fmt::Display for BatchSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.spec())
    }
}

crate::spec::serde_via_string!(BatchSchedule);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::loss::cross_entropy;
    use crate::nn::{ModelSpec, Sequential};
    use candle_core::Device;

    /// The statistics from explicit per-sample gradients (one backward per sample).
    fn naive(model: &Sequential, x: &Tensor, y: &Tensor) -> GradStats {
        let b = x.dims()[0];
        let params = model.params();
        let flat = |g: &GradStore| -> Vec<f64> {
            params
                .iter()
                .flat_map(|p| {
                    g.get(p.tensor())
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f64>()
                        .unwrap()
                })
                .collect()
        };
        let per: Vec<Vec<f64>> = (0..b)
            .map(|i| {
                let loss = cross_entropy(
                    &model.forward(&x.narrow(0, i, 1).unwrap()).unwrap(),
                    &y.narrow(0, i, 1).unwrap(),
                )
                .unwrap();
                flat(&loss.backward().unwrap())
            })
            .collect();
        let d = per[0].len();
        let mean: Vec<f64> = (0..d)
            .map(|j| per.iter().map(|g| g[j]).sum::<f64>() / b as f64)
            .collect();
        GradStats {
            sq_norms: per.iter().map(|g| g.iter().map(|v| v * v).sum()).collect(),
            inner: per
                .iter()
                .map(|g| g.iter().zip(&mean).map(|(a, m)| a * m).sum())
                .collect(),
            mean_sq_norm: mean.iter().map(|v| v * v).sum(),
        }
    }

    #[test]
    fn outer_product_statistics_equal_explicit_per_sample_gradients() {
        let data = crate::data::two_spirals(40, 3, 0.3, 1).unwrap();
        let idx: Vec<usize> = (0..24).collect();
        let (x, y) = data.batch(&idx, DType::F64, &Device::Cpu).unwrap();
        let model = Sequential::new(
            &ModelSpec::parse("mlp:hidden=8-6,act=tanh").unwrap(),
            &[2],
            3,
            3,
            DType::F64,
        )
        .unwrap();
        let (out, traces) = model.forward_traced(&x).unwrap().unwrap();
        let grads = cross_entropy(&out, &y).unwrap().backward().unwrap();
        let fast = linear_grad_stats(&traces, &grads, 24).unwrap();
        let slow = naive(&model, &x, &y);
        for (a, b) in fast
            .sq_norms
            .iter()
            .zip(&slow.sq_norms)
            .chain(fast.inner.iter().zip(&slow.inner))
        {
            assert!((a - b).abs() < 1e-12 * b.abs().max(1.0), "{a} vs {b}");
        }
        assert!((fast.mean_sq_norm - slow.mean_sq_norm).abs() < 1e-12);
        // Variance identities against a direct computation from the explicit gradients' definition.
        assert!(
            fast.variance_sum() > 0.0
                && fast.inner_variance() > 0.0
                && fast.orthogonal_variance_sum() > 0.0
        );
    }

    #[test]
    fn tests_grow_the_batch_and_respect_the_cap() {
        let st = GradStats {
            sq_norms: vec![5.0, 1.0, 3.0, 3.0],
            inner: vec![2.0, 0.0, 1.0, 1.0],
            mean_sq_norm: 1.0,
        };
        // Σ Var = (12 - 4)/3 = 8/3; norm test with η = 0.5: 8/3 / 0.25 = 10.67 -> 11.
        let norm = BatchSchedule::parse("norm:eta=0.5,max_batch=100").unwrap();
        assert_eq!(norm.next_batch(4, &st), 11);
        // Var(⟨g_i,ḡ⟩) = (1+1+0+0)/3 = 2/3; θ = 0.5: (2/3)/0.25 = 2.67 -> 3, but never below b = 4.
        let ip = BatchSchedule::parse("inner_product:theta=0.5").unwrap();
        assert_eq!(ip.next_batch(4, &st), 4);
        // Orthogonal: Σ(‖g‖² - ⟨g,ḡ⟩²) = (5-4)+(1-0)+(3-1)+(3-1) = 6 → 2; ν = 0.25: 2/0.0625 = 32.
        let aug = BatchSchedule::parse("augmented:theta=0.5,nu=0.25,max_batch=20").unwrap();
        assert_eq!(aug.next_batch(4, &st), 20);
        assert!(BatchSchedule::parse("norm:eta=0").is_err());
        assert!(BatchSchedule::parse("variance")
            .unwrap_err()
            .to_string()
            .contains("norm, inner_product, augmented"));
    }
}
