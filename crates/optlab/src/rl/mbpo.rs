//! Model-based RL with one model and a Lipschitz-regularized value (P24, Zheng, Wang, Xu & Huang, ICLR 2023):
//! an MBPO-style loop on TD3. Probabilistic dynamics models (an MLP from standardized (s, a) to the mean and
//! bounded log-variance of (Δs, r), trained by Gaussian negative log-likelihood on the real replay buffer every
//! `model_every` steps) generate one-step branches from real states under the current actor with exploration
//! noise; TD3's batches mix a `real_ratio` share of real transitions with model transitions. With an ensemble each
//! model transition comes from a member drawn at random (MBPO's choice). The critic's Lipschitz regularization
//! (spectral normalization, or adversarial input noise) is [`super::td3::Td3Config`]'s. The paper has no public
//! code; the sizes here are this module's, stated in [`MbpoConfig`].

use super::td3::{mlp_sn, ReplayBuffer, Td3Extension};
use crate::nn::loss::softplus;
use crate::nn::spectral::SpectralScope;
use crate::nn::Sequential;
use crate::optim::{from_spec, Optimizer};
use crate::rng::{normal, rng_for, Rng, Stream};
use crate::train::snapshot::{Reader, Writer};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use rand::Rng as _;

/// The model-based settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MbpoConfig {
    /// Models in the ensemble (1: the single model of P24).
    pub models: usize,
    pub hidden: Vec<usize>,
    pub lr: f64,
    /// Model training every this many environment steps...
    pub model_every: u64,
    /// ...for this many minibatch steps per model.
    pub model_steps: usize,
    pub model_batch: usize,
    /// Model transitions generated per environment step (one-step branches).
    pub rollouts_per_step: usize,
    /// Capacity of the model buffer.
    pub model_buffer: usize,
    /// Share of real transitions in each agent batch.
    pub real_ratio: f64,
    /// Exploration noise of the branched actions, as a fraction of the bound.
    pub rollout_noise: f64,
    pub seed: u64,
}

impl Default for MbpoConfig {
    fn default() -> Self {
        MbpoConfig {
            models: 1,
            hidden: vec![200, 200],
            lr: 1e-3,
            model_every: 250,
            model_steps: 200,
            model_batch: 256,
            rollouts_per_step: 64,
            model_buffer: 50_000,
            real_ratio: 0.05,
            rollout_noise: 0.1,
            seed: 0,
        }
    }
}

impl MbpoConfig {
    /// Checks the values.
    pub fn check(&self) -> Result<()> {
        if !(1..=16).contains(&self.models) {
            return Err(Error::invalid("mbpo: 1 to 16 models"));
        }
        if self.hidden.is_empty() || self.hidden.contains(&0) {
            return Err(Error::invalid("mbpo: the model needs hidden widths >= 1"));
        }
        if self.model_every == 0
            || self.model_steps == 0
            || self.model_batch == 0
            || self.model_buffer == 0
        {
            return Err(Error::invalid(
                "mbpo: model_every, model_steps, model_batch and model_buffer must be >= 1",
            ));
        }
        let valid = self.lr.is_finite()
            && self.lr > 0.0
            && (0.0..=1.0).contains(&self.real_ratio)
            && self.rollout_noise.is_finite()
            && self.rollout_noise >= 0.0;
        if !valid {
            return Err(Error::invalid(
                "mbpo: lr > 0, real_ratio in [0, 1], rollout_noise >= 0",
            ));
        }
        Ok(())
    }
}

/// MBPO's log-variance bounds (soft-clamped).
const MAX_LOGVAR: f64 = 0.5;
const MIN_LOGVAR: f64 = -10.0;

/// One probabilistic dynamics model with its input and target standardization.
pub struct DynamicsModel {
    pub net: Sequential,
    opt: Box<dyn Optimizer>,
    /// Mean and std of the inputs (s, a) and the targets (Δs, r), fitted on the buffer at each training.
    stats: Option<[Tensor; 4]>,
    out: usize,
}

