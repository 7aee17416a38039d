//! Stochastic objectives with a known optimum, for the last-iterate rates of P06: finite sums
//! F(x) = (1/n) Σᵢ φ(aᵢᵀx, bᵢ) of a pointwise loss φ (absolute deviation, hinge, squared error) over the rows of a
//! data matrix, sampled one row per stochastic gradient. [`optimum`] solves min F + h over X exactly as a linear,
//! quadratic or second-order-cone program (clarabel) for the piecewise-linear losses.

use super::geometry::{Composite, Domain, Geometry};
use crate::rng::Rng;
use crate::{Error, Result};
use clarabel::algebra::CscMatrix;
use clarabel::solver::{
    DefaultSettingsBuilder, DefaultSolver, IPSolver, SolverStatus, SupportedConeT,
};
use rand::Rng as _;

/// A stochastic objective F(x) = E f(x, ξ) with an unbiased (sub)gradient oracle.
pub trait StochasticObjective: Sync {
    /// Dimension of x.
    fn dim(&self) -> usize;
    /// F(x) (without the composite term).
    fn value(&self, x: &[f64]) -> f64;
    /// One stochastic (sub)gradient of F at x, written to `g`.
    fn sample_gradient(&self, x: &[f64], rng: &mut Rng, g: &mut [f64]);
    /// A bound on ‖∇f(x, ξ)‖₂ where one exists (the largest row norm times |φ'|).
    fn lipschitz(&self) -> Option<f64>;
}

/// The pointwise loss φ(z, b) of a linear model's output z = aᵀx and target b.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pointwise {
    /// |z − b| (least absolute deviations; convex, 1-Lipschitz in z).
    Absolute,
    /// max(0, 1 − b z) with b ∈ {−1, +1} (convex, 1-Lipschitz in z).
    Hinge,
    /// ½ (z − b)² (smooth).
    Squared,
}

impl Pointwise {
    #[inline]
    fn value(self, z: f64, b: f64) -> f64 {
        match self {
            Pointwise::Absolute => (z - b).abs(),
            Pointwise::Hinge => (1.0 - b * z).max(0.0),
            Pointwise::Squared => 0.5 * (z - b) * (z - b),
        }
    }

    /// A (sub)derivative in z (0 at the kinks).
    #[inline]
    fn slope(self, z: f64, b: f64) -> f64 {
        match self {
            Pointwise::Absolute => {
                let r = z - b;
                if r > 0.0 {
                    1.0
                } else if r < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
            Pointwise::Hinge => {
                if b * z < 1.0 {
                    -b
                } else {
                    0.0
                }
            }
            Pointwise::Squared => z - b,
        }
    }
}

/// F(x) = (1/n) Σᵢ φ(aᵢᵀx, bᵢ): rows `a` (n × d, row-major) and targets `b`.
#[derive(Debug, Clone)]
pub struct LinearLoss {
    pub loss: Pointwise,
    pub a: Vec<f64>,
    pub b: Vec<f64>,
    pub dim: usize,
    max_row_norm: f64,
}

impl LinearLoss {
    /// Checks sizes and finiteness (a hinge target must be ±1).
    pub fn new(loss: Pointwise, a: Vec<f64>, b: Vec<f64>, dim: usize) -> Result<Self> {
        if dim == 0 || b.is_empty() || a.len() != b.len() * dim {
            return Err(Error::Shape(format!(
                "linear loss: {} values for {} rows of dimension {dim}",
                a.len(),
                b.len()
            )));
        }
        if let Some(v) = a.iter().chain(&b).find(|v| !v.is_finite()) {
            return Err(Error::invalid(format!(
                "linear loss: data holds a non-finite value {v}"
            )));
        }
        if loss == Pointwise::Hinge && b.iter().any(|&v| v != 1.0 && v != -1.0) {
            return Err(Error::invalid("hinge loss: every target must be -1 or +1"));
        }
        let max_row_norm = a
            .chunks_exact(dim)
            .map(|r| r.iter().map(|v| v * v).sum::<f64>().sqrt())
            .fold(0.0, f64::max);
        Ok(LinearLoss {
            loss,
            a,
            b,
            dim,
            max_row_norm,
        })
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.b.len()
    }

    /// Whether there are no rows (never, after [`LinearLoss::new`]).
    pub fn is_empty(&self) -> bool {
        self.b.is_empty()
    }

