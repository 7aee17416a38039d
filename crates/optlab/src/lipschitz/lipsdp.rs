//! LipSDP (P14): l2 Lipschitz bounds of ReLU and MaxMin (GroupSort-2) networks by semidefinite programming, solved
//! with clarabel's PSD cones (the `lipsdp` feature, which links BLAS/LAPACK).
//!
//! - ReLU (slope-restricted in [0, 1]), LipSDP-Neuron: one LMI over (Δx, Δy_1, …, Δy_{L−1}) with a diagonal
//!   multiplier T_k ≥ 0 per hidden layer: blocks ρI (input), 2T_k (hidden; minus W_Lᵀ W_L on the last), −W_kᵀ T_k
//!   between consecutive blocks, all ⪰ 0; L = √ρ.
//! - MaxMin: per pair j the constraints ‖Δy‖² ≤ ‖Δx‖² and 1ᵀΔy = 1ᵀΔx give Δyᵀ(λ1 I + λ2 11ᵀ)Δy ≤ Δxᵀ(…)Δx for
//!   λ1 ≥ 0 and any λ2; with Λ_k = blkdiag_j(λ1_j I₂ + λ2_j 11ᵀ) the layer-chained LMIs ρI − W_1ᵀΛ_1W_1 ⪰ 0,
//!   Λ_{k−1} − W_kᵀΛ_kW_k ⪰ 0, Λ_{L−1} − W_LᵀW_L ⪰ 0; L = √ρ.
//! - Wide inputs: with the thin QR W_1ᵀ = QR the input block reduces exactly to h×h (W_1 replaced by W_1Q = Rᵀ),
//!   so a 784-input network costs like a 16-input one.
//!
//! Soundness: an interior-point solution is only nearly feasible, so the bound reported is re-derived from the
//! solver's multipliers in f64: for MaxMin, going backwards, λ1 of a layer is raised by the most negative eigenvalue of
//! its chained LMI (adding δI keeps the MaxMin form) and ρ is the largest eigenvalue of W_1ᵀΛ_1W_1; for ReLU, with T
//! fixed, ρ is the largest eigenvalue of B D⁻¹ Bᵀ (the Schur complement; D must be positive definite). Both carry a
//! 1e-9 relative margin.

use super::chain::{dense, AffineMap};
use super::network::{Layer, Network};
use crate::{Error, Result};
use clarabel::algebra::CscMatrix;
use clarabel::solver::{
    DefaultSettingsBuilder, DefaultSolver, IPSolver, SolverStatus, SupportedConeT,
};
use faer::{Mat, Side};
use serde::Serialize;

/// The activation of every hidden layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Activation {
    #[serde(rename = "relu")]
    Relu,
    #[serde(rename = "maxmin")]
    MaxMin,
}

/// A LipSDP bound and how it was obtained.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LipSdp {
    /// The certified l2 bound √ρ (re-derived from the multipliers, sound).
    pub bound: f64,
    /// √ρ as the solver returned it.
    pub solver_bound: f64,
    pub activation: Activation,
    /// Sizes of the PSD cones.
    pub lmi_sizes: Vec<usize>,
    /// Whether the input block was reduced by QR.
    pub reduced: bool,
    pub status: String,
    pub iterations: u32,
    pub seconds: f64,
}

