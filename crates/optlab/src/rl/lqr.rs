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
pub(crate) fn matmul(a: &[f64], b: &[f64], n: usize, k: usize, m: usize) -> Vec<f64> {
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

/// One step of the Riccati recursion: K = (R + BᵀPB)⁻¹BᵀPA and P′ = Q + AᵀPA − AᵀPBK.
fn riccati_step(
    p: &[f64],
    a: &[f64],
    b: &[f64],
    q: &[f64],
    r: &[f64],
    n: usize,
    m: usize,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let (at, bt) = (transpose(a, n, n), transpose(b, n, m));
    let pa = matmul(p, a, n, n, n);
    let pb = matmul(p, b, n, n, m);
    let mut s = matmul(&bt, &pb, m, n, m);
    for (si, ri) in s.iter_mut().zip(r) {
        *si += ri;
    }
    let k = solve_columns(&s, &matmul(&bt, &pa, m, n, n), m, n)?;
    let apa = matmul(&at, &pa, n, n, n);
    let apbk = matmul(&at, &matmul(&pb, &k, n, m, n), n, n, n);
    let next = (0..n * n).map(|i| q[i] + apa[i] - apbk[i]).collect();
    Ok((next, k))
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
    let mut p = q.to_vec();
    for _ in 0..100_000 {
        let (next, _) = riccati_step(&p, a, b, q, r, n, m)?;
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
            let (_, k) = riccati_step(&p, a, b, q, r, n, m)?;
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

    /// The 2-state system of the P16 experiments: a damped double integrator (A = [[0.95, 0.1], [0, 0.95]],
    /// B = [[0.005], [0.1]]), Q = I, R = 0.1, noise σ = 0.1, start std 1, truncated after `horizon` steps.
    pub fn damped_double_integrator(horizon: u64) -> Result<Self> {
        Self::integrator(0.95, 0.1, horizon)
    }

    /// The P11 experiments' system: the double integrator with step 0.1 (A = [[1, 0.1], [0, 1]],
    /// B = [[0.005], [0.1]], marginally stable without control), Q = I, R = 0.1, noise σ = 0.05, start std 1,
    /// `horizon` steps.
    pub fn double_integrator(horizon: u64) -> Result<Self> {
        Self::integrator(1.0, 0.05, horizon)
    }

    /// A = [[d, 0.1], [0, d]], B = [[0.005], [0.1]], Q = I, R = 0.1, start std 1.
    fn integrator(d: f64, noise: f64, horizon: u64) -> Result<Self> {
        Lqr::new(
            2,
            1,
            vec![d, 0.1, 0.0, d],
            vec![0.005, 0.1],
            vec![1.0, 0.0, 0.0, 1.0],
            vec![0.1],
            noise,
            1.0,
            horizon,
        )
    }

    /// The exact expected discounted return E[Σ_{t<H} γᵗ r_t] of the linear Gaussian policy u = W x + c + diag(std) ε
    /// (W m × n row-major, as `nn.Linear`'s weight) from x₀ ~ N(0, s²I): the mean and covariance of the state
    /// propagated through the closed loop. −∞ when the state overflows (an unstable policy over a long horizon).
    pub fn linear_policy_return(
        &self,
        w: &[f64],
        c: &[f64],
        std: &[f64],
        discount: f64,
    ) -> Result<f64> {
        let (n, m) = (self.n, self.m);
        if w.len() != m * n || c.len() != m || std.len() != m {
            return Err(Error::Shape(format!(
                "lqr: a linear policy is W ({m}x{n}), c ({m}) and std ({m})"
            )));
        }
        let quad_trace = |mat: &[f64], cov: &[f64], d: usize| -> f64 {
            (0..d)
                .map(|i| (0..d).map(|j| mat[i * d + j] * cov[j * d + i]).sum::<f64>())
                .sum()
        };
        let quad = |mat: &[f64], v: &[f64], d: usize| -> f64 {
            (0..d)
                .map(|i| v[i] * (0..d).map(|j| mat[i * d + j] * v[j]).sum::<f64>())
                .sum()
        };
        // The closed loop F = A + BW; the exploration covariance D = diag(std²).
        let bw = matmul(&self.b, w, n, m, n);
        let f: Vec<f64> = self.a.iter().zip(&bw).map(|(x, y)| x + y).collect();
        let ft = transpose(&f, n, n);
        let wt = transpose(w, m, n);
        let bt = transpose(&self.b, n, m);
        let d: Vec<f64> = (0..m * m)
            .map(|i| {
                if i % (m + 1) == 0 {
                    std[i / (m + 1)].powi(2)
                } else {
                    0.0
                }
            })
            .collect();
        let bdb = matmul(&matmul(&self.b, &d, n, m, m), &bt, n, m, n);
        let mut mean = vec![0.0; n];
        let mut cov: Vec<f64> = (0..n * n)
            .map(|i| {
                if i % (n + 1) == 0 {
                    self.start_std.powi(2)
                } else {
                    0.0
                }
            })
            .collect();
        let (mut total, mut weight) = (0.0, 1.0);
        for _ in 0..self.horizon {
            let u_mean: Vec<f64> = matmul(w, &mean, m, n, 1)
                .iter()
                .zip(c)
                .map(|(x, y)| x + y)
                .collect();
            let u_cov = matmul(&matmul(w, &cov, m, n, n), &wt, m, n, m);
            let u_cov: Vec<f64> = u_cov.iter().zip(&d).map(|(x, y)| x + y).collect();
            let cost = quad_trace(&self.q, &cov, n)
                + quad(&self.q, &mean, n)
                + quad_trace(&self.r, &u_cov, m)
                + quad(&self.r, &u_mean, m);
            total -= weight * cost;
            weight *= discount;
            let bu = matmul(&self.b, c, n, m, 1);
            mean = matmul(&f, &mean, n, n, 1)
                .iter()
                .zip(&bu)
                .map(|(x, y)| x + y)
                .collect();
            cov = matmul(&matmul(&f, &cov, n, n, n), &ft, n, n, n);
            for i in 0..n * n {
                cov[i] += bdb[i]
                    + if i % (n + 1) == 0 {
                        self.noise.powi(2)
                    } else {
                        0.0
                    };
            }
            if !total.is_finite() || cov.iter().any(|v| !v.is_finite()) {
                return Ok(f64::NEG_INFINITY);
            }
        }
        Ok(total)
    }

    /// The best expected discounted return over all policies, J*: −(s² tr P₀ + c₀) from the backward Riccati
    /// recursion of the discounted problem (P_H = 0; time-varying optimal gains; c_t = γ(σ² tr P_{t+1} + c_{t+1})).
    /// A stationary policy attains it only approximately; [`Lqr::discounted_gain`] is the best stationary gain
    /// as H → ∞.
    pub fn optimal_return(&self, discount: f64) -> Result<f64> {
        let n = self.n;
        let (a, b) = self.discounted(discount)?;
        let trace = |p: &[f64]| (0..n).map(|i| p[i * n + i]).sum::<f64>();
        let (mut p, mut c) = (vec![0.0; n * n], 0.0);
        for _ in 0..self.horizon {
            c = discount * (self.noise.powi(2) * trace(&p) + c);
            p = riccati_step(&p, &a, &b, &self.q, &self.r, n, self.m)?.0;
        }
        Ok(-(self.start_std.powi(2) * trace(&p) + c))
    }

    /// The optimal stationary gain of the infinite-horizon discounted problem (u = −Kx), from the DARE of
    /// (√γ A, √γ B).
    pub fn discounted_gain(&self, discount: f64) -> Result<Vec<f64>> {
        let (a, b) = self.discounted(discount)?;
        Ok(dare(&a, &b, &self.q, &self.r, self.n, self.m)?.1)
    }

    fn discounted(&self, discount: f64) -> Result<(Vec<f64>, Vec<f64>)> {
        if !(discount > 0.0 && discount <= 1.0) {
            return Err(Error::invalid("lqr: the discount must be in (0, 1]"));
        }
        let s = discount.sqrt();
        Ok((
            self.a.iter().map(|v| v * s).collect(),
            self.b.iter().map(|v| v * s).collect(),
        ))
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
