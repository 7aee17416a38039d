//! Matrix-free AdaSketch-Newton (P19) for problems whose Hessian of the Lagrangian comes only as products H v: the
//! Newton–KKT matrix K = [[B, Gᵀ], [G, 0]] as an operator (one Hessian-vector product per application, the
//! m × n Jacobian G kept dense), the sketch steps of [`super::sketch`] on it, and the constants the method needs
//! without forming H:
//! - ‖H‖_F² and tr H exactly from n products when n ≤ [`EXACT_MOMENTS`], otherwise by Hutchinson's estimator
//!   (Rademacher probes, E‖Hv‖² = ‖H‖_F², E vᵀHv = tr H), which gives ‖H + sI‖_F² = ‖H‖_F² + 2s tr H + n s²;
//! - the smallest eigenvalue of the reduced Hessian ZᵀHZ by Lanczos on P H P (P the projector onto null G, full
//!   reorthogonalization), exact once the Krylov space spans null G (n − m ≤ [`LANCZOS_STEPS`]), otherwise the
//!   smallest Ritz value less its residual;
//! - λ_min(GGᵀ) and ‖G‖_F exactly.
//!
//! Memory is O((n + m) · (m + Lanczos steps + block size)): nothing n × n is allocated.

use super::sketch::{norm, Iterate, Sketch};
use super::{dot, jac_mul, jac_t_mul, Nlp};
use crate::curvature::{lanczos_basis, tridiagonal_eigen, HessianOperator};
use crate::rng::{normal, Rng};
use crate::{Error, Result};
use faer::linalg::solvers::Solve;
use faer::Mat;
use std::cell::Cell;

/// Up to this many variables, the Hessian's moments come from n unit products (exact).
pub const EXACT_MOMENTS: usize = 16;
/// Rademacher probes of Hutchinson's estimator above [`EXACT_MOMENTS`] variables.
pub const PROBES: usize = 16;
/// Lanczos steps for the reduced Hessian's smallest eigenvalue.
pub const LANCZOS_STEPS: usize = 30;
/// Sketch steps between exact residual checks of a Kaczmarz run (each check is one application of K).
const KACZMARZ_CHECK: usize = 8;

/// The KKT operator at one primal-dual point: K (u; v) = (H u + s u + Gᵀ v; G u), s the Hessian modification.
pub struct KktOperator<'a> {
    nlp: &'a dyn Nlp,
    x: &'a [f64],
    lambda: &'a [f64],
    jac: &'a Mat<f64>,
    shift: f64,
    products: Cell<usize>,
}

impl<'a> KktOperator<'a> {
    pub fn new(nlp: &'a dyn Nlp, x: &'a [f64], lambda: &'a [f64], jac: &'a Mat<f64>) -> Self {
        KktOperator {
            nlp,
            x,
            lambda,
            jac,
            shift: 0.0,
            products: Cell::new(0),
        }
    }

    fn n(&self) -> usize {
        self.x.len()
    }

    fn dim(&self) -> usize {
        self.x.len() + self.lambda.len()
    }

    /// H v (the unmodified Hessian of the Lagrangian), counted.
    pub fn hvp(&self, v: &[f64]) -> Result<Vec<f64>> {
        self.products.set(self.products.get() + 1);
        let hv = self.nlp.lagrangian_hvp(self.x, self.lambda, v)?;
        if hv.len() != v.len() {
            return Err(Error::Shape(format!(
                "{}: a Hessian-vector product gave {} values for {} variables",
                self.nlp.name(),
                hv.len(),
                v.len()
            )));
        }
        Ok(hv)
    }

    /// Hessian-vector products so far.
    pub fn products(&self) -> usize {
        self.products.get()
    }

    /// K z.
    fn apply(&self, z: &[f64]) -> Result<Vec<f64>> {
        let n = self.n();
        let (u, v) = z.split_at(n);
        let mut out = self.hvp(u)?;
        let gt_v = jac_t_mul(self.jac, v);
        for j in 0..n {
            out[j] += self.shift * u[j] + gt_v[j];
        }
        out.extend(jac_mul(self.jac, u));
        Ok(out)
    }

    /// Row i of K, which is its column K eᵢ (K is symmetric); a constraint row needs no product.
    fn row(&self, i: usize) -> Result<Vec<f64>> {
        let (n, m) = (self.n(), self.lambda.len());
        if i >= n {
            let mut r: Vec<f64> = (0..n).map(|j| self.jac[(i - n, j)]).collect();
            r.extend(std::iter::repeat_n(0.0, m));
            return Ok(r);
        }
        let mut e = vec![0.0; n + m];
        e[i] = 1.0;
        self.apply(&e)
    }
}

