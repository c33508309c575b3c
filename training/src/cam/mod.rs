//! SSC classifier training (§2.7–2.10), its data pipeline (§2.9), CAM generation for
//! evaluation (§3.2–3.4) and the ablation study (paper Table VII).

pub mod config;
pub mod data;

pub use config::{CamTrainConfig, DataConfig, Variant};
