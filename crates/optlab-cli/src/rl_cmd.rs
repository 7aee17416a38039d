//! `optlab rl train`: reinforcement learning on optlab's environments: the policy-gradient methods of P16
//! (REINFORCE, N-PG-IGT, HARPG) on every environment, TD3 on Pendulum-v1.

use crate::plot::{line_chart, Series};
use crate::progress::bar;
use crate::rl_run::{resolve_run, resumable, Due, Session};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use optlab::rl::cartpole::CartPole;
use optlab::rl::env::{ActionSpace, Env};
use optlab::rl::gridworld::GridWorld;
use optlab::rl::lqr::Lqr;
use optlab::rl::pendulum::Pendulum;
use optlab::rl::pg::PgState;
use optlab::rl::pg::{self, PgConfig, PgMethod};
use optlab::rl::policy::{Policy, PolicyKind};
use optlab::rl::td3::{self, Td3Agent, Td3Config, Td3Extension};
use optlab::tensor_io::write_atomic;
use optlab::train::run_dir::RunDirLock;
use optlab::train::snapshot::Writer;
use serde_json::json;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct RlArgs {
    #[command(subcommand)]
    pub what: RlWhat,
}

#[derive(Subcommand, Debug)]
pub enum RlWhat {
    /// Train an agent: episode returns to DIR/episodes.jsonl, DIR/summary.json (mean return of the last 10
    /// episodes, time), DIR/returns.png and checkpoints that --resume continues bit-exactly.
    #[command(
        after_help = "Examples:\n  optlab rl train --env pendulum --algo td3 --steps 30000 --seed 0 --out runs/td3\n  optlab rl train --resume runs/td3        # continue a killed or stopped run bit-exactly\n  optlab rl train --env lqr --algo harpg --steps 50000 --lr 0.5 --out runs/harpg\n  optlab rl train --env cartpole --algo n-pg-igt --batch 5 --steps 100000 --out runs/igt\n\nPolicy gradient (P16): reinforce | n-pg-igt | harpg on cartpole | lqr | pendulum | grid. One gradient per --batch\ntrajectories; --lr is gamma0 and --momentum eta0 of the paper's schedules (n-pg-igt: gamma0*2/(t+2),\neta0*(2/(t+2))^0.8; harpg: both *2/(t+2); reinforce: constant, unnormalized); discount 0.99; garage's linear\nfeature baseline. Policies: softmax MLP 32-32 tanh (cartpole, grid), Gaussian linear (lqr: the damped double\nintegrator, horizon 50, where the exact J(theta) and J* are logged), Gaussian MLP 32-32 (pendulum).\nWrites DIR/iterations.jsonl, summary.json, returns.png and policy.safetensors.\n\nOff-policy GAIL (P04) on pendulum: --expert RUN_DIR (a td3 run), --demos episodes, --reg gp|spectral|gp+spectral|none\nfor the discriminator (the official loss: labels 0.7-1.2, entropy 0.001, penalty 10 * max(|grad| - 1, 0)^2);\nwrites discriminator.safetensors and D's local Lipschitz constant around expert pairs.\nMBPO (P24) on pendulum: --models 1|5 probabilistic models, 64 one-step branches per step, 5% real data,\n--reg none|spectral|spectral-all|adv for the critics, --updates-per-step G; reports the Bellman gap on held-out states.\n\nTD3 on pendulum: CleanRL's hyperparameters (MLPs 256-256, Adam 3e-4, batch 256, gamma 0.99, tau 0.005,\nexploration noise 0.1, policy noise 0.2 clipped at 0.5, actor every 2 updates; 2000 random warm-up steps).\n\nCheckpoints: at the first episode (or iteration) end after every --checkpoint-every environment steps, into\nDIR/checkpoints (networks, optimizers, replay buffers, generator positions); --stop-after N stops there.\n--resume DIR continues from the latest one with the flags DIR/config.toml recorded, and ends with the log and\nweights of the uninterrupted run, bit for bit."
    )]
    Train(TrainArgs),
    /// Behaviour cloning of an LQR expert with the policy's Lipschitz constant bounded (P11): per bound L, the
    /// nominal closed-loop cost against the expert's, the cost under measurement perturbations of norm eps (random
    /// and a projected-gradient attack over the horizon), the closed loop's linearized spectral radius and the
    /// certified Lipschitz bound. Writes DIR/bc.json and DIR/tradeoff.png.
    #[command(
        after_help = "Examples:\n  optlab rl bc --expert lqr --lipschitz 1,2,4,8,none --eps 0.1 --out runs/bc\n\nThe system (--system) is the double integrator (A = [[1, 0.1], [0, 1]], B = [[0.005], [0.1]], Q = I, R = 0.1,\nnoise 0.05, horizon 50) or the damped one (A = [[0.95, 0.1], [0, 0.95]], noise 0.1); the expert is its LQR gain; the policy a ReLU MLP trained by Adam with every layer projected to\nL^(1/k) after each step. The certified bound is LipSDP's (built with the lipsdp feature) or the product of\nthe layers' spectral norms."
    )]
    Bc(BcArgs),
    /// Evaluate a trained run's policy: K episodes with noiseless actions (the greedy action of a softmax policy,
    /// the mean of a Gaussian), the returns' mean, std, min and max.
    #[command(
        after_help = "Examples:\n  optlab rl eval runs/td3 --episodes 10\n  optlab rl eval runs/igt --episodes 20 --json"
    )]
    Eval(EvalArgs),
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A run directory of `optlab rl train` (summary.json and actor.safetensors or policy.safetensors).
    run: PathBuf,
    #[arg(long, default_value_t = 10)]
    episodes: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The result as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct BcArgs {
    /// The expert: lqr.
    #[arg(long, default_value = "lqr")]
    expert: String,
    /// The linear system: double-integrator (marginally stable open loop) or damped (the damped double
    /// integrator of the policy-gradient runs, stable open loop).
    #[arg(long, default_value = "double-integrator")]
    system: String,
    /// Lipschitz bounds to sweep, comma-separated; `none` for an unconstrained policy.
    #[arg(long, default_value = "1,2,4,none")]
    lipschitz: String,
    /// Expert trajectories (50 steps each).
    #[arg(long, default_value_t = 20)]
    demos: usize,
    /// Noise on the recorded controls.
    #[arg(long, default_value_t = 0.1)]
    demo_noise: f64,
    /// Hidden widths of the ReLU policy.
    #[arg(long, default_value = "32-32")]
    hidden: String,
    /// Adam steps.
    #[arg(long, default_value_t = 3000)]
    steps: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Radius of the state-measurement perturbations.
    #[arg(long, default_value_t = 0.1)]
    eps: f64,
    /// Initial states of the evaluation.
    #[arg(long, default_value_t = 50)]
    eval_states: usize,
    /// Projected-gradient attack iterations.
    #[arg(long, default_value_t = 30)]
    attack_steps: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    out: PathBuf,
    /// The summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug, serde::Serialize, serde::Deserialize)]
pub struct TrainArgs {
    /// Continue the killed or stopped run in DIR bit-exactly from its latest checkpoint (its settings come from
    /// DIR/config.toml).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["env", "algo", "steps", "learning_starts", "hidden", "batch", "hessian_batch", "lr", "momentum", "discount", "seed", "out", "expert", "demos", "reg", "adv_eps", "models", "updates_per_step", "checkpoint_every"])]
    #[serde(skip)]
    resume: Option<PathBuf>,
    /// Checkpoint every N environment steps (at the next episode or iteration end); 0: only at --stop-after.
    #[arg(long, default_value_t = 10_000)]
    checkpoint_every: u64,
    /// Stop, checkpointed, at the first episode or iteration end after N environment steps; continue with --resume.
    #[arg(long)]
    #[serde(skip)]
    stop_after: Option<u64>,
    /// The environment: cartpole, lqr, pendulum or grid (FrozenLake 4x4, slippery).
    #[arg(long, default_value = "pendulum")]
    env: String,
    /// The algorithm: reinforce, n-pg-igt, harpg, td3, gail (P04) or mbpo (P24).
    #[arg(long, default_value = "td3")]
    algo: String,
    /// Environment steps (the budget; a policy-gradient run stops after the iteration that reaches it).
    #[arg(long, default_value_t = 30_000)]
    steps: u64,
    /// TD3: random-action warm-up steps before learning.
    #[arg(long, default_value_t = 2_000)]
    learning_starts: u64,
    /// Hidden widths, e.g. 256-256, or `none` for a linear policy (default: 256-256 for td3, none for lqr,
    /// 32-32 otherwise).
    #[arg(long)]
    hidden: Option<String>,
    /// Policy gradient: trajectories per gradient estimate.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// HARPG: trajectories for the Hessian correction.
    #[arg(long, default_value_t = 1)]
    hessian_batch: usize,
    /// Policy gradient: the step size gamma0.
    #[arg(long, default_value_t = 0.1)]
    lr: f64,
    /// Policy gradient: the momentum eta0 in (0, 1].
    #[arg(long, default_value_t = 1.0)]
    momentum: f64,
    /// Policy gradient: the discount.
    #[arg(long, default_value_t = 0.99)]
    discount: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The run directory (required unless --resume).
    #[arg(long)]
    out: Option<PathBuf>,
    /// GAIL: the TD3 run directory whose actor.safetensors is the expert.
    #[arg(long)]
    expert: Option<PathBuf>,
    /// GAIL: expert episodes recorded.
    #[arg(long, default_value_t = 10)]
    demos: usize,
    /// Lipschitz control. GAIL's discriminator: gp (the official one-sided gradient penalty, default),
    /// spectral, gp+spectral or none. TD3's and MBPO's critics: none (default), spectral (the hidden layers
    /// spectrally normalized), spectral-all (every layer: |grad Q| <= 1), or adv (adversarial input noise of
    /// radius --adv-eps).
    #[arg(long)]
    reg: Option<String>,
    /// The adversarial radius of --reg adv (P24's own value was not reachable). MBPO on pendulum, 6000 steps, 3
    /// seeds: 0.01 kept the unregularized return, 0.05 lowered it, 0.2 stopped learning.
    #[arg(long, default_value_t = 0.05)]
    adv_eps: f64,
    /// MBPO: dynamics models (1, or an ensemble).
    #[arg(long, default_value_t = 1)]
    models: usize,
    /// TD3 and MBPO: agent updates per environment step.
    #[arg(long, default_value_t = 1)]
    updates_per_step: usize,
    /// The summary as one JSON object on stdout.
    #[arg(long)]
    #[serde(skip)]
    json: bool,
}

resumable!(TrainArgs: stop_after, json);

impl TrainArgs {
    /// The run directory (set for every run by [`train`]).
    fn out(&self) -> &std::path::Path {
        self.out.as_deref().unwrap_or(std::path::Path::new("."))
    }
}

const ENVS: &str = "cartpole, lqr, pendulum, grid";

pub fn run(a: RlArgs) -> Result<()> {
    match a.what {
        RlWhat::Bc(b) => bc(b),
        RlWhat::Eval(e) => eval(e),
        RlWhat::Train(t) => train(t),
    }
}

/// `rl train`: a fresh run, or `--resume DIR` with the flags DIR/config.toml recorded.
fn train(t: TrainArgs) -> Result<()> {
    let (t, _) = resolve_run(t, "rl train")?;
    match t.algo.as_str() {
        "td3" => train_td3(t),
        "gail" => train_gail(t),
        "mbpo" => train_mbpo(t),
        other => {
            let method = PgMethod::parse(other).map_err(|_| {
                    anyhow::anyhow!(
                        "rl train: algo '{other}' is not built; available: reinforce, n-pg-igt, harpg, td3, gail, mbpo"
                    )
                })?;
            train_pg(t, method)
        }
    }
}

/// `--hidden`: widths joined by `-`, or `none`.
fn parse_hidden(s: &str) -> Result<Vec<usize>> {
    if s == "none" || s.is_empty() {
        return Ok(Vec::new());
    }
    let v = s
        .split('-')
        .map(|v| v.trim().parse::<usize>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| {
            anyhow::anyhow!("--hidden {s} is not a list of widths like 256-256 (or none)")
        })?;
    if v.contains(&0) || v.len() > 8 || v.iter().any(|w| *w > 4096) {
        bail!("--hidden {s}: give 1 to 8 widths from 1 to 4096");
    }
    Ok(v)
}

/// The environment named `name` for the policy-gradient methods.
fn make_env(name: &str) -> Result<Box<dyn Env>> {
    Ok(match name {
        "cartpole" => Box::new(CartPole::default()),
        "lqr" => Box::new(Lqr::damped_double_integrator(50)?),
        "pendulum" => Box::new(Pendulum::default()),
        "grid" => Box::new(GridWorld::frozen_lake(true)),
        other => bail!("rl train: unknown env '{other}'; available: {ENVS}"),
    })
}

fn train_pg(a: TrainArgs, method: PgMethod) -> Result<()> {
    let mut env = make_env(&a.env)?;
    let default_hidden = if a.env == "lqr" { "none" } else { "32-32" };
    let hidden = parse_hidden(a.hidden.as_deref().unwrap_or(default_hidden))?;
    let kind = match env.action_space() {
        ActionSpace::Discrete(n) => PolicyKind::Softmax { actions: n },
        ActionSpace::Box { low, .. } => PolicyKind::Gaussian { dim: low.len() },
    };
    let cfg = PgConfig {
        iterations: u64::MAX,
        batch: a.batch,
        hessian_batch: a.hessian_batch,
        step: a.lr,
        momentum: a.momentum,
        discount: a.discount,
        seed: a.seed,
        ..PgConfig::new(method)
    };
    cfg.check()?;
    if a.steps == 0 {
        bail!("rl train: --steps must be >= 1");
    }
    let policy = Policy::new(kind, env.obs_dim(), &hidden, "tanh", a.seed, -0.5)?;
    if a.env == "lqr" && hidden.is_empty() {
        // Start from the zero gain, which A's stability makes a stabilizing policy (as LQR policy-gradient
        // studies do), with log_std -0.5.
        let mut x = pg::flat_params(&policy)?;
        let n = x.len() - 1;
        x[..n].iter_mut().for_each(|v| *v = 0.0);
        pg::set_flat_params(&policy, &x)?;
    }
    let lqr = (a.env == "lqr")
        .then(|| Lqr::damped_double_integrator(50))
        .transpose()?;
    let optimum = match &lqr {
        Some(l) => Some(l.optimal_return(a.discount)?),
        None => None,
    };
    let mut s = session(&a, "iterations.jsonl", method.name())?;
    // The iterations so far: none, or those the resumed checkpoint's log holds.
    let (mut state, mut rows) = match &s.resume {
        Some(r) => (
            PgState::load(r, &policy, &cfg)?,
            read_jsonl(&a.out().join("iterations.jsonl"))?,
        ),
        None => (PgState::new(&policy, &cfg)?, Vec::new()),
    };
    if let Some(last) = rows.last() {
        s.show(
            state.env_steps(),
            last["mean_return"].as_f64().unwrap_or(f64::NAN),
        );
    }
    let mut stopped = false;
    if state.env_steps() < a.steps {
        pg::train_from(env.as_mut(), &policy, &cfg, &mut state, |p, pol, st| {
            let mut line = json!({
                "iteration": p.iteration, "trajectories": p.trajectories, "env_steps": p.env_steps,
                "mean_return": p.mean_return, "step": p.step, "momentum": p.momentum,
                "direction_norm": p.direction_norm,
            });
            if let (Some(l), Some(opt)) = (&lqr, optimum) {
                let j = lqr_return(l, pol, a.discount)?;
                line["exact_return"] = json!(j);
                line["gap"] = json!(opt - j);
            }
            s.line(&line)
                .map_err(|e| optlab::Error::invalid(format!("{e:#}")))?;
            rows.push(line);
            s.show(p.env_steps.min(a.steps), p.mean_return);
            let go_on = p.env_steps < a.steps;
            if go_on
                && s.checkpoint_if_due(p.env_steps, |w| st.save(w))
                    .map_err(|e| optlab::Error::invalid(format!("{e:#}")))?
                    == Due::Stop
            {
                stopped = true;
                return Ok(false);
            }
            Ok(go_on)
        })?;
    }
    if stopped {
        s.stopped(state.env_steps(), a.steps);
        return Ok(());
    }
    s.bar.finish_and_clear();
    let seconds = s.seconds();
    let num = |r: &serde_json::Value, k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    let last = rows.last().context("rl train: no iteration ran")?;
    let count = |k: &str| last[k].as_u64().unwrap_or(0);
    let (env_steps, trajectories) = (count("env_steps"), count("trajectories"));
    let tail: Vec<f64> = rows
        .iter()
        .rev()
        .take(10)
        .map(|r| num(r, "mean_return"))
        .collect();
    let mean_last10 = tail.iter().sum::<f64>() / tail.len() as f64;
    policy.save(&a.out().join("policy.safetensors"))?;
    let mut summary = json!({
        "env": env.name(), "algo": method.name(), "steps": env_steps, "seed": a.seed,
        "iterations": rows.len(), "trajectories": trajectories,
        "mean_return_last_10_iterations": mean_last10, "seconds": seconds,
        "steps_per_s": env_steps as f64 / seconds.max(1e-9),
    });
    if let (Some(l), Some(opt)) = (&lqr, optimum) {
        let j = lqr_return(l, &policy, a.discount)?;
        let k = l.discounted_gain(a.discount)?;
        let stationary = l.linear_policy_return(
            &k.iter().map(|v| -v).collect::<Vec<_>>(),
            &vec![0.0; l.m],
            &vec![0.0; l.m],
            a.discount,
        )?;
        summary["optimal_return"] = json!(opt);
        summary["best_stationary_return"] = json!(stationary);
        summary["final_exact_return"] = json!(j);
        summary["final_gap"] = json!(opt - j);
    }
    write_atomic(
        &a.out().join("summary.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    let curve = |k: &str| -> Vec<(f64, f64)> {
        rows.iter()
            .map(|r| (num(r, "trajectories"), num(r, k)))
            .collect()
    };
    let (title, ylabel, points, log_y) = if lqr.is_none() {
        (
            format!("{} on {}: mean return", method.name(), env.name()),
            "return",
            curve("mean_return"),
            false,
        )
    } else {
        (
            format!("{} on LQR: J* - J(theta)", method.name()),
            "gap",
            curve("gap"),
            true,
        )
    };
    line_chart(
        &a.out().join("returns.png"),
        &title,
        "trajectories",
        ylabel,
        &[Series {
            name: String::new(),
            points,
        }],
        log_y,
    )?;
    if a.json {
        println!("{summary}");
    } else {
        println!(
            "{} iterations, {trajectories} trajectories, {env_steps} steps in {seconds:.1} s; mean return of the last 10 iterations: {mean_last10:.2}{}; wrote {}",
            rows.len(),
            summary.get("final_gap").map_or(String::new(), |g| format!("; J* - J = {:.4}", g.as_f64().unwrap_or(f64::NAN))),
            a.out().display()
        );
    }
    Ok(())
}

/// The run directory's session for `a`, with its log `log_name`.
fn session(a: &TrainArgs, log_name: &str, label: &str) -> Result<Session> {
    if a.stop_after == Some(0) {
        bail!("--stop-after must be >= 1");
    }
    Session::open(
        a.out(),
        a.resume.is_some(),
        &toml::to_string(a)?,
        log_name,
        label,
        a.steps,
        a.checkpoint_every,
        a.stop_after,
        a.json,
    )
}

/// The JSON lines of `path`.
fn read_jsonl(path: &std::path::Path) -> Result<Vec<serde_json::Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{} line {}: not JSON", path.display(), i + 1))
        })
        .collect()
}

