//! Training losses of the SSC classifier (§2.3, §2.5, §2.6) and DeepLab (§6.3).
//!
//! The perceptual loss lives with the VGG network in `ssc_models::vgg`.

pub mod asm;
pub mod ce;
pub mod mlsm;

pub use asm::{AsmConfig, AsmOutput, alignment_loss};
pub use ce::weighted_pixel_ce;
pub use mlsm::multilabel_soft_margin;