/// ‖H‖_F² and tr H: exact from unit products for small n, Hutchinson's estimates otherwise.
fn hessian_moments(op: &KktOperator, rng: &mut Rng) -> Result<(f64, f64)> {
    use rand::Rng as _;
    let n = op.n();
    let (mut fro2, mut trace) = (0.0, 0.0);
    if n <= EXACT_MOMENTS {
        for i in 0..n {
            let mut e = vec![0.0; n];
            e[i] = 1.0;
            let col = op.hvp(&e)?;
            fro2 += dot(&col, &col);
            trace += col[i];
        }
        return Ok((fro2, trace));
    }
    for _ in 0..PROBES {
        let v: Vec<f64> = (0..n)
            .map(|_| if rng.gen::<bool>() { 1.0 } else { -1.0 })
            .collect();
        let hv = op.hvp(&v)?;
        fro2 += dot(&hv, &hv) / PROBES as f64;
        trace += dot(&v, &hv) / PROBES as f64;
    }
    Ok((fro2, trace))
}

/// The projector onto null G: v − Gᵀ (GGᵀ)⁻¹ G v, from a factorization of GGᵀ.
struct NullProjector<'a> {
    jac: &'a Mat<f64>,
    ggt: faer::linalg::solvers::PartialPivLu<f64>,
}

impl NullProjector<'_> {
    fn apply(&self, v: &[f64]) -> Vec<f64> {
        let (m, n) = (self.jac.nrows(), self.jac.ncols());
        if m == 0 {
            return v.to_vec();
        }
        let gv = Mat::from_fn(m, 1, |i, _| (0..n).map(|j| self.jac[(i, j)] * v[j]).sum());
        let y = self.ggt.solve(&gv);
        (0..n)
            .map(|j| v[j] - (0..m).map(|i| self.jac[(i, j)] * y[(i, 0)]).sum::<f64>())
            .collect()
    }
}

/// P H P: the Hessian seen on null G.
struct Projected<'a, 'b> {
    op: &'a KktOperator<'b>,
    p: NullProjector<'a>,
}

impl HessianOperator for Projected<'_, '_> {
    fn dim(&self) -> usize {
        self.op.n()
    }
    fn hvp(&self, v: &[f64]) -> Result<Vec<f64>> {
        Ok(self.p.apply(&self.op.hvp(v)?))
    }
}

/// The smallest eigenvalue of the reduced Hessian ZᵀHZ by Lanczos on P H P restricted to null G, less the Ritz
/// residual (∞ when null G is trivial). Exact when the Krylov space spans null G.
fn reduced_min_eigenvalue(op: &KktOperator, ggt: &Mat<f64>, rng: &mut Rng) -> Result<f64> {
    let (m, n) = (op.jac.nrows(), op.n());
    if m >= n {
        return Ok(f64::INFINITY);
    }
    let projected = Projected {
        op,
        p: NullProjector {
            jac: op.jac,
            ggt: ggt.partial_piv_lu(),
        },
    };
    let start = projected
        .p
        .apply(&(0..n).map(|_| normal(rng)).collect::<Vec<_>>());
    let s = norm(&start);
    if s == 0.0 || !s.is_finite() {
        return Ok(f64::INFINITY);
    }
    let (alphas, betas, _, residual) =
        lanczos_basis(&projected, (n - m).min(LANCZOS_STEPS), start)?;
    let (values, vectors) = tridiagonal_eigen(&alphas, &betas)?;
    // The smallest Ritz value less its residual β_k |s_k| (about 0 once the Krylov space is invariant): a Ritz
    // value only bounds λ_min from above, so the margin leans towards modifying the Hessian when Lanczos stopped
    // early.
    Ok(values[0] - residual * vectors[(alphas.len() - 1, 0)].abs())
}

/// The constants of one matrix-free iteration.
pub struct Constants {
    /// ‖H‖_F.
    pub h_norm: f64,
    /// ‖B‖_F (B = H + shift I).
    pub b_norm: f64,
    /// ‖K‖_F.
    pub k_norm: f64,
    pub shift: f64,
}

