//! ssc's networks in candle (§2, §4.2, §6.1), torchvision weight import and ONNX export.
//!
//! Section numbers (§) refer to the pipeline specification (`shared/spec/pipeline.md`).

pub mod backbone;
pub mod cam;
pub mod config;
pub mod decoder;
pub mod deeplab;
pub mod drs;
pub mod efficientnet;
pub mod error;
pub mod import;
pub mod init;
pub mod irn;
pub mod onnx;
pub mod ops;
pub mod resnet;
pub mod vgg;
