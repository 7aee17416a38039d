//! Hessian-vector products: exact by the R-operator for an MLP, a CNN or a transformer ([`super::rop`]) or by
//! double backward (candle with `CANDLE_GRAD_DO_NOT_DETACH=1`, checked by [`crate::require_second_order`]), by
//! central differences of the gradient, or from a dense matrix.

use crate::functions::TestFunction;
use crate::nn::loss::{cross_entropy, mse};
use crate::nn::{Param, Sequential};
use crate::optim::kernel::SliceRef;
use crate::{require_second_order, Error, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};

/// A symmetric linear operator v ↦ H v on flattened f64 vectors.
pub trait HessianOperator {
    /// The dimension n of H (n × n).
    fn dim(&self) -> usize;
    /// H v.
    fn hvp(&self, v: &[f64]) -> Result<Vec<f64>>;
}

/// The point and gradient of a differentiable objective, for finite differences.
pub trait Gradient {
    /// The current point, flattened.
    fn point(&self) -> Result<Vec<f64>>;
    /// ∇f at `at`.
    fn gradient_at(&self, at: &[f64]) -> Result<Vec<f64>>;
}

fn check_len(v: &[f64], n: usize) -> Result<()> {
    if v.len() != n {
        return Err(Error::Shape(format!(
            "a vector of {} values for a Hessian of dimension {n}",
            v.len()
        )));
    }
    if v.iter().any(|x| !x.is_finite()) {
        return Err(Error::NonFinite(
            "the vector holds NaN or infinite values".into(),
        ));
    }
    Ok(())
}

/// The Hessian of an analytic test function at a point, in f64.
#[derive(Debug, Clone)]
pub struct FunctionHessian {
    f: TestFunction,
    x: Vec<f64>,
}

impl FunctionHessian {
    /// ∇²f at `x`. Fails when second-order gradients are disabled or `x` does not fit `f`.
    pub fn new(f: TestFunction, x: &[f64]) -> Result<Self> {
        require_second_order()?;
        f.check_dim(x.len())?;
        check_len(x, x.len())?;
        Ok(FunctionHessian { f, x: x.to_vec() })
    }

    fn var(&self, at: &[f64]) -> Result<Var> {
        Ok(Var::from_slice(at, at.len(), &Device::Cpu)?)
    }

    /// f at the point.
    pub fn value(&self) -> Result<f64> {
        self.f.eval(&self.x)
    }
}

impl HessianOperator for FunctionHessian {
    fn dim(&self) -> usize {
        self.x.len()
    }

    fn hvp(&self, v: &[f64]) -> Result<Vec<f64>> {
        check_len(v, self.dim())?;
        let x = self.var(&self.x)?;
        let g = self.f.value(x.as_tensor())?.backward()?;
        let g = g
            .get(x.as_tensor())
            .ok_or_else(|| Error::invalid("f does not depend on x"))?;
        let vt = Tensor::from_slice(v, v.len(), &Device::Cpu)?;
        let h = g.mul(&vt)?.sum_all()?.backward()?;
        Ok(match h.get(x.as_tensor()) {
            Some(t) => t.to_vec1()?,
            None => vec![0.0; v.len()], // f is linear along every direction
        })
    }
}

impl Gradient for FunctionHessian {
    fn point(&self) -> Result<Vec<f64>> {
        Ok(self.x.clone())
    }
    fn gradient_at(&self, at: &[f64]) -> Result<Vec<f64>> {
        let x = self.var(at)?;
        let g = self.f.value(x.as_tensor())?.backward()?;
        Ok(g.get(x.as_tensor())
            .map(|t| t.to_vec1())
            .transpose()?
            .unwrap_or_else(|| vec![0.0; at.len()]))
    }
}

/// Appends the values of `t` as f64 (one pass for an f32 or f64 tensor on the CPU).
fn extend_f64(out: &mut Vec<f64>, t: &Tensor) -> Result<()> {
    if t.device().is_cpu() && matches!(t.dtype(), DType::F32 | DType::F64) {
        return crate::optim::kernel::with_slice(t, |s| match s {
            SliceRef::F32(v) => out.extend(v.iter().map(|&x| x as f64)),
            SliceRef::F64(v) => out.extend_from_slice(v),
        });
    }
    out.extend(t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?);
    Ok(())
}

