//! `optlab-bench`: side-by-side benchmarks. Every number is reported next to its anchor measured in the same
//! run — PyTorch when `python3 -c "import torch"` works, the papers' reference code, the machine's measured
//! memory bandwidth — as a ratio. The Python harnesses live in `python/` beside this crate; run from a checkout:
//!
//! ```text
//! cargo run --release -p optlab-bench -- train|optim|curvature|solvers|implicit|dp|online|rl|explain|align|diffusion
//! cargo run --release -p optlab-bench --features lipsdp -- lipschitz --timeout 60
//! ```

mod align;
mod curvature;
mod diffusion;
mod dp;
mod explain;
mod harness;
mod implicit;
mod linsolve;
mod lipschitz;
mod nlp;
mod online;
mod optim;
mod pde;
mod rl;
mod sim;
mod solvers;
mod train;

use clap::{Parser, Subcommand};

// The allocator the optlab binary uses, so the timings are the user's.
#[global_allocator]
static GLOBAL: optlab::alloc::BufferArena<mimalloc::MiMalloc> =
    optlab::alloc::BufferArena::new(mimalloc::MiMalloc);

#[derive(Parser)]
#[command(
    name = "optlab-bench",
    version,
    about = "Side-by-side benchmarks of optlab: ratios against PyTorch, the reference code and the hardware, measured in one run"
)]
struct Cli {
    #[command(subcommand)]
    what: Bench,
}

#[derive(Subcommand, Debug)]
enum Bench {
    /// Time and peak memory of one training step (forward, cross-entropy, backward, AdamW) of two MLPs, two CNNs
    /// and the char-LM transformer, optlab vs PyTorch.
    Train(train::TrainBenchArgs),
    /// Step time of every optimizer over 10M f32 parameters against the measured memory-bandwidth floor and
    /// PyTorch's fused/foreach step.
    Optim(optim::OptimBenchArgs),
    /// Cost of one exact Hessian-vector product as a multiple of one gradient, next to PyTorch's.
    Curvature(curvature::CurvatureBenchArgs),
    /// CBO iterations/s against CBXpy and CoLiDE/DAGMA wall time against the official code, same problems.
    Solvers(solvers::SolversBenchArgs),
    /// One ridge hypergradient (n=5000, d=2000) and one distillation step by implicit differentiation (P10) against
    /// jaxopt.
    Implicit(implicit::ImplicitBenchArgs),
    /// A DP-SGD step as a multiple of a plain step (next to opacus's), and data-parallel epochs over 1, 2, 4
    /// MPI ranks with the bytes each rank sends per step.
    Dp(dp::DpBenchArgs),
    /// AdaSketch-Newton (P19) on the equality-constrained CUTEst set against scipy's trust-constr.
    Nlp(nlp::NlpBenchArgs),
    /// Rounds per second of CSMD (P06) and of the SEA harness with OGD and optimistic OMD (P32), d = 100, one
    /// core, next to the floor of each round's bare arithmetic.
    Online(online::OnlineBenchArgs),
    /// Environment steps per second of CartPole-v1 and Pendulum-v1 against Gymnasium's Python loop.
    Rl(rl::RlBenchArgs),
    /// P07's Stability measure and T-Rex search (time per point).
    Explain(explain::ExplainBenchArgs),
    /// One f-DPO step (P37) of the charlm transformer on 32 preference pairs against PyTorch.
    Align(align::AlignBenchArgs),
    /// The diffusion score network: one denoising-score-matching step and Euler-Maruyama throughput against PyTorch.
    Diffusion(diffusion::DiffusionBenchArgs),
    /// P18's sparse kernels (Poisson mat-vec, CG and IC(0)-PCG iterations) against the measured memory bandwidth,
    /// and DCDM's convolution by candle and by optlab's im2col + gemm.
    Linsolve(linsolve::LinsolveBenchArgs),
    /// P22's Deep Ritz step against PyTorch (autograd with create_graph for ∇u) and the spectral solver's iteration.
    Pde(pde::PdeBenchArgs),
    /// The tactile core of P20: simulation steps per second, forward and with the reverse pass.
    Sim(sim::SimBenchArgs),
    /// Local Lipschitz bounds (P02) against auto_LiRPA's Jacobian bounds, LipSDP (P14) against cvxpy + Clarabel.
    Lipschitz(lipschitz::LipschitzBenchArgs),
}

fn main() {
    // Second-order gradients (the curvature bench) and a pinned thread count, before any thread starts.
    optlab::runtime::init();
    let r = match Cli::parse().what {
        Bench::Train(t) => train::run(t),
        Bench::Optim(o) => optim::run(o),
        Bench::Curvature(c) => curvature::run(c),
        Bench::Solvers(s) => solvers::run(s),
        Bench::Lipschitz(l) => lipschitz::run(l),
        Bench::Implicit(i) => implicit::run(i),
        Bench::Nlp(n) => nlp::run(n),
        Bench::Dp(d) => dp::run(d),
        Bench::Online(o) => online::run(o),
        Bench::Rl(r) => rl::run(r),
        Bench::Explain(e) => explain::run(e),
        Bench::Align(a) => align::run(a),
        Bench::Diffusion(d) => diffusion::run(d),
        Bench::Linsolve(l) => linsolve::run(l),
        Bench::Pde(p) => pde::run(p),
        Bench::Sim(s) => sim::run(s),
    };
    if let Err(e) = r {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
