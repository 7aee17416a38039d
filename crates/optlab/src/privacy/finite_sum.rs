//! Finite sums F(x) = (1/n) Σᵢ ℓᵢ(x) + r(x) over a flat parameter vector x, with the per-example gradients ∇ℓᵢ
//! that private methods clip (P09, P21): logistic regression with the non-convex regularizer
//! r(x) = λ Σⱼ xⱼ²/(1 + xⱼ²), and any model the trainer builds (per-sample gradients from the forward tape of
//! [`super::per_sample`]). r does not depend on the data, so it is added exactly, neither clipped nor noised.

use super::dp_sgd::{terms, weighted, ExampleLoss};
use super::per_sample;
use crate::data::{Dataset, Target};
use crate::nn::{ModelSpec, Sequential};
use crate::scalar::{sigmoid, softplus};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};

/// A finite sum whose examples a worker holds.
pub trait FiniteSum {
    /// The number of parameters d.
    fn dim(&self) -> usize;
    /// The number of examples held.
    fn len(&self) -> usize;
    /// Whether no example is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Σ_{i ∈ idx} ℓᵢ(x) and the rows ∇ℓᵢ(x) (row-major, `idx.len() × dim`).
    fn example_gradients(&self, x: &[f64], idx: &[usize]) -> Result<(f64, Vec<f64>)>;
    /// The data-independent term r(x) and its gradient.
    fn regularizer(&self, x: &[f64]) -> (f64, Vec<f64>);
    /// The starting point x₀.
    fn initial_point(&self) -> Result<Vec<f64>>;
}

/// Binary labels ±1 from a data set: two classes as they are; more classes split into the lower half
/// (classes < k/2, label −1) and the upper half (+1); real targets refused.
pub fn binary_labels(data: &Dataset) -> Result<Vec<f64>> {
    match &data.target {
        Target::Classes { labels, n_classes } => {
            let half = (*n_classes as u32).div_ceil(2);
            Ok(labels
                .iter()
                .map(|&c| if c < half { -1.0 } else { 1.0 })
                .collect())
        }
        _ => Err(Error::invalid(format!(
            "logistic regression needs class labels; `{}` has real-valued targets",
            data.name
        ))),
    }
}

/// Logistic regression ℓᵢ(x) = log(1 + exp(−yᵢ aᵢᵀx)) with a bias feature, plus λ Σⱼ xⱼ²/(1 + xⱼ²): smooth,
/// non-convex, the regularizer of the variance-reduction literature's experiments.
pub struct LogisticNonconvex {
    /// Rows aᵢ = (features, 1).
    features: Vec<f64>,
    labels: Vec<f64>,
    dim: usize,
    pub lambda: f64,
}

impl LogisticNonconvex {
    /// The examples of `data` (flattened features, labels by [`binary_labels`]).
    pub fn new(data: &Dataset, lambda: f64) -> Result<Self> {
        if !(lambda.is_finite() && lambda >= 0.0) {
            return Err(Error::invalid(format!(
                "logreg: lambda must be finite and >= 0, got {lambda}"
            )));
        }
        let labels = binary_labels(data)?;
        let f = data.feature_dim();
        let mut features = Vec::with_capacity(labels.len() * (f + 1));
        for row in data.x.chunks_exact(f.max(1)).take(labels.len()) {
            features.extend(row.iter().map(|&v| f64::from(v)));
            features.push(1.0);
        }
        Ok(Self {
            features,
            labels,
            dim: f + 1,
            lambda,
        })
    }
}

impl FiniteSum for LogisticNonconvex {
    fn dim(&self) -> usize {
        self.dim
    }

    fn len(&self) -> usize {
        self.labels.len()
    }

    fn example_gradients(&self, x: &[f64], idx: &[usize]) -> Result<(f64, Vec<f64>)> {
        let d = self.dim;
        let mut rows = vec![0.0; idx.len() * d];
        let mut loss = 0.0;
        for (row, &i) in rows.chunks_exact_mut(d).zip(idx) {
            let a = &self.features[i * d..(i + 1) * d];
            let y = self.labels[i];
            let margin = y * a.iter().zip(x).map(|(u, v)| u * v).sum::<f64>();
            loss += softplus(-margin);
            let s = -y * sigmoid(-margin);
            for (r, u) in row.iter_mut().zip(a) {
                *r = s * u;
            }
        }
        Ok((loss, rows))
    }

    fn regularizer(&self, x: &[f64]) -> (f64, Vec<f64>) {
        let value = self.lambda * x.iter().map(|v| v * v / (1.0 + v * v)).sum::<f64>();
        let grad = x
            .iter()
            .map(|v| self.lambda * 2.0 * v / (1.0 + v * v).powi(2))
            .collect();
        (value, grad)
    }

    fn initial_point(&self) -> Result<Vec<f64>> {
        Ok(vec![0.0; self.dim])
    }
}

/// Examples per forward pass when gathering per-example gradients of a model.
const MODEL_CHUNK: usize = 256;

/// A model of the trainer (`mlp:...`, `cnn:...` without BatchNorm) on a data set, in f64: ℓᵢ is example i's
/// cross-entropy (classes) or squared error (real targets); x is the parameters in `params()` order, flattened.
pub struct ModelSum {
    model: Sequential,
    data: Dataset,
    kind: ExampleLoss,
    dim: usize,
}

