//! The training loop.

use super::batch_size::{linear_grad_stats, BatchSchedule, GradStats};
use super::checkpoint::{self, LoopState};
use super::config::{HyperSchedule, LossChoice, Task, TrainOptions};
use super::metrics::PrivacySummary;
use super::run_dir::RunDirLock;
use super::sso::{self, SsoSpec};
use super::{EvalMetrics, MetricsLog, Observer, RunInfo, StepMetrics, Summary, TrainConfig};
use crate::data::{DataSpec, Dataset, Target};
use crate::distributed::Communicator;
use crate::error::PathContext;
use crate::nn::loss::{correct, cross_entropy, mse};
use crate::nn::{ModelSpec, Param, Parametrization, Sequential};
use crate::optim::clip::{adaptive_clip, clip_grad_norm, clip_grad_value, global_grad_norm};
use crate::optim::{save_state_file, Optimizer, OptimizerSpec, Range};
use crate::privacy::dp_sgd::{private_gradient, ExampleLoss, PrivateTraining, Sampling};
use crate::rng::{permutation, rng_for, Stream};
use crate::schedule::{Schedule, ScheduleSpec};
use crate::tensor_io::write_atomic;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Examples per forward pass during evaluation.
const EVAL_BATCH: usize = 1024;

/// Refuses a task that does not fit its model and data: a transformer language model needs a text, and a text
/// needs the `charlm` task.
fn check_task(task: Task, model: &ModelSpec, data: &DataSpec) -> Result<()> {
    let lm = matches!(model, ModelSpec::Transformer(_));
    match task {
        Task::Charlm if !(lm && data.is_text()) => Err(Error::invalid(
            "task=charlm trains a transformer (--model transformer:...) on a text (--data text[:context=64,path=FILE])",
        )),
        Task::Supervised if lm || data.is_text() => Err(Error::invalid(
            "a transformer on a text is the language-model task: add --task charlm (task = \"charlm\")",
        )),
        _ => Ok(()),
    }
}

/// Refuses a run whose model, gradients, optimizer state and activations would not fit in memory, before any of
/// them is allocated.
fn check_memory(
    spec: &ModelSpec,
    data: &Dataset,
    opt: &OptimizerSpec,
    o: &TrainOptions,
    dtype: DType,
) -> Result<()> {
    let size = spec.size(&data.feature_shape, data.output_dim());
    let bytes = dtype.size_in_bytes() as f64;
    let opt = opt.build();
    let buffers = opt.buffer_count() as f64;
    // The largest batch: the batch test's cap, or the whole data when a schedule grows the batch.
    let grows = o.hyper_schedules.iter().any(|h| h.name == "batch_size");
    let batch = o
        .batch_test
        .map_or(o.batch_size, |b| b.max_batch.max(o.batch_size))
        .max(if grows { data.len() } else { 0 }) as f64;
    // Parameters, gradients and a temporary per parameter, the optimizer's buffers and other state; activations
    // of a training batch (forward, backward and the graph) or of an evaluation batch, whichever is larger.
    let need = size.params * bytes * (3.0 + buffers)
        + opt.extra_state_bytes(size.params)
        + size.activations * bytes * (3.0 * batch).max(EVAL_BATCH as f64);
    crate::memory::check(
        &format!(
            "training this model ({:.3e} parameters, {} optimizer buffers each, batches of {batch})",
            size.params, buffers
        ),
        need,
        "use smaller widths, a shorter context or a smaller batch",
    )
}

/// Where and how far to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The run directory; without one nothing is written.
    pub run_dir: Option<PathBuf>,
    /// Stop (as if killed) once this many steps are done, after checkpointing. For tests and time-boxed jobs.
    pub stop_at: Option<u64>,
}

/// A configured run: data, model, optimizer and schedule, ready to train.
pub struct Trainer {
    config: TrainConfig,
    train: Dataset,
    val: Option<Dataset>,
    model: Sequential,
    opt: Box<dyn Optimizer>,
    schedule: Box<dyn Schedule>,
    /// Schedules of other optimizer hyperparameters, by name.
    hyper_schedules: Vec<(String, Box<dyn Schedule>)>,
    /// The batch size's schedule, if any.
    batch_size_schedule: Option<Box<dyn Schedule>>,
    total_steps: u64,
    steps_per_epoch: u64,
    dtype: DType,
    batch_schedule: Option<BatchSchedule>,
    /// The shuffled order of the current epoch (epoch, order).
    perm: Option<(u64, Vec<usize>)>,
    classification: bool,
    loop_state: LoopState,
    /// The run directory this trainer writes, locked for as long as the trainer lives.
    lock: Option<RunDirLock>,
    /// DP-SGD's settings, when the run is private.
    privacy: Option<PrivateTraining>,
    /// The other workers of a data-parallel run ([`Trainer::distribute`]).
    comm: Option<Box<dyn Communicator>>,
    /// SSO's settings (P34), when each step minimizes a surrogate.
    sso: Option<SsoSpec>,
}

impl Trainer {
    /// Builds everything the config names; any invalid part is a clear error. A thin wrapper of
    /// [`Trainer::from_parts`] that first checks the config's task against its model and data.
    pub fn new(config: TrainConfig) -> Result<Self> {
        check_task(config.task, &config.model, &config.data)?;
        Self::from_parts(
            config.data,
            config.model,
            config.optimizer,
            config.schedule,
            config.options,
        )
    }

