//! Stochastic policy gradient (P16, Fatkhullin, Barakat, Kireeva & He, ICML 2023): vanilla PG (REINFORCE with a
//! baseline), N-PG-IGT and (N)-HARPG, in gradient-ascent form on J(θ) = E[Σ_t γᵗ r_t].
//!
//! Every method uses the GPOMDP estimate ĝ(θ, τ) = ∇Φ(θ, τ) with Φ(θ, τ) = Σ_t γᵗ (G_t − b(s_t, t)) log π_θ(a_t|s_t),
//! G_t = Σ_{h≥t} γ^{h−t} r_h, and garage's `LinearFeatureBaseline` b fitted on the previous iteration's
//! trajectories (so the estimate stays unbiased), averaged over `batch` trajectories. With r = 2/(t + 2):
//! - **vanilla:** θ ← θ + γ_t ĝ(θ) (γ_t = γ₀, or γ₀ r^{2/3} with `decay`, as the official `SGDMOptimizer`).
//! - **N-PG-IGT:** the look-ahead θ̃ = θ_t + ((1 − η_t)/η_t)(θ_t − θ_{t−1}); d_t = (1 − η_t) d_{t−1} + η_t ĝ(θ̃);
//!   θ_{t+1} = θ_t + γ_t d_t/‖d_t‖ with γ_t = γ₀ r and η_t = η₀ r^{4/5}. (The official `NIGTOptimizer` forms the
//!   look-ahead with the previous iteration's η, one step behind its own momentum; this module uses η_t in both,
//!   as the update is written.)
//! - **(N)-HARPG:** d_t = (1 − η_t)(d_{t−1} + v_t) + η_t ĝ(θ_t) with the Hessian correction
//!   v_t = B̂(θ_b, τ̂)(θ_t − θ_{t−1}) at θ_b = bθ_t + (1 − b)θ_{t−1}, b ~ U(0, 1), on `hessian_batch` fresh
//!   trajectories τ̂ sampled at θ_b, where B̂(θ, τ) = ∇²Φ(θ, τ) + ∇Φ(θ, τ) ∇log p(τ|θ)ᵀ (log p(τ|θ) = Σ_t log π_θ(a_t|s_t)),
//!   averaged per trajectory; η_t = η₀ r, γ_t = γ₀ r normalized or γ₀ √r unnormalized. (The official
//!   `STORMHess` closure differs from this estimator in three ways, which this module does not copy: its
//!   correction term has the opposite sign, and it multiplies batch *means* over all time steps instead of
//!   averaging per-trajectory products of sums.)
//!
//! The first iteration of the momentum methods sets d₀ = ĝ(θ₀) (η₀ = 1 makes this the schedule's own choice).

use super::env::{Action, ActionSpace, Env};
use super::policy::{Policy, PolicyKind};
use crate::implicit::linear::DenseMatrix;
use crate::rng::{rng_for, Rng, Stream};
use crate::train::snapshot::{Reader, Writer};
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use rand::Rng as _;

/// The most trajectories one estimate may take.
pub const MAX_BATCH: usize = 100_000;

/// The three methods of P16's experiments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgMethod {
    /// REINFORCE / GPOMDP with a baseline.
    Vanilla,
    /// Normalized PG with implicit gradient transport.
    NPgIgt,
    /// (Normalized) Hessian-aided recursive PG.
    Harpg,
}

impl PgMethod {
    /// The names the CLI takes.
    pub const NAMES: &'static [&'static str] = &["reinforce", "n-pg-igt", "harpg"];

    /// Parses `reinforce` (or `vanilla`), `n-pg-igt` (or `igt`), `harpg` (or `n-harpg`).
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "reinforce" | "vanilla" | "vanilla-pg" => Ok(PgMethod::Vanilla),
            "n-pg-igt" | "igt" | "nigt" => Ok(PgMethod::NPgIgt),
            "harpg" | "n-harpg" => Ok(PgMethod::Harpg),
            other => Err(Error::invalid(format!(
                "unknown policy-gradient method '{other}'; available: reinforce, n-pg-igt, harpg"
            ))),
        }
    }

    /// The canonical name.
    pub fn name(self) -> &'static str {
        match self {
            PgMethod::Vanilla => "reinforce",
            PgMethod::NPgIgt => "n-pg-igt",
            PgMethod::Harpg => "harpg",
        }
    }
}

