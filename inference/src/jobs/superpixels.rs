//! The superpixel job (`ssc-superpixels`, spec §5): ICD-style superpixels (FH segmentation,
//! greedy merge to at most 64 regions) of every image of a dataset, written as
//! `<out>/<id>.png` in the §1.5 format, for the activation self-modulation of the classifier's
//! training. Shards, resume (a finished, readable file of the right size is skipped), per-item
//! failures and the manifest come from [`crate::batch`]; the resolved parameters go to
//! `<out>/superpixels.json`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use ssc_core::dataset::{DatasetSpec, Item};
use ssc_core::superpixels::{self, Params};

use crate::batch::{self, Job, Resumable, RunOptions};
use crate::error::{InferenceError, Result, bail};

/// The superpixels of this shard of a dataset.
#[derive(Debug, Clone)]
pub struct SuperpixelsJob {
    /// The dataset whose images are segmented.
    pub dataset: DatasetSpec,
    /// Output folder.
    pub out: PathBuf,
    /// FH and merge parameters (ICD's: [`Params::icd`]).
    pub params: Params,
    /// Worker threads (`None`: all cores).
    pub threads: Option<usize>,
    /// Shard, resume and reporting.
    pub run: RunOptions,
}

/// The resolved settings written beside the outputs.
#[derive(Serialize, Deserialize, PartialEq)]
struct Settings {
    params: Params,
    dataset: DatasetSpec,
    version: String,
}

/// Checks parameters a user may set (`sigma`, `k`, `max_regions`).
pub fn validate_params(p: &Params) -> Result<()> {
    if !(p.sigma.is_finite() && p.sigma >= 0.0) {
        bail!("sigma must be a finite number ≥ 0, got {}", p.sigma);
    }
    if !(p.k.is_finite() && p.k > 0.0) {
        bail!("k must be a finite number > 0, got {}", p.k);
    }
    if !(1..=256).contains(&p.max_regions) {
        bail!(
            "max-regions must be 1…256 (the file stores 8-bit indices), got {}",
            p.max_regions
        );
    }
    Ok(())
}

/// Writes `superpixels.json`, refusing a folder made with other parameters so one output
/// folder never mixes two settings.
fn write_settings(out: &Path, settings: &Settings) -> Result<()> {
    let new = serde_json::to_value(settings)?;
    super::write_settings_file(
        &out.join("superpixels.json"),
        &new,
        None,
        "superpixels",
        |old| {
            // Compared as `Params`, not as JSON values: f32 fields do not survive a JSON round
            // trip bit for bit as `Value`s.
            let same = old
                .get("params")
                .and_then(|p| serde_json::from_value::<Params>(p.clone()).ok())
                .is_some_and(|p| p == settings.params);
            if same {
                Vec::new()
            } else {
                vec!["params".into()]
            }
        },
    )
}

/// The per-item work of a [`SuperpixelsJob`] run.
struct SuperpixelWork {
    out: PathBuf,
    params: Params,
}

impl SuperpixelWork {
    fn path(&self, item: &Item) -> PathBuf {
        self.out.join(format!("{}.png", item.id))
    }
}

impl Resumable for SuperpixelWork {
    type Item = Item;

    fn id<'a>(&self, item: &'a Item) -> &'a str {
        &item.id
    }

    fn outputs(&self, item: &Item) -> Vec<PathBuf> {
        vec![self.path(item)]
    }

    /// Done when the file decodes as a valid partition with the image's size.
    fn is_done(&self, item: &Item) -> bool {
        let Ok(seg) = superpixels::file::read(&self.path(item)) else {
            return false;
        };
        let size = ssc_core::imageio::image_size(&item.image).ok();
        size == Some((seg.width as u32, seg.height as u32))
            && seg.count <= self.params.max_regions
            && superpixels::validate(&seg).is_ok()
    }
}

impl Job for SuperpixelWork {
    type Error = InferenceError;

    fn process(&self, item: &Item) -> Result<()> {
        let img = ssc_core::imageio::read_rgb(&item.image)?;
        let seg = superpixels::superpixels_image(&img, &self.params)?;
        superpixels::file::write(&self.path(item), &seg)?;
        Ok(())
    }
}

impl SuperpixelsJob {
    /// Runs the job over this shard: returns the manifest (written to `out`), whose failures
    /// list the images that could not be segmented ([`batch::Manifest::into_result`]).
    pub fn run(&self) -> Result<batch::Manifest> {
        validate_params(&self.params)?;
        let ds = super::open_dataset(&self.dataset)?;
        write_settings(
            &self.out,
            &Settings {
                params: self.params.clone(),
                dataset: self.dataset.clone(),
                version: env!("CARGO_PKG_VERSION").to_string(),
            },
        )?;
        let work = SuperpixelWork {
            out: self.out.clone(),
            params: self.params.clone(),
        };
        let pool = batch::thread_pool(self.threads)?;
        pool.install(|| batch::run(&work, &ds.items, &self.run))
    }
}
