//! TD3 (Fujimoto, van Hoof & Meger 2018) with a replay buffer, in one readable file as CleanRL's `td3_continuous_action.py`:
//! twin critics Q₁, Q₂ on (s, a); targets y = r + γ(1 − terminated)·min(Q₁′, Q₂′)(s′, clip(π′(s′) + clip(ε, ±c)));
//! the actor maximizes Q₁(s, π(s)) every `policy_delay` critic updates; Polyak-averaged target networks;
//! Gaussian exploration noise; uniform random actions for the first `learning_starts` steps. Every
//! hyperparameter is a field of [`Td3Config`]; every draw comes from the run's seed.

use super::env::{Action, ActionSpace, Env};
use crate::nn::spectral::SpectralScope;
use crate::nn::{ModelSpec, Param, Sequential};
use crate::optim::from_spec;
use crate::rng::{normal, rng_for, Rng, Stream};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use rand::Rng as _;

/// TD3's hyperparameters (CleanRL's defaults, except the shorter warm-up a 30k-step budget needs).
#[derive(Debug, Clone, PartialEq)]
pub struct Td3Config {
    pub total_steps: u64,
    pub learning_starts: u64,
    pub buffer_size: usize,
    pub batch_size: usize,
    pub gamma: f64,
    /// Polyak factor τ of the target networks.
    pub tau: f64,
    pub actor_lr: f64,
    pub critic_lr: f64,
    /// Exploration noise, as a fraction of the action bound.
    pub exploration_noise: f64,
    /// Target policy smoothing noise and its clip, as fractions of the action bound.
    pub policy_noise: f64,
    pub noise_clip: f64,
    pub policy_delay: u64,
    pub hidden: Vec<usize>,
    /// Agent updates per environment step (MBPO's G; 1 in TD3).
    pub updates_per_step: usize,
    /// Which critic layers are spectrally normalized (P24's Lipschitz-regularized value).
    pub critic_spectral: SpectralScope,
    /// P24's adversarial critic training: the critic loss also fits Q at states moved by ε·sign(∇ₛ loss)
    /// (0: off).
    pub critic_adversarial: f64,
    pub seed: u64,
}

impl Default for Td3Config {
    fn default() -> Self {
        Td3Config {
            total_steps: 30_000,
            learning_starts: 2_000,
            buffer_size: 100_000,
            batch_size: 256,
            gamma: 0.99,
            tau: 0.005,
            actor_lr: 3e-4,
            critic_lr: 3e-4,
            exploration_noise: 0.1,
            policy_noise: 0.2,
            noise_clip: 0.5,
            policy_delay: 2,
            hidden: vec![256, 256],
            updates_per_step: 1,
            critic_spectral: SpectralScope::Off,
            critic_adversarial: 0.0,
            seed: 0,
        }
    }
}

impl Td3Config {
    /// Checks every value and that the buffer fits in memory.
    pub fn check(&self) -> Result<()> {
        let unit = |v: f64| (0.0..=1.0).contains(&v);
        if self.total_steps == 0
            || self.batch_size == 0
            || self.buffer_size < self.batch_size
            || self.policy_delay == 0
        {
            return Err(Error::invalid(
                "td3: total_steps, batch_size, policy_delay >= 1 and buffer_size >= batch_size",
            ));
        }
        if self.updates_per_step == 0 || self.updates_per_step > 1000 {
            return Err(Error::invalid("td3: updates_per_step must be 1 to 1000"));
        }
        if !(self.critic_adversarial.is_finite() && self.critic_adversarial >= 0.0) {
            return Err(Error::invalid(
                "td3: the adversarial radius must be finite and >= 0",
            ));
        }
        if !(unit(self.gamma) && unit(self.tau) && self.actor_lr > 0.0 && self.critic_lr > 0.0) {
            return Err(Error::invalid(
                "td3: gamma and tau in [0, 1], learning rates > 0",
            ));
        }
        if ![self.exploration_noise, self.policy_noise, self.noise_clip]
            .iter()
            .all(|v| v.is_finite() && *v >= 0.0)
        {
            return Err(Error::invalid("td3: noise levels must be finite and >= 0"));
        }
        if self.hidden.is_empty() || self.hidden.contains(&0) {
            return Err(Error::invalid("td3: hidden widths must be >= 1"));
        }
        Ok(())
    }
}

