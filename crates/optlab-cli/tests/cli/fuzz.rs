//! A fuzz test of the command line: every command driven with generated bad inputs — a wrong value in one or
//! two of its flags, a missing or corrupt file, an unknown flag — from a fixed seed. Each case must end with exit
//! code 1 or 2 and exactly one `error:` line: never a panic, an abort, a signal or a hang. `OPTLAB_FUZZ_CASES`
//! sets the number of cases (300 by default), `OPTLAB_FUZZ_SEED` the seed.

use crate::common::{optlab, tmp};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// One flag and values it must refuse (in the command's context).
struct Slot {
    flag: &'static str,
    bad: &'static [&'static str],
}

/// A command that succeeds quickly as given (with `{out}`, `{file}`, `{dir}` placeholders) and its slots.
struct Case {
    args: &'static [&'static str],
    slots: &'static [Slot],
}

const OPTIMIZERS: &[&str] = &[
    "adamq",
    "ädämw:lr=0.1",
    "sgd:lr=0.1,lr=0.2",
    "sgd:lr=0.1,,momentum",
    "sgd:lr=-1",
    "sgd:lr=nan",
    "sgd:lr=1e400",
    "adam:beta1=1",
    "adam:betas=0.9",
    "lion:mode=lp,p=0.5",
    "lion:mode=soft",
    "chain",
    "chain:scale_by_adamw",
    "chain:scale_by_adam+clip_by_global_norm:max_norm=1",
    "sgd:lr",
    ":lr=1",
    "sgd:nesterov=true",
    "mfac:ngrads=0",
    "mfac:ngrads=1.5",
    "adahessian:update_period=0",
    "rmsprop:alpha=2",
];
const SCHEDULES: &[&str] = &[
    "cosin",
    "cosine:warmup=-1",
    "cosine:min_factor=2",
    "seq:constant;linear",
    "seq:constant@0;linear",
    "seq:constant@x;linear",
    "step:step_size=0",
    "wsd:decay_frac=2",
    "exponential:gamma=0",
    "file:/nonexistent/refined.json",
    "linear:warmup=100000",
];
const COUNTS: &[&str] = &["0", "-1", "abc", "1e3", "99999999999999999999", ""];
const REALS: &[&str] = &["nan", "inf", "-1", "x", "1e400", ""];

