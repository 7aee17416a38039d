//! The run directory of the commands that resume (`optlab rl train`, `align dpo`, `ep train`, `linsolve train`,
//! `pde ritz`): `config.toml` (the flags, which `--resume` reads back: [`resolve_run`]), the lock,
//! the JSONL log (episodes or iterations) that a resume truncates to its checkpoint, checkpoints at episode or
//! iteration ends every `--checkpoint-every` environment steps, `--stop-after`, and the progress bar.

use crate::progress::bar;
use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;
use optlab::train::run_dir::RunDirLock;
use optlab::train::snapshot::{Reader, Writer};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file the flags are recorded in.
pub const CONFIG: &str = "config.toml";

/// The flags a run recorded in DIR/config.toml (`what` names the command in errors, e.g. "rl train").
pub fn recorded_flags<T: serde::de::DeserializeOwned>(dir: &Path, what: &str) -> Result<T> {
    let path = dir.join(CONFIG);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {} (not a run directory of optlab {what}?)",
            path.display()
        )
    })?;
    // toml's own message (one line), not its rendering of the file, which spans several.
    toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: not the flags of optlab {what} ({})",
            path.display(),
            e.message()
        )
    })
}

/// The flags of a command whose runs resume: they are recorded in DIR/config.toml, and on `--resume DIR` the
/// command line decides only the session's own flags (when to stop, how to report). [`resumable!`] implements it.
pub trait Resumable: Sized + serde::de::DeserializeOwned {
    /// `--resume DIR`.
    fn resume_dir(&self) -> Option<&Path>;
    /// `--out DIR`.
    fn out_dir(&self) -> Option<&Path>;
    /// `recorded` with this command line's session flags, and DIR as both its `--out` and its `--resume`.
    fn onto(self, recorded: Self, dir: &Path) -> Self;
}

/// The flags a run goes with and its directory: on `--resume DIR`, DIR's recorded flags with this command line's
/// session flags; otherwise the flags as given, which must name `--out DIR`. `what` names the command ("ep train").
pub fn resolve_run<A: Resumable>(args: A, what: &str) -> Result<(A, PathBuf)> {
    if let Some(dir) = args.resume_dir().map(Path::to_path_buf) {
        let recorded: A = recorded_flags(&dir, what)?;
        return Ok((args.onto(recorded, &dir), dir));
    }
    match args.out_dir().map(Path::to_path_buf) {
        Some(out) => Ok((args, out)),
        None => bail!("{what} needs --out DIR (or --resume DIR)"),
    }
}

/// Implements [`Resumable`] for an argument struct with `resume` and `out` fields; the fields listed after the
/// colon are its session flags, which a resume takes from the command line.
macro_rules! resumable {
    ($t:ty: $($session:ident),+) => {
        impl $crate::rl_run::Resumable for $t {
            fn resume_dir(&self) -> Option<&std::path::Path> {
                self.resume.as_deref()
            }
            fn out_dir(&self) -> Option<&std::path::Path> {
                self.out.as_deref()
            }
            fn onto(self, recorded: Self, dir: &std::path::Path) -> Self {
                Self {
                    resume: Some(dir.to_path_buf()),
                    out: Some(dir.to_path_buf()),
                    $($session: self.$session,)+
                    ..recorded
                }
            }
        }
    };
}
pub(crate) use resumable;

/// The first multiple of `every` after `steps` (never, for `every` 0).
fn next_after(steps: u64, every: u64) -> u64 {
    steps
        .checked_div(every)
        .map_or(u64::MAX, |q| (q + 1).saturating_mul(every))
}

/// What to do at an episode or iteration end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    Nothing,
    Checkpoint,
    /// Checkpoint and stop (`--stop-after`).
    Stop,
}

/// An open run directory.
pub struct Session {
    out: PathBuf,
    _lock: RunDirLock,
    log: std::fs::File,
    log_path: PathBuf,
    log_bytes: u64,
    every: u64,
    next: u64,
    stop_after: Option<u64>,
    /// The checkpoint a resume starts from.
    pub resume: Option<Reader>,
    pub bar: ProgressBar,
    started: std::time::Instant,
    seconds_before: f64,
}

