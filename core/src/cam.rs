//! Framework-free CAM helpers (§3.2–3.4): fusing per-scale network outputs into the strided
//! (stride 4) and high-resolution CAMs, class selection and normalisation, the CAM file, and
//! seed evaluation with a threshold sweep.
//!
//! The network part (running the CAM net on each scale and its flip, §3.1) lives with the
//! frameworks (candle for training, ort for inference); everything after the per-scale
//! outputs `o_s` is here so both sides share it.

use std::collections::HashMap;
use std::path::Path;

use crate::metrics::Confusion;
use crate::resize::bilinear_chw;
use crate::tensors::{self, Array, TensorFile};
use crate::{CoreError, Result};

/// The scales of the reference multi-scale CAM (§3.2).
pub const REFERENCE_SCALES: [f64; 4] = [1.0, 0.5, 1.5, 2.0];

/// Epsilon added to each channel's maximum when normalising (§3.2).
pub const NORM_EPS: f32 = 1e-5;

/// One scale's network output `o_s = cam[0] + hflip(cam[1])`, `C×h×w` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleOutput {
    /// The values, `channels·h·w` long.
    pub data: Vec<f32>,
    /// Channels C (all classes).
    pub channels: usize,
    /// Height of the output grid.
    pub h: usize,
    /// Width of the output grid.
    pub w: usize,
}

/// Multi-scale sums over all classes, before class selection.
#[derive(Debug, Clone, PartialEq)]
pub struct FusedCam {
    /// Channels C.
    pub channels: usize,
    /// Image size (H, W).
    pub size: (usize, usize),
    /// Strided size `(⌈H/4⌉, ⌈W/4⌉)`.
    pub strided_size: (usize, usize),
    /// `Σ_s bilinear(o_s → strided size)`, `C×⌈H/4⌉×⌈W/4⌉`.
    pub strided: Vec<f32>,
    /// `Σ_s bilinear(o_s → 16·⌈H/16⌉×16·⌈W/16⌉)` cropped to `C×H×W`.
    pub high_res: Vec<f32>,
}

/// Sums the per-scale outputs for an `h×w` image (§3.2). The strided map is resized directly;
/// the high-res one is resized to the 16-multiple and cropped top-left, as the reference does.
pub fn fuse_scales(outputs: &[ScaleOutput], h: usize, w: usize) -> Result<FusedCam> {
    let first = outputs
        .first()
        .ok_or_else(|| CoreError::Invalid("fuse_scales: no scale outputs".into()))?;
    let c = first.channels;
    if h == 0 || w == 0 {
        return Err(CoreError::Invalid(format!(
            "fuse_scales: image size {h}×{w}"
        )));
    }
    let (sh, sw) = (h.div_ceil(4), w.div_ceil(4));
    let (ph, pw) = (16 * h.div_ceil(16), 16 * w.div_ceil(16));
    let mut strided = vec![0.0f32; c * sh * sw];
    let mut padded = vec![0.0f32; c * ph * pw];
    for o in outputs {
        if o.channels != c {
            return Err(CoreError::Invalid(format!(
                "fuse_scales: scale outputs have {} and {} channels",
                c, o.channels
            )));
        }
        let s = bilinear_chw(&o.data, c, o.h, o.w, sh, sw)?;
        strided.iter_mut().zip(&s).for_each(|(a, b)| *a += b);
        let p = bilinear_chw(&o.data, c, o.h, o.w, ph, pw)?;
        padded.iter_mut().zip(&p).for_each(|(a, b)| *a += b);
    }
    let mut high_res = Vec::with_capacity(c * h * w);
    for plane in padded.chunks_exact(ph * pw) {
        for row in plane.chunks_exact(pw).take(h) {
            high_res.extend_from_slice(&row[..w]);
        }
    }
    Ok(FusedCam {
        channels: c,
        size: (h, w),
        strided_size: (sh, sw),
        strided,
        high_res,
    })
}

/// `keys`: 0-based indices of the classes whose label is > 0.5, ascending (§3.2).
pub fn keys_from_label(label: &[f32]) -> Vec<i64> {
    label
        .iter()
        .enumerate()
        .filter(|(_, v)| **v > 0.5)
        .map(|(i, _)| i as i64)
        .collect()
}

/// The CAM of one image as stored on disk (§3.3).
#[derive(Debug, Clone, PartialEq)]
pub struct CamRecord {
    /// 0-based class indices of the kept channels (`keys + 1` = VOC ids).
    pub keys: Vec<i64>,
    /// Image size (H, W).
    pub size: (usize, usize),
    /// Strided CAM, `K×⌈H/4⌉×⌈W/4⌉`, each channel max-normalised.
    pub cam: Vec<f32>,
    /// High-res CAM, `K×H×W`, each channel max-normalised.
    pub high_res: Vec<f32>,
}

