//! `optlab align`: preference tuning under f-divergences (P37). `align dpo` tunes the character transformer of a
//! `--task charlm` run on preference pairs of its own samples labelled by a programmatic reward; `align bandit`
//! trains a categorical policy whose f-DPO optimum is known exactly and prints both.

use crate::plot::line_chart;
use crate::rl_run::{resolve_run, resumable, Due, Session};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use optlab::alignment::bandit::{FitConfig, PreferenceBandit};
use optlab::alignment::lm::{LmDpo, LmDpoConfig, LmEvaluation};
use optlab::alignment::{Divergence, DpoLoss};
use optlab::experiment::report::Series;
use optlab::train::snapshot::Writer;
use serde_json::json;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct AlignArgs {
    #[command(subcommand)]
    pub what: AlignWhat,
}

#[derive(Subcommand, Debug)]
pub enum AlignWhat {
    /// f-DPO on a character language model: the SFT model is a `--task charlm` run; pairs of its completions are
    /// labelled by a reward; the policy is evaluated on held-out prompts (reward, KL to the reference, diversity).
    #[command(
        after_help = "Examples:\n  optlab train --task charlm --steps 1000 --out runs/sft\n  optlab align dpo --sft runs/sft --divergence js --beta 0.1 --out runs/dpo-js\n  optlab align dpo --resume runs/dpo-js     # continue a killed or stopped run bit-exactly\n\nDivergences (the official code's losses): reverse-kl (standard DPO), forward-kl, js, alpha:A with A in (0, 1).\nThe loss is -log sigmoid(beta (f'(u_w) - f'(u_l))), u = pi/pi_ref of the chosen (w) and rejected (l) completion.\nPairs: for each prompt (a --prompt-len snippet of the SFT run's text) two completions of --completion-len\ncharacters sampled from the SFT model; the one with the higher --reward is chosen (ties are redrawn).\nWrites DIR/metrics.jsonl (steps and evaluations), summary.json, model.safetensors, loss.png, eval.png and a\ncheckpoint after every epoch (--stop-after E stops after epoch E; --resume continues)."
    )]
    Dpo(DpoArgs),
    /// The exact check: softmax logits over K responses trained on the f-DPO population loss of Bradley-Terry
    /// preferences, against the optimum f'(pi/pi_ref) = r/beta + c.
    #[command(
        after_help = "Example:\n  optlab align bandit --divergence forward-kl --beta 0.5 --reference 0.4,0.3,0.2,0.1 --reward 0,0.5,1,-0.5"
    )]
    Bandit(BanditArgs),
}

#[derive(Args, Debug, serde::Serialize, serde::Deserialize)]
pub struct DpoArgs {
    /// Continue the killed or stopped run in DIR bit-exactly from its latest checkpoint (its settings come from
    /// DIR/config.toml).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["sft", "out", "divergence", "beta", "label_smoothing", "reference_free", "reward", "pairs", "prompt_len", "completion_len", "eval_prompts", "epochs", "batch_size", "optimizer", "seed"])]
    #[serde(skip)]
    resume: Option<PathBuf>,
    /// Stop, checkpointed, after epoch E; continue with --resume.
    #[arg(long)]
    #[serde(skip)]
    stop_after: Option<u64>,
    /// The SFT model: a run directory of `optlab train --task charlm`.
    #[arg(long)]
    sft: Option<PathBuf>,
    /// The run directory (required unless --resume).
    #[arg(long)]
    out: Option<PathBuf>,
    /// reverse-kl, forward-kl, js or alpha:A (A in (0, 1)).
    #[arg(long, default_value = "reverse-kl")]
    divergence: String,
    #[arg(long, default_value_t = 0.1)]
    beta: f64,
    /// Conservative DPO: the probability that a label is flipped, in [0, 0.5).
    #[arg(long, default_value_t = 0.0)]
    label_smoothing: f64,
    /// Ignore the reference in the loss (a uniform reference).
    #[arg(long)]
    reference_free: bool,
    /// chars:SET, the fraction of completion characters in SET.
    #[arg(long, default_value = "chars:aeiou")]
    reward: String,
    /// Preference pairs.
    #[arg(long, default_value_t = 512)]
    pairs: usize,
    #[arg(long, default_value_t = 16)]
    prompt_len: usize,
    #[arg(long, default_value_t = 24)]
    completion_len: usize,
    /// Held-out prompts for the evaluations.
    #[arg(long, default_value_t = 128)]
    eval_prompts: usize,
    #[arg(long, default_value_t = 4)]
    epochs: usize,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[arg(long, default_value = "adam:lr=1e-3")]
    optimizer: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The summary as one JSON object on stdout.
    #[arg(long)]
    #[serde(skip)]
    json: bool,
    /// No progress bar.
    #[arg(long)]
    #[serde(skip)]
    quiet: bool,
}

