//! The environments of `optlab::rl` against Gymnasium 1.4 (fixtures: tools/reference/gym_fixtures.py): CartPole-v1
//! and Pendulum-v1 trajectories under fixed actions to 1e-12 in f64, FrozenLake-v1's transition table exactly, and
//! the LQR's Riccati solution and gain against scipy's solve_discrete_are.

use optlab::rl::cartpole::CartPole;
use optlab::rl::env::{Action, Env};
use optlab::rl::gridworld::GridWorld;
use optlab::rl::lqr::{dare, Lqr};
use optlab::rl::pendulum::Pendulum;

fn fixture() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/rl/gym.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn vec(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close(label: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{label}");
    for (a, b) in got.iter().zip(want) {
        assert!(
            (a - b).abs() <= tol * (1.0 + b.abs()),
            "{label}: {got:?} vs {want:?}"
        );
    }
}

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
