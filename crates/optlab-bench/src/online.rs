//! `optlab-bench online`: rounds per second of one core for (1) composite stochastic mirror descent (P06) on a
//! least-squares finite sum, d = 100, and (2) the SEA harness (P32) with OGD and optimistic OMD on the d = 100
//! least-squares sequence, each next to its floor measured in the same run: the bare arithmetic of a round (one
//! sampled row's dot product and update for CSMD; the d normal draws that make a round's loss for SEA).

use anyhow::Result;
use clap::Args;
use optlab::online::csmd::{Csmd, GradientNoise};
use optlab::online::geometry::{Composite, Domain, Geometry, Mirror};
use optlab::online::learners::LearnerConfig;
use optlab::online::problems::{LinearLoss, Pointwise};
use optlab::online::regret::play;
use optlab::online::sea::SeaConfig;
use optlab::online::steps::{StepRule, StepShape};
use optlab::rng::{rng_for, ziggurat, Stream};
use optlab::Spec;
use rand::Rng as _;
use std::hint::black_box;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct OnlineBenchArgs {
    /// Rounds per timed run (best of 3 runs is reported).
    #[arg(long, default_value_t = 2_000_000)]
    pub rounds: u64,
    #[arg(long, default_value_t = 100)]
    pub dim: usize,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Best of three: rounds per second of `f(rounds)`.
fn rate(rounds: u64, mut f: impl FnMut(u64)) -> f64 {
    f(rounds / 10);
    (0..3)
        .map(|_| {
            let t = Instant::now();
            f(rounds);
            rounds as f64 / t.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

pub fn run(a: OnlineBenchArgs) -> Result<()> {
    let d = a.dim;
    let n = 1000;
    let mut rng = rng_for(0, Stream::Data, 0);
    let rows: Vec<f64> = (0..n * d)
        .map(|_| ziggurat(&mut rng) / (d as f64).sqrt())
        .collect();
    let b: Vec<f64> = (0..n).map(|_| ziggurat(&mut rng)).collect();
    let f = LinearLoss::new(Pointwise::Squared, rows.clone(), b.clone(), d)?;
    let csmd = Csmd {
        geometry: Geometry::new(
            Domain::Ball { radius: 10.0 },
            Mirror::Euclidean,
            Composite::L1(1e-3),
        )?,
        rule: StepRule::new(StepShape::Anytime { p: 2.0 }, 0.1, 0.0)?,
        noise: GradientNoise::None,
    };
    let csmd_rate = rate(a.rounds, |t| {
        let mut rng = rng_for(1, Stream::Solver, 0);
        black_box(csmd.run(&f, t, &mut rng));
    });
    // Floor: sample a row, one dot product, one axpy.
    let floor_rate = rate(a.rounds, |t| {
        let mut rng = rng_for(1, Stream::Solver, 0);
        let mut x = vec![0.0; d];
        for _ in 0..t {
            let i = rng.gen_range(0..n);
            let r = &rows[i * d..(i + 1) * d];
            let s: f64 = r.iter().zip(&x).map(|(p, q)| p * q).sum::<f64>() - b[i];
            for (xj, rj) in x.iter_mut().zip(r) {
                *xj -= 1e-3 * s * rj;
            }
        }
        black_box(x);
    });
    let seq = SeaConfig::from_spec(&mut Spec::parse(&format!(
        "sea:sigma=1,Sigma=1,drift=adversarial,dim={d}"
    ))?)?;
    let mut sea_rates = Vec::new();
    for learner in ["ogd", "oomd"] {
        let l = LearnerConfig::from_spec(&mut Spec::parse(learner)?)?;
        let r = rate(a.rounds, |t| {
            black_box(play(&seq, &l, t, &[t], 0).expect("a valid sequence"));
        });
        sea_rates.push((learner, r));
    }
    let draw_rate = rate(a.rounds, |t| {
        let mut rng = optlab::rng::Fast::for_stream(1, Stream::Data, 0);
        let mut buf = vec![0.0; d];
        for _ in 0..t {
            optlab::rng::fill_normals(&mut rng, &mut buf);
            black_box(&buf);
        }
    });
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "dim": d, "rounds": a.rounds,
                "csmd_rounds_per_s": csmd_rate, "csmd_floor_rounds_per_s": floor_rate,
                "sea": sea_rates.iter().map(|(l, r)| serde_json::json!({"learner": l, "rounds_per_s": r})).collect::<Vec<_>>(),
                "sea_draw_floor_rounds_per_s": draw_rate,
            })
        );
        return Ok(());
    }
    println!(
        "one core, d = {d}, {} rounds per timed run, best of 3",
        a.rounds
    );
    println!(
        "{:<52} {:>14} {:>10} {:>16}",
        "case", "rounds/s", "ns/round", "floor ratio"
    );
    println!(
        "{:<52} {:>14.3e} {:>10.1} {:>15.2}x",
        "CSMD, least squares n=1000, ball + L1 prox",
        csmd_rate,
        1e9 / csmd_rate,
        floor_rate / csmd_rate
    );
    println!(
        "{:<52} {:>14.3e} {:>10.1}",
        "  floor: sampled row dot + axpy",
        floor_rate,
        1e9 / floor_rate
    );
    for (l, r) in &sea_rates {
        println!(
            "{:<52} {:>14.3e} {:>10.1} {:>15.2}x",
            format!("SEA lsq (adversarial drift, sigma=1) + {l}"),
            r,
            1e9 / r,
            draw_rate / r
        );
    }
    println!(
        "{:<52} {:>14.3e} {:>10.1}",
        "  floor: d normal draws per round",
        draw_rate,
        1e9 / draw_rate
    );
    Ok(())
}
