//! `optlab lipschitz`: a sound Lipschitz bound of a network given as a PyTorch state dict (P02, P14).

use anyhow::{bail, Result};
use clap::Args;
use optlab::lipschitz::naive::{naive_bound, Norm};
use optlab::lipschitz::network::Network;
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  optlab lipschitz model.safetensors --method naive --norm inf\n  optlab lipschitz cnn.safetensors --spec cnn.json --norm 2 --json\n\nThe model is an nn.Sequential state dict (keys 0.weight, 0.bias, 2.weight, ...) of Linear, Conv2d, ReLU,\nFlatten and MaxMin layers. Without --spec, modules between weighted layers are ReLU (and ReLU, Flatten between a\nConv2d and a Linear). A spec names them and gives the input shape of convolutional nets:\n  {\"input_shape\": [1, 28, 28], \"layers\": [\"conv2d:stride=1,padding=1\", \"relu\", \"flatten\", \"linear\"]}"
)]
pub struct LipschitzArgs {
    /// The network's state dict (safetensors).
    pub model: PathBuf,
    /// Bound: naive (product of sound per-layer operator norms).
    #[arg(long, default_value = "naive")]
    pub method: String,
    /// Input and output norm: inf or 2.
    #[arg(long, default_value = "inf")]
    pub norm: String,
    /// Architecture spec (JSON).
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// One JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: LipschitzArgs) -> Result<()> {
    let norm = Norm::parse(&a.norm)?;
    if a.method != "naive" {
        bail!("--method {}: available in this version: naive", a.method);
    }
    let start = std::time::Instant::now();
    let net = Network::load(&a.model, a.spec.as_deref())?;
    let nb = naive_bound(&net, norm)?;
    let seconds = start.elapsed().as_secs_f64();
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "model": a.model.display().to_string(), "method": "naive", "norm": nb.norm, "bound": nb.bound,
                "seconds": seconds, "layers": nb.layers,
                "architecture": net.layers.iter().map(|l| l.name()).collect::<Vec<_>>(),
            })
        );
        return Ok(());
    }
    println!(
        "naive l{} Lipschitz bound {:.6e} ({} layers, {:.3} s)",
        a.norm,
        nb.bound,
        net.layers.len(),
        seconds
    );
    for l in &nb.layers {
        match (l.power_estimate, l.power_iterations, l.power_change) {
            (Some(e), Some(i), Some(c)) => println!(
                "  {:<45} {:>12.6}   power iteration {e:.6} after {i} iterations (last change {c:.1e})",
                l.layer, l.bound
            ),
            _ => println!("  {:<45} {:>12.6}", l.layer, l.bound),
        }
    }
    Ok(())
}
