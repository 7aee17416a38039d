//! Implicit differentiation (P10, "Efficient and Modular Implicit Differentiation"; google/jaxopt
//! `implicit_diff.py`): the derivative of a solution x*(θ) of an inner problem, from an optimality condition
//! F(x*(θ), θ) = 0 alone — whatever solver found x*. With A = ∂ₓF and B = ∂_θF at (x*, θ), the implicit function
//! theorem gives ∂x*/∂θ = −A⁻¹B, so
//! - the VJP of a cotangent v (what reverse mode needs, e.g. a hypergradient) solves Aᵀu = −v and returns Bᵀu;
//! - the JVP of a tangent dθ solves A J = −B dθ.
//!
//! Everything is matrix-free: Aᵀu and Bᵀu are one backward pass of ⟨F(x, θ), u⟩ through candle; A w and B dθ use
//! the double-VJP trick (the gradient of ⟨∂ⓧF ᵀ u, w⟩ with respect to u), which needs second-order gradients
//! ([`crate::require_second_order`]). The linear systems go to [`linear`] (normal-equation CG by default; CG,
//! GMRES, BiCGSTAB, LU or Cholesky on request); one that does not converge is an error, not a wrong gradient.
//!
//! The optimality conditions of the paper come ready-made in [`optimality`]: a root (`F` itself, e.g. a
//! gradient), a fixed point (`T(x, θ) − x`), the KKT conditions of a constrained problem, and the proximal-gradient
//! fixed point of a non-smooth one (lasso, simplex or box constraints).
//!
//! ```
//! # std::env::set_var("CANDLE_GRAD_DO_NOT_DETACH", "1");
//! use candle_core::{Device, Tensor};
//! use optlab::implicit::{linear::SolveOptions, Optimality};
//! // x*(θ) = θ / 2 solves F(x, θ) = 2x − θ = 0; so dx*/dθ = 1/2.
//! let f = Optimality::root(|x: &Tensor, th: &Tensor| Ok(x.affine(2.0, 0.0)?.sub(th)?));
//! let th = Tensor::new(&[3.0f64], &Device::Cpu)?;
//! let x = Tensor::new(&[1.5f64], &Device::Cpu)?;
//! let v = Tensor::new(&[1.0f64], &Device::Cpu)?;
//! let g = f.vjp(&x, &th, &v, &SolveOptions::default())?;
//! assert!((g.to_vec1::<f64>()?[0] - 0.5).abs() < 1e-12);
//! # Ok::<(), optlab::Error>(())
//! ```

pub mod linear;
pub mod optimality;

use crate::optim::kernel::Real;
use crate::{Error, Result};
use candle_core::{DType, Tensor, Var, WithDType};
use linear::{solve, LinearOperator, SolveOptions};

/// The optimality function type: F(x, θ), a tensor of x's shape.
pub type OptimalityFn<'a> = Box<dyn Fn(&Tensor, &Tensor) -> Result<Tensor> + 'a>;

/// An optimality condition F(x, θ) = 0 that defines x*(θ).
pub struct Optimality<'a> {
    f: OptimalityFn<'a>,
    /// ∂ₓF is symmetric (F is a gradient): A·w is then one VJP instead of a double VJP.
    symmetric: bool,
}

impl std::fmt::Debug for Optimality<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Optimality { .. }")
    }
}

/// F evaluated once at (x*, θ) with both as variables, so every product reuses its graph.
struct Linearized {
    symmetric: bool,
    x: Var,
    theta: Var,
    fx: Tensor,
    /// (u, ∂ₓFᵀu, ∂_θFᵀu) as graphs in a variable u, built on the first JVP and reused by every later one.
    transposed: std::cell::OnceCell<(Var, Option<Tensor>, Option<Tensor>)>,
}

impl Linearized {
    fn new(opt: &Optimality<'_>, x: &Tensor, theta: &Tensor) -> Result<Self> {
        Self::build(opt, x, theta, true, true)
    }

    /// F with θ held constant: products with ∂ₓF only, which then skip the θ side of every backward pass
    /// (∂_θF products give zero).
    fn in_x(opt: &Optimality<'_>, x: &Tensor, theta: &Tensor) -> Result<Self> {
        Self::build(opt, x, theta, true, false)
    }