const CASES: &[Case] = &[
    Case {
        args: &["train", "--steps", "2", "--out", "{out}", "--quiet"],
        slots: &[
            Slot {
                flag: "--optimizer",
                bad: OPTIMIZERS,
            },
            Slot {
                flag: "--model",
                bad: &[
                    "mlp:hidden=0",
                    "mlp:hidden=100000000000",
                    "cnn:channels=0",
                    "mlp:act=swish",
                    "transformer",
                    "resnet:norm=xx",
                    "mlp:param=mup,base=0",
                    "mlp:hidden=64,act=relu-tanh",
                    "cnn:groups=0,norm=gn",
                    "cnn:channels=8-16-32-64",
                    "mlp:hidden=64,dim=3",
                ],
            },
            Slot {
                flag: "--data",
                bad: &[
                    "mons",
                    "moons:n=-1",
                    "moons:n=1",
                    "csv",
                    "csv:path=/nonexistent.csv",
                    "csv:path={file}",
                    "idx:images={file},labels={file}",
                    "safetensors:path={file}",
                    "text",
                    "text:path={file}",
                    "moons:n=100000000000000",
                    "moons:noise=nan",
                    "csv:path={dir}",
                    "digits:n=5",
                ],
            },
            Slot {
                flag: "--schedule",
                bad: SCHEDULES,
            },
            Slot {
                flag: "--epochs",
                bad: COUNTS,
            },
            Slot {
                flag: "--steps",
                bad: COUNTS,
            },
            Slot {
                flag: "--batch-size",
                bad: &["0", "-5", "x"],
            },
            Slot {
                flag: "--val-frac",
                bad: &["1", "-0.1", "nan", "inf", "2"],
            },
            Slot {
                flag: "--loss",
                bad: &["l2", "mse"],
            },
            Slot {
                flag: "--dtype",
                bad: &["f16", "bf16", ""],
            },
            Slot {
                flag: "--group",
                bad: &[
                    "rank<=x:lr=1",
                    "*.gamma:lr=0.1",
                    "rank<=1",
                    "rank<=1:momentum=0.5",
                    "rank<=1:lr=-1",
                ],
            },
            Slot {
                flag: "--hyper-schedule",
                bad: &[
                    "lr=cosine",
                    "momentum",
                    "beta9=cosine",
                    "batch_size=cosin",
                    "beta1=seq:constant*2",
                ],
            },
            Slot {
                flag: "--clip-grad-norm",
                bad: &["0", "-1", "nan"],
            },
            Slot {
                flag: "--agc",
                bad: &["0", "-1", "inf"],
            },
            Slot {
                flag: "--accumulate",
                bad: &["0", "100000"],
            },
            Slot {
                flag: "--batch-test",
                bad: &["norm:eta=0", "xyz", "norm:interval=0"],
            },
            Slot {
                flag: "--mup-rule",
                bad: &["madam"],
            },
            Slot {
                flag: "--task",
                bad: &["chat", "charlm"],
            },
            Slot {
                flag: "--log-every",
                bad: &["0"],
            },
            Slot {
                flag: "--config",
                bad: &["/nonexistent.toml", "{file}", "{dir}"],
            },
            Slot {
                flag: "--out",
                bad: &["{file}", "/proc/optlab/run"],
            },
        ],
    },
    Case {
        args: &["train", "--resume", "{dir}"],
        slots: &[Slot {
            flag: "--resume",
            bad: &["/nonexistent", "{dir}", "{file}"],
        }],
    },
    Case {
        args: &["compare", "--steps", "2", "--out", "{out}", "--quiet"],
        slots: &[
            Slot {
                flag: "--optimizer",
                bad: OPTIMIZERS,
            },
            Slot {
                flag: "--model",
                bad: &["mlp:hidden=0", "cnn:channels=0", "mlpp"],
            },
            Slot {
                flag: "--seed",
                bad: &["x", "-1", ""],
            },
            Slot {
                flag: "--schedule",
                bad: SCHEDULES,
            },
        ],
    },
    Case {
        args: &["eval", "{file}", "--data", "digits"],
        slots: &[
            Slot {
                flag: "--data",
                bad: &["mons", "moons:n=-1", "csv:path=/nonexistent.csv"],
            },
            Slot {
                flag: "--spec",
                bad: &["/nonexistent.json", "{file}"],
            },
        ],
    },
    Case {
        args: &[
            "optimize",
            "--function",
            "rosenbrock",
            "--init",
            "1,1",
            "--optimizer",
            "adam:lr=0.01",
            "--steps",
            "5",
            "--out",
            "{out}.json",
        ],
        slots: &[
            Slot {
                flag: "--function",
                bad: &["rosenbrok", "", "rastrigin:dim=0"],
            },
            Slot {
                flag: "--init",
                bad: &["x", "nan,1", "1e400,1", ""],
            },
            Slot {
                flag: "--optimizer",
                bad: OPTIMIZERS,
            },
            Slot {
                flag: "--steps",
                bad: &["0", "-1", "x"],
            },
            Slot {
                flag: "--dtype",
                bad: &["f16"],
            },
        ],
    },
    Case {
        args: &["curvature", "--function", "rosenbrock", "--at", "1,1"],
        slots: &[
            Slot {
                flag: "--function",
                bad: &["rosenbrok"],
            },
            Slot {
                flag: "--at",
                bad: &["x", "1", "nan,1"],
            },
            Slot {
                flag: "--lanczos-steps",
                bad: &["0", "-1"],
            },
            Slot {
                flag: "--probes",
                bad: &["0"],
            },
            Slot {
                flag: "--lr",
                bad: &["0", "-1", "nan"],
            },
            Slot {
                flag: "--run",
                bad: &["/nonexistent", "{dir}"],
            },
        ],
    },
    Case {
        args: &[
            "schedule",
            "plot",
            "cosine",
            "--steps",
            "10",
            "--out",
            "{out}.png",
        ],
        slots: &[Slot {
            flag: "--steps",
            bad: &["0", "-1", "x"],
        }],
    },
    Case {
        args: &["hparams", "--params", "1e9", "--tokens", "1e11"],
        slots: &[
            Slot {
                flag: "--params",
                bad: REALS,
            },
            Slot {
                flag: "--tokens",
                bad: REALS,
            },
            Slot {
                flag: "--seq-len",
                bad: &["0", "-1"],
            },
        ],
    },
    Case {
        args: &[
            "cbo",
            "--function",
            "rastrigin",
            "--dim",
            "2",
            "--runs",
            "1",
            "--iters",
            "10",
        ],
        slots: &[
            Slot {
                flag: "--function",
                bad: &["rastrign"],
            },
            Slot {
                flag: "--dim",
                bad: &["0", "-1"],
            },
            Slot {
                flag: "--particles",
                bad: &["1", "0", "100000000000"],
            },
            Slot {
                flag: "--sigma",
                bad: &["-1", "nan"],
            },
            Slot {
                flag: "--dt",
                bad: &["0", "-1", "inf"],
            },
            Slot {
                flag: "--iters",
                bad: &["-1", "x"],
            },
        ],
    },
    Case {
        args: &[
            "dag",
            "simulate",
            "--graph",
            "er2",
            "--d",
            "5",
            "--n",
            "50",
            "--out",
            "{out}.csv",
        ],
        slots: &[
            Slot {
                flag: "--graph",
                bad: &["tree3", "erx", ""],
            },
            Slot {
                flag: "--d",
                bad: &["0", "1", "-1"],
            },
            Slot {
                flag: "--n",
                bad: &["0", "-1"],
            },
            Slot {
                flag: "--noise",
                bad: &["xx"],
            },
        ],
    },
    Case {
        args: &["dag", "fit", "{file}", "--out", "{out}.csv"],
        slots: &[Slot {
            flag: "--variant",
            bad: &["xx"],
        }],
    },
    Case {
        args: &["convex-relu", "train", "{file}", "--out", "{out}"],
        slots: &[
            Slot {
                flag: "--patterns",
                bad: &["0", "-1"],
            },
            Slot {
                flag: "--beta",
                bad: &["-1", "nan"],
            },
            Slot {
                flag: "--rho",
                bad: &["0", "-1"],
            },
        ],
    },
    Case {
        args: &["lipschitz", "{file}"],
        slots: &[
            Slot {
                flag: "--method",
                bad: &["xx", "local"],
            },
            Slot {
                flag: "--norm",
                bad: &["3", "x"],
            },
            Slot {
                flag: "--eps",
                bad: &["-1", "nan"],
            },
            Slot {
                flag: "--spec",
                bad: &["/nonexistent.json", "{file}"],
            },
        ],
    },
    Case {
        args: &["certify", "{file}", "--sigma", "0.25", "--inputs", "{file}"],
        slots: &[
            Slot {
                flag: "--sigma",
                bad: &["0", "-1", "nan"],
            },
            Slot {
                flag: "--alpha",
                bad: &["0", "1", "2"],
            },
            Slot {
                flag: "--n",
                bad: &["0", "-1"],
            },
            Slot {
                flag: "--method",
                bad: &["xx"],
            },
        ],
    },
    Case {
        args: &["scaling", "fit", "--curve", "{file}", "--out", "{out}.json"],
        slots: &[
            Slot {
                flag: "--skip",
                bad: &["1", "-0.5", "nan"],
            },
            Slot {
                flag: "--bin",
                bad: &["0", "-1"],
            },
            Slot {
                flag: "--lambda",
                bad: &["0", "1", "nan"],
            },
            Slot {
                flag: "--run",
                bad: &["/nonexistent", "{dir}"],
            },
        ],
    },
    Case {
        args: &[
            "scaling",
            "predict",
            "--params",
            "{file}",
            "--schedule",
            "cosine",
            "--steps",
            "10",
            "--out",
            "{out}.csv",
        ],
        slots: &[
            Slot {
                flag: "--params",
                bad: &["/nonexistent.json", "{empty}"],
            },
            Slot {
                flag: "--steps",
                bad: &["0", "x"],
            },
            Slot {
                flag: "--lr",
                bad: &["0", "-1", "nan"],
            },
        ],
    },
    Case {
        args: &[
            "mup",
            "coord-check",
            "--widths",
            "16,32",
            "--base",
            "16",
            "--steps",
            "1",
            "--out",
            "{out}",
        ],
        slots: &[
            Slot {
                flag: "--widths",
                bad: &["0", "x", ""],
            },
            Slot {
                flag: "--base",
                bad: &["0", "-1"],
            },
            Slot {
                flag: "--model",
                bad: &["cnn", "mlpp"],
            },
            Slot {
                flag: "--optimizer",
                bad: OPTIMIZERS,
            },
            Slot {
                flag: "--mup-rule",
                bad: &["madam"],
            },
        ],
    },
    Case {
        args: &["papers"],
        slots: &[Slot {
            flag: "--json --markdown",
            bad: &[""],
        }],
    },
];

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
    let mut failures = Vec::new();
    for k in 0..cases {
        let case = &CASES[rng.below(CASES.len())];
        let mut args: Vec<String> = case.args.iter().map(|a| fill(a, &root, k)).collect();
        let mutations = 1 + rng.below(2);
        for _ in 0..mutations {
            match rng.below(10) {
                // An unknown flag now and then; otherwise a bad value in a slot.
                0 => args.push("--no-such-flag".into()),
                _ => {
                    let slot = &case.slots[rng.below(case.slots.len())];
                    let value = fill(slot.bad[rng.below(slot.bad.len())], &root, k);
                    let flags: Vec<&str> = slot.flag.split(' ').collect();
                    if let Some(i) = args
                        .iter()
                        .position(|a| a == flags[0])
                        .filter(|_| flags.len() == 1)
                    {
                        // Replace the value the command already gives.
                        if i + 1 < args.len() {
                            args[i + 1] = value;
                        }
                    } else {
                        args.extend(flags.iter().map(|f| f.to_string()));
                        if !value.is_empty() || flags.len() == 1 {
                            args.push(value);
                        }
                    }
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
