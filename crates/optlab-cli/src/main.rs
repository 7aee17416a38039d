//! `optlab`: train, compare and analyse with the methods of the optlab library from one command.

mod align_cmd;
mod bilevel_cmd;
mod cbo_cmd;
mod certify_cmd;
mod compare;
mod convex_relu_cmd;
mod curvature;
mod dag_cmd;
mod diffusion_cmd;
mod distill_cmd;
mod dp_cmd;
mod ep_cmd;
mod eval_cmd;
mod explain_cmd;
mod hparams;
mod linsolve_cmd;
mod lipschitz_cmd;
mod mpi_world;
mod mup_cmd;
mod nlp_cmd;
mod online_cmd;
mod optimize;
mod papers_cmd;
mod pde_cmd;
mod plot;
mod privacy_cmd;
mod progress;
mod rl_cmd;
mod rl_run;
mod run_args;
mod scaling_cmd;
mod schedule_cmd;
mod sim_cmd;
mod summary;
mod train_cmd;
mod variational_cmd;

use clap::{Parser, Subcommand};

// Buffers of 64 KiB and more from optlab's arena (reused without page faults; resident memory close to the peak),
// the rest from mimalloc, built without huge pages (they rounded a small model's memory up by several MiB).
#[global_allocator]
static GLOBAL: optlab::alloc::BufferArena<mimalloc::MiMalloc> =
    optlab::alloc::BufferArena::new(mimalloc::MiMalloc);

#[derive(Parser)]
#[command(
    name = "optlab",
    version,
    about = "Optimizers, schedules and analysis from 42 ML optimization papers",
    long_about = "optlab trains models with the optimizers and schedules of 42 ML optimization papers and analyses \
                  them. Every command prints one clear sentence and exits non-zero on bad input.\n\n\
                  Start with:  optlab demo --out demo-report",
    after_help = "Examples:\n  optlab demo --out demo-report\n  optlab train --optimizer adamw:lr=1e-3 --epochs 20 --out runs/adamw\n  optlab train --resume runs/adamw\n  optlab compare --optimizer sgd:lr=0.1,momentum=0.9 --optimizer adam:lr=1e-3 --out cmp\n  optlab optimize --function rosenbrock --init=-1.5,2 --optimizer adam:lr=0.05 --out t.json --plot t.png\n  optlab papers"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Memory the size checks may assume (e.g. 16G, 512MiB) instead of what the machine reports available;
    /// every command refuses, before allocating, what its inputs imply beyond it.
    #[arg(long, global = true, value_name = "SIZE")]
    max_memory: Option<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// The main job: train the default MLP on the embedded digits data with every optimizer and write a
    /// report (Markdown table + PNG curves).
    Demo(compare::DemoArgs),
    /// One training run into a run directory (config.toml, metrics.jsonl, summary.json, model.safetensors,
    /// optimizer.safetensors, plots/); `--resume DIR` continues a killed run bit-exactly.
    Train(Box<train_cmd::TrainArgs>),
    /// A trained run's model or a PyTorch state dict applied to data: loss, accuracy, per-example predictions.
    Eval(eval_cmd::EvalArgs),
    /// Several optimizers and/or models on one task, over one or more seeds, one report.
    Compare(Box<compare::CompareArgs>),
    /// An optimizer (or several) on an analytic test function: trajectory JSON and a contour plot of the paths.
    Optimize(optimize::OptimizeArgs),
    /// Curvature of a trained run or of a test function: lambda_max, tr(H), stability verdicts, SLQ density.
    Curvature(curvature::CurvatureArgs),
    /// Plot schedules (the factor per step, PNG and CSV).
    Schedule(schedule_cmd::ScheduleArgs),
    /// Hyperparameter laws: Step Law's optimal lr and batch size (P17); moving an lr to another batch size (P36).
    Hparams(hparams::HparamsArgs),
    /// Consensus-based optimization (P23) of a test function over many seeded runs: success rate, evaluations, time.
    Cbo(cbo_cmd::CboArgs),
    /// Bilevel problems on the digits: per-pixel regularization and distillation by implicit differentiation (P10),
    /// hyper-representation learning by BO-REP (P05) or StocBiO, constrained lower levels by LV-HBA (P13).
    Bilevel(bilevel_cmd::BilevelArgs),
    /// Equality-constrained nonlinear programs by AdaSketch-Newton (P19) on a CUTEst test set.
    Nlp(nlp_cmd::NlpArgs),
    /// Physics-constrained learning (P08): Fisher-KPP with soft or hard (Levenberg-Marquardt, mixture-of-experts)
    /// constraints against a finite-difference reference.
    Pde(pde_cmd::PdeArgs),
    /// Differential privacy: ε of DP-SGD's sampled Gaussian mechanism, or the noise for a target ε (opacus's RDP
    /// accountant); private training is `optlab train --privacy ...`.
    Privacy(privacy_cmd::PrivacyArgs),
    /// Private optimization on a data set held by workers (in-process or MPI ranks): DP-GD, DP-SGD, DIFF2 (P09),
    /// private SpiderBoost (P21).
    Dp(dp_cmd::DpArgs),
    /// Online and stochastic optimization: regret of online learners between stochastic and adversarial losses
    /// (P32), last-iterate rates of composite stochastic mirror descent (P06).
    Online(online_cmd::OnlineArgs),
    /// Reinforcement learning on optlab's environments (Gymnasium's CartPole, Pendulum, FrozenLake; an LQR): TD3,
    /// normalized policy gradients (P16), off-policy GAIL (P04), single-model MBRL (P24), behaviour cloning (P11).
    Rl(rl_cmd::RlArgs),
    /// Preference alignment under f-divergences (f-DPO, P37): a character language model tuned on preference
    /// pairs, and the exact categorical check.
    Align(align_cmd::AlignArgs),
    /// Score-based diffusion on Gaussian-mixture targets with an exact score (P25): denoising score matching,
    /// Euler-Maruyama and probability-flow samplers, the score error over time.
    Diffusion(diffusion_cmd::DiffusionArgs),
    /// Sparse linear systems and the deep conjugate direction method (P18): CG, IC(0)-PCG and a learned
    /// direction network on the 2-D Poisson problem with obstacles.
    Linsolve(linsolve_cmd::LinsolveArgs),
    /// f-distill (P39): a diffusion teacher distilled into a one-step generator by f-divergence matching.
    Distill(distill_cmd::DistillArgs),
    /// Holomorphic equilibrium propagation with Jacobian homeostasis (P31): EP gradient estimates against the
    /// exact gradient, and training on the digits.
    Ep(ep_cmd::EpArgs),
    /// A differentiable tactile sensor (P20): system identification and trajectory optimisation by gradients
    /// through the simulator against CMA-ES, and the Hertz check of its contact.
    Sim(sim_cmd::SimArgs),
    /// Counterfactual explanations that stay valid when the model changes (P07): the elastic-net base search and
    /// T-Rex on a run trained on an embedded table.
    Explain(explain_cmd::ExplainArgs),
    /// Convex training of a two-layer ReLU network by ADMM (P28), saved as a loadable MLP.
    ConvexRelu(convex_relu_cmd::ConvexReluArgs),
    /// Linear-SEM structure learning (P40): simulate data, fit a DAG with CoLiDE or DAGMA.
    Dag(dag_cmd::DagArgs),
    /// A sound Lipschitz bound of a network given as a PyTorch state dict (P02, P14).
    Lipschitz(lipschitz_cmd::LipschitzArgs),
    /// Randomized-smoothing l2 certificates (P03) for every input of a CSV.
    Certify(certify_cmd::CertifyArgs),
    /// The scaling law with learning-rate annealing (P38): fit it to loss curves, predict other schedules.
    Scaling(scaling_cmd::ScalingArgs),
    /// muP (P42): the coordinate check and the learning-rate sweep across widths, SP against muP.
    Mup(mup_cmd::MupArgs),
    /// The 42 seed papers: status (implemented / partial / not yet), library module and command.
    Papers(papers_cmd::PapersArgs),
}

