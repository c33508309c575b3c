//! Multi-scale CAM generation around an exported CAM network (§3.1–3.2, §10.3).
//!
//! Per image: Pillow-bicubic rescales for the scales (1.0, 0.5, 1.5, 2.0 by default),
//! normalisation with the model's own mean/std ([`prepare`], CPU only), `[img, hflip(img)]`
//! pairs through the ONNX session and the flip sum `o_s = cam[0] + hflip(cam[1])` ([`infer`]),
//! then fusion, class selection and normalisation with `ssc_core::cam` ([`finish`]).
//!
//! The steps are separate functions so the bounded pipeline ([`crate::pipeline`]) can run
//! decoding, inference and post-processing on different workers.
//!
//! **Predicted labels** (`--predict-labels`): the exported network ends in a ReLU, so the
//! classifier's logits `mean(classifier(layer4))` are not available. The score used instead is
//! [`class_scores`]: the spatial mean of the flip-averaged ReLU CAM at scale 1.0 (the first
//! scale if 1.0 is not among them). Since global average pooling and the 1×1 classifier
//! commute, this is the logit with negative evidence clipped, i.e. an upper bound of the logit,
//! in the same units. A class is present when its score exceeds the threshold; when none does,
//! the best-scoring class is kept, since every image of a WSSS dataset shows an object.

use image::RgbImage;
use serde::{Deserialize, Serialize};
use ssc_core::cam::{CamRecord, REFERENCE_SCALES, ScaleOutput, fuse_scales, keys_from_label};
use ssc_core::normalize::hflip_chw;
use ssc_core::resize::{pil_bicubic_rgb, pil_rescale_rgb, rescale_size};

use crate::runtime::{Model, ModelInfo};
use crate::{InferenceError, Result};

/// CAM generation settings (written beside the outputs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CamConfig {
    /// Image scales (§3.2).
    pub scales: Vec<f64>,
    /// Take the present classes from the model's scores instead of the dataset labels.
    pub predict_labels: bool,
    /// Score threshold of predicted labels (logit units, see the module doc).
    pub label_threshold: f32,
}

impl Default for CamConfig {
    fn default() -> Self {
        CamConfig {
            scales: REFERENCE_SCALES.to_vec(),
            predict_labels: false,
            label_threshold: 0.5,
        }
    }
}

impl CamConfig {
    /// Checks the scales and the threshold.
    pub fn validate(&self) -> Result<()> {
        if self.scales.is_empty() {
            return Err(InferenceError::Invalid("no CAM scale given".into()));
        }
        if let Some(s) = self
            .scales
            .iter()
            .find(|s| !(s.is_finite() && **s > 0.0 && **s <= 8.0))
        {
            return Err(InferenceError::Invalid(format!(
                "CAM scale {s} must be in (0, 8]"
            )));
        }
        if !self.label_threshold.is_finite() {
            return Err(InferenceError::Invalid(
                "the label threshold must be finite".into(),
            ));
        }
        Ok(())
    }

    /// Index of the scale whose output gives the predicted-label scores: 1.0, else the first.
    pub fn score_scale(&self) -> usize {
        self.scales.iter().position(|&s| s == 1.0).unwrap_or(0)
    }
}

/// Per-channel normalisation `(v/255 − mean)/std` as a lookup table (computed in f64 and
/// stored as f32, like `ssc_core::normalize`, but with the model's own statistics).
#[derive(Debug, Clone)]
pub struct Normalizer {
    table: [[f32; 256]; 3],
}

impl Normalizer {
    /// The table of `mean`/`std` (RGB, [0, 1] units).
    pub fn new(mean: [f64; 3], std: [f64; 3]) -> Result<Self> {
        if std.iter().any(|s| !(s.is_finite() && *s > 0.0)) || mean.iter().any(|m| !m.is_finite()) {
            return Err(InferenceError::Invalid(format!(
                "unusable normalisation mean {mean:?} / std {std:?}"
            )));
        }
        let mut table = [[0.0; 256]; 3];
        for (c, row) in table.iter_mut().enumerate() {
            for (v, dst) in row.iter_mut().enumerate() {
                *dst = ((v as f64 / 255.0 - mean[c]) / std[c]) as f32;
            }
        }
        Ok(Normalizer { table })
    }

