//! A fuzz test of the command line: every command driven with generated bad inputs — a wrong value in one or
//! two of its flags, a missing or corrupt file, an unknown flag — from a fixed seed and the table of
//! `fuzz_cases.txt`. Each case must end with exit
//! code 1 or 2 and exactly one `error:` line: never a panic, an abort, a signal or a hang. `OPTLAB_FUZZ_CASES`
//! sets the number of cases (300 by default), `OPTLAB_FUZZ_SEED` the seed.

use crate::common::{optlab, tmp};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A command that succeeds quickly as given (or, `must_fail`, fails as given) and, per flag (or flags), values it
/// must refuse.
struct Case {
    must_fail: bool,
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
            let (must_fail, command) = match line.strip_prefix("! ") {
                Some(c) => (true, c),
                None => (false, line),
            };
            cases.push(Case {
                must_fail,
                args: command.split_whitespace().map(String::from).collect(),
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

/// Replaces the placeholders (see `fuzz_cases.txt`): `{out}` by a path of its own for case `case`, the others
/// by the fixtures [`fixtures`] made in `root`.
fn fill(arg: &str, root: &Path, case: usize) -> String {
    let mut a = arg.replace(
        "{out}",
        &root.join(format!("out{case}")).display().to_string(),
    );
    for (name, file) in FIXTURES {
        a = a.replace(name, &root.join(file).display().to_string());
    }
    a
}

/// Placeholder and file name of every fixture.
const FIXTURES: &[(&str, &str)] = &[
    ("{file}", "corrupt.bin"),
    ("{empty}", "empty.txt"),
    ("{dir}", "emptydir"),
    ("{run}", "run"),
    ("{model}", "run/model.safetensors"),
    ("{inputs}", "inputs.csv"),
    ("{curve}", "curve.csv"),
    ("{fit}", "fit.json"),
    ("{regression}", "regression.csv"),
    ("{table}", "table.csv"),
];

/// Writes the fixtures into `root`: corrupt bytes, an empty file and directory, a finished run (from the binary),
/// inputs of its model, a loss curve of a known annealing law and the law fitted to it, a regression CSV and a
/// numeric table.
fn fixtures(root: &Path) {
    std::fs::create_dir_all(root.join("emptydir")).unwrap();
    // Bytes that are no format: a truncated safetensors header, then noise.
    let mut junk = vec![200u8, 0, 0, 0, 0, 0, 0, 0, b'{', b'"'];
    junk.extend((0..300u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    std::fs::write(root.join("corrupt.bin"), &junk).unwrap();
    std::fs::write(root.join("empty.txt"), b"").unwrap();
    let run = root.join("run");
    crate::common::ok(&[
        "train",
        "--steps",
        "3",
        "--out",
        run.to_str().unwrap(),
        "--quiet",
    ]);
    let pixel = |r: usize, c: usize| ((r * 7 + c * 3) % 17) as f64;
    let mut inputs = (0..64)
        .map(|c| format!("x{c}"))
        .collect::<Vec<_>>()
        .join(",")
        + ",y\n";
    for r in 0..3 {
        let row: Vec<String> = (0..64).map(|c| pixel(r, c).to_string()).collect();
        inputs.push_str(&format!("{},{}\n", row.join(","), r));
    }
    std::fs::write(root.join("inputs.csv"), inputs).unwrap();
    // L = 2 + 0.5 S1^-0.5 - 2 S2 over a linear decay of the lr (S2 by the paper's momentum, λ = 0.999).
    let (steps, peak) = (300usize, 1e-3);
    let (mut curve, mut s1, mut s2, mut m) = (String::from("step,lr,loss\n"), 0.0, 0.0, 0.0);
    let mut prev = peak;
    for k in 1..=steps {
        let lr = peak * (1.0 - (k - 1) as f64 / steps as f64);
        m = 0.999 * m + (prev - lr);
        prev = lr;
        s1 += lr;
        s2 += m;
        let loss = 2.0 + 0.5 * f64::powf(s1, -0.5) - 2.0 * s2;
        curve.push_str(&format!("{k},{lr},{loss}\n"));
    }
    std::fs::write(root.join("curve.csv"), curve).unwrap();
    let (curve, fit) = (root.join("curve.csv"), root.join("fit.json"));
    crate::common::ok(&[
        "scaling",
        "fit",
        "--curve",
        curve.to_str().unwrap(),
        "--out",
        fit.to_str().unwrap(),
    ]);
    let mut reg = String::from("a,b,y\n");
    let mut table = String::from("a,b,c\n");
    for r in 0..40 {
        let (a, b) = (pixel(r, 1) / 17.0 - 0.5, pixel(r, 5) / 17.0 - 0.5);
        reg.push_str(&format!("{a},{b},{}\n", (a + b).max(0.0)));
        table.push_str(&format!(
            "{a},{b},{}\n",
            2.0 * a - b + 0.1 * pixel(r, 9) / 17.0
        ));
    }
    std::fs::write(root.join("regression.csv"), reg).unwrap();
    std::fs::write(root.join("table.csv"), table).unwrap();
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
    fixtures(&root);
    let table = table();
    // The table itself: every command succeeds (or fails) as given, so a refusal below is the bad value's doing.
    for (k, case) in table.iter().enumerate() {
        let args: Vec<String> = case
            .args
            .iter()
            .map(|a| fill(a, &root, 100_000 + k))
            .collect();
        match (case.must_fail, check(&args)) {
            (false, Some(p)) if p != "accepted" => {
                panic!("optlab {} should succeed: {p}", args.join(" "))
            }
            (true, Some(p)) if p == "accepted" => panic!("optlab {} should fail", args.join(" ")),
            _ => {}
        }
    }
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
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
            match (args.iter().position(|a| *a == flags[0]), &value) {
                // Replace the value the command already gives.
                (Some(i), Some(v)) if flags.len() == 1 && i + 1 < args.len() => {
                    args[i + 1] = v.clone();
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
    // Drained while the command runs, so a long error output cannot block it.
    let mut stderr = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        use std::io::Read as _;
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err);
        err
    });
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
    let err = reader.join().unwrap_or_default();
    let errors = err.lines().filter(|l| l.starts_with("error:")).count();
    match status.code() {
        None => Some(format!("killed by a signal: {err}")),
        Some(0) => Some("accepted".into()),
        Some(1 | 2) if errors == 1 && !err.contains("panicked") => None,
        Some(c) => Some(format!("exit {c}, {errors} error lines: {err}")),
    }
}
