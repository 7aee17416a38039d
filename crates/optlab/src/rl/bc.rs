//! Lipschitz feedback policies learned from expert demonstrations (P11, Al Makdah, Krishnan & Pasqualetti): behaviour
//! cloning of an LQR expert u = −Kx from noisy demonstrations with the policy's Lipschitz constant held at L by a
//! per-layer spectral projection after every optimizer step (each of the k Linear layers to L^{1/k}, so the
//! product bound of a network with 1-Lipschitz activations is at most L), and the closed-loop evaluation the paper
//! reports: nominal cost against the expert's, cost under bounded state-measurement perturbations u = π(x + δ),
//! ‖δ_t‖₂ ≤ ε (random, and the worst case a projected-gradient attack over the whole horizon finds), and
//! stability (the spectral radius of the closed loop linearized at the origin). The paper has no public code;
//! the system, sizes and attack are this module's choices, stated in [`BcConfig`].

use super::lqr::Lqr;
use crate::nn::spectral::project;
use crate::nn::{Layer, ModelSpec, Param, Sequential};
use crate::optim::from_spec;
use crate::rng::{normal, rng_for, Rng, Stream};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use rand::Rng as _;

/// Behaviour-cloning settings.
#[derive(Debug, Clone, PartialEq)]
pub struct BcConfig {
    /// Expert trajectories recorded.
    pub demos: usize,
    /// Standard deviation of the noise on the expert's recorded controls.
    pub demo_noise: f64,
    /// Hidden widths of the ReLU policy.
    pub hidden: Vec<usize>,
    /// The Lipschitz bound L (None: unconstrained).
    pub lipschitz: Option<f64>,
    /// Adam steps, learning rate, minibatch.
    pub steps: usize,
    pub lr: f64,
    pub batch: usize,
    pub seed: u64,
}

impl Default for BcConfig {
    fn default() -> Self {
        BcConfig {
            demos: 20,
            demo_noise: 0.1,
            hidden: vec![32, 32],
            lipschitz: None,
            steps: 3000,
            lr: 1e-3,
            batch: 128,
            seed: 0,
        }
    }
}

impl BcConfig {
    /// Checks the values.
    pub fn check(&self) -> Result<()> {
        if self.demos == 0 || self.steps == 0 || self.batch == 0 || self.demos > 100_000 {
            return Err(Error::invalid(
                "bc: demos (1 to 100000), steps and batch must be >= 1",
            ));
        }
        if !(self.demo_noise.is_finite() && self.demo_noise >= 0.0) {
            return Err(Error::invalid("bc: demo_noise must be finite and >= 0"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::invalid(
                "bc: the learning rate must be finite and > 0",
            ));
        }
        if self.lipschitz.is_some_and(|l| !(l.is_finite() && l > 0.0)) {
            return Err(Error::invalid(
                "bc: the Lipschitz bound must be finite and > 0",
            ));
        }
        if self.hidden.contains(&0)
            || self.hidden.len() > 8
            || self.hidden.iter().any(|h| *h > 4096)
        {
            return Err(Error::invalid(
                "bc: give 0 to 8 hidden widths from 1 to 4096",
            ));
        }
        Ok(())
    }
}

/// State-control pairs, row-major.
#[derive(Debug, Clone)]
pub struct Demonstrations {
    pub states: Vec<f64>,
    pub controls: Vec<f64>,
    pub n: usize,
    pub m: usize,
}

impl Demonstrations {
    /// Pairs recorded.
    pub fn len(&self) -> usize {
        self.states.len() / self.n
    }

