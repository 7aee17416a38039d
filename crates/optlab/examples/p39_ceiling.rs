//! What a one-step generator of `optlab distill`'s class can reach on a mixture (P39's experiment): the same MLP
//! (2-D latent, 128-128) regressed directly on the exact teacher's probability-flow ODE map, z ↦ ODE(z) (200 Heun
//! steps from the prior), the strongest supervision a one-step student can get. Prints the share of samples on a
//! mode, the split among the modes and the energy distance as training goes, for held-out latents.
//!
//! `cargo run --release -p optlab --example p39_ceiling -- [TARGET] [STEPS] [ACT]` (defaults: ring 2000 relu).

use candle_core::{DType, Device, Tensor};
use optlab::generative::metrics::{energy_distance, mode_recall};
use optlab::generative::mixture::Mixture;
use optlab::generative::process::Process;
use optlab::generative::sample::{sample, Sampler};
use optlab::generative::score::ExactScore;
use optlab::nn::{ModelSpec, Sequential};
use optlab::optim::from_spec;
use optlab::rng::{normal, rng_for, Stream};
use rand::Rng as _;

/// Pairs drawn, of which the last `HELD` are held out.
const PAIRS: usize = 20_000;
const HELD: usize = 2_000;

fn main() -> optlab::Result<()> {
    optlab::runtime::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let target: Mixture = arg(0, "ring").parse()?;
    let steps: usize = arg(1, "2000")
        .parse()
        .ok()
        .filter(|&s| s > 0)
        .ok_or_else(|| optlab::Error::invalid("STEPS must be a positive integer"))?;
    let spec = ModelSpec::parse(&format!("mlp:hidden=128-128,act={}", arg(2, "relu")))?;
    let process = Process::default();
    let teacher = ExactScore {
        mixture: &target,
        process,
    };
    let dim = target.dim;
    // The sampler draws its prior points first, in order: a copy of the random stream replays them as the latents.
    let mut rng = rng_for(0, Stream::Probe, 7);
    let mut replay = rng.clone();
    let x = sample(&teacher, &process, Sampler::Heun, PAIRS, 200, &mut rng)?;
    let z: Vec<f64> = (0..PAIRS * dim)
        .map(|_| process.prior_std() * normal(&mut replay))
        .collect();
    let ode = mode_recall(&target, &x[(PAIRS - HELD) * dim..]);
    println!(
        "{target}: the teacher's ODE samples: {:.1}% on a mode, split {:.3}",
        100.0 * ode.on_mode,
        ode.split_tv
    );
    let as_tensor = |v: &[f64]| {
        Tensor::from_vec(
            v.iter().map(|&a| a as f32).collect::<Vec<_>>(),
            (PAIRS, dim),
            &Device::Cpu,
        )
    };
    let (z, x) = (as_tensor(&z)?, as_tensor(&x)?);
    let generator = Sequential::new(&spec, &[dim], dim, 0, DType::F32)?;
    let mut opt = from_spec("adam:lr=1e-3")?;
    let real = target.sample(HELD, &mut rng);
    for step in 1..=steps {
        let rows: Vec<u32> = (0..256)
            .map(|_| rng.gen_range(0..PAIRS - HELD) as u32)
            .collect();
        let rows = Tensor::new(rows, &Device::Cpu)?;
        let pred = generator.forward(&z.index_select(&rows, 0)?)?;
        let loss = (pred - x.index_select(&rows, 0)?)?.sqr()?.mean_all()?;
        opt.backward_step(&generator.params(), &loss)?;
        if step % (steps / 4).max(1) == 0 || step == steps {
            let held: Vec<f64> = generator
                .forward(&z.narrow(0, PAIRS - HELD, HELD)?)?
                .to_dtype(DType::F64)?
                .flatten_all()?
                .to_vec1()?;
            let m = mode_recall(&target, &held);
            println!(
                "step {step:>6}: {:.1}% on a mode, modes {}/{}, split {:.3}, energy distance {:.4}",
                100.0 * m.on_mode,
                m.recalled,
                m.modes,
                m.split_tv,
                energy_distance(&held, &real, dim)
            );
        }
    }
    Ok(())
}
