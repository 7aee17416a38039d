//! Off-policy adversarial imitation with a locally Lipschitz reward (P04, Blondé, Strasser & Kalousis): a
//! discriminator D(s, a) separates expert pairs from replay-buffer pairs; TD3 learns from the reward
//! r = −log(1 − σ(D(s, a)) + 1e-8), recomputed with the current D for every sampled batch. The discriminator's loss
//! follows the official `update_discriminator` (lionelblonde/liayn-pytorch, agents/sam_agent.py): binary
//! cross-entropy with the expert's labels drawn uniformly from [0.7, 1.2], minus 0.001 × the mean Bernoulli entropy
//! of D, plus the gradient penalty (scale 10, target 1, one-sided, at interpolations between policy and expert
//! pairs) when `penalty` is set; spectral normalization of every layer of D with `spectral`; Adam at 5e-4.

use super::env::{Action, Env};
use super::td3::{self, Episode, ReplayBuffer, Td3Config, Td3Extension, Td3Run};
use crate::nn::loss::{sigmoid, softplus};
use crate::nn::penalty::{interpolation_weights, GradientPenalty};
use crate::nn::{ModelSpec, Sequential};
use crate::optim::{from_spec, Optimizer};
use crate::rng::{rng_for, Rng, Stream};
use crate::train::snapshot::{Reader, Writer};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use rand::Rng as _;

/// The discriminator's settings (the official code's defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct GailConfig {
    pub hidden: Vec<usize>,
    pub lr: f64,
    /// Pairs per class per discriminator step.
    pub batch: usize,
    pub penalty: Option<GradientPenalty>,
    pub spectral: bool,
    /// Weight of the entropy bonus.
    pub entropy: f64,
    /// Expert labels uniform in [0.7, 1.2] (else 1).
    pub label_smoothing: bool,
    /// A discriminator step every `every` environment steps.
    pub every: u64,
    pub seed: u64,
}

impl Default for GailConfig {
    fn default() -> Self {
        GailConfig {
            hidden: vec![100, 100],
            lr: 5e-4,
            batch: 64,
            penalty: Some(GradientPenalty::default()),
            spectral: false,
            entropy: 0.001,
            label_smoothing: true,
            every: 1,
            seed: 0,
        }
    }
}

/// Expert state-action pairs, row-major.
#[derive(Debug, Clone)]
pub struct ExpertData {
    pub obs: Vec<f64>,
    pub actions: Vec<f64>,
    pub obs_dim: usize,
    pub act_dim: usize,
    /// The expert's mean episode return.
    pub mean_return: f64,
}

impl ExpertData {
    /// Pairs.
    pub fn len(&self) -> usize {
        self.obs.len() / self.obs_dim
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.obs.is_empty()
    }
}

/// `episodes` episodes of a trained TD3 actor (noiseless actions) on `env`.
pub fn expert_demonstrations(
    expert: &Td3Run,
    env: &mut dyn Env,
    episodes: usize,
    rng: &mut Rng,
) -> Result<ExpertData> {
    if episodes == 0 {
        return Err(Error::invalid("gail: at least one expert episode"));
    }
    let obs_dim = env.obs_dim();
    let mut d = ExpertData {
        obs: Vec::new(),
        actions: Vec::new(),
        obs_dim,
        act_dim: 0,
        mean_return: 0.0,
    };
    let mut total = 0.0;
    for _ in 0..episodes {
        let mut obs = env.reset(rng);
        loop {
            let a = td3::greedy(expert, &obs)?;
            d.act_dim = a.len();
            d.obs.extend_from_slice(&obs);
            d.actions.extend_from_slice(&a);
            let s = env.step(&Action::Continuous(a))?;
            total += s.reward;
            obs = s.obs;
            if s.terminated || s.truncated {
                break;
            }
        }
    }
    d.mean_return = total / episodes as f64;
    Ok(d)
}

