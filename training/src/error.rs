//! Typed errors of the trainers.

use std::path::PathBuf;

/// Errors of ssc's trainers.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Reading or writing a data file failed.
    #[error(transparent)]
    Core(#[from] ssc_core::CoreError),
    /// A model could not be built or its weights not loaded.
    #[error(transparent)]
    Model(#[from] ssc_models::error::ModelError),
    /// An invalid configuration value.
    #[error("config: {0}")]
    Config(String),
    /// A file that is missing or has the wrong content.
    #[error("{}: {msg}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// Optimiser state that does not match the parameters it is loaded for.
    #[error("optimiser state: {0}")]
    State(String),
}

/// Result with [`TrainError`].
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

impl TrainError {
    /// A [`TrainError::File`] for `path`.
    pub fn file(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        TrainError::File {
            path: path.into(),
            msg: msg.into(),
        }
    }
}
