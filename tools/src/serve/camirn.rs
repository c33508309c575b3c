//! The CAM + IRN model behind `ssc-serve` (§3 CAMs with predicted labels, §4.7 random walk):
//! pre-annotations straight from the pseudo-label stage, before any segmentation network is
//! trained. Each segmenter owns one CAM session and one IRN session (runs need `&mut`).
//!
//! The CAMs at four scales and the random walk need memory in proportion to the image (a
//! 24-megapixel photograph peaked at 18.9 GB), so an image above the work size
//! ([`CamIrnSegmenter::with_work_pixels`], 1 megapixel by default) is shrunk to it (aspect
//! kept, PIL-style bicubic as the pipeline resizes) and the label map is enlarged back by
//! nearest neighbour: a worker's memory is bounded whatever the image's size.

use std::path::Path;

use image::RgbImage;
use ssc_core::pseudo::PseudoLabel;
use ssc_core::resize::pil_rescale_rgb;
use ssc_inference::cam::{CamConfig, cam_for_image};
use ssc_inference::refine::{RefineParams, refine};
use ssc_inference::runtime::{Model, SessionConfig};
use ssc_inference::{InferenceError, Result};

use super::predictor::{SegmentError, Segmentation, Segmenter};

/// Exported CAM and IRN edge networks labelling one image at a time.
pub struct CamIrnSegmenter {
    cam: Model,
    irn: Model,
    cfg: CamConfig,
    params: RefineParams,
    work_pixels: u64,
}

/// Default work size of [`CamIrnSegmenter`]: one megapixel.
pub const DEFAULT_WORK_PIXELS: u64 = 1_000_000;

impl CamIrnSegmenter {
    /// Opens the two networks, checking their kinds. Labels are always predicted (a served
    /// image has no image-level labels), whatever `cfg.predict_labels` says.
    pub fn open(
        cam: &Path,
        irn: &Path,
        session: &SessionConfig,
        cfg: CamConfig,
        params: RefineParams,
    ) -> Result<Self> {
        let cfg = CamConfig {
            predict_labels: true,
            ..cfg
        };
        cfg.validate()?;
        let cam_model = Model::open(cam, session)?;
        let irn_model = Model::open(irn, session)?;
        for (path, model, want) in [(cam, &cam_model, "cam"), (irn, &irn_model, "irn")] {
            if model.info().arch != want {
                return Err(InferenceError::Invalid(format!(
                    "{} is a `{}` network, expected `{want}`",
                    path.display(),
                    model.info().arch
                )));
            }
        }
        if cam_model.info().class_names.len() > 253 {
            return Err(InferenceError::Invalid(format!(
                "{}: {} classes do not fit a label map",
                cam.display(),
                cam_model.info().class_names.len()
            )));
        }
        Ok(CamIrnSegmenter {
            cam: cam_model,
            irn: irn_model,
            cfg,
            params,
            work_pixels: DEFAULT_WORK_PIXELS,
        })
    }

    /// Runs images larger than `pixels` (at least 10,000) at that size.
    pub fn with_work_pixels(mut self, pixels: u64) -> Self {
        self.work_pixels = pixels.max(10_000);
        self
    }

    /// Label names: background, then the CAM network's classes.
    pub fn class_names(&self) -> Vec<String> {
        std::iter::once("background".to_string())
            .chain(self.cam.info().class_names.iter().cloned())
            .collect()
    }
}

impl Segmenter for CamIrnSegmenter {
    fn segment(&mut self, image: &RgbImage) -> std::result::Result<Segmentation, SegmentError> {
        let (w, h) = image.dimensions();
        let pixels = u64::from(w) * u64::from(h);
        let small;
        let work = if pixels > self.work_pixels {
            let scale = (self.work_pixels as f64 / pixels as f64).sqrt();
            small = pil_rescale_rgb(image, scale)?;
            &small
        } else {
            image
        };
        let rec = cam_for_image(&mut self.cam, work, None, &self.cfg)?;
        let label = refine(&mut self.irn, work, &rec, &self.params)?;
        let scores = class_confidence(&label, self.cam.info().class_names.len() + 1);
        let labels = if work.dimensions() == (w, h) {
            label.pred
        } else {
            enlarge_nearest(&label.pred, work.width(), work.height(), w, h)
        };
        Ok(Segmentation {
            width: w,
            height: h,
            labels,
            scores,
        })
    }
}

