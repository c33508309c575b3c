//! The pseudo-label stage as one object (§3.1–3.3 CAMs, then §4.7–4.8 IRN random walk): a
//! [`Labeler`] holds an exported CAM network and an exported IRN edge network and turns one
//! image (with its image-level labels, or predicting them) into a label map.
//!
//! It is what `ssc-serve` runs for CAM + IRN pre-annotations and what a Rust program embeds to
//! get pseudo-masks without a binary. `ssc-label masks` runs the same steps split over its
//! bounded pipeline (batched CAM inference on one worker, the walk on others); the masks are
//! the same (`tools/tests/serve_cam_irn.rs` compares a served mask with the written one).
//!
//! ```no_run
//! use ssc_inference::labeler::{ImageLabels, Labeler};
//! use ssc_inference::runtime::SessionConfig;
//!
//! # fn main() -> ssc_inference::Result<()> {
//! let mut labeler = Labeler::open("cam.onnx".as_ref(), "irn.onnx".as_ref(), &SessionConfig::default())?;
//! let image = ssc_core::imageio::read_rgb("photo.jpg")?;
//! let out = labeler.label(&image, ImageLabels::Predict)?;
//! println!("{} classes found, mask {}×{}", out.keys.len(), out.mask.width, out.mask.height);
//! # Ok(())
//! # }
//! ```

use std::path::Path;

use image::RgbImage;
use ssc_core::cam::CamRecord;
use ssc_core::mask::LabelMap;
use ssc_core::pseudo::PseudoLabel;
use ssc_core::resize::pil_rescale_rgb;

use crate::cam::{CamConfig, cam_for_image};
use crate::refine::{RefineParams, refine};
use crate::runtime::{Model, SessionConfig};
use crate::{InferenceError, Result};

/// Default work size of a [`Labeler`] built by [`Labeler::open`]: none (every image at its own
/// size, as `ssc-label` runs). `ssc-serve` bounds it (`--walk-megapixels`, 1 by default).
pub const DEFAULT_SERVE_WORK_PIXELS: u64 = 1_000_000;

/// The image-level labels of the image to label.
#[derive(Debug, Clone, Copy)]
pub enum ImageLabels<'a> {
    /// Multi-hot over the CAM network's classes (background excluded), as a dataset gives.
    Given(&'a [u8]),
    /// Predicted from the CAM network's class scores (`CamConfig::label_threshold`).
    Predict,
}

/// What [`Labeler::label`] returns for one image.
#[derive(Debug, Clone)]
pub struct Labelling {
    /// Label map of the image's size: 0 background, `k + 1` for class `k` of the network.
    pub mask: LabelMap,
    /// The network's classes (0-based) kept for this image.
    pub keys: Vec<i64>,
    /// Per label value (background first, `classes + 1` entries): the mean confidence of the
    /// pixels labelled with it, 0 when none is ([`class_confidence`]).
    pub confidence: Vec<f32>,
    /// The CAM (at the work size), when asked for with [`Labeler::keep_cams`].
    pub cam: Option<CamRecord>,
    /// The walk's scores and labels (at the work size), when CAMs are kept.
    pub pseudo: Option<PseudoLabel>,
}

/// An exported CAM network and IRN edge network labelling one image at a time (ONNX Runtime
/// runs need `&mut`, so use one per worker thread).
pub struct Labeler {
    cam: Model,
    irn: Model,
    cfg: CamConfig,
    params: RefineParams,
    work_pixels: Option<u64>,
    keep_cams: bool,
}

impl Labeler {
    /// Opens the two exported networks (checking their kinds) with the reference CAM scales
    /// and refinement settings.
    pub fn open(cam: &Path, irn: &Path, session: &SessionConfig) -> Result<Self> {
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
        Ok(Labeler {
            cam: cam_model,
            irn: irn_model,
            cfg: CamConfig::default(),
            params: RefineParams::default(),
            work_pixels: None,
            keep_cams: false,
        })
    }

    /// CAM scales and label prediction settings (checked).
    pub fn with_cam_config(mut self, cfg: CamConfig) -> Result<Self> {
        cfg.validate()?;
        self.cfg = cfg;
        Ok(self)
    }

    /// Random-walk and background settings.
    pub fn with_params(mut self, params: RefineParams) -> Self {
        self.params = params;
        self
    }

    /// Labels an image of more than `pixels` pixels (at least 10,000) at that size (aspect
    /// kept, Pillow-bicubic as the pipeline resizes) and enlarges the label map back by
    /// nearest neighbour: the memory of the four CAM scales and the walk is then bounded
    /// whatever the image's size. `None` labels every image at its own size.
    pub fn with_work_pixels(mut self, pixels: Option<u64>) -> Self {
        self.work_pixels = pixels.map(|p| p.max(10_000));
        self
    }

    /// Also return each image's CAM and walk scores ([`Labelling::cam`], [`Labelling::pseudo`]).
    pub fn keep_cams(mut self, keep: bool) -> Self {
        self.keep_cams = keep;
        self
    }

    /// Label names: background, then the CAM network's classes.
    pub fn class_names(&self) -> Vec<String> {
        std::iter::once("background".to_string())
            .chain(self.cam.info().class_names.iter().cloned())
            .collect()
    }

    /// The CAM settings in use.
    pub fn cam_config(&self) -> &CamConfig {
        &self.cfg
    }

    /// CAM (§3.1–3.3) and random walk (§4.7–4.8) of one image.
    pub fn label(&mut self, image: &RgbImage, labels: ImageLabels<'_>) -> Result<Labelling> {
        let (w, h) = image.dimensions();
        let pixels = u64::from(w) * u64::from(h);
        let small;
        let work = match self.work_pixels {
            Some(limit) if pixels > limit => {
                small = pil_rescale_rgb(image, (limit as f64 / pixels as f64).sqrt())?;
                &small
            }
            _ => image,
        };
        let cfg;
        let (cfg, given) = match labels {
            ImageLabels::Given(l) => {
                cfg = CamConfig {
                    predict_labels: false,
                    ..self.cfg.clone()
                };
                (&cfg, Some(l))
            }
            ImageLabels::Predict => {
                cfg = CamConfig {
                    predict_labels: true,
                    ..self.cfg.clone()
                };
                (&cfg, None)
            }
        };
        let rec = cam_for_image(&mut self.cam, work, given, cfg)?;
        let label = refine(&mut self.irn, work, &rec, &self.params)?;
        let confidence = class_confidence(&label, self.cam.info().class_names.len() + 1);
        let data = if work.dimensions() == (w, h) {
            label.pred.clone()
        } else {
            enlarge_nearest(&label.pred, work.width(), work.height(), w, h)
        };
        let mask = LabelMap::new(w as usize, h as usize, data)?;
        let keys = rec.keys.clone();
        let (cam, pseudo) = if self.keep_cams {
            (Some(rec), Some(label))
        } else {
            (None, None)
        };
        Ok(Labelling {
            mask,
            keys,
            confidence,
            cam,
            pseudo,
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