impl DynamicsModel {
    fn new(cfg: &MbpoConfig, obs: usize, act: usize, seed: u64) -> Result<Self> {
        let out = obs + 1;
        Ok(DynamicsModel {
            net: mlp_sn(&cfg.hidden, obs + act, 2 * out, seed, SpectralScope::Off)?,
            opt: from_spec(&format!("adam:lr={}", cfg.lr))?,
            stats: None,
            out,
        })
    }

    /// The predicted mean and log-variance of the standardized (Δs, r) for standardized inputs.
    fn predict_std(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let y = self.net.forward(x)?;
        let mean = y.narrow(1, 0, self.out)?;
        let raw = y.narrow(1, self.out, self.out)?;
        // MBPO's soft clamp: max − softplus(max − v), then min + softplus(v − min).
        let lv = softplus(&raw.affine(-1.0, MAX_LOGVAR)?)?.affine(-1.0, MAX_LOGVAR)?;
        let lv = softplus(&lv.affine(1.0, -MIN_LOGVAR)?)?.affine(1.0, MIN_LOGVAR)?;
        Ok((mean, lv))
    }

    fn stats(&self) -> Result<&[Tensor; 4]> {
        self.stats
            .as_ref()
            .ok_or_else(|| Error::invalid("mbpo: the model has not been trained"))
    }

    /// Trains on `steps` minibatches of the real buffer (Gaussian NLL on standardized targets).
    fn train(&mut self, buffer: &ReplayBuffer, cfg: &MbpoConfig, rng: &mut Rng) -> Result<f64> {
        // Standardization from a large sample of the buffer.
        let [s, a, r, s2, _] = buffer.sample(buffer.len().min(10_000), rng)?;
        let x = Tensor::cat(&[&s, &a], 1)?;
        let y = Tensor::cat(&[&s2.sub(&s)?, &r], 1)?;
        let std = |t: &Tensor| -> Result<(Tensor, Tensor)> {
            let m = t.mean_keepdim(0)?;
            let v = t.broadcast_sub(&m)?.sqr()?.mean_keepdim(0)?;
            Ok((m, v.sqrt()?.maximum(1e-6)?))
        };
        let ((xm, xs), (ym, ys)) = (std(&x)?, std(&y)?);
        self.stats = Some([xm, xs, ym, ys]);
        let params = self.net.params();
        let mut last = f64::NAN;
        for _ in 0..cfg.model_steps {
            let [s, a, r, s2, _] = buffer.sample(cfg.model_batch, rng)?;
            let [xm, xs, ym, ys] = self.stats()?;
            let x = Tensor::cat(&[&s, &a], 1)?
                .broadcast_sub(xm)?
                .broadcast_div(xs)?;
            let y = Tensor::cat(&[&s2.sub(&s)?, &r], 1)?
                .broadcast_sub(ym)?
                .broadcast_div(ys)?;
            let (mean, lv) = self.predict_std(&x)?;
            let nll = mean
                .sub(&y)?
                .sqr()?
                .mul(&lv.neg()?.exp()?)?
                .add(&lv)?
                .mean_all()?;
            last = nll.to_scalar::<f32>()? as f64;
            self.opt.backward_step(&params, &nll)?;
        }
        if !last.is_finite() {
            return Err(Error::NonFinite(
                "mbpo: the model's loss is not finite".into(),
            ));
        }
        Ok(last)
    }

    /// (s′, r) for a batch: the mean prediction, plus a Gaussian sample of the predicted spread with `sample`.
    pub fn step(
        &self,
        s: &Tensor,
        a: &Tensor,
        sample: Option<&mut Rng>,
    ) -> Result<(Tensor, Tensor)> {
        let [xm, xs, ym, ys] = self.stats()?;
        let x = Tensor::cat(&[s, a], 1)?
            .broadcast_sub(xm)?
            .broadcast_div(xs)?;
        let (mean, lv) = self.predict_std(&x)?;
        let y = match sample {
            Some(rng) => {
                let n: Vec<f32> = (0..mean.elem_count()).map(|_| normal(rng) as f32).collect();
                let eps = Tensor::from_vec(n, mean.dims(), &Device::Cpu)?;
                mean.add(&lv.affine(0.5, 0.0)?.exp()?.mul(&eps)?)?
            }
            None => mean,
        };
        let y = y.broadcast_mul(ys)?.broadcast_add(ym)?;
        let obs = s.dims()[1];
        Ok((
            s.add(&y.narrow(1, 0, obs)?)?,
            y.narrow(1, obs, 1)?.contiguous()?,
        ))
    }
}

