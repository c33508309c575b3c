//! ONNX export of the three inference networks (§10.3): a pure-Rust protobuf writer
//! ([`proto`]), a small graph builder ([`graph`]) and exporters ([`export`]) that build the
//! graphs directly from a state dict ([`Weights`]), independent of the candle modules.
//!
//! The files use IR version 8 and opset 17 and carry `ssc.*` metadata (architecture, class
//! names, normalisation, output stride, resolved config) that `ssc_inference::runtime` reads.

mod efficientnet;
pub mod export;
pub mod graph;
pub mod proto;
mod resnet;
mod weights;

pub use export::{
    ExportMeta, export_backbone, export_cam, export_cam_with, export_deeplab, export_deeplab_with,
    export_imagenet, export_irn_edge, export_irn_edge_with,
};
pub use graph::{ConvSpec, Graph};
pub use proto::Dim;
pub use weights::Weights;

use std::path::PathBuf;

/// Result alias of the ONNX exporters.
pub type Result<T, E = OnnxError> = std::result::Result<T, E>;

/// Errors of the ONNX exporters: all are about the state dict or the configuration.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// A parameter the network needs is not in the state dict.
    #[error("state dict{}: no parameter `{name}` (the exporter expects {expected})", from_file(.file))]
    MissingWeight {
        /// Parameter name.
        name: String,
        /// What naming scheme was expected (for the message).
        expected: &'static str,
        /// The file the state dict came from, when known.
        file: Option<PathBuf>,
    },
    /// A parameter has the wrong shape for the configuration.
    #[error("state dict{}: `{name}` has shape {got:?}, the configuration needs {want:?}", from_file(.file))]
    BadShape {
        /// Parameter name.
        name: String,
        /// Shape in the state dict.
        got: Vec<usize>,
        /// Shape the configuration implies.
        want: Vec<usize>,
        /// The file the state dict came from, when known.
        file: Option<PathBuf>,
    },
    /// The configuration or a builder argument is unusable.
    #[error("ONNX export: {0}")]
    Invalid(String),
    /// Reading a weight file failed.
    #[error(transparent)]
    Core(#[from] ssc_core::CoreError),
}

fn from_file(file: &Option<PathBuf>) -> String {
    file.as_ref()
        .map(|p| format!(" {}", p.display()))
        .unwrap_or_default()
}
