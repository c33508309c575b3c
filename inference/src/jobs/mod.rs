//! The per-image jobs at scale (spec §10.3): what `ssc-superpixels`, `ssc-label` and
//! `ssc-predict` run, as library calls. Each job is a plain struct of settings (the
//! dataset, the exported networks, the output folder, [`crate::batch::RunOptions`] for shard
//! and resume) with a `run()` that labels this shard and returns the manifest:
//!
//! * [`cams::CamsJob`]: multi-scale CAM files (§3.1–3.3);
//! * [`irlabels::IrLabelsJob`]: IR labels from CAM files (§4.1), what the IRN trains on;
//! * [`pseudo::PseudoJob`]: pseudo-masks from CAM files and the IRN edge network (§4.7–4.8);
//! * [`masks::MasksJob`]: both in one pass, no CAM files in between;
//! * [`superpixels::SuperpixelsJob`]: the superpixels the classifier's training reads (§5);
//! * [`predict::PredictJob`]: DeepLab predictions of an image folder or list (`ssc-predict`,
//!   §6.5–6.6).
//!
//! Masks and the annotation-tool files go through [`crate::outputs`]; the pseudo-mask of one
//! image alone comes from [`crate::labeler::Labeler`], which computes the same masks.

pub mod cams;
pub mod irlabels;
pub mod masks;
pub mod predict;
pub mod pseudo;
pub mod superpixels;

use std::path::Path;

use serde_json::Value;

use ssc_core::dataset::{Dataset, DatasetSpec, Item};

pub use cams::{CamStage, CamStageOptions, CamsJob};
pub use irlabels::{IrLabelStats, IrLabelSummary, IrLabelsJob};
pub use masks::MasksJob;
pub use predict::PredictJob;
pub use pseudo::{MaskOptions, MaskOutputs, PseudoJob};
pub use superpixels::SuperpixelsJob;

use crate::error::{Context, InferenceError, Result};

/// Opens a dataset, naming its root in errors; a dataset without images is an error.
pub fn open_dataset(spec: &DatasetSpec) -> Result<Dataset> {
    let ds = spec
        .open()
        .with_context(|| format!("cannot open the dataset at {}", spec.root.display()))?;
    if ds.is_empty() {
        return Err(InferenceError::NoImages(spec.root.clone()));
    }
    Ok(ds)
}

/// The path the annotation files reference for `item`: relative to the dataset root when
/// the image lies below it, else as given.
pub fn image_ref(root: &Path, item: &Item) -> String {
    item.image
        .strip_prefix(root)
        .unwrap_or(&item.image)
        .to_string_lossy()
        .replace('\\', "/")
}

/// Reports the annotation files a job wrote: printed to stdout when the run shows progress
/// (the command-line tools), logged otherwise.
fn report_files(files: Vec<std::path::PathBuf>, opts: &crate::batch::RunOptions) {
    for f in files {
        if opts.progress {
            println!("wrote {}", f.display());
        } else {
            tracing::info!("wrote {}", f.display());
        }
    }
}

/// Writes a job's resolved settings as JSON to `path`. When an earlier run left that file and
/// the job does not redo everything (`overwrite`: `None` for jobs without that option),
/// `differs` names the settings of that run that differ from these; a folder made with other
/// settings is refused, since resuming into it would mix two kinds of output (`what`: the
/// kind, for the message).
fn write_settings_file(
    path: &Path,
    settings: &Value,
    overwrite: Option<bool>,
    what: &'static str,
    differs: impl FnOnce(&Value) -> Vec<String>,
) -> Result<()> {
    if path.is_file() && overwrite != Some(true) {
        let old: Value = serde_json::from_slice(
            &std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
        )
        .with_context(|| format!("{}: not valid JSON", path.display()))?;
        let differ = differs(&old);
        if !differ.is_empty() {
            return Err(InferenceError::SettingsMismatch {
                path: path.to_path_buf(),
                what,
                differ,
                can_overwrite: overwrite.is_some(),
            });
        }
    }
    ssc_core::atomic::write(path, &serde_json::to_vec_pretty(settings)?)?;
    Ok(())
}

/// The keys among `keys` whose values differ between `old` and `new`.
fn differing(old: &Value, new: &Value, keys: &[&str]) -> Vec<String> {
    keys.iter()
        .filter(|k| old.get(**k) != new.get(**k))
        .map(|k| k.to_string())
        .collect()
}