/// A policy-gradient run's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PgConfig {
    pub method: PgMethod,
    pub iterations: u64,
    /// Trajectories per gradient estimate (the paper's methods use one).
    pub batch: usize,
    /// HARPG's trajectories for the Hessian correction.
    pub hessian_batch: usize,
    /// γ₀.
    pub step: f64,
    /// η₀ in (0, 1].
    pub momentum: f64,
    /// Steps along d/‖d‖.
    pub normalized: bool,
    /// The official code's decaying schedules (`const_stepsize = False`); constant γ₀, η₀ otherwise.
    pub decay: bool,
    /// γ of the return.
    pub discount: f64,
    /// garage's linear feature baseline.
    pub baseline: bool,
    pub seed: u64,
}

impl PgConfig {
    /// The official defaults of `method` (γ₀ 0.1, η₀ 1, discount 0.99, one trajectory per estimate): IGT and
    /// HARPG normalized with decaying schedules; vanilla unnormalized with a constant step.
    pub fn new(method: PgMethod) -> Self {
        let momentum_method = method != PgMethod::Vanilla;
        PgConfig {
            method,
            iterations: 100,
            batch: 1,
            hessian_batch: 1,
            step: 0.1,
            momentum: 1.0,
            normalized: momentum_method,
            decay: momentum_method,
            discount: 0.99,
            baseline: true,
            seed: 0,
        }
    }

    /// Checks the values.
    pub fn check(&self) -> Result<()> {
        if self.iterations == 0 || self.batch == 0 || self.hessian_batch == 0 {
            return Err(Error::invalid(
                "policy gradient: iterations, batch and hessian_batch must be >= 1",
            ));
        }
        if self.batch > MAX_BATCH || self.hessian_batch > MAX_BATCH {
            return Err(Error::invalid(format!(
                "policy gradient: batch and hessian_batch must be <= {MAX_BATCH} trajectories"
            )));
        }
        if !(self.step.is_finite() && self.step > 0.0) {
            return Err(Error::invalid(
                "policy gradient: the step size must be finite and > 0",
            ));
        }
        if !(self.momentum > 0.0 && self.momentum <= 1.0) {
            return Err(Error::invalid(
                "policy gradient: the momentum eta0 must be in (0, 1]",
            ));
        }
        if !(self.discount > 0.0 && self.discount <= 1.0) {
            return Err(Error::invalid(
                "policy gradient: the discount must be in (0, 1]",
            ));
        }
        Ok(())
    }

    /// (γ_t, η_t) at iteration t (from 0).
    pub fn schedule(&self, t: u64) -> (f64, f64) {
        if !self.decay {
            return (self.step, self.momentum);
        }
        let r = 2.0 / (t as f64 + 2.0);
        match self.method {
            PgMethod::Vanilla => (self.step * r.powf(2.0 / 3.0), 1.0),
            PgMethod::NPgIgt => (self.step * r, self.momentum * r.powf(0.8)),
            PgMethod::Harpg if self.normalized => (self.step * r, self.momentum * r),
            PgMethod::Harpg => (self.step * r.sqrt(), self.momentum * r),
        }
    }
}

/// One sampled episode: observations, actions (indices as f64 for discrete spaces) and rewards, flat.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trajectory {
    pub obs: Vec<f64>,
    pub actions: Vec<f64>,
    pub rewards: Vec<f64>,
}

impl Trajectory {
    /// Time steps.
    pub fn len(&self) -> usize {
        self.rewards.len()
    }