    /// A trainer from typed parts: the data, the model architecture, the optimizer (a built one converts with
    /// `.into()`), the learning-rate schedule, and everything else.
    ///
    /// ```
    /// use optlab::data::DataSpec;
    /// use optlab::nn::{Activation, ModelSpec, Parametrization};
    /// use optlab::optim::lion::{Lion, LionConfig};
    /// use optlab::schedule::ScheduleSpec;
    /// use optlab::train::{TrainOptions, Trainer};
    ///
    /// let model = ModelSpec::Mlp {
    ///     hidden: vec![32],
    ///     acts: vec![Activation::Relu],
    ///     param: Parametrization::Standard,
    ///     spectral: Default::default(),
    /// };
    /// let lion = Lion::new(LionConfig { lr: 3e-4, weight_decay: 0.1, ..Default::default() })?;
    /// let options = TrainOptions { epochs: None, steps: Some(30), batch_size: 32, ..Default::default() };
    /// let mut trainer = Trainer::from_parts(
    ///     DataSpec::Moons { n: 200, noise: 0.1 },
    ///     model,
    ///     lion.into(),
    ///     ScheduleSpec::cosine(5),
    ///     options,
    /// )?;
    /// let summary = trainer.run(None, &mut [])?;
    /// assert_eq!(summary.steps, 30);
    /// assert!(summary.final_train_loss.is_finite());
    /// # Ok::<(), optlab::Error>(())
    /// ```
    pub fn from_parts(
        data: DataSpec,
        model: ModelSpec,
        optimizer: OptimizerSpec,
        schedule: ScheduleSpec,
        options: TrainOptions,
    ) -> Result<Self> {
        let task = if matches!(model, ModelSpec::Transformer(_)) {
            Task::Charlm
        } else {
            Task::Supervised
        };
        let config = TrainConfig {
            task,
            data,
            model,
            optimizer,
            schedule,
            options,
        };
        config.validate()?;
        let o = &config.options;
        let spec = &config.model;
        let data = config.data.load(o.seed)?;
        let dtype = o.dtype.dtype();
        let shape = spec.input_shape(&data.feature_shape)?;
        let data = data.reshaped(shape)?;
        check_memory(spec, &data, &config.optimizer, o, dtype)?;
        let (train, val) = if o.val_frac > 0.0 {
            let (t, v) = data.split(o.val_frac, o.seed)?;
            (t, (!v.is_empty()).then_some(v))
        } else {
            (data, None)
        };
        if o.val_frac > 0.0 && val.is_none() {
            return Err(Error::invalid(format!(
                "val_frac={} of {} examples leaves no validation example; raise val_frac, or set it to 0 for no validation",
                o.val_frac,
                train.len()
            )));
        }
        if let Target::Classes { labels, .. } = &train.target {
            if labels.iter().all(|&l| l == labels[0]) {
                return Err(Error::invalid(format!(
                    "every training example has class {}: a classifier needs at least two classes",
                    labels.first().copied().unwrap_or(0)
                )));
            }
        }
        if matches!(train.target, Target::Tokens { .. }) != (task == Task::Charlm) {
            return Err(Error::invalid(
                "a text's token sequences train a transformer (--task charlm --model transformer:...)",
            ));
        }
        let classification = match (&train.target, o.loss) {
            (
                Target::Classes { .. } | Target::Tokens { .. },
                LossChoice::Auto | LossChoice::CrossEntropy,
            ) => true,
            (Target::Values { .. }, LossChoice::Auto | LossChoice::Mse) => false,
            (Target::Classes { .. } | Target::Tokens { .. }, LossChoice::Mse) => {
                return Err(Error::invalid(
                    "loss=mse needs real-valued targets; this data set has class labels",
                ))
            }
            _ => {
                return Err(Error::invalid(
                    "loss=cross_entropy needs class labels; this data set has real targets",
                ))
            }
        };
        let mut opt = config.optimizer.build();
        let model = Sequential::new(
            spec,
            &train.feature_shape,
            train.output_dim(),
            o.seed,
            dtype,
        )?;
        for g in &o.groups {
            opt.add_group(g.clone())?;
        }
        if let Parametrization::Mup { .. } = spec.parametrization() {
            let rule = o.mup_rule.resolve(opt.as_ref())?;
            crate::mup::apply_groups(opt.as_mut(), &model, rule)?;
        }
        opt.hypers().check_selects(&model.params())?;
        let steps_per_epoch = train.len().div_ceil(o.batch_size) as u64;
        let total_steps = match o.steps {
            Some(s) => s,
            None => o
                .epochs
                .unwrap_or(1)
                .checked_mul(steps_per_epoch)
                .ok_or_else(|| {
                    Error::invalid("epochs x steps per epoch overflows the step counter")
                })?,
        };
        let batch_schedule = o.batch_test;
        if batch_schedule.is_some()
            && model
                .forward_traced(&Tensor::zeros(
                    [&[1usize][..], &train.feature_shape].concat(),
                    dtype,
                    &Device::Cpu,
                )?)?
                .is_none()
        {
            return Err(Error::invalid(
                "batch_test needs an MLP (per-sample statistics use Linear layers)",
            ));
        }
        let schedule = config.schedule.build(total_steps)?;
        let mut hyper_schedules = Vec::new();
        let mut batch_size_schedule = None;
        let mut resolved_hypers = Vec::new();
        for h in &o.hyper_schedules {
            let s = h.schedule.build(total_steps)?;
            resolved_hypers.push(HyperSchedule {
                name: h.name.clone(),
                schedule: s.spec().parse()?,
            });
            if h.name == "batch_size" {
                batch_size_schedule = Some(s);
            } else {
                // Fails now, with the optimizer's valid names, if it has no such hyperparameter; a whole number or
                // a switch cannot follow a factor.
                let range = opt.hypers().range(&h.name)?;
                if matches!(range, Range::Bool | Range::Count | Range::PositiveCount) {
                    return Err(Error::invalid(format!(
                        "{}: {} is {} and cannot be scheduled (a schedule multiplies it by a factor)",
                        opt.name(),
                        h.name,
                        range.describe()
                    )));
                }
                opt.apply_schedule(&h.name, s.factor(0))?;
                hyper_schedules.push((h.name.clone(), s));
            }
        }
        let privacy = match o.privacy {
            None => None,
            Some(p) => {
                if task == Task::Charlm {
                    return Err(Error::invalid(
                        "privacy: DP-SGD trains supervised models here (per-window language-model losses are not wired up)",
                    ));
                }
                if batch_schedule.is_some() || batch_size_schedule.is_some() || o.accumulate > 1 {
                    return Err(Error::invalid(
                        "privacy: the accountant assumes a fixed sampling rate; drop batch_test, batch-size schedules and accumulate",
                    ));
                }
                crate::privacy::per_sample::check_model(&model)?;
                Some(PrivateTraining::new(
                    p,
                    train.len(),
                    o.batch_size,
                    total_steps,
                )?)
            }
        };
        if o.sso.is_some() {
            let combined = [
                (o.privacy.is_some(), "privacy"),
                (
                    batch_schedule.is_some() || batch_size_schedule.is_some(),
                    "batch-size tests and schedules",
                ),
                (o.accumulate > 1, "accumulate"),
                (
                    o.clip_grad_norm.is_some() || o.clip_grad_value.is_some() || o.agc.is_some(),
                    "gradient clipping",
                ),
            ];
            if let Some((_, what)) = combined.iter().find(|(on, _)| *on) {
                return Err(Error::invalid(format!(
                    "sso: its inner steps work on one whole batch's surrogate; drop {what}"
                )));
            }
        }
        let batch_size = o.batch_size;
        let mut resolved = config.clone();
        resolved.options.hyper_schedules = resolved_hypers;
        resolved.schedule = schedule.spec().parse()?;
        resolved.options.steps = Some(total_steps);
        Ok(Trainer {
            config: resolved,
            train,
            val,
            model,
            opt,
            schedule,
            hyper_schedules,
            batch_size_schedule,
            total_steps,
            steps_per_epoch,
            dtype,
            classification,
            batch_schedule,
            perm: None,
            loop_state: LoopState {
                step: 0,
                epoch: 0,
                cursor: 0,
                batch_size,
                loss_sum: 0.0,
                loss_count: 0,
                best_val_accuracy: None,
                time_s: 0.0,
                dir: String::new(),
                accountant: privacy
                    .as_ref()
                    .map(|_| crate::privacy::rdp::RdpAccountant::new()),
            },
            lock: None,
            privacy,
            comm: None,
            sso: o.sso,
        })
    }

