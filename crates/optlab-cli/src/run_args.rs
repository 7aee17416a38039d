//! The run settings every training command shares (`train`, `compare`, `mup`), as one set of flags: a run
//! config file or a task's defaults, then each flag given. The flags stay strings so a bad value is one
//! `error:` line from the library's parser (exit 1), not clap's usage screen.

use anyhow::Result;
use clap::Args;
use optlab::train::{Task, TrainConfig};
use std::path::PathBuf;

#[derive(Args, Debug, Clone, Default)]
pub struct RunOverrides {
    /// Read the run's settings from a TOML file (keys as the long flags with underscores: batch_size, ...);
    /// flags given on the command line override it.
    #[arg(long, value_name = "run.toml")]
    pub config: Option<PathBuf>,
    /// supervised (default) | charlm: a transformer language model on a text; its defaults are text:context=64
    /// (the embedded Shakespeare), transformer:layers=2,dim=64,heads=4,mlp=4,norm=ln, adamw:lr=2e-2,weight_decay=0.01,
    /// cosine:warmup=100, 2000 steps of 32 windows.
    #[arg(long)]
    pub task: Option<String>,
    /// Data: digits | moons:n=1000,noise=0.1 | spirals | gaussians | linreg | csv:path=F,label=COL |
    /// idx:images=F,labels=F | safetensors:path=F,x=x,y=y | text:context=64[,unit=window|line][,path=book.txt] (--task charlm; unit=line: one right-padded line per example).
    #[arg(long)]
    pub data: Option<String>,
    /// A parameter group SELECTOR:key=value,... (repeatable); SELECTOR is rank<=N, rank=N or a name glob.
    /// Example: --group rank<=1:weight_decay=0 (no weight decay on biases).
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// Learning-rate schedule: constant | cosine:warmup=100,min_factor=0 | linear:warmup=100,end_factor=0 | step |
    /// exponential | polynomial | wsd:warmup=100,decay_frac=0.2 | seq:constant@80%;linear | file:refined.json.
    #[arg(long)]
    pub schedule: Option<String>,
    /// A schedule of another hyperparameter NAME=SPEC (repeatable): momentum=linear:end_factor=0.5,
    /// weight_decay=cosine, batch_size=step:step_size=500,gamma=2 (factors multiply the base value).
    #[arg(long = "hyper-schedule", value_name = "NAME=SPEC")]
    pub hyper_schedules: Vec<String>,
    /// Passes over the training split.
    #[arg(long)]
    pub epochs: Option<u64>,
    /// Total optimizer steps (overrides --epochs).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Examples per step.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// auto | cross_entropy | mse.
    #[arg(long)]
    pub loss: Option<String>,
    /// Fraction held out for validation.
    #[arg(long)]
    pub val_frac: Option<f64>,
    /// Evaluate every N steps (0: every epoch).
    #[arg(long)]
    pub eval_every: Option<u64>,
    /// Log a metrics line every N steps.
    #[arg(long)]
    pub log_every: Option<u64>,
    /// Checkpoint every N steps (0: at every evaluation).
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Adaptive batch size (AdAdaGrad, P29): norm:eta=0.5,interval=10,max_batch=1024 |
    /// inner_product:theta=0.5,... | augmented:theta=0.5,nu=0.5,... (MLPs; the batch only grows).
    #[arg(long, value_name = "TEST")]
    pub batch_test: Option<String>,
    /// Split each step's batch into N micro-batches and accumulate their gradients (less memory, same step).
    #[arg(long, value_name = "N")]
    pub accumulate: Option<usize>,
    /// Clip gradients to this global l2 norm.
    #[arg(long)]
    pub clip_grad_norm: Option<f64>,
    /// Clamp each gradient element to [-V, V].
    #[arg(long, value_name = "V")]
    pub clip_grad_value: Option<f64>,
    /// Adaptive gradient clipping (NFNets) with this clipping factor, e.g. 0.01.
    #[arg(long, value_name = "FACTOR")]
    pub agc: Option<f64>,
    /// f32 | f64.
    #[arg(long)]
    pub dtype: Option<String>,
    /// For muP models (param=mup): auto (the optimizer's rule) | adam (MuAdam) | sgd (MuSGD).
    #[arg(long)]
    pub mup_rule: Option<String>,
    /// DP-SGD: epsilon=3,delta=1e-5,clip=1.0 (noise calibrated to the run's steps) or noise=1.1,clip=1.0,delta=1e-5;
    /// optional clipping=flat|per_layer, sampling=poisson|shuffle. MLPs and CNNs with GroupNorm.
    #[arg(long, value_name = "SPEC")]
    pub privacy: Option<String>,
    /// SSO target-based surrogates (P34): inner=M,eta=E[,schedule=constant|sqrt,solver=ls|optimizer,init_step=10,
    /// c=0.1,beta=0.9,expand=2]: one loss gradient in the model's outputs per batch, then M line-search (or
    /// optimizer) steps on the surrogate.
    #[arg(long, value_name = "SPEC")]
    pub sso: Option<String>,
}

