//! `optlab-bench rl`: environment steps per second of optlab's CartPole-v1 and Pendulum-v1 (one environment,
//! random actions, reset when an episode ends) next to Gymnasium's Python loop (`python/rl_gymnasium.py`, when
//! gymnasium imports) in the same run; and the time of one TD3 update on Pendulum's sizes next to CleanRL's
//! update in PyTorch (`python/td3_torch.py`).

use crate::harness::python_script;
use anyhow::Result;
use clap::Args;
use optlab::rl::cartpole::CartPole;
use optlab::rl::env::{Action, Env, VecEnv};
use optlab::rl::pendulum::Pendulum;
use optlab::rl::td3::{Td3Agent, Td3Config};
use optlab::rng::{rng_for, Stream};
use rand::Rng as _;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct RlBenchArgs {
    /// Environment steps per timed run (best of 3).
    #[arg(long, default_value_t = 1_000_000)]
    pub steps: usize,
    /// Steps of the Gymnasium side (its loop is much slower).
    #[arg(long, default_value_t = 100_000)]
    pub gym_steps: usize,
    /// Skip the Gymnasium side.
    #[arg(long)]
    pub no_gym: bool,
    /// TD3 updates per timed run (best of 3).
    #[arg(long, default_value_t = 200)]
    pub updates: usize,
    #[command(flatten)]
    pub torch: crate::harness::TorchSide,
    /// Print one JSON object instead of the tables.
    #[arg(long)]
    pub json: bool,
}

/// Milliseconds per TD3 update with CleanRL's sizes on Pendulum-v1 (MLPs 256-256, batch 256), best of 3, after a
/// warm-up of 1000 random environment steps fills the replay buffer.
fn td3_update_ms(updates: usize) -> Result<f64> {
    let cfg = Td3Config {
        total_steps: 1000,
        learning_starts: 1000,
        ..Td3Config::default()
    };
    let mut env = Pendulum::default();
    let mut agent = Td3Agent::new(&env, &cfg)?;
    while !agent.is_done() {
        agent.step(&mut env, None)?;
    }
    for _ in 0..20 {
        agent.update(None)?;
    }
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        for _ in 0..updates {
            agent.update(None)?;
        }
        best = best.min(t.elapsed().as_secs_f64() * 1e3 / updates as f64);
    }
    Ok(best)
}

fn steps_per_s(env: &mut dyn Env, actions: &[Action]) -> Result<f64> {
    let mut best = 0.0f64;
    for _ in 0..3 {
        let mut rng = rng_for(0, Stream::Data, 0);
        env.reset(&mut rng);
        let t = Instant::now();
        for a in actions {
            let s = env.step(a)?;
            if s.terminated || s.truncated {
                env.reset(&mut rng);
            }
        }
        best = best.max(actions.len() as f64 / t.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// Environment steps per second of `n` copies stepped together (best of 3), each copy taking the actions of
/// `actions` in turn.
fn vec_steps_per_s<E: Env + Clone>(env: E, n: usize, actions: &[Action]) -> Result<f64> {
    let mut best = 0.0f64;
    let rounds = actions.len() / n;
    for _ in 0..3 {
        let mut v = VecEnv::new(env.clone(), n, 0)?;
        v.reset();
        let t = Instant::now();
        for k in 0..rounds {
            v.step(&actions[k * n..(k + 1) * n])?;
        }
        best = best.max((rounds * n) as f64 / t.elapsed().as_secs_f64());
    }
    Ok(best)
}

pub fn run(a: RlBenchArgs) -> Result<()> {
    let mut rng = rng_for(1, Stream::Data, 0);
    let discrete: Vec<Action> = (0..a.steps)
        .map(|_| Action::Discrete(rng.gen_range(0..2)))
        .collect();
    let torques: Vec<Action> = (0..a.steps)
        .map(|_| Action::Continuous(vec![rng.gen_range(-2.0..2.0)]))
        .collect();
    let cart = steps_per_s(&mut CartPole::default(), &discrete)?;
    let pend = steps_per_s(&mut Pendulum::default(), &torques)?;
    let cart64 = vec_steps_per_s(CartPole::default(), 64, &discrete)?;
    let pend64 = vec_steps_per_s(Pendulum::default(), 64, &torques)?;
    let gym = python_script("rl_gymnasium.py", &[a.gym_steps.to_string()], a.no_gym);
    let envs = [
        ("CartPole-v1", cart),
        ("Pendulum-v1", pend),
        ("CartPole-v1 x64", cart64),
        ("Pendulum-v1 x64", pend64),
    ];
    let theirs = |name: &str| gym.as_ref().and_then(|g| g[name].as_f64());
    // TD3: optlab's and PyTorch's ms per update.
    let td3 = if a.updates > 0 {
        let ours = td3_update_ms(a.updates)?;
        let torch = a
            .torch
            .run("td3_torch.py", &[a.updates.to_string()])
            .and_then(|v| v["ms_per_update"].as_f64());
        Some((ours, torch))
    } else {
        None
    };
    if a.json {
        let ms = |rate: f64| 1e3 / rate;
        let envs: Vec<_> = envs
            .iter()
            .map(|&(name, ours)| {
                let t = theirs(name);
                serde_json::json!({
                    "env": name,
                    "optlab_steps_per_s": ours,
                    "gymnasium_steps_per_s": t,
                    "optlab_ms_per_step": ms(ours),
                    "gymnasium_ms_per_step": t.map(ms),
                    "ratio_optlab_over_gymnasium": crate::harness::ratio(Some(ms(ours)), t.map(ms)),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "bench": "rl",
                "steps": a.steps,
                "gym_steps": a.gym_steps,
                "envs": envs,
                "td3": td3.map(|(ours, torch)| serde_json::json!({
                    "updates": a.updates,
                    "optlab_ms_per_update": ours,
                    "torch_ms_per_update": torch,
                    "ratio_optlab_over_torch": crate::harness::ratio(Some(ours), torch),
                })),
            })
        );
        return Ok(());
    }
    println!(
        "random actions, best of 3 ({} optlab steps, {} Gymnasium steps); x64: 64 copies stepped together\n(optlab's VecEnv against gym.make_vec(..., 64, vectorization_mode=\"sync\"), steps counted per copy)",
        a.steps, a.gym_steps
    );
    println!(
        "{:<16} {:>16} {:>20} {:>8}",
        "env", "optlab steps/s", "Gymnasium steps/s", "ratio"
    );
    for (name, ours) in envs {
        match theirs(name) {
            Some(theirs) => println!(
                "{name:<16} {ours:>16.3e} {theirs:>20.3e} {:>7.0}x",
                ours / theirs
            ),
            None => println!("{name:<16} {ours:>16.3e} {:>20} {:>8}", "n/a", "n/a"),
        }
    }
    if gym.is_none() && !a.no_gym {
        println!("(pip install gymnasium for the Gymnasium side)");
    }
    if let Some((ours, torch)) = td3 {
        println!(
            "\nTD3 update, Pendulum-v1 sizes (MLPs 256-256, batch 256; critics every update, actor every 2nd), best of 3 x {}",
            a.updates
        );
        println!(
            "{:<16} {:>16} {:>20} {:>8}",
            "", "optlab ms", "PyTorch ms", "ratio"
        );
        match torch {
            Some(t) => println!(
                "{:<16} {ours:>16.3} {t:>20.3} {:>7.2}x",
                "TD3 update",
                ours / t
            ),
            None => println!(
                "{:<16} {ours:>16.3} {:>20} {:>8}",
                "TD3 update", "n/a (no torch)", "n/a"
            ),
        }
    }
    Ok(())
}