/// The weights of the linear maps between activations (biases do not matter) and the activation.
fn weights(net: &Network) -> Result<(Vec<AffineMap>, Option<Activation>)> {
    let mut maps: Vec<AffineMap> = Vec::new();
    let mut act: Option<Activation> = None;
    let mut size = net.input_dim();
    let mut pending: Option<AffineMap> = None;
    for l in &net.layers {
        match l {
            Layer::Linear { .. } | Layer::Conv2d { .. } => {
                let d = dense(l, size);
                size = d.out;
                pending = Some(match pending.take() {
                    Some(p) => compose(&p, &d),
                    None => d,
                });
            }
            Layer::Flatten => {}
            Layer::Relu | Layer::MaxMin => {
                let a = if matches!(l, Layer::Relu) {
                    Activation::Relu
                } else {
                    Activation::MaxMin
                };
                if act.is_some_and(|b| b != a) {
                    return Err(Error::invalid(
                        "LipSDP handles networks whose hidden activations are all ReLU or all MaxMin",
                    ));
                }
                act = Some(a);
                let p = pending.take().ok_or_else(|| {
                    Error::invalid(format!(
                        "LipSDP expects a Linear or Conv2d layer before every activation ({} has none)",
                        l.name()
                    ))
                })?;
                if a == Activation::MaxMin && p.out % 2 == 1 {
                    return Err(Error::invalid(format!(
                        "MaxMin pairs features, but the layer before it has {} outputs",
                        p.out
                    )));
                }
                maps.push(p);
            }
        }
    }
    maps.push(
        pending.ok_or_else(|| {
            Error::invalid("LipSDP expects the network to end with a Linear layer")
        })?,
    );
    Ok((maps, act))
}

fn compose(first: &AffineMap, next: &AffineMap) -> AffineMap {
    let mut w = vec![0.0; next.out * first.inp];
    for r in 0..next.out {
        for k in 0..next.inp {
            let c = next.w[r * next.inp + k];
            if c != 0.0 {
                w[r * first.inp..(r + 1) * first.inp]
                    .iter_mut()
                    .zip(first.row(k))
                    .for_each(|(d, s)| *d += c * s);
            }
        }
    }
    AffineMap {
        w,
        b: vec![0.0; next.out],
        out: next.out,
        inp: first.inp,
    }
}

fn to_mat(a: &AffineMap) -> Mat<f64> {
    Mat::from_fn(a.out, a.inp, |i, j| a.w[i * a.inp + j])
}

/// The first weight with its input space reduced to its row space (W Q for the thin QR Wᵀ = QR) when narrower.
fn reduce_first(w: &Mat<f64>) -> (Mat<f64>, bool) {
    if w.nrows() >= w.ncols() {
        return (w.clone(), false);
    }
    let q = w.transpose().to_owned().qr().compute_thin_Q();
    (w * &q, true)
}

/// One entry of an LMI: its constant and its (variable, coefficient) terms.
type Entry = (f64, Vec<(usize, f64)>);

/// An affine symmetric matrix F(z) = F0 + Σ z_i F_i, stored by its upper triangle.
struct Lmi {
    n: usize,
    /// (row, col) with row ≤ col → entry.
    entries: std::collections::BTreeMap<(usize, usize), Entry>,
}

impl Lmi {
    fn new(n: usize) -> Self {
        Lmi {
            n,
            entries: Default::default(),
        }
    }

    fn add_const(&mut self, i: usize, j: usize, v: f64) {
        let key = (i.min(j), i.max(j));
        self.entries.entry(key).or_default().0 += v;
    }

    fn add_var(&mut self, i: usize, j: usize, var: usize, c: f64) {
        if c != 0.0 {
            let key = (i.min(j), i.max(j));
            self.entries.entry(key).or_default().1.push((var, c));
        }
    }
}

/// Adds the entries of sign·Wᵀ Λ W for a MaxMin multiplier Λ over the pairs of rows of `w` (λ1 variables from
/// `l1`, λ2 from `l2`).
fn add_maxmin_form(lmi: &mut Lmi, w: &Mat<f64>, sign: f64, l1: usize, l2: usize) {
    let pairs = w.nrows() / 2;
    for a in 0..w.ncols() {
        for b in a..w.ncols() {
            for j in 0..pairs {
                let (r0, r1) = (2 * j, 2 * j + 1);
                let p1 = w[(r0, a)] * w[(r0, b)] + w[(r1, a)] * w[(r1, b)];
                let p2 = (w[(r0, a)] + w[(r1, a)]) * (w[(r0, b)] + w[(r1, b)]);
                lmi.add_var(a, b, l1 + j, sign * p1);
                lmi.add_var(a, b, l2 + j, sign * p2);
            }
        }
    }
}

