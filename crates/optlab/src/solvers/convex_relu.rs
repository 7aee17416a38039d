//! Convex training of two-layer ReLU networks (P28, "Efficient Global Optimization of Two-layer ReLU Networks").
//!
//! Training f(x) = Σ_j (xᵀu_j)₊ α_j with squared loss and weight decay β/2 (‖u_j‖² + α_j²) is equivalent, over the
//! activation patterns D_i = diag(1[X g_i ≥ 0]), to the convex program
//!
//! minimise ½‖Σ_i D_i X (v_i − w_i) − y‖² + β Σ_i (‖v_i‖ + ‖w_i‖)  s.t.  (2D_i − I) X v_i ≥ 0, (2D_i − I) X w_i ≥ 0.
//!
//! Solved here by ADMM with the splitting u = v (group soft-thresholding) and G u = s ≥ 0 (the cone constraints):
//! the u-update is one linear system whose matrix FᵀF + ρ(I + GᵀG) never changes, so it is factored (Cholesky,
//! faer) once. Because (2D_i − I)² = I, GᵀG is block diagonal with XᵀX blocks. A solution maps back to a ReLU
//! network with u_j = v_i/√‖v_i‖, α_j = ±√‖v_i‖ whose regularised loss equals the convex objective.
//!
//! X carries the bias as a column of ones (see [`with_bias_column`]).

use crate::rng::{rng_for, Normals, Stream};
use crate::{Error, Result};
use faer::linalg::matmul::matmul;
use faer::linalg::triangular_solve::{
    solve_lower_triangular_in_place, solve_upper_triangular_in_place,
};
use faer::{Accum, Mat, MatMut, MatRef, Par, Side};
use serde::Serialize;

/// Rows of `x` (n × d, row-major) with a column of ones appended: n × (d + 1).
pub fn with_bias_column(x: &[f64], n: usize, d: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n * (d + 1));
    for row in x.chunks_exact(d) {
        out.extend_from_slice(row);
        out.push(1.0);
    }
    out
}

/// A convex training problem: data (with the bias column already in `x`) and activation patterns.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvexReluProblem {
    /// n × p, row-major.
    pub x: Vec<f64>,
    pub y: Vec<f64>,
    pub n: usize,
    pub p: usize,
    /// Each pattern: n entries of 0/1 (1 where the neuron is active).
    pub masks: Vec<Vec<u8>>,
}

impl ConvexReluProblem {
    /// Checks sizes and values.
    pub fn new(x: Vec<f64>, y: Vec<f64>, p: usize, masks: Vec<Vec<u8>>) -> Result<Self> {
        if p == 0 || x.is_empty() || !x.len().is_multiple_of(p) {
            return Err(Error::Shape(format!(
                "x has {} values, not a positive multiple of {p} features",
                x.len()
            )));
        }
        let n = x.len() / p;
        if y.len() != n {
            return Err(Error::Shape(format!(
                "{n} examples but {} targets",
                y.len()
            )));
        }
        if x.iter().chain(&y).any(|v| !v.is_finite()) {
            return Err(Error::invalid("the data contain NaN or infinite values"));
        }
        if masks.is_empty() {
            return Err(Error::invalid("at least one activation pattern is needed"));
        }
        if let Some(m) = masks
            .iter()
            .find(|m| m.len() != n || m.iter().any(|b| *b > 1))
        {
            return Err(Error::Shape(format!(
                "a pattern has {} entries (must be {n} zeros and ones)",
                m.len()
            )));
        }
        Ok(ConvexReluProblem { x, y, n, p, masks })
    }

    /// Samples patterns 1[X g ≥ 0] for `count` Gaussian directions g (seeded), dropping duplicates and the all-zero
    /// pattern, in order of first appearance. Refused before sampling when `count` patterns and the ADMM system
    /// they could make would not fit in memory.
    pub fn sample_patterns(x: &[f64], p: usize, count: usize, seed: u64) -> Result<Vec<Vec<u8>>> {
        let n = x.len().checked_div(p).unwrap_or(0);
        // Up to `count` distinct masks of n bytes, and the ADMM system of dimension 2·count·p they imply.
        let dim = 2.0 * count as f64 * p as f64;
        crate::memory::check(
            &format!("{count} activation patterns of {n} examples in dimension {p}"),
            count as f64 * n as f64 + 8.0 * (2.0 * dim * dim + n as f64 * dim),
            "sample fewer patterns",
        )?;
        let mut rng = rng_for(seed, Stream::Solver, 0);
        let mut z = Normals::default();
        let mut out: Vec<Vec<u8>> = Vec::new();
        for _ in 0..count {
            let g: Vec<f64> = (0..p).map(|_| z.next(&mut rng)).collect();
            let m: Vec<u8> = x
                .chunks_exact(p)
                .map(|row| (dot(row, &g) >= 0.0) as u8)
                .collect();
            if m.contains(&1) && !out.contains(&m) {
                out.push(m);
            }
        }
        Ok(out)
    }

