//! Data formats and image algorithms shared by ssc's training and inference sides.
//!
//! Everything here is plain Rust (no candle, no ort), so both sides and every tool can use it.
//! Section numbers (§) refer to the pipeline specification (`shared/spec/pipeline.md`).

pub mod atomic;
pub mod bench_report;
pub mod cam;
pub mod classes;
pub mod crf;
pub mod dataset;
pub mod error;
pub mod fixtures;
pub mod formats;
pub mod imageio;
pub mod irlabel;
pub mod mask;
pub mod metrics;
pub mod normalize;
pub mod npy;
pub mod pickle;
pub mod pseudo;
pub mod randomwalk;
pub mod resize;
pub mod rng;
pub mod superpixels;
pub mod synth;
pub mod tensors;

pub use error::{CoreError, Result};
