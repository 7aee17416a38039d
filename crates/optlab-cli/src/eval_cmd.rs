//! `optlab eval`: a trained run's model, or a PyTorch nn.Sequential state dict, applied to data: loss, accuracy
//! and per-example predictions.

use anyhow::{bail, Context, Result};
use clap::Args;
use optlab::data::DataSpec;
use optlab::eval::{eval_network, eval_run, Evaluation};
use optlab::lipschitz::network::Network;
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  optlab eval runs/adamw                          # the run's own validation split\n  optlab eval runs/adamw --data csv:path=test.csv,label=y --out preds.csv\n  optlab eval model.safetensors --data idx:images=t10k-images-idx3-ubyte,labels=t10k-labels-idx1-ubyte --json\n\nA run directory brings its architecture (config.toml); a .safetensors file is read as a PyTorch nn.Sequential\n(Linear, Conv2d, ReLU, Flatten, MaxMin; --spec names the modules as for `optlab lipschitz`). The predictions CSV\nhas index,label,predicted,p_0,... for classes and index,target_0,...,predicted_0,... for real-valued targets."
)]
pub struct EvalArgs {
    /// A run directory of `optlab train`, or a model's state dict (.safetensors).
    pub model: PathBuf,
    /// Data spec (see `optlab train --help`) [default for a run: its validation split].
    #[arg(long)]
    pub data: Option<String>,
    /// JSON architecture spec of a state dict (see `optlab lipschitz --help`).
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Seed of synthetic data sets.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the per-example predictions as CSV.
    #[arg(long, value_name = "predictions.csv")]
    pub out: Option<PathBuf>,
    /// One JSON object on stdout (the loss, accuracy and counts; predictions go to --out).
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: EvalArgs) -> Result<()> {
    let data: Option<DataSpec> = a.data.as_deref().map(str::parse).transpose()?;
    let e: Evaluation = if a.model.is_dir() {
        if a.spec.is_some() {
            bail!("--spec describes a state dict; a run directory brings its own architecture");
        }
        eval_run(&a.model, data.as_ref())?
    } else {
        let Some(data) = &data else {
            bail!("an imported model needs --data SPEC (e.g. --data csv:path=test.csv,label=y)");
        };
        let net = Network::load(&a.model, a.spec.as_deref())?;
        eval_network(&net, &a.model.display().to_string(), data, a.seed)?
    };
    if let Some(out) = &a.out {
        let csv = e.predictions_csv()?;
        optlab::tensor_io::write_atomic(out, csv.as_bytes())
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    if a.json {
        let mut v = serde_json::to_value(&e)?;
        if let Some(o) = v.as_object_mut() {
            o.remove("predictions");
            if let Some(out) = &a.out {
                o.insert("predictions_csv".into(), out.display().to_string().into());
            }
        }
        println!("{v}");
        return Ok(());
    }
    println!(
        "{} on {}: {} examples, loss {:.6}{}",
        e.model,
        e.data,
        e.examples,
        e.loss,
        e.accuracy
            .map_or(String::new(), |acc| format!(", accuracy {acc:.4}"))
    );
    if let Some(out) = &a.out {
        println!("predictions: {}", out.display());
    }
    Ok(())
}