/// The discriminator and its training state; a [`Td3Extension`] that supplies the reward.
pub struct Discriminator {
    pub net: Sequential,
    opt: Box<dyn Optimizer>,
    cfg: GailConfig,
    expert: ExpertData,
    rng: Rng,
    /// The last step's loss terms: cross-entropy, entropy, penalty.
    pub last: [f64; 3],
}

impl Discriminator {
    /// A fresh discriminator on (s, a) pairs shaped as `expert`'s.
    pub fn new(cfg: &GailConfig, expert: ExpertData) -> Result<Self> {
        if expert.is_empty() {
            return Err(Error::invalid("gail: no expert pairs"));
        }
        if cfg.batch == 0 || cfg.every == 0 || !(cfg.lr.is_finite() && cfg.lr > 0.0) {
            return Err(Error::invalid(
                "gail: the discriminator's batch and period must be >= 1 and its lr > 0",
            ));
        }
        if cfg.hidden.is_empty() || cfg.hidden.contains(&0) {
            return Err(Error::invalid(
                "gail: the discriminator needs hidden widths >= 1",
            ));
        }
        let h: Vec<String> = cfg.hidden.iter().map(|v| v.to_string()).collect();
        let sn = if cfg.spectral { ",sn=1" } else { "" };
        let spec = ModelSpec::parse(&format!("mlp:hidden={},act=relu{sn}", h.join("-")))?;
        let inputs = expert.obs_dim + expert.act_dim;
        let net = Sequential::new(&spec, &[inputs], 1, cfg.seed.wrapping_add(7), DType::F32)?;
        Ok(Discriminator {
            net,
            opt: from_spec(&format!("adam:lr={}", cfg.lr))?,
            cfg: cfg.clone(),
            rng: rng_for(cfg.seed, Stream::Solver, 4),
            expert,
            last: [0.0; 3],
        })
    }

    /// D's logits for a batch of concatenated (s, a).
    pub fn logits(&self, sa: &Tensor, train: bool) -> Result<Tensor> {
        self.net.forward_mode(sa, train)
    }

    fn expert_batch(&mut self, rows: usize) -> Result<Tensor> {
        let n = self.expert.len();
        let w = self.expert.obs_dim + self.expert.act_dim;
        let mut v = Vec::with_capacity(rows * w);
        for _ in 0..rows {
            let i = self.rng.gen_range(0..n);
            let (o, a) = (self.expert.obs_dim, self.expert.act_dim);
            v.extend(
                self.expert.obs[i * o..(i + 1) * o]
                    .iter()
                    .map(|&x| x as f32),
            );
            v.extend(
                self.expert.actions[i * a..(i + 1) * a]
                    .iter()
                    .map(|&x| x as f32),
            );
        }
        Ok(Tensor::from_vec(v, (rows, w), &Device::Cpu)?)
    }

