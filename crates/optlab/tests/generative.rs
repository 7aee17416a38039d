//! The diffusion base against exact answers: sampling the exact score of a mixture reproduces it (both
//! samplers, VP and VE), and a score network trained by denoising score matching approaches the exact score and
//! finds the modes.

use candle_core::DType;
use optlab::generative::dsm::{train, DsmConfig};
use optlab::generative::metrics::{energy_distance, mode_recall, score_error};
use optlab::generative::mixture::Mixture;
use optlab::generative::process::Process;
use optlab::generative::sample::{sample, Sampler};
use optlab::generative::score::{ExactScore, ScoreNet};
use optlab::nn::ModelSpec;
use optlab::rng::{rng_for, Stream};

#[test]
fn sampling_the_exact_score_reproduces_the_mixture() {
    let target: Mixture = "ring:modes=8".parse().unwrap();
    let mut rng = rng_for(3, Stream::Probe, 0);
    let n = 600;
    let a = target.sample(n, &mut rng);
    let b = target.sample(n, &mut rng);
    let floor = energy_distance(&a, &b, 2);
    for process in [Process::default(), "ve:sigma_max=10".parse().unwrap()] {
        for (sampler, steps) in [(Sampler::EulerMaruyama, 500), (Sampler::Heun, 100)] {
            let exact = ExactScore {
                mixture: &target,
                process,
            };
            let x = sample(&exact, &process, sampler, n, steps, &mut rng).unwrap();
            let e = energy_distance(&x, &a, 2);
            let modes = mode_recall(&target, &x);
            eprintln!(
                "{process} {sampler}: energy {e:.4} (two target sets: {floor:.4}), {modes:?}"
            );
            assert_eq!(modes.recalled, 8, "{process} {sampler}: {modes:?}");
            assert!(modes.on_mode > 0.95, "{process} {sampler}: {modes:?}");
            assert!(
                e < 4.0 * floor + 0.01,
                "{process} {sampler}: energy distance {e} vs {floor}"
            );
        }
    }
}

#[test]
fn denoising_score_matching_learns_the_score() {
    let target: Mixture = "ring:modes=8".parse().unwrap();
    let process = Process::default();
    let mut rng = rng_for(0, Stream::Data, 0);
    let data = target.sample(2000, &mut rng);
    let spec = ModelSpec::parse("mlp:hidden=128-128,act=gelu").unwrap();
    let net = ScoreNet::new(&spec, 2, process, 0, DType::F32).unwrap();
    let times = [0.05, 0.2, 0.5];
    let before = score_error(
        &net,
        &target,
        &process,
        &times,
        500,
        &mut rng_for(1, Stream::Probe, 0),
    )
    .unwrap();
    let mut losses = Vec::new();
    let cfg = DsmConfig {
        steps: 600,
        batch_size: 256,
        optimizer: "adam:lr=2e-3".into(),
        seed: 0,
    };
    train(&net, &data, &cfg, &mut |_, l| losses.push(l)).unwrap();
    let after = score_error(
        &net,
        &target,
        &process,
        &times,
        500,
        &mut rng_for(1, Stream::Probe, 0),
    )
    .unwrap();
    let head: f64 = losses[..50].iter().sum::<f64>() / 50.0;
    let tail: f64 = losses[losses.len() - 50..].iter().sum::<f64>() / 50.0;
    eprintln!("loss {head:.3} -> {tail:.3}; before {before:?}; after {after:?}");
    assert!(tail < 0.8 * head, "{head} -> {tail}");
    for (b, a) in before.iter().zip(&after) {
        assert!(
            a.error < 0.5 * b.error,
            "t={}: {} -> {}",
            a.t,
            b.error,
            a.error
        );
    }
    let x = sample(&net, &process, Sampler::Heun, 500, 100, &mut rng).unwrap();
    let modes = mode_recall(&target, &x);
    eprintln!("{modes:?}");
    assert!(modes.recalled >= 7, "{modes:?}");
}
