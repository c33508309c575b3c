//! The CAM + IRN model behind `ssc-serve` (§3 CAMs with predicted labels, §4.7 random walk):
//! pre-annotations straight from the pseudo-label stage, before any segmentation network is
//! trained. Each segmenter owns one CAM session and one IRN session (runs need `&mut`).

use std::path::Path;

use image::RgbImage;
use ssc_core::pseudo::PseudoLabel;
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
}

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
        })
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
        let rec = cam_for_image(&mut self.cam, image, None, &self.cfg)?;
        let label = refine(&mut self.irn, image, &rec, &self.params)?;
        let scores = class_confidence(&label, self.cam.info().class_names.len() + 1);
        Ok(Segmentation {
            width: image.width(),
            height: image.height(),
            labels: label.pred,
            scores,
        })
    }
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
