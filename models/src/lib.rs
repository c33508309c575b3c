//! ssc's networks in candle (§2, §4.2, §6.1), torchvision weight import and ONNX export.
//!
//! Section numbers (§) refer to the pipeline specification (`shared/spec/pipeline.md`).

pub mod cam;
pub mod config;
pub mod drs;
pub mod error;
pub mod import;
pub mod ops;
pub mod resnet;