/// The Hessian of a model's mean loss on one batch with respect to all its parameters (state-dict order,
/// flattened).
pub struct ModelHessian {
    model: Sequential,
    params: Vec<Param>,
    x: Tensor,
    y: Tensor,
    classification: bool,
    n: usize,
}

impl ModelHessian {
    /// The Hessian at the model's current parameters of the mean cross-entropy (`classification`) or MSE of
    /// `model(x)` against `y`.
    pub fn new(model: &Sequential, x: Tensor, y: Tensor, classification: bool) -> Result<Self> {
        require_second_order()?;
        let params = model.params();
        let n = params.iter().map(Param::numel).sum();
        Ok(ModelHessian {
            model: model.clone(),
            params,
            x,
            y,
            classification,
            n,
        })
    }

    /// The mean loss.
    pub fn loss(&self) -> Result<Tensor> {
        let out = self.model.forward(&self.x)?;
        if self.classification {
            cross_entropy(&out, &self.y)
        } else {
            mse(&out, &self.y)
        }
    }

    fn flatten(&self, g: &GradStore) -> Result<Vec<f64>> {
        let mut out = Vec::with_capacity(self.n);
        for p in &self.params {
            match g.get(p.tensor()) {
                Some(t) => extend_f64(&mut out, t)?,
                None => out.extend(std::iter::repeat_n(0.0, p.numel())),
            }
        }
        Ok(out)
    }

    /// `v` cut into one tensor per parameter, of its shape and dtype (one pass: the f64 to f32 conversion).
    fn split(&self, v: &[f64]) -> Result<Vec<Tensor>> {
        let mut off = 0;
        self.params
            .iter()
            .map(|p| {
                let part = &v[off..off + p.numel()];
                off += part.len();
                let dims = p.var.dims();
                Ok(match p.var.dtype() {
                    DType::F32 => Tensor::from_vec(
                        part.iter().map(|&x| x as f32).collect::<Vec<_>>(),
                        dims,
                        &Device::Cpu,
                    )?,
                    d => Tensor::from_slice(part, dims, &Device::Cpu)?.to_dtype(d)?,
                })
            })
            .collect()
    }

    /// H v with v and the result one tensor per parameter (state-dict order, the parameters' shapes): by
    /// Pearlmutter's R-operator when every layer is one it covers (Linear, muP's readout, "same" Conv2d, ReLU,
    /// tanh, GELU, 2×2 max pooling, Flatten, embeddings, LayerNorm and LayerNorm transformer blocks: MLPs, CNNs
    /// without normalization, transformer language models on unpadded batches), by double backward otherwise.
    pub fn hvp_tensors(&self, v: &[Tensor]) -> Result<Vec<Tensor>> {
        let target = if self.classification {
            super::rop::Target::Classes(&self.y)
        } else {
            super::rop::Target::Values(&self.y)
        };
        match super::rop::hvp(&self.model, &self.x, &target, v)? {
            Some(h) => Ok(h),
            None => self.hvp_double_backward(v),
        }
    }

    /// H v by double backward whatever the layers: the general path, and the R-operator's cross-check.
    pub fn hvp_double_backward(&self, v: &[Tensor]) -> Result<Vec<Tensor>> {
        let params: Vec<&Tensor> = self.params.iter().map(Param::tensor).collect();
        crate::hvp(&self.loss()?, &params, v)?
            .ok_or_else(|| Error::invalid("the loss does not depend on the parameters"))
    }

    /// How [`ModelHessian::hvp_tensors`] computes its products: `r-operator` or `double-backward`.
    pub fn method(&self) -> &'static str {
        if super::rop::applies(&self.model, &self.x) {
            "r-operator"
        } else {
            "double-backward"
        }
    }

    fn set_params(&self, at: &[f64]) -> Result<()> {
        for (p, t) in self.params.iter().zip(self.split(at)?) {
            p.var.set(&t)?;
        }
        Ok(())
    }
}

impl HessianOperator for ModelHessian {
    fn dim(&self) -> usize {
        self.n
    }