    /// The table of a model's metadata.
    pub fn of(info: &ModelInfo) -> Result<Self> {
        Self::new(info.mean, info.std)
    }

    /// `[img, hflip(img)]` normalised, `2×3×H×W`.
    pub fn flip_pair(&self, img: &RgbImage) -> Vec<f32> {
        let (h, w) = (img.height() as usize, img.width() as usize);
        let n = h * w;
        let mut out = vec![0.0f32; 6 * n];
        let (a, b) = out.split_at_mut(3 * n);
        for (i, px) in img.as_raw().chunks_exact(3).enumerate() {
            let (y, x) = (i / w, i % w);
            let j = y * w + (w - 1 - x);
            for c in 0..3 {
                let v = self.table[c][px[c] as usize];
                a[c * n + i] = v;
                b[c * n + j] = v;
            }
        }
        out
    }
}

/// One scale's network input: the normalised pair `2×3×h×w`.
#[derive(Debug, Clone)]
pub struct ScaleInput {
    /// `2·3·h·w` values.
    pub data: Vec<f32>,
    /// Height of this scale.
    pub h: usize,
    /// Width of this scale.
    pub w: usize,
}

/// An image ready for the network: every scale's input and the original size.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Original (H, W).
    pub size: (usize, usize),
    /// One input per configured scale, in order.
    pub scales: Vec<ScaleInput>,
}

/// Rescales (Pillow bicubic, §3.2) and normalises `img` for every scale.
pub fn prepare(img: &RgbImage, scales: &[f64], norm: &Normalizer) -> Result<Prepared> {
    let size = (img.height() as usize, img.width() as usize);
    if size.0 == 0 || size.1 == 0 {
        return Err(InferenceError::Invalid("empty image".into()));
    }
    let inputs = scales
        .iter()
        .map(|&s| {
            let owned;
            let scaled = if s == 1.0 {
                img
            } else {
                // An image so small that a scale rounds a side to 0 (a 1×1 image at 0.5) has
                // no reference behaviour (PIL refuses it); that side keeps one pixel instead,
                // so every image gets a CAM. Other sizes are the reference's exactly.
                let (h, w) = rescale_size(size.0, size.1, s);
                owned = if h == 0 || w == 0 {
                    pil_bicubic_rgb(img, h.max(1), w.max(1))?
                } else {
                    pil_rescale_rgb(img, s)?
                };
                &owned
            };
            Ok(ScaleInput {
                data: norm.flip_pair(scaled),
                h: scaled.height() as usize,
                w: scaled.width() as usize,
            })
        })
        .collect::<Result<_>>()?;
    Ok(Prepared {
        size,
        scales: inputs,
    })
}

/// Runs the CAM network on every scale of `prep` and returns `o_s = cam[0] + hflip(cam[1])`.
pub fn infer(model: &mut Model, prep: &Prepared) -> Result<Vec<ScaleOutput>> {
    prep.scales
        .iter()
        .map(|s| {
            let out = model.run(&s.data, [2, 3, s.h, s.w])?;
            flip_sum(out.first(), model)
        })
        .collect()
}

