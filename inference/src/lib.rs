//! ssc's at-scale inference on ONNX Runtime (§10.3): CAMs, IRN random walk, pseudo-masks,
//! predictions. No candle here: the networks run as exported ONNX graphs through `ort`.

pub mod cam;
pub mod error;
pub mod labeler;
pub mod pipeline;
pub mod refine;
pub mod runtime;
pub mod segment;

pub use error::{InferenceError, Result};