/// Sets the Hessian modification of `op` (H, or H + (ξ_B + ‖H‖_F) I when the reduced Hessian's smallest
/// eigenvalue is below `tol`) and returns the norms the accuracy condition uses. `ggt` = GGᵀ.
pub fn prepare(
    op: &mut KktOperator,
    ggt: &Mat<f64>,
    xi_b: f64,
    tol: f64,
    rng: &mut Rng,
) -> Result<Constants> {
    let (fro2, trace) = hessian_moments(op, rng)?;
    let h_norm = fro2.max(0.0).sqrt();
    let shift =
        super::adasketch::hessian_shift(reduced_min_eigenvalue(op, ggt, rng)?, h_norm, xi_b, tol);
    op.shift = shift;
    let b2 = (fro2 + 2.0 * shift * trace + op.n() as f64 * shift * shift).max(0.0);
    let g2 = op.jac.norm_l2().powi(2);
    Ok(Constants {
        h_norm,
        b_norm: b2.sqrt(),
        k_norm: (b2 + 2.0 * g2).sqrt(),
        shift,
    })
}

/// Sketch steps on K z = b with K applied as an operator: the same projections as [`super::sketch`]
/// (Kaczmarz: one row, i.e. one product, per step; Gaussian and block: k + 1 products per step).
pub struct OperatorSketch<'a, 'b> {
    op: &'a KktOperator<'b>,
    b: &'a [f64],
    kind: Sketch,
}

impl<'a, 'b> OperatorSketch<'a, 'b> {
    pub fn new(op: &'a KktOperator<'b>, b: &'a [f64], kind: Sketch) -> Result<Self> {
        if b.len() != op.dim() {
            return Err(Error::Shape(format!(
                "matrix-free sketching: the right-hand side has {} entries, K is {}×{}",
                b.len(),
                op.dim(),
                op.dim()
            )));
        }
        if kind == Sketch::Exact {
            return Err(Error::invalid(
                "a matrix-free run cannot solve the KKT system exactly: use a sketch (kaczmarz, gaussian, blockK)",
            ));
        }
        Ok(OperatorSketch { op, b, kind })
    }

    /// Hessian-vector products of the operator so far.
    pub fn products(&self) -> usize {
        self.op.products()
    }

    /// z = 0, r = −b.
    pub fn start(&self) -> Iterate {
        Iterate {
            z: vec![0.0; self.b.len()],
            r: self.b.iter().map(|v| -v).collect(),
        }
    }

    fn residual(&self, z: &[f64]) -> Result<Vec<f64>> {
        let kz = self.op.apply(z)?;
        Ok(kz.iter().zip(self.b).map(|(a, b)| a - b).collect())
    }