    /// Whether no step was taken.
    pub fn is_empty(&self) -> bool {
        self.rewards.is_empty()
    }

    /// The undiscounted return.
    pub fn total_reward(&self) -> f64 {
        self.rewards.iter().sum()
    }

    /// G_t = Σ_{h≥t} γ^{h−t} r_h.
    pub fn returns_to_go(&self, discount: f64) -> Vec<f64> {
        let mut g = vec![0.0; self.len()];
        let mut acc = 0.0;
        for t in (0..self.len()).rev() {
            acc = self.rewards[t] + discount * acc;
            g[t] = acc;
        }
        g
    }
}

/// Runs one episode of `policy` (sampling its actions) until termination or the time limit.
pub fn rollout(env: &mut dyn Env, policy: &Policy, rng: &mut Rng) -> Result<Trajectory> {
    let mut obs = env.reset(rng);
    let mut tr = Trajectory::default();
    loop {
        let action = policy.act(&obs, rng, true)?;
        if let Action::Continuous(v) = &action {
            if v.iter().any(|a| !a.is_finite()) {
                return Err(Error::NonFinite(
                    "policy gradient: the policy produced a non-finite action (it diverged; lower the step size)"
                        .into(),
                ));
            }
        }
        tr.obs.extend_from_slice(&obs);
        match &action {
            Action::Discrete(a) => tr.actions.push(*a as f64),
            Action::Continuous(v) => tr.actions.extend_from_slice(v),
        }
        let step = env.step(&action)?;
        tr.rewards.push(step.reward);
        obs = step.obs;
        if step.terminated || step.truncated {
            return Ok(tr);
        }
    }
}

/// garage's `LinearFeatureBaseline`: a ridge fit of G_t on [s, s², t/100, (t/100)², (t/100)³, 1] (s clipped to
/// ±10), ridge 1e-5 raised tenfold while the solve fails.
#[derive(Debug, Clone, Default)]
pub struct LinearBaseline {
    coef: Option<Vec<f64>>,
}

impl LinearBaseline {
    fn features(obs: &[f64], t: usize) -> Vec<f64> {
        let s: Vec<f64> = obs.iter().map(|v| v.clamp(-10.0, 10.0)).collect();
        let al = t as f64 / 100.0;
        let mut f = s.clone();
        f.extend(s.iter().map(|v| v * v));
        f.extend([al, al * al, al * al * al, 1.0]);
        f
    }

    /// The prediction for every step of `tr` (zeros before the first fit).
    pub fn predict(&self, tr: &Trajectory, obs_dim: usize) -> Vec<f64> {
        match &self.coef {
            None => vec![0.0; tr.len()],
            Some(c) => (0..tr.len())
                .map(|t| {
                    let f = Self::features(&tr.obs[t * obs_dim..(t + 1) * obs_dim], t);
                    f.iter().zip(c).map(|(a, b)| a * b).sum()
                })
                .collect(),
        }
    }

    /// Fits on the returns-to-go of `trajectories`.
    pub fn fit(
        &mut self,
        trajectories: &[Trajectory],
        obs_dim: usize,
        discount: f64,
    ) -> Result<()> {
        let k = 2 * obs_dim + 4;
        let mut ftf = vec![0.0; k * k];
        let mut fty = vec![0.0; k];
        for tr in trajectories {
            for (t, g) in tr.returns_to_go(discount).into_iter().enumerate() {
                let f = Self::features(&tr.obs[t * obs_dim..(t + 1) * obs_dim], t);
                for i in 0..k {
                    fty[i] += f[i] * g;
                    for j in 0..k {
                        ftf[i * k + j] += f[i] * f[j];
                    }
                }
            }
        }
        let mut reg = 1e-5;
        for _ in 0..5 {
            let mut a = ftf.clone();
            for i in 0..k {
                a[i * k + i] += reg;
            }
            if let Ok(c) = DenseMatrix::new(k, a)?.lu_solve(&fty) {
                if c.iter().all(|v| v.is_finite()) {
                    self.coef = Some(c);
                    return Ok(());
                }
            }
            reg *= 10.0;
        }
        Ok(())
    }
}

