//! `optlab hparams`: Step Law's optimal learning rate and batch size (P17), and moving a stable learning rate
//! to another batch size (P36).

use anyhow::{bail, Result};
use clap::Args;
use optlab::curvature::stable_lr_for_batch;
use optlab::scaling::step_law;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  optlab hparams --params 1e9 --tokens 1e11 --seq-len 2048\n  optlab hparams --params 1e9 --tokens 1e11 --json\n  optlab hparams --scale-batch --lr 0.1 --from 32 --to 256 --optimizer sgd"
)]
pub struct HparamsArgs {
    /// Non-embedding parameters N (e.g. 1e9).
    #[arg(long)]
    pub params: Option<f64>,
    /// Training tokens D (e.g. 1e11).
    #[arg(long)]
    pub tokens: Option<f64>,
    /// Sequence length, to express the batch in sequences.
    #[arg(long)]
    pub seq_len: Option<f64>,
    /// Instead: move a (largest stable) learning rate from batch size --from to --to.
    #[arg(long, requires_all = ["lr", "from", "to"])]
    pub scale_batch: bool,
    /// The learning rate measured at batch size --from.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Batch size the learning rate was measured at.
    #[arg(long)]
    pub from: Option<usize>,
    /// Batch size to move it to.
    #[arg(long)]
    pub to: Option<usize>,
    /// sgd (linear rule) or adam (square-root rule).
    #[arg(long, default_value = "sgd")]
    pub optimizer: String,
    /// One JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: HparamsArgs) -> Result<()> {
    if a.scale_batch {
        let (lr, from, to) = (a.lr.unwrap_or(0.0), a.from.unwrap_or(0), a.to.unwrap_or(0));
        let new = stable_lr_for_batch(lr, from, to, &a.optimizer)?;
        if a.json {
            println!(
                "{}",
                serde_json::json!({"lr": lr, "from": from, "to": to, "optimizer": a.optimizer, "scaled_lr": new})
            );
        } else {
            let rule = if a.optimizer == "sgd" {
                "linear"
            } else {
                "square-root"
            };
            println!(
                "{} lr {lr:e} at batch {from} -> {new:e} at batch {to} ({rule} rule, P36)",
                a.optimizer
            );
        }
        return Ok(());
    }
    let (Some(n), Some(d)) = (a.params, a.tokens) else {
        bail!("give --params N --tokens D (Step Law), or --scale-batch --lr LR --from B1 --to B2");
    };
    let s = step_law(n, d, a.seq_len)?;
    if a.json {
        println!("{}", serde_json::to_string(&s)?);
        return Ok(());
    }
    println!("Step Law (P17) for N = {n:e} non-embedding parameters, D = {d:e} tokens:");
    println!("  optimal peak lr      {:.4e}", s.lr);
    println!("  optimal batch        {:.4e} tokens", s.batch_tokens);
    if let Some(b) = s.batch_sequences {
        println!(
            "                       {b} sequences of {}",
            a.seq_len.unwrap_or(0.0)
        );
    }
    Ok(())
}
