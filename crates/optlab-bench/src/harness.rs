//! What every benchmark shares: running the Python harnesses in `python/` (the PyTorch side, the reference code)
//! and reading their one JSON line.

use clap::Args;

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
    /// Runs the harness `script` (a file in `python/`) with the thread count followed by `args`, parsing its
    /// one JSON line; `None` when skipped, when torch is missing, or when the script fails (with a warning).
    pub fn run(&self, script: &str, args: &[String]) -> Option<serde_json::Value> {
        if self.no_torch {
            return None;
        }
        let mut all = vec![self.torch_threads.to_string()];
        all.extend_from_slice(args);
        run_torch_script(script, &all).and_then(|s| serde_json::from_str(s.trim()).ok())
    }
}

/// The path of a harness in `python/`.
fn script_path(script: &str) -> String {
    format!("{}/python/{script}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs the harness `script` with `python3` and `args`; `None` when python3 cannot be started.
fn python(script: &str, args: &[String]) -> Option<std::process::Output> {
    std::process::Command::new("python3")
        .arg(script_path(script))
        .args(args)
        .output()
        .ok()
}

/// Runs a Python harness with `python3` when torch imports, returning its stdout.
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
    let out = python(script, args)?;
    if !out.status.success() {
        eprintln!(
            "warning: the PyTorch side failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).to_string())
}

/// Runs one of the Python harnesses (by path, so it can find tools/reference/), returning its JSON line; `None`
/// with a note when it is skipped, not installed (exit 3) or failed.
pub(crate) fn python_script(
    script: &str,
    args: &[String],
    skip: bool,
) -> Option<serde_json::Value> {
    if skip {
        return None;
    }
    let out = python(script, args)?;
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

/// `ours / theirs` when both sides were measured; `None` (JSON null) otherwise.
pub fn ratio(ours: Option<f64>, theirs: Option<f64>) -> Option<f64> {
    Some(ours? / theirs?)
}

/// Milliseconds per call of `step`: five warm-up calls, then the best of 3 repetitions of `steps` calls.
/// A field of /proc/self/status in KiB (Linux), or `None`.
fn status_kib(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    line[field.len() + 1..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Peak resident memory that `run` adds to this process, in MiB: the high-water mark while it runs (reset first
/// through /proc/self/clear_refs) less the resident size before; `None` where /proc does not say (not Linux).
/// PyTorch's side (`torch_train.py memory`) measures the same way.
pub fn peak_added_mib(run: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<Option<f64>> {
    let before = status_kib("VmRSS");
    // Without the reset the mark may predate `run` (then the figure is an upper bound).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    run()?;
    let peak = status_kib("VmHWM");
    Ok(before
        .zip(peak)
        .map(|(b, p)| p.saturating_sub(b) as f64 / 1024.0))
}

pub fn best_ms(steps: usize, mut step: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    for _ in 0..5 {
        step()?;
    }
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = std::time::Instant::now();
        for _ in 0..steps {
            step()?;
        }
        best = best.min(t.elapsed().as_secs_f64() / steps as f64);
    }
    Ok(best * 1e3)
}
