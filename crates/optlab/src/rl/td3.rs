//! TD3 (Fujimoto, van Hoof & Meger 2018) with a replay buffer, in one readable file as CleanRL's `td3_continuous_action.py`:
//! twin critics Q₁, Q₂ on (s, a); targets y = r + γ(1 − terminated)·min(Q₁′, Q₂′)(s′, clip(π′(s′) + clip(ε, ±c)));
//! the actor maximizes Q₁(s, π(s)) every `policy_delay` critic updates; Polyak-averaged target networks;
//! Gaussian exploration noise; uniform random actions for the first `learning_starts` steps. Every
//! hyperparameter is a field of [`Td3Config`]; every draw comes from the run's seed.

use super::env::{Action, ActionSpace, Env};
use crate::nn::spectral::SpectralScope;
use crate::nn::{ModelSpec, Param, Sequential};
use crate::optim::{from_spec, Optimizer};
use crate::rng::{normal, rng_for, Rng, Stream};
use crate::train::snapshot::{Reader, Writer};
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

    /// Saves the stored transitions (not the unused capacity) as `name` in a checkpoint.
    pub fn save(&self, w: &mut Writer, name: &str) -> Result<()> {
        w.value(&format!("{name}.cursor"), [self.len, self.next])?;
        let (o, a) = (self.len * self.obs_dim, self.len * self.act_dim);
        w.vectors(
            name,
            &[
                ("obs", &self.obs[..o]),
                ("actions", &self.actions[..a]),
                ("rewards", &self.rewards[..self.len]),
                ("next_obs", &self.next_obs[..o]),
                ("terminated", &self.terminated[..self.len]),
            ],
        )
    }

    /// Restores the transitions saved as `name` into this (empty, equally shaped) buffer.
    pub fn load(&mut self, r: &Reader, name: &str) -> Result<()> {
        let [len, next]: [usize; 2] = r.value(&format!("{name}.cursor"))?;
        if len > self.capacity || next >= self.capacity || (len < self.capacity && next != len) {
            return Err(Error::file(
                r.dir(),
                format!(
                    "{name}: {len} transitions with the next slot {next} do not fit a buffer of {}",
                    self.capacity
                ),
            ));
        }
        let v = r.vectors(
            name,
            &["obs", "actions", "rewards", "next_obs", "terminated"],
        )?;
        let widths = [
            ("obs", self.obs_dim),
            ("actions", self.act_dim),
            ("rewards", 1),
            ("next_obs", self.obs_dim),
            ("terminated", 1),
        ];
        for (k, w) in widths {
            if v[k].len() != len * w {
                return Err(Error::file(
                    r.dir(),
                    format!("{name}: `{k}` has {} values, not {}", v[k].len(), len * w),
                ));
            }
        }
        self.obs[..len * self.obs_dim].copy_from_slice(&v["obs"]);
        self.actions[..len * self.act_dim].copy_from_slice(&v["actions"]);
        self.rewards[..len].copy_from_slice(&v["rewards"]);
        self.next_obs[..len * self.obs_dim].copy_from_slice(&v["next_obs"]);
        self.terminated[..len].copy_from_slice(&v["terminated"]);
        (self.len, self.next) = (len, next);
        Ok(())
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
    /// Saves the extension's own state (networks, optimizers, generators) into a checkpoint.
    fn save(&self, w: &mut Writer) -> Result<()>;
    /// Restores what [`Td3Extension::save`] wrote.
    fn load(&mut self, r: &Reader) -> Result<()>;
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
    let mut agent = Td3Agent::new(env, cfg)?;
    while !agent.is_done() {
        if let Some(e) = agent.step(env, reborrow(&mut ext))? {
            on_episode(&e);
        }
    }
    Ok(agent.finish())
}

/// A TD3 run in progress, one environment step at a time ([`Td3Agent::step`]); it can be checkpointed between
/// episodes and resumed bit-exactly ([`Td3Agent::save`], [`Td3Agent::load`]).
pub struct Td3Agent {
    cfg: Td3Config,
    obs_dim: usize,
    act_dim: usize,
    bound: f64,
    actor: Sequential,
    critic1: Sequential,
    critic2: Sequential,
    actor_t: Sequential,
    critic1_t: Sequential,
    critic2_t: Sequential,
    actor_opt: Box<dyn Optimizer>,
    critic_opt: Box<dyn Optimizer>,
    /// Both critics' parameters under the names their joint optimizer keys its state by.
    critic_params: Vec<Param>,
    buffer: ReplayBuffer,
    rng: Rng,
    env_rng: Rng,
    /// The current observation; `None` between episodes (the next step resets the environment).
    obs: Option<Vec<f64>>,
    ret: f64,
    step: u64,
    update: u64,
    episodes: Vec<Episode>,
    /// Seconds spent before a resume, and the clock since.
    seconds_before: f64,
    t0: std::time::Instant,
}