/// Λ as a dense matrix from the pair multipliers.
fn lambda_mat(l1: &[f64], l2: &[f64]) -> Mat<f64> {
    let n = 2 * l1.len();
    Mat::from_fn(n, n, |i, j| {
        if i / 2 != j / 2 {
            0.0
        } else {
            l2[i / 2] + if i == j { l1[i / 2] } else { 0.0 }
        }
    })
}

fn eig_range(m: &Mat<f64>) -> Result<(f64, f64)> {
    let sym = Mat::from_fn(m.nrows(), m.ncols(), |i, j| 0.5 * (m[(i, j)] + m[(j, i)]));
    let ev = sym
        .self_adjoint_eigenvalues(Side::Lower)
        .map_err(|e| Error::invalid(format!("eigenvalues: {e:?}")))?;
    Ok((ev[0], ev[ev.len() - 1]))
}

fn norm_fro(m: &Mat<f64>) -> f64 {
    m.norm_l2()
}

/// Solves the SDP: minimise ρ (variable 0) subject to the LMIs and the non-negativity of `nonneg` variables.
fn solve(nvar: usize, lmis: &[Lmi], nonneg: &[usize]) -> Result<(Vec<f64>, String, u32)> {
    let (mut rows, mut cols, mut vals, mut b) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut cones = Vec::new();
    let mut r = 0;
    if !nonneg.is_empty() {
        for &v in nonneg {
            rows.push(r);
            cols.push(v);
            vals.push(-1.0);
            b.push(0.0);
            r += 1;
        }
        cones.push(SupportedConeT::NonnegativeConeT(nonneg.len()));
    }
    for lmi in lmis {
        // svec: columns in order, rows 0..=col, off-diagonals times √2; s = b − A z = F(z).
        for col in 0..lmi.n {
            for row in 0..=col {
                let scale = if row == col {
                    1.0
                } else {
                    std::f64::consts::SQRT_2
                };
                if let Some((c0, terms)) = lmi.entries.get(&(row, col)) {
                    for &(v, c) in terms {
                        rows.push(r);
                        cols.push(v);
                        vals.push(-scale * c);
                    }
                    b.push(scale * c0);
                } else {
                    b.push(0.0);
                }
                r += 1;
            }
        }
        cones.push(SupportedConeT::PSDTriangleConeT(lmi.n));
    }
    let a = CscMatrix::new_from_triplets(r, nvar, rows, cols, vals);
    let p = CscMatrix::<f64>::zeros((nvar, nvar));
    let mut q = vec![0.0; nvar];
    q[0] = 1.0;
    let settings = DefaultSettingsBuilder::default()
        .verbose(false)
        .tol_gap_abs(1e-10)
        .tol_gap_rel(1e-10)
        .tol_feas(1e-10)
        .max_iter(500)
        .build()
        .map_err(|e| Error::invalid(format!("SDP settings: {e:?}")))?;
    let mut solver = DefaultSolver::new(&p, &q, &a, &b, &cones, settings)
        .map_err(|e| Error::invalid(format!("SDP setup: {e:?}")))?;
    solver.solve();
    let status = format!("{:?}", solver.solution.status);
    match solver.solution.status {
        SolverStatus::Solved | SolverStatus::AlmostSolved | SolverStatus::MaxIterations => Ok((
            solver.solution.x.clone(),
            status,
            solver.solution.iterations,
        )),
        _ => Err(Error::invalid(format!(
            "the LipSDP program ended with {status}"
        ))),
    }
}

/// The LipSDP l2 bound of `net` (Linear/Conv2d layers with all-ReLU or all-MaxMin activations).
pub fn lipsdp_l2(net: &Network) -> Result<LipSdp> {
    let start = std::time::Instant::now();
    let (maps, act) = weights(net)?;
    let ws: Vec<Mat<f64>> = maps.iter().map(to_mat).collect();
    let Some(act) = act else {
        // One linear map: its spectral norm.
        let s = ws[0]
            .singular_values()
            .map_err(|e| Error::invalid(format!("SVD: {e:?}")))?;
        let b = s.first().copied().unwrap_or(0.0) * (1.0 + 1e-9);
        return Ok(LipSdp {
            bound: b,
            solver_bound: b,
            activation: Activation::Relu,
            lmi_sizes: Vec::new(),
            reduced: false,
            status: "no activation: spectral norm".into(),
            iterations: 0,
            seconds: start.elapsed().as_secs_f64(),
        });
    };
    let (w1, reduced) = reduce_first(&ws[0]);
    let mut ws = ws;
    ws[0] = w1;
    let r = match act {
        Activation::MaxMin => maxmin(&ws)?,
        Activation::Relu => relu(&ws)?,
    };
    Ok(LipSdp {
        reduced,
        activation: act,
        seconds: start.elapsed().as_secs_f64(),
        ..r
    })
}

