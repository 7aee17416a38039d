//! Checkpoints of RL runs resume bit-exactly: a run stopped at a checkpoint and continued in a fresh agent ends
//! with the same episodes and the same weights, bit for bit, as the run that never stopped. Covered: TD3 with a
//! spectrally normalized critic (its u, v buffers), MBPO's model ensemble and model buffer, GAIL's discriminator,
//! and the three policy-gradient methods.

use optlab::nn::spectral::SpectralScope;
use optlab::rl::cartpole::CartPole;
use optlab::rl::gail::{Discriminator, ExpertData, GailConfig};
use optlab::rl::mbpo::{MbpoConfig, ModelBased};
use optlab::rl::pendulum::Pendulum;
use optlab::rl::pg::{self, PgConfig, PgMethod, PgState};
use optlab::rl::policy::{Policy, PolicyKind};
use optlab::rl::td3::{Episode, Td3Agent, Td3Config, Td3Extension};
use optlab::rng::{normal, rng_for, Stream};
use optlab::train::snapshot::{Reader, Writer};
use std::path::PathBuf;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("optlab-rl-resume-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn td3_cfg() -> Td3Config {
    Td3Config {
        total_steps: 600,
        learning_starts: 250,
        batch_size: 32,
        hidden: vec![16, 16],
        critic_spectral: SpectralScope::Hidden,
        seed: 3,
        ..Td3Config::default()
    }
}

/// Every tensor of the actor's state dict, as bits.
fn bits(agent: &Td3Agent) -> Vec<(String, Vec<u32>)> {
    agent
        .actor()
        .0
        .state_dict()
        .into_iter()
        .map(|(k, t)| {
            let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            (k, v.iter().map(|x| x.to_bits()).collect())
        })
        .collect()
}

