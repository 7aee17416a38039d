//! f-DPO on a character language model (P37's language-model experiment at CPU size): the transformer of a
//! finished `optlab train --task charlm` run is the SFT model and the frozen reference; two completions are
//! sampled from it for each prompt (a snippet of its training text), labelled by a programmatic reward
//! ([`CharReward`]), and the policy is trained on the pairs with the f-DPO loss. [`LmDpo::evaluate`] samples
//! the policy on held-out prompts and reports the reward, the KL divergence to the reference
//! (E_π[log π(y) − log π_ref(y)], per sequence) and the diversity of the samples (per-token entropy, distinct
//! n-grams): the frontier along which the paper finds the divergences trade alignment for diversity.

use super::loss::DpoLoss;
use crate::data::{read_text, shakespeare, vocabulary, DataSpec};
use crate::nn::{Param, Sequential};
use crate::optim::{from_spec, Optimizer};
use crate::rng::{permutation, rng_for, Rng, Stream};
use crate::train::snapshot::{Reader, Writer};
use crate::train::{Task, TrainConfig};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, D};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// A character-level transformer with its vocabulary.
#[derive(Debug)]
pub struct CharModel {
    pub net: Sequential,
    pub vocab: Vec<char>,
    pub context: usize,
}

impl CharModel {
    /// The model of a finished `--task charlm` run directory, and the text it was trained on.
    pub fn from_run(dir: &Path) -> Result<(Self, String)> {
        let config = TrainConfig::from_toml_file(&dir.join("config.toml"))?;
        if config.task != Task::Charlm {
            return Err(Error::file(
                dir,
                "is not a language-model run: train the SFT model with `optlab train --task charlm`",
            ));
        }
        let DataSpec::Text { context, path, .. } = &config.data else {
            return Err(Error::file(dir, "the run's data is not a text"));
        };
        let text = match path {
            None => shakespeare()?,
            Some(p) => read_text(p)?,
        };
        let vocab = vocabulary(&text);
        let weights = dir.join("model.safetensors");
        if !weights.exists() {
            return Err(Error::file(
                &weights,
                "no trained model here: the run has not finished (resume it with `optlab train --resume`)",
            ));
        }
        let net = Sequential::new(
            &config.model,
            &[*context],
            vocab.len(),
            config.options.seed,
            config.options.dtype.dtype(),
        )?;
        net.load(&weights)?;
        Ok((
            CharModel {
                net,
                vocab,
                context: *context,
            },
            text,
        ))
    }

    /// Token ids of `s`, refusing characters outside the vocabulary.
    pub fn encode(&self, s: &str) -> Result<Vec<u32>> {
        s.chars()
            .map(|c| {
                self.vocab.binary_search(&c).map(|i| i as u32).map_err(|_| {
                    Error::invalid(format!("character {c:?} is not in the model's vocabulary"))
                })
            })
            .collect()
    }

