//! The environments of `optlab::rl` against Gymnasium 1.4 (fixtures: tools/reference/gym_fixtures.py): CartPole-v1
//! and Pendulum-v1 trajectories under fixed actions to 1e-12 in f64, FrozenLake-v1's transition table exactly, and
//! the LQR's Riccati solution and gain against scipy's solve_discrete_are.

use optlab::rl::cartpole::CartPole;
use optlab::rl::env::{Action, Env};
use optlab::rl::gridworld::GridWorld;
use optlab::rl::lqr::{dare, Lqr};
use optlab::rl::pendulum::Pendulum;

fn fixture() -> serde_json::Value {
    crate::common::fixture_json("rl/gym.json")
}

use crate::common::numbers as vec;

use crate::common::close;

#[test]
fn cartpole_follows_gymnasium() {
    for (k, run) in fixture()["cartpole"].as_array().unwrap().iter().enumerate() {
        let mut env = CartPole::default();
        env.set_state(&vec(&run["start"])).unwrap();
        let actions = run["actions"].as_array().unwrap();
        for (t, (a, want)) in actions
            .iter()
            .zip(run["steps"].as_array().unwrap())
            .enumerate()
        {
            let s = env
                .step(&Action::Discrete(a.as_u64().unwrap() as usize))
                .unwrap();
            close(
                &format!("run {k} step {t}"),
                env.state(),
                &vec(&want["state"]),
                1e-12,
            );
            assert_eq!(s.reward, want["reward"].as_f64().unwrap());
            assert_eq!(
                s.terminated,
                want["terminated"].as_bool().unwrap(),
                "run {k} step {t}"
            );
        }
    }
}

#[test]
fn pendulum_follows_gymnasium() {
    for (k, run) in fixture()["pendulum"].as_array().unwrap().iter().enumerate() {
        let mut env = Pendulum::default();
        env.set_state(&vec(&run["start"])).unwrap();
        let actions = vec(&run["actions"]);
        for (t, (a, want)) in actions
            .iter()
            .zip(run["steps"].as_array().unwrap())
            .enumerate()
        {
            let s = env.step(&Action::Continuous(vec![*a])).unwrap();
            close(
                &format!("run {k} step {t}"),
                env.state(),
                &vec(&want["state"]),
                1e-12,
            );
            assert!(
                (s.reward - want["reward"].as_f64().unwrap()).abs()
                    <= 1e-12 * (1.0 + s.reward.abs())
            );
            // Gymnasium casts the observation to float32.
            let obs32: Vec<f64> = s.obs.iter().map(|&v| v as f32 as f64).collect();
            close(&format!("run {k} obs {t}"), &obs32, &vec(&want["obs"]), 0.0);
            assert!(!s.terminated);
        }
    }
}

#[test]
fn frozen_lake_has_gymnasiums_transitions() {
    let f = fixture();
    for (key, slippery) in [("slippery", true), ("deterministic", false)] {
        let env = GridWorld::frozen_lake(slippery);
        let table = &f["frozenlake"][key];
        for s in 0..16 {
            for a in 0..4 {
                let want = table[s.to_string()][a.to_string()].as_array().unwrap();
                let got = env.transitions(s, a);
                assert_eq!(got.len(), want.len(), "{key} {s} {a}");
                for (g, w) in got.iter().zip(want) {
                    assert_eq!(g.0, w[0].as_f64().unwrap(), "{key} {s} {a} p");
                    assert_eq!(g.1 as u64, w[1].as_u64().unwrap(), "{key} {s} {a} s'");
                    assert_eq!(g.2, w[2].as_f64().unwrap());
                    assert_eq!(g.3, w[3].as_bool().unwrap());
                }
            }
        }
    }
}

#[test]
fn riccati_solution_matches_scipy() {
    let l = &fixture()["lqr"];
    let (a, b, q, r) = (vec(&l["A"]), vec(&l["B"]), vec(&l["Q"]), vec(&l["R"]));
    let (p, k) = dare(&a, &b, &q, &r, 3, 2).unwrap();
    close("P", &p, &vec(&l["P"]), 1e-10);
    close("K", &k, &vec(&l["K"]), 1e-10);
    // The optimal gain's average cost under noise, measured over a long rollout, is near sigma^2 tr(P).
    let mut env = Lqr::new(3, 2, a, b, q, r, 0.1, 0.0, 200_000).unwrap();
    let (gain, _) = env.optimal().unwrap();
    let mut rng = optlab::rng::rng_for(0, optlab::rng::Stream::Data, 0);
    env.reset(&mut rng);
    let mut total = 0.0;
    for _ in 0..200_000 {
        let x = env.state().to_vec();
        let u: Vec<f64> = (0..2)
            .map(|i| -(0..3).map(|j| gain[i * 3 + j] * x[j]).sum::<f64>())
            .collect();
        total -= env.step(&Action::Continuous(u)).unwrap().reward;
    }
    let want = env.optimal_average_cost().unwrap();
    let got = total / 200_000.0;
    assert!((got - want).abs() < 0.03 * want, "{got} vs {want}");
    assert!(
        dare(&[2.0], &[0.0], &[1.0], &[1.0], 1, 1).is_err(),
        "an unstabilizable pair must fail"
    );
}