/// Both critics' parameters for their one optimizer, named `q1.*` and `q2.*`: the optimizer keys its state by
/// name, and the two networks' own names are equal.
fn critic_params(critic1: &Sequential, critic2: &Sequential) -> Vec<Param> {
    let named = |prefix: &str, net: &Sequential| -> Vec<Param> {
        net.params()
            .into_iter()
            .map(|p| Param {
                name: format!("{prefix}.{}", p.name),
                var: p.var,
            })
            .collect()
    };
    let mut v = named("q1", critic1);
    v.extend(named("q2", critic2));
    v
}

/// A shorter-lived borrow of an optional extension (for calls in a loop).
fn reborrow<'a>(ext: &'a mut Option<&mut dyn Td3Extension>) -> Option<&'a mut dyn Td3Extension> {
    match ext {
        Some(m) => Some(&mut **m),
        None => None,
    }
}

/// The action box TD3 needs: its dimension and bound.
fn symmetric_box(env: &dyn Env) -> Result<(usize, f64)> {
    match env.action_space() {
        ActionSpace::Box { low, high }
            if !low.is_empty()
                && high.iter().all(|h| h.is_finite() && *h > 0.0)
                && low.iter().zip(&high).all(|(l, h)| *l == -*h)
                && high.iter().all(|h| *h == high[0]) =>
        {
            Ok((high.len(), high[0]))
        }
        other => Err(Error::invalid(format!(
            "td3 needs a bounded action box symmetric around 0 with one bound, got {other:?}"
        ))),
    }
}

impl Td3Agent {
    /// A fresh agent for `env` (which the first step resets).
    pub fn new(env: &dyn Env, cfg: &Td3Config) -> Result<Self> {
        cfg.check()?;
        let (obs_dim, (act_dim, bound)) = (env.obs_dim(), symmetric_box(env)?);
        let actor = mlp(&cfg.hidden, obs_dim, act_dim, cfg.seed)?;
        let sn = cfg.critic_spectral;
        let critic = |k: u64| {
            mlp_sn(
                &cfg.hidden,
                obs_dim + act_dim,
                1,
                cfg.seed.wrapping_add(k),
                sn,
            )
        };
        let (critic1, critic2) = (critic(1)?, critic(2)?);
        Ok(Td3Agent {
            critic_params: critic_params(&critic1, &critic2),
            actor_t: copy_of(&actor)?,
            critic1_t: copy_of(&critic1)?,
            critic2_t: copy_of(&critic2)?,
            actor,
            critic1,
            critic2,
            actor_opt: from_spec(&format!("adam:lr={}", cfg.actor_lr))?,
            critic_opt: from_spec(&format!("adam:lr={}", cfg.critic_lr))?,
            buffer: ReplayBuffer::new(obs_dim, act_dim, cfg.buffer_size)?,
            rng: rng_for(cfg.seed, Stream::Solver, 3),
            env_rng: rng_for(cfg.seed, Stream::Data, 3),
            obs: None,
            ret: 0.0,
            step: 0,
            update: 0,
            episodes: Vec::new(),
            seconds_before: 0.0,
            t0: std::time::Instant::now(),
            cfg: cfg.clone(),
            obs_dim,
            act_dim,
            bound,
        })
    }

    /// Environment steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Whether the budget of environment steps is spent.
    pub fn is_done(&self) -> bool {
        self.step >= self.cfg.total_steps
    }

    /// Whether the agent is between episodes (where it can be checkpointed).
    pub fn between_episodes(&self) -> bool {
        self.obs.is_none()
    }

    /// The finished episodes.
    pub fn episodes(&self) -> &[Episode] {
        &self.episodes
    }

    /// The actor and its action bound.
    pub fn actor(&self) -> (&Sequential, f64) {
        (&self.actor, self.bound)
    }

    /// Seconds spent training, over every session of the run.
    pub fn seconds(&self) -> f64 {
        self.seconds_before + self.t0.elapsed().as_secs_f64()
    }