    #[inline]
    fn row(&self, i: usize) -> &[f64] {
        &self.a[i * self.dim..(i + 1) * self.dim]
    }
}

#[inline]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl StochasticObjective for LinearLoss {
    fn dim(&self) -> usize {
        self.dim
    }

    fn value(&self, x: &[f64]) -> f64 {
        let s: f64 = (0..self.len())
            .map(|i| self.loss.value(dot(self.row(i), x), self.b[i]))
            .sum();
        s / self.len() as f64
    }

    fn sample_gradient(&self, x: &[f64], rng: &mut Rng, g: &mut [f64]) {
        let i = rng.gen_range(0..self.len());
        let row = self.row(i);
        let s = self.loss.slope(dot(row, x), self.b[i]);
        for (gj, aj) in g.iter_mut().zip(row) {
            *gj = s * aj;
        }
    }

    fn lipschitz(&self) -> Option<f64> {
        match self.loss {
            Pointwise::Absolute | Pointwise::Hinge => Some(self.max_row_norm),
            Pointwise::Squared => None,
        }
    }
}

/// The solution of min_{x∈X} F(x) + h(x) for a piecewise-linear `f` (absolute or hinge loss): the optimal value
/// F(x*) + h(x*) evaluated by `f` itself at the solver's x*, and x*. A linear program for h = 0 or λ‖x‖₁ over a
/// free, box or simplex domain; a quadratic one for λ/2‖x‖²; a second-order cone for the ball.
pub fn optimum(f: &LinearLoss, geometry: &Geometry) -> Result<(f64, Vec<f64>)> {
    if f.loss == Pointwise::Squared {
        return Err(Error::invalid(
            "the exact optimum is built for the absolute and hinge losses",
        ));
    }
    let (n, d) = (f.len(), f.dim);
    let l1 = matches!(geometry.composite, Composite::L1(_));
    // Variables: x (d), t (n) epigraph of the pointwise losses, s (d) epigraph of |x| for the L1 term.
    let nvar = d + n + if l1 { d } else { 0 };
    let (tx, ts) = (d, d + n);
    let mut zero = Rows::default();
    let mut nonneg = Rows::default();
    let mut soc = Rows::default();
    for i in 0..n {
        let row = f.row(i);
        match f.loss {
            Pointwise::Absolute => {
                // a·x − t ≤ b and −a·x − t ≤ −b.
                nonneg.push(
                    row.iter().enumerate().map(|(j, &v)| (j, v)),
                    &[(tx + i, -1.0)],
                    f.b[i],
                );
                nonneg.push(
                    row.iter().enumerate().map(|(j, &v)| (j, -v)),
                    &[(tx + i, -1.0)],
                    -f.b[i],
                );
            }
            Pointwise::Hinge => {
                // −y a·x − t ≤ −1 and −t ≤ 0.
                let y = f.b[i];
                nonneg.push(
                    row.iter().enumerate().map(|(j, &v)| (j, -y * v)),
                    &[(tx + i, -1.0)],
                    -1.0,
                );
                nonneg.push(std::iter::empty(), &[(tx + i, -1.0)], 0.0);
            }
            Pointwise::Squared => unreachable!(),
        }
    }
    if l1 {
        for j in 0..d {
            nonneg.push([(j, 1.0)].into_iter(), &[(ts + j, -1.0)], 0.0);
            nonneg.push([(j, -1.0)].into_iter(), &[(ts + j, -1.0)], 0.0);
        }
    }
    match geometry.domain {
        Domain::Free => {}
        Domain::Box { lo, hi } => {
            for j in 0..d {
                nonneg.push([(j, 1.0)].into_iter(), &[], hi);
                nonneg.push([(j, -1.0)].into_iter(), &[], -lo);
            }
        }
        Domain::Simplex => {
            zero.push((0..d).map(|j| (j, 1.0)), &[], 1.0);
            for j in 0..d {
                nonneg.push([(j, -1.0)].into_iter(), &[], 0.0);
            }
        }
        Domain::Ball { radius } => {
            // s = (radius, x) in the second-order cone.
            soc.push(std::iter::empty(), &[], radius);
            for j in 0..d {
                soc.push([(j, -1.0)].into_iter(), &[], 0.0);
            }
        }
    }
    let mut q = vec![0.0; nvar];
    q[tx..tx + n].iter_mut().for_each(|v| *v = 1.0 / n as f64);
    let mut p_rows = Vec::new();
    let mut p_vals = Vec::new();
    match geometry.composite {
        Composite::L1(l) => q[ts..ts + d].iter_mut().for_each(|v| *v = l),
        Composite::L2Sq(l) if l > 0.0 => {
            p_rows.extend(0..d);
            p_vals.extend(std::iter::repeat_n(l, d));
        }
        _ => {}
    }
    let p = CscMatrix::new_from_triplets(nvar, nvar, p_rows.clone(), p_rows, p_vals);
    let mut cones = Vec::new();
    let (mut rows, mut cols, mut vals, mut b) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (block, cone) in [
        (
            zero,
            SupportedConeT::ZeroConeT as fn(usize) -> SupportedConeT<f64>,
        ),
        (nonneg, SupportedConeT::NonnegativeConeT),
        (soc, SupportedConeT::SecondOrderConeT),
    ] {
        if block.b.is_empty() {
            continue;
        }
        let base = b.len();
        rows.extend(block.rows.iter().map(|r| r + base));
        cols.extend(block.cols);
        vals.extend(block.vals);
        cones.push(cone(block.b.len()));
        b.extend(block.b);
    }
    let a = CscMatrix::new_from_triplets(b.len(), nvar, rows, cols, vals);
    let settings = DefaultSettingsBuilder::default()
        .verbose(false)
        .tol_gap_abs(1e-11)
        .tol_gap_rel(1e-11)
        .tol_feas(1e-11)
        .max_iter(400)
        .build()
        .map_err(|e| Error::invalid(format!("optimum: solver settings: {e:?}")))?;
    let mut solver = DefaultSolver::new(&p, &q, &a, &b, &cones, settings)
        .map_err(|e| Error::invalid(format!("optimum: solver setup: {e:?}")))?;
    solver.solve();
    match solver.solution.status {
        SolverStatus::Solved | SolverStatus::AlmostSolved => {
            let mut x = solver.solution.x[..d].to_vec();
            // Remove the interior-point solver's last feasibility error before evaluating.
            geometry.prox_project(&mut x, 0.0);
            Ok((f.value(&x) + geometry.composite.value(&x), x))
        }
        other => Err(Error::invalid(format!(
            "optimum: the conic solver ended with {other:?}"
        ))),
    }
}