    fn row(&self, k: usize) -> &[f64] {
        &self.x[k * self.p..(k + 1) * self.p]
    }

    /// Σ_i D_i X (v_i − w_i): the network's predictions for stacked variables (v_1..v_P, w_1..w_P).
    pub fn predict(&self, u: &[f64]) -> Vec<f64> {
        let (p, big_p) = (self.p, self.masks.len());
        (0..self.n)
            .map(|k| {
                let row = self.row(k);
                (0..big_p)
                    .filter(|&i| self.masks[i][k] == 1)
                    .map(|i| {
                        let (v, w) = (
                            &u[i * p..(i + 1) * p],
                            &u[(big_p + i) * p..(big_p + i + 1) * p],
                        );
                        dot(row, v) - dot(row, w)
                    })
                    .sum()
            })
            .collect()
    }

    /// The convex objective at stacked variables `u`.
    pub fn objective(&self, u: &[f64], beta: f64) -> f64 {
        let r: f64 = self
            .predict(u)
            .iter()
            .zip(&self.y)
            .map(|(a, b)| (a - b) * (a - b))
            .sum();
        0.5 * r + beta * u.chunks_exact(self.p).map(norm).sum::<f64>()
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// The cone-constraint operator G (block b: (2D_b − I) X) and its transpose, as dense products with faer. Blocks
/// are columns: u is p × 2P and G u is n × 2P, both column-major.
struct ConeOps {
    x: Mat<f64>,
    sign: Vec<f64>,
    n: usize,
    p: usize,
    blocks: usize,
}

impl ConeOps {
    fn new(prob: &ConvexReluProblem) -> Self {
        let (n, p, big_p) = (prob.n, prob.p, prob.masks.len());
        let sign = (0..2 * big_p)
            .flat_map(|b| {
                prob.masks[b % big_p]
                    .iter()
                    .map(|m| if *m == 1 { 1.0 } else { -1.0 })
            })
            .collect();
        ConeOps {
            x: Mat::from_fn(n, p, |k, c| prob.x[k * p + c]),
            sign,
            n,
            p,
            blocks: 2 * big_p,
        }
    }

    /// out = G u.
    fn apply(&self, u: &[f64], out: &mut [f64]) {
        let um = MatRef::from_column_major_slice(u, self.p, self.blocks);
        let om = MatMut::from_column_major_slice_mut(out, self.n, self.blocks);
        matmul(om, Accum::Replace, self.x.as_ref(), um, 1.0, Par::Seq);
        out.iter_mut().zip(&self.sign).for_each(|(o, s)| *o *= s);
    }

    /// out += scale · Gᵀ s (`signed` is scratch space of s's length).
    fn apply_t_add(&self, s: &[f64], scale: f64, out: &mut [f64], signed: &mut [f64]) {
        for ((o, a), b) in signed.iter_mut().zip(s).zip(&self.sign) {
            *o = a * b;
        }
        let sm = MatRef::from_column_major_slice(signed, self.n, self.blocks);
        let om = MatMut::from_column_major_slice_mut(out, self.p, self.blocks);
        matmul(om, Accum::Add, self.x.transpose(), sm, scale, Par::Seq);
    }
}

/// ADMM settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdmmConfig {
    /// Penalty ρ (fixed: the system is factored once); `None` takes ρ = β (group threshold β/ρ = 1), which
    /// reached the conic optimum to < 1e-4 on every test problem (n 60..300, β 1e-3..1e-2).
    pub rho: Option<f64>,
    pub max_iters: u64,
    /// Stop when both residuals are below eps_abs·√dim + eps_rel·scale (Boyd et al.'s rule).
    pub eps_abs: f64,
    pub eps_rel: f64,
    /// Over-relaxation factor in [1, 2) (1 is plain ADMM; ~1.6 usually converges faster).
    pub relaxation: f64,
}

impl Default for AdmmConfig {
    fn default() -> Self {
        AdmmConfig {
            rho: None,
            max_iters: 20_000,
            eps_abs: 1e-9,
            eps_rel: 1e-8,
            relaxation: 1.6,
        }
    }
}

/// An ADMM solution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdmmSolution {
    /// v_i and w_i (each p values), from the group-sparse iterate.
    pub v: Vec<Vec<f64>>,
    pub w: Vec<Vec<f64>>,
    /// The convex objective at (v, w).
    pub objective: f64,
    /// The largest violation max(0, −(2D_i − I) X v_i) of the cone constraints.
    pub max_violation: f64,
    pub iterations: u64,
    pub primal_residual: f64,
    pub dual_residual: f64,
    pub converged: bool,
}

