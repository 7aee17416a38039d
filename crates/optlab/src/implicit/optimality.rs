//! Ready-made optimality conditions (P10, Section 2.2 and jaxopt's `optimality.py`/`prox.py`/`projection.py`):
//! the stationarity of a smooth objective, the KKT conditions of a constrained problem, and the proximal-gradient
//! fixed point of a composite one (lasso, simplex or box constraints).
//!
//! The proximal operators here are written so that their derivatives are exact almost everywhere: the active set
//! (or the simplex support) is decided numerically and then the map is built in the graph on that set, so
//! differentiating through it gives the Jacobian the paper uses (identity on the support, zero off it).

use super::Optimality;
use crate::{Error, Result};
use candle_core::{DType, Tensor};

/// ∂ scalar / ∂ wrt kept in the graph, so it can be differentiated again. `wrt` must be a variable (candle keeps the
/// gradients of variables only): inside an optimality function, the x or θ it was given. A scalar that does not
/// depend on it has a zero gradient.
pub fn grad(scalar: &Tensor, wrt: &Tensor) -> Result<Tensor> {
    crate::require_second_order()?;
    if scalar.elem_count() != 1 {
        return Err(Error::Shape(format!(
            "the objective must be a scalar, it has shape {:?}",
            scalar.dims()
        )));
    }
    if !wrt.is_variable() {
        return Err(Error::invalid(
            "gradient with respect to a tensor that is not a variable (pass the x or θ the optimality function was \
             given, not a slice or function of it)",
        ));
    }
    let g = scalar.sum_all()?.backward()?;
    Ok(match g.get(wrt) {
        Some(t) => t.clone(),
        None => wrt.zeros_like()?,
    })
}

impl<'a> Optimality<'a> {
    /// Stationarity F = ∇ₓ f(x, θ) of a smooth, unconstrained inner objective f (a scalar).
    pub fn stationary(f: impl Fn(&Tensor, &Tensor) -> Result<Tensor> + 'a) -> Self {
        Optimality::root(move |x, th| grad(&f(x, th)?, x)).symmetric()
    }

    /// The proximal-gradient fixed point x = prox_η(x − η ∇ₓ f(x, θ), θ) of min_x f(x, θ) + h(x, θ): `prox(v, θ, η)`
    /// is the proximal operator of η·h (see [`lasso`], [`simplex`], [`box_clamp`]). Any step η > 0 gives the same
    /// solutions; jaxopt uses η = 1, a smaller one keeps the fixed-point map contractive.
    pub fn proximal_gradient(
        f: impl Fn(&Tensor, &Tensor) -> Result<Tensor> + 'a,
        prox: impl Fn(&Tensor, &Tensor, f64) -> Result<Tensor> + 'a,
        step: f64,
    ) -> Result<Self> {
        if !(step > 0.0 && step.is_finite()) {
            return Err(Error::invalid(format!(
                "the proximal-gradient step must be positive and finite, got {step}"
            )));
        }
        Ok(Optimality::fixed_point(move |x, th| {
            let v = x.sub(&grad(&f(x, th)?, x)?.affine(step, 0.0)?)?;
            prox(&v, th, step)
        }))
    }
}

fn numeric(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.detach().flatten_all()?.to_dtype(DType::F64)?.to_vec1()?)
}

fn mask_like(values: Vec<u8>, like: &Tensor) -> Result<Tensor> {
    Ok(Tensor::from_vec(values, like.dims(), like.device())?)
}

/// The proximal operator of η·‖·‖₁ weighted by `l1` (a scalar or one strength per entry, may depend on θ): soft
/// thresholding sign(v)·max(|v| − η·l1, 0).
pub fn lasso(v: &Tensor, l1: &Tensor, step: f64) -> Result<Tensor> {
    let thr = l1.broadcast_as(v.dims())?.affine(step, 0.0)?;
    let (vn, tn) = (numeric(v)?, numeric(&thr)?);
    let active: Vec<u8> = vn
        .iter()
        .zip(&tn)
        .map(|(a, t)| u8::from(a.abs() > *t))
        .collect();
    let sign: Vec<f64> = vn
        .iter()
        .map(|a| if *a >= 0.0 { 1.0 } else { -1.0 })
        .collect();
    let sign = Tensor::from_vec(sign, v.dims(), v.device())?.to_dtype(v.dtype())?;
    let shrunk = v.sub(&thr.mul(&sign)?)?;
    Ok(mask_like(active, v)?.where_cond(&shrunk, &v.zeros_like()?)?)
}

/// Euclidean projection of a vector onto the probability simplex {x ≥ 0, Σx = 1} (the proximal operator of its
/// indicator, for any step): max(v − τ, 0) with τ chosen so the result sums to one. The support is found by sorting;
/// τ = (Σ_support v − 1)/|support| is then computed in the graph.
pub fn simplex(v: &Tensor) -> Result<Tensor> {
    if v.rank() != 1 || v.elem_count() == 0 {
        return Err(Error::Shape(format!(
            "simplex projection takes a non-empty vector, got shape {:?}",
            v.dims()
        )));
    }
    let vn = numeric(v)?;
    let mut sorted = vn.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let (mut cum, mut tau) = (0.0, 0.0);
    for (k, s) in sorted.iter().enumerate() {
        cum += s;
        let t = (cum - 1.0) / (k + 1) as f64;
        if s - t > 0.0 {
            tau = t;
        }
    }
    let support: Vec<u8> = vn.iter().map(|a| u8::from(*a > tau)).collect();
    let count = support.iter().filter(|&&s| s == 1).count().max(1);
    let mask = mask_like(support, v)?;
    let zeros = v.zeros_like()?;
    let tau = mask
        .where_cond(v, &zeros)?
        .sum_all()?
        .affine(1.0 / count as f64, -1.0 / count as f64)?;
    Ok(mask.where_cond(&v.broadcast_sub(&tau)?, &zeros)?)
}