/// Rows of one cone block in triplet form.
#[derive(Default)]
struct Rows {
    rows: Vec<usize>,
    cols: Vec<usize>,
    vals: Vec<f64>,
    b: Vec<f64>,
}

impl Rows {
    fn push(
        &mut self,
        x_part: impl Iterator<Item = (usize, f64)>,
        extra: &[(usize, f64)],
        rhs: f64,
    ) {
        let r = self.b.len();
        for (c, v) in x_part.chain(extra.iter().copied()) {
            if v != 0.0 {
                self.rows.push(r);
                self.cols.push(c);
                self.vals.push(v);
            }
        }
        self.b.push(rhs);
    }
}

/// Least absolute deviations of `mdvis` on the embedded RAND HIE covariates, standardized, with an intercept
/// (d = 10, n = 20 190).
pub fn lad_randhie() -> Result<LinearLoss> {
    let data = crate::data::randhie()?;
    let crate::data::Target::Values { y, .. } = &data.target else {
        return Err(Error::invalid("randhie: expected real-valued targets"));
    };
    let a = standardized_with_intercept(&data.x, data.feature_dim());
    LinearLoss::new(
        Pointwise::Absolute,
        a,
        y.iter().map(|&v| v as f64).collect(),
        data.feature_dim() + 1,
    )
}

/// The hinge loss of the embedded digits, classes 0-4 (−1) against 5-9 (+1), on standardized pixels with an
/// intercept (d = 65, n = 1797).
pub fn hinge_digits() -> Result<LinearLoss> {
    let data = crate::data::digits()?;
    let crate::data::Target::Classes { labels, .. } = &data.target else {
        return Err(Error::invalid("digits: expected class labels"));
    };
    let a = standardized_with_intercept(&data.x, data.feature_dim());
    let b = labels
        .iter()
        .map(|&l| if l < 5 { -1.0 } else { 1.0 })
        .collect();
    LinearLoss::new(Pointwise::Hinge, a, b, data.feature_dim() + 1)
}