    /// One environment step and, after the warm-up, the extension's update and the agent's updates; returns the
    /// episode the step finished, if any.
    pub fn step(
        &mut self,
        env: &mut dyn Env,
        mut ext: Option<&mut dyn Td3Extension>,
    ) -> Result<Option<Episode>> {
        if self.is_done() {
            return Err(Error::invalid("td3: the run's steps are all taken"));
        }
        let (cfg, bound, act_dim) = (&self.cfg, self.bound, self.act_dim);
        let obs = match self.obs.take() {
            Some(o) => o,
            None => env.reset(&mut self.env_rng),
        };
        self.step += 1;
        let step = self.step;
        let action: Vec<f64> = if step <= cfg.learning_starts {
            (0..act_dim)
                .map(|_| bound * (2.0 * self.rng.gen::<f64>() - 1.0))
                .collect()
        } else {
            let o = Tensor::from_vec(
                obs.iter().map(|&v| v as f32).collect::<Vec<_>>(),
                (1, self.obs_dim),
                &Device::Cpu,
            )?;
            let a: Vec<f32> = actor_out(&self.actor, &o, bound)?
                .flatten_all()?
                .to_vec1()?;
            a.iter()
                .map(|&m| {
                    (m as f64 + bound * cfg.exploration_noise * normal(&mut self.rng))
                        .clamp(-bound, bound)
                })
                .collect()
        };
        let s = env.step(&Action::Continuous(action.clone()))?;
        self.ret += s.reward;
        self.buffer
            .push(&obs, &action, s.reward, &s.obs, s.terminated);
        let finished = if s.terminated || s.truncated {
            let e = Episode {
                step,
                ret: std::mem::take(&mut self.ret),
            };
            self.episodes.push(e);
            Some(e)
        } else {
            self.obs = Some(s.obs);
            None
        };
        if step > cfg.learning_starts {
            if let Some(m) = ext.as_deref_mut() {
                let policy = |o: &Tensor| actor_out(&self.actor, o, bound);
                m.update(&self.buffer, &policy, &mut self.rng, step)?;
            }
            for _ in 0..cfg.updates_per_step {
                self.update(reborrow(&mut ext))?;
            }
        }
        Ok(finished)
    }