/// [`infer`] for several images at once: images whose scale inputs all have the same sizes
/// run as one `[2k, 3, h, w]` batch per scale (VOC and COCO have many same-sized images);
/// the others run alone. One result per image, in order.
pub fn infer_batch(model: &mut Model, preps: &[&Prepared]) -> Vec<Result<Vec<ScaleOutput>>> {
    let mut results: Vec<Option<Result<Vec<ScaleOutput>>>> = preps.iter().map(|_| None).collect();
    let shape_of = |p: &Prepared| p.scales.iter().map(|s| (s.h, s.w)).collect::<Vec<_>>();
    for i in 0..preps.len() {
        if results[i].is_some() {
            continue;
        }
        let shape = shape_of(preps[i]);
        let group: Vec<usize> = (i..preps.len())
            .filter(|&j| results[j].is_none() && shape_of(preps[j]) == shape)
            .collect();
        match run_group(model, preps, &group) {
            Ok(per_image) => {
                for (j, r) in group.iter().zip(per_image) {
                    results[*j] = Some(Ok(r));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for j in &group {
                    results[*j] = Some(Err(InferenceError::Invalid(msg.clone())));
                }
            }
        }
    }
    results.into_iter().flatten().collect()
}

/// Runs the images `group` (same scale sizes) together, scale by scale.
fn run_group(
    model: &mut Model,
    preps: &[&Prepared],
    group: &[usize],
) -> Result<Vec<Vec<ScaleOutput>>> {
    if let [one] = group {
        return Ok(vec![infer(model, preps[*one])?]);
    }
    let k = group.len();
    let mut per_image: Vec<Vec<ScaleOutput>> = vec![Vec::new(); k];
    for s in 0..preps[group[0]].scales.len() {
        let (h, w) = (preps[group[0]].scales[s].h, preps[group[0]].scales[s].w);
        let mut data = Vec::with_capacity(k * 6 * h * w);
        for &j in group {
            data.extend_from_slice(&preps[j].scales[s].data);
        }
        let out = model.run(&data, [2 * k, 3, h, w])?;
        let out = out
            .first()
            .ok_or_else(|| bad_output(model, "no output".into()))?;
        let [n, c, oh, ow] = out.shape[..] else {
            return Err(bad_output(
                model,
                format!("output {:?} is not 4-D", out.shape),
            ));
        };
        if n != 2 * k || out.data.len() != n * c * oh * ow {
            return Err(bad_output(
                model,
                format!("output {:?} for {k} pairs", out.shape),
            ));
        }
        let pair = 2 * c * oh * ow;
        for (img, chunk) in per_image.iter_mut().zip(out.data.chunks_exact(pair)) {
            img.push(flip_sum_pair(chunk, c, oh, ow)?);
        }
    }
    Ok(per_image)
}

fn bad_output(model: &Model, m: String) -> InferenceError {
    InferenceError::Invalid(format!("CAM model ({}): {m}", model.info().arch))
}

/// `cam[0] + hflip(cam[1])` of a `[2, C, h, w]` output.
fn flip_sum(out: Option<&crate::runtime::Output>, model: &Model) -> Result<ScaleOutput> {
    let out = out.ok_or_else(|| bad_output(model, "no output".into()))?;
    let [n, c, h, w] = out.shape[..] else {
        return Err(bad_output(
            model,
            format!("output shape {:?} is not 4-D", out.shape),
        ));
    };
    if n != 2 || out.data.len() != 2 * c * h * w {
        return Err(bad_output(
            model,
            format!("output shape {:?} is not a pair", out.shape),
        ));
    }
    flip_sum_pair(&out.data, c, h, w)
}

fn flip_sum_pair(pair: &[f32], c: usize, h: usize, w: usize) -> Result<ScaleOutput> {
    let plane = c * h * w;
    let flipped = hflip_chw(&pair[plane..], c, h, w)?;
    let data = pair[..plane]
        .iter()
        .zip(&flipped)
        .map(|(a, b)| a + b)
        .collect();
    Ok(ScaleOutput {
        data,
        channels: c,
        h,
        w,
    })
}

/// Predicted-label score per class: the spatial mean of `o / 2` (the flip-averaged ReLU CAM)
/// of one scale output (see the module doc for why this stands in for the logit).
pub fn class_scores(o: &ScaleOutput) -> Vec<f32> {
    let plane = (o.h * o.w).max(1);
    o.data
        .chunks_exact(plane)
        .map(|p| (p.iter().map(|&v| v as f64).sum::<f64>() / (2.0 * plane as f64)) as f32)
        .collect()
}

/// The classes kept with predicted labels: every score above `threshold`, else the best one.
pub fn predicted_keys(scores: &[f32], threshold: f32) -> Vec<i64> {
    let keys: Vec<i64> = scores
        .iter()
        .enumerate()
        .filter(|(_, s)| **s > threshold)
        .map(|(i, _)| i as i64)
        .collect();
    if !keys.is_empty() || scores.is_empty() {
        return keys;
    }
    let best = scores
        .iter()
        .enumerate()
        .fold(0, |b, (i, s)| if *s > scores[b] { i } else { b });
    vec![best as i64]
}

/// Fuses the scale outputs (§3.2) and keeps the classes of `labels` (multi-hot over the
/// model's classes) or, with `cfg.predict_labels`, the predicted ones.
pub fn finish(
    outputs: &[ScaleOutput],
    size: (usize, usize),
    labels: Option<&[u8]>,
    cfg: &CamConfig,
) -> Result<CamRecord> {
    let c = outputs.first().map_or(0, |o| o.channels);
    let keys = if cfg.predict_labels {
        let o = outputs
            .get(cfg.score_scale())
            .ok_or_else(|| InferenceError::Invalid("no output for the score scale".into()))?;
        predicted_keys(&class_scores(o), cfg.label_threshold)
    } else {
        let labels = labels.ok_or_else(|| {
            InferenceError::Invalid(
                "the image has no image-level labels (use --predict-labels)".into(),
            )
        })?;
        if labels.len() != c {
            return Err(InferenceError::Invalid(format!(
                "the image has {} label entries but the model has {c} classes",
                labels.len()
            )));
        }
        let label: Vec<f32> = labels.iter().map(|&v| f32::from(v)).collect();
        keys_from_label(&label)
    };
    let fused = fuse_scales(outputs, size.0, size.1)?;
    Ok(CamRecord::from_fused(&fused, &keys)?)
}

/// The whole of §3.1–3.2 for one image on one session (tests and simple callers; the batch
/// tool splits the steps over the pipeline).
pub fn cam_for_image(
    model: &mut Model,
    img: &RgbImage,
    labels: Option<&[u8]>,
    cfg: &CamConfig,
) -> Result<CamRecord> {
    let norm = Normalizer::of(model.info())?;
    let prep = prepare(img, &cfg.scales, &norm)?;
    let outputs = infer(model, &prep)?;
    finish(&outputs, prep.size, labels, cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flip_pair_matches_core_normalisation() {
        let img = RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8 * 40, y as u8 * 70, 200]));
        let norm = Normalizer::new(
            ssc_core::normalize::IMAGENET_MEAN,
            ssc_core::normalize::IMAGENET_STD,
        )
        .unwrap();
        assert_eq!(
            norm.flip_pair(&img),
            ssc_core::normalize::normalize_flip_pair(&img)
        );
    }

    #[test]
    fn predicted_keys_threshold_and_fallback() {
        assert_eq!(predicted_keys(&[0.1, 0.9, 0.6], 0.5), vec![1, 2]);
        assert_eq!(predicted_keys(&[0.1, 0.3, 0.2], 0.5), vec![1]);
        let o = ScaleOutput {
            data: vec![2.0, 0.0, 0.0, 0.0, 4.0, 4.0, 4.0, 4.0],
            channels: 2,
            h: 2,
            w: 2,
        };
        assert_eq!(class_scores(&o), vec![0.25, 2.0]);
    }

    #[test]
    fn label_length_must_match_the_model() {
        let o = ScaleOutput {
            data: vec![1.0; 8],
            channels: 2,
            h: 2,
            w: 2,
        };
        let cfg = CamConfig::default();
        let err = finish(std::slice::from_ref(&o), (8, 8), Some(&[1, 0, 0]), &cfg).unwrap_err();
        assert!(err.to_string().contains("3 label entries"), "{err}");
        let rec = finish(&[o], (8, 8), Some(&[0, 1]), &cfg).unwrap();
        assert_eq!(rec.keys, vec![1]);
        assert_eq!(rec.high_res.len(), 64);
    }
}