fn main() {
    // Rust ignores SIGPIPE, so printing into a closed pipe (`optlab papers | head`) would panic; end quietly
    // instead, as other command-line tools do.
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to the default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Second-order gradients and a pinned thread count, before any thread starts.
    optlab::runtime::init();
    let cli = Cli::parse();
    let r = match cli.max_memory.as_deref().map(optlab::memory::parse_size) {
        Some(Err(e)) => Err(e.into()),
        Some(Ok(bytes)) => {
            optlab::memory::set_limit(bytes);
            dispatch(cli.cmd)
        }
        None => dispatch(cli.cmd),
    };
    if let Err(e) = r {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn dispatch(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Demo(a) => compare::demo(a),
        Cmd::Train(a) => train_cmd::run(*a),
        Cmd::Eval(a) => eval_cmd::run(a),
        Cmd::Compare(a) => compare::compare(*a),
        Cmd::Optimize(a) => optimize::run(a),
        Cmd::Curvature(a) => curvature::run(a),
        Cmd::Schedule(a) => schedule_cmd::run(a),
        Cmd::Hparams(a) => hparams::run(a),
        Cmd::Cbo(a) => cbo_cmd::run(a),
        Cmd::Bilevel(a) => bilevel_cmd::run(a),
        Cmd::Nlp(a) => nlp_cmd::run(a),
        Cmd::Pde(a) => pde_cmd::run(a),
        Cmd::Privacy(a) => privacy_cmd::run(a),
        Cmd::Dp(a) => dp_cmd::run(a),
        Cmd::Online(a) => online_cmd::run(a),
        Cmd::Rl(a) => rl_cmd::run(a),
        Cmd::Align(a) => align_cmd::run(a),
        Cmd::Diffusion(a) => diffusion_cmd::run(a),
        Cmd::Distill(a) => distill_cmd::run(a),
        Cmd::Linsolve(a) => linsolve_cmd::run(a),
        Cmd::Ep(a) => ep_cmd::run(a),
        Cmd::Sim(a) => sim_cmd::run(a),
        Cmd::Explain(a) => explain_cmd::run(a),
        Cmd::ConvexRelu(a) => convex_relu_cmd::run(a),
        Cmd::Dag(a) => dag_cmd::run(a),
        Cmd::Lipschitz(a) => lipschitz_cmd::run(a),
        Cmd::Certify(a) => certify_cmd::run(a),
        Cmd::Scaling(a) => scaling_cmd::run(a),
        Cmd::Mup(a) => mup_cmd::run(a),
        Cmd::Papers(a) => papers_cmd::run(a),
    }
}
