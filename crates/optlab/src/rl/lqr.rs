//! A discrete-time linear-quadratic system: x' = A x + B u + σ w (w standard normal), reward −(xᵀQx + uᵀRu),
//! start x₀ ~ N(0, s²I), truncation after `horizon` steps. [`dare`] solves the discrete algebraic Riccati
//! equation P = Q + AᵀPA − AᵀPB(R + BᵀPB)⁻¹BᵀPA by its fixed-point iteration, giving the optimal gain
//! K = (R + BᵀPB)⁻¹BᵀPA (u = −Kx) and the optimal average cost per step σ² tr(P) (checked against scipy's
//! `solve_discrete_are`).

use super::env::{check_state, continuous, Action, ActionSpace, Env, Step};
use crate::implicit::linear::DenseMatrix;
use crate::rng::{normal, Rng};
use crate::{Error, Result};
use rand::{Rng as _, SeedableRng};

/// Row-major dense matrices: (rows, cols, values).
fn matmul(a: &[f64], b: &[f64], n: usize, k: usize, m: usize) -> Vec<f64> {
    let mut c = vec![0.0; n * m];
    for i in 0..n {
        for l in 0..k {
            let v = a[i * k + l];
            for j in 0..m {
                c[i * m + j] += v * b[l * m + j];
            }
        }
    }
    c
}

fn transpose(a: &[f64], n: usize, m: usize) -> Vec<f64> {
    let mut t = vec![0.0; n * m];
    for i in 0..n {
        for j in 0..m {
            t[j * n + i] = a[i * m + j];
        }
    }
    t
}

/// X with M X = Y for an m × m matrix M and an m × c right-hand side Y.
fn solve_columns(mat: &[f64], y: &[f64], m: usize, c: usize) -> Result<Vec<f64>> {
    let mut x = vec![0.0; m * c];
    for j in 0..c {
        let col: Vec<f64> = (0..m).map(|i| y[i * c + j]).collect();
        let sol = DenseMatrix::new(m, mat.to_vec())?.lu_solve(&col)?;
        for i in 0..m {
            x[i * c + j] = sol[i];
        }
    }
    Ok(x)
}

/// The stabilizing solution P of the DARE (n × n) and the optimal gain K (m × n), for A (n × n), B (n × m),
/// Q (n × n, symmetric PSD) and R (m × m, symmetric PD). Fails when the iteration does not settle (an
/// unstabilizable pair).
pub fn dare(
    a: &[f64],
    b: &[f64],
    q: &[f64],
    r: &[f64],
    n: usize,
    m: usize,
) -> Result<(Vec<f64>, Vec<f64>)> {
    if a.len() != n * n || b.len() != n * m || q.len() != n * n || r.len() != m * m {
        return Err(Error::Shape(format!(
            "dare: A, B, Q, R must be {n}x{n}, {n}x{m}, {n}x{n}, {m}x{m}"
        )));
    }
    let (at, bt) = (transpose(a, n, n), transpose(b, n, m));
    let mut p = q.to_vec();
    for _ in 0..100_000 {
        let pa = matmul(&p, a, n, n, n);
        let pb = matmul(&p, b, n, n, m);
        let mut s = matmul(&bt, &pb, m, n, m);
        for (si, ri) in s.iter_mut().zip(r) {
            *si += ri;
        }
        let k = solve_columns(&s, &matmul(&bt, &pa, m, n, n), m, n)?;
        // P' = Q + Aᵀ P A − Aᵀ P B K.
        let apa = matmul(&at, &pa, n, n, n);
        let apbk = matmul(&at, &matmul(&pb, &k, n, m, n), n, n, n);
        let next: Vec<f64> = (0..n * n).map(|i| q[i] + apa[i] - apbk[i]).collect();
        let change = next
            .iter()
            .zip(&p)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        let size = next.iter().fold(0.0f64, |mx, v| mx.max(v.abs()));
        if !size.is_finite() {
            break;
        }
        p = next;
        if change <= 1e-14 * size.max(1.0) {
            // Symmetrize the last rounding away, then the gain of the final P.
            for i in 0..n {
                for j in 0..i {
                    let v = 0.5 * (p[i * n + j] + p[j * n + i]);
                    p[i * n + j] = v;
                    p[j * n + i] = v;
                }
            }
            let pa = matmul(&p, a, n, n, n);
            let pb = matmul(&p, b, n, n, m);
            let mut s = matmul(&bt, &pb, m, n, m);
            for (si, ri) in s.iter_mut().zip(r) {
                *si += ri;
            }
            let k = solve_columns(&s, &matmul(&bt, &pa, m, n, n), m, n)?;
            return Ok((p, k));
        }
    }
    Err(Error::invalid(
        "dare: the Riccati iteration did not settle; is (A, B) stabilizable and R positive definite?",
    ))
}