    /// The text of token ids.
    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter().map(|&i| self.vocab[i as usize]).collect()
    }

    /// Sequences padded with the padding id V to the longest of them, as a `[B, T]` batch.
    fn batch(&self, seqs: &[Vec<u32>]) -> Result<Tensor> {
        let t = seqs.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let pad = self.vocab.len() as f32;
        let mut x = Vec::with_capacity(seqs.len() * t);
        for s in seqs {
            if s.len() > self.context {
                return Err(Error::Shape(format!(
                    "a sequence of {} tokens is longer than the context {}",
                    s.len(),
                    self.context
                )));
            }
            x.extend(s.iter().map(|&i| i as f32));
            x.extend(std::iter::repeat_n(pad, t - s.len()));
        }
        Ok(Tensor::from_vec(x, (seqs.len(), t), &Device::Cpu)?.to_dtype(self.net.dtype())?)
    }

    /// `len` tokens sampled after each prompt at temperature 1 (one forward pass of the batch per token).
    pub fn sample(&self, prompts: &[Vec<u32>], len: usize, rng: &mut Rng) -> Result<Vec<Vec<u32>>> {
        let mut seqs: Vec<Vec<u32>> = prompts.to_vec();
        let v = self.vocab.len();
        for _ in 0..len {
            let logits = self.net.forward(&self.batch(&seqs)?)?;
            let probs = candle_nn::ops::softmax_last_dim(&logits.to_dtype(DType::F64)?)?;
            for (b, s) in seqs.iter_mut().enumerate() {
                let p: Vec<f64> = probs.get(b)?.get(s.len() - 1)?.to_vec1()?;
                let mut u = rng.gen::<f64>();
                let mut pick = v - 1;
                for (i, pi) in p.iter().enumerate() {
                    if u < *pi {
                        pick = i;
                        break;
                    }
                    u -= pi;
                }
                s.push(pick as u32);
            }
        }
        Ok(seqs
            .into_iter()
            .zip(prompts)
            .map(|(s, p)| s[p.len()..].to_vec())
            .collect())
    }

    /// log π(completion | prompt) summed over the completion's tokens, one per pair (differentiable).
    pub fn logprobs(&self, prompts: &[Vec<u32>], completions: &[Vec<u32>]) -> Result<Tensor> {
        if prompts.len() != completions.len() || prompts.iter().any(|p| p.is_empty()) {
            return Err(Error::Shape(format!(
                "{} prompts (each non-empty) for {} completions",
                prompts.len(),
                completions.len()
            )));
        }
        let seqs: Vec<Vec<u32>> = prompts
            .iter()
            .zip(completions)
            .map(|(p, c)| [p.as_slice(), c.as_slice()].concat())
            .collect();
        let t = seqs.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let logp = candle_nn::ops::log_softmax(&self.net.forward(&self.batch(&seqs)?)?, D::Minus1)?;
        // Position i predicts token i + 1: the completion's tokens are predicted at |p| − 1 .. |p| + |c| − 2.
        let b = seqs.len();
        let (mut target, mut mask) = (vec![0u32; b * t], vec![0f32; b * t]);
        for (k, (p, c)) in prompts.iter().zip(completions).enumerate() {
            for (j, &tok) in c.iter().enumerate() {
                target[k * t + p.len() - 1 + j] = tok;
                mask[k * t + p.len() - 1 + j] = 1.0;
            }
        }
        let target = Tensor::from_vec(target, (b, t, 1), &Device::Cpu)?;
        let mask = Tensor::from_vec(mask, (b, t), &Device::Cpu)?.to_dtype(logp.dtype())?;
        Ok((logp.gather(&target, 2)?.squeeze(2)? * mask)?.sum(1)?)
    }

    /// log π of the chosen and of the rejected completions of a batch of pairs, in one forward pass of both (the
    /// official code's concatenated forward).
    pub fn pair_logprobs(
        &self,
        prompts: &[Vec<u32>],
        chosen: &[Vec<u32>],
        rejected: &[Vec<u32>],
    ) -> Result<(Tensor, Tensor)> {
        let n = prompts.len();
        let both = self.logprobs(&[prompts, prompts].concat(), &[chosen, rejected].concat())?;
        Ok((both.narrow(0, 0, n)?, both.narrow(0, n, n)?))
    }
}

/// A programmatic reward: the fraction of a completion's characters that belong to a class (`chars:aeiou`, the
/// default: vowels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharReward {
    pub chars: Vec<char>,
}

impl Default for CharReward {
    fn default() -> Self {
        CharReward {
            chars: "aeiou".chars().collect(),
        }
    }
}

impl CharReward {
    /// The reward of a completion's text.
    pub fn score(&self, text: &str) -> f64 {
        let n = text.chars().count();
        if n == 0 {
            return 0.0;
        }
        text.chars().filter(|c| self.chars.contains(c)).count() as f64 / n as f64
    }
}

impl fmt::Display for CharReward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "chars:{}", self.chars.iter().collect::<String>())
    }
}

impl FromStr for CharReward {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().split_once(':') {
            Some(("chars", set)) if !set.is_empty() => Ok(CharReward {
                chars: set.chars().collect(),
            }),
            _ => Err(Error::invalid(format!(
                "reward '{s}': expected chars:SET, the fraction of completion characters in SET (e.g. chars:aeiou)"
            ))),
        }
    }
}

/// Preference pairs: for each prompt a chosen and a rejected completion (rewards differ).
#[derive(Debug, Clone, PartialEq)]
pub struct PreferenceSet {
    pub prompts: Vec<Vec<u32>>,
    pub chosen: Vec<Vec<u32>>,
    pub rejected: Vec<Vec<u32>>,
}

