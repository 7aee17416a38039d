//! `optlab bench`: side-by-side benchmarks. Every number is reported next to its anchor measured in the same
//! run (PyTorch when `python3 -c "import torch"` works), as a ratio.

mod curvature;
mod lipschitz;
mod optim;
mod solvers;
mod train;

use anyhow::Result;
use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
}

#[derive(Subcommand, Debug)]
pub enum BenchWhat {
    /// Time of one training step (forward, cross-entropy, backward, AdamW) of two MLPs, optlab vs PyTorch.
    Train(train::TrainBenchArgs),
    /// Step time of every optimizer over 10M f32 parameters against the measured memory-bandwidth floor and
    /// PyTorch's fused/foreach step.
    Optim(optim::OptimBenchArgs),
    /// Cost of one exact Hessian-vector product as a multiple of one gradient, next to PyTorch's.
    Curvature(curvature::CurvatureBenchArgs),
    /// CBO iterations/s against CBXpy and CoLiDE/DAGMA wall time against the official code, same problems.
    Solvers(solvers::SolversBenchArgs),
    /// Local Lipschitz bounds (P02) against auto_LiRPA's Jacobian bounds, LipSDP (P14) against cvxpy + Clarabel.
    Lipschitz(lipschitz::LipschitzBenchArgs),
}

pub fn run(a: BenchArgs) -> Result<()> {
    match a.what {
        BenchWhat::Train(t) => train::run(t),
        BenchWhat::Optim(o) => optim::run(o),
        BenchWhat::Curvature(c) => curvature::run(c),
        BenchWhat::Solvers(s) => solvers::run(s),
        BenchWhat::Lipschitz(l) => lipschitz::run(l),
    }
}

/// The PyTorch side of a benchmark: its thread count, or none at all.
#[derive(Args, Debug)]
pub struct TorchSide {
    /// Threads for PyTorch (optlab uses rayon's pool: RAYON_NUM_THREADS, default all cores).
    #[arg(long, default_value_t = 2)]
    pub torch_threads: usize,
    /// Skip the PyTorch side.
    #[arg(long)]
    pub no_torch: bool,
}

impl TorchSide {
    /// Runs `script` with the thread count followed by `args`, parsing its one JSON line; `None` when skipped,
    /// when torch is missing, or when the script fails (with a warning).
    pub fn run(&self, script: &str, args: &[String]) -> Option<serde_json::Value> {
        if self.no_torch {
            return None;
        }
        let mut all = vec![self.torch_threads.to_string()];
        all.extend_from_slice(args);
        run_torch_script(script, &all).and_then(|s| serde_json::from_str(s.trim()).ok())
    }
}

/// Runs a Python benchmark script with `python3` when torch imports, returning its stdout.
pub fn run_torch_script(script: &str, args: &[String]) -> Option<String> {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import torch"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        return None;
    }
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "warning: the PyTorch side failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).to_string())
}

/// Runs one of the Python scripts next to this file (by path, so it can find tools/reference/), returning its
/// JSON line; `None` with a note when it is skipped, not installed (exit 3) or failed.
pub(crate) fn python_script(
    script: &str,
    args: &[String],
    skip: bool,
) -> Option<serde_json::Value> {
    if skip {
        return None;
    }
    let path = format!("{}/src/bench/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("python3")
        .arg(&path)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let what = if out.status.code() == Some(3) {
            "not installed"
        } else {
            err.trim()
        };
        eprintln!(
            "note: {script}: {}",
            what.lines().last().unwrap_or("failed")
        );
        return None;
    }
    serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).ok()
}
