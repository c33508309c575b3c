//! Semantic segmentation of one image with an exported DeepLab model (§6.5 test-time
//! inference, run through ONNX Runtime per §10.3): the image is resized to the base input
//! size (bilinear, `align_corners=False`) and normalised with the model's mean/std; the
//! network's `pre_logits` at the base size and at every extra scale (the base input resized
//! by the factor) are resized to the base `pre_logits` size and fused by a pixel-wise
//! maximum; the fused map is resized to the original image size, soft-maxed and arg-maxed.
//!
//! The last resize runs one output row at a time (horizontal pass once, vertical pass per
//! row), so memory stays `K × h × W` rather than `K × H × W` even for large images.
//!
//! Horizontal flipping is off by default, as in the reference (§6.5 "no flipping"); with
//! [`DeepLabSegmenter::with_flip`] each scale's `pre_logits` is the mean of the map of the
//! input and the mirrored map of the mirrored input, before the maximum over scales.
//! [`DeepLabSegmenter::probabilities`] gives the full `K × H × W` soft-max for callers that
//! need per-pixel scores or a dense CRF (§6.6).

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
/// `ssc-predict` and `ssc-serve` both segment with it.
///
/// ```no_run
/// use ssc_inference::runtime::SessionConfig;
/// use ssc_inference::segment::{DeepLabSegmenter, SegmentConfig};
///
/// # fn main() -> ssc_inference::Result<()> {
/// let mut seg = DeepLabSegmenter::open(
///     "deeplab.onnx".as_ref(),
///     &SessionConfig::default(),
///     SegmentConfig::default(),
/// )?;
/// let image = ssc_core::imageio::read_rgb("photo.jpg")?;
/// let p = seg.predict(&image)?;
/// let names = seg.class_names();
/// let found: Vec<&str> = (0..names.len())
///     .filter(|&c| p.labels.contains(&(c as u8)))
///     .map(|c| names[c].as_str())
///     .collect();
/// println!("{}×{}: {found:?}", p.width, p.height);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct DeepLabSegmenter {
    model: Model,
    cfg: SegmentConfig,
    flip: bool,
}

/// Per-pixel soft-max probabilities at the image size.
#[derive(Debug, Clone, PartialEq)]
pub struct Probabilities {
    /// Number of classes.
    pub classes: usize,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Class-major `K × H × W` values, summing to 1 over classes at each pixel.
    pub data: Vec<f32>,
}

impl Probabilities {
    /// Arg-max labels (first maximum wins) and per-class mean probability over the pixels
    /// labelled with the class, as [`DeepLabSegmenter::predict`] reports them. `data` may
    /// be replaced by other class-major marginals (a CRF's) of the same shape first.
    pub fn prediction(&self) -> Prediction {
        let (k, n) = (self.classes, self.width as usize * self.height as usize);
        let mut labels = Vec::with_capacity(n);
        let mut prob_sum = vec![0f64; k];
        let mut count = vec![0u64; k];
        for p in 0..n {
            let mut best = 0;
            for c in 1..k {
                if self.data[c * n + p] > self.data[best * n + p] {
                    best = c;
                }
            }
            prob_sum[best] += f64::from(self.data[best * n + p]);
            count[best] += 1;
            labels.push(best as u8);
        }
        Prediction {
            width: self.width,
            height: self.height,
            labels,
            scores: mean_scores(&prob_sum, &count),
        }
    }
}

fn mean_scores(prob_sum: &[f64], count: &[u64]) -> Vec<f32> {
    prob_sum
        .iter()
        .zip(count)
        .map(|(&p, &n)| if n == 0 { 0.0 } else { (p / n as f64) as f32 })
        .collect()
}

/// Soft-max over the classes of class-major `K × N` values, in place.
fn softmax_planes(data: &mut [f32], k: usize) {
    let n = data.len() / k.max(1);
    let mut z = vec![0f32; k];
    for p in 0..n {
        let mut max = f32::NEG_INFINITY;
        for (c, zc) in z.iter_mut().enumerate() {
            *zc = data[c * n + p];
            max = max.max(*zc);
        }
        let denom: f32 = z.iter().map(|&v| (v - max).exp()).sum();
        for (c, &zc) in z.iter().enumerate() {
            data[c * n + p] = (zc - max).exp() / denom;
        }
    }
}