fn maxmin(ws: &[Mat<f64>]) -> Result<LipSdp> {
    let hidden = ws.len() - 1;
    // Variables: ρ, then per hidden layer λ1 (pairs) and λ2 (pairs).
    let mut offs = Vec::with_capacity(hidden);
    let mut nvar = 1;
    for w in &ws[..hidden] {
        let p = w.nrows() / 2;
        offs.push((nvar, nvar + p, p));
        nvar += 2 * p;
    }
    let mut lmis = Vec::new();
    // ρI − W1ᵀΛ1W1.
    let mut first = Lmi::new(ws[0].ncols());
    (0..first.n).for_each(|i| first.add_var(i, i, 0, 1.0));
    add_maxmin_form(&mut first, &ws[0], -1.0, offs[0].0, offs[0].1);
    lmis.push(first);
    for k in 1..=hidden {
        let n = ws[k].ncols();
        let mut lmi = Lmi::new(n);
        let (l1, l2, p) = offs[k - 1];
        for j in 0..p {
            for (a, b) in [(2 * j, 2 * j), (2 * j + 1, 2 * j + 1), (2 * j, 2 * j + 1)] {
                if a == b {
                    lmi.add_var(a, b, l1 + j, 1.0);
                }
                lmi.add_var(a, b, l2 + j, 1.0);
            }
        }
        if k < hidden {
            add_maxmin_form(&mut lmi, &ws[k], -1.0, offs[k].0, offs[k].1);
        } else {
            let wtw = ws[k].transpose() * &ws[k];
            for a in 0..n {
                for b in a..n {
                    lmi.add_const(a, b, -wtw[(a, b)]);
                }
            }
        }
        lmis.push(lmi);
    }
    let nonneg: Vec<usize> = std::iter::once(0)
        .chain(offs.iter().flat_map(|&(l1, _, p)| l1..l1 + p))
        .collect();
    let (z, status, iterations) = solve(nvar, &lmis, &nonneg)?;
    // Certify backwards: Λ_k ⪰ cur, raising λ1 by the deficit.
    let mut l1s: Vec<Vec<f64>> = offs
        .iter()
        .map(|&(l1, _, p)| z[l1..l1 + p].iter().map(|v| v.max(0.0)).collect())
        .collect();
    let l2s: Vec<Vec<f64>> = offs
        .iter()
        .map(|&(_, l2, p)| z[l2..l2 + p].to_vec())
        .collect();
    let mut cur = ws[hidden].transpose() * &ws[hidden];
    for k in (0..hidden).rev() {
        let lam = lambda_mat(&l1s[k], &l2s[k]);
        let diff = &lam - &cur;
        let (lo, _) = eig_range(&diff)?;
        let margin = 1e-9 * (norm_fro(&lam) + norm_fro(&cur));
        if lo < margin {
            l1s[k].iter_mut().for_each(|v| *v += margin - lo);
        }
        let lam = lambda_mat(&l1s[k], &l2s[k]);
        cur = ws[k].transpose() * &lam * &ws[k];
    }
    let (_, rho) = eig_range(&cur)?;
    let rho = rho.max(0.0) * (1.0 + 1e-9) + 1e-300;
    Ok(LipSdp {
        bound: rho.sqrt(),
        solver_bound: z[0].max(0.0).sqrt(),
        activation: Activation::MaxMin,
        lmi_sizes: lmis.iter().map(|l| l.n).collect(),
        reduced: false,
        status,
        iterations,
        seconds: 0.0,
    })
}

