//! DeepLab training and validation data (§6.2).
//!
//! Training samples: image, pseudo-mask (`<pseudo>/<id>.png`, palette or grey class ids,
//! 255 = ignore) and optionally the §4.8 confidence mask (`<confidence>/<id>.png`, 0/255 grey
//! as `ssc-label pseudo --confidence` writes it, non-zero = reliable). The crop follows the
//! configured [`CropMode`], then a horizontal flip, then ImageNet normalisation.
//!
//! **Deviation:** the reference resizes images with PIL *bilinear*; ssc_core has Pillow's
//! bicubic and nearest filters only, so images are resized bicubic (labels and masks
//! nearest, as the reference).
//!
//! Samples are drawn and loaded as in every trainer ([`crate::data`]): per-sample random
//! streams, so batches do not depend on the thread count and a resumed run sees exactly the
//! data of an uninterrupted one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use image::RgbImage;
use ssc_core::classes::{ClassMap, IGNORE};
use ssc_core::dataset::Dataset;
use ssc_core::imageio;
use ssc_core::mask::{LabelMap, read_mask};
use ssc_core::normalize::normalize_chw;
use ssc_core::resize::{pil_bicubic_rgb, pil_nearest, rescale_size};
use ssc_core::rng::Rng;

use super::config::{CropMode, DeepLabDataConfig};
use crate::data::{CropBox, SampleSet, normalise_flip, sample_rng};
use crate::error::{Result, TrainError};

/// One augmented sample.
#[derive(Debug, Clone, PartialEq)]
pub struct DeepLabSample {
    /// Normalised image, `3×crop×crop` (0 where padded).
    pub image: Vec<f32>,
    /// Class ids, `crop×crop` (255 where padded or ignored).
    pub label: Vec<u8>,
    /// Confidence 0/1 per pixel, `crop×crop`, when masks are used.
    pub confidence: Option<Vec<u8>>,
}

/// A batch, ready for tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct DeepLabBatch {
    /// Index of the batch in its epoch.
    pub index: usize,
    /// Samples in the batch.
    pub len: usize,
    /// Images `N×3×crop×crop`.
    pub images: Vec<f32>,
    /// Labels `N×crop×crop`.
    pub labels: Vec<u8>,
    /// Per-pixel loss weights `N×crop×crop` (the confidence masks), when used.
    pub weights: Option<Vec<f32>>,
}

/// A crop box `(top, left, height, width)` of torchvision's `RandomResizedCrop.get_params`.
fn resized_crop_box(
    h: usize,
    w: usize,
    area: (f64, f64),
    ratio: (f64, f64),
    rng: &mut Rng,
) -> (usize, usize, usize, usize) {
    let total = (h * w) as f64;
    let (lr0, lr1) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target = total * rng.uniform(area.0, area.1);
        let aspect = rng.uniform(lr0, lr1).exp();
        let cw = (target * aspect).sqrt().round() as usize;
        let ch = (target / aspect).sqrt().round() as usize;
        if cw > 0 && cw <= w && ch > 0 && ch <= h {
            let top = rng.below((h - ch + 1) as u64) as usize;
            let left = rng.below((w - cw + 1) as u64) as usize;
            return (top, left, ch, cw);
        }
    }
    // Centre crop of the whole image, clamped to the ratio range.
    let in_ratio = w as f64 / h as f64;
    let (ch, cw) = if in_ratio < ratio.0 {
        (((w as f64 / ratio.0).round() as usize).clamp(1, h), w)
    } else if in_ratio > ratio.1 {
        (h, ((h as f64 * ratio.1).round() as usize).clamp(1, w))
    } else {
        (h, w)
    };
    ((h - ch) / 2, (w - cw) / 2, ch, cw)
}

/// Rows `top..top+ch`, columns `left..left+cw` of a `planes×h×w` buffer (row-major).
fn cut<T: Copy>(
    src: &[T],
    planes: usize,
    h: usize,
    w: usize,
    b: (usize, usize, usize, usize),
) -> Vec<T> {
    let (top, left, ch, cw) = b;
    let mut out = Vec::with_capacity(planes * ch * cw);
    for p in 0..planes {
        for y in top..top + ch {
            let row = p * h * w + y * w;
            out.extend_from_slice(&src[row + left..row + left + cw]);
        }
    }
    out
}