/// A ring buffer of transitions (s, a, r, s′, terminated), stored flat in f64.
#[derive(Debug, Clone)]
pub struct ReplayBuffer {
    obs_dim: usize,
    act_dim: usize,
    capacity: usize,
    len: usize,
    next: usize,
    obs: Vec<f64>,
    actions: Vec<f64>,
    rewards: Vec<f64>,
    next_obs: Vec<f64>,
    terminated: Vec<f64>,
}

impl ReplayBuffer {
    /// A buffer of `capacity` transitions (memory checked before allocating).
    pub fn new(obs_dim: usize, act_dim: usize, capacity: usize) -> Result<Self> {
        let bytes = 8.0 * capacity as f64 * (2 * obs_dim + act_dim + 2) as f64;
        crate::memory::check("the replay buffer", bytes, "lower buffer_size")?;
        Ok(ReplayBuffer {
            obs_dim,
            act_dim,
            capacity,
            len: 0,
            next: 0,
            obs: vec![0.0; capacity * obs_dim],
            actions: vec![0.0; capacity * act_dim],
            rewards: vec![0.0; capacity],
            next_obs: vec![0.0; capacity * obs_dim],
            terminated: vec![0.0; capacity],
        })
    }

    /// Stored transitions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds a transition, overwriting the oldest when full.
    pub fn push(
        &mut self,
        obs: &[f64],
        action: &[f64],
        reward: f64,
        next_obs: &[f64],
        terminated: bool,
    ) {
        let i = self.next;
        self.obs[i * self.obs_dim..(i + 1) * self.obs_dim].copy_from_slice(obs);
        self.actions[i * self.act_dim..(i + 1) * self.act_dim].copy_from_slice(action);
        self.rewards[i] = reward;
        self.next_obs[i * self.obs_dim..(i + 1) * self.obs_dim].copy_from_slice(next_obs);
        self.terminated[i] = if terminated { 1.0 } else { 0.0 };
        self.next = (i + 1) % self.capacity;
        self.len = (self.len + 1).min(self.capacity);
    }

    /// A uniform sample with replacement: (s, a, r, s′, terminated) as f32 tensors.
    pub fn sample(&self, batch: usize, rng: &mut Rng) -> Result<[Tensor; 5]> {
        if self.len == 0 {
            return Err(Error::invalid("replay buffer: nothing to sample"));
        }
        let idx: Vec<usize> = (0..batch).map(|_| rng.gen_range(0..self.len)).collect();
        let gather = |src: &[f64], w: usize| -> Result<Tensor> {
            let v: Vec<f32> = idx
                .iter()
                .flat_map(|&i| src[i * w..(i + 1) * w].iter().map(|&x| x as f32))
                .collect();
            Ok(Tensor::from_vec(v, (batch, w), &Device::Cpu)?)
        };
        Ok([
            gather(&self.obs, self.obs_dim)?,
            gather(&self.actions, self.act_dim)?,
            gather(&self.rewards, 1)?,
            gather(&self.next_obs, self.obs_dim)?,
            gather(&self.terminated, 1)?,
        ])
    }
}

/// One finished episode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Episode {
    /// The environment step at which it ended.
    pub step: u64,
    pub ret: f64,
}

/// What a TD3 run returns: the episodes and the trained actor (as f32 network with a tanh bound).
#[derive(Debug)]
pub struct Td3Run {
    pub episodes: Vec<Episode>,
    pub actor: Sequential,
    /// The first critic Q₁ (absent for an actor loaded from a file).
    pub critic: Option<Sequential>,
    pub bound: f64,
    pub seconds: f64,
}

