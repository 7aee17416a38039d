//! P24's model-based extension of TD3: the probabilistic model learns a known system from the real buffer, the
//! model buffer fills with one-step branches, agent batches mix real and model transitions in the configured
//! share, and the Bellman gap of a well-fitted model is small against that of an untrained one.

use candle_core::{Device, Tensor};
use optlab::rl::mbpo::{bellman_gap, MbpoConfig, ModelBased};
use optlab::rl::td3::{ReplayBuffer, Td3Extension};
use optlab::rng::{normal, rng_for, Stream};

/// s′ = s + 0.1·(a, a), r = −s₀²; states and actions standard normal.
fn buffer() -> ReplayBuffer {
    let mut rng = rng_for(0, Stream::Data, 0);
    let mut b = ReplayBuffer::new(2, 1, 5000).unwrap();
    for _ in 0..5000 {
        let s = [normal(&mut rng), normal(&mut rng)];
        let a = [normal(&mut rng).clamp(-2.0, 2.0)];
        let s2 = [s[0] + 0.1 * a[0], s[1] + 0.1 * a[0]];
        b.push(&s, &a, -s[0] * s[0], &s2, false);
    }
    b
}

#[test]
fn the_model_learns_the_system_and_feeds_mixed_batches() {
    let buf = buffer();
    let cfg = MbpoConfig {
        hidden: vec![64, 64],
        model_steps: 1500,
        rollouts_per_step: 50,
        real_ratio: 0.25,
        ..MbpoConfig::default()
    };
    let mut ext = ModelBased::new(&cfg, 2, 1, 2.0).unwrap();
    let mut rng = rng_for(1, Stream::Solver, 0);
    let actor =
        |s: &Tensor| -> optlab::Result<Tensor> { Ok(s.narrow(1, 0, 1)?.affine(-0.5, 0.0)?) };
    ext.update(&buf, &actor, &mut rng, 250).unwrap();
    assert_eq!(ext.generated, 50);
    assert!(ext.last_nll[0] < -1.0, "nll {:?}", ext.last_nll);
    // Mean predictions against the true dynamics on fresh points.
    let s = Tensor::new(&[[0.5f32, -1.0], [-1.0, 0.3], [1.2, 0.8]], &Device::Cpu).unwrap();
    let a = Tensor::new(&[[1.0f32], [-1.5], [0.2]], &Device::Cpu).unwrap();
    let (s2, r) = ext.models[0].step(&s, &a, None).unwrap();
    let s2: Vec<Vec<f32>> = s2.to_vec2().unwrap();
    let r: Vec<f32> = r.flatten_all().unwrap().to_vec1().unwrap();
    let sv: Vec<Vec<f32>> = s.to_vec2().unwrap();
    let av: Vec<Vec<f32>> = a.to_vec2().unwrap();
    for i in 0..3 {
        let want = [sv[i][0] + 0.1 * av[i][0], sv[i][1] + 0.1 * av[i][0]];
        for j in 0..2 {
            assert!(
                (s2[i][j] - want[j]).abs() < 0.05,
                "s' {:?} vs {want:?}",
                s2[i]
            );
        }
        assert!(
            (r[i] + sv[i][0] * sv[i][0]).abs() < 0.15,
            "r {} vs {}",
            r[i],
            -sv[i][0] * sv[i][0]
        );
    }
    // Batches: 25% real rows first, then model rows.
    let batch = ext
        .sample(&buf, 40, &mut rng)
        .unwrap()
        .expect("the model buffer has transitions");
    assert_eq!(batch[0].dims(), [40, 2]);
    assert_eq!(batch[2].dims(), [40, 1]);
    // The gap of the trained model is far below an untrained one's (whose stats come from one short fit).
    let states = Tensor::new(
        &[[0.3f32, 0.1], [-0.7, 0.9], [1.1, -0.4], [0.0, 0.5]],
        &Device::Cpu,
    )
    .unwrap();
    let acts = Tensor::new(&[[0.5f32], [-1.0], [1.5], [0.0]], &Device::Cpu).unwrap();
    let sv: Vec<Vec<f32>> = states.to_vec2().unwrap();
    let avv: Vec<Vec<f32>> = acts.to_vec2().unwrap();
    let next: Vec<f32> = (0..4)
        .flat_map(|i| [sv[i][0] + 0.1 * avv[i][0], sv[i][1] + 0.1 * avv[i][0]])
        .collect();
    let rew: Vec<f32> = (0..4).map(|i| -sv[i][0] * sv[i][0]).collect();
    let next = Tensor::from_vec(next, (4, 2), &Device::Cpu).unwrap();
    let rew = Tensor::from_vec(rew, (4, 1), &Device::Cpu).unwrap();
    let v = |s: &Tensor| -> optlab::Result<Tensor> { Ok(s.sqr()?.sum_keepdim(1)?.neg()?) };
    let trained = bellman_gap(&ext.models, &states, &acts, &next, &rew, 0.99, &v).unwrap();
    let mut raw = ModelBased::new(
        &MbpoConfig {
            model_steps: 1,
            ..cfg.clone()
        },
        2,
        1,
        2.0,
    )
    .unwrap();
    raw.update(&buf, &actor, &mut rng, 250).unwrap();
    let untrained = bellman_gap(&raw.models, &states, &acts, &next, &rew, 0.99, &v).unwrap();
    assert!(
        trained < 0.1 && untrained > 3.0 * trained,
        "{trained} vs {untrained}"
    );
    assert!(MbpoConfig {
        models: 0,
        ..MbpoConfig::default()
    }
    .check()
    .is_err());
    assert!(MbpoConfig {
        real_ratio: 1.5,
        ..MbpoConfig::default()
    }
    .check()
    .is_err());
}
