//! ssc's at-scale inference on ONNX Runtime (§10.3): CAMs, IRN random walk, pseudo-masks,
//! predictions. No candle here: the networks run as exported ONNX graphs through `ort`.
//!
//! The two objects a program holds:
//! * [`labeler::Labeler`]: exported CAM + IRN networks → pseudo-mask of one image (its
//!   image-level labels given or predicted), what `ssc-serve` serves in CAM + IRN mode;
//! * [`segment::DeepLabSegmenter`]: an exported DeepLabV2 → label map and class confidences
//!   of one image, what `ssc-predict` and `ssc-serve` run.
//!
//! Both hold ONNX Runtime sessions, whose runs need `&mut`: use one per worker thread.
//! [`runtime`] finds and loads the ONNX Runtime library ([`runtime::find_library`]: an
//! explicit path, `ORT_DYLIB_PATH`, then the project's `.ort/`). The lower-level steps
//! ([`cam`], [`refine`], [`pipeline`]) are public for tools that split them over threads.
//!
//! At scale, [`jobs`] holds the labelling jobs of `ssc-label` (CAM files, pseudo-masks from
//! them, or both in one pass) as structs with a `run()`; they share the runner of [`batch`]
//! (shards, resume, per-item failures, manifests) and the output sink of [`outputs`] (VOC
//! PNGs, CVAT, COCO, Label Studio), which other per-image tools (`ssc-predict`,
//! `ssc-superpixels`, `ssc-convert`) use too.
//! `examples/label_folder.rs` labels a folder in a few lines.

pub mod batch;
pub mod cam;
pub mod error;
pub mod jobs;
pub mod labeler;
pub mod outputs;
pub mod pipeline;
pub mod refine;
pub mod runtime;
pub mod segment;

pub use error::{InferenceError, Result};