fn select_normalise(src: &[f32], plane: usize, keys: &[i64]) -> Vec<f32> {
    let mut out = Vec::with_capacity(keys.len() * plane);
    for &k in keys {
        let p = &src[k as usize * plane..(k as usize + 1) * plane];
        let max = p.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let d = max + NORM_EPS;
        out.extend(p.iter().map(|v| v / d));
    }
    out
}

impl CamRecord {
    /// Keeps the channels of `keys` (each `< channels`) and divides each by its max + 1e-5.
    pub fn from_fused(fused: &FusedCam, keys: &[i64]) -> Result<Self> {
        if let Some(k) = keys
            .iter()
            .find(|&&k| k < 0 || k as usize >= fused.channels)
        {
            return Err(CoreError::Invalid(format!(
                "CAM key {k} outside 0..{}",
                fused.channels
            )));
        }
        let (h, w) = fused.size;
        let (sh, sw) = fused.strided_size;
        Ok(CamRecord {
            keys: keys.to_vec(),
            size: fused.size,
            cam: select_normalise(&fused.strided, sh * sw, keys),
            high_res: select_normalise(&fused.high_res, h * w, keys),
        })
    }

    /// Strided size `(⌈H/4⌉, ⌈W/4⌉)`.
    pub fn strided_size(&self) -> (usize, usize) {
        (self.size.0.div_ceil(4), self.size.1.div_ceil(4))
    }

    /// Writes the record atomically as safetensors (`keys` i64, `cam`, `high_res` f32;
    /// metadata `id`, `height`, `width`).
    pub fn write(&self, path: &Path, id: &str) -> Result<()> {
        let k = self.keys.len();
        let (h, w) = self.size;
        let (sh, sw) = self.strided_size();
        let meta = HashMap::from([
            ("id".to_string(), id.to_string()),
            ("height".to_string(), h.to_string()),
            ("width".to_string(), w.to_string()),
        ]);
        tensors::write(
            path,
            &[
                ("keys", Array::I64(self.keys.clone(), vec![k])),
                ("cam", Array::F32(self.cam.clone(), vec![k, sh, sw])),
                ("high_res", Array::F32(self.high_res.clone(), vec![k, h, w])),
            ],
            Some(meta),
        )
    }

    /// Reads a record written by [`CamRecord::write`], checking that the shapes agree.
    pub fn read(path: &Path) -> Result<Self> {
        let f = TensorFile::open(path)?;
        let (keys, _) = f.i64("keys")?;
        let (cam, cs) = f.f32("cam")?;
        let (high_res, hs) = f.f32("high_res")?;
        let k = keys.len();
        if hs.len() != 3 || cs.len() != 3 || hs[0] != k || cs[0] != k {
            return Err(CoreError::format(
                path,
                format!("CAM shapes disagree: keys [{k}], cam {cs:?}, high_res {hs:?}"),
            ));
        }
        let rec = CamRecord {
            keys,
            size: (hs[1], hs[2]),
            cam,
            high_res,
        };
        if rec.strided_size() != (cs[1], cs[2]) {
            return Err(CoreError::format(
                path,
                format!("strided CAM {cs:?} does not fit high_res {hs:?}"),
            ));
        }
        Ok(rec)
    }

    /// Seed prediction (§3.4): argmax over `[thres; high_res]`, index 0 → class 0, index i →
    /// `keys[i−1] + 1`. Ties go to the lower index, as numpy's argmax does.
    pub fn seed(&self, thres: f32) -> Vec<u8> {
        let (h, w) = self.size;
        let n = h * w;
        let mut best = vec![thres; n];
        let mut label = vec![0u8; n];
        for (i, &k) in self.keys.iter().enumerate() {
            let plane = &self.high_res[i * n..(i + 1) * n];
            for p in 0..n {
                if plane[p] > best[p] {
                    best[p] = plane[p];
                    label[p] = (k + 1) as u8;
                }
            }
        }
        label
    }
}

/// Seed evaluation over several background thresholds at once (§3.4 plus the sweep).
#[derive(Debug, Clone)]
pub struct Sweep {
    thresholds: Vec<f32>,
    confusions: Vec<Confusion>,
}

/// One threshold's result.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepPoint {
    /// Background threshold.
    pub threshold: f32,
    /// Mean IoU (nanmean over classes, §7).
    pub miou: f64,
}

