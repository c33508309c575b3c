//! Typed errors of the inference side (§10.3). Messages name the file involved and, for a
//! missing ONNX Runtime, say exactly how to install it.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = InferenceError> = std::result::Result<T, E>;

/// Errors of the inference side.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    /// No ONNX Runtime shared library could be found (the message says how to get one).
    #[error("{0}")]
    RuntimeNotFound(String),
    /// The ONNX Runtime library exists but could not be loaded or initialised.
    #[error("cannot load ONNX Runtime from {path}: {message}")]
    RuntimeLoad {
        /// The library file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// CUDA was requested from a binary built without the `cuda` feature.
    #[error(
        "CUDA device {0} requested, but this binary was built without CUDA support \
         (rebuild with `--features cuda` and use the onnxruntime-gpu library), or use the CPU"
    )]
    NoCudaSupport(i32),
    /// Opening or running a model failed inside ONNX Runtime.
    #[error("{model}: {message}")]
    Model {
        /// The model file (or `<memory>`).
        model: PathBuf,
        /// ONNX Runtime's message.
        message: String,
    },
    /// A value given by the caller is not usable.
    #[error("{0}")]
    Invalid(String),
    /// An error of the data layer.
    #[error(transparent)]
    Core(#[from] ssc_core::CoreError),
}