resumable!(DpoArgs: stop_after, json, quiet);

#[derive(Args, Debug)]
pub struct BanditArgs {
    #[arg(long, default_value = "reverse-kl")]
    divergence: String,
    #[arg(long, default_value_t = 0.5)]
    beta: f64,
    /// The reference probabilities, comma-separated (they must sum to 1).
    #[arg(long, default_value = "0.3,0.25,0.2,0.15,0.1")]
    reference: String,
    /// The Bradley-Terry rewards, comma-separated.
    #[arg(long, default_value = "0.2,-0.4,1,0.5,-1")]
    reward: String,
    /// The optimizer of the logits.
    #[arg(long, default_value = "adam:lr=0.02")]
    optimizer: String,
    #[arg(long, default_value_t = 20_000)]
    steps: usize,
    #[arg(long)]
    json: bool,
}

pub fn run(a: AlignArgs) -> Result<()> {
    match a.what {
        AlignWhat::Dpo(d) => dpo(d),
        AlignWhat::Bandit(b) => bandit(b),
    }
}

fn numbers(what: &str, s: &str) -> Result<Vec<f64>> {
    s.split(',')
        .map(|v| {
            v.trim()
                .parse::<f64>()
                .with_context(|| format!("--{what}: '{v}' is not a number"))
        })
        .collect()
}

fn bandit(b: BanditArgs) -> Result<()> {
    let divergence: Divergence = b.divergence.parse()?;
    let bandit = PreferenceBandit::new(
        numbers("reference", &b.reference)?,
        numbers("reward", &b.reward)?,
    )?;
    let loss = DpoLoss {
        divergence,
        beta: b.beta,
        ..DpoLoss::default()
    };
    let exact = bandit.optimum(divergence, b.beta)?;
    let fit = bandit.fit(
        &loss,
        &FitConfig {
            optimizer: b.optimizer,
            steps: b.steps,
            ..FitConfig::default()
        },
    )?;
    let err = fit
        .policy
        .iter()
        .zip(&exact)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f64::max);
    if b.json {
        println!(
            "{}",
            json!({"divergence": divergence.to_string(), "beta": b.beta, "reference": bandit.reference,
                   "reward": bandit.reward, "exact": exact, "trained": fit.policy, "max_abs_error": err,
                   "steps": fit.steps, "loss": fit.loss, "grad_max": fit.grad_max})
        );
        return Ok(());
    }
    println!("f-DPO optimum, {divergence}, beta {}:", b.beta);
    println!(
        "{:>3} {:>9} {:>8} {:>10} {:>10}",
        "y", "pi_ref", "reward", "exact", "trained"
    );
    for (i, (((q, r), e), t)) in bandit
        .reference
        .iter()
        .zip(&bandit.reward)
        .zip(&exact)
        .zip(&fit.policy)
        .enumerate()
    {
        println!("{i:>3} {q:>9.4} {r:>8.3} {e:>10.6} {t:>10.6}");
    }
    println!(
        "max |trained - exact| = {err:.2e} after {} steps (loss {:.6}, largest gradient entry {:.1e})",
        fit.steps, fit.loss, fit.grad_max
    );
    Ok(())
}

fn eval_line(e: &LmEvaluation) -> serde_json::Value {
    json!({"eval": e})
}