impl ModelSum {
    /// `spec` built for `data` and initialised from `seed`.
    pub fn new(spec: &ModelSpec, data: Dataset, seed: u64) -> Result<Self> {
        if matches!(spec, ModelSpec::Transformer(_)) {
            return Err(Error::invalid(
                "private finite-sum methods take mlp or cnn models, not a transformer",
            ));
        }
        let (outputs, kind) =
            match &data.target {
                Target::Classes { n_classes, .. } => (*n_classes, ExampleLoss::CrossEntropy),
                Target::Values { dim, .. } => (*dim, ExampleLoss::Mse),
                Target::Tokens { .. } => return Err(Error::invalid(
                    "private finite-sum methods take class or real targets, not token sequences",
                )),
            };
        let model = Sequential::new(spec, &data.feature_shape, outputs, seed, DType::F64)?;
        per_sample::check_model(&model)?;
        let dim = model.num_params();
        Ok(Self {
            model,
            data,
            kind,
            dim,
        })
    }

    fn load(&self, x: &[f64]) -> Result<()> {
        if x.len() != self.dim {
            return Err(Error::Shape(format!(
                "{} parameters given, the model has {}",
                x.len(),
                self.dim
            )));
        }
        let mut at = 0;
        for p in self.model.params() {
            let n = p.tensor().elem_count();
            let t = Tensor::from_slice(&x[at..at + n], p.tensor().dims(), &Device::Cpu)?;
            p.var.set(&t)?;
            at += n;
        }
        Ok(())
    }
}

impl FiniteSum for ModelSum {
    fn dim(&self) -> usize {
        self.dim
    }

    fn len(&self) -> usize {
        self.data.len()
    }

    fn example_gradients(&self, x: &[f64], idx: &[usize]) -> Result<(f64, Vec<f64>)> {
        self.load(x)?;
        let params = self.model.params();
        let d = self.dim;
        let mut rows = vec![0.0; idx.len() * d];
        let mut loss = 0.0;
        for (chunk, out_rows) in idx
            .chunks(MODEL_CHUNK)
            .zip(rows.chunks_mut(MODEL_CHUNK * d))
        {
            let (xb, yb) = self.data.batch(chunk, DType::F64, &Device::Cpu)?;
            let (out, tape) = per_sample::forward(&self.model, &xb)?;
            let t = terms(self.kind, &out, &yb)?;
            let per_row = t.elem_count() / chunk.len();
            // Σ_b ℓ_b with ℓ_b each example's loss (MSE: mean over its outputs).
            let sum = weighted(self.kind, &t, None, per_row as f64)?;
            loss += sum.to_scalar::<f64>()?;
            let grads = sum.backward()?;
            let mut col = 0;
            for (_, g) in tape.gradients(&grads, &params)? {
                let g = g.flatten_from(1)?;
                let k = g.dims()[1];
                let g: Vec<Vec<f64>> = g.to_vec2()?;
                for (row, gr) in out_rows.chunks_exact_mut(d).zip(g) {
                    row[col..col + k].copy_from_slice(&gr);
                }
                col += k;
            }
        }
        Ok((loss, rows))
    }

    fn regularizer(&self, x: &[f64]) -> (f64, Vec<f64>) {
        (0.0, vec![0.0; x.len()])
    }

    fn initial_point(&self) -> Result<Vec<f64>> {
        let mut x = Vec::with_capacity(self.dim);
        for p in self.model.params() {
            x.extend(p.tensor().flatten_all()?.to_vec1::<f64>()?);
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finite_difference(f: &dyn FiniteSum, x: &[f64], i: usize) -> Vec<f64> {
        let h = 1e-6;
        (0..f.dim())
            .map(|j| {
                let (mut a, mut b) = (x.to_vec(), x.to_vec());
                a[j] += h;
                b[j] -= h;
                (f.example_gradients(&a, &[i]).unwrap().0
                    - f.example_gradients(&b, &[i]).unwrap().0)
                    / (2.0 * h)
            })
            .collect()
    }

    #[test]
    fn per_example_gradients_match_finite_differences() {
        let data = crate::data::two_moons(12, 0.1, 3).unwrap();
        let lr = LogisticNonconvex::new(&data, 0.1).unwrap();
        let x = vec![0.3, -0.7, 0.2];
        let spec = ModelSpec::parse("mlp:hidden=5,act=tanh").unwrap();
        let m = ModelSum::new(&spec, data, 1).unwrap();
        let xm: Vec<f64> = m
            .initial_point()
            .unwrap()
            .iter()
            .map(|v| v * 1.5 + 0.01)
            .collect();
        for (f, x) in [(&lr as &dyn FiniteSum, x), (&m as &dyn FiniteSum, xm)] {
            let (_, rows) = f.example_gradients(&x, &[4, 7]).unwrap();
            for (k, i) in [4, 7].into_iter().enumerate() {
                let fd = finite_difference(f, &x, i);
                for (a, b) in rows[k * f.dim()..(k + 1) * f.dim()].iter().zip(&fd) {
                    assert!((a - b).abs() < 1e-6, "{a} vs {b}");
                }
            }
        }
        let (r, g) = lr.regularizer(&[1.0, 0.0, -2.0]);
        assert!((r - 0.1 * (0.5 + 0.8)).abs() < 1e-15);
        assert!((g[0] - 0.05).abs() < 1e-15 && (g[2] + 0.1 * 4.0 / 25.0).abs() < 1e-15);
    }
}
