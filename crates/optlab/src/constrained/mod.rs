//! Equality-constrained nonlinear programming: min f(x) s.t. c(x) = 0 (P19, "Constrained Optimization via Exact
//! Augmented Lagrangian and Randomized Iterative Sketching"; official code IlgeeHong/AdaSketch-Newton).
//!
//! - [`Nlp`]: a problem by its derivatives — f, ∇f, c, the Jacobian G = ∂c/∂x and the Hessian of the Lagrangian
//!   ∇²ₓL with L = f + λᵀc — as dense matrices (the methods here are for small and medium n).
//! - [`AutoNlp`]: a problem from f and c alone as candle functions; every derivative comes from backward passes
//!   (Hessians by double backward, or only their products: [`AutoNlp::hessian_by_products`]).
//! - [`operator`]: the matrix-free variant for problems whose Hessian comes as products alone.
//! - [`adasketch`]: AdaSketch-Newton — the Newton–KKT system solved inexactly by randomized sketching
//!   ([`sketch`]: Kaczmarz, Gaussian, block Gaussian, or an exact solve for the deterministic variant), the exact
//!   augmented Lagrangian merit with adaptive penalties, Hessian modification and Armijo backtracking.
//! - [`logreg::ConstrainedLogreg`]: logistic regression under linear and unit-sphere equality constraints, the
//!   paper's experiment, on the embedded digits.
//! - [`problems`]: a test set of equality-constrained problems from CUTEst (Hock–Schittkowski, BT and nonlinear
//!   equations), with their standard starting points and published optimal values.
//!
//! ```
//! use optlab::constrained::{adasketch::{solve, AdaSketchConfig}, problems};
//! let hs28 = problems::by_name("HS28")?;
//! let out = solve(&hs28, &AdaSketchConfig::default())?;
//! assert!(out.converged() && (out.objective - 0.0).abs() < 1e-6);
//! # Ok::<(), optlab::Error>(())
//! ```

pub mod adasketch;
pub mod dual;
pub mod logreg;
pub mod operator;
pub mod problems;
pub mod sketch;

use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use faer::Mat;

/// An equality-constrained problem min f(x) s.t. c(x) = 0 with x ∈ Rⁿ, c(x) ∈ Rᵐ.
pub trait Nlp {
    fn name(&self) -> &str;
    /// Variables.
    fn n(&self) -> usize;
    /// Constraints.
    fn m(&self) -> usize;
    /// The standard starting point.
    fn x0(&self) -> Vec<f64>;
    /// The starting multipliers (CUTEst's default: zero).
    fn lambda0(&self) -> Vec<f64> {
        vec![0.0; self.m()]
    }
    fn objective(&self, x: &[f64]) -> Result<f64>;
    fn gradient(&self, x: &[f64]) -> Result<Vec<f64>>;
    fn constraints(&self, x: &[f64]) -> Result<Vec<f64>>;
    /// G = ∂c/∂x, m × n.
    fn jacobian(&self, x: &[f64]) -> Result<Mat<f64>>;
    /// ∇²ₓ(f + λᵀc), n × n, symmetric.
    fn lagrangian_hessian(&self, x: &[f64], lambda: &[f64]) -> Result<Mat<f64>>;
    /// ∇²ₓ(f + λᵀc) v. The default multiplies the dense Hessian; a problem that has the products alone overrides
    /// it and says so in [`Nlp::products_only`].
    fn lagrangian_hvp(&self, x: &[f64], lambda: &[f64], v: &[f64]) -> Result<Vec<f64>> {
        let h = self.lagrangian_hessian(x, lambda)?;
        if h.ncols() != v.len() {
            return Err(Error::Shape(format!(
                "{}: the Hessian of the Lagrangian is {}×{}, v has {} entries",
                self.name(),
                h.nrows(),
                h.ncols(),
                v.len()
            )));
        }
        Ok((0..h.nrows())
            .map(|i| (0..v.len()).map(|j| h[(i, j)] * v[j]).sum())
            .collect())
    }
    /// Whether the Hessian comes as products only (forming it would cost n products): AdaSketch-Newton then runs
    /// matrix-free ([`operator`]).
    fn products_only(&self) -> bool {
        false
    }
}

/// A function of x (a 1-D f64 tensor of n entries) built from candle ops.
pub type TensorFn = Box<dyn Fn(&Tensor) -> Result<Tensor> + Send + Sync>;

