//! A run directory as a unit of trust: one process at a time writes it. [`RunDirLock`] holds an exclusive lock
//! on `DIR/.lock` (flock) for the life of a run or a resume, taken before anything in the directory is read or
//! written; a second process is refused with the holder's process id. Every file of the run is written by
//! temporary file and rename ([`crate::tensor_io::write_atomic`]) except `metrics.jsonl`, which only the lock
//! holder appends to.

use crate::{Error, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside a run directory.
pub const LOCK_FILE: &str = ".lock";

/// An exclusive hold on a run directory; released when dropped (or when the process ends, however it ends).
#[derive(Debug)]
pub struct RunDirLock {
    dir: PathBuf,
    _file: File,
}

impl RunDirLock {
    /// Creates `dir` if needed and locks it, or fails naming the process that holds it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::file(dir, format!("cannot create: {e}")))?;
        Self::lock(dir)
    }

    /// Locks an existing run directory (a resume: nothing is created where no run is).
    pub fn acquire_existing(dir: &Path) -> Result<Self> {
        if !dir.join("config.toml").is_file() {
            return Err(Error::file(
                dir,
                "no run here (no config.toml); give the directory a run was trained into",
            ));
        }
        Self::lock(dir)
    }

    fn lock(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::file(&path, format!("cannot open the run's lock: {e}")))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() {
                    "another process".to_string()
                } else {
                    format!("process {holder}")
                };
                return Err(Error::file(
                    dir,
                    format!(
                        "{who} is writing this run directory; wait for it to finish, or choose another directory"
                    ),
                ));
            }
            Err(TryLockError::Error(e)) => {
                return Err(Error::file(
                    &path,
                    format!("cannot lock the run directory: {e}"),
                ))
            }
        }
        // Record the holder for the refusal message of the next process.
        let pid = std::process::id().to_string();
        let _ = file
            .set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(pid.as_bytes()))
            .and_then(|_| file.sync_data());
        Ok(RunDirLock {
            dir: canonical(dir),
            _file: file,
        })
    }

    /// The locked directory (canonical).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether this lock holds `dir` (however the path is written).
    pub fn holds(&self, dir: &Path) -> bool {
        self.dir == canonical(dir)
    }
}

/// The path with symbolic links and `.`/`..` resolved, where it exists.
fn canonical(dir: &Path) -> PathBuf {
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time() {
        let dir = std::env::temp_dir().join(format!("optlab-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let held = RunDirLock::acquire(&dir).unwrap();
        let e = RunDirLock::acquire(&dir).unwrap_err().to_string();
        assert!(
            e.contains(&format!("process {}", std::process::id())) && e.contains("is writing"),
            "{e}"
        );
        drop(held);
        let again = RunDirLock::acquire(&dir).unwrap();
        assert!(again.holds(&dir.join("../").join(dir.file_name().unwrap())));
        let e = RunDirLock::acquire_existing(&dir.join("none")).unwrap_err();
        assert!(e.to_string().contains("no run here"), "{e}");
        assert!(!dir.join("none").exists());
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