/// Runs TD3 with the extension `make` builds to the end, and again stopped at step 400 (an episode end),
/// checkpointed and resumed in fresh objects; the episodes and the actor must agree bit for bit.
fn resumes_exactly<E: Td3Extension>(name: &str, make: impl Fn() -> Option<E>) {
    let cfg = td3_cfg();
    let run = |stop: Option<(u64, &PathBuf)>| -> (Vec<Episode>, Vec<(String, Vec<u32>)>) {
        let mut env = Pendulum::default();
        let mut agent = Td3Agent::new(&env, &cfg).unwrap();
        let mut ext = make();
        while !agent.is_done() {
            agent
                .step(&mut env, ext.as_mut().map(|e| e as &mut dyn Td3Extension))
                .unwrap();
            if let Some((at, dir)) = stop {
                if agent.steps() == at {
                    assert!(agent.between_episodes());
                    let mut w = Writer::begin(dir, at).unwrap();
                    agent.save(&mut w).unwrap();
                    if let Some(e) = &ext {
                        e.save(&mut w).unwrap();
                    }
                    w.commit().unwrap();
                    // A fresh process: new environment, agent and extension, state from the checkpoint.
                    env = Pendulum::default();
                    agent = Td3Agent::new(&env, &cfg).unwrap();
                    ext = make();
                    let r = Reader::latest(dir).unwrap().expect("a checkpoint");
                    assert_eq!(r.step, at);
                    agent.load(&r).unwrap();
                    if let Some(e) = ext.as_mut() {
                        e.load(&r).unwrap();
                    }
                }
            }
        }
        let b = bits(&agent);
        (agent.finish().episodes, b)
    };
    let dir = scratch(name);
    let (e1, w1) = run(None);
    let (e2, w2) = run(Some((400, &dir)));
    assert_eq!(e1.len(), 3);
    assert_eq!(e1, e2, "{name}: episodes differ after the resume");
    assert!(w1 == w2, "{name}: actor weights differ after the resume");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn td3_with_a_spectral_critic_resumes_bit_exactly() {
    resumes_exactly::<ModelBased>("td3", || None);
}

#[test]
fn mbpo_resumes_bit_exactly() {
    let cfg = MbpoConfig {
        models: 2,
        hidden: vec![16, 16],
        model_every: 100,
        model_steps: 5,
        model_batch: 32,
        rollouts_per_step: 8,
        model_buffer: 1000,
        seed: 3,
        ..MbpoConfig::default()
    };
    resumes_exactly("mbpo", || Some(ModelBased::new(&cfg, 3, 1, 2.0).unwrap()));
}

#[test]
fn gail_resumes_bit_exactly() {
    let mut rng = rng_for(0, Stream::Data, 0);
    let mut expert = ExpertData {
        obs: Vec::new(),
        actions: Vec::new(),
        obs_dim: 3,
        act_dim: 1,
        mean_return: 0.0,
    };
    for _ in 0..100 {
        expert.obs.extend((0..3).map(|_| normal(&mut rng)));
        expert.actions.push(normal(&mut rng).clamp(-2.0, 2.0));
    }
    let cfg = GailConfig {
        hidden: vec![16],
        batch: 16,
        spectral: true,
        seed: 3,
        ..GailConfig::default()
    };
    resumes_exactly("gail", || {
        Some(Discriminator::new(&cfg, expert.clone()).unwrap())
    });
}

#[test]
fn policy_gradients_resume_bit_exactly() {
    for method in [PgMethod::Vanilla, PgMethod::NPgIgt, PgMethod::Harpg] {
        let cfg = PgConfig {
            iterations: 6,
            batch: 2,
            seed: 5,
            ..PgConfig::new(method)
        };
        let policy =
            || Policy::new(PolicyKind::Softmax { actions: 2 }, 4, &[8], "tanh", 5, -0.5).unwrap();
        let dir = scratch(method.name());
        // Uninterrupted.
        let p1 = policy();
        let mut env = CartPole::default();
        let a = pg::train(&mut env, &p1, &cfg, |_, _| Ok(true)).unwrap();
        // Stopped after 3 iterations with a checkpoint, then resumed from it with a fresh policy.
        let p2 = policy();
        let mut env = CartPole::default();
        let mut st = PgState::new(&p2, &cfg).unwrap();
        let mut b = pg::train_from(&mut env, &p2, &cfg, &mut st, |p, _, s| {
            if p.iteration == 2 {
                let mut w = Writer::begin(&dir, s.iteration()).unwrap();
                s.save(&mut w).unwrap();
                w.commit().unwrap();
                return Ok(false);
            }
            Ok(true)
        })
        .unwrap();
        let p3 = policy();
        let r = Reader::latest(&dir).unwrap().expect("a checkpoint");
        let mut st = PgState::load(&r, &p3, &cfg).unwrap();
        assert_eq!(st.iteration(), 3);
        let mut env = CartPole::default();
        b.extend(pg::train_from(&mut env, &p3, &cfg, &mut st, |_, _, _| Ok(true)).unwrap());
        assert_eq!(
            a,
            b,
            "{}: the records differ after the resume",
            method.name()
        );
        assert_eq!(
            pg::flat_params(&p1).unwrap(),
            pg::flat_params(&p3).unwrap(),
            "{}: the policies differ after the resume",
            method.name()
        );
        // A checkpoint of one method is refused by another.
        let other = PgConfig {
            method: if method == PgMethod::Vanilla {
                PgMethod::NPgIgt
            } else {
                PgMethod::Vanilla
            },
            ..cfg.clone()
        };
        assert!(PgState::load(&r, &policy(), &other).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_damaged_checkpoint_is_refused_with_a_message() {
    let dir = scratch("damaged");
    assert!(Reader::latest(&dir).unwrap().is_none());
    let cfg = td3_cfg();
    let mut env = Pendulum::default();
    let mut agent = Td3Agent::new(&env, &cfg).unwrap();
    while agent.steps() < 200 {
        agent.step(&mut env, None).unwrap();
    }
    let mut w = Writer::begin(&dir, 200).unwrap();
    agent.save(&mut w).unwrap();
    w.commit().unwrap();
    // Another run's settings: the counters do not fit.
    let other = Td3Config {
        learning_starts: 100,
        ..td3_cfg()
    };
    let r = Reader::latest(&dir).unwrap().unwrap();
    let err = Td3Agent::new(&env, &other).unwrap().load(&r).unwrap_err();
    assert!(err.to_string().contains("not one of this run"), "{err}");
    // A truncated replay buffer.
    let replay = r.dir().join("replay.safetensors");
    let bytes = std::fs::read(&replay).unwrap();
    std::fs::write(&replay, &bytes[..bytes.len() / 2]).unwrap();
    let err = Td3Agent::new(&env, &cfg).unwrap().load(&r).unwrap_err();
    assert!(err.to_string().contains("replay"), "{err}");
    // An index naming another directory.
    let latest = dir.join("checkpoints/latest.json");
    let text = std::fs::read_to_string(&latest).unwrap();
    std::fs::write(&latest, text.replace("step-000000200", "../../etc")).unwrap();
    assert!(Reader::latest(&dir).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