fn mlp(hidden: &[usize], inputs: usize, outputs: usize, seed: u64) -> Result<Sequential> {
    mlp_sn(hidden, inputs, outputs, seed, SpectralScope::Off)
}

/// A ReLU MLP in f32, spectrally normalized over `spectral`.
pub(crate) fn mlp_sn(
    hidden: &[usize],
    inputs: usize,
    outputs: usize,
    seed: u64,
    spectral: SpectralScope,
) -> Result<Sequential> {
    let h: Vec<String> = hidden.iter().map(|v| v.to_string()).collect();
    let spec = ModelSpec::parse(&format!(
        "mlp:hidden={},act=relu{}",
        h.join("-"),
        spectral.to_spec()
    ))?;
    Sequential::new(&spec, &[inputs], outputs, seed, DType::F32)
}

/// A network with its own copy of `net`'s parameters and buffers (a target network).
fn copy_of(net: &Sequential) -> Result<Sequential> {
    let t = Sequential::new(
        net.spec(),
        net.input_shape(),
        outputs_of(net),
        0,
        net.dtype(),
    )?;
    let state: std::collections::HashMap<String, Tensor> = net
        .state_dict()
        .into_iter()
        .map(|(k, v)| Ok((k, v.copy()?)))
        .collect::<Result<_>>()?;
    t.load_state_dict(&state)?;
    Ok(t)
}

fn outputs_of(net: &Sequential) -> usize {
    net.params()
        .last()
        .map(|p| p.tensor().dims()[0])
        .unwrap_or(0)
}

/// target ← τ·online + (1 − τ)·target.
fn polyak(target: &Sequential, online: &Sequential, tau: f64) -> Result<()> {
    for (t, o) in target.params().iter().zip(online.params()) {
        let v = o
            .tensor()
            .affine(tau, 0.0)?
            .add(&t.tensor().affine(1.0 - tau, 0.0)?)?;
        t.var.set(&v)?;
    }
    Ok(())
}

/// The actor's bounded action bound·tanh(f(s)).
pub fn actor_out(actor: &Sequential, obs: &Tensor, bound: f64) -> Result<Tensor> {
    Ok(actor.forward(obs)?.tanh()?.affine(bound, 0.0)?)
}

/// Q(s, a), in training mode (a spectrally normalized critic runs its power iteration, as PyTorch's would).
pub(crate) fn q(critic: &Sequential, obs: &Tensor, act: &Tensor) -> Result<Tensor> {
    critic.forward_mode(&Tensor::cat(&[obs, act], 1)?, true)
}

/// What a method built on TD3 adds to it; every method has a default that changes nothing.
/// - P04's discriminator: TD3 trains on its rewards instead of the environment's, relabelling every sampled
///   batch with the current model (off-policy imitation); the episode returns TD3 reports stay the environment's.
/// - P24's model-based rollouts: batches drawn partly from transitions a learned model generates.
pub trait Td3Extension {
    /// Rewards `[batch, 1]` for the sampled transitions (s, a, s′), f32, in place of the stored ones.
    fn reward(
        &mut self,
        _obs: &Tensor,
        _act: &Tensor,
        _next_obs: &Tensor,
    ) -> Result<Option<Tensor>> {
        Ok(None)
    }
    /// Called at every environment step after the warm-up, before the agent's updates, with the replay buffer
    /// and the current actor (its noiseless action for a batch of observations).
    fn update(
        &mut self,
        _buffer: &ReplayBuffer,
        _actor: &dyn Fn(&Tensor) -> Result<Tensor>,
        _rng: &mut Rng,
        _step: u64,
    ) -> Result<()> {
        Ok(())
    }
    /// A training batch (s, a, r, s′, terminated) in place of a uniform sample of the replay buffer.
    fn sample(
        &mut self,
        _buffer: &ReplayBuffer,
        _batch: usize,
        _rng: &mut Rng,
    ) -> Result<Option<[Tensor; 5]>> {
        Ok(None)
    }
}

