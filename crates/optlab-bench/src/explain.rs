//! `optlab-bench explain`: the time of P07's Stability measure (K samples, one point; with and without its input
//! gradient) and of T-Rex over `points` points, on German Credit's width (63 features) and the official model size
//! (MLP 128-128, two classes), next to the official TensorFlow code (`python/trex_official.py`) in the same run.
//! τ = 2, which no Stability reaches, makes every search take all 20 steps on both sides.

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
    /// T-Rex searches (one point each, as the official main.py runs them).
    #[arg(long, default_value_t = 100)]
    pub points: usize,
    /// Threads of the TensorFlow side.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Skip the official side.
    #[arg(long)]
    pub no_official: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
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
        tau: 2.0,
        ..TrexConfig::default()
    };
    let bounds = Bounds::uniform(d, -5.0, 5.0)?;
    let points: Vec<Vec<f32>> = (0..a.points)
        .map(|i| (0..d).map(|j| ((i * d + j) as f32 * 0.37).sin()).collect())
        .collect();
    let t = Instant::now();
    for p in &points {
        trex(&net, p, &cfg, &bounds, &mut rng)?;
    }
    let search = t.elapsed().as_secs_f64() * 1e3 / a.points.max(1) as f64;
    let official = crate::harness::python_script(
        "trex_official.py",
        &[a.threads.to_string(), a.points.to_string(), a.k.to_string()],
        a.no_official,
    );
    let theirs = |key: &str| official.as_ref().and_then(|v| v[key].as_f64());
    if a.json {
        let case = |name: &str, ours: f64, key: Option<&str>| {
            let t = key.and_then(theirs);
            serde_json::json!({
                "case": name,
                "optlab_ms": ours,
                "official_ms": t,
                "ratio_optlab_over_official": crate::harness::ratio(Some(ours), t),
            })
        };
        println!(
            "{}",
            serde_json::json!({
                "bench": "explain",
                "k": a.k,
                "points": a.points,
                "cases": [
                    case("stability", value, Some("stability_ms")),
                    case("stability_and_gradient", stab, None),
                    case("trex_per_point", search, Some("trex_ms_per_point")),
                ],
            })
        );
        return Ok(());
    }
    println!(
        "MLP {d}-128-128-2, f32; Stability best of 5; T-Rex over {} points of 20 steps each",
        a.points
    );
    println!(
        "{:<36} {:>10} {:>14} {:>8}",
        "case", "optlab ms", "official ms", "speedup"
    );
    let row = |name: String, ours: f64, key: &str| match theirs(key) {
        Some(t) => println!("{name:<36} {ours:>10.3} {t:>14.3} {:>7.1}x", t / ours),
        None => println!("{name:<36} {ours:>10.3} {:>14} {:>8}", "n/a", "n/a"),
    };
    row(format!("Stability, K = {}", a.k), value, "stability_ms");
    println!(
        "{:<36} {stab:>10.3}",
        format!("Stability + gradient, K = {}", a.k)
    );
    row(
        format!("T-Rex per point, K = {}", a.k),
        search,
        "trex_ms_per_point",
    );
    if official.is_none() && !a.no_official {
        println!("(pip install tensorflow and vendor the official attack_utils.py for the official side; see python/trex_official.py)");
    }
    Ok(())
}