#[test]
fn episodes_end_and_bad_actions_are_refused() {
    let mut rng = optlab::rng::rng_for(1, optlab::rng::Stream::Data, 0);
    let mut env = Pendulum::default();
    env.reset(&mut rng);
    let mut steps = 0;
    while !env.step(&Action::Continuous(vec![0.5])).unwrap().truncated {
        steps += 1;
    }
    assert_eq!(steps + 1, 200);
    assert!(env.step(&Action::Continuous(vec![0.0])).is_err());
    let mut cart = CartPole::default();
    cart.reset(&mut rng);
    assert!(cart.step(&Action::Discrete(2)).is_err());
    assert!(cart.step(&Action::Continuous(vec![1.0])).is_err());
    assert!(env.set_state(&[f64::NAN, 0.0]).is_err());
    let mut lake = GridWorld::frozen_lake(true);
    lake.reset(&mut rng);
    let mut ret = 0.0;
    for _ in 0..100 {
        let s = lake.step(&Action::Discrete(2)).unwrap();
        ret += s.reward;
        if s.terminated || s.truncated {
            break;
        }
    }
    assert!(ret == 0.0 || ret == 1.0);
    assert!(GridWorld::new(&["SFX"], false).is_err());
}

mod policies {
    use super::vec;
    use candle_core::{Device, Tensor};
    use optlab::rl::policy::{Policy, PolicyKind};

