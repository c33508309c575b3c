//! `ssc-serve`: a Label Studio ML backend (annotation-tool integration) that pre-annotates
//! images with brush masks from a segmentation model (§6.5 predictions).
//!
//! The HTTP layer ([`routes`]) is independent of the model: it drives any [`Segmenter`]
//! (image → label map + per-class scores), so it is tested with a synthetic segmenter and
//! served with an ONNX one: a DeepLab model, or the CAM + IRN pair of the pseudo-label stage
//! ([`camirn`]). [`images`] resolves Label Studio image URLs under a local root
//! (refusing escapes) or fetches them from Label Studio, [`auth`] checks optional basic auth,
//! [`config`] holds the limits, and [`corrections`] stores annotators' corrections delivered
//! by Label Studio's webhooks and train call.

pub mod auth;
pub mod camirn;
pub mod config;
pub mod corrections;
pub mod error;
pub mod images;
pub mod predictor;
pub mod retrain;
pub mod routes;

pub use config::{RemoteLabelStudio, ServeConfig};
pub use error::ApiError;
pub use predictor::{SegmentError, Segmentation, Segmenter};
pub use retrain::{RetrainPolicy, Retrained, Retrainer};
pub use routes::{router, router_with, serve};