impl Sweep {
    /// A sweep over `thresholds` with `num_classes` classes including background.
    pub fn new(thresholds: Vec<f32>, num_classes: usize) -> Self {
        let confusions = vec![Confusion::new(num_classes); thresholds.len()];
        Sweep {
            thresholds,
            confusions,
        }
    }

    /// `from, from+step, …, ≤ to` (e.g. 0.05…0.60 step 0.05), computed by index so rounding
    /// never adds or drops the last one.
    pub fn range(from: f32, to: f32, step: f32) -> Vec<f32> {
        let n = ((to - from) / step + 1e-4).floor().max(0.0) as usize + 1;
        (0..n).map(|i| from + i as f32 * step).collect()
    }

    /// Adds one image: its CAM and its ground truth (`H×W` class ids, 255 ignored).
    pub fn add(&mut self, cam: &CamRecord, gt: &[u8]) -> Result<()> {
        let (h, w) = cam.size;
        if gt.len() != h * w {
            return Err(CoreError::Invalid(format!(
                "ground truth has {} pixels, CAM is {h}×{w}",
                gt.len()
            )));
        }
        for (t, conf) in self.thresholds.iter().zip(&mut self.confusions) {
            conf.add(gt, &cam.seed(*t)).map_err(|e| {
                CoreError::Invalid(format!(
                    "seed label {} at pixel {} exceeds the class count",
                    e.value, e.index
                ))
            })?;
        }
        Ok(())
    }

    /// Merges another sweep over the same thresholds (parallel evaluation).
    pub fn merge(&mut self, other: &Sweep) {
        for (a, b) in self.confusions.iter_mut().zip(&other.confusions) {
            a.merge(b);
        }
    }

    /// Confusion of each threshold.
    pub fn confusions(&self) -> &[Confusion] {
        &self.confusions
    }

    /// mIoU of each threshold.
    pub fn points(&self) -> Vec<SweepPoint> {
        self.thresholds
            .iter()
            .zip(&self.confusions)
            .map(|(t, c)| SweepPoint {
                threshold: *t,
                miou: c.miou(),
            })
            .collect()
    }

    /// The threshold with the highest mIoU (the first one on ties).
    pub fn best(&self) -> Option<SweepPoint> {
        self.points()
            .into_iter()
            .fold(None, |best: Option<SweepPoint>, p| match best {
                Some(b) if b.miou >= p.miou => Some(b),
                _ => Some(p),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> CamRecord {
        CamRecord {
            keys: vec![1, 3],
            size: (1, 4),
            cam: vec![0.0; 2],
            high_res: vec![0.9, 0.1, 0.3, 0.0, 0.2, 0.5, 0.25, 0.0],
        }
    }

    #[test]
    fn seed_maps_keys_and_threshold() {
        let r = record();
        assert_eq!(r.seed(0.2), vec![2, 4, 2, 0]);
        assert_eq!(r.seed(0.6), vec![2, 0, 0, 0]);
    }

    #[test]
    fn sweep_picks_best_threshold() {
        let r = record();
        let mut s = Sweep::new(Sweep::range(0.05, 0.60, 0.05), 5);
        assert_eq!(s.points().len(), 12);
        s.add(&r, &[2, 4, 0, 0]).unwrap();
        let best = s.best().unwrap();
        // perfect for 0.3 ≤ t < 0.5 ; first such threshold in the list
        assert!((best.threshold - 0.30).abs() < 1e-6, "{best:?}");
        assert!((best.miou - 1.0).abs() < 1e-12);
        assert!(s.add(&r, &[0, 0]).is_err());
    }

    #[test]
    fn file_round_trip_and_shape_check() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.safetensors");
        let mut r = record();
        r.cam = vec![0.5, 0.25];
        r.write(&p, "a").unwrap();
        assert_eq!(CamRecord::read(&p).unwrap(), r);
        let bad = dir.path().join("b.safetensors");
        tensors::write(
            &bad,
            &[
                ("keys", Array::I64(vec![1], vec![1])),
                ("cam", Array::F32(vec![0.0; 4], vec![1, 2, 2])),
                ("high_res", Array::F32(vec![0.0; 4], vec![1, 1, 4])),
            ],
            None,
        )
        .unwrap();
        let e = CamRecord::read(&bad).unwrap_err().to_string();
        assert!(e.contains("b.safetensors"), "{e}");
    }

    #[test]
    fn fuse_rejects_bad_input() {
        assert!(fuse_scales(&[], 4, 4).is_err());
        let o = ScaleOutput {
            data: vec![1.0; 3],
            channels: 1,
            h: 2,
            w: 2,
        };
        assert!(fuse_scales(&[o], 8, 8).is_err());
    }
}