/// Applies §6.2 (crop, flip, normalise) to an image, its label and optional confidence mask
/// (all `H×W`).
pub fn augment(
    img: &RgbImage,
    label: &[u8],
    confidence: Option<&[u8]>,
    cfg: &DeepLabDataConfig,
    rng: &mut Rng,
) -> Result<DeepLabSample> {
    let (h, w) = (img.height() as usize, img.width() as usize);
    if label.len() != h * w || confidence.is_some_and(|c| c.len() != h * w) {
        return Err(TrainError::Config(format!(
            "label/confidence sizes do not match the {w}×{h} image"
        )));
    }
    let c = cfg.crop;
    // Label and confidence go through the same geometry as the image, one plane each.
    let mut planes = vec![label.to_vec()];
    if let Some(conf) = confidence {
        planes.push(conf.iter().map(|&v| (v != 0) as u8).collect());
    }
    let (img, ih, iw) = match cfg.crop_mode {
        CropMode::ResizedCrop { area, ratio } => {
            let b = resized_crop_box(h, w, area, ratio, rng);
            let (top, left, bh, bw) = b;
            // The RGB buffer is interleaved: a box of 3·width bytes per row.
            let sub = cut(img.as_raw(), 1, h, 3 * w, (top, 3 * left, bh, 3 * bw));
            let sub = RgbImage::from_raw(bw as u32, bh as u32, sub)
                .ok_or_else(|| TrainError::State("crop buffer size".into()))?;
            for p in &mut planes {
                *p = pil_nearest(&cut(p, 1, h, w, b), bh, bw, 1, c, c)?;
            }
            (pil_bicubic_rgb(&sub, c, c)?, c, c)
        }
        CropMode::ScaleCrop { scale } => {
            let s = if scale.0 < scale.1 {
                rng.uniform(scale.0, scale.1)
            } else {
                scale.0
            };
            let (rh, rw) = rescale_size(h, w, s);
            if rh == 0 || rw == 0 {
                return Err(TrainError::Config(format!(
                    "image {w}×{h} vanishes at scale {s:.3}"
                )));
            }
            for p in &mut planes {
                *p = pil_nearest(p, h, w, 1, rh, rw)?;
            }
            (pil_bicubic_rgb(img, rh, rw)?, rh, rw)
        }
    };
    let chw = normalise_flip(&img, &mut planes, cfg.flip_prob, rng)?;
    let b = CropBox::random(ih, iw, c, rng);
    let image = b.apply(&chw, 3, 0.0);
    // Padding: label ignore, confidence 0.
    let mut out: Vec<Vec<u8>> = planes
        .iter()
        .enumerate()
        .map(|(i, p)| b.apply(p, 1, if i == 0 { IGNORE } else { 0 }))
        .collect();
    let confidence = (out.len() == 2).then(|| out.pop()).flatten();
    Ok(DeepLabSample {
        image,
        label: out.pop().unwrap_or_default(),
        confidence,
    })
}

/// One training image with its pseudo-mask and optional confidence mask.
#[derive(Debug, Clone)]
struct TrainItem {
    id: String,
    image: PathBuf,
    label: PathBuf,
    confidence: Option<PathBuf>,
    /// The label is an annotator's correction: every labelled pixel is reliable.
    corrected: bool,
}

/// The training images with their pseudo-masks.
#[derive(Debug)]
pub struct DeepLabTrainSet {
    items: Vec<TrainItem>,
    classes: ClassMap,
    num_classes: usize,
    cfg: DeepLabDataConfig,
}

/// Reads a mask PNG and checks its size against the image.
fn read_sized(path: &Path, classes: &ClassMap, size: (usize, usize)) -> Result<LabelMap> {
    let m = read_mask(path, classes)?;
    if m.size() != size {
        return Err(TrainError::file(
            path,
            format!("mask is {:?}, the image is {}×{}", m.size(), size.0, size.1),
        ));
    }
    Ok(m)
}

