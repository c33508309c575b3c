//! Semantic segmentation of one image with an exported DeepLab model (§6.5 test-time
//! inference, run through ONNX Runtime per §10.3): the image is resized to the base input
//! size (bilinear, `align_corners=False`) and normalised with the model's mean/std; the
//! network's `pre_logits` at the base size and at every extra scale (the base input resized
//! by the factor) are resized to the base `pre_logits` size and fused by a pixel-wise
//! maximum; the fused map is resized to the original image size, soft-maxed and arg-maxed.
//!
//! The last resize runs one output row at a time (horizontal pass once, vertical pass per
//! row), so memory stays `K × h × W` rather than `K × H × W` even for large images.

use image::RgbImage;
use ssc_core::resize::bilinear_chw;

use crate::runtime::{Model, SessionConfig};
use crate::{InferenceError, Result};

/// Multi-scale settings (§6.5).
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentConfig {
    /// Square base input side (512 in the reference).
    pub input_size: usize,
    /// Extra scale factors of the base input whose maps join the maximum (the reference:
    /// 0.5, 0.75, 1.0, 1.25, 1.5); empty = single scale.
    pub scales: Vec<f64>,
}

impl Default for SegmentConfig {
    fn default() -> Self {
        SegmentConfig {
            input_size: 512,
            scales: vec![0.5, 0.75, 1.0, 1.25, 1.5],
        }
    }
}

/// A prediction: label map of the image's size and per-class confidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Row-major arg-max class per pixel.
    pub labels: Vec<u8>,
    /// Per class: mean soft-max probability over the pixels labelled with it (0 if none).
    pub scores: Vec<f32>,
}

/// An exported DeepLab model ready to segment images (one per worker: runs need `&mut`).
#[derive(Debug)]
pub struct DeepLabSegmenter {
    model: Model,
    cfg: SegmentConfig,
}

impl DeepLabSegmenter {
    /// Opens a model file exported by ssc (`ssc.arch` must be `deeplab`).
    pub fn open(
        path: &std::path::Path,
        session: &SessionConfig,
        cfg: SegmentConfig,
    ) -> Result<Self> {
        Self::new(Model::open(path, session)?, cfg)
    }

    /// Wraps an opened model.
    pub fn new(model: Model, cfg: SegmentConfig) -> Result<Self> {
        let info = model.info();
        if info.arch != "deeplab" {
            return Err(InferenceError::Invalid(format!(
                "model is a `{}` network; ssc-serve needs a `deeplab` export",
                info.arch
            )));
        }
        if !model.output_names().iter().any(|n| n == "pre_logits") {
            return Err(InferenceError::Invalid(
                "model has no `pre_logits` output".into(),
            ));
        }
        if cfg.input_size < 8 || cfg.scales.iter().any(|&s| !(s > 0.0 && s <= 4.0)) {
            return Err(InferenceError::Invalid(format!(
                "bad multi-scale settings {cfg:?} (input size ≥ 8, scales in (0, 4])"
            )));
        }
        if info.class_names.len() > 255 {
            return Err(InferenceError::Invalid(format!(
                "{} classes do not fit a label map",
                info.class_names.len()
            )));
        }
        Ok(DeepLabSegmenter { model, cfg })
    }

    /// Class names from the model's metadata (background first).
    pub fn class_names(&self) -> &[String] {
        &self.model.info().class_names
    }

    /// `pre_logits` of one normalised `3 × s × s'` input: `(K, h, w, values)`.
    fn pre_logits(
        &mut self,
        input: &[f32],
        h: usize,
        w: usize,
    ) -> Result<(usize, usize, usize, Vec<f32>)> {
        let outs = self.model.run(input, [1, 3, h, w])?;
        let o = outs
            .into_iter()
            .find(|o| o.name == "pre_logits")
            .ok_or_else(|| InferenceError::Invalid("no `pre_logits` output".into()))?;
        match o.shape.as_slice() {
            &[1, k, ph, pw] => Ok((k, ph, pw, o.data)),
            s => Err(InferenceError::Invalid(format!(
                "`pre_logits` has shape {s:?}, expected [1, K, h, w]"
            ))),
        }
    }

