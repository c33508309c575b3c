//! IRN training data (§4.6): random rescale `s ~ U[lo, hi)` (image PIL-bicubic, IR label
//! PIL-nearest, size `round(·s)`), normalisation, horizontal flip, random crop (image fill 0,
//! label fill 255), the label reduced ×0.25 with PIL-nearest and turned into the affinity
//! targets of §4.5 for the configured path radius.
//!
//! Samples are drawn and loaded as in every trainer ([`crate::data`]): per-sample random
//! streams, so batches do not depend on the thread count and a resumed run sees exactly the
//! data of an uninterrupted one.

use std::path::{Path, PathBuf};

use image::RgbImage;
use ssc_core::dataset::Dataset;
use ssc_core::irlabel::IGNORE;
use ssc_core::randomwalk::labels::{AffinityLabels, affinity_labels};
use ssc_core::randomwalk::paths::PathIndex;
use ssc_core::resize::{pil_bicubic_rgb, pil_nearest, rescale_size};
use ssc_core::rng::Rng;
use ssc_core::{imageio, mask};

use super::config::IrnTrainConfig;
use crate::data::{CropBox, SampleSet, normalise_flip, sample_rng};
use crate::error::{Result, TrainError};

/// One augmented sample.
#[derive(Debug, Clone, PartialEq)]
pub struct IrnSample {
    /// Normalised image, `3×crop×crop`, 0 outside the image.
    pub image: Vec<f32>,
    /// The reduced IR label, `grid×grid` (255 outside the image and in the ignore band).
    pub label: Vec<u8>,
    /// Affinity targets of `label`.
    pub targets: AffinityLabels,
}

/// A batch, ready for tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct IrnBatch {
    /// Index of the batch in its epoch.
    pub index: usize,
    /// Images `N×3×crop×crop`.
    pub images: Vec<f32>,
    /// Per-sample affinity targets.
    pub targets: Vec<AffinityLabels>,
}

impl IrnBatch {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// `true` for an empty batch.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
}

/// Applies §4.6 to an image and its IR label (`H×W`, same size).
pub fn augment(
    img: &RgbImage,
    label: &[u8],
    cfg: &IrnTrainConfig,
    index: &PathIndex,
    rng: &mut Rng,
) -> Result<IrnSample> {
    let (h, w) = (img.height() as usize, img.width() as usize);
    if label.len() != h * w {
        return Err(TrainError::Config(format!(
            "IR label has {} pixels, image is {w}×{h}",
            label.len()
        )));
    }
    let (lo, hi) = cfg.data.scale_range;
    let s = rng.uniform(lo, hi);
    let (rh, rw) = rescale_size(h, w, s);
    if rh == 0 || rw == 0 {
        return Err(TrainError::Config(format!(
            "image {w}×{h} vanishes at scale {s:.3}"
        )));
    }
    let img = pil_bicubic_rgb(img, rh, rw)?;
    let mut lab = [pil_nearest(label, h, w, 1, rh, rw)?];
    let chw = normalise_flip(&img, &mut lab, 0.5, rng)?;
    let c = cfg.data.crop;
    let b = CropBox::random(rh, rw, c, rng);
    let image = b.apply(&chw, 3, 0.0);
    let crop_label = b.apply(&lab[0], 1, IGNORE);
    let g = cfg.grid();
    let label = pil_nearest(&crop_label, c, c, 1, g, g)?;
    let targets = affinity_labels(&label, g, g, index, cfg.num_classes)?;
    Ok(IrnSample {
        image,
        label,
        targets,
    })
}

/// An IR-label PNG: grey PNGs decode to their raw values (255 kept); the class map is not
/// consulted.
fn read_ir_label(path: &Path) -> Result<mask::LabelMap> {
    Ok(mask::read_mask(path, &ssc_core::classes::ClassMap::voc())?)
}

/// The training images with their IR labels.
#[derive(Debug)]
pub struct IrnTrainSet {
    items: Vec<(String, PathBuf)>,
    left_out: Vec<String>,
    label_dir: PathBuf,
    cfg: IrnTrainConfig,
    index: PathIndex,
}

impl IrnTrainSet {
    /// Opens the images of `ds`; IR labels come from `cfg.data.ir_label_dir` (default
    /// `<root>/ir_labels`). A missing label file is reported now, naming the file.
    pub fn new(ds: &Dataset, root: &Path, cfg: &IrnTrainConfig) -> Result<Self> {
        cfg.validate()?;
        let n = cfg.data.max_images.unwrap_or(usize::MAX).min(ds.len());
        let items: Vec<_> = ds.items[..n]
            .iter()
            .map(|it| (it.id.clone(), it.image.clone()))
            .collect();
        if items.is_empty() {
            return Err(TrainError::Config(format!("dataset {} is empty", ds.name)));
        }
        let label_dir = cfg
            .data
            .ir_label_dir
            .clone()
            .unwrap_or_else(|| root.join("ir_labels"));
        if let Some((id, _)) = items
            .iter()
            .find(|(id, _)| !label_dir.join(format!("{id}.png")).is_file())
        {
            return Err(TrainError::file(
                label_dir.join(format!("{id}.png")),
                "IR label missing: run `ssc-label irlabels` first or set data.ir_label_dir",
            ));
        }
        let mut left_out = Vec::new();
        let items = match cfg.data.max_fg_fraction {
            None => items,
            Some(max) => {
                let mut flooded = Vec::with_capacity(items.len());
                for (id, _) in &items {
                    let lp = label_dir.join(format!("{id}.png"));
                    let lab = read_ir_label(&lp)?;
                    let fg = lab
                        .data
                        .iter()
                        .filter(|&&v| v > 0 && (v as usize) < cfg.num_classes)
                        .count();
                    flooded.push(fg as f64 > max * lab.data.len().max(1) as f64);
                }
                let n_flooded = flooded.iter().filter(|&&f| f).count();
                if items.len() - n_flooded < cfg.batch_size {
                    // A barely trained classifier floods almost every label; training on all
                    // of them beats not training at all, so say so and keep them.
                    tracing::warn!(
                        "{n_flooded} of {} IR labels in {} have more than {:.0} % foreground \
                         (data.max_fg_fraction), leaving less than one batch: training on all",
                        items.len(),
                        label_dir.display(),
                        max * 100.0
                    );
                    items
                } else {
                    let (kept, out): (Vec<_>, Vec<_>) =
                        items.into_iter().zip(flooded).partition(|(_, f)| !f);
                    left_out = out.into_iter().map(|((id, _), _)| id).collect();
                    kept.into_iter().map(|(it, _)| it).collect()
                }
            }
        };
        if !left_out.is_empty() {
            tracing::info!(
                left_out = left_out.len(),
                kept = items.len(),
                "IR labels with more foreground than data.max_fg_fraction left out of training"
            );
        }
        Ok(IrnTrainSet {
            items,
            left_out,
            label_dir,
            cfg: cfg.clone(),
            index: PathIndex::new(cfg.data.radius)?,
        })
    }