/// An [`Nlp`] from f (a scalar) and c (m values) as candle functions; derivatives by backward passes.
pub struct AutoNlp {
    name: String,
    x0: Vec<f64>,
    m: usize,
    f: TensorFn,
    c: TensorFn,
    products: bool,
}

impl AutoNlp {
    /// The problem `name` with start `x0`, `m` constraints, objective `f` and constraints `c`. Checks both at x0:
    /// f must give one value and c exactly m, all finite.
    pub fn new(
        name: impl Into<String>,
        x0: Vec<f64>,
        m: usize,
        f: impl Fn(&Tensor) -> Result<Tensor> + Send + Sync + 'static,
        c: impl Fn(&Tensor) -> Result<Tensor> + Send + Sync + 'static,
    ) -> Result<Self> {
        let p = AutoNlp {
            name: name.into(),
            x0,
            m,
            f: Box::new(f),
            c: Box::new(c),
            products: false,
        };
        if p.x0.is_empty() {
            return Err(Error::invalid(format!("{}: no variables", p.name)));
        }
        let x0 = p.x0.clone();
        check_finite(&p.name, "the objective at the start", &[p.objective(&x0)?])?;
        check_finite(
            &p.name,
            "the constraints at the start",
            &p.constraints(&x0)?,
        )?;
        Ok(p)
    }

    /// The same problem, its Hessian given by products only (one double backward each, never n of them): for large
    /// n, where the dense Hessian costs n backward passes and n² memory.
    pub fn hessian_by_products(mut self) -> Self {
        self.products = true;
        self
    }

    /// ∇ₓ(f + λᵀc) as a node of x's graph.
    fn lagrangian_grad(&self, v: &Var, lambda: &[f64]) -> Result<Tensor> {
        check_multipliers(&self.name, lambda, self.m)?;
        let mut l = self.f_tensor(v.as_tensor())?;
        if self.m > 0 {
            let c = self.c_tensor(v.as_tensor())?;
            l = l.add(&c.mul(&Tensor::new(lambda, &Device::Cpu)?)?.sum_all()?)?;
        }
        grad_of(&l, v)
    }

    fn var(&self, x: &[f64]) -> Result<Var> {
        if x.len() != self.x0.len() {
            return Err(Error::Shape(format!(
                "{}: x has {} entries, the problem {}",
                self.name,
                x.len(),
                self.x0.len()
            )));
        }
        Ok(Var::from_slice(x, x.len(), &Device::Cpu)?)
    }

    fn c_tensor(&self, x: &Tensor) -> Result<Tensor> {
        let c = (self.c)(x)?.to_dtype(DType::F64)?;
        if c.dims() != [self.m] {
            return Err(Error::Shape(format!(
                "{}: the constraint function gave shape {:?}, the problem declares {} constraints",
                self.name,
                c.dims(),
                self.m
            )));
        }
        Ok(c)
    }

    fn f_tensor(&self, x: &Tensor) -> Result<Tensor> {
        let f = (self.f)(x)?.to_dtype(DType::F64)?;
        if f.elem_count() != 1 {
            return Err(Error::Shape(format!(
                "{}: the objective gave shape {:?}, not one value",
                self.name,
                f.dims()
            )));
        }
        Ok(f.flatten_all()?.sum_all()?)
    }
}

/// Refuses multipliers λ that do not match the problem's m constraints.
pub(crate) fn check_multipliers(name: &str, lambda: &[f64], m: usize) -> Result<()> {
    if lambda.len() != m {
        return Err(Error::Shape(format!(
            "{name}: λ has {} entries for {m} constraints",
            lambda.len()
        )));
    }
    Ok(())
}

fn check_finite(name: &str, what: &str, v: &[f64]) -> Result<()> {
    match v.iter().find(|v| !v.is_finite()) {
        Some(bad) => Err(Error::NonFinite(format!("{name}: {what} holds {bad}"))),
        None => Ok(()),
    }
}

/// The gradient of a scalar with respect to `x`, zero where it does not depend on x.
fn grad_of(s: &Tensor, x: &Var) -> Result<Tensor> {
    let g = s.backward()?;
    Ok(match g.get(x.as_tensor()) {
        Some(t) => t.clone(),
        None => x.as_tensor().zeros_like()?,
    })
}

