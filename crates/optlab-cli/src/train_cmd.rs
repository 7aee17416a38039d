//! `optlab train`.

use crate::plot::plot_run;
use crate::progress::Progress;
use crate::run_args::RunOverrides;
use anyhow::{bail, Result};
use clap::Args;
use optlab::train::{RunOptions, TrainConfig, Trainer};
use std::path::PathBuf;

#[derive(Args, Debug, Clone, Default)]
#[command(
    after_help = "Examples:\n  optlab train --optimizer adamw:lr=1e-3,weight_decay=0.01 --schedule cosine:warmup=50 --epochs 20 --out runs/a\n  optlab train --config run.toml --out runs/b\n  optlab train --data csv:path=data.csv,label=y --model mlp:hidden=64-64,act=tanh --out runs/c\n  optlab train --resume runs/a        # continue a killed run bit-exactly\n  optlab train --task charlm --model transformer:layers=2,dim=64,norm=pn --out runs/lm"
)]
pub struct TrainArgs {
    #[command(flatten)]
    pub run: RunOverrides,
    /// Continue the run in DIR from its last checkpoint (its config.toml decides everything else).
    #[arg(long, value_name = "DIR", conflicts_with = "config")]
    pub resume: Option<PathBuf>,
    /// Run directory to create [default: runs/train-<unix time>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Model: mlp:hidden=128,act=relu (act relu|tanh|gelu, or one per layer relu-tanh) | cnn:channels=8-16[,norm=bn|gn|bcn|bcn-est[+ws],groups=4] (P01 normalizations; +ws: weight-standardized convolutions) | resnet:... (same keys, a basic residual block per stage) | transformer:layers=2,dim=64,heads=4,mlp=4,norm=ln|pn|bn|none[,pn_warmup=200] (--task charlm; pn = PowerNorm, P12). mlp and transformer take param=mup,base=64 (muP, P42).
    #[arg(long)]
    pub model: Option<String>,
    /// Optimizer spec, e.g. adamw:lr=1e-3,weight_decay=0.01 | sgd:lr=0.1,momentum=0.9,nesterov=true.
    #[arg(long)]
    pub optimizer: Option<String>,
    /// Seed of initialisation, split, shuffling and synthetic data.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop (checkpointed) once N steps are done; continue later with --resume.
    #[arg(long, value_name = "N")]
    pub stop_after: Option<u64>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Data-parallel training, one worker per MPI rank: `mpirun -n R optlab train --distributed --out DIR ...`.
    /// Each rank computes the gradient of its part of every batch; rank 0 writes DIR and prints. Equals the
    /// one-process run with accumulate = R bit for bit.
    #[arg(long)]
    pub distributed: bool,
}

impl TrainArgs {
    fn overrides_given(&self) -> bool {
        self.run.any() || self.model.is_some() || self.optimizer.is_some() || self.seed.is_some()
    }

    /// The config: the file (or defaults) with the flags applied.
    pub fn config(&self) -> Result<TrainConfig> {
        let mut c = self.run.config()?;
        if let Some(m) = &self.model {
            c.model = m.parse()?;
        }
        if let Some(o) = &self.optimizer {
            c.optimizer = o.parse()?;
        }
        if let Some(s) = self.seed {
            c.options.seed = s;
        }
        Ok(c)
    }
}

pub fn run(a: TrainArgs) -> Result<()> {
    let comm = if a.distributed {
        if a.out.is_none() && a.resume.is_none() {
            bail!("--distributed needs --out DIR (or --resume DIR): every rank must name the same run directory");
        }
        Some(crate::mpi_world::join()?)
    } else {
        None
    };
    let rank = comm.as_ref().map_or(0, |c| c.rank());
    let (mut trainer, dir) = match &a.resume {
        Some(dir) => {
            if a.overrides_given() || a.out.is_some() {
                bail!(
                    "--resume takes its settings from {}/config.toml; drop the other flags",
                    dir.display()
                );
            }
            // Rank 0 holds the directory's lock; the other ranks only read it.
            let t = if rank == 0 {
                Trainer::resume(dir)?
            } else {
                Trainer::resume_shared(dir)?
            };
            (t, dir.clone())
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
    let ranks = comm.as_ref().map_or(1, |c| c.size());
    if let Some(c) = comm {
        trainer.distribute(c)?;
    }
    if rank != 0 {
        // The other ranks train silently and write nothing.
        trainer.run_with(
            &RunOptions {
                run_dir: None,
                stop_at: a.stop_after,
            },
            &mut [],
        )?;
        return Ok(());
    }
    let finished = a.resume.is_some() && trainer.is_complete();
    let start_step = trainer.step();
    if !a.quiet && !finished && ranks > 1 {
        eprintln!("data-parallel over {ranks} MPI ranks (rank 0 writes the run directory)");
    }
    if !a.quiet && !finished {
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
    if let Some(p) = trainer.privacy() {
        if !a.quiet && !finished {
            eprintln!(
                "DP-SGD: noise multiplier {}, sampling rate {:.5}, clip {}, delta {:e}: epsilon {:.4} after {} steps",
                p.noise_multiplier,
                p.sample_rate,
                p.spec.clip,
                p.spec.delta,
                p.epsilon_after(trainer.total_steps()),
                trainer.total_steps()
            );
        }
        if let Some(w) = p.warning() {
            eprintln!("warning: {w}");
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
    if finished {
        println!(
            "{} holds a complete run ({} steps); nothing to do, nothing changed",
            dir.display(),
            s.steps
        );
    } else {
        plot_run(&dir)?;
    }
    println!("run directory: {}", dir.display());
    println!(
        "steps {}  train loss {:.4}  val loss {}  val accuracy {}  time {:.1} s",
        s.steps,
        s.final_train_loss,
        s.val_loss.map_or("-".into(), |v| format!("{v:.4}")),
        s.val_accuracy.map_or("-".into(), |v| format!("{v:.4}")),
        s.wall_time_s
    );
    if let Some(c) = trainer.communicator() {
        let stepped = s.steps.saturating_sub(start_step).max(1);
        println!(
            "distributed: {} rank{}, {:.0} bytes sent per step by each rank (the gradient of its part, and its loss)",
            c.size(),
            if c.size() == 1 { "" } else { "s" },
            c.bytes_sent() as f64 / stepped as f64
        );
    }
    if let Some(p) = &s.privacy {
        println!(
            "privacy: epsilon {:.4} at delta {:e} (noise multiplier {}, sampling rate {:.5}, clip {})",
            p.epsilon, p.delta, p.noise_multiplier, p.sample_rate, p.clip
        );
    }
    Ok(())
}
