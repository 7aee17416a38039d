//! P31's gradient estimates and the exact gradient they estimate (the official code's `du_dbeta`, `hep_vf` and
//! `delta_rbp`). From the free fixed point u*, nudged phases of T2 steps give the neuron-space estimate of
//! da/dβ at β = 0 (activation space):
//!
//! - N = 1 (classic EP): (a(β) − a*)/β;
//! - N ≥ 2 (holomorphic EP): (1/N) Σ_k a(β_k)/β_k with β_k = β e^{2πik/N} — the first Fourier coefficient of a
//!   on the circle of radius β, divided by β (a discrete Cauchy integral: its error is O(β^N));
//! - N = 0: the exact derivative through the T2 steps (forward mode; the official code's `jacfwd`).
//!
//! The weight gradient of a neuron-space vector g is (1/B) Σ_samples a_preᵀ g_post for every kernel (and the mean
//! of g for a bias) plus the readout's exact gradient. The exact gradient of the loss at the fixed point is
//! recurrent backpropagation: the fixed point of δ ← σ′(u*) ⊙ (J_Gᵀ δ) + ∂ℓ/∂u, solved as a linear system
//! (implicit differentiation of u* = G(σ(u*))). With J_G symmetric (B_l = K_{l+1}ᵀ) the EP estimate converges to it; asymmetry biases it.

use super::net::{act, dact, EpNet, Planar};
use crate::implicit::linear::{solve, LinearOperator, SolveOptions, Solver};
use crate::nn::matmul::{gemm_into, Strided};
use crate::{Error, Result};
use num_complex::Complex64 as C;
use serde::Serialize;

/// How da/dβ is estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Estimator {
    /// N = 0: the exact derivative (forward mode).
    Exact,
    /// N = 1: one-sided, real β.
    OneSided,
    /// N ≥ 2 nudges β e^{2πik/N} on a circle.
    Fourier(usize),
}

impl Estimator {
    /// From the official code's N.
    pub fn from_n(n: usize) -> Self {
        match n {
            0 => Estimator::Exact,
            1 => Estimator::OneSided,
            n => Estimator::Fourier(n),
        }
    }

    pub fn n(self) -> usize {
        match self {
            Estimator::Exact => 0,
            Estimator::OneSided => 1,
            Estimator::Fourier(n) => n,
        }
    }
}

impl EpNet {
    /// J_G w: the linear part of the update applied to activation-space vectors w (no input, no bias).
    pub(crate) fn jg(&self, w: &[Planar]) -> Result<Vec<Planar>> {
        let top = w.len() - 1;
        (0..=top)
            .map(|l| {
                let mut n = Planar::zeros(w[0].b, self.shape.layers[l]);
                if l > 0 {
                    add_mm(&mut n, &w[l - 1], &self.forward[l], false)?;
                }
                if l < top {
                    add_mm(&mut n, &w[l + 1], &self.feedback[l], false)?;
                }
                Ok(n)
            })
            .collect()
    }

    /// J_Gᵀ d.
    pub(crate) fn jgt(&self, d: &[Planar]) -> Result<Vec<Planar>> {
        let top = d.len() - 1;
        (0..=top)
            .map(|l| {
                let mut n = Planar::zeros(d[0].b, self.shape.layers[l]);
                if l < top {
                    add_mm(&mut n, &d[l + 1], &self.forward[l + 1], true)?;
                }
                if l > 0 {
                    add_mm(&mut n, &d[l - 1], &self.feedback[l - 1], true)?;
                }
                Ok(n)
            })
            .collect()
    }
}

/// out += a·K (or a·Kᵀ), K row-major with a.n rows (or a.n columns).
pub(crate) fn add_mm(out: &mut Planar, a: &Planar, k: &[f64], transpose: bool) -> Result<()> {
    let (m, n, kk) = (2 * a.b, out.n, a.n);
    let av = Strided::row_major(&a.v, kk);
    let kv = if transpose {
        Strided::row_major(k, kk).t()
    } else {
        Strided::row_major(k, n)
    };
    Ok(gemm_into(&mut out.v, (m, n, kk), av, kv, true)?)
}