impl Nlp for AutoNlp {
    fn name(&self) -> &str {
        &self.name
    }
    fn n(&self) -> usize {
        self.x0.len()
    }
    fn m(&self) -> usize {
        self.m
    }
    fn x0(&self) -> Vec<f64> {
        self.x0.clone()
    }
    fn objective(&self, x: &[f64]) -> Result<f64> {
        Ok(self.f_tensor(&Tensor::new(x, &Device::Cpu)?)?.to_scalar()?)
    }
    fn gradient(&self, x: &[f64]) -> Result<Vec<f64>> {
        let v = self.var(x)?;
        Ok(grad_of(&self.f_tensor(v.as_tensor())?, &v)?.to_vec1()?)
    }
    fn constraints(&self, x: &[f64]) -> Result<Vec<f64>> {
        Ok(self.c_tensor(&Tensor::new(x, &Device::Cpu)?)?.to_vec1()?)
    }
    fn jacobian(&self, x: &[f64]) -> Result<Mat<f64>> {
        let v = self.var(x)?;
        let c = self.c_tensor(v.as_tensor())?;
        let mut rows = Vec::with_capacity(self.m);
        for i in 0..self.m {
            rows.push(grad_of(&c.get(i)?, &v)?.to_vec1::<f64>()?);
        }
        Ok(Mat::from_fn(self.m, x.len(), |i, j| rows[i][j]))
    }
    fn lagrangian_hessian(&self, x: &[f64], lambda: &[f64]) -> Result<Mat<f64>> {
        crate::require_second_order()?;
        let n = x.len();
        crate::memory::check(
            &format!("{}: the dense Hessian of the Lagrangian", self.name),
            8.0 * (n as f64).powi(2),
            "use AutoNlp::hessian_by_products (matrix-free AdaSketch-Newton)",
        )?;
        let v = self.var(x)?;
        let g = self.lagrangian_grad(&v, lambda)?;
        let mut rows = Vec::with_capacity(n);
        for j in 0..n {
            rows.push(grad_of(&g.get(j)?, &v)?.to_vec1::<f64>()?);
        }
        Ok(Mat::from_fn(n, n, |i, j| 0.5 * (rows[i][j] + rows[j][i])))
    }
    /// One double backward: ∇ₓ(∇ₓL · v).
    fn lagrangian_hvp(&self, x: &[f64], lambda: &[f64], v: &[f64]) -> Result<Vec<f64>> {
        crate::require_second_order()?;
        if v.len() != x.len() {
            return Err(Error::Shape(format!(
                "{}: v has {} entries, x {}",
                self.name,
                v.len(),
                x.len()
            )));
        }
        let xv = self.var(x)?;
        let g = self.lagrangian_grad(&xv, lambda)?;
        let gv = g.mul(&Tensor::new(v, &Device::Cpu)?)?.sum_all()?;
        Ok(grad_of(&gv, &xv)?.to_vec1()?)
    }
    fn products_only(&self) -> bool {
        self.products
    }
}

/// ‖(∇ₓL; c)‖₂ with ∇ₓL = ∇f + Gᵀλ: the KKT residual AdaSketch-Newton stops on.
pub fn kkt_residual(nlp: &dyn Nlp, x: &[f64], lambda: &[f64]) -> Result<f64> {
    let g = nlp.gradient(x)?;
    let jac = nlp.jacobian(x)?;
    let c = nlp.constraints(x)?;
    let gl = lagrangian_gradient(&g, &jac, lambda);
    Ok((dot(&gl, &gl) + dot(&c, &c)).sqrt())
}

/// ∇f + Gᵀλ.
pub(crate) fn lagrangian_gradient(g: &[f64], jac: &Mat<f64>, lambda: &[f64]) -> Vec<f64> {
    let gt_l = jac_t_mul(jac, lambda);
    g.iter().zip(&gt_l).map(|(a, b)| a + b).collect()
}

/// G u (m values) for the m × n Jacobian G.
pub(crate) fn jac_mul(jac: &Mat<f64>, u: &[f64]) -> Vec<f64> {
    (0..jac.nrows())
        .map(|i| (0..jac.ncols()).map(|j| jac[(i, j)] * u[j]).sum())
        .collect()
}

/// Gᵀ v (n values).
pub(crate) fn jac_t_mul(jac: &Mat<f64>, v: &[f64]) -> Vec<f64> {
    (0..jac.ncols())
        .map(|j| (0..jac.nrows()).map(|i| jac[(i, j)] * v[i]).sum())
        .collect()
}

pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
