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
    /// Reading or writing a file failed (the context names the file).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A JSON file (settings, parameters) could not be parsed or written.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A model file is another kind of network than the one needed.
    #[error("{path}: a `{arch}` network, but a `{expected}` network is needed (ssc.arch)")]
    WrongModel {
        /// The model file.
        path: PathBuf,
        /// Its `ssc.arch` metadata.
        arch: String,
        /// The kind needed (`cam`, `irn`, `deeplab`).
        expected: &'static str,
    },
    /// A dataset, folder or list holds no image.
    #[error("{0}: no images")]
    NoImages(PathBuf),
    /// An output folder holds the outputs of a run with other settings; resuming into it
    /// would mix the two.
    #[error(
        "{path} holds {what} made with other parameters ({}); choose another output folder or \
         delete it{}",
        differ.join(", "),
        if *can_overwrite { ", or redo everything (--overwrite)" } else { "" }
    )]
    SettingsMismatch {
        /// The settings file of the earlier run.
        path: PathBuf,
        /// What the folder holds (`CAMs`, `masks`, …).
        what: &'static str,
        /// The settings that differ.
        differ: Vec<String>,
        /// Whether the job can redo everything instead.
        can_overwrite: bool,
    },
    /// Code inside a worker panicked on one item (a bug; the run goes on with the others).
    #[error("internal error (panic) {0}")]
    Panic(String),
    /// Some items of a batch run failed; the manifest lists them.
    #[error("{failed} of {items} item(s) failed (listed in {manifest}); rerun to retry them")]
    ItemsFailed {
        /// Failed items.
        failed: usize,
        /// Items of the shard.
        items: usize,
        /// The manifest's file name.
        manifest: String,
    },
    /// Finished items could not be added to the annotation files (CVAT, COCO, Label Studio).
    #[error("{0} item(s) are missing from the annotation files; rerun")]
    MissingFromAnnotations(usize),
    /// An error with what was being done when it happened (usually the file involved).
    #[error("{context}: {inner}")]
    Context {
        /// What was being done.
        context: String,
        /// The error (kept out of `source()` because the message already shows it).
        inner: Box<InferenceError>,
    },
}

impl InferenceError {
    /// Wraps the error with what was being done.
    pub fn context(self, context: impl Into<String>) -> Self {
        InferenceError::Context {
            context: context.into(),
            inner: Box::new(self),
        }
    }
}

/// `.context(..)` / `.with_context(|| ..)` on results whose error converts into
/// [`InferenceError`], and on options (as anyhow offers, but typed).
pub trait Context<T> {
    /// Adds `context` to the error.
    fn context(self, context: impl Into<String>) -> Result<T>;
    /// Adds the context `f` computes (only on error).
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: Into<InferenceError>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| e.into().context(context))
    }
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| e.into().context(f()))
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.ok_or_else(|| InferenceError::Invalid(context.into()))
    }
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.ok_or_else(|| InferenceError::Invalid(f().into()))
    }
}

/// `return Err(InferenceError::Invalid(format!(..)))`.
macro_rules! bail {
    ($($t:tt)*) => {
        return Err($crate::error::InferenceError::Invalid(format!($($t)*)))
    };
}
pub(crate) use bail;