    /// One agent update from the replay buffer: the critics and, every `policy_delay` updates, the actor and the
    /// Polyak averaging of the targets ([`Td3Agent::step`] makes `updates_per_step` of them after the warm-up;
    /// public for benchmarks and custom loops).
    pub fn update(&mut self, mut ext: Option<&mut dyn Td3Extension>) -> Result<()> {
        let (cfg, bound, act_dim) = (&self.cfg, self.bound, self.act_dim);
        let sampled = match ext.as_deref_mut() {
            Some(m) => m.sample(&self.buffer, cfg.batch_size, &mut self.rng)?,
            None => None,
        };
        let [bs, ba, br, bs2, bd] = match sampled {
            Some(b) => b,
            None => self.buffer.sample(cfg.batch_size, &mut self.rng)?,
        };
        let br = match ext {
            Some(m) => m.reward(&bs, &ba, &bs2)?.map(|r| r.detach()).unwrap_or(br),
            None => br,
        };
        self.update += 1;
        // Critic targets, without gradients.
        let c = cfg.noise_clip * bound;
        let noise: Vec<f32> = (0..cfg.batch_size * act_dim)
            .map(|_| (bound * cfg.policy_noise * normal(&mut self.rng)).clamp(-c, c) as f32)
            .collect();
        let noise = Tensor::from_vec(noise, (cfg.batch_size, act_dim), &Device::Cpu)?;
        let a2 = actor_out(&self.actor_t, &bs2, bound)?
            .add(&noise)?
            .clamp(-bound, bound)?;
        let q_next = q(&self.critic1_t, &bs2, &a2)?.minimum(&q(&self.critic2_t, &bs2, &a2)?)?;
        let y = br
            .add(&bd.affine(-1.0, 1.0)?.mul(&q_next)?.affine(cfg.gamma, 0.0)?)?
            .detach();
        let (critic1, critic2) = (&self.critic1, &self.critic2);
        let td = |s: &Tensor| -> Result<Tensor> {
            Ok(q(critic1, s, &ba)?
                .sub(&y)?
                .sqr()?
                .mean_all()?
                .add(&q(critic2, s, &ba)?.sub(&y)?.sqr()?.mean_all()?)?)
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
        self.critic_opt.backward_step(&self.critic_params, &loss)?;
        if self.update.is_multiple_of(cfg.policy_delay) {
            let actor_loss = q(&self.critic1, &bs, &actor_out(&self.actor, &bs, bound)?)?
                .mean_all()?
                .neg()?;
            // The actor's step reads only its own parameters' gradients.
            self.actor_opt
                .backward_step(&self.actor.params(), &actor_loss)?;
            polyak(&self.actor_t, &self.actor, cfg.tau)?;
            polyak(&self.critic1_t, &self.critic1, cfg.tau)?;
            polyak(&self.critic2_t, &self.critic2, cfg.tau)?;
        }
        Ok(())
    }

    /// The six networks by their checkpoint names.
    fn nets(&self) -> [(&'static str, &Sequential); 6] {
        [
            ("actor", &self.actor),
            ("critic1", &self.critic1),
            ("critic2", &self.critic2),
            ("actor_target", &self.actor_t),
            ("critic1_target", &self.critic1_t),
            ("critic2_target", &self.critic2_t),
        ]
    }

    /// Writes the agent (networks, optimizers, replay buffer, generators, counters, episodes) into a checkpoint;
    /// only between episodes, where the environment's state is the next reset's.
    pub fn save(&self, w: &mut Writer) -> Result<()> {
        if !self.between_episodes() {
            return Err(Error::invalid(
                "td3: a checkpoint is taken between episodes",
            ));
        }
        for (name, net) in self.nets() {
            w.net(name, net)?;
        }
        w.optimizer(
            "actor_optimizer",
            self.actor_opt.as_ref(),
            &self.actor.params(),
        )?;
        w.optimizer(
            "critic_optimizer",
            self.critic_opt.as_ref(),
            &self.critic_params,
        )?;
        self.buffer.save(w, "replay")?;
        w.rng("rng", &self.rng)?;
        w.rng("env_rng", &self.env_rng)?;
        w.value("env_steps", self.step)?;
        w.value("updates", self.update)?;
        w.value("seconds", self.seconds())?;
        let steps: Vec<f64> = self.episodes.iter().map(|e| e.step as f64).collect();
        let rets: Vec<f64> = self.episodes.iter().map(|e| e.ret).collect();
        w.vectors("episodes", &[("step", &steps), ("return", &rets)])
    }

    /// Restores a checkpoint written by [`Td3Agent::save`] for the same configuration into a fresh agent.
    pub fn load(&mut self, r: &Reader) -> Result<()> {
        let (step, update): (u64, u64) = (r.value("env_steps")?, r.value("updates")?);
        let learning = step.saturating_sub(self.cfg.learning_starts);
        let expected = learning * self.cfg.updates_per_step as u64;
        if step == 0 || step > self.cfg.total_steps || update != expected {
            return Err(Error::file(
                r.dir(),
                format!(
                    "the checkpoint (step {step}, {update} updates) is not one of this run (1..={} steps, {expected} updates at step {step})",
                    self.cfg.total_steps
                ),
            ));
        }
        for (name, net) in self.nets() {
            r.net(name, net)?;
        }
        let actor_steps = update / self.cfg.policy_delay;
        self.actor_opt = r.optimizer("actor_optimizer", &self.actor.params(), actor_steps)?;
        self.critic_opt = r.optimizer("critic_optimizer", &self.critic_params, update)?;
        self.buffer.load(r, "replay")?;
        if self.buffer.len() as u64 != step.min(self.cfg.buffer_size as u64) {
            return Err(Error::file(
                r.dir(),
                format!(
                    "the replay buffer holds {} transitions after {step} steps",
                    self.buffer.len()
                ),
            ));
        }
        self.rng = r.rng("rng")?;
        self.env_rng = r.rng("env_rng")?;
        let e = r.vectors("episodes", &["step", "return"])?;
        self.episodes = e["step"]
            .iter()
            .zip(&e["return"])
            .map(|(s, ret)| Episode {
                step: *s as u64,
                ret: *ret,
            })
            .collect();
        (self.step, self.update, self.obs, self.ret) = (step, update, None, 0.0);
        self.seconds_before = r.value("seconds")?;
        self.t0 = std::time::Instant::now();
        Ok(())
    }

    /// The run's result.
    pub fn finish(self) -> Td3Run {
        Td3Run {
            seconds: self.seconds(),
            episodes: self.episodes,
            actor: self.actor,
            critic: Some(self.critic1),
            bound: self.bound,
        }
    }
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