impl RunOverrides {
    /// Whether any setting was given.
    pub fn any(&self) -> bool {
        self.config.is_some()
            || self.task.is_some()
            || self.data.is_some()
            || !self.groups.is_empty()
            || self.schedule.is_some()
            || !self.hyper_schedules.is_empty()
            || self.epochs.is_some()
            || self.steps.is_some()
            || self.batch_size.is_some()
            || self.loss.is_some()
            || self.val_frac.is_some()
            || self.eval_every.is_some()
            || self.log_every.is_some()
            || self.checkpoint_every.is_some()
            || self.batch_test.is_some()
            || self.accumulate.is_some()
            || self.clip_grad_norm.is_some()
            || self.clip_grad_value.is_some()
            || self.agc.is_some()
            || self.dtype.is_some()
            || self.mup_rule.is_some()
            || self.privacy.is_some()
            || self.sso.is_some()
    }

    /// The config: the file (or the task's defaults) with every flag given applied.
    pub fn config(&self) -> Result<TrainConfig> {
        let task: Option<Task> = self.task.as_deref().map(str::parse).transpose()?;
        let mut c = match &self.config {
            Some(p) => TrainConfig::from_toml_file_with_task(p, task)?,
            None => TrainConfig::for_task(task.unwrap_or_default()),
        };
        let o = &mut c.options;
        if let Some(v) = &self.data {
            c.data = v.parse()?;
        }
        if let Some(v) = &self.schedule {
            c.schedule = v.parse()?;
        }
        if !self.groups.is_empty() {
            o.groups = self
                .groups
                .iter()
                .map(|g| g.parse())
                .collect::<Result<_, _>>()?;
        }
        if !self.hyper_schedules.is_empty() {
            o.hyper_schedules = self
                .hyper_schedules
                .iter()
                .map(|h| h.parse())
                .collect::<Result<_, _>>()?;
        }
        if let Some(e) = self.epochs {
            (o.epochs, o.steps) = (Some(e), None);
        }
        if self.steps.is_some() {
            o.steps = self.steps;
        }
        macro_rules! set {
            ($($f:ident),*) => {$( if let Some(v) = self.$f { o.$f = v; } )*};
        }
        set!(
            batch_size,
            val_frac,
            eval_every,
            log_every,
            checkpoint_every,
            accumulate
        );
        macro_rules! parse {
            ($($f:ident),*) => {$( if let Some(v) = &self.$f { o.$f = v.parse()?; } )*};
        }
        parse!(loss, dtype, mup_rule);
        if let Some(v) = &self.batch_test {
            o.batch_test = Some(v.parse()?);
        }
        if let Some(v) = &self.privacy {
            o.privacy = Some(v.parse()?);
        }
        if let Some(v) = &self.sso {
            o.sso = Some(v.parse()?);
        }
        for (dst, src) in [
            (&mut o.clip_grad_norm, self.clip_grad_norm),
            (&mut o.clip_grad_value, self.clip_grad_value),
            (&mut o.agc, self.agc),
        ] {
            if src.is_some() {
                *dst = src;
            }
        }
        Ok(c)
    }
}