/// The neuron-space estimate of da/dβ per state layer (real, batch × size) from the free fixed point `u_star`.
pub fn neuron_estimate(
    net: &EpNet,
    x: &Planar,
    labels: &[usize],
    u_star: &[Planar],
    est: Estimator,
    beta: f64,
    t2: usize,
) -> Result<Vec<Vec<f64>>> {
    if !(beta.is_finite() && beta > 0.0) && est != Estimator::Exact {
        return Err(Error::invalid(format!(
            "EP: beta must be a positive number, not {beta}"
        )));
    }
    let top = u_star.len() - 1;
    let real_parts = |p: Vec<Planar>| p.into_iter().map(|q| q.re().to_vec()).collect();
    match est {
        Estimator::Exact => {
            // Forward mode along the β = 0 trajectory ũ: v ← J_G(σ′(ũ) ⊙ v) + e_out ∂ℓ/∂a(ũ); da/dβ = σ′(ũ_T) ⊙ v_T.
            let mut u = u_star.to_vec();
            let mut v: Vec<Planar> = u.iter().map(|p| Planar::zeros(p.b, p.n)).collect();
            for _ in 0..t2 {
                let w: Vec<Planar> = u
                    .iter()
                    .zip(&v)
                    .map(|(u, v)| mul(&u.map(dact), v))
                    .collect();
                let mut next = net.jg(&w)?;
                let g = net.output_grad(&u[top].map(act), labels)?;
                add_into(&mut next[top], &g, C::new(1.0, 0.0));
                v = next;
                u = net.step(&u, x, C::new(0.0, 0.0), labels)?;
            }
            Ok(real_parts(
                u.iter()
                    .zip(&v)
                    .map(|(u, v)| mul(&u.map(dact), v))
                    .collect(),
            ))
        }
        Estimator::OneSided => {
            let a = net.run(u_star.to_vec(), x, C::new(beta, 0.0), labels, t2)?;
            Ok(real_parts(
                a.iter()
                    .zip(u_star)
                    .map(|(u, s)| {
                        let (a, a0) = (u.map(act), s.map(act));
                        let mut d = a.clone();
                        d.v.iter_mut()
                            .zip(&a0.v)
                            .for_each(|(d, z)| *d = (*d - z) / beta);
                        d
                    })
                    .collect(),
            ))
        }
        Estimator::Fourier(n) => {
            let mut acc: Vec<Planar> = u_star.iter().map(|p| Planar::zeros(p.b, p.n)).collect();
            for k in 0..n {
                let bk = C::from_polar(beta, 2.0 * std::f64::consts::PI * k as f64 / n as f64);
                let u = net.run(u_star.to_vec(), x, bk, labels, t2)?;
                for (acc, u) in acc.iter_mut().zip(&u) {
                    add_into(acc, &u.map(act), C::new(1.0, 0.0) / (bk * n as f64));
                }
            }
            Ok(real_parts(acc))
        }
    }
}

fn mul(a: &Planar, b: &Planar) -> Planar {
    let mut o = Planar::zeros(a.b, a.n);
    for r in 0..a.b {
        for j in 0..a.n {
            o.set(r, j, a.get(r, j) * b.get(r, j));
        }
    }
    o
}

/// acc += c · p.
fn add_into(acc: &mut Planar, p: &Planar, c: C) {
    for r in 0..p.b {
        for j in 0..p.n {
            let v = acc.get(r, j) + c * p.get(r, j);
            acc.set(r, j, v);
        }
    }
}

/// (I − σ′(u*) ⊙ J_Gᵀ) as an operator on the flattened per-layer batch vectors (the adjoint of the fixed point).
struct Adjoint<'a> {
    net: &'a EpNet,
    s: Vec<Planar>,
}

