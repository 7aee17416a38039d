//! The ending most one-shot commands share: summary.json (and plots) into `--out` under the run-directory lock,
//! then the summary on stdout with `--json` or one line of text.

use anyhow::{Context, Result};
use optlab::tensor_io::write_atomic;
use optlab::train::run_dir::RunDirLock;
use serde_json::Value;
use std::path::Path;

/// Writes `summary` as `out/summary.json` and draws `plots` into `out` when `out` is given; prints the summary
/// (`json`) or `line`.
pub fn report(
    out: Option<&Path>,
    json: bool,
    summary: &Value,
    line: &str,
    plots: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    if let Some(out) = out {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        let _lock = RunDirLock::acquire(out)?;
        write_atomic(
            &out.join("summary.json"),
            format!("{summary:#}\n").as_bytes(),
        )?;
        plots(out)?;
    }
    if json {
        println!("{summary}");
    } else {
        println!("{line}");
    }
    Ok(())
}
