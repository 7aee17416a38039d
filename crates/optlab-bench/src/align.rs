//! `optlab-bench align`: one f-DPO step (reverse KL, β 0.1, Adam) of the `charlm` task's transformer (2 pre-norm
//! layers, dim 64, 4 heads, LayerNorm; vocabulary 62, context 64) on 32 preference pairs of 16-token prompts and
//! 24-token completions, optlab against PyTorch (`python/dpo_torch.py`, the official code's concatenated forward)
//! in the same run. Both sides take the 40 tokens of each sequence (optlab pads a batch to its longest sequence);
//! PyTorch is also timed padded to the full context of 64, for reference.

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use clap::Args;
use optlab::alignment::lm::CharModel;
use optlab::alignment::DpoLoss;
use optlab::nn::{ModelSpec, Sequential};
use optlab::optim::from_spec;

#[derive(Args, Debug)]
pub struct AlignBenchArgs {
    /// Timed steps per repetition (best of 3 repetitions is reported).
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    #[command(flatten)]
    pub torch: crate::harness::TorchSide,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

const DIMS: [usize; 5] = [62, 64, 64, 4, 2];
const PAIRS: usize = 32;
const PROMPT: usize = 16;
const COMPLETION: usize = 24;
const BETA: f64 = 0.1;

fn optlab_ms(steps: usize) -> Result<f64> {
    let [vocab, ctx, dim, heads, layers] = DIMS;
    let spec = ModelSpec::parse(&format!(
        "transformer:layers={layers},dim={dim},heads={heads},mlp=4,norm=ln"
    ))?;
    let model = CharModel {
        net: Sequential::new(&spec, &[ctx], vocab, 0, DType::F32)?,
        vocab: (0..vocab as u32)
            .map(|i| char::from_u32(0x21 + i).unwrap_or('?'))
            .collect(),
        context: ctx,
    };
    let ids = |k: usize, len: usize, salt: usize| -> Vec<u32> {
        (0..len)
            .map(|j| ((k * 31 + j * 7 + salt) % vocab) as u32)
            .collect()
    };
    let prompts: Vec<Vec<u32>> = (0..PAIRS).map(|k| ids(k, PROMPT, 0)).collect();
    let chosen: Vec<Vec<u32>> = (0..PAIRS).map(|k| ids(k, COMPLETION, 3)).collect();
    let rejected: Vec<Vec<u32>> = (0..PAIRS).map(|k| ids(k, COMPLETION, 5)).collect();
    let reference = Tensor::from_vec(
        (0..2 * PAIRS)
            .map(|i| -20.0 - (i % 7) as f32)
            .collect::<Vec<_>>(),
        2 * PAIRS,
        &Device::Cpu,
    )?;
    let (rc, rr) = (
        reference.narrow(0, 0, PAIRS)?,
        reference.narrow(0, PAIRS, PAIRS)?,
    );
    let loss = DpoLoss {
        beta: BETA,
        ..DpoLoss::default()
    };
    let params = model.net.params();
    let mut opt = from_spec("adam:lr=1e-3")?;
    crate::harness::best_ms(steps, || {
        let (pc, pr) = model.pair_logprobs(&prompts, &chosen, &rejected)?;
        let l = loss.forward(&pc, &pr, &rc, &rr)?.losses.mean_all()?;
        opt.step(&params, &l.backward()?)?;
        Ok(())
    })
}

pub fn run(a: AlignBenchArgs) -> Result<()> {
    anyhow::ensure!(a.steps >= 1, "--steps must be at least 1");
    let ours = optlab_ms(a.steps)?;
    let cfg = serde_json::json!({"dims": DIMS, "pairs": PAIRS, "prompt_len": PROMPT, "completion_len": COMPLETION, "beta": BETA});
    let torch = a
        .torch
        .run("dpo_torch.py", &[cfg.to_string(), a.steps.to_string()]);
    let side = |key: &str| torch.as_ref().and_then(|v| v[key].as_f64());
    if a.json {
        let case = |key: &str| {
            serde_json::json!({
                "torch_ms_per_step": side(key),
                "ratio_optlab_over_torch": side(key).map(|t| ours / t),
            })
        };
        println!(
            "{}",
            serde_json::json!({
                "bench": "align",
                "config": cfg,
                "optlab_ms_per_step": ours,
                "torch_trimmed": case("trimmed"),
                "torch_padded": case("padded"),
            })
        );
        return Ok(());
    }
    println!(
        "optlab-bench align (f-DPO step, reverse KL: concatenated forward of {PAIRS} pairs, backward, Adam; best of 3 x {} steps)",
        a.steps
    );
    println!("{:<44} {:>10} {:>16}", "case", "ms/step", "optlab / this");
    println!("{:<44} {:>10.3} {:>16}", "optlab (40 tokens)", ours, "");
    for (key, label) in [
        ("trimmed", "PyTorch (40 tokens)"),
        ("padded", "PyTorch, padded to the context (64 tokens)"),
    ] {
        match side(key) {
            Some(t) => println!("{label:<44} {t:>10.3} {:>15.2}x", ours / t),
            None => println!("{label:<44} {:>10} {:>16}", "n/a", "n/a (no torch)"),
        }
    }
    Ok(())
}