/// One iteration's record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PgPoint {
    pub iteration: u64,
    /// Trajectories sampled so far (the Hessian correction's included).
    pub trajectories: u64,
    pub env_steps: u64,
    /// Mean undiscounted return of this iteration's gradient batch.
    pub mean_return: f64,
    pub step: f64,
    pub momentum: f64,
    /// ‖d_t‖.
    pub direction_norm: f64,
}

/// The parameters of `policy` as one vector ([`Policy::params`] order).
pub fn flat_params(policy: &Policy) -> Result<Vec<f64>> {
    let mut v = Vec::new();
    for p in policy.params() {
        v.extend(p.tensor().flatten_all()?.to_vec1::<f64>()?);
    }
    Ok(v)
}

/// Sets the parameters of `policy` from one vector.
pub fn set_flat_params(policy: &Policy, flat: &[f64]) -> Result<()> {
    let mut at = 0;
    for p in policy.params() {
        let dims = p.tensor().dims().to_vec();
        let n = p.tensor().elem_count();
        let part = flat
            .get(at..at + n)
            .ok_or_else(|| Error::Shape("policy gradient: parameter vector too short".into()))?;
        p.var.set(&Tensor::from_slice(part, dims, &Device::Cpu)?)?;
        at += n;
    }
    if at != flat.len() {
        return Err(Error::Shape(
            "policy gradient: parameter vector too long".into(),
        ));
    }
    Ok(())
}

/// The surrogate Σ_τ Σ_t weight_t log π(a_t|s_t) / scale over `trajectories`.
fn surrogate(
    policy: &Policy,
    trajectories: &[&Trajectory],
    weights: &[Vec<f64>],
    scale: f64,
) -> Result<Tensor> {
    let obs_dim = policy.net.input_shape()[0];
    let rows: usize = trajectories.iter().map(|t| t.len()).sum();
    let obs: Vec<f64> = trajectories
        .iter()
        .flat_map(|t| t.obs.iter().copied())
        .collect();
    let act: Vec<f64> = trajectories
        .iter()
        .flat_map(|t| t.actions.iter().copied())
        .collect();
    let w: Vec<f64> = weights.iter().flatten().copied().collect();
    let obs = Tensor::from_vec(obs, (rows, obs_dim), &Device::Cpu)?;
    let act = match policy.kind {
        PolicyKind::Softmax { .. } => Tensor::from_vec(act, rows, &Device::Cpu)?,
        _ => {
            let m = act.len() / rows;
            Tensor::from_vec(act, (rows, m), &Device::Cpu)?
        }
    };
    let w = Tensor::from_vec(w, rows, &Device::Cpu)?;
    Ok((policy.log_prob(&obs, &act)?.mul(&w)?.sum_all()? / scale)?)
}