/// Solves the convex program by ADMM.
pub fn solve_admm(prob: &ConvexReluProblem, beta: f64, cfg: &AdmmConfig) -> Result<AdmmSolution> {
    if !(beta.is_finite() && beta >= 0.0) {
        return Err(Error::invalid(format!("beta={beta} must be non-negative")));
    }
    if !(1.0..2.0).contains(&cfg.relaxation) {
        return Err(Error::invalid(format!(
            "relaxation={} must be in [1, 2)",
            cfg.relaxation
        )));
    }
    if let Some(r) = cfg.rho.filter(|r| !(r.is_finite() && *r > 0.0)) {
        return Err(Error::invalid(format!(
            "rho={r} must be positive (the ADMM penalty; by default it equals beta)"
        )));
    }
    // beta = 0 (no regularisation) leaves the default penalty at a small positive value.
    let rho = cfg.rho.unwrap_or(beta.max(1e-8));
    if !(rho.is_finite() && rho > 0.0) || cfg.max_iters == 0 {
        return Err(Error::invalid(format!(
            "rho={rho} must be positive and max_iters={} at least 1",
            cfg.max_iters
        )));
    }
    let (n, p, big_p) = (prob.n, prob.p, prob.masks.len());
    let dim = 2 * big_p * p;
    // The ADMM system (dim × dim) and its factor, F (n × dim), and the cone buffers (2P × n).
    let (df, nf) = (dim as f64, n as f64);
    crate::memory::check(
        &format!("ADMM over {big_p} activation patterns of {n} examples in dimension {p}"),
        8.0 * (2.0 * df * df + nf * df + 6.0 * big_p as f64 * nf + 12.0 * df),
        "sample fewer patterns",
    )?;
    // F = [D_1 X .. D_P X, −D_1 X .. −D_P X] (n × dim).
    let f = Mat::<f64>::from_fn(n, dim, |k, j| {
        let (b, c) = (j / p, j % p);
        let i = b % big_p;
        let sign = if b < big_p { 1.0 } else { -1.0 };
        sign * prob.masks[i][k] as f64 * prob.x[k * p + c]
    });
    let xm = Mat::<f64>::from_fn(n, p, |k, c| prob.x[k * p + c]);
    let xtx = xm.transpose() * &xm;
    let mut m = f.transpose() * &f;
    for b in 0..2 * big_p {
        for r in 0..p {
            for c in 0..p {
                m[(b * p + r, b * p + c)] += rho * xtx[(r, c)];
            }
            m[(b * p + r, b * p + r)] += rho;
        }
    }
    let chol = m
        .llt(Side::Lower)
        .map_err(|e| Error::invalid(format!("the ADMM system is not positive definite: {e:?}")))?;
    let fty: Vec<f64> = {
        let y = Mat::<f64>::from_fn(n, 1, |k, _| prob.y[k]);
        let r = f.transpose() * &y;
        (0..dim).map(|j| r[(j, 0)]).collect()
    };
    let cdim = 2 * big_p * n;
    let ops = ConeOps::new(prob);
    // Buffers reused by every iteration.
    let (mut r, mut v_old, mut gtds) = (vec![0.0; dim], vec![0.0; dim], vec![0.0; dim]);
    let (mut sn, mut s_old, mut scratch) = (vec![0.0; cdim], vec![0.0; cdim], vec![0.0; cdim]);
    let (mut u, mut v, mut lam) = (vec![0.0; dim], vec![0.0; dim], vec![0.0; dim]);
    let (mut s, mut nu, mut gu) = (vec![0.0; cdim], vec![0.0; cdim], vec![0.0; cdim]);
    let (mut primal, mut dual, mut converged, mut it) = (f64::INFINITY, f64::INFINITY, false, 0);
    let thresh = beta / rho;
    while it < cfg.max_iters {
        it += 1;
        // u-update: (FᵀF + ρI + ρGᵀG) u = Fᵀy + ρ(v − λ) + ρGᵀ(s − ν).
        for j in 0..dim {
            r[j] = fty[j] + rho * (v[j] - lam[j]);
        }
        for ((o, a), b) in sn.iter_mut().zip(&s).zip(&nu) {
            *o = a - b;
        }
        ops.apply_t_add(&sn, rho, &mut r, &mut scratch);
        // L Lᵀ u = r by two sequential triangular solves (the systems are too small for threads to pay).
        let l = chol.L();
        solve_lower_triangular_in_place(
            l,
            MatMut::from_column_major_slice_mut(&mut r, dim, 1),
            Par::Seq,
        );
        solve_upper_triangular_in_place(
            l.transpose(),
            MatMut::from_column_major_slice_mut(&mut r, dim, 1),
            Par::Seq,
        );
        u.copy_from_slice(&r);
        // Over-relaxation: the v-, s- and dual updates see û = a·u + (1 − a)·v and a·Gu + (1 − a)·s.
        let a = cfg.relaxation;
        v_old.copy_from_slice(&v);
        s_old.copy_from_slice(&s);
        ops.apply(&u, &mut gu);
        for (uj, vj) in u.iter_mut().zip(&v_old) {
            *uj = a * *uj + (1.0 - a) * vj;
        }
        for (g, sk) in gu.iter_mut().zip(&s_old) {
            *g = a * *g + (1.0 - a) * sk;
        }
        // v-update: group soft-thresholding of u + λ at β/ρ.
        for ((vb, ub), lb) in v
            .chunks_exact_mut(p)
            .zip(u.chunks_exact(p))
            .zip(lam.chunks_exact(p))
        {
            let nz = ub
                .iter()
                .zip(lb)
                .map(|(a, b)| (a + b) * (a + b))
                .sum::<f64>()
                .sqrt();
            let k = if nz > thresh { 1.0 - thresh / nz } else { 0.0 };
            for ((o, a), b) in vb.iter_mut().zip(ub).zip(lb) {
                *o = k * (a + b);
            }
        }
        // s-update: projection of G u + ν on the non-negative orthant.
        for ((sk, g), nk) in s.iter_mut().zip(&gu).zip(&nu) {
            *sk = (g + nk).max(0.0);
        }
        // Dual updates and residuals.
        let mut r2 = 0.0;
        for j in 0..dim {
            let d = u[j] - v[j];
            lam[j] += d;
            r2 += d * d;
        }
        for k in 0..cdim {
            let d = gu[k] - s[k];
            nu[k] += d;
            r2 += d * d;
        }
        primal = r2.sqrt();
        for ((o, a), b) in gtds.iter_mut().zip(&v).zip(&v_old) {
            *o = a - b;
        }
        for ((o, a), b) in sn.iter_mut().zip(&s).zip(&s_old) {
            *o = a - b;
        }
        ops.apply_t_add(&sn, 1.0, &mut gtds, &mut scratch);
        dual = rho * norm(&gtds);
        let scale_p = norm(&u).max(norm(&v)).max(norm(&gu)).max(norm(&s));
        let scale_d = rho * norm(&lam).max(norm(&nu));
        let sq = ((dim + cdim) as f64).sqrt();
        if primal <= cfg.eps_abs * sq + cfg.eps_rel * scale_p
            && dual <= cfg.eps_abs * sq + cfg.eps_rel * scale_d
        {
            converged = true;
            break;
        }
    }
    ops.apply(&v, &mut gu);
    let max_violation = gu.iter().map(|g| (-g).max(0.0)).fold(0.0, f64::max);
    let blocks: Vec<Vec<f64>> = v.chunks_exact(p).map(<[f64]>::to_vec).collect();
    Ok(AdmmSolution {
        objective: prob.objective(&v, beta),
        v: blocks[..big_p].to_vec(),
        w: blocks[big_p..].to_vec(),
        max_violation,
        iterations: it,
        primal_residual: primal,
        dual_residual: dual,
        converged,
    })
}

