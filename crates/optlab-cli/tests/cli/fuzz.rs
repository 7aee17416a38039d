//! A fuzz test of the command line: every command driven with generated bad inputs — a wrong value in one or
//! two of its flags, a missing or corrupt file, an unknown flag — from a fixed seed and the table of
//! `fuzz_cases.txt`. Each case must end with exit
//! code 1 or 2 and exactly one `error:` line: never a panic, an abort, a signal or a hang. `OPTLAB_FUZZ_CASES`
//! sets the number of cases (300 by default), `OPTLAB_FUZZ_SEED` the seed.

use crate::common::{optlab, tmp};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A command that succeeds quickly as given and, per flag (or flags), values it must refuse.
struct Case {
    args: Vec<String>,
    slots: Vec<(Vec<String>, Vec<Option<String>>)>,
}

/// The cases of `fuzz_cases.txt` (its header says the format); `None` values push no argument.
fn table() -> Vec<Case> {
    let text = include_str!("fuzz_cases.txt");
    let mut lists = std::collections::HashMap::new();
    let mut cases: Vec<Case> = Vec::new();
    let values =
        |spec: &str, lists: &std::collections::HashMap<String, Vec<Option<String>>>| match spec
            .trim()
            .strip_prefix('@')
        {
            Some(name) => lists[name].clone(),
            None => spec
                .split(" | ")
                .map(|v| match v.trim() {
                    "<none>" => None,
                    "<empty>" => Some(String::new()),
                    v => Some(v.to_string()),
                })
                .collect(),
        };
    for line in text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        if let Some(def) = line.strip_prefix("= ") {
            let (name, vals) = def.split_once(' ').expect("= NAME values");
            let v = values(vals, &lists);
            lists.insert(name.to_string(), v);
        } else if line.starts_with(' ') {
            let (flags, vals) = line.split_once(" :: ").expect("FLAGS :: values");
            let flags = flags.split_whitespace().map(String::from).collect();
            let case = cases.last_mut().expect("a command before its flags");
            case.slots.push((flags, values(vals, &lists)));
        } else {
            cases.push(Case {
                args: line.split_whitespace().map(String::from).collect(),
                slots: Vec::new(),
            });
        }
    }
    cases
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Replaces the placeholders: `{out}` a fresh path, `{file}` a corrupt file, `{empty}` an empty file, `{dir}`
/// an empty directory.
fn fill(arg: &str, root: &Path, case: usize) -> String {
    arg.replace(
        "{out}",
        &root.join(format!("out{case}")).display().to_string(),
    )
    .replace("{file}", &root.join("corrupt.bin").display().to_string())
    .replace("{empty}", &root.join("empty.txt").display().to_string())
    .replace("{dir}", &root.join("emptydir").display().to_string())
}

#[test]
fn every_command_answers_bad_input_with_one_error_line() {
    let cases: usize = std::env::var("OPTLAB_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let seed: u64 = std::env::var("OPTLAB_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20261205);
    let root = tmp("fuzz");
    std::fs::create_dir_all(root.join("emptydir")).unwrap();
    // Bytes that are no format: a truncated safetensors header, then noise.
    let mut junk = vec![200u8, 0, 0, 0, 0, 0, 0, 0, b'{', b'"'];
    junk.extend((0..300u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    std::fs::write(root.join("corrupt.bin"), &junk).unwrap();
    std::fs::write(root.join("empty.txt"), b"").unwrap();
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let table = table();
    let mut failures = Vec::new();
    for k in 0..cases {
        let case = &table[rng.below(table.len())];
        let mut args: Vec<String> = case.args.iter().map(|a| fill(a, &root, k)).collect();
        for _ in 0..1 + rng.below(2) {
            // An unknown flag now and then; otherwise a bad value in one of the command's flags.
            if case.slots.is_empty() || rng.below(10) == 0 {
                args.push("--no-such-flag".into());
                continue;
            }
            let (flags, bad) = &case.slots[rng.below(case.slots.len())];
            let value = bad[rng.below(bad.len())]
                .as_deref()
                .map(|v| fill(v, &root, k));
            match args.iter().position(|a| *a == flags[0]) {
                // Replace the value the command already gives.
                Some(i) if flags.len() == 1 && i + 1 < args.len() => {
                    args[i + 1] = value.unwrap_or_default();
                }
                _ => {
                    args.extend(flags.iter().cloned());
                    args.extend(value);
                }
            }
        }
        if let Some(problem) = check(&args) {
            failures.push(format!("case {k}: optlab {}: {problem}", args.join(" ")));
        }
    }
    std::fs::remove_dir_all(&root).ok();
    assert!(
        failures.is_empty(),
        "{} of {cases} cases misbehaved:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{cases} generated bad inputs, each one clear error");
}

/// Runs one case; `Some(problem)` unless it failed cleanly within 60 s.
fn check(args: &[String]) -> Option<String> {
    let mut child = optlab()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn optlab");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            return Some("still running after 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read as _;
        let _ = e.read_to_string(&mut err);
    }
    let errors = err.lines().filter(|l| l.starts_with("error:")).count();
    match status.code() {
        None => Some(format!("killed by a signal: {err}")),
        Some(0) => Some("accepted".into()),
        Some(1 | 2) if errors == 1 && !err.contains("panicked") => None,
        Some(c) => Some(format!("exit {c}, {errors} error lines: {err}")),
    }
}
