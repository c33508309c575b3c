//! IRN training (§4.5–4.6): the class-boundary (edge) branch on a frozen ResNet, trained
//! from IR labels (§4.1) with the path-affinity losses. The displacement branch (instance
//! segmentation only) is not built.

pub mod config;
pub mod data;
pub mod loss;
pub mod trainer;

pub use config::{IrnDataConfig, IrnTrainConfig};
pub use trainer::{IrnTrainOptions, IrnTrainReport, train};
