//! The exact local Lipschitz constant of a small ReLU network over an l∞ box (the check P02's bounds are tested
//! against): the network is linear on every activation region, so the constant of output c over the box
//! B = {x : ‖x − x0‖∞ ≤ ε} is the largest dual norm of its gradient over the regions that meet B with a non-empty
//! interior. The regions are enumerated depth-first, neuron by neuron; neurons whose sign interval bounds fix are not
//! branched, and every branch is kept only if a linear program (clarabel) finds a point of B strictly inside it.
//! At ε = 0 the regions touching x0 are taken (both signs of a pre-activation that is exactly 0), which gives
//! max ‖∇f_c‖ of the Clarke Jacobian at x0.
//!
//! Exponential in the number of unstable neurons: meant for tiny networks and for tests (`max_regions` caps it).

use super::naive::Norm;
use super::network::{Layer, Network};
use crate::{Error, Result};
use clarabel::algebra::CscMatrix;
use clarabel::solver::{
    DefaultSettingsBuilder, DefaultSolver, IPSolver, SolverStatus, SupportedConeT,
};
use serde::Serialize;

/// The exact constant and what it took.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExactLocal {
    /// Per output: sup ‖∇f_c‖ in the dual norm (l1 for an l∞ input norm, l2 for l2) over the box.
    pub per_class: Vec<f64>,
    /// The largest of them.
    pub bound: f64,
    /// Activation regions that meet the box.
    pub regions: usize,
    /// Linear programs solved.
    pub lps: usize,
}

/// An affine map x ↦ A x + c of the input (A row-major, rows × n).
#[derive(Clone)]
struct Affine {
    a: Vec<f64>,
    c: Vec<f64>,
    n: usize,
}

impl Affine {
    fn rows(&self) -> usize {
        self.c.len()
    }

    fn row(&self, j: usize) -> &[f64] {
        &self.a[j * self.n..(j + 1) * self.n]
    }

    /// W·(A x + c) + b.
    fn then_linear(&self, w: &[f64], b: &[f64], out: usize) -> Affine {
        let (inp, n) = (self.rows(), self.n);
        let mut a = vec![0.0; out * n];
        let mut c = b.to_vec();
        for r in 0..out {
            for k in 0..inp {
                let wk = w[r * inp + k];
                if wk != 0.0 {
                    c[r] += wk * self.c[k];
                    let (dst, src) = (&mut a[r * n..(r + 1) * n], &self.a[k * n..(k + 1) * n]);
                    dst.iter_mut().zip(src).for_each(|(d, s)| *d += wk * s);
                }
            }
        }
        Affine { a, c, n }
    }
}

struct Search<'a> {
    x0: &'a [f64],
    eps: f64,
    norm: Norm,
    /// Region constraints so far: (row g, offset h) meaning g·x + h ≥ 0 (strictly, in the interior).
    constraints: Vec<(Vec<f64>, f64)>,
    best: Vec<f64>,
    regions: usize,
    lps: usize,
    max_regions: usize,
}

/// Whether the box {‖x − x0‖∞ ≤ ε} meets the interior of {x : g·x + h > 0 for every (g, h) in `constraints`}, by a
/// linear program (clarabel) maximising the smallest slack; at ε = 0, whether x0 satisfies every constraint with ≥
/// (the regions touching x0). Also used by branch and bound on its fully split domains.
pub(crate) fn region_meets_box(
    constraints: &[(Vec<f64>, f64)],
    x0: &[f64],
    eps: f64,
) -> Result<bool> {
    if eps == 0.0 {
        return Ok(constraints
            .iter()
            .all(|(g, h)| g.iter().zip(x0).map(|(a, b)| a * b).sum::<f64>() + h >= -1e-12));
    }
    let n = x0.len();
    // Variables (x, t): maximise t s.t. −g·x + t ≤ h, x ≤ x0 + ε, −x ≤ −(x0 − ε), t ≤ 1.
    let m = constraints.len() + 2 * n + 1;
    let (mut rows, mut cols, mut vals, mut b) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::with_capacity(m));
    for (r, (g, h)) in constraints.iter().enumerate() {
        for (j, gj) in g.iter().enumerate() {
            if *gj != 0.0 {
                rows.push(r);
                cols.push(j);
                vals.push(-gj);
            }
        }
        rows.push(r);
        cols.push(n);
        vals.push(1.0);
        b.push(*h);
    }
    let base = constraints.len();
    for (j, xj) in x0.iter().enumerate() {
        rows.extend([base + 2 * j, base + 2 * j + 1]);
        cols.extend([j, j]);
        vals.extend([1.0, -1.0]);
        b.extend([xj + eps, -(xj - eps)]);
    }
    rows.push(m - 1);
    cols.push(n);
    vals.push(1.0);
    b.push(1.0);
    let a = CscMatrix::new_from_triplets(m, n + 1, rows, cols, vals);
    let p = CscMatrix::<f64>::zeros((n + 1, n + 1));
    let mut q = vec![0.0; n + 1];
    q[n] = -1.0;
    let settings = DefaultSettingsBuilder::default()
        .verbose(false)
        .build()
        .map_err(|e| Error::invalid(format!("LP settings: {e:?}")))?;
    let cones = [SupportedConeT::NonnegativeConeT(m)];
    let mut solver = DefaultSolver::new(&p, &q, &a, &b, &cones, settings)
        .map_err(|e| Error::invalid(format!("LP setup: {e:?}")))?;
    solver.solve();
    match solver.solution.status {
        SolverStatus::Solved | SolverStatus::AlmostSolved => Ok(solver.solution.x[n] > 1e-9),
        SolverStatus::PrimalInfeasible | SolverStatus::AlmostPrimalInfeasible => Ok(false),
        other => Err(Error::invalid(format!(
            "the region LP ended with {other:?}"
        ))),
    }
}

