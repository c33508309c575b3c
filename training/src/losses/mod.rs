//! Training losses of the SSC classifier (§2.3, §2.5, §2.6).
//!
//! The perceptual loss lives with the VGG network in `ssc_models::vgg`.

pub mod asm;
pub mod mlsm;

pub use asm::{AsmConfig, AsmOutput, alignment_loss};
pub use mlsm::multilabel_soft_margin;