/// Trains TD3 on `env` (a continuous action box symmetric around 0); `on_episode` sees every finished episode.
pub fn train(
    env: &mut dyn Env,
    cfg: &Td3Config,
    on_episode: impl FnMut(&Episode),
) -> Result<Td3Run> {
    train_with(env, cfg, None, on_episode)
}

/// [`train`] with an extension (P04's reward, P24's model rollouts).
pub fn train_with(
    env: &mut dyn Env,
    cfg: &Td3Config,
    mut ext: Option<&mut dyn Td3Extension>,
    mut on_episode: impl FnMut(&Episode),
) -> Result<Td3Run> {
    cfg.check()?;
    let t0 = std::time::Instant::now();
    let (obs_dim, (act_dim, bound)) = (
        env.obs_dim(),
        match env.action_space() {
            ActionSpace::Box { low, high }
                if !low.is_empty()
                    && high.iter().all(|h| h.is_finite() && *h > 0.0)
                    && low.iter().zip(&high).all(|(l, h)| *l == -*h)
                    && high.iter().all(|h| *h == high[0]) =>
            {
                (high.len(), high[0])
            }
            other => {
                return Err(Error::invalid(format!(
                "td3 needs a bounded action box symmetric around 0 with one bound, got {other:?}"
            )))
            }
        },
    );
    let mut rng = rng_for(cfg.seed, Stream::Solver, 3);
    let actor = mlp(&cfg.hidden, obs_dim, act_dim, cfg.seed)?;
    let sn = cfg.critic_spectral;
    let critic1 = mlp_sn(
        &cfg.hidden,
        obs_dim + act_dim,
        1,
        cfg.seed.wrapping_add(1),
        sn,
    )?;
    let critic2 = mlp_sn(
        &cfg.hidden,
        obs_dim + act_dim,
        1,
        cfg.seed.wrapping_add(2),
        sn,
    )?;
    let actor_t = copy_of(&actor)?;
    let critic1_t = copy_of(&critic1)?;
    let critic2_t = copy_of(&critic2)?;
    let mut actor_opt = from_spec(&format!("adam:lr={}", cfg.actor_lr))?;
    let mut critic_opt = from_spec(&format!("adam:lr={}", cfg.critic_lr))?;
    let critic_params: Vec<Param> = critic1
        .params()
        .into_iter()
        .chain(critic2.params())
        .collect();
    let actor_params = actor.params();
    let mut buffer = ReplayBuffer::new(obs_dim, act_dim, cfg.buffer_size)?;
    let mut env_rng = rng_for(cfg.seed, Stream::Data, 3);
    let mut obs = env.reset(&mut env_rng);
    let (mut ret, mut episodes) = (0.0, Vec::new());
    let mut update = 0u64;
    for step in 1..=cfg.total_steps {
        let action: Vec<f64> = if step <= cfg.learning_starts {
            (0..act_dim)
                .map(|_| bound * (2.0 * rng.gen::<f64>() - 1.0))
                .collect()
        } else {
            let o = Tensor::from_vec(
                obs.iter().map(|&v| v as f32).collect::<Vec<_>>(),
                (1, obs_dim),
                &Device::Cpu,
            )?;
            let a: Vec<f32> = actor_out(&actor, &o, bound)?.flatten_all()?.to_vec1()?;
            a.iter()
                .map(|&m| {
                    (m as f64 + bound * cfg.exploration_noise * normal(&mut rng))
                        .clamp(-bound, bound)
                })
                .collect()
        };
        let s = env.step(&Action::Continuous(action.clone()))?;
        ret += s.reward;
        buffer.push(&obs, &action, s.reward, &s.obs, s.terminated);
        obs = s.obs;
        if s.terminated || s.truncated {
            let e = Episode { step, ret };
            on_episode(&e);
            episodes.push(e);
            ret = 0.0;
            obs = env.reset(&mut env_rng);
        }
        if step <= cfg.learning_starts {
            continue;
        }
        if let Some(m) = ext.as_deref_mut() {
            let policy = |o: &Tensor| actor_out(&actor, o, bound);
            m.update(&buffer, &policy, &mut rng, step)?;
        }
        for _ in 0..cfg.updates_per_step {
            let sampled = match ext.as_deref_mut() {
                Some(m) => m.sample(&buffer, cfg.batch_size, &mut rng)?,
                None => None,
            };
            let [bs, ba, br, bs2, bd] = match sampled {
                Some(b) => b,
                None => buffer.sample(cfg.batch_size, &mut rng)?,
            };
            let br = match ext.as_deref_mut() {
                Some(m) => m.reward(&bs, &ba, &bs2)?.map(|r| r.detach()).unwrap_or(br),
                None => br,
            };
            update += 1;
            // Critic targets, without gradients.
            let noise: Vec<f32> = (0..cfg.batch_size * act_dim)
                .map(|_| {
                    let c = cfg.noise_clip * bound;
                    (bound * cfg.policy_noise * normal(&mut rng)).clamp(-c, c) as f32
                })
                .collect();
            let noise = Tensor::from_vec(noise, (cfg.batch_size, act_dim), &Device::Cpu)?;
            let a2 = actor_out(&actor_t, &bs2, bound)?
                .add(&noise)?
                .clamp(-bound, bound)?;
            let q_next = q(&critic1_t, &bs2, &a2)?.minimum(&q(&critic2_t, &bs2, &a2)?)?;
            let y = br
                .add(&bd.affine(-1.0, 1.0)?.mul(&q_next)?.affine(cfg.gamma, 0.0)?)?
                .detach();
            let td = |s: &Tensor| -> Result<Tensor> {
                Ok(q(&critic1, s, &ba)?
                    .sub(&y)?
                    .sqr()?
                    .mean_all()?
                    .add(&q(&critic2, s, &ba)?.sub(&y)?.sqr()?.mean_all()?)?)
            };
            let loss = if cfg.critic_adversarial > 0.0 {
                // FGSM on the critics' state inputs: the loss at s + ε·sign(∇ₛ loss) joins the loss at s.
                let sv = candle_core::Var::from_tensor(&bs)?;
                let g = td(sv.as_tensor())?.backward()?;
                let dir = g
                    .get(sv.as_tensor())
                    .map(|g| g.sign())
                    .transpose()?
                    .unwrap_or(bs.zeros_like()?);
                let moved = bs.add(&(dir * cfg.critic_adversarial)?)?.detach();
                td(&bs)?.add(&td(&moved)?)?
            } else {
                td(&bs)?
            };
            critic_opt.step(&critic_params, &loss.backward()?)?;
            if update.is_multiple_of(cfg.policy_delay) {
                let actor_loss = q(&critic1, &bs, &actor_out(&actor, &bs, bound)?)?
                    .mean_all()?
                    .neg()?;
                // The actor's step reads only its own parameters' gradients.
                actor_opt.step(&actor_params, &actor_loss.backward()?)?;
                polyak(&actor_t, &actor, cfg.tau)?;
                polyak(&critic1_t, &critic1, cfg.tau)?;
                polyak(&critic2_t, &critic2, cfg.tau)?;
            }
        }
    }
    Ok(Td3Run {
        episodes,
        actor,
        critic: Some(critic1),
        bound,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// The trained actor's noiseless action for one observation.
pub fn greedy(run: &Td3Run, obs: &[f64]) -> Result<Vec<f64>> {
    let o = Tensor::from_vec(
        obs.iter().map(|&v| v as f32).collect::<Vec<_>>(),
        (1, obs.len()),
        &Device::Cpu,
    )?;
    let a: Vec<f32> = actor_out(&run.actor, &o, run.bound)?
        .flatten_all()?
        .to_vec1()?;
    Ok(a.into_iter().map(f64::from).collect())
}
