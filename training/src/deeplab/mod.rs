//! DeepLabV2 training (§6): ResNet + ASPP with trainable BatchNorm on pseudo-masks, with the
//! confidence masks of §4.8 as optional per-pixel loss weights, per-epoch validation mIoU and
//! best-checkpoint selection. BECO's co-training of two networks (§6.3) is not built.

pub mod config;
pub mod data;
pub mod trainer;

pub use config::{CropMode, DeepLabDataConfig, DeepLabTrainConfig};
pub use trainer::{DeepLabTrainOptions, DeepLabTrainReport, train};
