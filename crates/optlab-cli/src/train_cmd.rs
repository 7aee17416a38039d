//! `optlab train`.

use crate::plot::plot_run;
use crate::progress::Progress;
use anyhow::{bail, Result};
use clap::Args;
use optlab::train::{RunOptions, TrainConfig, Trainer};
use std::path::PathBuf;

#[derive(Args, Debug, Clone, Default)]
#[command(
    after_help = "Examples:\n  optlab train --optimizer adamw:lr=1e-3,weight_decay=0.01 --schedule cosine:warmup=50 --epochs 20 --out runs/a\n  optlab train --config run.toml --out runs/b\n  optlab train --data csv:path=data.csv,label=y --model mlp:hidden=64-64,act=tanh --out runs/c\n  optlab train --resume runs/a        # continue a killed run bit-exactly\n  optlab train --task charlm --model transformer:layers=2,dim=64,norm=pn --out runs/lm"
)]
pub struct TrainArgs {
    /// Read the run's settings from a TOML file (keys as the long flags with underscores: batch_size, ...);
    /// flags given on the command line override it.
    #[arg(long, value_name = "run.toml")]
    pub config: Option<PathBuf>,
    /// Continue the run in DIR from its last checkpoint (its config.toml decides everything else).
    #[arg(long, value_name = "DIR", conflicts_with = "config")]
    pub resume: Option<PathBuf>,
    /// supervised (default) | charlm: a transformer language model on a text; its defaults are text:context=64
    /// (the embedded Shakespeare), transformer:layers=2,dim=64,heads=4,mlp=4,norm=ln, adamw:lr=2e-2,weight_decay=0.01,
    /// cosine:warmup=100, 2000 steps of 32 windows.
    #[arg(long)]
    pub task: Option<String>,
    /// Run directory to create [default: runs/train-<unix time>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Data: digits | moons:n=1000,noise=0.1 | spirals | gaussians | linreg | csv:path=F,label=COL |
    /// idx:images=F,labels=F | safetensors:path=F,x=x,y=y | text:context=64[,unit=window|line][,path=book.txt] (--task charlm; unit=line: one right-padded line per example).
    #[arg(long)]
    pub data: Option<String>,
    /// Model: mlp:hidden=128,act=relu (act relu|tanh|gelu, or one per layer relu-tanh) | cnn:channels=8-16[,norm=bn|gn|bcn|bcn-est[+ws],groups=4] (P01 normalizations; +ws: weight-standardized convolutions) | resnet:... (same keys, a basic residual block per stage) | transformer:layers=2,dim=64,heads=4,mlp=4,norm=ln|pn|bn|none[,pn_warmup=200] (--task charlm; pn = PowerNorm, P12). mlp and transformer take param=mup,base=64 (muP, P42).
    #[arg(long)]
    pub model: Option<String>,
    /// Optimizer spec, e.g. adamw:lr=1e-3,weight_decay=0.01 | sgd:lr=0.1,momentum=0.9,nesterov=true.
    #[arg(long)]
    pub optimizer: Option<String>,
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
    /// Seed of initialisation, split, shuffling and synthetic data.
    #[arg(long)]
    pub seed: Option<u64>,
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
    /// Stop (checkpointed) once N steps are done; continue later with --resume.
    #[arg(long, value_name = "N")]
    pub stop_after: Option<u64>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl TrainArgs {
    fn overrides_given(&self) -> bool {
        self.task.is_some()
            || self.data.is_some()
            || self.model.is_some()
            || self.optimizer.is_some()
            || !self.groups.is_empty()
            || !self.hyper_schedules.is_empty()
            || self.schedule.is_some()
            || self.epochs.is_some()
            || self.steps.is_some()
            || self.batch_size.is_some()
            || self.seed.is_some()
            || self.loss.is_some()
            || self.val_frac.is_some()
            || self.eval_every.is_some()
            || self.log_every.is_some()
            || self.checkpoint_every.is_some()
            || self.clip_grad_norm.is_some()
            || self.clip_grad_value.is_some()
            || self.agc.is_some()
            || self.accumulate.is_some()
            || self.batch_test.is_some()
            || self.dtype.is_some()
    }

    /// The config: the file (or defaults) with the flags applied.
    pub fn config(&self) -> Result<TrainConfig> {
        let mut c = match &self.config {
            Some(p) => TrainConfig::from_toml_file_with_task(p, self.task.as_deref())?,
            None => TrainConfig::for_task(self.task.as_deref().unwrap_or("supervised"))?,
        };
        macro_rules! set {
            ($($f:ident),*) => {$( if let Some(v) = &self.$f { c.$f = v.clone(); } )*};
        }
        set!(
            data,
            model,
            optimizer,
            schedule,
            batch_size,
            seed,
            loss,
            val_frac,
            eval_every,
            log_every,
            checkpoint_every,
            dtype,
            accumulate
        );
        if !self.groups.is_empty() {
            c.groups = self.groups.clone();
        }
        if !self.hyper_schedules.is_empty() {
            c.hyper_schedules = self.hyper_schedules.clone();
        }
        if self.batch_test.is_some() {
            c.batch_test = self.batch_test.clone();
        }
        if let Some(e) = self.epochs {
            c.epochs = Some(e);
            c.steps = None;
        }
        if let Some(s) = self.steps {
            c.steps = Some(s);
        }
        for (dst, src) in [
            (&mut c.clip_grad_norm, self.clip_grad_norm),
            (&mut c.clip_grad_value, self.clip_grad_value),
            (&mut c.agc, self.agc),
        ] {
            if src.is_some() {
                *dst = src;
            }
        }
        Ok(c)
    }
}

pub fn run(a: TrainArgs) -> Result<()> {
    let (mut trainer, dir) = match &a.resume {
        Some(dir) => {
            if a.overrides_given() || a.out.is_some() {
                bail!(
                    "--resume takes its settings from {}/config.toml; drop the other flags",
                    dir.display()
                );
            }
            (Trainer::resume(dir)?, dir.clone())
        }
        None => {
            let dir = a.out.clone().unwrap_or_else(|| {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                PathBuf::from(format!("runs/train-{t}"))
            });
            (Trainer::new(a.config()?)?, dir)
        }
    };
    if !a.quiet {
        let c = trainer.config();
        eprintln!(
            "optlab train: {} on {} with {} ({} parameters), {} steps -> {}",
            trainer.model().describe(),
            c.data,
            c.optimizer,
            trainer.model().num_params(),
            trainer.total_steps(),
            dir.display()
        );
        if trainer.step() > 0 {
            eprintln!("resuming from step {}", trainer.step());
        }
    }
    let mut progress = Progress::new("train", a.quiet);
    let opts = RunOptions {
        run_dir: Some(dir.clone()),
        stop_at: a.stop_after,
    };
    let s = trainer.run_with(&opts, &mut [&mut progress])?;
    if s.steps < trainer.total_steps() {
        println!(
            "stopped after step {} of {}; continue with: optlab train --resume {}",
            s.steps,
            trainer.total_steps(),
            dir.display()
        );
        return Ok(());
    }
    plot_run(&dir)?;
    println!("run directory: {}", dir.display());
    println!(
        "steps {}  train loss {:.4}  val loss {}  val accuracy {}  time {:.1} s",
        s.steps,
        s.final_train_loss,
        s.val_loss.map_or("-".into(), |v| format!("{v:.4}")),
        s.val_accuracy.map_or("-".into(), |v| format!("{v:.4}")),
        s.wall_time_s
    );
    Ok(())
}