/// A two-layer ReLU network f(x) = Σ_j (xᵀu_j)₊ α_j, x with the bias column.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TwoLayerRelu {
    /// Hidden weights, p each (the last one multiplies the bias column).
    pub hidden: Vec<Vec<f64>>,
    /// Output weights.
    pub alpha: Vec<f64>,
}

impl TwoLayerRelu {
    /// The network of a convex solution: one neuron per nonzero v_i (α > 0) and w_i (α < 0).
    pub fn from_solution(sol: &AdmmSolution) -> Self {
        let mut net = TwoLayerRelu {
            hidden: Vec::new(),
            alpha: Vec::new(),
        };
        for (blocks, sign) in [(&sol.v, 1.0), (&sol.w, -1.0)] {
            for b in blocks {
                let nb = norm(b);
                if nb > 0.0 {
                    net.hidden.push(b.iter().map(|x| x / nb.sqrt()).collect());
                    net.alpha.push(sign * nb.sqrt());
                }
            }
        }
        net
    }

    /// Predictions for rows of `x` (n × p, bias column included).
    pub fn predict(&self, x: &[f64], p: usize) -> Vec<f64> {
        x.chunks_exact(p)
            .map(|row| {
                self.hidden
                    .iter()
                    .zip(&self.alpha)
                    .map(|(u, a)| dot(row, u).max(0.0) * a)
                    .sum()
            })
            .collect()
    }