/// Projection onto the box [lo, hi] (the proximal operator of its indicator, for any step).
pub fn box_clamp(v: &Tensor, lo: f64, hi: f64) -> Result<Tensor> {
    if lo.is_nan() || hi.is_nan() || lo > hi {
        return Err(Error::invalid(format!(
            "box projection: lo = {lo} must not exceed hi = {hi}"
        )));
    }
    let inside: Vec<u8> = numeric(v)?
        .iter()
        .map(|a| u8::from(*a > lo && *a < hi))
        .collect();
    let clamped = v.detach().clamp(lo, hi)?;
    Ok(mask_like(inside, v)?.where_cond(v, &clamped)?)
}

/// The KKT conditions of min_z f(z, θ) subject to h(z, θ) = 0 and g(z, θ) ≤ 0 (jaxopt's
/// `make_kkt_optimality_fun`), over the packed vector x = [z; ν; μ] of the primal z (a vector), the equality
/// multipliers ν and the inequality multipliers μ:
/// F(x, θ) = [∇_z (f + νᵀh + μᵀg); h(z, θ); μ ⊙ g(z, θ)].
/// Build it with [`Kkt::new`], add constraints, then [`Kkt::optimality`]; [`Kkt::pack`] and [`Kkt::unpack`]
/// move between x and its parts.
pub struct Kkt<'a> {
    objective: ScalarFn<'a>,
    eq: Option<(usize, ScalarFn<'a>)>,
    ineq: Option<(usize, ScalarFn<'a>)>,
}

type ScalarFn<'a> = Box<dyn Fn(&Tensor, &Tensor) -> Result<Tensor> + 'a>;

impl std::fmt::Debug for Kkt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Kkt {{ eq: {:?}, ineq: {:?} }}",
            self.eq.as_ref().map(|e| e.0),
            self.ineq.as_ref().map(|e| e.0)
        )
    }
}

impl<'a> Kkt<'a> {
    /// The objective f(z, θ), a scalar.
    pub fn new(objective: impl Fn(&Tensor, &Tensor) -> Result<Tensor> + 'a) -> Self {
        Kkt {
            objective: Box::new(objective),
            eq: None,
            ineq: None,
        }
    }

    /// Equality constraints h(z, θ) = 0: `count` values.
    pub fn eq(mut self, count: usize, h: impl Fn(&Tensor, &Tensor) -> Result<Tensor> + 'a) -> Self {
        self.eq = Some((count, Box::new(h)));
        self
    }

    /// Inequality constraints g(z, θ) ≤ 0: `count` values.
    pub fn ineq(
        mut self,
        count: usize,
        g: impl Fn(&Tensor, &Tensor) -> Result<Tensor> + 'a,
    ) -> Self {
        self.ineq = Some((count, Box::new(g)));
        self
    }

    fn counts(&self) -> (usize, usize) {
        (
            self.eq.as_ref().map_or(0, |e| e.0),
            self.ineq.as_ref().map_or(0, |e| e.0),
        )
    }

    /// x = [z; ν; μ].
    pub fn pack(z: &Tensor, nu: Option<&Tensor>, mu: Option<&Tensor>) -> Result<Tensor> {
        let parts: Vec<&Tensor> = [Some(z), nu, mu].into_iter().flatten().collect();
        Ok(Tensor::cat(&parts, 0)?)
    }

    /// (z, ν, μ) of a packed x.
    pub fn unpack(&self, x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let (p, q) = self.counts();
        let len = x.elem_count();
        if x.rank() != 1 || len <= p + q {
            return Err(Error::Shape(format!(
                "a KKT point is a vector [z; ν ({p}); μ ({q})] with a non-empty z, got shape {:?}",
                x.dims()
            )));
        }
        let n = len - p - q;
        Ok((
            x.narrow(0, 0, n)?,
            x.narrow(0, n, p)?,
            x.narrow(0, n + p, q)?,
        ))
    }

    /// The KKT residual as an optimality condition over x = [z; ν; μ].
    pub fn optimality(self) -> Optimality<'a> {
        Optimality::root(move |x, th| {
            let (z, nu, mu) = self.unpack(x)?;
            let mut lagrangian = (self.objective)(&z, th)?.sum_all()?;
            let mut rows = Vec::new();
            for ((count, c), mult, complementary) in
                [(&self.eq, &nu, false), (&self.ineq, &mu, true)]
                    .into_iter()
                    .filter_map(|(c, m, s)| c.as_ref().map(|c| (c, m, s)))
            {
                let value = c(&z, th)?.flatten_all()?;
                if value.elem_count() != *count {
                    return Err(Error::Shape(format!(
                        "a constraint function returned {} values, {count} were declared",
                        value.elem_count()
                    )));
                }
                lagrangian = lagrangian.add(&value.mul(mult)?.sum_all()?)?;
                rows.push(if complementary {
                    value.mul(mult)?
                } else {
                    value
                });
            }
            // ∇_z L is the z-part of ∇ₓ L (L depends on the multiplier parts of x only through νᵀh + μᵀg).
            let mut parts = vec![grad(&lagrangian, x)?.narrow(0, 0, z.elem_count())?];
            parts.extend(rows);
            Ok(Tensor::cat(&parts, 0)?)
        })
    }
}
