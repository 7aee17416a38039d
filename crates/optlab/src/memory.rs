//! Sizes before allocation. A command estimates the memory its inputs imply (parameters, gradients, optimizer
//! state, activations, particles, patterns, horizons) and refuses, before allocating, what the machine cannot
//! hold: one typo (`hidden=100000000000`) must not take the machine down. The limit is the memory the kernel
//! reports available (`MemAvailable`), or what [`set_limit`] (the CLI's `--max-memory`) says.

use crate::{Error, Result};
use std::sync::atomic::{AtomicU64, Ordering};

/// The override of the available memory in bytes; 0 = none.
static LIMIT: AtomicU64 = AtomicU64::new(0);

/// Overrides the memory the checks allow (bytes), for those who know better than the estimate.
pub fn set_limit(bytes: u64) {
    LIMIT.store(bytes, Ordering::Relaxed);
}

/// The memory this process may still allocate, if known: the kernel's `MemAvailable`, lowered to what a cgroup
/// memory limit leaves (v2 `memory.max` − `memory.current`, or v1 `memory.limit_in_bytes` − `usage_in_bytes`).
pub fn available() -> Option<u64> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let num = |p: &str| read(p).and_then(|t| t.trim().parse::<u64>().ok());
    let machine = read("/proc/meminfo").and_then(|text| {
        let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb.saturating_mul(1024))
    });
    let cgroup = match (
        num("/sys/fs/cgroup/memory.max"),
        num("/sys/fs/cgroup/memory.current"),
    ) {
        (Some(max), Some(used)) => Some(max.saturating_sub(used)),
        _ => match (
            num("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
            num("/sys/fs/cgroup/memory/memory.usage_in_bytes"),
        ) {
            (Some(max), Some(used)) => Some(max.saturating_sub(used)),
            _ => None,
        },
    };
    match (machine, cgroup) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The limit the checks use: the override, else the available memory (`None`: unknown, nothing is refused).
pub fn limit() -> Option<u64> {
    match LIMIT.load(Ordering::Relaxed) {
        0 => available(),
        n => Some(n),
    }
}

/// Bytes in words: `1.5 GB`, `300 MB`, `2.0e4 TB` for absurd sizes.
pub fn fmt_bytes(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = bytes;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if v >= 1e4 {
        format!("{v:.1e} {}", UNITS[u])
    } else if v >= 100.0 || u == 0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Refuses `what` when its estimate `bytes` exceeds the limit, naming both; `how` says what to lower.
pub fn check(what: &str, bytes: f64, how: &str) -> Result<()> {
    let Some(limit) = limit() else {
        return Ok(());
    };
    if bytes.is_finite() && bytes <= limit as f64 {
        return Ok(());
    }
    let source = if LIMIT.load(Ordering::Relaxed) == 0 {
        "the machine has"
    } else {
        "--max-memory allows"
    };
    Err(Error::invalid(format!(
        "{what} needs about {} of memory, but {source} {} available; {how} (or pass --max-memory SIZE if you know better)",
        fmt_bytes(bytes),
        fmt_bytes(limit as f64)
    )))
}

/// Parses a size: bytes, or a number with K, M, G or T (powers of 1000) or KiB, MiB, GiB, TiB.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024f64.powi(2),
        "gib" => 1024f64.powi(3),
        "tib" => 1024f64.powi(4),
        other => {
            return Err(Error::invalid(format!(
                "memory size `{s}`: unknown unit `{other}` (use K, M, G, T or KiB, MiB, GiB, TiB)"
            )))
        }
    };
    let v: f64 = num
        .trim()
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v > 0.0)
        .ok_or_else(|| Error::invalid(format!("memory size `{s}` is not a positive number")))?;
    let bytes = v * mult;
    if bytes >= u64::MAX as f64 {
        return Err(Error::invalid(format!("memory size `{s}` is too large")));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_refusals() {
        assert_eq!(parse_size("8G").unwrap(), 8_000_000_000);
        assert_eq!(parse_size("1.5 GiB").unwrap(), 1_610_612_736);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert!(parse_size("3 parsecs").is_err() && parse_size("-1G").is_err());
        assert_eq!(fmt_bytes(2.5e9), "2.5 GB");
        assert_eq!(fmt_bytes(3.0e16), "3.0e4 TB");
        // 10^15 bytes exceed any machine this runs on; a kilobyte fits every one.
        if available().is_none() {
            return;
        }
        let e = check("a test", 1e15, "lower it").unwrap_err().to_string();
        assert!(
            e.contains("a test needs about 1000 TB") && e.contains("lower it"),
            "{e}"
        );
        check("a test", 1e3, "lower it").unwrap();
    }
}