    /// Segments `image` (§6.5; see the module docs).
    pub fn predict(&mut self, image: &RgbImage) -> Result<Prediction> {
        let (iw, ih) = (image.width() as usize, image.height() as usize);
        if iw == 0 || ih == 0 {
            return Err(InferenceError::Invalid("empty image".into()));
        }
        let info = self.model.info().clone();
        // planar RGB in [0, 1]
        let mut chw = vec![0f32; 3 * ih * iw];
        for (i, p) in image.pixels().enumerate() {
            for c in 0..3 {
                chw[c * ih * iw + i] = f32::from(p[c]) / 255.0;
            }
        }
        let s = self.cfg.input_size;
        let mut base = bilinear_chw(&chw, 3, ih, iw, s, s)?;
        drop(chw);
        for (c, plane) in base.chunks_exact_mut(s * s).enumerate() {
            let (m, sd) = (info.mean[c] as f32, info.std[c] as f32);
            plane.iter_mut().for_each(|v| *v = (*v - m) / sd);
        }
        let (k, ph, pw, mut fused) = self.pre_logits(&base, s, s)?;
        if k != info.class_names.len() {
            return Err(InferenceError::Invalid(format!(
                "model outputs {k} classes but its metadata names {}",
                info.class_names.len()
            )));
        }
        for &f in &self.cfg.scales.clone() {
            // PyTorch's interpolate(scale_factor) floors the output size
            let side = ((s as f64 * f).floor() as usize).max(1);
            let scaled = bilinear_chw(&base, 3, s, s, side, side)?;
            let (_, sh, sw, out) = self.pre_logits(&scaled, side, side)?;
            let back = bilinear_chw(&out, k, sh, sw, ph, pw)?;
            fused
                .iter_mut()
                .zip(&back)
                .for_each(|(a, &b)| *a = a.max(b));
        }
        Ok(upsample_argmax(&fused, k, ph, pw, ih, iw)?)
    }
}

/// Bilinear (`align_corners=False`) resize of `k × h × w` logits to `H × W`, soft-max and
/// arg-max per pixel, one output row at a time.
fn upsample_argmax(
    logits: &[f32],
    k: usize,
    h: usize,
    w: usize,
    out_h: usize,
    out_w: usize,
) -> ssc_core::Result<Prediction> {
    // horizontal pass (the vertical size unchanged is an exact identity)
    let wide = bilinear_chw(logits, k, h, w, h, out_w)?;
    let mut labels = Vec::with_capacity(out_h * out_w);
    let mut prob_sum = vec![0f64; k];
    let mut count = vec![0u64; k];
    let mut z = vec![0f32; k];
    let scale = h as f64 / out_h as f64;
    for y in 0..out_h {
        // same source index rule as ssc_core::resize (PyTorch area_pixel_compute_source_index)
        let sy = ((y as f64 + 0.5) * scale - 0.5).max(0.0);
        let y0 = (sy as usize).min(h - 1);
        let y1 = (y0 + 1).min(h - 1);
        let w1 = sy - y0 as f64;
        for x in 0..out_w {
            for (c, zc) in z.iter_mut().enumerate() {
                let a = wide[(c * h + y0) * out_w + x] as f64;
                let b = wide[(c * h + y1) * out_w + x] as f64;
                *zc = ((1.0 - w1) * a + w1 * b) as f32;
            }
            let (best, &max) = z
                .iter()
                .enumerate()
                .fold(
                    (0, &f32::NEG_INFINITY),
                    |m, (c, v)| if *v > *m.1 { (c, v) } else { m },
                );
            let denom: f64 = z.iter().map(|&v| ((v - max) as f64).exp()).sum();
            prob_sum[best] += 1.0 / denom;
            count[best] += 1;
            labels.push(best as u8);
        }
    }
    let scores = prob_sum
        .iter()
        .zip(&count)
        .map(|(&p, &n)| if n == 0 { 0.0 } else { (p / n as f64) as f32 })
        .collect();
    Ok(Prediction {
        width: out_w as u32,
        height: out_h as u32,
        labels,
        scores,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsample_matches_full_resize_then_argmax() {
        // 2 classes on a 2x3 map, upsampled to 5x7 against bilinear_chw + per-pixel argmax
        let logits = vec![0.0, 1.0, 2.0, 3.0, -1.0, 0.5, 1.5, 0.2, 0.1, 2.5, 0.0, 1.0];
        let p = upsample_argmax(&logits, 2, 2, 3, 5, 7).unwrap();
        let full = bilinear_chw(&logits, 2, 2, 3, 5, 7).unwrap();
        let want: Vec<u8> = (0..35).map(|i| u8::from(full[35 + i] > full[i])).collect();
        assert_eq!(p.labels, want);
        assert_eq!((p.width, p.height), (7, 5));
        for (c, &s) in p.scores.iter().enumerate() {
            if p.labels.contains(&(c as u8)) {
                assert!(
                    (0.5..=1.0).contains(&s),
                    "winning soft-max ≥ 1/2 with 2 classes: {s}"
                );
            } else {
                assert_eq!(s, 0.0);
            }
        }
    }
}