fn relu(ws: &[Mat<f64>]) -> Result<LipSdp> {
    let hidden = ws.len() - 1;
    // Blocks: input (ws[0].ncols()), then every hidden layer.
    let mut starts = vec![0usize];
    let mut sizes = vec![ws[0].ncols()];
    for w in &ws[..hidden] {
        starts.push(starts.last().unwrap() + sizes.last().unwrap());
        sizes.push(w.nrows());
    }
    let n = starts.last().unwrap() + sizes.last().unwrap();
    // Variables: ρ, then t per hidden neuron.
    let mut toff = Vec::with_capacity(hidden);
    let mut nvar = 1;
    for w in &ws[..hidden] {
        toff.push(nvar);
        nvar += w.nrows();
    }
    let mut lmi = Lmi::new(n);
    (0..sizes[0]).for_each(|i| lmi.add_var(i, i, 0, 1.0));
    for k in 1..=hidden {
        let (s, w) = (starts[k], &ws[k - 1]);
        for b in 0..w.nrows() {
            lmi.add_var(s + b, s + b, toff[k - 1] + b, 2.0);
            // −W_kᵀ T_k between the previous block (a) and this one (b).
            for a in 0..w.ncols() {
                lmi.add_var(starts[k - 1] + a, s + b, toff[k - 1] + b, -w[(b, a)]);
            }
        }
    }
    let last = &ws[hidden];
    let wtw = last.transpose() * last;
    let s = starts[hidden];
    for a in 0..wtw.nrows() {
        for b in a..wtw.ncols() {
            lmi.add_const(s + a, s + b, -wtw[(a, b)]);
        }
    }
    let nonneg: Vec<usize> = (0..nvar).collect();
    let lmis = [lmi];
    let (z, status, iterations) = solve(nvar, &lmis, &nonneg)?;
    // Certify: with T fixed, ρ ≥ λ_max(B D⁻¹ Bᵀ) where [[ρI, B], [Bᵀ, D]] ⪰ 0.
    let t: Vec<f64> = z.iter().map(|v| v.max(0.0)).collect();
    let m = n - sizes[0];
    let mut d = Mat::<f64>::zeros(m, m);
    let mut bmat = Mat::<f64>::zeros(sizes[0], m);
    for k in 1..=hidden {
        let (s, w) = (starts[k] - sizes[0], &ws[k - 1]);
        for bb in 0..w.nrows() {
            let tv = t[toff[k - 1] + bb];
            d[(s + bb, s + bb)] += 2.0 * tv;
            for a in 0..w.ncols() {
                let v = -w[(bb, a)] * tv;
                if k == 1 {
                    bmat[(a, s + bb)] += v;
                } else {
                    let pa = starts[k - 1] - sizes[0] + a;
                    d[(pa, s + bb)] += v;
                    d[(s + bb, pa)] += v;
                }
            }
        }
    }
    let sl = starts[hidden] - sizes[0];
    for a in 0..wtw.nrows() {
        for b in 0..wtw.ncols() {
            d[(sl + a, sl + b)] -= wtw[(a, b)];
        }
    }
    let (dlo, _) = eig_range(&d)?;
    if dlo <= 1e-12 * norm_fro(&d) {
        return Err(Error::invalid(format!(
            "LipSDP: the solver's multipliers cannot be certified (the hidden block's smallest eigenvalue is {dlo:.3e}; status {status})"
        )));
    }
    let llt = d
        .llt(Side::Lower)
        .map_err(|e| Error::invalid(format!("LipSDP certificate: {e:?}")))?;
    use faer::linalg::solvers::Solve;
    let x = llt.solve(bmat.transpose().to_owned());
    let schur = &bmat * &x;
    let (_, rho) = eig_range(&schur)?;
    let rho = rho.max(0.0) * (1.0 + 1e-9) + 1e-300;
    Ok(LipSdp {
        bound: rho.sqrt(),
        solver_bound: z[0].max(0.0).sqrt(),
        activation: Activation::Relu,
        lmi_sizes: vec![n],
        reduced: false,
        status,
        iterations,
        seconds: 0.0,
    })
}