    fn build(
        opt: &Optimality<'_>,
        x: &Tensor,
        theta: &Tensor,
        x_var: bool,
        theta_var: bool,
    ) -> Result<Self> {
        let xv = Var::from_tensor(&x.detach())?;
        let tv = Var::from_tensor(&theta.detach())?;
        let held = |v: &Var, tracked: bool, t: &Tensor| {
            if tracked {
                v.as_tensor().clone()
            } else {
                t.detach()
            }
        };
        let fx = (opt.f)(&held(&xv, x_var, x), &held(&tv, theta_var, theta))?;
        if fx.dims() != x.dims() {
            return Err(Error::Shape(format!(
                "the optimality function returned shape {:?} for x of shape {:?} (it must return one residual per entry of x)",
                fx.dims(),
                x.dims()
            )));
        }
        Ok(Linearized {
            symmetric: opt.symmetric,
            x: xv,
            theta: tv,
            fx,
            transposed: std::cell::OnceCell::new(),
        })
    }

    /// (∂ₓF ᵀ u, ∂_θF ᵀ u): one backward pass of ⟨F, u⟩.
    fn vjp(&self, u: &Tensor) -> Result<(Tensor, Tensor)> {
        let grads = self.fx.mul(u)?.sum_all()?.backward()?;
        let zero_or = |v: &Var| -> Result<Tensor> {
            Ok(match grads.get(v.as_tensor()) {
                Some(g) => g.detach(),
                None => v.as_tensor().zeros_like()?,
            })
        };
        Ok((zero_or(&self.x)?, zero_or(&self.theta)?))
    }

    /// ∂_θFᵀu alone. For a θ of one entry, once [`Linearized::transposed_at`] has built its graph, that is
    /// ⟨∂_θF, u⟩ with ∂_θF the gradient of the graph's ∂_θFᵀu with respect to its u: a pass over the θ side of F
    /// only, where the plain VJP also pays for ∂ₓFᵀu. Otherwise the plain VJP.
    fn vjp_theta_only(&self, u: &Tensor) -> Result<Tensor> {
        if let (1, Some((uv, _, gt))) = (self.theta.elem_count(), self.transposed.get()) {
            let b = match gt {
                Some(g) => g.sum_all()?.backward()?.get(uv.as_tensor()).cloned(),
                None => None,
            };
            return Ok(match b {
                Some(b) => b
                    .detach()
                    .mul(u)?
                    .sum_all()?
                    .to_dtype(self.theta.dtype())?
                    .reshape(self.theta.shape())?,
                None => self.theta.as_tensor().zeros_like()?,
            });
        }
        Ok(self.vjp(u)?.1)
    }

    /// Builds the graph of (∂ₓFᵀu, ∂_θFᵀu) in a variable u that the JVPs differentiate, at u = `at` (the products
    /// are linear in u, so any value serves), and returns ∂ₓFᵀ`at`: the pass that builds the graph computes that
    /// VJP anyway. Once built, a plain VJP.
    fn transposed_at(&self, at: &Tensor) -> Result<Tensor> {
        if self.transposed.get().is_some() {
            return Ok(self.vjp(at)?.0);
        }
        crate::require_second_order()?;
        let u = Var::from_tensor(&at.detach())?;
        let grads = self.fx.mul(u.as_tensor())?.sum_all()?.backward()?;
        let (gx, gt) = (
            grads.get(self.x.as_tensor()).cloned(),
            grads.get(self.theta.as_tensor()).cloned(),
        );
        let atu = match &gx {
            Some(g) => g.detach(),
            None => self.x.as_tensor().zeros_like()?,
        };
        let _ = self.transposed.set((u, gx, gt));
        Ok(atu)
    }

    /// ∂ₓF·w (`wrt_x`) or ∂_θF·w by the double-VJP trick: the gradient with respect to u of ⟨(∂F)ᵀu, w⟩.
    fn jvp(&self, w: &Tensor, wrt_x: bool) -> Result<Tensor> {
        if self.transposed.get().is_none() {
            self.transposed_at(&self.fx.detach().zeros_like()?)?;
        }
        let (u, gx, gt) = self.transposed.get().expect("set above");
        let Some(g) = (if wrt_x { gx } else { gt }) else {
            return self.fx.zeros_like().map_err(Error::from);
        };
        let inner = g.mul(w)?.sum_all()?.backward()?;
        Ok(match inner.get(u.as_tensor()) {
            Some(j) => j.detach(),
            None => self.fx.zeros_like()?,
        })
    }
}