impl Search<'_> {
    /// Whether the box meets the interior of the current region.
    fn feasible(&mut self) -> Result<bool> {
        if self.eps > 0.0 {
            self.lps += 1;
        }
        region_meets_box(&self.constraints, self.x0, self.eps)
    }

    /// Interval of z = g·x + h over the box.
    fn interval(&self, g: &[f64], h: f64) -> (f64, f64) {
        let mid: f64 = g.iter().zip(self.x0).map(|(a, b)| a * b).sum::<f64>() + h;
        let rad: f64 = self.eps * g.iter().map(|a| a.abs()).sum::<f64>();
        (mid - rad, mid + rad)
    }

    /// Continues from layer `k` with the input map `cur`, deciding ReLU neuron `j` of `pre` when `pre` is set.
    fn walk(&mut self, layers: &[Layer], k: usize, cur: Affine) -> Result<()> {
        let Some(layer) = layers.get(k) else {
            self.regions += 1;
            if self.regions > self.max_regions {
                return Err(Error::invalid(format!(
                    "more than {} activation regions meet the box: the exact mode is for tiny networks",
                    self.max_regions
                )));
            }
            for (c, best) in self.best.iter_mut().enumerate() {
                let g = cur.row(c);
                let v = match self.norm {
                    Norm::Inf => g.iter().map(|a| a.abs()).sum::<f64>(),
                    Norm::Two => g.iter().map(|a| a * a).sum::<f64>().sqrt(),
                };
                *best = best.max(v);
            }
            return Ok(());
        };
        match layer {
            Layer::Linear { w, b, out, .. } => {
                self.walk(layers, k + 1, cur.then_linear(w, b, *out))
            }
            Layer::Conv2d { .. } => {
                let d = super::chain::dense(layer, cur.rows());
                self.walk(layers, k + 1, cur.then_linear(&d.w, &d.b, d.out))
            }
            Layer::Flatten => self.walk(layers, k + 1, cur),
            Layer::Relu => self.relu(layers, k, cur, 0),
            other => Err(Error::invalid(format!(
                "the exact mode handles Linear, Conv2d, Flatten and ReLU networks; {} is not supported",
                other.name()
            ))),
        }
    }

    /// Decides the sign of neuron `j` of the ReLU at layer `k` (input map `cur`), then the next.
    fn relu(&mut self, layers: &[Layer], k: usize, mut cur: Affine, j: usize) -> Result<()> {
        if j == cur.rows() {
            return self.walk(layers, k + 1, cur);
        }
        let (g, h) = (cur.row(j).to_vec(), cur.c[j]);
        let (lo, hi) = self.interval(&g, h);
        let scale = 1.0
            + h.abs()
            + g.iter()
                .zip(self.x0)
                .map(|(a, b)| (a * b).abs())
                .sum::<f64>();
        let tie = self.eps == 0.0 && lo.abs() <= 1e-12 * scale;
        let (try_on, try_off) = (hi > 0.0 || tie, lo < 0.0 || tie);
        if try_on && !try_off {
            return self.relu(layers, k, cur, j + 1);
        }
        if try_off && !try_on {
            cur.a[j * cur.n..(j + 1) * cur.n]
                .iter_mut()
                .for_each(|v| *v = 0.0);
            cur.c[j] = 0.0;
            return self.relu(layers, k, cur, j + 1);
        }
        for on in [true, false] {
            let sign = if on { 1.0 } else { -1.0 };
            self.constraints
                .push((g.iter().map(|v| sign * v).collect(), sign * h));
            if self.feasible()? {
                let mut next = cur.clone();
                if !on {
                    next.a[j * next.n..(j + 1) * next.n]
                        .iter_mut()
                        .for_each(|v| *v = 0.0);
                    next.c[j] = 0.0;
                }
                self.relu(layers, k, next, j + 1)?;
            }
            self.constraints.pop();
        }
        Ok(())
    }
}

/// Checks the centre and radius of a local box: eps finite and non-negative, x0 finite with the network's input
/// size.
pub(crate) fn check_box(net: &Network, x0: &[f64], eps: f64) -> Result<()> {
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(Error::invalid(format!(
            "eps={eps} must be a non-negative number"
        )));
    }
    let n = net.input_dim();
    if x0.len() != n || x0.iter().any(|v| !v.is_finite()) {
        return Err(Error::Shape(format!(
            "the centre has {} values (finite ones needed), the network takes {n}",
            x0.len()
        )));
    }
    Ok(())
}

/// The exact local Lipschitz constant of every output of `net` over the l∞ box of radius `eps` around `x0`, for the
/// input norm `norm` (l∞ gives the l1 norm of the gradient, l2 the l2 norm).
pub fn exact_local(
    net: &Network,
    x0: &[f64],
    eps: f64,
    norm: Norm,
    max_regions: usize,
) -> Result<ExactLocal> {
    check_box(net, x0, eps)?;
    let n = net.input_dim();
    let identity = Affine {
        a: (0..n * n)
            .map(|i| f64::from(u8::from(i / n == i % n)))
            .collect(),
        c: vec![0.0; n],
        n,
    };
    let mut s = Search {
        x0,
        eps,
        norm,
        constraints: Vec::new(),
        best: vec![0.0; net.output_dim()],
        regions: 0,
        lps: 0,
        max_regions,
    };
    s.walk(&net.layers, 0, identity)?;
    Ok(ExactLocal {
        bound: s.best.iter().copied().fold(0.0, f64::max),
        per_class: s.best,
        regions: s.regions,
        lps: s.lps,
    })
}
