//! Stage-1 training data (§2.9): random long-side resize, normalisation, flip, random crop
//! with fill, superpixel relabelling and multi-hot labels, loaded by the shared multi-threaded
//! loader with per-sample random streams ([`crate::data`]).

use std::path::{Path, PathBuf};

use image::RgbImage;
use rayon::prelude::*;
use ssc_core::dataset::{self, Dataset};
use ssc_core::imageio;
use ssc_core::resize::{pil_bicubic_rgb, pil_nearest, rescale_size};
use ssc_core::rng::Rng;
use ssc_core::superpixels::{self, file as spfile};

use super::config::DataConfig;
use crate::data::{CropBox, SampleSet, normalise_flip};
pub use crate::data::{epoch_order, load_epoch, sample_rng};
use crate::error::{Result, TrainError};

/// Opens `split` of a VOC-layout dataset (the synthetic benchmark's custom classes
/// included); it lives in `ssc_core::dataset` because the inference side reads splits too.
pub fn open_split(root: &Path, split: &str) -> Result<Dataset> {
    Ok(dataset::open_split(root, split)?)
}

/// One augmented sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Normalised image, `3×crop×crop`, 0 outside the image.
    pub image: Vec<f32>,
    /// Superpixel ids `crop×crop`, relabelled to `0..K` (the padding is one of them).
    pub superpixels: Vec<u32>,
    /// Multi-hot labels over the foreground classes.
    pub label: Vec<f32>,
}

/// A batch in row-major buffers, ready for tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Index of the batch in its epoch.
    pub index: usize,
    /// Images `N×3×H×W` (H = W = the crop side for loaded batches).
    pub images: Vec<f32>,
    /// Superpixels `N×H×W`.
    pub superpixels: Vec<u32>,
    /// Labels `N×C`.
    pub labels: Vec<f32>,
    /// N.
    pub len: usize,
    /// H and W of every image and superpixel map.
    pub size: (usize, usize),
}

/// Applies §2.9 steps 2–8 to an image and its loader ids (region + 1, `H×W`).
pub fn augment(
    img: &RgbImage,
    sp: &[u32],
    label: &[f32],
    cfg: &DataConfig,
    rng: &mut Rng,
) -> Result<Sample> {
    let (h, w) = (img.height() as usize, img.width() as usize);
    if sp.len() != h * w {
        return Err(TrainError::Config(format!(
            "superpixel map has {} pixels, image is {w}×{h}",
            sp.len()
        )));
    }
    let (lo, hi) = cfg.resize_long;
    let long = rng.range_inclusive(lo as i64, hi as i64) as f64;
    let s = if w < h {
        long / h as f64
    } else {
        long / w as f64
    };
    let (rh, rw) = rescale_size(h, w, s);
    let img = pil_bicubic_rgb(img, rh, rw)?;
    let mut sp = [pil_nearest(sp, h, w, 1, rh, rw)?];
    let chw = normalise_flip(&img, &mut sp, 0.5, rng)?;
    let b = CropBox::random(rh, rw, cfg.crop, rng);
    let image = b.apply(&chw, 3, 0.0);
    let mut ids = b.apply(&sp[0], 1, 0);
    // Relabel the ids present (padding 0 included) by a random permutation of 0..K.
    let mut present: Vec<u32> = ids.clone();
    present.sort_unstable();
    present.dedup();
    let perm = rng.permutation(present.len());
    let max = *present.last().unwrap_or(&0) as usize;
    let mut map = vec![0u32; max + 1];
    for (i, &id) in present.iter().enumerate() {
        map[id as usize] = perm[i] as u32;
    }
    ids.iter_mut().for_each(|v| *v = map[*v as usize]);
    Ok(Sample {
        image,
        superpixels: ids,
        label: label.to_vec(),
    })
}

/// Where a sample's superpixels come from.
#[derive(Debug)]
enum SpSource {
    /// `<dir>/<id>.png`.
    Files(PathBuf),
    /// Computed once at start-up (loader ids, region + 1).
    Memory(Vec<Vec<u16>>),
}

/// The training split with its labels and superpixels.
#[derive(Debug)]
pub struct TrainSet {
    items: Vec<(String, PathBuf, Vec<f32>)>,
    sp: SpSource,
    cfg: DataConfig,
    num_classes: usize,
}