    /// Rebuilds the trainer of an interrupted run from its `config.toml` and last checkpoint, holding the run
    /// directory's lock from then on. The configuration the run recorded is authoritative: a `config.toml` that
    /// differs from it is refused with the differing keys named, and a checkpoint index that does not fit the run
    /// (its step, data position, batch size or paths) is refused.
    pub fn resume(run_dir: &Path) -> Result<Self> {
        let lock = RunDirLock::acquire_existing(run_dir)?;
        let mut t = Self::resume_shared(run_dir)?;
        t.lock = Some(lock);
        Ok(t)
    }

    /// [`Trainer::resume`] without taking the directory's lock: for the ranks of a data-parallel run other than
    /// rank 0, which holds the lock and alone writes the directory (they only read it, before their first step).
    pub fn resume_shared(run_dir: &Path) -> Result<Self> {
        let cfg_path = run_dir.join("config.toml");
        let text = std::fs::read_to_string(&cfg_path).at_path(&cfg_path)?;
        let (st, recorded) = checkpoint::latest(run_dir)?;
        if let Some(recorded) = recorded {
            let changed = changed_keys(&recorded, &text)
                .map_err(|e| Error::file(&cfg_path, e.to_string()))?;
            if !changed.is_empty() {
                return Err(Error::file(
                    &cfg_path,
                    format!(
                        "differs from the configuration the run recorded in {} ({}); a resumed run continues exactly what was recorded: restore the file, or start a new run",
                        checkpoint::recorded_config(run_dir, &st).display(),
                        changed.join(", ")
                    ),
                ));
            }
        }
        let config =
            TrainConfig::from_toml(&text).map_err(|e| Error::file(&cfg_path, e.to_string()))?;
        let mut t = Trainer::new(config)?;
        // The largest batch the run can use: its configured size, the batch test's cap, or the data.
        let max_batch = t
            .batch_schedule
            .map_or(0, |b| b.max_batch)
            .max(t.config.options.batch_size);
        st.validate(t.train.len(), t.total_steps, max_batch)
            .map_err(|e| Error::file(run_dir.join("checkpoints/latest.json"), e.to_string()))?;
        if let Some(p) = &t.privacy {
            let mut want = crate::privacy::rdp::RdpAccountant::new();
            want.compose(p.noise_multiplier, p.sample_rate, st.step)?;
            if st.accountant.as_ref() != Some(&want) {
                return Err(Error::file(
                    run_dir.join("checkpoints/latest.json"),
                    format!(
                        "the privacy accountant in the checkpoint ({:?}) is not the run's {} steps at noise {} and rate {}",
                        st.accountant.as_ref().map(|a| &a.history),
                        st.step,
                        p.noise_multiplier,
                        p.sample_rate
                    ),
                ));
            }
        }
        // Optimizer steps per training step: one, or SSO's inner steps when its optimizer takes them (none with
        // the line search).
        let per_step = match &t.sso {
            None => 1,
            Some(s) if s.solver == sso::InnerSolver::Optimizer => s.inner as u64,
            Some(_) => 0,
        };
        t.opt = checkpoint::load(run_dir, &st, &t.model, st.step * per_step)?;
        t.loop_state = st;
        Ok(t)
    }