impl DeepLabTrainSet {
    /// Opens the images of `ds` with pseudo-masks from `pseudo_dir` and, when given,
    /// confidence masks from `confidence_dir`. A missing mask is reported now, naming the
    /// file.
    pub fn new(
        ds: &Dataset,
        pseudo_dir: &Path,
        confidence_dir: Option<&Path>,
        num_classes: usize,
        cfg: &DeepLabDataConfig,
    ) -> Result<Self> {
        let n = cfg.max_images.unwrap_or(usize::MAX).min(ds.len());
        let mut items = Vec::with_capacity(n);
        for it in &ds.items[..n] {
            let label = pseudo_dir.join(format!("{}.png", it.id));
            if !label.is_file() {
                return Err(TrainError::file(
                    label,
                    "pseudo-mask missing: run `ssc-label pseudo` first or pass the right --pseudo",
                ));
            }
            let confidence = match confidence_dir {
                Some(d) => {
                    let p = d.join(format!("{}.png", it.id));
                    if !p.is_file() {
                        return Err(TrainError::file(
                            p,
                            "confidence mask missing: run `ssc-label pseudo --confidence`",
                        ));
                    }
                    Some(p)
                }
                None => None,
            };
            items.push(TrainItem {
                id: it.id.clone(),
                image: it.image.clone(),
                label,
                confidence,
                corrected: false,
            });
        }
        if items.is_empty() {
            return Err(TrainError::Config(format!("dataset {} is empty", ds.name)));
        }
        Ok(DeepLabTrainSet {
            items,
            classes: ds.classes.clone(),
            num_classes,
            cfg: cfg.clone(),
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// `true` when empty (never, after [`DeepLabTrainSet::new`]).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether samples carry confidence masks.
    pub fn has_confidence(&self) -> bool {
        self.items[0].confidence.is_some()
    }

    /// The image ids, in order.
    pub fn ids(&self) -> Vec<String> {
        self.items.iter().map(|it| it.id.clone()).collect()
    }

    /// Replaces the pseudo-masks of the images in `labels` (id → label PNG, e.g. from
    /// [`ssc_core::formats::corrections::by_id`]) with those labels, at full confidence;
    /// returns the ids replaced, in order. Ids that are not training images are ignored.
    pub fn apply_corrections(&mut self, labels: &HashMap<String, PathBuf>) -> Vec<String> {
        let mut done = Vec::new();
        for it in &mut self.items {
            if let Some(p) = labels.get(&it.id) {
                it.label = p.clone();
                it.corrected = true;
                done.push(it.id.clone());
            }
        }
        done
    }
}

impl SampleSet for DeepLabTrainSet {
    type Sample = DeepLabSample;
    type Batch = DeepLabBatch;

    fn images(&self) -> usize {
        self.len()
    }

    /// With `images_per_epoch`, the first images of the epoch's shuffled order.
    fn per_epoch(&self) -> usize {
        self.cfg
            .images_per_epoch
            .unwrap_or(usize::MAX)
            .min(self.len())
    }

    fn prefetch(&self) -> usize {
        self.cfg.prefetch
    }

    fn sample(&self, i: usize, seed: u64, epoch: usize) -> Result<DeepLabSample> {
        let it = &self.items[i];
        let img = imageio::read_rgb(&it.image)?;
        let size = (img.width() as usize, img.height() as usize);
        let lab = read_sized(&it.label, &self.classes, size)?;
        if let Some(&bad) = lab
            .data
            .iter()
            .find(|&&v| v != IGNORE && v as usize >= self.num_classes)
        {
            return Err(TrainError::file(
                &it.label,
                format!(
                    "label {bad} is not a class id (the network has {} classes; 255 = ignore)",
                    self.num_classes
                ),
            ));
        }
        let conf = match &it.confidence {
            Some(_) if it.corrected => Some(LabelMap::filled(size.0, size.1, 255)),
            Some(p) => Some(read_sized(p, &self.classes, size)?),
            None => None,
        };
        let mut rng = sample_rng(seed, epoch, i);
        augment(
            &img,
            &lab.data,
            conf.as_ref().map(|m| m.data.as_slice()),
            &self.cfg,
            &mut rng,
        )
        .map_err(|e| TrainError::file(&it.image, e.to_string()))
    }

    fn collate(&self, index: usize, samples: Vec<DeepLabSample>) -> DeepLabBatch {
        let mut out = DeepLabBatch {
            index,
            len: samples.len(),
            images: Vec::with_capacity(samples.len() * samples[0].image.len()),
            labels: Vec::with_capacity(samples.len() * samples[0].label.len()),
            weights: self.has_confidence().then(Vec::new),
        };
        for s in samples {
            out.images.extend(s.image);
            out.labels.extend(s.label);
            if let (Some(w), Some(c)) = (out.weights.as_mut(), s.confidence) {
                w.extend(c.into_iter().map(f32::from));
            }
        }
        out
    }
}

/// Validation images with ground truth, pre-processed as §6.2 (optionally resized to a
/// square, image bicubic — see the module docs — and GT nearest).
#[derive(Debug)]
pub struct ValSet {
    items: Vec<(PathBuf, PathBuf)>,
    classes: ClassMap,
    size: Option<usize>,
}

/// One pre-processed validation image.
#[derive(Debug, Clone)]
pub struct ValImage {
    /// Normalised `3×H×W`.
    pub image: Vec<f32>,
    /// GT `H×W`.
    pub gt: Vec<u8>,
    /// `(H, W)`.
    pub size: (usize, usize),
}

impl ValSet {
    /// The images of `ds` that have ground truth (at most `max`); an error when none has.
    pub fn new(ds: &Dataset, size: Option<usize>, max: Option<usize>) -> Result<Self> {
        let items: Vec<_> = ds
            .items
            .iter()
            .filter_map(|it| it.gt.clone().map(|g| (it.image.clone(), g)))
            .take(max.unwrap_or(usize::MAX))
            .collect();
        if items.is_empty() {
            return Err(TrainError::Config(format!(
                "validation split {} has no ground-truth masks",
                ds.name
            )));
        }
        Ok(ValSet {
            items,
            classes: ds.classes.clone(),
            size,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// `true` when empty (never, after [`ValSet::new`]).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Image `i`, pre-processed.
    pub fn get(&self, i: usize) -> Result<ValImage> {
        let (ip, gp) = &self.items[i];
        let img = imageio::read_rgb(ip)?;
        let (h, w) = (img.height() as usize, img.width() as usize);
        let gt = read_sized(gp, &self.classes, (w, h))?;
        Ok(match self.size {
            None => ValImage {
                image: normalize_chw(&img),
                gt: gt.data,
                size: (h, w),
            },
            Some(s) => ValImage {
                image: normalize_chw(&pil_bicubic_rgb(&img, s, s)?),
                gt: pil_nearest(&gt.data, h, w, 1, s, s)?,
                size: (s, s),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::tests::half_and_half as pair;
    use crate::deeplab::config::DeepLabTrainConfig;

    #[test]
    fn scale_crop_pads_with_ignore_and_keeps_confidence_aligned() {
        let (img, lab) = pair(20, 12);
        let mut cfg = DeepLabTrainConfig::synthetic(1).data;
        cfg.crop = 32;
        cfg.crop_mode = CropMode::ScaleCrop { scale: (1.0, 1.0) };
        // Confidence = the label itself: after any flip/crop the two must still agree.
        let s = augment(&img, &lab, Some(&lab), &cfg, &mut Rng::new(3)).unwrap();
        assert_eq!((s.image.len(), s.label.len()), (3 * 32 * 32, 32 * 32));
        let inside = s.label.iter().filter(|&&v| v != IGNORE).count();
        assert_eq!(inside, 20 * 12, "the rest is padding");
        let conf = s.confidence.unwrap();
        for (l, c) in s.label.iter().zip(&conf) {
            assert_eq!(if *l == IGNORE { 0 } else { *l }, *c);
        }
    }

    #[test]
    fn resized_crop_fills_the_crop_and_is_deterministic() {
        let (img, lab) = pair(64, 48);
        let cfg = DeepLabTrainConfig::voc().data;
        let cfg = DeepLabDataConfig { crop: 40, ..cfg };
        let a = augment(&img, &lab, None, &cfg, &mut sample_rng(7, 1, 3)).unwrap();
        let b = augment(&img, &lab, None, &cfg, &mut sample_rng(7, 1, 3)).unwrap();
        assert_eq!(a, b);
        assert!(a.label.iter().all(|&v| v <= 1), "never padded");
        assert!(a.label.contains(&0) || a.label.contains(&1));
        let other = augment(&img, &lab, None, &cfg, &mut sample_rng(7, 2, 3)).unwrap();
        assert_ne!(a, other);
    }

    #[test]
    fn resized_crop_box_stays_inside() {
        let mut rng = Rng::new(1);
        for _ in 0..200 {
            let (t, l, h, w) = resized_crop_box(30, 50, (0.5, 0.75), (0.75, 4.0 / 3.0), &mut rng);
            assert!(t + h <= 30 && l + w <= 50 && h > 0 && w > 0);
            let a = (h * w) as f64 / 1500.0;
            assert!((0.45..=0.8).contains(&a), "{a}");
        }
        // Impossible area/ratio: the clamped centre crop.
        let b = resized_crop_box(10, 100, (0.99, 1.0), (1.0, 1.0), &mut rng);
        assert_eq!(b, (0, 45, 10, 10));
    }
}