    /// Images left out by `data.max_fg_fraction`.
    pub fn left_out(&self) -> &[String] {
        &self.left_out
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// `true` when empty (never, after [`IrnTrainSet::new`]).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The path index of the configured radius.
    pub fn path_index(&self) -> &PathIndex {
        &self.index
    }
}

impl SampleSet for IrnTrainSet {
    type Sample = IrnSample;
    type Batch = IrnBatch;

    fn images(&self) -> usize {
        self.len()
    }

    fn prefetch(&self) -> usize {
        self.cfg.data.prefetch
    }

    fn sample(&self, i: usize, seed: u64, epoch: usize) -> Result<IrnSample> {
        let (id, path) = &self.items[i];
        let img = imageio::read_rgb(path)?;
        let lp = self.label_dir.join(format!("{id}.png"));
        let lab = read_ir_label(&lp)?;
        if lab.size() != (img.width() as usize, img.height() as usize) {
            return Err(TrainError::file(
                &lp,
                format!(
                    "IR label is {:?}, image is {}×{}",
                    lab.size(),
                    img.width(),
                    img.height()
                ),
            ));
        }
        let mut rng = sample_rng(seed, epoch, i);
        augment(&img, &lab.data, &self.cfg, &self.index, &mut rng)
    }

    fn collate(&self, index: usize, samples: Vec<IrnSample>) -> IrnBatch {
        let mut out = IrnBatch {
            index,
            images: Vec::with_capacity(samples.len() * samples[0].image.len()),
            targets: Vec::with_capacity(samples.len()),
        };
        for s in samples {
            out.images.extend(s.image);
            out.targets.push(s.targets);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::tests::half_and_half as pair;

    fn cfg(crop: usize, scale: (f64, f64), radius: usize) -> IrnTrainConfig {
        let mut c = IrnTrainConfig::synthetic(2);
        c.data.crop = crop;
        c.data.scale_range = scale;
        c.data.radius = radius;
        c
    }

    #[test]
    fn small_image_is_padded_with_ignore() {
        let (img, lab) = pair(20, 12);
        // scale ≈ 1 keeps the size; the 32 crop pads both axes
        let c = cfg(32, (1.0, 1.0 + 1e-9), 2);
        let idx = PathIndex::new(2).unwrap();
        let s = augment(&img, &lab, &c, &idx, &mut Rng::new(3)).unwrap();
        assert_eq!((s.image.len(), s.label.len()), (3 * 32 * 32, 8 * 8));
        let zeros = s.image[..32 * 32].iter().filter(|v| **v == 0.0).count();
        assert!(zeros >= 32 * 32 - 20 * 12, "padding is 0: {zeros}");
        let mut vals = s.label.clone();
        vals.sort_unstable();
        vals.dedup();
        assert_eq!(vals, vec![0, 1, IGNORE]);
        // The 20×12 image covers 5×3 cells of the 8×8 grid; the rest is ignored.
        let inside = s.label.iter().filter(|&&v| v != IGNORE).count();
        assert_eq!(inside, 5 * 3);
        let (bg, fg, neg) = s.targets.counts();
        assert!(bg > 0 && fg > 0 && neg > 0, "{bg} {fg} {neg}");
    }

    #[test]
    fn large_image_is_cropped_and_deterministic() {
        let (img, lab) = pair(64, 48);
        let c = cfg(32, (0.5, 1.5), 3);
        let idx = PathIndex::new(3).unwrap();
        let a = augment(&img, &lab, &c, &idx, &mut sample_rng(7, 1, 3)).unwrap();
        let b = augment(&img, &lab, &c, &idx, &mut sample_rng(7, 1, 3)).unwrap();
        assert_eq!(a, b);
        let other = augment(&img, &lab, &c, &idx, &mut sample_rng(7, 2, 3)).unwrap();
        assert_ne!(a, other);
    }

    #[test]
    fn mismatched_label_is_an_error() {
        let (img, _) = pair(8, 8);
        let c = cfg(16, (1.0, 1.5), 2);
        let idx = PathIndex::new(2).unwrap();
        assert!(augment(&img, &[0; 10], &c, &idx, &mut Rng::new(0)).is_err());
    }
}