/// How [`LmDpo`] trains and evaluates.
#[derive(Debug, Clone, PartialEq)]
pub struct LmDpoConfig {
    pub loss: DpoLoss,
    pub reward: CharReward,
    /// Preference pairs to train on.
    pub pairs: usize,
    /// Characters of each prompt and of each completion.
    pub prompt_len: usize,
    pub completion_len: usize,
    /// Held-out prompts the evaluation samples from.
    pub eval_prompts: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: String,
    pub seed: u64,
}

impl Default for LmDpoConfig {
    fn default() -> Self {
        LmDpoConfig {
            loss: DpoLoss::default(),
            reward: CharReward::default(),
            pairs: 512,
            prompt_len: 16,
            completion_len: 24,
            eval_prompts: 128,
            epochs: 4,
            batch_size: 32,
            optimizer: "adam:lr=1e-3".into(),
            seed: 0,
        }
    }
}

impl LmDpoConfig {
    fn validate(&self, context: usize) -> Result<()> {
        self.loss.validate()?;
        if self.prompt_len == 0
            || self.completion_len == 0
            || self.prompt_len + self.completion_len > context
        {
            return Err(Error::invalid(format!(
                "dpo: prompt ({}) and completion ({}) need at least one character each and together at most the model's context of {context}",
                self.prompt_len, self.completion_len
            )));
        }
        for (name, v) in [
            ("pairs", self.pairs),
            ("eval_prompts", self.eval_prompts),
            ("epochs", self.epochs),
            ("batch_size", self.batch_size),
        ] {
            if v == 0 {
                return Err(Error::invalid(format!("dpo: {name} must be at least 1")));
            }
        }
        // The preference set and one batch of logits (chosen and rejected, f64 sampling copies).
        crate::memory::check(
            "the preference pairs",
            self.pairs as f64 * context as f64 * 3.0 * 4.0,
            "use fewer --pairs",
        )?;
        Ok(())
    }
}

/// One optimizer step's numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DpoStep {
    pub step: u64,
    pub epoch: usize,
    pub loss: f64,
    /// Fraction of pairs whose chosen reward β f′(u_w) exceeds the rejected one.
    pub accuracy: f64,
    pub chosen_reward: f64,
    pub rejected_reward: f64,
}

/// Samples of a policy on the held-out prompts, measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LmEvaluation {
    pub epoch: usize,
    /// Mean programmatic reward of the samples.
    pub reward: f64,
    /// Mean of log π(y) − log π_ref(y) over the samples (an estimate of KL(π ‖ π_ref) per sequence).
    pub kl: f64,
    /// Mean −log π(y) per token (an estimate of the per-token entropy).
    pub entropy: f64,
    /// Distinct n-grams over all n-grams of the samples, n = 1, 2, 3.
    pub distinct: [f64; 3],
    /// The first few samples, prompt | completion.
    pub examples: Vec<String>,
}

/// An f-DPO run on a character language model.
pub struct LmDpo {
    pub cfg: LmDpoConfig,
    pub policy: CharModel,
    pub reference: CharModel,
    opt: Box<dyn Optimizer>,
    pub data: PreferenceSet,
    ref_chosen: Tensor,
    ref_rejected: Tensor,
    eval_prompts: Vec<Vec<u32>>,
    /// Epochs done and optimizer steps taken.
    pub epoch: usize,
    pub step: u64,
}

/// `n` prompts of `len` characters from `text`, each starting after a space, none containing a newline.
fn prompts_from(
    model: &CharModel,
    text: &[char],
    n: usize,
    len: usize,
    rng: &mut Rng,
) -> Result<Vec<Vec<u32>>> {
    let mut out = Vec::with_capacity(n);
    let mut tries = 0usize;
    while out.len() < n {
        tries += 1;
        if tries > 1000 * n + 1000 || text.len() <= len + 1 {
            return Err(Error::invalid(format!(
                "dpo: the text has too few {len}-character snippets without a newline for {n} prompts"
            )));
        }
        let start = rng.gen_range(1..text.len() - len);
        let snippet = &text[start..start + len];
        if text[start - 1] == ' ' && !snippet.contains(&'\n') {
            out.push(model.encode(&snippet.iter().collect::<String>())?);
        }
    }
    Ok(out)
}