    fn hvp(&self, v: &[f64]) -> Result<Vec<f64>> {
        check_len(v, self.n)?;
        let h = self.hvp_tensors(&self.split(v)?)?;
        let mut out = Vec::with_capacity(self.n);
        for t in &h {
            extend_f64(&mut out, t)?;
        }
        Ok(out)
    }
}

impl Gradient for ModelHessian {
    fn point(&self) -> Result<Vec<f64>> {
        let mut out = Vec::with_capacity(self.n);
        for p in &self.params {
            out.extend(
                p.tensor()
                    .flatten_all()?
                    .to_dtype(DType::F64)?
                    .to_vec1::<f64>()?,
            );
        }
        Ok(out)
    }

    /// ∇L at `at`; the parameters are restored afterwards.
    fn gradient_at(&self, at: &[f64]) -> Result<Vec<f64>> {
        check_len(at, self.n)?;
        let saved = self.point()?;
        self.set_params(at)?;
        let g = self
            .loss()
            .and_then(|l| Ok(l.backward()?))
            .and_then(|g| self.flatten(&g));
        self.set_params(&saved)?;
        g
    }
}

/// H v ≈ (∇f(x + εv) - ∇f(x - εv)) / 2ε. Error O(ε² ‖∇³f‖ ‖v‖³) from truncation plus O(u ‖∇f‖/ε) from
/// rounding (u the unit roundoff): ε ≈ (3u)^(1/3) ≈ 1e-5 balances them in f64. Use it where no double backward
/// exists (a custom op without one) or to cross-check the exact product.
pub struct FiniteDifferenceHessian<'a, G: Gradient> {
    grad: &'a G,
    x: Vec<f64>,
    eps: f64,
}

impl<'a, G: Gradient> FiniteDifferenceHessian<'a, G> {
    /// Central differences of `grad` around its current point with step `eps` (scaled by ‖v‖).
    pub fn new(grad: &'a G, eps: f64) -> Result<Self> {
        if !(eps > 0.0 && eps.is_finite()) {
            return Err(Error::invalid(format!(
                "finite-difference step eps={eps} must be positive"
            )));
        }
        Ok(FiniteDifferenceHessian {
            x: grad.point()?,
            grad,
            eps,
        })
    }
}

impl<G: Gradient> HessianOperator for FiniteDifferenceHessian<'_, G> {
    fn dim(&self) -> usize {
        self.x.len()
    }

    fn hvp(&self, v: &[f64]) -> Result<Vec<f64>> {
        check_len(v, self.x.len())?;
        let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        if norm == 0.0 {
            return Ok(vec![0.0; v.len()]);
        }
        let h = self.eps / norm;
        let plus: Vec<f64> = self.x.iter().zip(v).map(|(a, b)| a + h * b).collect();
        let minus: Vec<f64> = self.x.iter().zip(v).map(|(a, b)| a - h * b).collect();
        let (gp, gm) = (
            self.grad.gradient_at(&plus)?,
            self.grad.gradient_at(&minus)?,
        );
        Ok(gp
            .iter()
            .zip(&gm)
            .map(|(a, b)| (a - b) / (2.0 * h))
            .collect())
    }
}

/// A dense symmetric matrix as an operator (tests, and the exact reference for small problems).
#[derive(Debug, Clone, PartialEq)]
pub struct DenseHessian {
    pub n: usize,
    /// Row-major n × n.
    pub a: Vec<f64>,
}

impl DenseHessian {
    /// Builds the full Hessian of `op` column by column (n products).
    pub fn from_operator(op: &dyn HessianOperator) -> Result<Self> {
        let n = op.dim();
        let mut a = vec![0.0; n * n];
        let mut e = vec![0.0; n];
        for j in 0..n {
            e[j] = 1.0;
            let col = op.hvp(&e)?;
            e[j] = 0.0;
            for i in 0..n {
                a[i * n + j] = col[i];
            }
        }
        Ok(DenseHessian { n, a })
    }
}

impl HessianOperator for DenseHessian {
    fn dim(&self) -> usize {
        self.n
    }
    fn hvp(&self, v: &[f64]) -> Result<Vec<f64>> {
        check_len(v, self.n)?;
        Ok((0..self.n)
            .map(|i| (0..self.n).map(|j| self.a[i * self.n + j] * v[j]).sum())
            .collect())
    }
}