    /// Whether none was recorded.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }
}

/// The expert's trajectories on `lqr` (with its process noise, from x₀ ~ N(0, s²I), `lqr.horizon` steps each):
/// states x_t and recorded controls −Kx_t + noise·ε. The expert acts on the noiseless control.
pub fn lqr_demonstrations(
    lqr: &Lqr,
    trajectories: usize,
    noise: f64,
    rng: &mut Rng,
) -> Result<Demonstrations> {
    let (n, m) = (lqr.n, lqr.m);
    let k = lqr.optimal()?.0;
    let rows = trajectories as f64 * lqr.horizon as f64;
    crate::memory::check(
        "the demonstrations",
        8.0 * rows * (n + m) as f64,
        "lower demos",
    )?;
    let mut d = Demonstrations {
        states: Vec::new(),
        controls: Vec::new(),
        n,
        m,
    };
    for _ in 0..trajectories {
        let mut x: Vec<f64> = (0..n).map(|_| lqr.start_std * normal(rng)).collect();
        for _ in 0..lqr.horizon {
            let u: Vec<f64> = (0..m)
                .map(|i| -(0..n).map(|j| k[i * n + j] * x[j]).sum::<f64>())
                .collect();
            d.states.extend_from_slice(&x);
            d.controls.extend(u.iter().map(|v| v + noise * normal(rng)));
            x = (0..n)
                .map(|i| {
                    (0..n).map(|j| lqr.a[i * n + j] * x[j]).sum::<f64>()
                        + (0..m).map(|j| lqr.b[i * m + j] * u[j]).sum::<f64>()
                        + lqr.noise * normal(rng)
                })
                .collect();
        }
    }
    Ok(d)
}

/// A trained policy and its training record.
#[derive(Debug)]
pub struct BcRun {
    pub net: Sequential,
    /// Mean squared error on all demonstrations after training.
    pub train_mse: f64,
    /// Spectral norms of the Linear layers after training.
    pub layer_norms: Vec<f64>,
    pub seconds: f64,
}

impl BcRun {
    /// The product of the layers' spectral norms: a Lipschitz bound of the policy (ReLU is 1-Lipschitz).
    pub fn product_bound(&self) -> f64 {
        self.layer_norms.iter().product()
    }
}

fn linear_weights(net: &Sequential) -> Vec<&Param> {
    net.layers()
        .iter()
        .filter_map(|l| match l {
            Layer::Linear { weight, .. } => Some(weight),
            _ => None,
        })
        .collect()
}

/// Fits a ReLU MLP to the demonstrations by Adam on the mean squared error, projecting every layer to
/// L^{1/k} after each step when `cfg.lipschitz` is set.
pub fn fit(demos: &Demonstrations, cfg: &BcConfig) -> Result<BcRun> {
    cfg.check()?;
    if demos.is_empty() {
        return Err(Error::invalid("bc: no demonstrations"));
    }
    let start = std::time::Instant::now();
    let h: Vec<String> = cfg.hidden.iter().map(|v| v.to_string()).collect();
    let spec = ModelSpec::parse(&format!(
        "mlp:hidden={},act=relu",
        if h.is_empty() {
            "none".into()
        } else {
            h.join("-")
        }
    ))?;
    let net = Sequential::new(&spec, &[demos.n], demos.m, cfg.seed, DType::F64)?;
    let params = net.params();
    let layer_bound = cfg
        .lipschitz
        .map(|l| l.powf(1.0 / linear_weights(&net).len() as f64));
    if let Some(b) = layer_bound {
        project(&linear_weights(&net), b)?;
    }
    let mut opt = from_spec(&format!("adam:lr={}", cfg.lr))?;
    let rows = demos.len();
    let mut rng = rng_for(cfg.seed, Stream::Shuffle, 0);
    let batch = cfg.batch.min(rows);
    for _ in 0..cfg.steps {
        let idx: Vec<usize> = (0..batch).map(|_| rng.gen_range(0..rows)).collect();
        let x: Vec<f64> = idx
            .iter()
            .flat_map(|&i| demos.states[i * demos.n..(i + 1) * demos.n].iter().copied())
            .collect();
        let u: Vec<f64> = idx
            .iter()
            .flat_map(|&i| {
                demos.controls[i * demos.m..(i + 1) * demos.m]
                    .iter()
                    .copied()
            })
            .collect();
        let x = Tensor::from_vec(x, (batch, demos.n), &Device::Cpu)?;
        let u = Tensor::from_vec(u, (batch, demos.m), &Device::Cpu)?;
        let loss = net.forward(&x)?.sub(&u)?.sqr()?.mean_all()?;
        opt.backward_step(&params, &loss)?;
        if let Some(b) = layer_bound {
            project(&linear_weights(&net), b)?;
        }
    }
    let x = Tensor::from_slice(&demos.states, (rows, demos.n), &Device::Cpu)?;
    let u = Tensor::from_slice(&demos.controls, (rows, demos.m), &Device::Cpu)?;
    let train_mse = net
        .forward(&x)?
        .sub(&u)?
        .sqr()?
        .mean_all()?
        .to_scalar::<f64>()?;
    if !train_mse.is_finite() {
        return Err(Error::NonFinite(
            "bc: the training loss is not finite; lower lr".into(),
        ));
    }
    let layer_norms = linear_weights(&net)
        .iter()
        .map(|p| {
            let t = p.tensor();
            let d = t.dims();
            Ok(crate::nn::spectral::spectral_norm_of(
                &t.flatten_all()?.to_vec1()?,
                d[0],
                d[1],
            ))
        })
        .collect::<Result<Vec<f64>>>()?;
    Ok(BcRun {
        net,
        train_mse,
        layer_norms,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// A feedback law on a batch of states [N, n] → controls [N, m].
pub trait Feedback {
    fn control(&self, x: &Tensor) -> Result<Tensor>;
}

/// The linear law u = −Kx.
pub struct LinearFeedback {
    /// −Kᵀ, [n, m].
    neg_kt: Tensor,
}

impl LinearFeedback {
    /// From the gain K (m × n row-major).
    pub fn new(k: &[f64], n: usize, m: usize) -> Result<Self> {
        let kt = Tensor::from_slice(k, (m, n), &Device::Cpu)?
            .t()?
            .contiguous()?;
        Ok(LinearFeedback { neg_kt: kt.neg()? })
    }
}

impl Feedback for LinearFeedback {
    fn control(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(&self.neg_kt)?)
    }
}

impl Feedback for Sequential {
    fn control(&self, x: &Tensor) -> Result<Tensor> {
        self.forward(x)
    }
}

/// The noiseless closed loop x_{t+1} = A x_t + B π(x_t + δ_t) from every row of `x0` [N, n] over `lqr.horizon`
/// steps: the mean over rows of Σ_t (x_tᵀQx_t + u_tᵀRu_t), and the final states. `deltas` [H, N, n] perturb the
/// measurements; the cost is differentiable in them.
pub fn closed_loop_cost(
    lqr: &Lqr,
    policy: &dyn Feedback,
    x0: &Tensor,
    deltas: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    let (n, m) = (lqr.n, lqr.m);
    let dev = &Device::Cpu;
    let at = Tensor::from_slice(&lqr.a, (n, n), dev)?.t()?.contiguous()?;
    let bt = Tensor::from_slice(&lqr.b, (n, m), dev)?.t()?.contiguous()?;
    let q = Tensor::from_slice(&lqr.q, (n, n), dev)?;
    let r = Tensor::from_slice(&lqr.r, (m, m), dev)?;
    let rows = x0.dims()[0];
    let mut x = x0.clone();
    let mut cost = Tensor::zeros((), DType::F64, dev)?;
    for t in 0..lqr.horizon as usize {
        let seen = match deltas {
            Some(d) => x.add(&d.get(t)?)?,
            None => x.clone(),
        };
        let u = policy.control(&seen)?;
        let step = x
            .matmul(&q)?
            .mul(&x)?
            .sum_all()?
            .add(&u.matmul(&r)?.mul(&u)?.sum_all()?)?;
        cost = cost.add(&step)?;
        x = x.matmul(&at)?.add(&u.matmul(&bt)?)?;
    }
    Ok(((cost / rows as f64)?, x))
}

/// `rows` initial states drawn from N(0, s²I) of the system (a fixed evaluation set for `seed`).
pub fn initial_states(lqr: &Lqr, rows: usize, seed: u64) -> Result<Tensor> {
    let mut rng = rng_for(seed, Stream::Data, 11);
    let v: Vec<f64> = (0..rows * lqr.n)
        .map(|_| lqr.start_std * normal(&mut rng))
        .collect();
    Ok(Tensor::from_vec(v, (rows, lqr.n), &Device::Cpu)?)
}

fn project_rows(d: &Tensor, eps: f64) -> Result<Tensor> {
    let norms = d.sqr()?.sum_keepdim(2)?.sqrt()?;
    let scale = (norms / eps)?.maximum(1.0)?;
    Ok(d.broadcast_div(&scale)?)
}

/// Mean closed-loop cost over `draws` random perturbation sequences, each δ_t uniform on the sphere of radius
/// `eps` (the far edge of the ball).
pub fn random_perturbation_cost(
    lqr: &Lqr,
    policy: &dyn Feedback,
    x0: &Tensor,
    eps: f64,
    draws: usize,
    seed: u64,
) -> Result<f64> {
    let mut rng = rng_for(seed, Stream::Probe, 0);
    let (h, rows) = (lqr.horizon as usize, x0.dims()[0]);
    let mut total = 0.0;
    for _ in 0..draws {
        let v: Vec<f64> = (0..h * rows * lqr.n).map(|_| normal(&mut rng)).collect();
        let d = Tensor::from_vec(v, (h, rows, lqr.n), &Device::Cpu)?;
        let norms = d.sqr()?.sum_keepdim(2)?.sqrt()?;
        let d = (d.broadcast_div(&norms)? * eps)?;
        total += closed_loop_cost(lqr, policy, x0, Some(&d))?
            .0
            .to_scalar::<f64>()?;
    }
    Ok(total / draws as f64)
}

/// The largest closed-loop cost a projected-gradient attack finds over perturbation sequences with
/// ‖δ_t‖₂ ≤ `eps` for every step and initial state: `iterations` normalized ascent steps of size eps/4 per δ_t from a
/// random start on the sphere, each projected back onto the ball; the best cost seen.
pub fn worst_case_cost(
    lqr: &Lqr,
    policy: &dyn Feedback,
    x0: &Tensor,
    eps: f64,
    iterations: usize,
    seed: u64,
) -> Result<f64> {
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(Error::invalid(
            "bc: the perturbation radius must be finite and >= 0",
        ));
    }
    let (h, rows) = (lqr.horizon as usize, x0.dims()[0]);
    if eps == 0.0 {
        return Ok(closed_loop_cost(lqr, policy, x0, None)?
            .0
            .to_scalar::<f64>()?);
    }
    let mut rng = rng_for(seed, Stream::Probe, 1);
    let v: Vec<f64> = (0..h * rows * lqr.n).map(|_| normal(&mut rng)).collect();
    let d0 = Tensor::from_vec(v, (h, rows, lqr.n), &Device::Cpu)?;
    let d0 = (d0.broadcast_div(&d0.sqr()?.sum_keepdim(2)?.sqrt()?)? * eps)?;
    let delta = Var::from_tensor(&d0)?;
    let mut best = f64::NEG_INFINITY;
    for _ in 0..=iterations {
        let (cost, _) = closed_loop_cost(lqr, policy, x0, Some(delta.as_tensor()))?;
        let c = cost.to_scalar::<f64>()?;
        if c.is_nan() {
            return Err(Error::NonFinite(
                "bc: the attacked closed loop produced NaN".into(),
            ));
        }
        best = best.max(c);
        if c.is_infinite() {
            break;
        }
        let g = cost.backward()?;
        let Some(g) = g.get(delta.as_tensor()) else {
            break;
        };
        let gn = g.sqr()?.sum_keepdim(2)?.sqrt()?.maximum(1e-300)?;
        let step = (g.broadcast_div(&gn)? * (eps / 4.0))?;
        delta.set(&project_rows(&delta.as_tensor().add(&step)?, eps)?)?;
    }
    Ok(best)
}

/// The spectral radius of A + B·∂π/∂x(0): below 1, the closed loop is locally asymptotically stable.
pub fn linearized_spectral_radius(lqr: &Lqr, policy: &dyn Feedback) -> Result<f64> {
    let (n, m) = (lqr.n, lqr.m);
    let x = Var::zeros((1, n), DType::F64, &Device::Cpu)?;
    let u = policy.control(x.as_tensor())?;
    let mut jac = vec![0.0; m * n];
    for i in 0..m {
        let g = u.narrow(1, i, 1)?.sum_all()?.backward()?;
        if let Some(gi) = g.get(x.as_tensor()) {
            let row: Vec<f64> = gi.flatten_all()?.to_vec1()?;
            jac[i * n..(i + 1) * n].copy_from_slice(&row);
        }
    }
    let mut cl = lqr.a.clone();
    for r in 0..n {
        for c in 0..n {
            cl[r * n + c] += (0..m)
                .map(|k| lqr.b[r * m + k] * jac[k * n + c])
                .sum::<f64>();
        }
    }
    spectral_radius(&cl, n)
}

/// The spectral radius of a real n × n matrix: lim ‖Mᵏ‖^{1/k} by repeated squaring (k = 2⁴⁰), with rescaling.
fn spectral_radius(a: &[f64], n: usize) -> Result<f64> {
    let mut m = a.to_vec();
    let mut log_scale = 0.0f64;
    let mut k = 1.0f64;
    for _ in 0..40 {
        let norm = m.iter().fold(0.0f64, |s, v| s.max(v.abs()));
        if norm == 0.0 {
            return Ok(0.0);
        }
        m.iter_mut().for_each(|v| *v /= norm);
        log_scale += norm.ln() / k;
        m = super::lqr::matmul(&m, &m, n, n, n);
        k *= 2.0;
    }
    let norm = m.iter().fold(0.0f64, |s, v| s.max(v.abs()));
    if !norm.is_finite() {
        return Err(Error::NonFinite("spectral radius: overflow".into()));
    }
    Ok((log_scale
        + if norm > 0.0 {
            norm.ln() / k
        } else {
            f64::NEG_INFINITY
        })
    .exp())
}
