//! P04's discriminator: its reward is −log(1 − σ(D) + 1e-8) of its logit, it learns to separate expert pairs
//! from policy pairs, and the gradient penalty and spectral normalization keep its input gradients small.

use candle_core::{Device, Tensor, D};
use optlab::nn::penalty::GradientPenalty;
use optlab::rl::gail::{Discriminator, ExpertData, GailConfig};
use optlab::rl::td3::{ReplayBuffer, Td3Extension};
use optlab::rng::{normal, rng_for, Stream};

/// Expert pairs near (s, a) = (1, 1, 1, 1), policy pairs near the origin.
fn data() -> (ExpertData, ReplayBuffer) {
    let mut rng = rng_for(0, Stream::Data, 0);
    let mut e = ExpertData {
        obs: Vec::new(),
        actions: Vec::new(),
        obs_dim: 3,
        act_dim: 1,
        mean_return: 0.0,
    };
    for _ in 0..200 {
        e.obs.extend((0..3).map(|_| 1.0 + 0.1 * normal(&mut rng)));
        e.actions.push(1.0 + 0.1 * normal(&mut rng));
    }
    let mut buf = ReplayBuffer::new(3, 1, 500).unwrap();
    for _ in 0..200 {
        let o: Vec<f64> = (0..3).map(|_| 0.1 * normal(&mut rng)).collect();
        buf.push(&o, &[0.1 * normal(&mut rng)], 0.0, &o, false);
    }
    (e, buf)
}

fn first(t: Tensor) -> f64 {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0] as f64
}

fn grad_norm(d: &Discriminator, x: &Tensor) -> f64 {
    let v = candle_core::Var::from_tensor(x).unwrap();
    let g = d
        .logits(v.as_tensor(), false)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let g = g.get(v.as_tensor()).unwrap();
    g.sqr()
        .unwrap()
        .sum(D::Minus1)
        .unwrap()
        .sqrt()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap() as f64
}

#[test]
fn the_discriminator_separates_and_rewards_expert_pairs() {
    let (expert, buf) = data();
    let mut rng = rng_for(1, Stream::Solver, 0);
    let cfg = GailConfig {
        hidden: vec![32, 32],
        penalty: None,
        ..GailConfig::default()
    };
    let mut d = Discriminator::new(&cfg, expert).unwrap();
    for step in 1..=300 {
        d.update(&buf, &|x: &Tensor| Ok(x.clone()), &mut rng, step)
            .unwrap();
    }
    let e = Tensor::new(&[[1.0f32, 1.0, 1.0]], &Device::Cpu).unwrap();
    let ea = Tensor::new(&[[1.0f32]], &Device::Cpu).unwrap();
    let p = Tensor::new(&[[0.0f32, 0.0, 0.0]], &Device::Cpu).unwrap();
    let pa = Tensor::new(&[[0.0f32]], &Device::Cpu).unwrap();
    let re = first(d.reward(&e, &ea, &e).unwrap().unwrap());
    let rp = first(d.reward(&p, &pa, &p).unwrap().unwrap());
    // The reward is −log(σ(−l) + 1e-8) of the logit.
    let l = d
        .logits(&Tensor::cat(&[&e, &ea], 1).unwrap(), false)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()[0] as f64;
    let want = -(1.0 / (1.0 + l.exp()) + 1e-8).ln();
    assert!(
        (re - want).abs() < 1e-4 * (1.0 + want.abs()),
        "{re} vs {want}"
    );
    assert!(
        re > 1.0 && rp < 0.3,
        "expert reward {re}, policy reward {rp}"
    );
}

#[test]
fn the_penalty_and_spectral_norm_flatten_the_discriminator() {
    let (expert, buf) = data();
    let x = Tensor::new(
        &[[0.5f32, 0.5, 0.5, 0.5], [0.2, 0.8, 0.4, 0.6]],
        &Device::Cpu,
    )
    .unwrap();
    let mut norms = Vec::new();
    for (penalty, spectral) in [
        (None, false),
        (
            Some(GradientPenalty {
                target: 0.1,
                ..GradientPenalty::default()
            }),
            false,
        ),
        (None, true),
    ] {
        let cfg = GailConfig {
            hidden: vec![32, 32],
            penalty,
            spectral,
            label_smoothing: false,
            ..GailConfig::default()
        };
        let mut d = Discriminator::new(&cfg, expert.clone()).unwrap();
        let mut rng = rng_for(1, Stream::Solver, 0);
        for step in 1..=300 {
            d.update(&buf, &|x: &Tensor| Ok(x.clone()), &mut rng, step)
                .unwrap();
        }
        norms.push(grad_norm(&d, &x));
    }
    // Unregularized, D grows steep between the classes; both controls keep it flatter.
    assert!(
        norms[1] < 0.5 * norms[0] && norms[2] < 0.5 * norms[0],
        "{norms:?}"
    );
}