    /// ½‖f(X) − y‖² + β/2 Σ_j (‖u_j‖² + α_j²): the non-convex training objective.
    pub fn loss(&self, x: &[f64], y: &[f64], p: usize, beta: f64) -> f64 {
        let r: f64 = self
            .predict(x, p)
            .iter()
            .zip(y)
            .map(|(a, b)| (a - b) * (a - b))
            .sum();
        let reg: f64 = self
            .hidden
            .iter()
            .zip(&self.alpha)
            .map(|(u, a)| dot(u, u) + a * a)
            .sum();
        0.5 * r + 0.5 * beta * reg
    }

    /// The weights as a PyTorch `nn.Sequential(Linear(d, h), ReLU(), Linear(h, 1))` state dict (f32):
    /// `0.weight` `[h, d]`, `0.bias` `[h]`, `2.weight` `[1, h]`, `2.bias` `[1]` — what `mlp:hidden=h,act=relu` loads.
    pub fn state_dict(&self) -> Result<Vec<(String, candle_core::Tensor)>> {
        use candle_core::{Device, Tensor};
        let h = self.hidden.len();
        if h == 0 {
            return Err(Error::invalid(
                "the solution has no active neuron (beta too large?): nothing to save",
            ));
        }
        let p = self.hidden[0].len();
        let d = p - 1;
        let w1: Vec<f32> = self
            .hidden
            .iter()
            .flat_map(|u| u[..d].iter().map(|v| *v as f32))
            .collect();
        let b1: Vec<f32> = self.hidden.iter().map(|u| u[d] as f32).collect();
        let w2: Vec<f32> = self.alpha.iter().map(|a| *a as f32).collect();
        let dev = Device::Cpu;
        Ok(vec![
            ("0.weight".into(), Tensor::from_vec(w1, (h, d), &dev)?),
            ("0.bias".into(), Tensor::from_vec(b1, h, &dev)?),
            ("2.weight".into(), Tensor::from_vec(w2, (1, h), &dev)?),
            (
                "2.bias".into(),
                Tensor::zeros(1, candle_core::DType::F32, &dev)?,
            ),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> ConvexReluProblem {
        let xs = [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5];
        let x = with_bias_column(&xs, 6, 1);
        let y: Vec<f64> = xs.iter().map(|v: &f64| v.max(0.0)).collect();
        let masks = ConvexReluProblem::sample_patterns(&x, 2, 20, 0).unwrap();
        ConvexReluProblem::new(x, y, 2, masks).unwrap()
    }

    #[test]
    fn patterns_are_distinct_and_nonzero() {
        let pr = toy();
        for (i, m) in pr.masks.iter().enumerate() {
            assert!(m.contains(&1));
            assert!(!pr.masks[..i].contains(m));
        }
    }

    #[test]
    fn fits_a_relu_and_recovers_the_network() {
        let pr = toy();
        let sol = solve_admm(&pr, 1e-3, &AdmmConfig::default()).unwrap();
        assert!(sol.objective < 5e-3, "{}", sol.objective);
        let net = TwoLayerRelu::from_solution(&sol);
        let loss = net.loss(&pr.x, &pr.y, 2, 1e-3);
        assert!(
            (loss - sol.objective).abs() <= 1e-6 * sol.objective.max(1e-12),
            "{loss} vs {}",
            sol.objective
        );
    }

    #[test]
    fn bad_input() {
        assert!(ConvexReluProblem::new(vec![1.0; 5], vec![0.0; 2], 2, vec![vec![1, 0]]).is_err());
        assert!(ConvexReluProblem::new(vec![1.0; 4], vec![0.0; 3], 2, vec![vec![1, 0]]).is_err());
        assert!(
            ConvexReluProblem::new(vec![f64::NAN; 4], vec![0.0; 2], 2, vec![vec![1, 0]]).is_err()
        );
        assert!(ConvexReluProblem::new(vec![1.0; 4], vec![0.0; 2], 2, vec![vec![1]]).is_err());
        assert!(ConvexReluProblem::new(vec![1.0; 4], vec![0.0; 2], 2, vec![]).is_err());
        assert!(solve_admm(&toy(), -1.0, &AdmmConfig::default()).is_err());
    }
}