/// The linear-quadratic environment.
#[derive(Debug, Clone)]
pub struct Lqr {
    pub n: usize,
    pub m: usize,
    pub a: Vec<f64>,
    pub b: Vec<f64>,
    pub q: Vec<f64>,
    pub r: Vec<f64>,
    /// Process-noise standard deviation σ.
    pub noise: f64,
    /// Start standard deviation s.
    pub start_std: f64,
    pub horizon: u64,
    state: Vec<f64>,
    steps: u64,
    done: bool,
    noise_rng: Rng,
}

impl Lqr {
    /// Checks the shapes and values.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        n: usize,
        m: usize,
        a: Vec<f64>,
        b: Vec<f64>,
        q: Vec<f64>,
        r: Vec<f64>,
        noise: f64,
        start_std: f64,
        horizon: u64,
    ) -> Result<Self> {
        if n == 0
            || m == 0
            || a.len() != n * n
            || b.len() != n * m
            || q.len() != n * n
            || r.len() != m * m
        {
            return Err(Error::Shape(format!(
                "lqr: A, B, Q, R must be {n}x{n}, {n}x{m}, {n}x{n}, {m}x{m}"
            )));
        }
        if a.iter()
            .chain(&b)
            .chain(&q)
            .chain(&r)
            .any(|v| !v.is_finite())
            || !(noise >= 0.0 && start_std >= 0.0 && noise.is_finite() && start_std.is_finite())
            || horizon == 0
        {
            return Err(Error::invalid(
                "lqr: matrices must be finite, noise and start_std >= 0, horizon >= 1",
            ));
        }
        Ok(Lqr {
            n,
            m,
            a,
            b,
            q,
            r,
            noise,
            start_std,
            horizon,
            state: vec![0.0; n],
            steps: 0,
            done: false,
            noise_rng: Rng::seed_from_u64(0),
        })
    }

    /// The optimal gain K (u = −Kx) and the Riccati solution P.
    pub fn optimal(&self) -> Result<(Vec<f64>, Vec<f64>)> {
        let (p, k) = dare(&self.a, &self.b, &self.q, &self.r, self.n, self.m)?;
        Ok((k, p))
    }

    /// The optimal long-run average cost per step, σ² tr(P).
    pub fn optimal_average_cost(&self) -> Result<f64> {
        let (_, p) = self.optimal()?;
        Ok(self.noise * self.noise * (0..self.n).map(|i| p[i * self.n + i]).sum::<f64>())
    }
}

impl Env for Lqr {
    fn name(&self) -> &'static str {
        "LQR"
    }
    fn obs_dim(&self) -> usize {
        self.n
    }
    fn action_space(&self) -> ActionSpace {
        ActionSpace::Box {
            low: vec![f64::NEG_INFINITY; self.m],
            high: vec![f64::INFINITY; self.m],
        }
    }
    fn max_steps(&self) -> u64 {
        self.horizon
    }
    fn reset(&mut self, rng: &mut Rng) -> Vec<f64> {
        for v in self.state.iter_mut() {
            *v = self.start_std * normal(rng);
        }
        self.noise_rng = Rng::seed_from_u64(rng.gen());
        self.steps = 0;
        self.done = false;
        self.state.clone()
    }
    fn step(&mut self, action: &Action) -> Result<Step> {
        let u = continuous(self.name(), action, self.m)?.to_vec();
        if self.done {
            return Err(Error::invalid(
                "LQR: the episode has ended; reset before stepping again",
            ));
        }
        let (n, m) = (self.n, self.m);
        let x = &self.state;
        let quad = |mat: &[f64], v: &[f64], d: usize| -> f64 {
            (0..d)
                .map(|i| v[i] * (0..d).map(|j| mat[i * d + j] * v[j]).sum::<f64>())
                .sum()
        };
        let cost = quad(&self.q, x, n) + quad(&self.r, &u, m);
        let mut next = matmul(&self.a, x, n, n, 1);
        let bu = matmul(&self.b, &u, n, m, 1);
        for (xi, bi) in next.iter_mut().zip(&bu) {
            *xi += bi + self.noise * normal(&mut self.noise_rng);
        }
        if next.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite(
                "LQR: the state overflowed (an unstable policy?)".into(),
            ));
        }
        self.state = next;
        self.steps += 1;
        let truncated = self.steps >= self.horizon;
        self.done = truncated;
        Ok(Step {
            obs: self.state.clone(),
            reward: -cost,
            terminated: false,
            truncated,
        })
    }
    fn state(&self) -> &[f64] {
        &self.state
    }
    fn set_state(&mut self, state: &[f64]) -> Result<()> {
        check_state(self.name(), state, self.n)?;
        self.state.copy_from_slice(state);
        self.steps = 0;
        self.done = false;
        Ok(())
    }
}