impl TrainSet {
    /// Opens the training images of `ds`. Every image must have labels. Superpixels are read
    /// from `cfg.superpixel_dir` (default `<root>/superpixels`); when that folder lacks files
    /// and `compute_missing_superpixels` is set, all are computed now, in parallel.
    pub fn new(ds: &Dataset, root: &Path, cfg: &DataConfig) -> Result<Self> {
        let n = cfg.max_images.unwrap_or(usize::MAX).min(ds.len());
        let mut items = Vec::with_capacity(n);
        for it in &ds.items[..n] {
            let labels = it
                .labels
                .as_ref()
                .ok_or_else(|| TrainError::file(&it.image, "image has no image-level labels"))?;
            items.push((
                it.id.clone(),
                it.image.clone(),
                labels.iter().map(|&v| v as f32).collect(),
            ));
        }
        if items.is_empty() {
            return Err(TrainError::Config(format!("dataset {} is empty", ds.name)));
        }
        let dir = cfg
            .superpixel_dir
            .clone()
            .unwrap_or_else(|| root.join("superpixels"));
        let missing = items
            .iter()
            .find(|(id, _, _)| !dir.join(format!("{id}.png")).is_file());
        let sp = match missing {
            None => SpSource::Files(dir),
            Some(_) if cfg.compute_missing_superpixels => {
                tracing::info!(images = items.len(), "computing superpixels in memory");
                let maps = items
                    .par_iter()
                    .map(|(_, path, _)| -> Result<Vec<u16>> {
                        let img = imageio::read_rgb(path)?;
                        let seg = superpixels::superpixels_image(&img, &cfg.superpixels)?;
                        Ok(spfile::loader_ids(&seg)
                            .into_iter()
                            .map(|v| v as u16)
                            .collect())
                    })
                    .collect::<Result<Vec<_>>>()?;
                SpSource::Memory(maps)
            }
            Some((id, _, _)) => {
                return Err(TrainError::file(
                    dir.join(format!("{id}.png")),
                    "superpixel file missing: run the superpixel step first \
                     (ssc superpixels) or point data.superpixel_dir at its output",
                ));
            }
        };
        Ok(TrainSet {
            items,
            sp,
            cfg: cfg.clone(),
            num_classes: ds.classes.num_foreground(),
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// `true` when empty (never, after [`TrainSet::new`]).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Foreground classes.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }
}

impl SampleSet for TrainSet {
    type Sample = Sample;
    type Batch = Batch;

    fn images(&self) -> usize {
        self.len()
    }

    fn prefetch(&self) -> usize {
        self.cfg.prefetch
    }

    fn sample(&self, i: usize, seed: u64, epoch: usize) -> Result<Sample> {
        let (id, path, label) = &self.items[i];
        let img = imageio::read_rgb(path)?;
        let sp: Vec<u32> = match &self.sp {
            SpSource::Memory(maps) => maps[i].iter().map(|&v| v as u32).collect(),
            SpSource::Files(dir) => {
                let p = dir.join(format!("{id}.png"));
                let seg = spfile::read(&p)?;
                if (seg.width, seg.height) != (img.width() as usize, img.height() as usize) {
                    return Err(TrainError::file(
                        p,
                        format!(
                            "superpixels are {}×{}, image is {}×{}",
                            seg.width,
                            seg.height,
                            img.width(),
                            img.height()
                        ),
                    ));
                }
                spfile::loader_ids(&seg)
            }
        };
        let mut rng = sample_rng(seed, epoch, i);
        augment(&img, &sp, label, &self.cfg, &mut rng)
    }

    fn collate(&self, index: usize, samples: Vec<Sample>) -> Batch {
        let mut out = Batch {
            index,
            images: Vec::new(),
            superpixels: Vec::new(),
            labels: Vec::new(),
            len: samples.len(),
            size: (self.cfg.crop, self.cfg.crop),
        };
        for s in samples {
            out.images.extend(s.image);
            out.superpixels.extend(s.superpixels);
            out.labels.extend(s.label);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(crop: usize, lo: usize, hi: usize) -> DataConfig {
        let mut c = super::super::config::CamTrainConfig::synthetic(2).data;
        c.crop = crop;
        c.resize_long = (lo, hi);
        c
    }

    fn image(w: u32, h: u32) -> (RgbImage, Vec<u32>) {
        let img = RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 9) as u8, (y * 7) as u8, 90]));
        // four quadrant regions, ids 1..=4
        let sp = (0..h)
            .flat_map(|y| (0..w).map(move |x| 1 + (x >= w / 2) as u32 + 2 * (y >= h / 2) as u32))
            .collect();
        (img, sp)
    }

    #[test]
    fn small_image_is_padded_and_relabelled() {
        let (img, sp) = image(20, 10);
        // long side fixed to 20: no resize, the crop of 32 pads both axes
        let s = augment(&img, &sp, &[1.0, 0.0], &cfg(32, 20, 20), &mut Rng::new(3)).unwrap();
        assert_eq!(s.image.len(), 3 * 32 * 32);
        let zeros = s.image[..32 * 32].iter().filter(|v| **v == 0.0).count();
        assert!(zeros >= 32 * 32 - 200, "padding should be 0: {zeros}");
        let mut ids = s.superpixels.clone();
        ids.sort_unstable();
        ids.dedup();
        // 4 regions + padding, relabelled to exactly 0..5
        assert_eq!(ids, vec![0, 1, 2, 3, 4]);
        assert_eq!(s.label, vec![1.0, 0.0]);
    }

    #[test]
    fn large_image_is_cropped_and_deterministic() {
        let (img, sp) = image(64, 48);
        let c = cfg(32, 40, 80);
        let a = augment(&img, &sp, &[1.0], &c, &mut sample_rng(7, 1, 3)).unwrap();
        let b = augment(&img, &sp, &[1.0], &c, &mut sample_rng(7, 1, 3)).unwrap();
        assert_eq!(a, b);
        let other = augment(&img, &sp, &[1.0], &c, &mut sample_rng(7, 2, 3)).unwrap();
        assert_ne!(a, other);
    }

    #[test]
    fn mismatched_superpixels_are_an_error() {
        let (img, _) = image(8, 8);
        assert!(augment(&img, &[0; 10], &[1.0], &cfg(16, 8, 8), &mut Rng::new(0)).is_err());
    }
}
