//! ssc's trainers in candle: losses, optimisers and the training steps of the SSC classifier
//! (§2), IRN (§4) and DeepLabV2 (§6), run by one epoch loop ([`run`]) on data pipelines that
//! share their loader and random streams ([`data`]).
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
pub mod run;
pub mod schedule;

pub use error::{Result, TrainError};