/// ∇ of a scalar in the parameters, flat (zeros for parameters it does not touch), and the per-parameter
/// gradient tensors (still on the graph when second-order gradients are enabled).
fn gradient(policy: &Policy, objective: &Tensor) -> Result<(Vec<f64>, Vec<Tensor>)> {
    let store = objective.backward()?;
    let mut flat = Vec::new();
    let mut parts = Vec::new();
    for p in policy.params() {
        let g = match store.get(p.tensor()) {
            Some(g) => g.clone(),
            None => p.tensor().zeros_like()?,
        };
        flat.extend(g.flatten_all()?.to_vec1::<f64>()?);
        parts.push(g);
    }
    Ok((flat, parts))
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// γᵗ (G_t − b(s_t, t)) for every step of `tr`.
fn step_weights(
    tr: &Trajectory,
    baseline: Option<&LinearBaseline>,
    discount: f64,
    obs_dim: usize,
) -> Vec<f64> {
    let b = match baseline {
        Some(bl) => bl.predict(tr, obs_dim),
        None => vec![0.0; tr.len()],
    };
    let mut scale = 1.0;
    tr.returns_to_go(discount)
        .iter()
        .zip(b)
        .map(|(g, b)| {
            let w = scale * (g - b);
            scale *= discount;
            w
        })
        .collect()
}

/// The GPOMDP estimate of ∇J at the policy's parameters, averaged over `trajectories` (sampled from it), with
/// an optional baseline fitted on other trajectories.
pub fn gradient_estimate(
    policy: &Policy,
    trajectories: &[Trajectory],
    baseline: Option<&LinearBaseline>,
    discount: f64,
) -> Result<Vec<f64>> {
    let obs_dim = policy.net.input_shape()[0];
    let refs: Vec<&Trajectory> = trajectories.iter().filter(|t| !t.is_empty()).collect();
    if refs.is_empty() {
        return Err(Error::invalid("policy gradient: no trajectory with a step"));
    }
    let weights: Vec<Vec<f64>> = refs
        .iter()
        .map(|t| step_weights(t, baseline, discount, obs_dim))
        .collect();
    let phi = surrogate(policy, &refs, &weights, trajectories.len() as f64)?;
    Ok(gradient(policy, &phi)?.0)
}

/// HARPG's estimate of ∇²J·`dir` at the policy's parameters: B̂(θ, τ)·dir = ∇²Φ·dir + ∇Φ ⟨∇log p(τ|θ), dir⟩ averaged
/// over `trajectories` (sampled from the policy). Needs second-order gradients.
pub fn hessian_vector_estimate(
    policy: &Policy,
    trajectories: &[Trajectory],
    baseline: Option<&LinearBaseline>,
    discount: f64,
    dir: &[f64],
) -> Result<Vec<f64>> {
    crate::require_second_order()?;
    let obs_dim = policy.net.input_shape()[0];
    let mut dir_parts = Vec::new();
    let mut at = 0;
    for p in policy.params() {
        let n = p.tensor().elem_count();
        let part = dir.get(at..at + n).ok_or_else(|| {
            Error::Shape("policy gradient: the direction is shorter than the parameters".into())
        })?;
        dir_parts.push(Tensor::from_slice(part, p.tensor().dims(), &Device::Cpu)?);
        at += n;
    }
    if at != dir.len() {
        return Err(Error::Shape(
            "policy gradient: the direction is longer than the parameters".into(),
        ));
    }
    let mut out = vec![0.0; dir.len()];
    for tr in trajectories.iter().filter(|t| !t.is_empty()) {
        // ∇²Φ·dir by differentiating ⟨∇Φ, dir⟩ again; ∇Φ ⟨∇log p, dir⟩ from two plain gradients.
        let phi = surrogate(
            policy,
            &[tr],
            &[step_weights(tr, baseline, discount, obs_dim)],
            1.0,
        )?;
        let (g, parts) = gradient(policy, &phi)?;
        let mut dot: Option<Tensor> = None;
        for (gp, vp) in parts.iter().zip(&dir_parts) {
            let t = gp.mul(vp)?.sum_all()?;
            dot = Some(match dot {
                Some(d) => d.add(&t)?,
                None => t,
            });
        }
        let hv = match dot {
            Some(d) => gradient(policy, &d)?.0,
            None => vec![0.0; dir.len()],
        };
        let ones = vec![1.0; tr.len()];
        let (glp, _) = gradient(policy, &surrogate(policy, &[tr], &[ones], 1.0)?)?;
        let s: f64 = glp.iter().zip(dir).map(|(a, b)| a * b).sum();
        for i in 0..out.len() {
            out[i] += (hv[i] + g[i] * s) / trajectories.len() as f64;
        }
    }
    Ok(out)
}

/// What sampling carries from one iteration to the next: the generator, the baseline and the counts.
#[derive(Debug, Clone)]
struct SampleState {
    rng: Rng,
    baseline: Option<LinearBaseline>,
    trajectories: u64,
    env_steps: u64,
}

/// The sampling of a run: the environment and the state it advances.
struct Sampler<'a> {
    env: &'a mut dyn Env,
    st: &'a mut SampleState,
    discount: f64,
    obs_dim: usize,
}