    /// Makes this trainer one worker of a data-parallel run over `comm`: every worker draws the same global
    /// batch, computes the gradient of its contiguous part (part r of the batch cut in `size` parts of
    /// ⌈B/size⌉ examples), and the parts' gradients, each weighted by its share of the batch, are summed over
    /// the workers in rank order; every worker then takes the same optimizer step. The result equals the
    /// one-process run with `accumulate = size` (the same micro-batches, added in the same order) bit for bit.
    /// Under DP-SGD each worker clips its own examples and worker 0 alone adds the noise. Only the worker that
    /// was given a run directory should write one (rank 0); BatchNorm statistics are per part, as with
    /// accumulation. Checks that the workers agree on the step and the parameters.
    pub fn distribute(&mut self, comm: Box<dyn Communicator>) -> Result<()> {
        let o = &self.config.options;
        if self.batch_schedule.is_some() || o.accumulate > 1 {
            return Err(Error::invalid(
                "distributed: drop batch_test and accumulate (the ranks already split each batch)",
            ));
        }
        if self.sso.is_some() {
            return Err(Error::invalid(
                "distributed: SSO's inner steps run on one process; drop --sso or --distributed",
            ));
        }
        let size = comm.size();
        if o.batch_size < size {
            return Err(Error::invalid(format!(
                "distributed: a batch of {} examples cannot feed {size} ranks; use a batch size of at least {size} or fewer ranks",
                o.batch_size
            )));
        }
        // Rank 0's step, parameter count and parameter sum, against every rank's.
        let mut mine = vec![
            self.loop_state.step as f64,
            self.model.num_params() as f64,
            0.0,
        ];
        for p in self.model.params() {
            mine[2] += p
                .tensor()
                .to_dtype(DType::F64)?
                .sum_all()?
                .to_scalar::<f64>()?;
        }
        let mut root = mine.clone();
        comm.broadcast(&mut root, 0)?;
        if root != mine {
            return Err(Error::Distributed(format!(
                "rank {} disagrees with rank 0 (step, parameters, parameter sum): {mine:?} against {root:?}; give every rank the same configuration and run directory",
                comm.rank()
            )));
        }
        self.comm = Some(comm);
        Ok(())
    }

    /// The data-parallel run's communicator, if any.
    pub fn communicator(&self) -> Option<&dyn Communicator> {
        self.comm.as_deref()
    }

    /// Whether the run is done: every step taken.
    pub fn is_complete(&self) -> bool {
        self.loop_state.step >= self.total_steps
    }

    /// The resolved configuration (canonical specs, total steps).
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The training split (after the validation split was taken out).
    pub fn train_data(&self) -> &Dataset {
        &self.train
    }

    /// The validation split, if any.
    pub fn val_data(&self) -> Option<&Dataset> {
        self.val.as_ref()
    }

    /// Whether the loss is cross-entropy on class labels (else MSE).
    pub fn is_classification(&self) -> bool {
        self.classification
    }

    /// The parameter dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The model.
    pub fn model(&self) -> &Sequential {
        &self.model
    }

    /// The optimizer.
    pub fn optimizer(&self) -> &dyn Optimizer {
        self.opt.as_ref()
    }

    /// One optimizer update of the model's parameters from `grads` (outside the training loop: schedules,
    /// clipping and checkpoints are the loop's).
    pub fn apply_gradients(&mut self, grads: &candle_core::backprop::GradStore) -> Result<()> {
        self.opt.step(&self.model.params(), grads)
    }

    /// Steps done so far.
    pub fn step(&self) -> u64 {
        self.loop_state.step
    }

    /// Total steps of the run.
    pub fn total_steps(&self) -> u64 {
        self.total_steps
    }

    /// DP-SGD's settings (noise multiplier, sampling rate, ε so far), when the run is private.
    pub fn privacy(&self) -> Option<&PrivateTraining> {
        self.privacy.as_ref()
    }

    /// The next batch: the following `batch_size` examples of the epoch's shuffled order (fewer at the end of
    /// an epoch), or under DP-SGD's Poisson sampling each example with probability q (an "epoch" is then
    /// N/batch_size steps). Returns the indices, the epoch they belong to, and whether they finish it.
    fn next_batch(&mut self) -> (Vec<usize>, u64, bool) {
        if let Some(p) = self
            .privacy
            .as_ref()
            .filter(|p| p.spec.sampling == Sampling::Poisson)
        {
            let step = self.loop_state.step;
            let idx = p.poisson_batch(self.config.options.seed, step);
            let epoch = self.loop_state.epoch;
            let finished = (step + 1).is_multiple_of(self.steps_per_epoch);
            if finished {
                self.loop_state.epoch += 1;
            }
            return (idx, epoch, finished);
        }
        let n = self.train.len();
        let epoch = self.loop_state.epoch;
        if self.perm.as_ref().map(|(e, _)| *e) != Some(epoch) {
            let order = permutation(
                n,
                &mut rng_for(self.config.options.seed, Stream::Shuffle, epoch),
            );
            self.perm = Some((epoch, order));
        }
        let order = &self.perm.as_ref().expect("set above").1;
        let start = self.loop_state.cursor.min(n);
        let end = start.saturating_add(self.loop_state.batch_size).min(n);
        let idx = order[start..end].to_vec();
        let finished = end == n;
        if finished {
            self.loop_state.epoch += 1;
            self.loop_state.cursor = 0;
        } else {
            self.loop_state.cursor = end;
        }
        (idx, epoch, finished)
    }