/// The models, the model buffer and the mixing; a [`Td3Extension`].
pub struct ModelBased {
    pub models: Vec<DynamicsModel>,
    cfg: MbpoConfig,
    model_buffer: ReplayBuffer,
    rng: Rng,
    bound: f64,
    act_dim: usize,
    /// The last training's NLL per model.
    pub last_nll: Vec<f64>,
    /// Model transitions generated.
    pub generated: u64,
}

impl ModelBased {
    /// Models for observations of `obs` and actions of `act` bounded by ±`bound`.
    pub fn new(cfg: &MbpoConfig, obs: usize, act: usize, bound: f64) -> Result<Self> {
        cfg.check()?;
        let models = (0..cfg.models)
            .map(|k| {
                DynamicsModel::new(
                    cfg,
                    obs,
                    act,
                    cfg.seed.wrapping_mul(31).wrapping_add(100 + k as u64),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ModelBased {
            models,
            model_buffer: ReplayBuffer::new(obs, act, cfg.model_buffer)?,
            rng: rng_for(cfg.seed, Stream::Solver, 5),
            cfg: cfg.clone(),
            bound,
            act_dim: act,
            last_nll: Vec::new(),
            generated: 0,
        })
    }

    fn trained(&self) -> bool {
        self.models.iter().all(|m| m.stats.is_some())
    }
}

impl Td3Extension for ModelBased {
    fn update(
        &mut self,
        buffer: &ReplayBuffer,
        actor: &dyn Fn(&Tensor) -> Result<Tensor>,
        _rng: &mut Rng,
        step: u64,
    ) -> Result<()> {
        if step.is_multiple_of(self.cfg.model_every) || !self.trained() {
            let cfg = self.cfg.clone();
            self.last_nll = self
                .models
                .iter_mut()
                .map(|m| m.train(buffer, &cfg, &mut self.rng))
                .collect::<Result<_>>()?;
        }
        let n = self.cfg.rollouts_per_step;
        if n == 0 {
            return Ok(());
        }
        let [s, _, _, _, _] = buffer.sample(n, &mut self.rng)?;
        let noise: Vec<f32> = (0..n * self.act_dim)
            .map(|_| (self.bound * self.cfg.rollout_noise * normal(&mut self.rng)) as f32)
            .collect();
        let a = actor(&s)?
            .add(&Tensor::from_vec(noise, (n, self.act_dim), &Device::Cpu)?)?
            .clamp(-self.bound, self.bound)?;
        // One member per transition, drawn uniformly.
        let pick: Vec<usize> = (0..n)
            .map(|_| self.rng.gen_range(0..self.models.len()))
            .collect();
        let mut outs = Vec::with_capacity(self.models.len());
        for m in &self.models {
            outs.push(m.step(&s, &a, Some(&mut self.rng))?);
        }
        let sv: Vec<Vec<f32>> = s.to_dtype(DType::F32)?.to_vec2()?;
        let av: Vec<Vec<f32>> = a.to_vec2()?;
        let nexts: Vec<Vec<Vec<f32>>> = outs
            .iter()
            .map(|(s2, _)| s2.to_vec2())
            .collect::<candle_core::Result<_>>()?;
        let rews: Vec<Vec<f32>> = outs
            .iter()
            .map(|(_, r)| r.flatten_all()?.to_vec1())
            .collect::<candle_core::Result<_>>()?;
        for i in 0..n {
            let k = pick[i];
            let f = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
            let next = f(&nexts[k][i]);
            if next.iter().all(|v| v.is_finite()) && rews[k][i].is_finite() {
                self.model_buffer
                    .push(&f(&sv[i]), &f(&av[i]), rews[k][i] as f64, &next, false);
                self.generated += 1;
            }
        }
        Ok(())
    }

    fn save(&self, w: &mut Writer) -> Result<()> {
        for (k, m) in self.models.iter().enumerate() {
            w.net(&format!("model{k}"), &m.net)?;
            w.optimizer(
                &format!("model{k}_optimizer"),
                m.opt.as_ref(),
                &m.net.params(),
            )?;
            w.value(&format!("model{k}_steps"), m.opt.state().step)?;
            if let Some(st) = &m.stats {
                let names = ["x_mean", "x_std", "y_mean", "y_std"];
                let t: Vec<(String, Tensor)> = names
                    .iter()
                    .zip(st)
                    .map(|(n, t)| (n.to_string(), t.clone()))
                    .collect();
                w.tensors(&format!("model{k}_stats"), &t)?;
            }
            w.value(&format!("model{k}_trained"), m.stats.is_some())?;
        }
        self.model_buffer.save(w, "model_buffer")?;
        w.rng("model_rng", &self.rng)?;
        w.value("model_nll", &self.last_nll)?;
        w.value("model_generated", self.generated)
    }

    fn load(&mut self, r: &Reader) -> Result<()> {
        for (k, m) in self.models.iter_mut().enumerate() {
            r.net(&format!("model{k}"), &m.net)?;
            let steps: u64 = r.value(&format!("model{k}_steps"))?;
            m.opt = r.optimizer(&format!("model{k}_optimizer"), &m.net.params(), steps)?;
            m.stats = if r.value::<bool>(&format!("model{k}_trained"))? {
                let t = r.tensors(&format!("model{k}_stats"))?;
                let get = |n: &str| {
                    t.get(n)
                        .cloned()
                        .ok_or_else(|| Error::file(r.dir(), format!("model{k}_stats has no `{n}`")))
                };
                Some([get("x_mean")?, get("x_std")?, get("y_mean")?, get("y_std")?])
            } else {
                None
            };
        }
        self.model_buffer.load(r, "model_buffer")?;
        self.rng = r.rng("model_rng")?;
        self.last_nll = r.value("model_nll")?;
        self.generated = r.value("model_generated")?;
        Ok(())
    }

    fn sample(
        &mut self,
        buffer: &ReplayBuffer,
        batch: usize,
        rng: &mut Rng,
    ) -> Result<Option<[Tensor; 5]>> {
        if self.model_buffer.is_empty() {
            return Ok(None);
        }
        let real = ((self.cfg.real_ratio * batch as f64).round() as usize).min(batch);
        let model = batch - real;
        if model == 0 {
            return Ok(None);
        }
        let m = self.model_buffer.sample(model, rng)?;
        if real == 0 {
            return Ok(Some(m));
        }
        let r = buffer.sample(real, rng)?;
        let cat = |i: usize| Tensor::cat(&[&r[i], &m[i]], 0);
        Ok(Some([cat(0)?, cat(1)?, cat(2)?, cat(3)?, cat(4)?]))
    }
}

/// The mean |T̂V(s) − TV(s)| over `states` (observations [K, obs]) with actions `actions` [K, act]: the one-step
/// Bellman backups r + γ·v(s′) under the true transitions (`true_next`, `true_reward`) and under the models'
/// mean predictions (averaged over the ensemble), `v` the value of the next state (the critic at the actor's
/// action).
pub fn bellman_gap(
    models: &[DynamicsModel],
    states: &Tensor,
    actions: &Tensor,
    true_next: &Tensor,
    true_reward: &Tensor,
    gamma: f64,
    v: &dyn Fn(&Tensor) -> Result<Tensor>,
) -> Result<f64> {
    let truth = true_reward.add(&(v(true_next)? * gamma)?)?;
    let mut model = truth.zeros_like()?;
    for m in models {
        let (s2, r) = m.step(states, actions, None)?;
        model = model.add(&r.add(&(v(&s2)? * gamma)?)?)?;
    }
    let model = (model / models.len() as f64)?;
    Ok(model.sub(&truth)?.abs()?.mean_all()?.to_scalar::<f32>()? as f64)
}