/// Nearest-neighbour enlargement of a `sw × sh` label map to `w × h` (pixel centres).
pub fn enlarge_nearest(labels: &[u8], sw: u32, sh: u32, w: u32, h: u32) -> Vec<u8> {
    let src = |d: u32, sd: u32, dd: u32| {
        (((f64::from(d) + 0.5) * f64::from(sd) / f64::from(dd)) as u32).min(sd - 1) as usize
    };
    let cols: Vec<usize> = (0..w).map(|x| src(x, sw, w)).collect();
    let mut out = Vec::with_capacity(w as usize * h as usize);
    for y in 0..h {
        let row = &labels[src(y, sh, h) * sw as usize..][..sw as usize];
        out.extend(cols.iter().map(|&c| row[c]));
    }
    out
}

/// Per label value (background first, `classes` entries): the mean confidence of the pixels
/// labelled with it, 0 when none is. A foreground pixel's confidence is its normalised walk
/// score (in [0, 1] after the division by the maximum); a background pixel's is one minus the
/// best foreground score, i.e. how far the walk stayed from claiming it.
pub fn class_confidence(label: &PseudoLabel, classes: usize) -> Vec<f32> {
    let n = label.width * label.height;
    let mut sum = vec![0f64; classes];
    let mut count = vec![0usize; classes];
    let ids: Vec<usize> = std::iter::once(0)
        .chain(label.keys.iter().map(|&k| k + 1))
        .collect();
    for (p, &v) in label.pred.iter().enumerate() {
        let v = v as usize;
        if v >= classes {
            continue;
        }
        let conf = if v == 0 {
            let best = (1..ids.len())
                .map(|c| label.score[c * n + p])
                .fold(0f32, f32::max);
            1.0 - best
        } else {
            match ids.iter().position(|&id| id == v) {
                Some(c) => label.score[c * n + p],
                None => continue,
            }
        };
        sum[v] += f64::from(conf.clamp(0.0, 1.0));
        count[v] += 1;
    }
    sum.iter()
        .zip(&count)
        .map(|(&s, &c)| if c == 0 { 0.0 } else { (s / c as f64) as f32 })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_enlargement_keeps_blocks() {
        // 2x2 → 4x6: each source pixel becomes a 2x3 block
        let out = enlarge_nearest(&[1, 2, 3, 4], 2, 2, 4, 6);
        let want: Vec<u8> = (0..6)
            .flat_map(|y| (0..4).map(move |x| [1, 2, 3, 4][(y / 3) * 2 + x / 2]))
            .collect();
        assert_eq!(out, want);
        assert_eq!(enlarge_nearest(&[7, 8, 9], 3, 1, 3, 1), vec![7, 8, 9]);
    }

    #[test]
    fn confidence_is_the_mean_score_of_each_label() {
        // 1×3 image, keys [1] (label value 2): pixel 0 background, pixels 1–2 class 2.
        let label = PseudoLabel {
            height: 1,
            width: 3,
            score: vec![0.25, 0.25, 0.25, 0.1, 0.5, 1.0],
            pred: vec![0, 2, 2],
            keys: vec![1],
        };
        let c = class_confidence(&label, 4);
        assert_eq!(c.len(), 4);
        assert!((c[0] - 0.9).abs() < 1e-6, "{c:?}");
        assert_eq!((c[1], c[3]), (0.0, 0.0));
        assert!((c[2] - 0.75).abs() < 1e-6, "{c:?}");
    }
}
