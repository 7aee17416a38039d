//! `optlab-bench diffusion`: the score network of `optlab diffusion train` (an MLP of the 2-D point and 8 time
//! features, hidden 128-128-128, GELU; VP process) against PyTorch (`python/diffusion_torch.py`) in the same run:
//! one denoising-score-matching step (batch 256, Adam), and Euler–Maruyama sampling throughput (2000 samples,
//! 1000 reverse-SDE steps).

use anyhow::Result;
use candle_core::DType;
use clap::Args;
use optlab::generative::dsm::dsm_loss;
use optlab::generative::mixture::Mixture;
use optlab::generative::process::Process;
use optlab::generative::sample::{sample, Sampler};
use optlab::generative::score::ScoreNet;
use optlab::nn::ModelSpec;
use optlab::optim::from_spec;
use optlab::rng::{rng_for, Stream};

#[derive(Args, Debug)]
pub struct DiffusionBenchArgs {
    /// Timed DSM steps per repetition (best of 3 repetitions is reported).
    #[arg(long, default_value_t = 200)]
    pub steps: usize,
    /// Samples of the throughput run.
    #[arg(long, default_value_t = 2000)]
    pub n: usize,
    /// Reverse-SDE steps of the throughput run.
    #[arg(long, default_value_t = 1000)]
    pub em_steps: usize,
    #[command(flatten)]
    pub torch: crate::harness::TorchSide,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

const HIDDEN: [usize; 3] = [128, 128, 128];
const BATCH: usize = 256;

pub fn run(a: DiffusionBenchArgs) -> Result<()> {
    anyhow::ensure!(
        a.steps >= 1 && a.n >= 1 && a.em_steps >= 1,
        "--steps, --n and --em-steps must be at least 1"
    );
    let process = Process::default();
    let spec = ModelSpec::parse("mlp:hidden=128-128-128,act=gelu")?;
    let net = ScoreNet::new(&spec, 2, process, 0, DType::F32)?;
    let target: Mixture = "ring".parse()?;
    let mut rng = rng_for(0, Stream::Data, 0);
    let data = target.sample(2000, &mut rng);
    let params = net.net.params();
    let mut opt = from_spec("adam:lr=1e-3")?;
    let dsm = crate::harness::best_ms(a.steps, || {
        let loss = dsm_loss(&net, &data, BATCH, &mut rng)?;
        opt.step(&params, &loss.backward()?)?;
        Ok(())
    })?;
    let start = std::time::Instant::now();
    sample(
        &net,
        &process,
        Sampler::EulerMaruyama,
        a.n,
        a.em_steps,
        &mut rng,
    )?;
    let em = a.n as f64 / start.elapsed().as_secs_f64();
    let cfg =
        serde_json::json!({"hidden": HIDDEN, "batch": BATCH, "n": a.n, "em_steps": a.em_steps});
    let torch = a.torch.run(
        "diffusion_torch.py",
        &[cfg.to_string(), a.steps.to_string()],
    );
    let t_dsm = torch.as_ref().and_then(|v| v["dsm_ms"].as_f64());
    let t_em = torch.as_ref().and_then(|v| v["em_samples_per_s"].as_f64());
    if a.json {
        use crate::harness::ratio;
        // The sampling run's time in ms.
        let em_ms = |rate: f64| 1e3 * a.n as f64 / rate;
        println!(
            "{}",
            serde_json::json!({
                "bench": "diffusion",
                "config": cfg,
                "steps": a.steps,
                "dsm": {
                    "optlab_ms_per_step": dsm,
                    "torch_ms_per_step": t_dsm,
                    "ratio_optlab_over_torch": ratio(Some(dsm), t_dsm),
                },
                "em": {
                    "optlab_samples_per_s": em,
                    "torch_samples_per_s": t_em,
                    "optlab_ms": em_ms(em),
                    "torch_ms": t_em.map(em_ms),
                    "ratio_optlab_over_torch": ratio(Some(em_ms(em)), t_em.map(em_ms)),
                },
            })
        );
        return Ok(());
    }
    println!(
        "optlab-bench diffusion (score MLP 10-128-128-128-2 GELU, VP; DSM batch {BATCH} + Adam, best of 3 x {} steps; Euler-Maruyama {} samples x {} steps)",
        a.steps, a.n, a.em_steps
    );
    println!(
        "{:<28} {:>14} {:>14} {:>16}",
        "case", "optlab", "PyTorch", "optlab / torch"
    );
    let show = |v: Option<f64>| v.map_or("n/a".to_string(), |x| format!("{x:.3}"));
    println!(
        "{:<28} {:>14.3} {:>14} {:>16}",
        "DSM step (ms)",
        dsm,
        show(t_dsm),
        t_dsm.map_or("n/a (no torch)".into(), |t| format!("{:.2}x time", dsm / t))
    );
    println!(
        "{:<28} {:>14.1} {:>14} {:>16}",
        "EM sampling (samples/s)",
        em,
        show(t_em),
        t_em.map_or("n/a (no torch)".into(), |t| format!("{:.2}x time", t / em))
    );
    Ok(())
}