impl Sampler<'_> {
    fn sample(&mut self, policy: &Policy, count: usize) -> Result<Vec<Trajectory>> {
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let tr = rollout(self.env, policy, &mut self.st.rng)?;
            self.st.trajectories += 1;
            self.st.env_steps += tr.len() as u64;
            out.push(tr);
        }
        Ok(out)
    }

    /// The GPOMDP estimate from `batch` fresh trajectories and their mean return; refits the baseline on them
    /// afterwards.
    fn gradient(&mut self, policy: &Policy, batch: usize) -> Result<(Vec<f64>, f64)> {
        let trs = self.sample(policy, batch)?;
        let mean_return = trs.iter().map(Trajectory::total_reward).sum::<f64>() / batch as f64;
        let g = gradient_estimate(policy, &trs, self.st.baseline.as_ref(), self.discount)?;
        if let Some(bl) = self.st.baseline.as_mut() {
            bl.fit(&trs, self.obs_dim, self.discount)?;
        }
        Ok((g, mean_return))
    }

    /// HARPG's correction from `batch` fresh trajectories.
    fn hessian_correction(
        &mut self,
        policy: &Policy,
        dir: &[f64],
        batch: usize,
    ) -> Result<Vec<f64>> {
        let trs = self.sample(policy, batch)?;
        hessian_vector_estimate(policy, &trs, self.st.baseline.as_ref(), self.discount, dir)
    }
}

/// A policy-gradient run between iterations: the iterate, the previous one, the direction d_t of the
/// momentum methods and the sampling state. It can be checkpointed and resumed bit-exactly
/// ([`PgState::save`], [`PgState::load`]).
#[derive(Debug, Clone)]
pub struct PgState {
    iteration: u64,
    x: Vec<f64>,
    prev: Vec<f64>,
    d: Option<Vec<f64>>,
    sampling: SampleState,
}

impl PgState {
    /// The start of a run of `cfg` from `policy`'s parameters.
    pub fn new(policy: &Policy, cfg: &PgConfig) -> Result<Self> {
        let x = flat_params(policy)?;
        Ok(PgState {
            iteration: 0,
            prev: x.clone(),
            x,
            d: None,
            sampling: SampleState {
                rng: rng_for(cfg.seed, Stream::Rollout, 0),
                baseline: cfg.baseline.then(LinearBaseline::default),
                trajectories: 0,
                env_steps: 0,
            },
        })
    }

    /// Iterations done.
    pub fn iteration(&self) -> u64 {
        self.iteration
    }

    /// Environment steps sampled.
    pub fn env_steps(&self) -> u64 {
        self.sampling.env_steps
    }

    /// Writes the state into a checkpoint.
    pub fn save(&self, w: &mut Writer) -> Result<()> {
        w.value("iteration", self.iteration)?;
        w.value("trajectories", self.sampling.trajectories)?;
        w.value("env_steps", self.sampling.env_steps)?;
        w.value("has_direction", self.d.is_some())?;
        w.rng("rng", &self.sampling.rng)?;
        let coef = self.sampling.baseline.as_ref().and_then(|b| b.coef.clone());
        w.value("baseline", self.sampling.baseline.is_some())?;
        w.value("baseline_fitted", coef.is_some())?;
        let empty = Vec::new();
        w.vectors(
            "pg_state",
            &[
                ("x", &self.x),
                ("prev", &self.prev),
                ("d", self.d.as_ref().unwrap_or(&empty)),
                ("baseline", coef.as_ref().unwrap_or(&empty)),
            ],
        )
    }