/// ∂ₓF as a linear operator on flat vectors of x's dtype.
struct XOperator<'a, T> {
    lin: &'a Linearized,
    /// (v, ∂ₓFᵀv) computed in passing, returned (once) when the solver asks for that product.
    known: std::cell::RefCell<Option<(Vec<T>, Vec<T>)>>,
}

impl<'a, T: Real + WithDType> XOperator<'a, T> {
    fn new(lin: &'a Linearized) -> Self {
        XOperator {
            lin,
            known: std::cell::RefCell::new(None),
        }
    }
    fn tensor(&self, v: &[T]) -> Result<Tensor> {
        Ok(Tensor::from_slice(
            v,
            self.lin.x.dims(),
            self.lin.x.device(),
        )?)
    }
    fn flat(t: &Tensor) -> Result<Vec<T>> {
        Ok(t.flatten_all()?.to_vec1::<T>()?)
    }
}

impl<T: Real + WithDType> LinearOperator<T> for XOperator<'_, T> {
    fn dim(&self) -> usize {
        self.lin.x.elem_count()
    }
    fn matvec(&self, v: &[T]) -> Result<Vec<T>> {
        if self.lin.symmetric {
            return self.rmatvec(v);
        }
        Self::flat(&self.lin.jvp(&self.tensor(v)?, true)?)
    }
    fn rmatvec(&self, v: &[T]) -> Result<Vec<T>> {
        let same =
            |(v0, _): &mut (Vec<T>, Vec<T>)| v0.iter().zip(v).all(|(a, b)| a.to64() == b.to64());
        if let Some((_, atv)) = self.known.borrow_mut().take_if(same) {
            return Ok(atv);
        }
        Self::flat(&self.lin.vjp(&self.tensor(v)?)?.0)
    }
}

/// Aᵀ as an operator (its transpose is A).
struct Transposed<'a, T: Real>(&'a dyn LinearOperator<T>);

impl<T: Real> LinearOperator<T> for Transposed<'_, T> {
    fn dim(&self) -> usize {
        self.0.dim()
    }
    fn matvec(&self, v: &[T]) -> Result<Vec<T>> {
        self.0.rmatvec(v)
    }
    fn rmatvec(&self, v: &[T]) -> Result<Vec<T>> {
        self.0.matvec(v)
    }
}

/// Solves A z = rhs for the x-operator of `lin`, in x's dtype.
fn solve_x<T: Real + WithDType>(
    lin: &Linearized,
    rhs: &Tensor,
    opts: &SolveOptions,
) -> Result<Tensor> {
    let op = XOperator::<T>::new(lin);
    let b = XOperator::<T>::flat(rhs)?;
    if opts.solver == linear::Solver::NormalCg && !lin.symmetric {
        // Normal-equation CG starts with Aᵀb, which the pass that builds the graph of its A-products computes.
        let atb = XOperator::<T>::flat(&lin.transposed_at(rhs)?)?;
        *op.known.borrow_mut() = Some((b.clone(), atb));
    }
    op.tensor(&solve(&op, &b, opts)?.x)
}

/// Solves Aᵀu = −v (products on `in_x`) and returns Bᵀu (from `full(with_x)`, or `in_x` itself when it gives
/// `None`). The one backward pass that gives Bᵀu gives Aᵀu with it, which verifies the solve; unverified
/// (`opts.verify` off), that pass skips x's side.
fn theta_vjp<T: Real + WithDType>(
    in_x: &Linearized,
    full: impl FnOnce(bool) -> Result<Option<Linearized>>,
    v: &Tensor,
    u0: Option<&Tensor>,
    opts: &SolveOptions,
) -> Result<(Tensor, Tensor)> {
    let op = XOperator::<T>::new(in_x);
    let b = XOperator::<T>::flat(&v.neg()?)?;
    let sol = if opts.solver == linear::Solver::NormalCg && !in_x.symmetric {
        normal_cg_adjoint(in_x, &op, &b, u0, opts)?
    } else {
        match u0 {
            Some(u0) => linear::solve_unverified_from(
                &Transposed(&op),
                &b,
                &XOperator::<T>::flat(u0)?,
                opts,
            )?,
            None => linear::solve_unverified(&Transposed(&op), &b, opts)?,
        }
    };
    let u = op.tensor(&sol.x)?;
    if !opts.verify {
        // Bᵀu without the Aᵀu that only the check needs.
        let btu = match full(false)? {
            Some(theta_only) => theta_only.vjp(&u)?.1,
            None => in_x.vjp_theta_only(&u)?,
        };
        return Ok((btu, u));
    }
    let (atu, btu) = match full(true)? {
        Some(full) => full.vjp(&u)?,
        None => in_x.vjp(&u)?,
    };
    linear::verify(sol, &b, &XOperator::<T>::flat(&atu)?, opts)?;
    Ok((btu, u))
}