    fn loss(&self, out: &Tensor, y: &Tensor) -> Result<Tensor> {
        if self.classification {
            cross_entropy(out, y)
        } else {
            if out.dims() != y.dims() {
                return Err(Error::Shape(format!(
                    "model output {:?} vs targets {:?}",
                    out.dims(),
                    y.dims()
                )));
            }
            mse(out, y)
        }
    }

    /// The mean loss over the examples `idx` and its gradients, accumulated over `accumulate` micro-batches
    /// (each micro-batch's mean loss weighted by its share of the examples).
    fn loss_and_grads(
        &self,
        idx: &[usize],
        params: &[Param],
        trace: bool,
    ) -> Result<(f64, candle_core::backprop::GradStore, Option<GradStats>)> {
        if let Some(comm) = &self.comm {
            let (loss, grads) = self.shared_loss_and_grads(comm.as_ref(), idx, params)?;
            return Ok((loss, grads, None));
        }
        if let Some(p) = &self.privacy {
            let g = self.private_part(idx, &p.step(idx.len()))?;
            return Ok((g.loss, g.grads, None));
        }
        if trace {
            // One batch, traced: the per-sample statistics come from the same backward pass.
            let (x, y) = self.train.batch(idx, self.dtype, &Device::Cpu)?;
            let (out, traces) = self.model.forward_traced(&x)?.ok_or_else(|| {
                Error::invalid("batch_test needs an MLP (per-sample statistics use Linear layers)")
            })?;
            let loss = self.loss(&out, &y)?;
            let loss_v = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            let grads = crate::gradients(&loss, self.opt.differentiates_gradients())?;
            let stats = linear_grad_stats(&traces, &grads, idx.len())?;
            return Ok((loss_v, grads, Some(stats)));
        }
        let parts = self.config.options.accumulate.min(idx.len()).max(1);
        let size = idx.len().div_ceil(parts);
        let mut total_loss = 0.0;
        let mut acc: Option<candle_core::backprop::GradStore> = None;
        let total = self.train.predictions(idx).max(1) as f64;
        for chunk in idx.chunks(size) {
            // Each micro-batch's mean loss weighted by its share of the predictions (examples, or non-padded
            // positions of sequences).
            let weight = self.train.predictions(chunk) as f64 / total;
            let (x, y) = self.train.batch(chunk, self.dtype, &Device::Cpu)?;
            let loss = self.loss(&self.model.forward_mode(&x, true)?, &y)?;
            total_loss += weight * loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            let loss = if parts > 1 {
                loss.affine(weight, 0.0)?
            } else {
                loss
            };
            let g = crate::gradients(&loss, self.opt.differentiates_gradients())?;
            acc = Some(match acc {
                None => g,
                Some(mut a) => {
                    for p in params {
                        if let Some(gp) = g.get(p.tensor()) {
                            let sum = match a.remove(p.tensor()) {
                                Some(prev) => prev.add(gp)?,
                                None => gp.clone(),
                            };
                            a.insert(p.tensor(), sum);
                        }
                    }
                    a
                }
            });
        }
        Ok((total_loss, acc.expect("at least one micro-batch"), None))
    }

    /// DP-SGD's private gradient of the examples `idx` with `step`'s settings, its noise from this step's stream.
    fn private_part(
        &self,
        idx: &[usize],
        step: &crate::privacy::dp_sgd::DpSgdStep,
    ) -> Result<crate::privacy::dp_sgd::PrivateGradient> {
        let (x, y) = self.train.batch(idx, self.dtype, &Device::Cpu)?;
        let kind = if self.classification {
            ExampleLoss::CrossEntropy
        } else {
            ExampleLoss::Mse
        };
        let mut rng = rng_for(
            self.config.options.seed,
            Stream::PrivacyNoise,
            self.loop_state.step,
        );
        private_gradient(&self.model, &x, &y, kind, step, &mut rng)
    }