    /// Restores a checkpoint of a run of `cfg` and sets `policy`'s parameters to its iterate.
    pub fn load(r: &Reader, policy: &Policy, cfg: &PgConfig) -> Result<Self> {
        let bad = |m: String| Error::file(r.dir(), m);
        let v = r.vectors("pg_state", &["x", "prev", "d", "baseline"])?;
        let n = flat_params(policy)?.len();
        let has_d: bool = r.value("has_direction")?;
        if v["x"].len() != n || v["prev"].len() != n || v["d"].len() != if has_d { n } else { 0 } {
            return Err(bad(format!(
                "the saved iterates do not fit the policy's {n} parameters"
            )));
        }
        if r.value::<bool>("baseline")? != cfg.baseline {
            return Err(bad(
                "the checkpoint's baseline setting is not this run's".into()
            ));
        }
        let fitted: bool = r.value("baseline_fitted")?;
        let features = 2 * policy.net.input_shape().iter().product::<usize>() + 4;
        if fitted && v["baseline"].len() != features {
            return Err(bad(format!(
                "the baseline has {} coefficients, not {features}",
                v["baseline"].len()
            )));
        }
        let baseline = cfg.baseline.then(|| LinearBaseline {
            coef: fitted.then(|| v["baseline"].clone()),
        });
        let iteration: u64 = r.value("iteration")?;
        if iteration == 0
            || iteration > cfg.iterations
            || (has_d == (cfg.method == PgMethod::Vanilla))
        {
            return Err(bad(format!(
                "iteration {iteration} with{} a momentum direction is not a checkpoint of this {} run",
                if has_d { "" } else { "out" },
                cfg.method.name()
            )));
        }
        let st = PgState {
            iteration,
            x: v["x"].clone(),
            prev: v["prev"].clone(),
            d: has_d.then(|| v["d"].clone()),
            sampling: SampleState {
                rng: r.rng("rng")?,
                baseline,
                trajectories: r.value("trajectories")?,
                env_steps: r.value("env_steps")?,
            },
        };
        set_flat_params(policy, &st.x)?;
        Ok(st)
    }
}

/// Trains `policy` on `env` with `cfg`; `on_iteration` sees each iteration's record and the policy after its
/// update (an evaluation hook) and returns whether to go on (a budget of environment steps, say). HARPG needs
/// second-order gradients ([`crate::require_second_order`]).
pub fn train(
    env: &mut dyn Env,
    policy: &Policy,
    cfg: &PgConfig,
    mut on_iteration: impl FnMut(&PgPoint, &Policy) -> Result<bool>,
) -> Result<Vec<PgPoint>> {
    let mut st = PgState::new(policy, cfg)?;
    train_from(env, policy, cfg, &mut st, |p, pol, _| on_iteration(p, pol))
}