impl LmDpo {
    /// Loads the SFT run twice (policy and frozen reference), draws the prompts, samples and labels the pairs and
    /// computes the reference's log-probabilities once.
    pub fn new(sft_run: &Path, cfg: LmDpoConfig) -> Result<Self> {
        let (policy, text) = CharModel::from_run(sft_run)?;
        let (reference, _) = CharModel::from_run(sft_run)?;
        cfg.validate(policy.context)?;
        let chars: Vec<char> = text.chars().collect();
        let mut rng = rng_for(cfg.seed, Stream::Data, 0);
        let eval_prompts =
            prompts_from(&policy, &chars, cfg.eval_prompts, cfg.prompt_len, &mut rng)?;
        let mut data = PreferenceSet {
            prompts: Vec::new(),
            chosen: Vec::new(),
            rejected: Vec::new(),
        };
        let chunk = cfg.batch_size.max(32);
        let mut rounds = 0;
        while data.prompts.len() < cfg.pairs {
            rounds += 1;
            if rounds > 50 + 4 * cfg.pairs / chunk {
                return Err(Error::invalid(format!(
                    "dpo: the SFT model's completions tie on the reward {} too often to make {} pairs",
                    cfg.reward, cfg.pairs
                )));
            }
            let prompts = prompts_from(&policy, &chars, chunk, cfg.prompt_len, &mut rng)?;
            let a = reference.sample(&prompts, cfg.completion_len, &mut rng)?;
            let b = reference.sample(&prompts, cfg.completion_len, &mut rng)?;
            for ((p, a), b) in prompts.into_iter().zip(a).zip(b) {
                let (ra, rb) = (
                    cfg.reward.score(&reference.decode(&a)),
                    cfg.reward.score(&reference.decode(&b)),
                );
                if ra == rb || data.prompts.len() == cfg.pairs {
                    continue;
                }
                let (w, l) = if ra > rb { (a, b) } else { (b, a) };
                data.prompts.push(p);
                data.chosen.push(w);
                data.rejected.push(l);
            }
        }
        let (mut rc, mut rr) = (Vec::new(), Vec::new());
        for idx in (0..cfg.pairs).collect::<Vec<_>>().chunks(cfg.batch_size) {
            let pick = |v: &[Vec<u32>]| idx.iter().map(|&i| v[i].clone()).collect::<Vec<_>>();
            let (c, r) = reference.pair_logprobs(
                &pick(&data.prompts),
                &pick(&data.chosen),
                &pick(&data.rejected),
            )?;
            rc.push(c.detach());
            rr.push(r.detach());
        }
        let opt = from_spec(&cfg.optimizer)?;
        Ok(LmDpo {
            ref_chosen: Tensor::cat(&rc, 0)?,
            ref_rejected: Tensor::cat(&rr, 0)?,
            cfg,
            policy,
            reference,
            opt,
            data,
            eval_prompts,
            epoch: 0,
            step: 0,
        })
    }

    /// The policy's parameters.
    pub fn params(&self) -> Vec<Param> {
        self.policy.net.params()
    }

    /// One pass over the pairs in a shuffled order, one optimizer step per batch.
    pub fn run_epoch(&mut self, on_step: &mut dyn FnMut(&DpoStep)) -> Result<()> {
        let order = permutation(
            self.cfg.pairs,
            &mut rng_for(self.cfg.seed, Stream::Shuffle, self.epoch as u64),
        );
        let params = self.params();
        for idx in order.chunks(self.cfg.batch_size) {
            let pick = |v: &[Vec<u32>]| idx.iter().map(|&i| v[i].clone()).collect::<Vec<_>>();
            let sel = Tensor::new(
                idx.iter().map(|&i| i as u32).collect::<Vec<_>>().as_slice(),
                &Device::Cpu,
            )?;
            let (pc, pr) = self.policy.pair_logprobs(
                &pick(&self.data.prompts),
                &pick(&self.data.chosen),
                &pick(&self.data.rejected),
            )?;
            let out = self.cfg.loss.forward(
                &pc,
                &pr,
                &self.ref_chosen.index_select(&sel, 0)?,
                &self.ref_rejected.index_select(&sel, 0)?,
            )?;
            let loss = out.losses.mean_all()?;
            let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            if !value.is_finite() {
                return Err(Error::NonFinite(format!(
                    "dpo: the loss became {value} at step {}; lower the learning rate or raise beta",
                    self.step
                )));
            }
            self.opt.backward_step(&params, &loss)?;
            self.step += 1;
            let mean = |t: &Tensor| -> Result<f64> {
                Ok(t.to_dtype(DType::F64)?.mean_all()?.to_scalar::<f64>()?)
            };
            let margin = (&out.chosen_rewards - &out.rejected_rewards)?;
            on_step(&DpoStep {
                step: self.step,
                epoch: self.epoch + 1,
                loss: value,
                accuracy: mean(&margin.gt(0.0)?.to_dtype(DType::F64)?)?,
                chosen_reward: mean(&out.chosen_rewards)?,
                rejected_reward: mean(&out.rejected_rewards)?,
            });
        }
        self.epoch += 1;
        Ok(())
    }