/// Mirrors each row of a `c × h × w` planar array.
fn hflip(data: &mut [f32], w: usize) {
    data.chunks_exact_mut(w).for_each(<[f32]>::reverse);
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
        Ok(DeepLabSegmenter {
            model,
            cfg,
            flip: false,
        })
    }

    /// Also runs the mirrored input at every scale and averages (see the module docs).
    pub fn with_flip(mut self, flip: bool) -> Self {
        self.flip = flip;
        self
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

    /// [`Self::pre_logits`], averaged with the mirrored map of the mirrored input when
    /// flipping is on.
    fn pre_logits_tta(
        &mut self,
        input: &[f32],
        h: usize,
        w: usize,
    ) -> Result<(usize, usize, usize, Vec<f32>)> {
        let (k, ph, pw, mut out) = self.pre_logits(input, h, w)?;
        if self.flip {
            let mut mirrored = input.to_vec();
            hflip(&mut mirrored, w);
            let (_, _, _, mut back) = self.pre_logits(&mirrored, h, w)?;
            hflip(&mut back, pw);
            out.iter_mut()
                .zip(&back)
                .for_each(|(a, &b)| *a = 0.5 * (*a + b));
        }
        Ok((k, ph, pw, out))
    }

    /// Segments `image` (§6.5; see the module docs).
    pub fn predict(&mut self, image: &RgbImage) -> Result<Prediction> {
        let (k, ph, pw, fused) = self.fused_logits(image)?;
        let (iw, ih) = (image.width() as usize, image.height() as usize);
        Ok(upsample_argmax(&fused, k, ph, pw, ih, iw)?)
    }

    /// The soft-max probabilities of `image` at its own size (`K × H × W`; §6.5 step 4
    /// before the arg-max). Needs `K × H × W` floats, unlike [`Self::predict`].
    pub fn probabilities(&mut self, image: &RgbImage) -> Result<Probabilities> {
        let (k, ph, pw, fused) = self.fused_logits(image)?;
        let (iw, ih) = (image.width() as usize, image.height() as usize);
        let mut data = bilinear_chw(&fused, k, ph, pw, ih, iw)?;
        softmax_planes(&mut data, k);
        Ok(Probabilities {
            classes: k,
            width: iw as u32,
            height: ih as u32,
            data,
        })
    }

    /// The multi-scale fused `pre_logits` of `image` at the base map size: `(K, h, w, values)`.
    pub fn fused_logits(&mut self, image: &RgbImage) -> Result<(usize, usize, usize, Vec<f32>)> {
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
        let (k, ph, pw, mut fused) = self.pre_logits_tta(&base, s, s)?;
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
            let (_, sh, sw, out) = self.pre_logits_tta(&scaled, side, side)?;
            let back = bilinear_chw(&out, k, sh, sw, ph, pw)?;
            fused
                .iter_mut()
                .zip(&back)
                .for_each(|(a, &b)| *a = a.max(b));
        }
        Ok((k, ph, pw, fused))
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
    Ok(Prediction {
        width: out_w as u32,
        height: out_h as u32,
        labels,
        scores: mean_scores(&prob_sum, &count),
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

    #[test]
    fn probabilities_give_the_same_prediction_as_the_row_wise_path() {
        let logits = vec![0.0, 1.0, 2.0, 3.0, -1.0, 0.5, 1.5, 0.2, 0.1, 2.5, 0.0, 1.0];
        let p = upsample_argmax(&logits, 2, 2, 3, 5, 7).unwrap();
        let mut data = bilinear_chw(&logits, 2, 2, 3, 5, 7).unwrap();
        softmax_planes(&mut data, 2);
        for px in 0..35 {
            assert!((data[px] + data[35 + px] - 1.0).abs() < 1e-6);
        }
        let probs = Probabilities {
            classes: 2,
            width: 7,
            height: 5,
            data,
        };
        let q = probs.prediction();
        assert_eq!(q.labels, p.labels);
        for (a, b) in q.scores.iter().zip(&p.scores) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn hflip_mirrors_rows() {
        let mut v = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        hflip(&mut v, 3);
        assert_eq!(v, [3.0, 2.0, 1.0, 6.0, 5.0, 4.0]);
    }
}