    fn load(p: &Policy, f: &serde_json::Value) {
        for param in p.params() {
            let entry = &f["params"][&param.name];
            let shape: Vec<usize> = entry["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            param
                .var
                .set(&Tensor::from_vec(vec(&entry["values"]), shape, &Device::Cpu).unwrap())
                .unwrap();
        }
    }

    /// log π, the REINFORCE gradient and H·v equal torch.distributions' (Categorical, Normal) to 1e-12.
    #[test]
    fn log_probs_gradients_and_hvps_match_pytorch() {
        let fx = crate::common::fixture_json("rl/policy.json");
        for (name, kind, obs_dim) in [
            ("softmax", PolicyKind::Softmax { actions: 2 }, 4),
            ("gaussian", PolicyKind::Gaussian { dim: 2 }, 3),
        ] {
            let f = &fx[name];
            let policy = Policy::new(kind, obs_dim, &[8], "tanh", 0, 0.0).unwrap();
            let names: Vec<String> = policy.params().iter().map(|p| p.name.clone()).collect();
            let want_names: Vec<String> = f["names"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            assert_eq!(names, want_names, "{name}: parameter names");
            load(&policy, f);
            let obs = Tensor::from_vec(vec(&f["obs"]), (5, obs_dim), &Device::Cpu).unwrap();
            let acts = vec(&f["actions"]);
            let actions = if name == "softmax" {
                Tensor::from_vec(acts, 5, &Device::Cpu).unwrap()
            } else {
                Tensor::from_vec(acts, (5, 2), &Device::Cpu).unwrap()
            };
            let adv = Tensor::from_vec(vec(&f["advantages"]), 5, &Device::Cpu).unwrap();
            let logp = policy.log_prob(&obs, &actions).unwrap();
            super::close(
                &format!("{name} log_prob"),
                &logp.to_vec1::<f64>().unwrap(),
                &vec(&f["log_prob"]),
                1e-12,
            );
            let objective = |p: &Policy| -> optlab::Result<Tensor> {
                Ok(p.log_prob(&obs, &actions)?.mul(&adv)?.mean_all()?)
            };
            let g = objective(&policy).unwrap().backward().unwrap();
            for p in policy.params() {
                let got: Vec<f64> = g
                    .get(p.tensor())
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                super::close(
                    &format!("{name} grad {}", p.name),
                    &got,
                    &vec(&f["grad"][&p.name]),
                    1e-12,
                );
            }
            let v: Vec<Tensor> = policy
                .params()
                .iter()
                .map(|p| {
                    Tensor::from_vec(vec(&f["v"][&p.name]), p.tensor().dims(), &Device::Cpu)
                        .unwrap()
                })
                .collect();
            let hv = policy.hvp(objective, &v).unwrap();
            for (p, h) in policy.params().iter().zip(&hv) {
                let got: Vec<f64> = h.flatten_all().unwrap().to_vec1().unwrap();
                super::close(
                    &format!("{name} hv {}", p.name),
                    &got,
                    &vec(&f["hv"][&p.name]),
                    1e-11,
                );
            }
        }
    }

    /// Sampled actions follow the policy: a softmax policy's empirical frequencies and a Gaussian's sample mean
    /// and standard deviation.
    #[test]
    fn sampling_follows_the_distribution() {
        let mut rng = optlab::rng::rng_for(3, optlab::rng::Stream::Probe, 0);
        let p = Policy::new(PolicyKind::Softmax { actions: 3 }, 2, &[4], "relu", 1, 0.0).unwrap();
        let obs = [0.3, -0.7];
        let probs: Vec<f64> = {
            let lp = p
                .log_prob(
                    &Tensor::from_slice(&[0.3, -0.7, 0.3, -0.7, 0.3, -0.7], (3, 2), &Device::Cpu)
                        .unwrap(),
                    &Tensor::new(&[0.0f64, 1.0, 2.0], &Device::Cpu).unwrap(),
                )
                .unwrap();
            lp.exp().unwrap().to_vec1().unwrap()
        };
        let mut counts = [0usize; 3];
        for _ in 0..20000 {
            match p.act(&obs, &mut rng, true).unwrap() {
                optlab::rl::env::Action::Discrete(a) => counts[a] += 1,
                other => panic!("{other:?}"),
            }
        }
        for k in 0..3 {
            assert!(
                (counts[k] as f64 / 20000.0 - probs[k]).abs() < 0.015,
                "{counts:?} vs {probs:?}"
            );
        }
        let g = Policy::new(PolicyKind::Gaussian { dim: 1 }, 2, &[4], "tanh", 2, -0.5).unwrap();
        let mean = match g.act(&obs, &mut rng, false).unwrap() {
            optlab::rl::env::Action::Continuous(m) => m[0],
            other => panic!("{other:?}"),
        };
        let xs: Vec<f64> = (0..20000)
            .map(|_| match g.act(&obs, &mut rng, true).unwrap() {
                optlab::rl::env::Action::Continuous(a) => a[0],
                other => panic!("{other:?}"),
            })
            .collect();
        let m = xs.iter().sum::<f64>() / xs.len() as f64;
        let sd = (xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / xs.len() as f64).sqrt();
        assert!(
            (m - mean).abs() < 0.015 && (sd - (-0.5f64).exp()).abs() < 0.015,
            "{m} {sd}"
        );
        assert!(g.act(&[f64::NAN, 0.0], &mut rng, true).is_err());
        let d = Policy::new(
            PolicyKind::Deterministic {
                dim: 1,
                noise: 0.1,
                bound: Some(2.0),
            },
            2,
            &[4],
            "relu",
            3,
            0.0,
        )
        .unwrap();
        assert!(d
            .log_prob(
                &Tensor::zeros((1, 2), candle_core::DType::F64, &Device::Cpu).unwrap(),
                &Tensor::zeros((1, 1), candle_core::DType::F64, &Device::Cpu).unwrap()
            )
            .is_err());
        match d.act(&obs, &mut rng, false).unwrap() {
            optlab::rl::env::Action::Continuous(a) => assert!(a[0].abs() <= 2.0),
            other => panic!("{other:?}"),
        }
    }
}

/// The WGAN-GP gradient penalty of the off-policy GAIL code (P04): value and gradient in the discriminator's
/// parameters equal PyTorch's double backward (fixtures: tools/reference/penalty_fixtures.py) to 1e-11.
#[test]
fn gradient_penalty_matches_pytorch() {
    use candle_core::{DType, Device, Tensor};
    use optlab::nn::penalty::{GradientPenalty, Side};
    use optlab::nn::{ModelSpec, Sequential};
    let f = crate::common::fixture_json("rl/penalty.json");
    let net = Sequential::new(
        &ModelSpec::parse("mlp:hidden=16-16,act=tanh").unwrap(),
        &[5],
        1,
        0,
        DType::F64,
    )
    .unwrap();
    for p in net.params() {
        let e = &f["params"][&p.name];
        let shape: Vec<usize> = e["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        p.var
            .set(&Tensor::from_vec(vec(&e["values"]), shape, &Device::Cpu).unwrap())
            .unwrap();
    }
    let t =
        |k: &str, shape: (usize, usize)| Tensor::from_vec(vec(&f[k]), shape, &Device::Cpu).unwrap();
    let (pol, exp, eps) = (t("policy", (6, 5)), t("expert", (6, 5)), t("eps", (6, 1)));
    for case in f["cases"].as_array().unwrap() {
        let gp = GradientPenalty {
            scale: 10.0,
            target: case["target"].as_f64().unwrap(),
            side: if case["one_sided"].as_bool().unwrap() {
                Side::OneSided
            } else {
                Side::TwoSided
            },
        };
        let critic = |x: &Tensor| -> optlab::Result<Tensor> { net.forward(x) };
        let pen = gp.penalty(&critic, &pol, &exp, &eps).unwrap();
        let v = pen.to_scalar::<f64>().unwrap();
        let want = case["penalty"].as_f64().unwrap();
        assert!((v - want).abs() <= 1e-12 * want, "{case}: {v} vs {want}");
        let g = pen.backward().unwrap();
        for p in net.params() {
            let got: Vec<f64> = match g.get(p.tensor()) {
                Some(t) => t.flatten_all().unwrap().to_vec1().unwrap(),
                None => vec![0.0; p.numel()],
            };
            close(
                &format!("grad {}", p.name),
                &got,
                &vec(&case["grad"][&p.name]),
                1e-11,
            );
        }
    }
    let bad = Tensor::zeros((6, 4), DType::F64, &Device::Cpu).unwrap();
    assert!(GradientPenalty::default()
        .penalty(&|x: &Tensor| net.forward(x), &pol, &bad, &eps)
        .is_err());
}

/// TD3 runs end to end on Pendulum at a tiny size, is reproducible from its seed, and refuses what it cannot use.
#[test]
fn td3_runs_and_is_reproducible() {
    use optlab::rl::td3::{train, ReplayBuffer, Td3Config};
    let cfg = Td3Config {
        total_steps: 500,
        learning_starts: 200,
        batch_size: 32,
        hidden: vec![16, 16],
        ..Default::default()
    };
    let run = |seed: u64| {
        let mut env = Pendulum::default();
        let mut seen = 0;
        let r = train(
            &mut env,
            &Td3Config {
                seed,
                ..cfg.clone()
            },
            |_| seen += 1,
        )
        .unwrap();
        assert_eq!(seen, r.episodes.len());
        r
    };
    let (a, b) = (run(1), run(1));
    assert_eq!(a.episodes.len(), 2, "500 steps of 200-step episodes");
    assert_eq!(a.episodes, b.episodes);
    let act = optlab::rl::td3::greedy(&a, &[1.0, 0.0, 0.0]).unwrap();
    assert!(act[0].abs() <= 2.0);
    let mut cart = CartPole::default();
    assert!(
        train(&mut cart, &cfg, |_| {}).is_err(),
        "a discrete action space is refused"
    );
    assert!(Td3Config {
        gamma: 1.5,
        ..Default::default()
    }
    .check()
    .is_err());
    let mut buf = ReplayBuffer::new(2, 1, 3).unwrap();
    for k in 0..5 {
        buf.push(&[k as f64, 0.0], &[0.0], k as f64, &[0.0, 0.0], false);
    }
    assert_eq!(buf.len(), 3);
    let mut rng = optlab::rng::rng_for(0, optlab::rng::Stream::Probe, 0);
    let [_, _, r, _, _] = buf.sample(64, &mut rng).unwrap();
    let rs: Vec<f32> = r.flatten_all().unwrap().to_vec1().unwrap();
    assert!(
        rs.iter().all(|&v| (2.0..=4.0).contains(&v)),
        "only the newest three remain: {rs:?}"
    );
}

#[test]
fn vector_env_steps_copies_like_single_envs_and_autoresets() {
    use optlab::rl::env::VecEnv;
    use optlab::rng::{rng_for, Stream};
    let mut v = VecEnv::new(CartPole::default(), 3, 5).unwrap();
    let first = v.reset();
    let mut singles: Vec<(CartPole, optlab::rng::Rng)> = (0..3u64)
        .map(|k| (CartPole::default(), rng_for(5, Stream::Data, k)))
        .collect();
    for (k, (e, r)) in singles.iter_mut().enumerate() {
        assert_eq!(e.reset(r), first[k]);
    }
    let mut ended = 0;
    for t in 0..300 {
        let actions: Vec<Action> = (0..3).map(|k| Action::Discrete((t + k) % 2)).collect();
        let steps = v.step(&actions).unwrap();
        for (k, (e, r)) in singles.iter_mut().enumerate() {
            let mut s = e.step(&actions[k]).unwrap();
            if s.terminated || s.truncated {
                s.obs = e.reset(r);
                ended += 1;
            }
            assert_eq!(steps[k], s);
        }
    }
    assert!(ended > 3, "episodes ended and restarted");
    assert!(v.step(&[Action::Discrete(0)]).is_err());
    assert!(VecEnv::new(CartPole::default(), 0, 0).is_err());
}