/// [`train`] from a state ([`PgState::new`], or [`PgState::load`] for a resume) that it advances;
/// `on_iteration` also sees the state after the iteration (to checkpoint it).
pub fn train_from(
    env: &mut dyn Env,
    policy: &Policy,
    cfg: &PgConfig,
    state: &mut PgState,
    mut on_iteration: impl FnMut(&PgPoint, &Policy, &PgState) -> Result<bool>,
) -> Result<Vec<PgPoint>> {
    cfg.check()?;
    if cfg.method == PgMethod::Harpg {
        crate::require_second_order()?;
    }
    check_policy_fits(env, policy)?;
    let act_dim = match env.action_space() {
        ActionSpace::Discrete(_) => 1,
        ActionSpace::Box { low, .. } => low.len(),
    };
    let per_step = 8.0 * (env.obs_dim() + act_dim + 1) as f64;
    crate::memory::check(
        "the policy-gradient batch of trajectories",
        per_step * env.max_steps() as f64 * cfg.batch.max(cfg.hessian_batch) as f64,
        "lower the batch",
    )?;
    let obs_dim = env.obs_dim();
    let mut points = Vec::new();
    while state.iteration < cfg.iterations {
        let t = state.iteration;
        let (gamma, eta) = cfg.schedule(t);
        let mut s = Sampler {
            env: &mut *env,
            st: &mut state.sampling,
            discount: cfg.discount,
            obs_dim,
        };
        let (x, prev) = (&state.x, &state.prev);
        let (dir, mean_return) = match (cfg.method, state.d.take()) {
            (PgMethod::Vanilla, _) => s.gradient(policy, cfg.batch)?,
            (PgMethod::NPgIgt, None) | (PgMethod::Harpg, None) => s.gradient(policy, cfg.batch)?,
            (PgMethod::NPgIgt, Some(dp)) => {
                let c = (1.0 - eta) / eta;
                let look: Vec<f64> = x.iter().zip(prev).map(|(a, b)| a + c * (a - b)).collect();
                set_flat_params(policy, &look)?;
                let (g, ret) = s.gradient(policy, cfg.batch)?;
                let dn = dp
                    .iter()
                    .zip(&g)
                    .map(|(dv, gv)| (1.0 - eta) * dv + eta * gv)
                    .collect();
                (dn, ret)
            }
            (PgMethod::Harpg, Some(dp)) => {
                let (g, ret) = s.gradient(policy, cfg.batch)?;
                let b: f64 = s.st.rng.gen();
                let xb: Vec<f64> = x
                    .iter()
                    .zip(prev)
                    .map(|(a, p)| b * a + (1.0 - b) * p)
                    .collect();
                let delta: Vec<f64> = x.iter().zip(prev).map(|(a, p)| a - p).collect();
                set_flat_params(policy, &xb)?;
                let v = s.hessian_correction(policy, &delta, cfg.hessian_batch)?;
                let dn = dp
                    .iter()
                    .zip(&v)
                    .zip(&g)
                    .map(|((dv, vv), gv)| (1.0 - eta) * (dv + vv) + eta * gv)
                    .collect();
                (dn, ret)
            }
        };
        let dn = norm(&dir);
        if !dn.is_finite() {
            return Err(Error::NonFinite(format!(
                "policy gradient: the direction is not finite at iteration {t} (the policy diverged; lower the step size)"
            )));
        }
        let scale = if cfg.normalized {
            if dn > 0.0 {
                gamma / dn
            } else {
                0.0
            }
        } else {
            gamma
        };
        let next: Vec<f64> = x.iter().zip(&dir).map(|(a, g)| a + scale * g).collect();
        set_flat_params(policy, &next)?;
        state.prev = std::mem::replace(&mut state.x, next);
        if cfg.method != PgMethod::Vanilla {
            state.d = Some(dir);
        }
        state.iteration += 1;
        let point = PgPoint {
            iteration: t,
            trajectories: state.sampling.trajectories,
            env_steps: state.sampling.env_steps,
            mean_return,
            step: gamma,
            momentum: eta,
            direction_norm: dn,
        };
        points.push(point);
        if !on_iteration(&point, policy, state)? {
            break;
        }
    }
    Ok(points)
}

/// Checks that the policy's distribution matches the environment's actions.
fn check_policy_fits(env: &dyn Env, policy: &Policy) -> Result<()> {
    let ok = match (env.action_space(), policy.kind) {
        (ActionSpace::Discrete(n), PolicyKind::Softmax { actions }) => n == actions,
        (ActionSpace::Box { low, .. }, PolicyKind::Gaussian { dim }) => low.len() == dim,
        _ => false,
    };
    if !ok || policy.net.input_shape() != [env.obs_dim()] {
        return Err(Error::Shape(format!(
            "policy gradient: the policy ({:?}, {} inputs) does not fit {} ({:?}, {} observations)",
            policy.kind,
            policy.net.input_shape().first().copied().unwrap_or(0),
            env.name(),
            env.action_space(),
            env.obs_dim()
        )));
    }
    Ok(())
}
