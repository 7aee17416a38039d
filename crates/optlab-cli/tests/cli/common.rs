//! Helpers of the CLI tests: run the binary, read its output, check one clean failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn optlab() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_optlab"));
    c.env_remove("CANDLE_GRAD_DO_NOT_DETACH"); // the binary sets it itself
    c
}

pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("optlab-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

pub fn run<S: AsRef<str>>(args: &[S]) -> Output {
    optlab()
        .args(args.iter().map(AsRef::as_ref))
        .output()
        .expect("spawn optlab")
}

/// The arguments of a command line written as one string (no argument holds a space).
pub fn argv(line: &str) -> Vec<String> {
    line.split_whitespace().map(String::from).collect()
}

/// Runs a command that must succeed; its stdout.
pub fn ok<S: AsRef<str> + std::fmt::Debug>(args: &[S]) -> String {
    let o = run(args);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{args:?}: {stderr}");
    stdout
}

pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

pub fn is_png(p: &Path) -> bool {
    std::fs::read(p)
        .map(|b| b.len() > 1000 && b.starts_with(b"\x89PNG\r\n\x1a\n"))
        .unwrap_or(false)
}

/// A clean failure: non-zero exit, one `error:` line, no panic.
pub fn fails_with<S: AsRef<str> + std::fmt::Debug>(args: &[S], want: &str) {
    let o = run(args);
    let (_, err) = text(&o);
    assert!(!o.status.success(), "{args:?} should fail");
    assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: expected one error line, got {err}"
    );
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(want),
        "{args:?}: {err}"
    );
}

pub fn safetensors_keys(p: &Path) -> Vec<String> {
    let b = std::fs::read(p).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let h: serde_json::Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
    h.as_object().unwrap().keys().cloned().collect()
}