    /// [`Trainer::loss_and_grads`] of a data-parallel worker: this rank's part of the batch, weighted by its
    /// share, summed over the ranks (see [`Trainer::distribute`]).
    fn shared_loss_and_grads(
        &self,
        comm: &dyn Communicator,
        idx: &[usize],
        params: &[Param],
    ) -> Result<(f64, candle_core::backprop::GradStore)> {
        let size = idx.len().div_ceil(comm.size()).max(1);
        let part = idx.chunks(size).nth(comm.rank()).unwrap_or(&[]);
        let (loss, local) = if let Some(p) = &self.privacy {
            // The divisor is the global batch's; the noise is added once, by rank 0.
            let mut step = p.step(idx.len());
            if comm.rank() != 0 {
                step.noise_multiplier = 0.0;
            }
            let g = self.private_part(part, &step)?;
            let share = part.len() as f64 / idx.len().max(1) as f64;
            (
                if part.is_empty() { 0.0 } else { share * g.loss },
                Some(g.grads),
            )
        } else if part.is_empty() {
            (0.0, None)
        } else {
            let weight =
                self.train.predictions(part) as f64 / self.train.predictions(idx).max(1) as f64;
            let (x, y) = self.train.batch(part, self.dtype, &Device::Cpu)?;
            let loss = self.loss(&self.model.forward_mode(&x, true)?, &y)?;
            let v = weight * loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            let loss = if comm.size() > 1 {
                loss.affine(weight, 0.0)?
            } else {
                loss
            };
            let grads = crate::gradients(&loss, self.opt.differentiates_gradients())?;
            (v, Some(grads))
        };
        // Every parameter's gradient, flattened in order (zeros where this rank has none).
        let mut flat: Vec<f64> = Vec::new();
        let mut flat32: Vec<f32> = Vec::new();
        for p in params {
            let g = match local.as_ref().and_then(|g| g.get(p.tensor())) {
                Some(g) => g.flatten_all()?,
                None => p.tensor().zeros_like()?.flatten_all()?,
            };
            match self.dtype {
                DType::F64 => flat.extend(g.to_vec1::<f64>()?),
                _ => flat32.extend(g.to_dtype(DType::F32)?.to_vec1::<f32>()?),
            }
        }
        let mut total = [loss];
        comm.all_reduce_sum(&mut total)?;
        if self.dtype == DType::F64 {
            comm.all_reduce_sum(&mut flat)?;
        } else {
            comm.all_reduce_sum_f32(&mut flat32)?;
        }
        let mut grads = candle_core::backprop::GradStore::default();
        let mut at = 0;
        for p in params {
            let n = p.tensor().elem_count();
            let t = if self.dtype == DType::F64 {
                Tensor::from_slice(&flat[at..at + n], p.tensor().dims(), &Device::Cpu)?
            } else {
                Tensor::from_slice(&flat32[at..at + n], p.tensor().dims(), &Device::Cpu)?
                    .to_dtype(self.dtype)?
            };
            grads.insert(p.tensor(), t);
            at += n;
        }
        Ok((total[0], grads))
    }

    /// Loss and accuracy (classification) of the model on `data`.
    pub fn evaluate(&self, data: &Dataset) -> Result<(f64, Option<f64>)> {
        let n = data.len();
        let (mut loss_sum, mut hits) = (0.0, 0usize);
        let idx: Vec<usize> = (0..n).collect();
        for chunk in idx.chunks(EVAL_BATCH) {
            let (x, y) = data.batch(chunk, self.dtype, &Device::Cpu)?;
            let out = self.model.forward(&x)?.detach();
            let l = self
                .loss(&out, &y)?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
            // The mean over predictions (examples, or non-padded positions of sequences).
            loss_sum += l * data.predictions(chunk) as f64;
            if self.classification {
                hits += correct(&out, &y)?;
            }
        }
        let predictions = data.predictions(&idx).max(1) as f64;
        Ok((
            loss_sum / predictions,
            self.classification.then(|| hits as f64 / predictions),
        ))
    }

    /// Locks `dir` (unless this trainer already holds it), then, for a new run, refuses a directory that
    /// already holds one and writes `config.toml`; opens the metrics log.
    fn prepare_dir(&mut self, dir: &Path, resumed: bool) -> Result<MetricsLog> {
        if !self.lock.as_ref().is_some_and(|l| l.holds(dir)) {
            self.lock = Some(RunDirLock::acquire(dir)?);
        }
        if !resumed {
            // A directory whose run died before its first checkpoint holds nothing to resume: it starts over.
            if checkpoint::exists(dir) {
                return Err(Error::file(
                    dir,
                    "already holds a run; resume it with --resume, or choose a new directory",
                ));
            }
            write_atomic(&dir.join("config.toml"), self.config.to_toml()?.as_bytes())?;
            // A table's standardization statistics and one-hot layout, which the model's inputs need.
            if let Some(table) = crate::data::tabular::of_spec(&self.config.data)? {
                let path = dir.join(crate::data::tabular::ENCODING_FILE);
                let text = serde_json::to_string_pretty(&table.encoding())
                    .map_err(|e| Error::file(&path, format!("cannot write the encoding: {e}")))?;
                write_atomic(&path, text.as_bytes())?;
            }
        }
        MetricsLog::open(
            &dir.join("metrics.jsonl"),
            self.config.options.log_every,
            self.loop_state.step,
        )
    }

    /// Trains to the end (or to `opts.stop_at`), notifying `observers`. With a run directory, writes the
    /// config, metrics, checkpoints and, at the end, the model, optimizer state and summary. A NaN or
    /// infinite loss or gradient stops the run with an error; the last good checkpoint stays on disk.
    pub fn run(
        &mut self,
        run_dir: Option<&Path>,
        observers: &mut [&mut dyn Observer],
    ) -> Result<Summary> {
        self.run_with(
            &RunOptions {
                run_dir: run_dir.map(Path::to_path_buf),
                stop_at: None,
            },
            observers,
        )
    }

    /// [`Trainer::run`] with all options. The run directory is locked from the start (or from
    /// [`Trainer::resume`]) until this returns.
    pub fn run_with(
        &mut self,
        opts: &RunOptions,
        observers: &mut [&mut dyn Observer],
    ) -> Result<Summary> {
        let r = self.run_locked(opts, observers);
        self.lock = None;
        r
    }

