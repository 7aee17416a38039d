//! `optlab-bench explain`: the time of P07's Stability measure with its input gradient (K samples, one point) and
//! of one T-Rex search, on German Credit's width (63 features) and the official model size (MLP 128-128, two
//! classes), best of 5.

use anyhow::Result;
use clap::Args;
use optlab::explain::stability::{gaussian_noise, stability_and_gradient, stability_value};
use optlab::explain::trex::{trex, TrexConfig};
use optlab::explain::Bounds;
use optlab::nn::{ModelSpec, Sequential};
use optlab::rng::{rng_for, Stream};
use std::time::Instant;

#[derive(Args, Debug)]
pub struct ExplainBenchArgs {
    /// Stability samples K.
    #[arg(long, default_value_t = 1000)]
    pub k: usize,
    /// Evaluations per timed repetition.
    #[arg(long, default_value_t = 50)]
    pub reps: usize,
}

fn best_ms(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..reps {
            f()?;
        }
        best = best.min(t.elapsed().as_secs_f64() * 1e3 / reps as f64);
    }
    Ok(best)
}

pub fn run(a: ExplainBenchArgs) -> Result<()> {
    let d = 63;
    let spec = ModelSpec::parse("mlp:hidden=128-128,act=relu")?;
    let net = Sequential::new(&spec, &[d], 2, 0, candle_core::DType::F32)?;
    let mut rng = rng_for(0, Stream::Probe, 0);
    let x: Vec<f32> = (0..d).map(|j| (j as f32 * 0.37).sin()).collect();
    let noise = gaussian_noise(a.k, d, 0.05, &mut rng)?;
    let stab = best_ms(a.reps, || {
        stability_and_gradient(&net, &x, &noise, 1)?;
        Ok(())
    })?;
    let value = best_ms(a.reps, || {
        stability_value(&net, &x, &noise, 1)?;
        Ok(())
    })?;
    let cfg = TrexConfig {
        k: a.k,
        ..TrexConfig::default()
    };
    let bounds = Bounds::uniform(d, -5.0, 5.0)?;
    let search = best_ms(1, || {
        trex(&net, &x, &cfg, &bounds, &mut rng)?;
        Ok(())
    })?;
    println!("MLP {d}-128-128-2, f32, best of 5");
    println!("{:<44} {:>10}", "case", "optlab ms");
    println!("{:<44} {value:>10.3}", format!("Stability, K = {}", a.k));
    println!(
        "{:<44} {stab:>10.3}",
        format!("Stability + gradient, K = {}", a.k)
    );
    println!(
        "{:<44} {search:>10.3}",
        format!("T-Rex, {} steps, K = {}", cfg.max_steps, a.k)
    );
    Ok(())
}
