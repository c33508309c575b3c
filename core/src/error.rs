//! Typed errors of the data layer. Every variant names the file it is about, so a user
//! reading a failed run knows which input to fix.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;

/// Errors of the data layer.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// An I/O operation on `path` failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `path` exists but its content is not what it should be.
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    /// A value given by the caller is not usable (no file involved).
    #[error("{0}")]
    Invalid(String),
}

impl CoreError {
    /// An I/O error about `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CoreError::Io {
            path: path.into(),
            source,
        }
    }

    /// A content error about `path`.
    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        CoreError::Format {
            path: path.into(),
            message: message.into(),
        }
    }
}
