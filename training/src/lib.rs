//! ssc's trainers in candle: losses, optimisers and training loops for the SSC classifier
//! (§2), IRN (§4) and DeepLabV2 (§6).
//!
//! Section numbers (§) refer to the pipeline specification (`shared/spec/pipeline.md`).

pub mod cam;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod deeplab;
pub mod error;
pub mod init;
pub mod irn;
pub mod losses;
pub mod optim;
pub mod schedule;

pub use error::{Result, TrainError};
