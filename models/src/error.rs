//! Typed errors of the model crate. Errors about files name the file; state-dict mismatches
//! name every offending key.

use std::path::PathBuf;

/// Result alias of this crate's fallible non-tensor operations.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// A tensor whose shape differs between a state dict and the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    /// Parameter name.
    pub name: String,
    /// Shape the model expects.
    pub expected: Vec<usize>,
    /// Shape found in the file.
    pub found: Vec<usize>,
}

/// Errors of the model crate.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A candle operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Reading or writing `path` failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `path` is not a readable weight file.
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    /// The state dict in `path` does not fit the model.
    #[error("{path}: state dict does not match the model:{}", mismatch_report(.missing, .unexpected, .shapes))]
    Mismatch {
        path: PathBuf,
        /// Keys the model needs that the file lacks.
        missing: Vec<String>,
        /// Keys in the file the model does not have.
        unexpected: Vec<String>,
        /// Keys present in both with different shapes.
        shapes: Vec<ShapeMismatch>,
    },
    /// A value given by the caller is not usable.
    #[error("{0}")]
    Invalid(String),
}

impl ModelError {
    /// A content error about `path`.
    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        ModelError::Format {
            path: path.into(),
            message: message.into(),
        }
    }

    /// An I/O error about `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            source,
        }
    }
}

fn mismatch_report(missing: &[String], unexpected: &[String], shapes: &[ShapeMismatch]) -> String {
    let mut s = String::new();
    if !missing.is_empty() {
        s += &format!(
            "\n  missing keys ({}): {}",
            missing.len(),
            missing.join(", ")
        );
    }
    if !unexpected.is_empty() {
        s += &format!(
            "\n  unexpected keys ({}): {}",
            unexpected.len(),
            unexpected.join(", ")
        );
    }
    for m in shapes {
        s += &format!(
            "\n  shape mismatch: {} is {:?} in the file, the model expects {:?}",
            m.name, m.found, m.expected
        );
    }
    s
}