impl Adjoint<'_> {
    fn split(&self, v: &[f64]) -> Vec<Planar> {
        let mut at = 0;
        self.s
            .iter()
            .map(|p| {
                let q = Planar::real(p.b, p.n, &v[at..at + p.b * p.n]);
                at += p.b * p.n;
                q
            })
            .collect()
    }

    fn join(v: &[f64], p: Vec<Planar>) -> Vec<f64> {
        let flat: Vec<f64> = p.iter().flat_map(|q| q.re().iter().copied()).collect();
        v.iter().zip(flat).map(|(v, f)| v - f).collect()
    }
}

impl LinearOperator<f64> for Adjoint<'_> {
    fn dim(&self) -> usize {
        self.s.iter().map(|p| p.b * p.n).sum()
    }
    fn matvec(&self, v: &[f64]) -> Result<Vec<f64>> {
        let j = self.net.jgt(&self.split(v))?;
        Ok(Self::join(
            v,
            j.iter().zip(&self.s).map(|(j, s)| mul(s, j)).collect(),
        ))
    }
    fn rmatvec(&self, v: &[f64]) -> Result<Vec<f64>> {
        let sv: Vec<Planar> = self
            .split(v)
            .iter()
            .zip(&self.s)
            .map(|(v, s)| mul(s, v))
            .collect();
        Ok(Self::join(v, self.net.jg(&sv)?))
    }
}

/// The exact gradient of the loss at the fixed point in neuron space (recurrent backpropagation; pre-activation
/// space, per layer, batch × size): the solution δ of (I − σ′(u*) ⊙ J_Gᵀ) δ = ∂ℓ/∂u, by restarted GMRES of the
/// implicit-differentiation engine (P10) to a relative residual of 1e-10 — the fixed-point iteration
/// δ ← σ′ ⊙ J_Gᵀδ + ∂ℓ/∂u of the official code converges only where the dynamics contract.
pub fn rbp(net: &EpNet, labels: &[usize], u_star: &[Planar]) -> Result<Vec<Vec<f64>>> {
    let top = u_star.len() - 1;
    let s: Vec<Planar> = u_star
        .iter()
        .map(|u| Planar::real(u.b, u.n, u.map(dact).re()))
        .collect();
    let dlda = net.output_grad(&u_star[top].map(act), labels)?;
    let mut rhs = vec![0.0; s[..top].iter().map(|p| p.b * p.n).sum()];
    rhs.extend(mul(&s[top], &dlda).re().iter().copied());
    let op = Adjoint { net, s };
    let opts = SolveOptions {
        solver: Solver::Gmres { restart: 50 },
        tol: 1e-10,
        max_iter: 5000,
        ridge: 0.0,
        verify: true,
    };
    let sol = solve(&op, &rhs, &opts)?;
    Ok(op
        .split(&sol.x)
        .into_iter()
        .map(|p| p.re().to_vec())
        .collect())
}

/// The official code's backpropagation baseline (`bp`: backpropagation through `steps` steps of the dynamics
/// started at the free fixed point u*): at a fixed point the states stay at u*, so it is the truncated Neumann
/// series δ_0 = 0, δ ← σ′(u*) ⊙ J_Gᵀδ + ∂ℓ/∂u, `steps` times (the official `delta_rbp` with T = `steps`). It
/// tends to [`rbp`] as `steps` grows where the dynamics contract, and stays bounded where they do not.
pub fn bptt(
    net: &EpNet,
    labels: &[usize],
    u_star: &[Planar],
    steps: usize,
) -> Result<Vec<Vec<f64>>> {
    let top = u_star.len() - 1;
    let s: Vec<Planar> = u_star
        .iter()
        .map(|u| Planar::real(u.b, u.n, u.map(dact).re()))
        .collect();
    let dldu = mul(&s[top], &net.output_grad(&u_star[top].map(act), labels)?);
    let mut delta: Vec<Planar> = u_star.iter().map(|p| Planar::zeros(p.b, p.n)).collect();
    for _ in 0..steps {
        let j = net.jgt(&delta)?;
        delta = j.iter().zip(&s).map(|(j, s)| mul(s, j)).collect();
        add_into(&mut delta[top], &dldu, C::new(1.0, 0.0));
    }
    Ok(delta.into_iter().map(|p| p.re().to_vec()).collect())
}