impl Session {
    /// A fresh run into `out` (its flags `config` recorded), or, with `resume`, the run already there, from its
    /// latest checkpoint. `log_name` is the JSONL log; `steps` the budget of environment steps.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        out: &Path,
        resume: bool,
        config: &str,
        log_name: &str,
        label: &str,
        steps: u64,
        every: u64,
        stop_after: Option<u64>,
        quiet: bool,
    ) -> Result<Self> {
        let log_path = out.join(log_name);
        let (lock, reader, log, log_bytes) = if resume {
            let lock = RunDirLock::acquire_existing(out)?;
            let r = Reader::latest(out)?.with_context(|| {
                format!(
                    "{}: no checkpoint to resume from (the run stopped before its first one)",
                    out.display()
                )
            })?;
            let bytes: u64 = r.value("log_bytes")?;
            let log = std::fs::OpenOptions::new()
                .write(true)
                .open(&log_path)
                .with_context(|| format!("cannot open {}", log_path.display()))?;
            let len = log.metadata()?.len();
            if len < bytes {
                bail!(
                    "{}: {len} bytes, but the checkpoint recorded {bytes}; the log was truncated",
                    log_path.display()
                );
            }
            // The episodes after the checkpoint are replayed by the resumed run.
            log.set_len(bytes)?;
            (lock, Some(r), log, bytes)
        } else {
            let lock = RunDirLock::acquire(out)?;
            if Reader::latest(out)?.is_some() {
                bail!(
                    "{} already holds a run with checkpoints; continue it with --resume {} or choose another --out",
                    out.display(),
                    out.display()
                );
            }
            optlab::tensor_io::write_atomic(&out.join(CONFIG), config.as_bytes())?;
            let log = std::fs::File::create(&log_path)
                .with_context(|| format!("cannot write {}", log_path.display()))?;
            (lock, None, log, 0)
        };
        let mut log = log;
        use std::io::Seek;
        log.seek(std::io::SeekFrom::End(0))?;
        let at = reader.as_ref().map_or(0, |r| r.step);
        let seconds_before = match &reader {
            Some(r) => r.value("session_seconds")?,
            None => 0.0,
        };
        let b = bar(label, quiet);
        b.set_length(steps);
        Ok(Session {
            out: out.to_path_buf(),
            _lock: lock,
            log,
            log_path,
            log_bytes,
            every,
            next: next_after(at, every),
            stop_after: stop_after.filter(|s| *s > at),
            resume: reader,
            bar: b,
            started: std::time::Instant::now(),
            seconds_before,
        })
    }

    /// Appends one line to the log.
    pub fn line(&mut self, v: &serde_json::Value) -> Result<()> {
        let text = format!("{v}\n");
        self.log
            .write_all(text.as_bytes())
            .with_context(|| format!("cannot write {}", self.log_path.display()))?;
        self.log_bytes += text.len() as u64;
        Ok(())
    }

    /// Seconds spent over every session of the run.
    pub fn seconds(&self) -> f64 {
        self.seconds_before + self.started.elapsed().as_secs_f64()
    }

    /// Shows the progress after `steps` environment steps.
    pub fn show(&self, steps: u64, ret: f64) {
        self.bar.set_position(steps);
        let rate = steps as f64 / self.seconds().max(1e-9);
        self.bar
            .set_message(format!("return {ret:.1}  {rate:.0} steps/s"));
    }

    /// What is due at an episode or iteration end after `steps` environment steps.
    pub fn due(&self, steps: u64) -> Due {
        if self.stop_after.is_some_and(|s| steps >= s) {
            Due::Stop
        } else if steps >= self.next {
            Due::Checkpoint
        } else {
            Due::Nothing
        }
    }

    /// Writes a checkpoint after `steps` (`save` adds the method's state) and schedules the next one.
    pub fn checkpoint(
        &mut self,
        steps: u64,
        save: impl FnOnce(&mut Writer) -> optlab::Result<()>,
    ) -> Result<()> {
        self.log.flush()?;
        self.log.sync_data()?;
        let mut w = Writer::begin(&self.out, steps)?;
        save(&mut w)?;
        w.value("log_bytes", self.log_bytes)?;
        w.value("session_seconds", self.seconds())?;
        w.commit()?;
        self.next = next_after(steps, self.every);
        Ok(())
    }

    /// Writes a checkpoint after `steps` when one is due (`save` adds the method's state); what was due.
    pub fn checkpoint_if_due(
        &mut self,
        steps: u64,
        save: impl FnOnce(&mut Writer) -> optlab::Result<()>,
    ) -> Result<Due> {
        let due = self.due(steps);
        if due != Due::Nothing {
            self.checkpoint(steps, save)?;
        }
        Ok(due)
    }

    /// Ends a stopped run: one line on how to continue it.
    pub fn stopped(&self, steps: u64, total: u64) {
        self.stopped_after(&format!("{steps} of {total} environment steps"), "rl train");
    }

    /// Ends a run stopped after `done` ("epoch 3 of 10"): one line on how to continue it, `optlab COMMAND --resume
    /// DIR`.
    pub fn stopped_after(&self, done: &str, command: &str) {
        self.stopped_with(&format!(
            "stopped after {done}; continue with: optlab {command} --resume {}",
            self.out.display()
        ));
    }

    /// Ends a stopped run with the line `msg`.
    pub fn stopped_with(&self, msg: &str) {
        self.bar.finish_and_clear();
        eprintln!("{msg}");
    }
}
