//! SSC classifier training (§2.7–2.10), its data pipeline (§2.9), CAM generation for
//! evaluation (§3.2–3.4) and the ablation study (paper Table VII).

pub mod config;
pub mod data;
pub mod generate;
pub mod trainer;

pub use config::{CamTrainConfig, DataConfig, Variant};
pub use trainer::{TrainOptions, TrainReport, train};