    fn run_locked(
        &mut self,
        opts: &RunOptions,
        observers: &mut [&mut dyn Observer],
    ) -> Result<Summary> {
        let resumed = self.loop_state.step > 0;
        if let (Some(d), true) = (&opts.run_dir, resumed && self.is_complete()) {
            // A finished run is reported as it ended and left untouched.
            let path = d.join("summary.json");
            if let Ok(text) = std::fs::read_to_string(&path) {
                return serde_json::from_str(&text)
                    .map_err(|e| Error::file(&path, format!("invalid summary: {e}")));
            }
        }
        let mut log = match &opts.run_dir {
            Some(d) => Some(self.prepare_dir(d, resumed)?),
            None => None,
        };
        let info = RunInfo {
            total_steps: self.total_steps,
            start_step: self.loop_state.step,
            steps_per_epoch: self.steps_per_epoch,
            train_examples: self.train.len(),
            val_examples: self.val.as_ref().map_or(0, Dataset::len),
            num_params: self.model.num_params(),
            model: self.model.describe(),
            optimizer: self.opt.spec(),
        };
        let mut notify = |f: &mut dyn FnMut(&mut dyn Observer)| {
            if let Some(l) = log.as_mut() {
                f(l);
            }
            for o in observers.iter_mut() {
                f(*o);
            }
        };
        notify(&mut |o| o.on_start(&info));
        let params: Vec<Param> = self.model.params();
        let start = Instant::now();
        let time0 = self.loop_state.time_s;
        let mut samples = 0usize;
        let mut last_eval: Option<EvalMetrics> = None;
        let end = opts
            .stop_at
            .map_or(self.total_steps, |s| s.min(self.total_steps));
        while self.loop_state.step < end {
            let step = self.loop_state.step;
            self.opt.apply_schedule("lr", self.schedule.factor(step))?;
            for (name, s) in &self.hyper_schedules {
                self.opt.apply_schedule(name, s.factor(step))?;
            }
            if let Some(s) = &self.batch_size_schedule {
                let b = (self.config.options.batch_size as f64 * s.factor(step)).round();
                self.loop_state.batch_size = b.clamp(1.0, self.train.len() as f64) as usize;
            }
            let lr = self.opt.lr()?;
            let (idx, epoch, epoch_done) = self.next_batch();
            let test_now = self
                .batch_schedule
                .filter(|b| (step + 1).is_multiple_of(b.interval));
            let (mut loss_v, mut grads, stats, target) = if self.sso.is_some() {
                let (x, y) = self.train.batch(&idx, self.dtype, &Device::Cpu)?;
                // The number of terms the mean loss averages: predictions (cross-entropy) or elements (MSE).
                let terms = if self.classification {
                    self.train.predictions(&idx)
                } else {
                    y.elem_count()
                };
                let (l, g, t) = sso::outer(&self.model, x, &y, terms, |o, y| self.loss(o, y))?;
                (l, g, None, Some(t))
            } else {
                let (l, g, s) = self.loss_and_grads(&idx, &params, test_now.is_some())?;
                (l, g, s, None)
            };
            if idx.is_empty() {
                // An empty Poisson batch (its gradient is pure noise) logs the running mean loss.
                loss_v = if self.loop_state.loss_count > 0 {
                    self.loop_state.loss_sum / self.loop_state.loss_count as f64
                } else {
                    0.0
                };
            }
            let last_good = || match &opts.run_dir {
                Some(d) if checkpoint::exists(d) => format!(
                    "; the last good checkpoint is kept in {}",
                    d.join("checkpoints").display()
                ),
                _ => String::new(),
            };
            if !loss_v.is_finite() && step == 0 {
                return Err(Error::NonFinite(format!(
                    "the loss is {loss_v} at the initial parameters, before any update: the model's outputs overflow on \
                     this data (are the inputs scaled to a sensible range?)"
                )));
            }
            if !loss_v.is_finite() {
                return Err(Error::NonFinite(format!(
                    "the loss became {loss_v} at step {} (lr {lr:e}){}; try a lower learning rate or --clip-grad-norm",
                    step + 1,
                    last_good()
                )));
            }
            // The logged norm is the raw gradient's (schedule refinement reads it), before any clipping.
            let grad_norm = global_grad_norm(&params, &grads)?;
            if !grad_norm.is_finite() {
                return Err(Error::NonFinite(format!(
                    "the gradient norm became {grad_norm} at step {} (lr {lr:e}){}; try a lower learning rate or --clip-grad-norm",
                    step + 1,
                    last_good()
                )));
            }
            if let Some(v) = self.config.options.clip_grad_value {
                clip_grad_value(&params, &mut grads, v)?;
            }
            if let Some(c) = self.config.options.agc {
                adaptive_clip(&params, &mut grads, c, 1e-3)?;
            }
            if let Some(c) = self.config.options.clip_grad_norm {
                clip_grad_norm(&params, &mut grads, c)?;
            }
            match (&self.sso, &target) {
                (Some(spec), Some(t)) => {
                    let share = idx.len() as f64 / self.train.len().max(1) as f64;
                    sso::inner(
                        spec,
                        &self.model,
                        &params,
                        t,
                        step + 1,
                        share,
                        self.opt.as_mut(),
                    )?;
                }
                _ => self.opt.step(&params, &grads)?,
            }
            drop(grads);
            if let (Some(p), Some(a)) = (&self.privacy, self.loop_state.accountant.as_mut()) {
                a.step(p.noise_multiplier, p.sample_rate)?;
            }
            self.loop_state.step += 1;
            self.loop_state.loss_sum += loss_v;
            self.loop_state.loss_count += 1;
            samples += idx.len();
            let elapsed = start.elapsed().as_secs_f64();
            let m = StepMetrics {
                step: self.loop_state.step,
                epoch,
                loss: loss_v,
                lr,
                grad_norm,
                batch_size: idx.len(),
                time_s: time0 + elapsed,
                samples_per_s: samples as f64 / elapsed.max(1e-9),
                epsilon: self
                    .privacy
                    .as_ref()
                    .map(|p| p.epsilon_after(self.loop_state.step)),
            };
            notify(&mut |o| o.on_step(&m));
            let done = self.loop_state.step;
            if let (Some(bs), Some(st)) = (test_now, stats) {
                self.loop_state.batch_size =
                    bs.next_batch(idx.len().max(self.loop_state.batch_size), &st);
            }
            let eval_due = match self.config.options.eval_every {
                0 => epoch_done,
                k => done.is_multiple_of(k),
            };
            if eval_due || done == self.total_steps {
                let e = self.eval_now(epoch, time0 + start.elapsed().as_secs_f64())?;
                notify(&mut |o| o.on_eval(&e));
                last_eval = Some(e);
            }
            let at_end = done == end;
            if let Some(d) = &opts.run_dir {
                let checkpoint_due = match self.config.options.checkpoint_every {
                    0 => eval_due,
                    k => done.is_multiple_of(k),
                };
                if checkpoint_due || at_end {
                    self.loop_state.time_s = time0 + start.elapsed().as_secs_f64();
                    let cdir = checkpoint::save(
                        d,
                        &self.model,
                        self.opt.as_ref(),
                        &self.loop_state,
                        &self.config.to_toml()?,
                    )?;
                    notify(&mut |o| o.on_checkpoint(done, &cdir));
                }
            }
        }
        let wall = time0 + start.elapsed().as_secs_f64();
        // The summary describes the model as it ends; an evaluation from before the last step is redone
        // without touching the loop state (already checkpointed).
        let last_eval = match last_eval {
            Some(e) if e.step == self.loop_state.step => e,
            _ => {
                let (val_loss, val_accuracy) = match &self.val {
                    Some(v) => {
                        let (l, a) = self.evaluate(v)?;
                        (Some(l), a)
                    }
                    None => (None, None),
                };
                let train_loss = if self.loop_state.loss_count > 0 {
                    self.loop_state.loss_sum / self.loop_state.loss_count as f64
                } else {
                    self.evaluate(&self.train)?.0
                };
                EvalMetrics {
                    step: self.loop_state.step,
                    epoch: self.loop_state.epoch,
                    train_loss,
                    val_loss,
                    val_accuracy,
                    time_s: wall,
                }
            }
        };
        let summary = Summary {
            data: self.config.data.to_string(),
            model: self.config.model.to_string(),
            optimizer: self.config.optimizer.to_string(),
            schedule: self.config.schedule.to_string(),
            steps: self.loop_state.step,
            epochs: self.loop_state.epoch as f64
                + self.loop_state.cursor as f64 / self.train.len() as f64,
            num_params: self.model.num_params(),
            final_train_loss: last_eval.train_loss,
            val_loss: last_eval.val_loss,
            val_accuracy: last_eval.val_accuracy,
            best_val_accuracy: self.loop_state.best_val_accuracy,
            wall_time_s: wall,
            samples_per_s: samples as f64 / (wall - time0).max(1e-9),
            privacy: self.privacy.as_ref().map(|p| PrivacySummary {
                epsilon: p.epsilon_after(self.loop_state.step),
                delta: p.spec.delta,
                noise_multiplier: p.noise_multiplier,
                sample_rate: p.sample_rate,
                clip: p.spec.clip,
            }),
        };
        if let (Some(d), true) = (&opts.run_dir, self.loop_state.step == self.total_steps) {
            self.model.save(&d.join("model.safetensors"))?;
            save_state_file(
                self.opt.as_ref(),
                &params,
                &d.join("optimizer.safetensors"),
                &d.join("optimizer.json"),
            )?;
            let text = serde_json::to_string_pretty(&summary).expect("json");
            write_atomic(&d.join("summary.json"), text.as_bytes())?;
        }
        notify(&mut |o| o.on_end(&summary));
        Ok(summary)
    }