/// The adjoint solve Aᵀu = b by normal-equation CG, which needs products with A as well, through the graph that
/// [`Linearized::transposed_at`] builds. The backward pass that builds it also yields one product Aᵀz, spent on the
/// start: z = the warm start u0 when given (whose residual needs that product), else z = b, starting from the
/// minimal-residual multiple γb, γ = ⟨b, Aᵀb⟩/‖Aᵀb‖² (a product a graph built at z = 0 would have wasted). The
/// operator hands the product to the solver as a known one.
fn normal_cg_adjoint<T: Real + WithDType>(
    in_x: &Linearized,
    op: &XOperator<'_, T>,
    b: &[T],
    u0: Option<&Tensor>,
    opts: &SolveOptions,
) -> Result<linear::Solution<T>> {
    let start = match u0 {
        Some(u0) => u0.clone(),
        None => op.tensor(b)?,
    };
    let z = XOperator::<T>::flat(&start)?;
    let atz = XOperator::<T>::flat(&in_x.transposed_at(&start)?)?;
    let gamma = if u0.is_some() {
        1.0
    } else {
        // The residual b − γ(Aᵀ + ridge·I)b is smallest at this γ.
        let abz: Vec<f64> = atz
            .iter()
            .zip(&z)
            .map(|(a, x)| a.to64() + opts.ridge * x.to64())
            .collect();
        let ab_b: f64 = abz.iter().zip(b).map(|(a, bi)| a * bi.to64()).sum();
        let ab_ab: f64 = abz.iter().map(|a| a * a).sum();
        if ab_ab > 0.0 && ab_b.is_finite() {
            ab_b / ab_ab
        } else {
            0.0
        }
    };
    let scale = |v: &[T]| -> Vec<T> { v.iter().map(|x| T::of(gamma * x.to64())).collect() };
    let x0 = scale(&z);
    *op.known.borrow_mut() = Some((x0.clone(), scale(&atz)));
    linear::solve_unverified_from(&Transposed(op), b, &x0, opts)
}

/// Whether the products of a VJP or JVP solve hold θ constant (a second linearization, F evaluated once more):
/// yes unless θ is a single number, whose side of each product is a few vector operations, less than that second
/// evaluation of F costs.
fn holds_theta(theta: &Tensor) -> bool {
    theta.elem_count() > 1
}

/// Runs `f32` or `f64` by x's dtype.
fn by_dtype<R>(
    lin: &Linearized,
    f32: impl FnOnce() -> Result<R>,
    f64: impl FnOnce() -> Result<R>,
) -> Result<R> {
    match lin.x.dtype() {
        DType::F32 => f32(),
        DType::F64 => f64(),
        other => Err(Error::invalid(format!(
            "implicit differentiation works in f32 or f64, not {other:?}"
        ))),
    }
}

fn solve_dispatch(lin: &Linearized, rhs: &Tensor, opts: &SolveOptions) -> Result<Tensor> {
    by_dtype(
        lin,
        || solve_x::<f32>(lin, rhs, opts),
        || solve_x::<f64>(lin, rhs, opts),
    )
}

impl<'a> Optimality<'a> {
    /// The condition F(x, θ) = 0 itself (jaxopt's `custom_root`); e.g. F = ∇ₓ of an inner objective.
    pub fn root(f: impl Fn(&Tensor, &Tensor) -> Result<Tensor> + 'a) -> Self {
        Optimality {
            f: Box::new(f),
            symmetric: false,
        }
    }

