//! `optlab distill`: f-distill (P39) of a diffusion teacher into a one-step generator on a mixture target; the
//! teacher is the exact score of the target or the network of an `optlab diffusion train` run.

use crate::diffusion_cmd::cloud;
use crate::plot::{line_chart, scatter};
use crate::progress::bar;
use anyhow::{Context, Result};
use clap::Args;
use optlab::experiment::report::Series;
use optlab::generative::distill::{DistillConfig, Distiller};
use optlab::generative::metrics::{energy_distance, mode_recall};
use optlab::generative::mixture::Mixture;
use optlab::generative::process::Process;
use optlab::generative::score::{ExactScore, ScoreFn};
use optlab::nn::ModelSpec;
use optlab::rng::{rng_for, Stream};
use optlab::train::run_dir::RunDirLock;
use serde_json::json;
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  optlab distill --target ring --divergence js --out runs/distill-js\n  optlab distill --teacher runs/ring --divergence forward-kl --out runs/distill-fkl\n\nThe generator x = G(z) (--generator, z ~ N(0, I) in 2-D) is trained with the gradient\nE[h(r) (xhat_fake - xhat_teacher) / mean|x - xhat_teacher| dx/dtheta] (NVIDIA FastGen's f-distill on DMD2),\nxhat = (x_t + sigma^2 s(x_t, t))/alpha the denoised estimate of each score at x_t = alpha(t) G(z) + sigma(t) eps,\nt ~ U(0.02, 0.98); h(r) = r^2 f''(r): reverse-kl 1 (DMD), forward-kl r, js r/(1+r); r = exp(discriminator logit)\n(clamped to [-10, 10], then to [0.1, 20]) from a time-conditioned discriminator, divided by its mean in its tenth\nof the time range, h divided by its batch mean; plus --gan-weight times the non-saturating GAN loss. The fake score\nis trained by DSM on the generator's samples (--pretrain steps first, then one per step). Writes DIR/summary.json\n(energy distance and mode recall of 2000 samples), metrics.jsonl, generator.safetensors, samples.png, loss.png."
)]
pub struct DistillArgs {
    /// The target (the teacher's data): ring, grid, line, gaussians[:...]; decay=D weighs mode k ~ D^k (light modes).
    #[arg(long, default_value = "ring")]
    target: String,
    /// exact (the target's score) or a run directory of `optlab diffusion train` (its network and target).
    #[arg(long, default_value = "exact")]
    teacher: String,
    #[arg(long, default_value = "vp")]
    process: String,
    /// reverse-kl, forward-kl or js.
    #[arg(long, default_value = "reverse-kl")]
    divergence: String,
    #[arg(long, default_value_t = 2000)]
    steps: usize,
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    #[arg(long, default_value_t = 500)]
    pretrain: usize,
    #[arg(long, default_value_t = 0.01)]
    gan_weight: f64,
    /// Fake-score and discriminator steps per generator step.
    #[arg(long, default_value_t = 5)]
    critic_steps: usize,
    /// The one-step generator, from the 2-D latent to the data.
    #[arg(long, default_value = "mlp:hidden=128-128,act=relu")]
    generator: String,
    #[arg(long, default_value = "adam:lr=1e-3")]
    generator_optimizer: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    json: bool,
    #[arg(long)]
    quiet: bool,
}

pub fn run(a: DistillArgs) -> Result<()> {
    let (loaded, exact_target, exact);
    let (teacher, target, process): (&dyn ScoreFn, &Mixture, Process) = if a.teacher == "exact" {
        exact_target = a.target.parse::<Mixture>()?;
        let process: Process = a.process.parse()?;
        exact = ExactScore {
            mixture: &exact_target,
            process,
        };
        (&exact, &exact_target, process)
    } else {
        loaded = crate::diffusion_cmd::load(std::path::Path::new(&a.teacher))?;
        (&loaded.1, &loaded.0.target, loaded.0.process)
    };
    let cfg = DistillConfig {
        divergence: a.divergence.parse()?,
        steps: a.steps,
        batch_size: a.batch_size,
        pretrain: a.pretrain,
        gan_weight: a.gan_weight,
        critic_steps: a.critic_steps,
        generator: ModelSpec::parse(&a.generator)?,
        generator_optimizer: a.generator_optimizer.clone(),
        seed: a.seed,
        ..DistillConfig::default()
    };
    let mut d = Distiller::new(cfg, teacher, target, process)?;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let _lock = RunDirLock::acquire(&a.out)?;
    let b = bar("distill", a.quiet);
    b.set_length(a.steps as u64);
    let start = std::time::Instant::now();
    let (mut log, mut gaps) = (String::new(), Vec::new());
    d.run(&mut |s| {
        gaps.push((s.step as f64, s.score_gap));
        if s.step % 10 == 0 || s.step == 1 {
            log.push_str(&format!("{}\n", json!(s)));
            b.set_position(s.step as u64);
            b.set_message(format!("score gap {:.3}", s.score_gap));
        }
    })?;
    b.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    optlab::tensor_io::write_atomic(&a.out.join("metrics.jsonl"), log.as_bytes())?;
    d.generator.save(&a.out.join("generator.safetensors"))?;
    let n = 2000;
    let x = d.generate(n)?;
    let mut rng = rng_for(a.seed, Stream::Probe, 3);
    let (t1, t2) = (target.sample(n, &mut rng), target.sample(n, &mut rng));
    let dim = target.dim;
    let modes = mode_recall(target, &x);
    let summary = json!({
        "target": target.to_string(), "teacher": a.teacher, "divergence": a.divergence, "steps": a.steps,
        "generator": a.generator, "energy_distance": energy_distance(&x, &t1, dim), "energy_floor": energy_distance(&t2, &t1, dim),
        "modes": modes, "seconds": seconds,
    });
    optlab::tensor_io::write_atomic(
        &a.out.join("summary.json"),
        format!("{summary:#}\n").as_bytes(),
    )?;
    scatter(
        &a.out.join("samples.png"),
        &format!("one-step generator, {} ({})", a.divergence, target),
        &[cloud("target", &t1, dim), cloud("generator", &x, dim)],
    )?;
    line_chart(
        &a.out.join("loss.png"),
        "f-distill",
        "step",
        "E|s_fake - s_teacher|^2",
        &[Series {
            name: String::new(),
            points: gaps,
        }],
        true,
    )?;
    if a.json {
        println!("{summary}");
    } else {
        println!(
            "{} by {}: energy distance {:.4} (target floor {:.4}), modes {}/{} ({:.1}% of samples on a mode, split among them {:.3} in TV from the weights), {:.0} s; {}",
            target, a.divergence, summary["energy_distance"].as_f64().unwrap_or(f64::NAN),
            summary["energy_floor"].as_f64().unwrap_or(f64::NAN), modes.recalled, modes.modes,
            100.0 * modes.on_mode, modes.split_tv, seconds, a.out.display()
        );
    }
    Ok(())
}