    /// One discriminator step on `batch` policy pairs from the buffer against as many expert pairs.
    pub fn step(&mut self, buffer: &ReplayBuffer, rng: &mut Rng) -> Result<()> {
        let rows = self.cfg.batch;
        let [bs, ba, _, _, _] = buffer.sample(rows, rng)?;
        let policy = Tensor::cat(&[&bs, &ba], 1)?;
        let expert = self.expert_batch(rows)?;
        let lp = self.logits(&policy, true)?;
        let le = self.logits(&expert, true)?;
        let labels: Vec<f32> = (0..rows)
            .map(|_| {
                if self.cfg.label_smoothing {
                    0.7 + 0.5 * self.rng.gen::<f32>()
                } else {
                    1.0
                }
            })
            .collect();
        let y = Tensor::from_vec(labels, (rows, 1), &Device::Cpu)?;
        // BCE with logits: softplus(l) − y·l; the policy's labels are 0.
        let bce = softplus(&le)?
            .sub(&y.mul(&le)?)?
            .mean_all()?
            .add(&softplus(&lp)?.mean_all()?)?;
        // Bernoulli entropy σ(l)·softplus(−l) + (1 − σ(l))·softplus(l), over both batches.
        let all = Tensor::cat(&[&lp, &le], 0)?;
        let p = sigmoid(&all)?;
        let ent = p
            .mul(&softplus(&all.neg()?)?)?
            .add(&p.affine(-1.0, 1.0)?.mul(&softplus(&all)?)?)?
            .mean_all()?;
        let mut loss = bce.sub(&(&ent * self.cfg.entropy)?)?;
        let mut pen_value = 0.0;
        if let Some(gp) = self.cfg.penalty {
            let eps = interpolation_weights(rows, &mut self.rng)?.to_dtype(DType::F32)?;
            let net = &self.net;
            let pen = gp.penalty(
                &|x: &Tensor| net.forward_mode(x, true),
                &policy,
                &expert,
                &eps,
            )?;
            pen_value = pen.to_scalar::<f32>()? as f64;
            loss = loss.add(&pen)?;
        }
        let params = self.net.params();
        self.opt.backward_step(&params, &loss)?;
        self.last = [
            bce.to_scalar::<f32>()? as f64,
            ent.to_scalar::<f32>()? as f64,
            pen_value,
        ];
        if !self.last.iter().all(|v| v.is_finite()) {
            return Err(Error::NonFinite(
                "gail: the discriminator's loss is not finite".into(),
            ));
        }
        Ok(())
    }
}

impl Td3Extension for Discriminator {
    fn reward(&mut self, obs: &Tensor, act: &Tensor, _next: &Tensor) -> Result<Option<Tensor>> {
        // r = −log(1 − σ(D) + 1e-8) = −log(σ(−D) + 1e-8).
        let l = self.logits(&Tensor::cat(&[obs, act], 1)?, false)?.detach();
        Ok(Some(sigmoid(&l.neg()?)?.affine(1.0, 1e-8)?.log()?.neg()?))
    }

    fn update(
        &mut self,
        buffer: &ReplayBuffer,
        _actor: &dyn Fn(&Tensor) -> Result<Tensor>,
        rng: &mut Rng,
        step: u64,
    ) -> Result<()> {
        if step.is_multiple_of(self.cfg.every) {
            self.step(buffer, rng)?;
        }
        Ok(())
    }

    fn save(&self, w: &mut Writer) -> Result<()> {
        w.net("discriminator", &self.net)?;
        w.optimizer(
            "discriminator_optimizer",
            self.opt.as_ref(),
            &self.net.params(),
        )?;
        w.value("discriminator_steps", self.opt.state().step)?;
        w.value("discriminator_last", self.last)?;
        w.rng("discriminator_rng", &self.rng)
    }

    fn load(&mut self, r: &Reader) -> Result<()> {
        r.net("discriminator", &self.net)?;
        let steps: u64 = r.value("discriminator_steps")?;
        self.opt = r.optimizer("discriminator_optimizer", &self.net.params(), steps)?;
        self.last = r.value("discriminator_last")?;
        self.rng = r.rng("discriminator_rng")?;
        Ok(())
    }
}

/// A GAIL run: TD3's (environment returns) and the trained discriminator.
pub struct GailRun {
    pub td3: Td3Run,
    pub discriminator: Discriminator,
}

/// Off-policy GAIL: TD3 with `td3_cfg` on `env` learning from the discriminator's reward.
pub fn train(
    env: &mut dyn Env,
    td3_cfg: &Td3Config,
    cfg: &GailConfig,
    expert: ExpertData,
    on_episode: impl FnMut(&Episode),
) -> Result<GailRun> {
    if expert.obs_dim != env.obs_dim() {
        return Err(Error::Shape(format!(
            "gail: the expert's observations have {} values, {} has {}",
            expert.obs_dim,
            env.name(),
            env.obs_dim()
        )));
    }
    let mut d = Discriminator::new(cfg, expert)?;
    let run = td3::train_with(env, td3_cfg, Some(&mut d), on_episode)?;
    Ok(GailRun {
        td3: run,
        discriminator: d,
    })
}
