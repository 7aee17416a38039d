//! Logistic regression with equality constraints, P19's experiment (official code:
//! `ConstrainedLogisticRegression/`): f(w) = (1/N) Σ log(1 + exp(−yᵢ xᵢᵀw)), no regularization, subject to
//! A w = b with A (10 × n) and b drawn from N(0, 1), and ‖w‖² = 1; started, as there, from w = 1, λ = 1. The data
//! are the embedded digits, even against odd (N = 1797, n = 64 pixels in [0, 1]; the paper uses LIBSVM sets).
//! Derivatives in closed form: ∇²ₓL = (1/N) Xᵀ diag(σ(1 − σ)) X + 2 λ₁₁ I.

use super::{check_multipliers, Nlp};
use crate::rng::{normal, rng_for, Stream};
use crate::scalar::{sigmoid, softplus};
use crate::{Error, Result};
use faer::Mat;

/// Linear constraints A w = b (the last constraint is the unit sphere).
pub const LINEAR_CONSTRAINTS: usize = 10;

#[derive(Debug, Clone)]
pub struct ConstrainedLogreg {
    name: String,
    /// N × n, row-major.
    x: Vec<f64>,
    /// ±1.
    y: Vec<f64>,
    rows: usize,
    n: usize,
    a: Mat<f64>,
    b: Vec<f64>,
}

impl ConstrainedLogreg {
    /// From features (N × n, row-major) and ±1 labels; A and b from `seed`.
    pub fn new(
        name: impl Into<String>,
        x: Vec<f64>,
        y: Vec<f64>,
        n: usize,
        seed: u64,
    ) -> Result<Self> {
        let rows = y.len();
        if n == 0 || rows == 0 || x.len() != rows * n {
            return Err(Error::Shape(format!(
                "constrained logistic regression: {} feature values for {rows} labels of {n} features",
                x.len()
            )));
        }
        if y.iter().any(|v| *v != 1.0 && *v != -1.0) || x.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid(
                "constrained logistic regression needs labels ±1 and finite features",
            ));
        }
        let mut rng = rng_for(seed, Stream::Data, 19);
        let a = Mat::from_fn(LINEAR_CONSTRAINTS, n, |_, _| normal(&mut rng));
        let b = (0..LINEAR_CONSTRAINTS).map(|_| normal(&mut rng)).collect();
        Ok(ConstrainedLogreg {
            name: name.into(),
            x,
            y,
            rows,
            n,
            a,
            b,
        })
    }

    /// The embedded digits, even (+1) against odd (−1).
    pub fn digits(seed: u64) -> Result<Self> {
        let d = crate::data::digits()?;
        let crate::data::Target::Classes { labels, .. } = &d.target else {
            return Err(Error::invalid("the embedded digits have no class labels"));
        };
        let x = d.x.iter().map(|&v| v as f64).collect();
        let y = labels
            .iter()
            .map(|&l| if l % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        Self::new("logreg-eq", x, y, 64, seed)
    }

    fn row(&self, i: usize) -> &[f64] {
        &self.x[i * self.n..(i + 1) * self.n]
    }

    fn margins(&self, w: &[f64]) -> Result<Vec<f64>> {
        if w.len() != self.n {
            return Err(Error::Shape(format!(
                "{}: w has {} entries, the problem {}",
                self.name,
                w.len(),
                self.n
            )));
        }
        Ok((0..self.rows)
            .map(|i| self.row(i).iter().zip(w).map(|(a, b)| a * b).sum())
            .collect())
    }
}

impl Nlp for ConstrainedLogreg {
    fn name(&self) -> &str {
        &self.name
    }
    fn n(&self) -> usize {
        self.n
    }
    fn m(&self) -> usize {
        LINEAR_CONSTRAINTS + 1
    }
    fn x0(&self) -> Vec<f64> {
        vec![1.0; self.n]
    }
    fn lambda0(&self) -> Vec<f64> {
        vec![1.0; self.m()]
    }
    fn objective(&self, w: &[f64]) -> Result<f64> {
        let s = self.margins(w)?;
        Ok(s.iter()
            .zip(&self.y)
            .map(|(s, y)| softplus(-y * s))
            .sum::<f64>()
            / self.rows as f64)
    }
    fn gradient(&self, w: &[f64]) -> Result<Vec<f64>> {
        let s = self.margins(w)?;
        let mut g = vec![0.0; self.n];
        for (i, (s, y)) in s.iter().zip(&self.y).enumerate() {
            let coef = -y * sigmoid(-y * s) / self.rows as f64;
            for (gj, xj) in g.iter_mut().zip(self.row(i)) {
                *gj += coef * xj;
            }
        }
        Ok(g)
    }
    fn constraints(&self, w: &[f64]) -> Result<Vec<f64>> {
        if w.len() != self.n {
            return Err(Error::Shape(format!(
                "{}: w has {} entries",
                self.name,
                w.len()
            )));
        }
        let mut c: Vec<f64> = (0..LINEAR_CONSTRAINTS)
            .map(|i| (0..self.n).map(|j| self.a[(i, j)] * w[j]).sum::<f64>() - self.b[i])
            .collect();
        c.push(w.iter().map(|v| v * v).sum::<f64>() - 1.0);
        Ok(c)
    }
    fn jacobian(&self, w: &[f64]) -> Result<Mat<f64>> {
        if w.len() != self.n {
            return Err(Error::Shape(format!(
                "{}: w has {} entries",
                self.name,
                w.len()
            )));
        }
        Ok(Mat::from_fn(self.m(), self.n, |i, j| {
            if i < LINEAR_CONSTRAINTS {
                self.a[(i, j)]
            } else {
                2.0 * w[j]
            }
        }))
    }
    fn lagrangian_hessian(&self, w: &[f64], lambda: &[f64]) -> Result<Mat<f64>> {
        check_multipliers(&self.name, lambda, self.m())?;
        let s = self.margins(w)?;
        let n = self.n;
        let mut h = Mat::<f64>::zeros(n, n);
        for (i, s) in s.iter().enumerate() {
            let p = sigmoid(*s);
            let d = p * (1.0 - p) / self.rows as f64;
            let r = self.row(i);
            for j in 0..n {
                if r[j] == 0.0 {
                    continue;
                }
                for k in 0..n {
                    h[(j, k)] += d * r[j] * r[k];
                }
            }
        }
        let shift = 2.0 * lambda[LINEAR_CONSTRAINTS];
        for j in 0..n {
            h[(j, j)] += shift;
        }
        Ok(h)
    }
}