/// Columns centred and scaled to unit variance (constant columns only centred), then a column of ones.
fn standardized_with_intercept(x: &[f32], d: usize) -> Vec<f64> {
    let n = x.len() / d;
    let mut mean = vec![0.0; d];
    let mut sq = vec![0.0; d];
    for r in x.chunks_exact(d) {
        for j in 0..d {
            mean[j] += r[j] as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    for r in x.chunks_exact(d) {
        for j in 0..d {
            sq[j] += (r[j] as f64 - mean[j]).powi(2);
        }
    }
    let sd: Vec<f64> = sq
        .iter()
        .map(|s| {
            let v = (s / n as f64).sqrt();
            if v > 0.0 {
                v
            } else {
                1.0
            }
        })
        .collect();
    let mut out = Vec::with_capacity(n * (d + 1));
    for r in x.chunks_exact(d) {
        out.extend((0..d).map(|j| (r[j] as f64 - mean[j]) / sd[j]));
        out.push(1.0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::online::geometry::Mirror;

    /// A 1-D median: LAD with only an intercept is minimized at the median.
    #[test]
    fn lad_optimum_of_an_intercept_is_the_median() {
        let b = vec![3.0, -1.0, 7.0, 2.0, 10.0];
        let f = LinearLoss::new(Pointwise::Absolute, vec![1.0; 5], b.clone(), 1).unwrap();
        let (v, x) = optimum(&f, &Geometry::default()).unwrap();
        assert!((x[0] - 3.0).abs() < 1e-6, "{x:?}");
        let exact = b.iter().map(|bi: &f64| (bi - 3.0).abs()).sum::<f64>() / 5.0;
        assert!((v - exact).abs() < 1e-6);
        // In the box [4, 5] the optimum sits on the bound 4; with an L1 term λ = 0.5 the median moves to ...
        let boxed = Geometry::new(
            Domain::Box { lo: 4.0, hi: 5.0 },
            Mirror::Euclidean,
            Composite::None,
        )
        .unwrap();
        let (_, x) = optimum(&f, &boxed).unwrap();
        assert!((x[0] - 4.0).abs() < 1e-6, "{x:?}");
    }

    /// Every geometry: no feasible random point beats the solver's optimum.
    #[test]
    fn optimum_is_not_beaten_by_feasible_points() {
        let mut rng = crate::rng::rng_for(3, crate::rng::Stream::Data, 0);
        let (n, d) = (40, 3);
        let a: Vec<f64> = (0..n * d).map(|_| crate::rng::normal(&mut rng)).collect();
        let y: Vec<f64> = (0..n)
            .map(|i| if i % 3 == 0 { 1.0 } else { -1.0 })
            .collect();
        let lad = LinearLoss::new(
            Pointwise::Absolute,
            a.clone(),
            a.iter().step_by(d).map(|v| 2.0 * v + 0.3).collect(),
            d,
        )
        .unwrap();
        let hinge = LinearLoss::new(Pointwise::Hinge, a, y, d).unwrap();
        let geos = [
            Geometry::default(),
            Geometry::new(
                Domain::Ball { radius: 0.5 },
                Mirror::Euclidean,
                Composite::L1(0.1),
            )
            .unwrap(),
            Geometry::new(
                Domain::Box { lo: -0.2, hi: 0.3 },
                Mirror::Euclidean,
                Composite::L2Sq(0.5),
            )
            .unwrap(),
            Geometry::new(Domain::Simplex, Mirror::Entropic, Composite::L2Sq(0.5)).unwrap(),
            Geometry::new(Domain::Free, Mirror::Euclidean, Composite::L2Sq(0.05)).unwrap(),
        ];
        for f in [&lad, &hinge] {
            for geo in &geos {
                let (v, x) = optimum(f, geo).unwrap();
                let total = |z: &[f64]| f.value(z) + geo.composite.value(z);
                assert!((total(&x) - v).abs() < 1e-12);
                for _ in 0..3000 {
                    let mut z: Vec<f64> = x
                        .iter()
                        .map(|xi| xi + 0.3 * crate::rng::normal(&mut rng))
                        .collect();
                    super::super::geometry::project(geo.domain, &mut z);
                    assert!(
                        total(&z) >= v - 1e-7,
                        "{:?} {geo:?}: {} < {v}",
                        f.loss,
                        total(&z)
                    );
                }
            }
        }
    }

    #[test]
    fn bad_data_is_refused() {
        assert!(LinearLoss::new(Pointwise::Absolute, vec![1.0; 5], vec![1.0; 2], 2).is_err());
        assert!(LinearLoss::new(Pointwise::Hinge, vec![1.0; 2], vec![0.5, 1.0], 1).is_err());
        assert!(
            LinearLoss::new(Pointwise::Absolute, vec![f64::NAN; 2], vec![1.0, 1.0], 1).is_err()
        );
    }
}