/// The exact discounted return of a linear Gaussian policy on the LQR system.
fn lqr_return(l: &Lqr, policy: &Policy, discount: f64) -> optlab::Result<f64> {
    let state = policy.state_dict();
    if state.len() != 3 {
        return Err(optlab::Error::invalid(
            "rl train: the exact LQR return needs a linear policy (--hidden none)",
        ));
    }
    let flat =
        |i: usize| -> optlab::Result<Vec<f64>> { Ok(state[i].1.flatten_all()?.to_vec1::<f64>()?) };
    let std: Vec<f64> = flat(2)?.iter().map(|v| v.exp()).collect();
    l.linear_policy_return(&flat(0)?, &flat(1)?, &std, discount)
}

fn train_td3(a: TrainArgs) -> Result<()> {
    let cfg = td3_config(&a, true)?;
    let mut env = Pendulum::default();
    let mut s = session(&a, "episodes.jsonl", "td3")?;
    let Some(run) = drive_td3(&mut s, &mut env, &cfg, None, |_| Ok(()))? else {
        return Ok(());
    };
    run.actor.save(&a.out().join("actor.safetensors"))?;
    let mean_last10 = mean_last_10(&run.episodes);
    let summary = json!({
        "env": "Pendulum-v1", "algo": "td3", "steps": a.steps, "seed": a.seed, "episodes": run.episodes.len(),
        "mean_return_last_10": mean_last10, "seconds": run.seconds, "steps_per_s": a.steps as f64 / run.seconds,
    });
    write_atomic(
        &a.out().join("summary.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    returns_chart(a.out(), "TD3 on Pendulum-v1: episode return", &run.episodes)?;
    if a.json {
        println!("{summary}");
    } else {
        println!(
            "{} episodes in {:.1} s; mean return of the last 10: {mean_last10:.1}; wrote {}",
            run.episodes.len(),
            run.seconds,
            a.out().display()
        );
    }
    Ok(())
}

/// The certified l2 Lipschitz bound of a ReLU policy: LipSDP's where built, else the product of layer norms.
fn certified_bound(net: &optlab::nn::Sequential) -> Result<(f64, &'static str)> {
    let lnet = optlab::lipschitz::network::Network::from_model(net)?;
    use optlab::lipschitz::naive::{naive_bound, Norm};
    #[cfg(feature = "lipsdp")]
    if let Ok(r) = optlab::lipschitz::lipsdp::lipsdp_l2(&lnet) {
        return Ok((r.bound, "lipsdp"));
    }
    // Without LipSDP, or when its multipliers cannot be certified: the product of the layers' norms.
    Ok((naive_bound(&lnet, Norm::Two)?.bound, "product"))
}

fn bc(a: BcArgs) -> Result<()> {
    use optlab::rl::bc::{self as bcm, BcConfig, Feedback, LinearFeedback};
    if a.expert != "lqr" {
        bail!(
            "rl bc: expert '{}' is not available; available: lqr",
            a.expert
        );
    }
    let bounds = a
        .lipschitz
        .split(',')
        .map(|v| match v.trim() {
            "none" => Ok(None),
            t => match t.parse::<f64>() {
                Ok(l) if l.is_finite() && l > 0.0 => Ok(Some(l)),
                _ => Err(anyhow::anyhow!(
                    "--lipschitz {}: give positive bounds or none, comma-separated",
                    a.lipschitz
                )),
            },
        })
        .collect::<Result<Vec<_>>>()?;
    if bounds.len() > 64 {
        bail!("--lipschitz: at most 64 bounds");
    }
    if !(a.eps.is_finite() && a.eps >= 0.0) {
        bail!("--eps must be finite and >= 0");
    }
    if a.eval_states == 0 || a.eval_states > 100_000 || a.attack_steps > 100_000 {
        bail!("--eval-states must be 1 to 100000 and --attack-steps at most 100000");
    }
    let cfg = BcConfig {
        demos: a.demos,
        demo_noise: a.demo_noise,
        hidden: parse_hidden(&a.hidden)?,
        steps: a.steps,
        lr: a.lr,
        seed: a.seed,
        ..BcConfig::default()
    };
    cfg.check()?;
    let lqr = match a.system.as_str() {
        "double-integrator" => Lqr::double_integrator(50)?,
        "damped" => Lqr::damped_double_integrator(50)?,
        other => bail!("rl bc: unknown system '{other}'; available: double-integrator, damped"),
    };
    let _lock = RunDirLock::acquire(&a.out)?;
    let mut rng = optlab::rng::rng_for(a.seed, optlab::rng::Stream::Data, 0);
    let demos = bcm::lqr_demonstrations(&lqr, a.demos, a.demo_noise, &mut rng)?;
    let x0 = bcm::initial_states(&lqr, a.eval_states, a.seed)?;
    let (k, _) = lqr.optimal()?;
    let expert = LinearFeedback::new(&k, lqr.n, lqr.m)?;
    let evaluate = |p: &dyn Feedback| -> Result<[f64; 4]> {
        Ok([
            bcm::closed_loop_cost(&lqr, p, &x0, None)?
                .0
                .to_scalar::<f64>()?,
            bcm::random_perturbation_cost(&lqr, p, &x0, a.eps, 10, a.seed)?,
            bcm::worst_case_cost(&lqr, p, &x0, a.eps, a.attack_steps, a.seed)?,
            bcm::linearized_spectral_radius(&lqr, p)?,
        ])
    };
    let [e_nom, e_rand, e_worst, e_rho] = evaluate(&expert)?;
    let k_norm = optlab::nn::spectral::spectral_norm_of(&k, lqr.m, lqr.n);
    let progress = bar("bc", a.json);
    progress.set_length(bounds.len() as u64);
    let mut rows = Vec::new();
    for l in &bounds {
        let run = bcm::fit(
            &demos,
            &BcConfig {
                lipschitz: *l,
                ..cfg.clone()
            },
        )?;
        let [nom, rand, worst, rho] = evaluate(&run.net)?;
        let (cert, method) = certified_bound(&run.net)?;
        rows.push(json!({
            "lipschitz": l, "train_mse": run.train_mse, "layer_norms": run.layer_norms,
            "product_bound": run.product_bound(), "certified_bound": cert, "certificate": method,
            "nominal_cost": nom, "random_cost": rand, "worst_cost": worst,
            "nominal_ratio": nom / e_nom, "random_ratio": rand / e_nom, "worst_ratio": worst / e_nom,
            "spectral_radius": rho, "stable": rho < 1.0, "seconds": run.seconds,
        }));
        progress.inc(1);
    }
    progress.finish_and_clear();
    let summary = json!({
        "expert": {"gain": k, "lipschitz": k_norm, "nominal_cost": e_nom, "random_cost": e_rand,
                   "worst_cost": e_worst, "spectral_radius": e_rho},
        "system": a.system, "eps": a.eps, "demos": demos.len(), "seed": a.seed, "policies": rows,
    });
    write_atomic(
        &a.out.join("bc.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    let finite: Vec<(f64, &serde_json::Value)> = rows
        .iter()
        .filter_map(|r| r["lipschitz"].as_f64().map(|l| (l, r)))
        .collect();
    let series = |key: &str, name: &str| Series {
        name: name.to_string(),
        points: finite
            .iter()
            .map(|(l, r)| (*l, r[key].as_f64().unwrap_or(f64::NAN)))
            .collect(),
    };
    if finite.len() >= 2 {
        line_chart(
            &a.out.join("tradeoff.png"),
            &format!(
                "BC of the LQR expert: cost / expert's nominal cost (eps {})",
                a.eps
            ),
            "Lipschitz bound L",
            "cost ratio",
            &[
                series("nominal_ratio", "nominal"),
                series("random_ratio", "random perturbation"),
                series("worst_ratio", "worst-case perturbation"),
            ],
            true,
        )?;
    }
    if a.json {
        println!("{summary}");
    } else {
        println!(
            "expert: ||K|| {k_norm:.3}, nominal {e_nom:.3}, random {e_rand:.3}, worst {e_worst:.3}, rho {e_rho:.3}"
        );
        println!(
            "{:>8} {:>10} {:>10} {:>9} {:>9} {:>9} {:>6}",
            "L", "certified", "train mse", "nominal", "random", "worst", "rho"
        );
        for r in &rows {
            println!(
                "{:>8} {:>10.4} {:>10.5} {:>9.3} {:>9.3} {:>9.3} {:>6.3}",
                r["lipschitz"]
                    .as_f64()
                    .map_or("none".to_string(), |l| format!("{l}")),
                r["certified_bound"].as_f64().unwrap_or(f64::NAN),
                r["train_mse"].as_f64().unwrap_or(f64::NAN),
                r["nominal_ratio"].as_f64().unwrap_or(f64::NAN),
                r["random_ratio"].as_f64().unwrap_or(f64::NAN),
                r["worst_ratio"].as_f64().unwrap_or(f64::NAN),
                r["spectral_radius"].as_f64().unwrap_or(f64::NAN),
            );
        }
        println!("wrote {}", a.out.display());
    }
    Ok(())
}

/// Loads the actor of a TD3 run directory (actor.safetensors, whose metadata names the architecture).
fn load_td3_actor(dir: &std::path::Path, env: &dyn Env) -> Result<td3::Td3Run> {
    let path = dir.join("actor.safetensors");
    let meta = optlab::tensor_io::read_safetensors_metadata(&path)?;
    let info: serde_json::Value = meta
        .get("optlab")
        .and_then(|m| serde_json::from_str(m).ok())
        .ok_or_else(|| {
            anyhow::anyhow!("{}: no optlab metadata; not a TD3 actor", path.display())
        })?;
    let spec = optlab::nn::ModelSpec::parse(info["model"].as_str().unwrap_or(""))?;
    let (act_dim, bound) = match env.action_space() {
        ActionSpace::Box { high, .. } => (high.len(), high[0]),
        ActionSpace::Discrete(_) => bail!("gail: {} has discrete actions", env.name()),
    };
    let input: Vec<usize> = info["input_shape"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(|x| x.as_u64().map(|x| x as usize))
                .collect()
        })
        .unwrap_or_default();
    if input != [env.obs_dim()] {
        bail!(
            "{}: the actor takes inputs {input:?}, {} gives {} observations",
            path.display(),
            env.name(),
            env.obs_dim()
        );
    }
    let actor = optlab::nn::Sequential::new(&spec, &input, act_dim, 0, candle_core::DType::F32)?;
    actor.load(&path)?;
    Ok(td3::Td3Run {
        episodes: Vec::new(),
        actor,
        critic: None,
        bound,
        seconds: 0.0,
    })
}

fn train_gail(a: TrainArgs) -> Result<()> {
    use optlab::nn::penalty::GradientPenalty;
    use optlab::rl::gail::{self, GailConfig};
    let dir = a.expert.as_ref().ok_or_else(|| {
        anyhow::anyhow!("rl train --algo gail needs --expert RUN_DIR (a TD3 run)")
    })?;
    let reg = a.reg.clone().unwrap_or_else(|| "gp".into());
    let (penalty, spectral) = match reg.as_str() {
        "gp" => (Some(GradientPenalty::default()), false),
        "spectral" => (None, true),
        "gp+spectral" => (Some(GradientPenalty::default()), true),
        "none" => (None, false),
        other => {
            bail!("rl train: --reg '{other}' for gail; available: gp, spectral, gp+spectral, none")
        }
    };
    if a.demos == 0 || a.demos > 10_000 {
        bail!("--demos must be 1 to 10000 episodes");
    }
    let td3_cfg = td3_config(&a, false)?;
    let mut env = Pendulum::default();
    let expert_run = load_td3_actor(dir, &env)?;
    let mut demo_rng = optlab::rng::rng_for(a.seed, optlab::rng::Stream::Data, 21);
    let expert = gail::expert_demonstrations(&expert_run, &mut env, a.demos, &mut demo_rng)?;
    let expert_return = expert.mean_return;
    let probe: Vec<Vec<f64>> = (0..10)
        .map(|i| {
            let j = i * expert.len() / 10;
            let mut v = expert.obs[j * expert.obs_dim..(j + 1) * expert.obs_dim].to_vec();
            v.extend_from_slice(&expert.actions[j * expert.act_dim..(j + 1) * expert.act_dim]);
            v
        })
        .collect();
    let cfg = GailConfig {
        penalty,
        spectral,
        seed: a.seed,
        ..GailConfig::default()
    };
    let digest = file_digest(&dir.join("actor.safetensors"))?;
    let mut s = session(&a, "episodes.jsonl", "gail")?;
    if let Some(r) = &s.resume {
        if r.value::<String>("expert_digest")? != digest {
            bail!(
                "the expert {} changed since the run started; resume needs the same expert",
                dir.join("actor.safetensors").display()
            );
        }
    }
    let mut disc = gail::Discriminator::new(&cfg, expert)?;
    let Some(td3_run) = drive_td3(&mut s, &mut env, &td3_cfg, Some(&mut disc), |w| {
        w.value("expert_digest", &digest)
    })?
    else {
        return Ok(());
    };
    let run = gail::GailRun {
        td3: td3_run,
        discriminator: disc,
    };
    run.td3.actor.save(&a.out().join("actor.safetensors"))?;
    run.discriminator
        .net
        .save(&a.out().join("discriminator.safetensors"))?;
    // The local Lipschitz constant of D (the reward is σ(D)-Lipschitz in D, so at most D's) on boxes of
    // radius 0.1 around expert pairs.
    let lnet = optlab::lipschitz::network::Network::from_model(&run.discriminator.net)?;
    let mut local: Vec<f64> = probe
        .iter()
        .map(|x| {
            Ok(optlab::lipschitz::bab::local_lipschitz(
                &lnet,
                x,
                &optlab::lipschitz::local::LocalOptions::new(0.1),
                None,
            )?
            .bound)
        })
        .collect::<optlab::Result<_>>()?;
    local.sort_by(f64::total_cmp);
    let mean_last10 = mean_last_10(&run.td3.episodes);
    let summary = json!({
        "env": "Pendulum-v1", "algo": "gail", "reg": reg, "steps": a.steps, "seed": a.seed,
        "expert_return": expert_return, "episodes": run.td3.episodes.len(),
        "mean_return_last_10": mean_last10, "seconds": run.td3.seconds,
        "discriminator_loss": {"bce": run.discriminator.last[0], "entropy": run.discriminator.last[1], "penalty": run.discriminator.last[2]},
        "reward_local_lipschitz": {"eps": 0.1, "median": local[local.len() / 2], "max": local[local.len() - 1]},
    });
    write_atomic(
        &a.out().join("summary.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    returns_chart(
        a.out(),
        &format!("off-policy GAIL ({reg}) on Pendulum-v1: episode return"),
        &run.td3.episodes,
    )?;
    if a.json {
        println!("{summary}");
    } else {
        println!(
            "{} episodes in {:.1} s; mean return of the last 10: {mean_last10:.1} (expert {expert_return:.1}); local Lipschitz of D: median {:.3}; wrote {}",
            run.td3.episodes.len(),
            run.td3.seconds,
            local[local.len() / 2],
            a.out().display()
        );
    }
    Ok(())
}

/// The TD3 settings of the flags for the TD3-based algorithms (Pendulum only), with `--reg` applied to the
/// critics when `critic_flags` (GAIL's `--reg` is its discriminator's).
fn td3_config(a: &TrainArgs, critic_flags: bool) -> Result<Td3Config> {
    if a.env != "pendulum" {
        bail!(
            "rl train: env '{}' is not available for {}; available: pendulum",
            a.env,
            a.algo
        );
    }
    let hidden = parse_hidden(a.hidden.as_deref().unwrap_or("256-256"))?;
    if hidden.is_empty() {
        bail!("rl train: {} needs at least one hidden layer", a.algo);
    }
    let cfg = Td3Config {
        total_steps: a.steps,
        learning_starts: a.learning_starts,
        hidden,
        updates_per_step: a.updates_per_step,
        seed: a.seed,
        ..Default::default()
    };
    let cfg = if critic_flags {
        critic_reg(a, cfg)?
    } else {
        cfg
    };
    cfg.check()?;
    Ok(cfg)
}

/// `--reg` for TD3's critics.
fn critic_reg(a: &TrainArgs, mut cfg: Td3Config) -> Result<Td3Config> {
    match a.reg.as_deref().unwrap_or("none") {
        "none" => {}
        "spectral" => cfg.critic_spectral = optlab::nn::spectral::SpectralScope::Hidden,
        "spectral-all" => cfg.critic_spectral = optlab::nn::spectral::SpectralScope::All,
        "adv" => {
            if !(a.adv_eps.is_finite() && a.adv_eps > 0.0) {
                bail!("--adv-eps must be finite and > 0");
            }
            cfg.critic_adversarial = a.adv_eps;
        }
        other => bail!(
            "rl train: --reg '{other}' for {}; available: none, spectral, spectral-all, adv",
            a.algo
        ),
    }
    Ok(cfg)
}

fn train_mbpo(a: TrainArgs) -> Result<()> {
    use optlab::rl::mbpo::{self, MbpoConfig, ModelBased};
    let td3_cfg = td3_config(&a, true)?;
    let cfg = MbpoConfig {
        models: a.models,
        seed: a.seed,
        ..MbpoConfig::default()
    };
    cfg.check()?;
    let mut env = Pendulum::default();
    let mut ext = ModelBased::new(&cfg, env.obs_dim(), 1, 2.0)?;
    let mut s = session(&a, "episodes.jsonl", "mbpo")?;
    let Some(run) = drive_td3(&mut s, &mut env, &td3_cfg, Some(&mut ext), |_| Ok(()))? else {
        return Ok(());
    };
    run.actor.save(&a.out().join("actor.safetensors"))?;
    // The Bellman gap on 256 held-out states: (θ, θ̇) uniform on [−π, π] × [−8, 8], the actor's action.
    let mut rng = optlab::rng::rng_for(a.seed, optlab::rng::Stream::Data, 31);
    let (mut states, mut actions, mut nexts, mut rewards) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    use optlab::rl::env::uniform;
    for _ in 0..256 {
        let th = uniform(&mut rng, -std::f64::consts::PI, std::f64::consts::PI);
        let thd = uniform(&mut rng, -8.0, 8.0);
        env.set_state(&[th, thd])?;
        let obs = [th.cos(), th.sin(), thd];
        let act = td3::greedy(&run, &obs)?;
        let st = env.step(&optlab::rl::env::Action::Continuous(act.clone()))?;
        states.extend(obs.iter().map(|&v| v as f32));
        actions.extend(act.iter().map(|&v| v as f32));
        nexts.extend(st.obs.iter().map(|&v| v as f32));
        rewards.push(st.reward as f32);
    }
    let dev = &candle_core::Device::Cpu;
    let t = |v: Vec<f32>, c: usize| candle_core::Tensor::from_vec(v, (256, c), dev);
    let critic = run.critic.as_ref().expect("a trained run has its critic");
    let value = |s: &candle_core::Tensor| -> optlab::Result<candle_core::Tensor> {
        let a2 = td3::actor_out(&run.actor, s, run.bound)?;
        critic.forward(&candle_core::Tensor::cat(&[s, &a2], 1)?)
    };
    let gap = mbpo::bellman_gap(
        &ext.models,
        &t(states, 3)?,
        &t(actions, 1)?,
        &t(nexts, 3)?,
        &t(rewards, 1)?,
        td3_cfg.gamma,
        &value,
    )?;
    let mean_last10 = mean_last_10(&run.episodes);
    let reg = a.reg.clone().unwrap_or_else(|| "none".into());
    let summary = json!({
        "env": "Pendulum-v1", "algo": "mbpo", "models": a.models, "reg": reg, "steps": a.steps, "seed": a.seed,
        "updates_per_step": a.updates_per_step, "episodes": run.episodes.len(),
        "mean_return_last_10": mean_last10, "seconds": run.seconds, "model_nll": ext.last_nll,
        "model_transitions": ext.generated, "bellman_gap": gap,
    });
    write_atomic(
        &a.out().join("summary.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    returns_chart(
        a.out(),
        &format!(
            "MBPO ({} model(s), critic reg {reg}) on Pendulum-v1: episode return",
            a.models
        ),
        &run.episodes,
    )?;
    if a.json {
        println!("{summary}");
    } else {
        println!(
            "{} episodes in {:.1} s; mean return of the last 10: {mean_last10:.1}; Bellman gap {gap:.3}; wrote {}",
            run.episodes.len(),
            run.seconds,
            a.out().display()
        );
    }
    Ok(())
}

/// Runs a TD3-based agent (with P04's or P24's extension) in the session: episode returns to the log and the
/// bar, checkpoints when due; `None` when `--stop-after` stopped it. `extra` adds to each checkpoint.
fn drive_td3(
    s: &mut Session,
    env: &mut Pendulum,
    cfg: &Td3Config,
    mut ext: Option<&mut dyn Td3Extension>,
    extra: impl Fn(&mut Writer) -> optlab::Result<()>,
) -> Result<Option<td3::Td3Run>> {
    let mut agent = Td3Agent::new(env, cfg)?;
    if let Some(r) = &s.resume {
        agent.load(r)?;
        if let Some(e) = ext.as_deref_mut() {
            e.load(r)?;
        }
        let last = agent.episodes().last().map_or(f64::NAN, |e| e.ret);
        s.show(agent.steps(), last);
    }
    while !agent.is_done() {
        let m: Option<&mut dyn Td3Extension> = match &mut ext {
            Some(m) => Some(&mut **m),
            None => None,
        };
        let Some(e) = agent.step(env, m)? else {
            if agent.steps().is_multiple_of(50) {
                s.bar.set_position(agent.steps());
            }
            continue;
        };
        s.line(&json!({"step": e.step, "return": e.ret}))?;
        s.show(agent.steps(), e.ret);
        let steps = agent.steps();
        let save = |w: &mut Writer| {
            agent.save(w)?;
            if let Some(m) = ext.as_deref() {
                m.save(w)?;
            }
            extra(w)
        };
        if !agent.is_done() && s.checkpoint_if_due(steps, save)? == Due::Stop {
            s.stopped(steps, cfg.total_steps);
            return Ok(None);
        }
    }
    s.bar.finish_and_clear();
    Ok(Some(agent.finish()))
}

/// FNV-1a of a file's bytes, in hex (to notice a changed input on resume).
fn file_digest(path: &std::path::Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    Ok(format!("{h:016x}"))
}

/// The mean return of the last 10 episodes.
fn mean_last_10(episodes: &[td3::Episode]) -> f64 {
    let last: Vec<f64> = episodes.iter().rev().take(10).map(|e| e.ret).collect();
    last.iter().sum::<f64>() / last.len().max(1) as f64
}

/// DIR/returns.png: episode return against the environment step.
fn returns_chart(out: &std::path::Path, title: &str, episodes: &[td3::Episode]) -> Result<()> {
    line_chart(
        &out.join("returns.png"),
        title,
        "environment step",
        "return",
        &[Series {
            name: String::new(),
            points: episodes.iter().map(|e| (e.step as f64, e.ret)).collect(),
        }],
        false,
    )
}

/// `optlab rl eval`.
fn eval(a: EvalArgs) -> Result<()> {
    use optlab::rl::env::Action;
    if a.episodes == 0 || a.episodes > 100_000 {
        bail!("--episodes must be 1 to 100000");
    }
    let path = a.run.join("summary.json");
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?,
    )
    .with_context(|| format!("{} is not JSON", path.display()))?;
    let (env_name, algo) = (
        summary["env"].as_str().unwrap_or_default().to_string(),
        summary["algo"].as_str().unwrap_or_default().to_string(),
    );
    let mut env: Box<dyn Env> = match env_name.as_str() {
        "CartPole-v1" => Box::new(CartPole::default()),
        "Pendulum-v1" => Box::new(Pendulum::default()),
        "LQR" => Box::new(Lqr::damped_double_integrator(50)?),
        "FrozenLake-v1" => Box::new(GridWorld::frozen_lake(true)),
        other => bail!("{}: env '{other}' is not one rl eval knows", path.display()),
    };
    enum Pi {
        Td3(td3::Td3Run),
        Pg(Policy),
    }
    let pi = match algo.as_str() {
        "td3" | "gail" | "mbpo" => Pi::Td3(load_td3_actor(&a.run, env.as_ref())?),
        "reinforce" | "n-pg-igt" | "harpg" => {
            let kind = match env.action_space() {
                ActionSpace::Discrete(n) => PolicyKind::Softmax { actions: n },
                ActionSpace::Box { low, .. } => PolicyKind::Gaussian { dim: low.len() },
            };
            Pi::Pg(Policy::load(
                &a.run.join("policy.safetensors"),
                kind,
                env.obs_dim(),
            )?)
        }
        other => bail!(
            "{}: algo '{other}' is not one rl eval knows",
            path.display()
        ),
    };
    let mut rng = optlab::rng::rng_for(a.seed, optlab::rng::Stream::Data, 41);
    let mut returns = Vec::with_capacity(a.episodes);
    for _ in 0..a.episodes {
        let mut obs = env.reset(&mut rng);
        let mut ret = 0.0;
        loop {
            let action = match &pi {
                Pi::Td3(run) => Action::Continuous(td3::greedy(run, &obs)?),
                Pi::Pg(p) => p.act(&obs, &mut rng, false)?,
            };
            let s = env.step(&action)?;
            ret += s.reward;
            obs = s.obs;
            if s.terminated || s.truncated {
                break;
            }
        }
        returns.push(ret);
    }
    let n = returns.len() as f64;
    let mean = returns.iter().sum::<f64>() / n;
    let std = (returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n).sqrt();
    let (min, max) = returns
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| {
            (lo.min(*r), hi.max(*r))
        });
    let out = json!({"env": env_name, "algo": algo, "episodes": a.episodes, "seed": a.seed,
                     "mean_return": mean, "std_return": std, "min_return": min, "max_return": max});
    if a.json {
        println!("{out}");
    } else {
        println!(
            "{algo} on {env_name}: {} episodes, return {mean:.2} ± {std:.2} (min {min:.2}, max {max:.2})",
            a.episodes
        );
    }
    Ok(())
}