    /// Sketch steps from `it` until ‖r‖ ≤ `stop` or `max_steps` steps; returns the steps taken.
    pub fn run(
        &self,
        it: &mut Iterate,
        stop: f64,
        max_steps: usize,
        rng: &mut Rng,
    ) -> Result<usize> {
        use rand::Rng as _;
        let dim = it.z.len();
        let mut steps = 0;
        // Whether it.r is exact (recomputed) or carried along by the updates.
        let mut exact = false;
        while steps < max_steps {
            if norm(&it.r) <= stop {
                if exact {
                    break;
                }
                // The carried residual says done: confirm with the exact one.
                it.r = self.residual(&it.z)?;
                exact = true;
                continue;
            }
            exact = false;
            match self.kind {
                Sketch::Kaczmarz => {
                    // The residual is not carried (that would cost a second product): checked every few steps.
                    for _ in 0..KACZMARZ_CHECK.min(max_steps - steps) {
                        let i = rng.gen_range(0..dim);
                        let row = self.op.row(i)?;
                        let d = dot(&row, &row);
                        steps += 1;
                        if d <= 0.0 {
                            continue;
                        }
                        let y = (dot(&row, &it.z) - self.b[i]) / d;
                        it.z.iter_mut().zip(&row).for_each(|(z, a)| *z -= y * a);
                    }
                    it.r = self.residual(&it.z)?;
                    exact = true;
                }
                Sketch::Gaussian | Sketch::Block(_) => {
                    let cols = match self.kind {
                        Sketch::Block(k) => k.min(dim),
                        _ => 1,
                    };
                    let s: Vec<Vec<f64>> = (0..cols)
                        .map(|_| (0..dim).map(|_| normal(rng)).collect())
                        .collect();
                    // K S (= Kᵀ S), its Gram matrix and Sᵀ r.
                    let ks: Vec<Vec<f64>> =
                        s.iter().map(|c| self.op.apply(c)).collect::<Result<_>>()?;
                    let gram = Mat::from_fn(cols, cols, |a, b| dot(&ks[a], &ks[b]));
                    let str_ = Mat::from_fn(cols, 1, |a, _| dot(&s[a], &it.r));
                    let y = gram.partial_piv_lu().solve(&str_);
                    steps += 1;
                    if (0..cols).any(|a| !y[(a, 0)].is_finite()) {
                        continue;
                    }
                    let mut step = vec![0.0; dim];
                    for (a, col) in ks.iter().enumerate() {
                        step.iter_mut()
                            .zip(col)
                            .for_each(|(t, c)| *t += y[(a, 0)] * c);
                    }
                    it.z.iter_mut().zip(&step).for_each(|(z, t)| *z -= t);
                    if steps % dim.max(1) == 0 {
                        it.r = self.residual(&it.z)?;
                        exact = true;
                    } else {
                        let k_step = self.op.apply(&step)?;
                        it.r.iter_mut().zip(&k_step).for_each(|(r, t)| *r -= t);
                    }
                }
                Sketch::Exact => unreachable!("refused by OperatorSketch::new"),
            }
        }
        if !exact {
            it.r = self.residual(&it.z)?;
        }
        Ok(steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{rng_for, Stream};
    use faer::Side;

    /// min ½ xᵀHx s.t. Gx = 0 with H and G given as matrices (the products by the default H v).
    struct Quadratic {
        h: Mat<f64>,
        g: Mat<f64>,
    }

    impl Nlp for Quadratic {
        fn name(&self) -> &str {
            "quadratic"
        }
        fn n(&self) -> usize {
            self.h.nrows()
        }
        fn m(&self) -> usize {
            self.g.nrows()
        }
        fn x0(&self) -> Vec<f64> {
            vec![0.0; self.n()]
        }
        fn objective(&self, _: &[f64]) -> Result<f64> {
            Ok(0.0)
        }
        fn gradient(&self, x: &[f64]) -> Result<Vec<f64>> {
            Ok(vec![0.0; x.len()])
        }
        fn constraints(&self, _: &[f64]) -> Result<Vec<f64>> {
            Ok(vec![0.0; self.m()])
        }
        fn jacobian(&self, _: &[f64]) -> Result<Mat<f64>> {
            Ok(self.g.clone())
        }
        fn lagrangian_hessian(&self, _: &[f64], _: &[f64]) -> Result<Mat<f64>> {
            Ok(self.h.clone())
        }
    }

    /// n = 50, m = 2 (null space 48 > the Lanczos steps): the reduced Hessian's smallest eigenvalue by Lanczos
    /// against the dense one (an isolated negative eigenvalue), and Hutchinson's Frobenius norm and trace.
    #[test]
    fn lanczos_and_hutchinson_beyond_the_exact_sizes() {
        let n = 50;
        let mut r = rng_for(3, Stream::Probe, 0);
        let off = Mat::from_fn(n, n, |_, _| 0.01 * normal(&mut r));
        let h = Mat::from_fn(n, n, |i, j| {
            let d = if i == j {
                if i == 7 {
                    -3.0
                } else {
                    1.0 + i as f64 / 10.0
                }
            } else {
                0.0
            };
            d + off[(i, j)] + off[(j, i)]
        });
        let g = Mat::from_fn(2, n, |i, j| ((i + 1) * (j + 3) % 7) as f64 - 3.0);
        let q = Quadratic {
            h: h.clone(),
            g: g.clone(),
        };
        let (x, lambda) = (vec![0.0; n], vec![0.0; 2]);
        let op = KktOperator::new(&q, &x, &lambda, &g);
        let ggt = &g * g.transpose();
        let lanczos = reduced_min_eigenvalue(&op, &ggt, &mut r).unwrap();
        let qr = g.transpose().to_owned().qr().compute_Q();
        let z = qr.subcols(2, n - 2).to_owned();
        let exact = (z.transpose() * &h * &z)
            .self_adjoint_eigenvalues(Side::Lower)
            .unwrap()[0];
        assert!(exact < -2.0, "{exact}");
        assert!((lanczos - exact).abs() < 1e-6, "{lanczos} vs {exact}");
        let (fro2, trace) = hessian_moments(&op, &mut r).unwrap();
        let want_fro2 = h.norm_l2().powi(2);
        let want_trace: f64 = (0..n).map(|i| h[(i, i)]).sum();
        assert!(
            (fro2 / want_fro2 - 1.0).abs() < 0.05,
            "{fro2} vs {want_fro2}"
        );
        assert!(
            (trace - want_trace).abs() < 0.05 * want_fro2.sqrt(),
            "{trace} vs {want_trace}"
        );
        assert_eq!(op.products(), LANCZOS_STEPS + PROBES);
    }
}