    fn eval_now(&mut self, epoch: u64, time_s: f64) -> Result<EvalMetrics> {
        let train_loss = if self.loop_state.loss_count > 0 {
            self.loop_state.loss_sum / self.loop_state.loss_count as f64
        } else {
            self.evaluate(&self.train)?.0
        };
        self.loop_state.loss_sum = 0.0;
        self.loop_state.loss_count = 0;
        let (val_loss, val_accuracy) = match &self.val {
            Some(v) => {
                let (l, a) = self.evaluate(v)?;
                (Some(l), a)
            }
            None => (None, None),
        };
        if let Some(a) = val_accuracy {
            let best = self
                .loop_state
                .best_val_accuracy
                .map_or(a, |b: f64| b.max(a));
            self.loop_state.best_val_accuracy = Some(best);
        }
        Ok(EvalMetrics {
            step: self.loop_state.step,
            epoch,
            train_loss,
            val_loss,
            val_accuracy,
            time_s,
        })
    }
}

/// The keys whose values differ between two config files (TOML), in order, once both are in canonical form.
fn changed_keys(recorded: &str, now: &str) -> Result<Vec<String>> {
    // Both sides in canonical form (a config.toml of an earlier version keeps the spec strings as typed).
    let parse = |t: &str| -> Result<toml::Table> {
        let canonical = TrainConfig::from_toml(t)?.to_toml()?;
        toml::from_str::<toml::Table>(&canonical)
            .map_err(|e| Error::invalid(format!("invalid run config: {}", e.message())))
    };
    let (a, b) = (parse(recorded)?, parse(now)?);
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    Ok(keys
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let show = |v: Option<&toml::Value>| v.map_or("absent".to_string(), |v| v.to_string());
            format!("{k}: recorded {}, now {}", show(a.get(k)), show(b.get(k)))
        })
        .collect())
}
