//! The library's error type: one clear sentence naming the thing that is wrong and, where possible, the fix.

use std::path::{Path, PathBuf};

/// Every fallible optlab call returns this error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A hyperparameter, spec string or configuration value is invalid.
    #[error("{0}")]
    Invalid(String),
    /// A file could not be read or has the wrong content.
    #[error("{}: {msg}", path.display())]
    File { path: PathBuf, msg: String },
    /// Shapes or sizes do not fit together.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A loss, gradient or parameter became NaN or infinite.
    #[error("{0}")]
    NonFinite(String),
    /// Second-order differentiation is not enabled in this process.
    #[error("second-order gradients are disabled: set CANDLE_GRAD_DO_NOT_DETACH=1 before any thread starts (the optlab CLI does this itself)")]
    SecondOrderDisabled,
    /// An error from the candle tensor engine.
    #[error("tensor engine: {0}")]
    Candle(#[from] candle_core::Error),
    /// A collective between workers failed: a worker stopped, timed out or disagreed.
    #[error("distributed: {0}")]
    Distributed(String),
    /// An I/O error without a known path.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Result with optlab's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An [`Error::Invalid`] from anything printable.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    /// An [`Error::File`] naming `path`.
    pub fn file(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::File {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }
}

/// Attach a path to I/O errors.
pub(crate) trait PathContext<T> {
    fn at_path(self, path: &Path) -> Result<T>;
}

impl<T> PathContext<T> for std::io::Result<T> {
    fn at_path(self, path: &Path) -> Result<T> {
        self.map_err(|e| Error::file(path, e.to_string()))
    }
}