    /// Declares ∂ₓF symmetric (F is the gradient of a twice-differentiable function of x, as with
    /// [`Optimality::stationary`], which sets it): every product with ∂ₓF is then one backward pass. Declaring it for
    /// a non-symmetric ∂ₓF gives wrong derivatives.
    pub fn symmetric(mut self) -> Self {
        self.symmetric = true;
        self
    }

    /// The fixed point x = T(x, θ), as F = T(x, θ) − x (jaxopt's `custom_fixed_point`).
    pub fn fixed_point(t: impl Fn(&Tensor, &Tensor) -> Result<Tensor> + 'a) -> Self {
        Optimality::root(move |x, th| Ok(t(x, th)?.sub(x)?))
    }

    /// F at (x, θ): how far x is from satisfying the condition.
    pub fn residual(&self, x: &Tensor, theta: &Tensor) -> Result<Tensor> {
        Ok(Linearized::in_x(self, x, theta)?.fx.detach())
    }

    /// The VJP of x*(θ) at the solution `x_star`: vᵀ ∂x*/∂θ, of θ's shape (a hypergradient when v = ∇ₓ of an outer
    /// loss). Solves (∂ₓF)ᵀ u = −v, returns (∂_θF)ᵀ u.
    pub fn vjp(
        &self,
        x_star: &Tensor,
        theta: &Tensor,
        v: &Tensor,
        opts: &SolveOptions,
    ) -> Result<Tensor> {
        Ok(self.vjp_from(x_star, theta, v, None, opts)?.0)
    }

    /// [`Optimality::vjp`] with the linear solve started from `u0` (the adjoint of a nearby problem, e.g. the previous
    /// step's in hypergradient descent), returning the VJP and the adjoint u (Aᵀu = −v) for the next call.
    pub fn vjp_from(
        &self,
        x_star: &Tensor,
        theta: &Tensor,
        v: &Tensor,
        u0: Option<&Tensor>,
        opts: &SolveOptions,
    ) -> Result<(Tensor, Tensor)> {
        check_same(v, x_star, "the cotangent")?;
        if let Some(u0) = u0 {
            check_same(u0, x_star, "the warm start")?;
        }
        let hold = holds_theta(theta);
        let lin = if hold {
            Linearized::in_x(self, x_star, theta)?
        } else {
            Linearized::new(self, x_star, theta)?
        };
        // F with θ tracked as well, when `lin` holds it: with x too where the check needs Aᵀu, or where F
        // differentiates in x itself (a stationary condition), which fails on an x held constant.
        let full = |with_x: bool| -> Result<Option<Linearized>> {
            if !hold {
                return Ok(None);
            }
            match Linearized::build(self, x_star, theta, with_x, true) {
                Err(_) if !with_x => Linearized::new(self, x_star, theta).map(Some),
                other => other.map(Some),
            }
        };
        by_dtype(
            &lin,
            || theta_vjp::<f32>(&lin, full, v, u0, opts),
            || theta_vjp::<f64>(&lin, full, v, u0, opts),
        )
    }

    /// The JVP of x*(θ) at the solution: ∂x*/∂θ · dθ, of x's shape. Solves ∂ₓF J = −∂_θF dθ.
    pub fn jvp(
        &self,
        x_star: &Tensor,
        theta: &Tensor,
        dtheta: &Tensor,
        opts: &SolveOptions,
    ) -> Result<Tensor> {
        check_same(dtheta, theta, "the tangent")?;
        let full = Linearized::new(self, x_star, theta)?;
        let b = full.jvp(dtheta, false)?.neg()?;
        if holds_theta(theta) {
            solve_dispatch(&Linearized::in_x(self, x_star, theta)?, &b, opts)
        } else {
            solve_dispatch(&full, &b, opts)
        }
    }
}