/// `align dpo`: a fresh run, or `--resume DIR` with the flags DIR/config.toml recorded.
fn dpo(d: DpoArgs) -> Result<()> {
    let (d, out) = resolve_run(d, "align dpo")?;
    let Some(sft) = d.sft.clone() else {
        bail!("align dpo needs --sft RUN (or --resume DIR)");
    };
    let cfg = LmDpoConfig {
        loss: DpoLoss {
            divergence: d.divergence.parse()?,
            beta: d.beta,
            label_smoothing: d.label_smoothing,
            reference_free: d.reference_free,
        },
        reward: d.reward.parse()?,
        pairs: d.pairs,
        prompt_len: d.prompt_len,
        completion_len: d.completion_len,
        eval_prompts: d.eval_prompts,
        epochs: d.epochs,
        batch_size: d.batch_size,
        optimizer: d.optimizer.clone(),
        seed: d.seed,
    };
    cfg.loss.validate()?;
    optlab::optim::from_spec(&cfg.optimizer)?;
    if d.stop_after == Some(0) {
        bail!("--stop-after must be at least 1 epoch");
    }
    let sft = std::fs::canonicalize(&sft)
        .with_context(|| format!("--sft {}: no such run directory", sft.display()))?;
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let recorded = DpoArgs {
        sft: Some(sft.clone()),
        ..d
    };
    let config = toml::to_string(&recorded).context("recording the flags")?;
    let d = recorded;
    let mut s = Session::open(
        &out,
        d.resume.is_some(),
        &config,
        "metrics.jsonl",
        "dpo",
        cfg.epochs as u64,
        1,
        d.stop_after,
        d.quiet,
    )?;
    s.bar.set_message("sampling preference pairs");
    let mut run = LmDpo::new(&sft, cfg)?;
    let reference = match &s.resume {
        Some(r) => {
            run.load(r)?;
            r.value::<LmEvaluation>("reference_eval")?
        }
        None => {
            let e = run.evaluate(true)?;
            s.line(&eval_line(&e))?;
            e
        }
    };
    let per_epoch = run.cfg.pairs.div_ceil(run.cfg.batch_size) as u64;
    s.bar.set_length(per_epoch * run.cfg.epochs as u64);
    s.bar.set_position(run.step);
    while run.epoch < run.cfg.epochs {
        let mut lines = Vec::new();
        let bar = s.bar.clone();
        run.run_epoch(&mut |m| {
            bar.set_position(m.step);
            bar.set_message(format!(
                "epoch {} loss {:.4} acc {:.2}",
                m.epoch, m.loss, m.accuracy
            ));
            lines.push(json!(m));
        })?;
        for l in &lines {
            s.line(l)?;
        }
        let e = run.evaluate(false)?;
        s.line(&eval_line(&e))?;
        let epoch = run.epoch as u64;
        let save = |w: &mut Writer| {
            run.save(w)?;
            w.value("reference_eval", &reference)
        };
        if epoch < run.cfg.epochs as u64 && s.checkpoint_if_due(epoch, save)? == Due::Stop {
            s.stopped_after(&format!("epoch {epoch} of {}", run.cfg.epochs), "align dpo");
            return Ok(());
        }
    }
    s.bar.finish_and_clear();
    run.policy.net.save(&out.join("model.safetensors"))?;
    let final_eval = run.evaluate(false)?;
    let summary = json!({
        "divergence": run.cfg.loss.divergence.to_string(), "beta": run.cfg.loss.beta, "reward": run.cfg.reward.to_string(),
        "pairs": run.cfg.pairs, "epochs": run.cfg.epochs, "steps": run.step, "seed": run.cfg.seed,
        "reference": reference, "policy": final_eval, "seconds": s.seconds(),
    });
    optlab::tensor_io::write_atomic(
        &out.join("summary.json"),
        format!("{summary:#}\n").as_bytes(),
    )?;
    plots(&out)?;
    if d.json {
        println!("{summary}");
    } else {
        println!(
            "{} beta {}: reward {:.3} -> {:.3}, KL {:.3}, entropy/token {:.3} -> {:.3}, distinct-2 {:.3} -> {:.3} ({} steps, {:.0} s); {}",
            run.cfg.loss.divergence, run.cfg.loss.beta, reference.reward, final_eval.reward, final_eval.kl,
            reference.entropy, final_eval.entropy, reference.distinct[1], final_eval.distinct[1], run.step,
            s.seconds(), out.display()
        );
    }
    Ok(())
}

/// loss.png (per step) and eval.png (reward, KL, entropy per epoch) from metrics.jsonl.
fn plots(out: &std::path::Path) -> Result<()> {
    let text = std::fs::read_to_string(out.join("metrics.jsonl"))?;
    let (mut loss, mut reward, mut kl, mut entropy) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        if let Some(e) = v.get("eval") {
            let x = e["epoch"].as_f64().unwrap_or(0.0);
            reward.push((x, e["reward"].as_f64().unwrap_or(f64::NAN)));
            kl.push((x, e["kl"].as_f64().unwrap_or(f64::NAN)));
            entropy.push((x, e["entropy"].as_f64().unwrap_or(f64::NAN)));
        } else {
            loss.push((
                v["step"].as_f64().unwrap_or(0.0),
                v["loss"].as_f64().unwrap_or(f64::NAN),
            ));
        }
    }
    let series = |name: &str, points: Vec<(f64, f64)>| Series {
        name: name.into(),
        points,
    };
    line_chart(
        &out.join("loss.png"),
        "f-DPO loss",
        "step",
        "loss",
        &[series("", loss)],
        false,
    )?;
    line_chart(
        &out.join("eval.png"),
        "held-out samples",
        "epoch",
        "value",
        &[
            series("reward", reward),
            series("KL to reference", kl),
            series("entropy per token", entropy),
        ],
        false,
    )
}