/// (1/B) aᵀ g for a (B × p) and g (B × q): p × q.
fn outer_mean(a: &[f64], g: &[f64], b: usize, p: usize, q: usize) -> Result<Vec<f64>> {
    let mut out = vec![0.0; p * q];
    let av = Strided::row_major(a, p).t();
    let gv = Strided::row_major(g, q);
    gemm_into(&mut out, (p, q, b), av, gv, false)?;
    out.iter_mut().for_each(|v| *v /= b as f64);
    Ok(out)
}

/// The weight gradient of a neuron-space vector `g` (per state layer, batch × size) at the fixed point, plus the
/// readout's exact gradient; in [`EpNet::arrays`] order.
pub fn weight_gradient(
    net: &EpNet,
    x: &Planar,
    labels: &[usize],
    u_star: &[Planar],
    g: &[Vec<f64>],
) -> Result<Vec<Vec<f64>>> {
    let b = x.b;
    let l = &net.shape.layers;
    let a: Vec<Vec<f64>> = u_star.iter().map(|u| u.map(act).re().to_vec()).collect();
    let mut out = Vec::new();
    for i in 0..l.len() {
        let (pre, p) = if i == 0 {
            (x.re(), net.shape.input)
        } else {
            (&a[i - 1][..], l[i - 1])
        };
        out.push(outer_mean(pre, &g[i], b, p, l[i])?);
        out.push(
            (0..l[i])
                .map(|j| (0..b).map(|r| g[i][r * l[i] + j]).sum::<f64>() / b as f64)
                .collect(),
        );
    }
    for i in 0..l.len() - 1 {
        out.push(outer_mean(&a[i + 1], &g[i], b, l[i + 1], l[i])?);
    }
    let top = l.len() - 1;
    let a_out = Planar::real(b, l[top], &a[top]);
    let lg = EpNet::logit_grad(&net.logits(&a_out)?, labels);
    out.push(outer_mean(&a[top], lg.re(), b, l[top], net.shape.classes)?);
    out.push(
        (0..net.shape.classes)
            .map(|j| (0..b).map(|r| lg.re()[r * lg.n + j]).sum::<f64>() / b as f64)
            .collect(),
    );
    Ok(out)
}

/// How close an estimate is to the exact gradient, over every array but the readout's (exact in both).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Agreement {
    pub cosine: f64,
    /// ‖estimate‖ / ‖exact‖.
    pub norm_ratio: f64,
    /// Per-sample cosine in neuron space (da/dβ against δ), mean over samples and layers.
    pub neuron_cosine: f64,
}

/// Compares an estimate with the exact gradient (both in [`EpNet::arrays`] order) and their neuron-space vectors.
pub fn agreement(
    est: &[Vec<f64>],
    exact: &[Vec<f64>],
    g_est: &[Vec<f64>],
    g_exact: &[Vec<f64>],
    batch: usize,
) -> Agreement {
    let n = est.len() - 2;
    let (mut d, mut ne, mut nx) = (0.0, 0.0, 0.0);
    for (e, x) in est[..n].iter().zip(&exact[..n]) {
        for (a, b) in e.iter().zip(x) {
            d += a * b;
            ne += a * a;
            nx += b * b;
        }
    }
    let mut cos_sum = 0.0;
    let mut count = 0;
    for (ge, gx) in g_est.iter().zip(g_exact) {
        let size = ge.len() / batch;
        for r in 0..batch {
            let (a, b) = (&ge[r * size..(r + 1) * size], &gx[r * size..(r + 1) * size]);
            let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
            let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
            if na > 0.0 && nb > 0.0 {
                cos_sum += dot / (na * nb);
                count += 1;
            }
        }
    }
    Agreement {
        cosine: d / (ne.sqrt() * nx.sqrt()).max(f64::MIN_POSITIVE),
        norm_ratio: ne.sqrt() / nx.sqrt().max(f64::MIN_POSITIVE),
        neuron_cosine: cos_sum / count.max(1) as f64,
    }
}