    /// Samples the policy (or, with `reference`, the SFT model) on the held-out prompts with the same generator
    /// at every evaluation, and measures reward, KL to the reference and diversity.
    pub fn evaluate(&self, reference: bool) -> Result<LmEvaluation> {
        let model = if reference {
            &self.reference
        } else {
            &self.policy
        };
        let mut rng = rng_for(self.cfg.seed, Stream::Probe, 0);
        let (mut reward, mut kl, mut nll) = (0.0, 0.0, 0.0);
        let mut texts = Vec::new();
        let mut examples = Vec::new();
        for prompts in self.eval_prompts.chunks(self.cfg.batch_size.max(32)) {
            let ys = model.sample(prompts, self.cfg.completion_len, &mut rng)?;
            let lp: Vec<f64> = model
                .logprobs(prompts, &ys)?
                .to_dtype(DType::F64)?
                .to_vec1()?;
            let lr: Vec<f64> = self
                .reference
                .logprobs(prompts, &ys)?
                .to_dtype(DType::F64)?
                .to_vec1()?;
            for (((p, y), a), b) in prompts.iter().zip(&ys).zip(&lp).zip(&lr) {
                let text = model.decode(y);
                reward += self.cfg.reward.score(&text);
                kl += a - b;
                nll -= a;
                if examples.len() < 4 {
                    examples.push(format!("{}|{}", model.decode(p), text));
                }
                texts.push(text);
            }
        }
        let n = texts.len() as f64;
        Ok(LmEvaluation {
            epoch: self.epoch,
            reward: reward / n,
            kl: kl / n,
            entropy: nll / (n * self.cfg.completion_len as f64),
            distinct: [1, 2, 3].map(|k| distinct_ngrams(&texts, k)),
            examples,
        })
    }
}

/// Distinct n-grams over all n-grams of the texts (each text's n-grams taken within it).
pub fn distinct_ngrams(texts: &[String], n: usize) -> f64 {
    let mut seen = HashSet::new();
    let mut total = 0usize;
    for t in texts {
        let c: Vec<char> = t.chars().collect();
        for w in c.windows(n) {
            seen.insert(w.to_vec());
            total += 1;
        }
    }
    if total == 0 {
        0.0
    } else {
        seen.len() as f64 / total as f64
    }
}

impl LmDpo {
    /// Writes the policy, the optimizer state and the counters into a checkpoint.
    pub fn save(&self, w: &mut Writer) -> Result<()> {
        w.net("policy", &self.policy.net)?;
        w.optimizer("optimizer", self.opt.as_ref(), &self.params())?;
        w.value("epochs_done", self.epoch)?;
        w.value("optimizer_steps", self.step)
    }

    /// Restores what [`LmDpo::save`] wrote (the pairs and the reference are rebuilt from the seed by
    /// [`LmDpo::new`], bit for bit).
    pub fn load(&mut self, r: &Reader) -> Result<()> {
        let epoch: usize = r.value("epochs_done")?;
        let step: u64 = r.value("optimizer_steps")?;
        let per_epoch = self.cfg.pairs.div_ceil(self.cfg.batch_size) as u64;
        if epoch > self.cfg.epochs || step != epoch as u64 * per_epoch {
            return Err(Error::file(
                r.dir(),
                format!("checkpoint at epoch {epoch}, step {step} does not fit a run of {} epochs of {per_epoch} steps", self.cfg.epochs),
            ));
        }
        r.net("policy", &self.policy.net)?;
        self.opt = r.optimizer("optimizer", &self.params(), step)?;
        self.epoch = epoch;
        self.step = step;
        Ok(())
    }
}