impl Optimality<'_> {
    /// Finds a root of F(·, θ) by Newton's method from `x0`, for small inner problems (and to check gradients by
    /// finite differences): each step solves ∂ₓF d = −F with `opts` and halves the step until ‖F‖ decreases. Stops
    /// at ‖F‖ ≤ `tol`; more than `max_steps` steps is an error naming the residual reached.
    pub fn newton(
        &self,
        x0: &Tensor,
        theta: &Tensor,
        opts: &SolveOptions,
        max_steps: usize,
        tol: f64,
    ) -> Result<Tensor> {
        self.newton_with(x0, theta, opts, max_steps, tol, false)
    }

    /// [`Optimality::newton`] with inexact steps for smooth F: each linear solve stops at a relative residual of
    /// min(0.5, ‖F‖) (Dembo, Eisenstat and Steihaug's forcing term for quadratic convergence), not `opts.tol`, which
    /// keeps Newton's convergence at a fraction of the products; never below tol/(2‖F‖), the reduction that lands
    /// the step under `tol` (no oversolving on the last step). scipy's Newton-CG uses min(0.5, √‖F‖), which took
    /// 25-35% more time on the digits distillation problem's warm-started solves to 1e-9; the floor saves another
    /// fifth of the products there (42 to 34 per solve). A direction that fails the line search is recomputed with
    /// `opts.tol`. Prefer [`Optimality::newton`] where F is only piecewise smooth (a squared hinge): inexact steps
    /// can stall there.
    pub fn inexact_newton(
        &self,
        x0: &Tensor,
        theta: &Tensor,
        opts: &SolveOptions,
        max_steps: usize,
        tol: f64,
    ) -> Result<Tensor> {
        self.newton_with(x0, theta, opts, max_steps, tol, true)
    }

    fn newton_with(
        &self,
        x0: &Tensor,
        theta: &Tensor,
        opts: &SolveOptions,
        max_steps: usize,
        tol: f64,
        inexact: bool,
    ) -> Result<Tensor> {
        let mut x = x0.detach();
        let mut lin = Linearized::in_x(self, &x, theta)?;
        let mut r = residual_norm(&lin.fx)?;
        for _ in 0..max_steps {
            if r <= tol {
                return Ok(x);
            }
            // An inexact direction that fails the line search is redone with the full-accuracy solve.
            let inexact = if inexact {
                // Quadratic forcing, but never tighter than the step that lands below `tol` needs.
                r.max(0.5 * tol / r).min(0.5).max(opts.tol)
            } else {
                opts.tol
            };
            let mut forcing = vec![inexact];
            if inexact > opts.tol {
                forcing.push(opts.tol);
            }
            let mut accepted = None;
            for eta in forcing {
                let step_opts = SolveOptions { tol: eta, ..*opts };
                let d = solve_dispatch(&lin, &lin.fx.detach().neg()?, &step_opts)?;
                accepted = self.line_search(&x, &d, theta, r, tol)?;
                if accepted.is_some() {
                    break;
                }
            }
            let Some(step) = accepted else {
                return Err(Error::invalid(format!(
                    "Newton's method stalled at residual {r:.3e}: no step along the Newton direction reduces it"
                )));
            };
            (x, lin, r) = step;
        }
        if r <= tol {
            return Ok(x);
        }
        Err(Error::invalid(format!(
            "Newton's method did not reach residual {tol:e} in {max_steps} steps (at {r:.3e})"
        )))
    }

    /// Backtracking along d from x until ‖F‖ decreases enough: the accepted point, its linearization and residual,
    /// or `None` when the step shrinks to nothing.
    fn line_search(
        &self,
        x: &Tensor,
        d: &Tensor,
        theta: &Tensor,
        r: f64,
        tol: f64,
    ) -> Result<Option<(Tensor, Linearized, f64)>> {
        let mut t = 1.0;
        while t >= 1e-10 {
            let trial = x.add(&d.affine(t, 0.0)?)?;
            let next = Linearized::in_x(self, &trial, theta)?;
            let rn = residual_norm(&next.fx)?;
            if rn < (1.0 - 1e-4 * t) * r || rn <= tol {
                return Ok(Some((trial, next, rn)));
            }
            t *= 0.5;
        }
        Ok(None)
    }
}

/// ‖F‖₂ in f64.
fn residual_norm(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?
        .sqr()?
        .sum_all()?
        .to_scalar::<f64>()?
        .sqrt())
}

fn check_same(a: &Tensor, b: &Tensor, what: &str) -> Result<()> {
    if a.dims() != b.dims() || a.dtype() != b.dtype() {
        return Err(Error::Shape(format!(
            "{what} has shape {:?} ({:?}), it must match {:?} ({:?})",
            a.dims(),
            a.dtype(),
            b.dims(),
            b.dtype()
        )));
    }
    Ok(())
}
