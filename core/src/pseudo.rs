//! Pseudo-labels from the random walk (§4.7 steps 5–8) and the confidence masks of stage 2
//! (§4.8, BECO `gen_mask.py`).
//!
//! `rw` (K×h×w on the stride-4 grid) is upsampled ×4 (bilinear, align_corners=False), cropped
//! to the image, divided by its global maximum and stacked under a constant background score;
//! the argmax, mapped to dataset ids, is the pseudo-label. The margin between the two best
//! scores then selects the more reliable half of each label's pixels.

use crate::{CoreError, Result};

/// Background score of the stacked scores (`sem_seg_bg_thres`, §4.7 step 7).
pub const SEM_SEG_BG_THRES: f32 = 0.25;

/// Fraction of each label's pixels marked reliable (`thd`, §4.8).
pub const CONFIDENCE_FRACTION: f32 = 0.5;

/// Stride of the walk's grid relative to the image.
pub const GRID_STRIDE: usize = 4;

/// The pseudo-label of one image and the scores it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct PseudoLabel {
    /// Image height `H`.
    pub height: usize,
    /// Image width `W`.
    pub width: usize,
    /// `(K+1)×H×W`: channel 0 the constant background score, channel `i` the normalised walk
    /// score of class `keys[i−1]`.
    pub score: Vec<f32>,
    /// `H×W` dataset ids: 0 for background, `keys[i−1] + 1` for channel `i`.
    pub pred: Vec<u8>,
    /// Foreground class indices (0-based, without background) of channels `1..=K`.
    pub keys: Vec<usize>,
}

/// Bilinear (align_corners=False) upsampling of `k×h×w` maps by `scale`, keeping only the
/// top-left `height×width` (the crop of §4.7 step 5). Computed in f64, returned as f32.
pub fn upsample_crop(
    maps: &[f32],
    k: usize,
    h: usize,
    w: usize,
    scale: usize,
    height: usize,
    width: usize,
) -> Result<Vec<f32>> {
    if maps.len() != k * h * w || h == 0 || w == 0 {
        return Err(CoreError::Invalid(format!(
            "score maps have {} values, expected a non-empty {k}×{h}×{w}",
            maps.len()
        )));
    }
    if scale == 0 || height > h * scale || width > w * scale {
        return Err(CoreError::Invalid(format!(
            "image {height}×{width} is larger than the {h}×{w} grid upsampled ×{scale}"
        )));
    }
    let ry = taps(h, h * scale, height);
    let rx = taps(w, w * scale, width);
    let mut out = Vec::with_capacity(k * height * width);
    let mut rows = vec![0.0f64; width * h];
    for plane in maps.chunks_exact(h * w) {
        // Horizontal pass into `rows` (h × width), then the vertical pass.
        for (src, dst) in plane.chunks_exact(w).zip(rows.chunks_exact_mut(width)) {
            for (d, &(i0, i1, l)) in dst.iter_mut().zip(&rx) {
                *d = f64::from(src[i0]) * (1.0 - l) + f64::from(src[i1]) * l;
            }
        }
        for &(i0, i1, l) in &ry {
            let (a, b) = (&rows[i0 * width..][..width], &rows[i1 * width..][..width]);
            out.extend(
                a.iter()
                    .zip(b)
                    .map(|(&a, &b)| (a * (1.0 - l) + b * l) as f32),
            );
        }
    }
    Ok(out)
}

/// Interpolation taps `(i0, i1, λ)` of the first `keep` outputs when resizing `n_in` to
/// `n_out` samples, PyTorch's align_corners=False rule (§0.2).
fn taps(n_in: usize, n_out: usize, keep: usize) -> Vec<(usize, usize, f64)> {
    let ratio = n_in as f64 / n_out as f64;
    (0..keep)
        .map(|o| {
            let x = ((o as f64 + 0.5) * ratio - 0.5).max(0.0);
            let i0 = (x.floor() as usize).min(n_in - 1);
            let i1 = (i0 + 1).min(n_in - 1);
            (i0, i1, x - i0 as f64)
        })
        .collect()
}

/// §4.7 steps 5–7: from the walk's output `rw` (`k×h×w`) and the classes' `keys`, the score
/// stack and pseudo-label of an `height×width` image.
///
/// Ties in the argmax go to the lowest channel (background first), as `torch.argmax` does.
/// When no score is positive (nothing propagated) the maps are left unnormalised instead of
/// dividing by zero, so the whole image becomes background.
pub fn pseudo_label(
    rw: &[f32],
    h: usize,
    w: usize,
    height: usize,
    width: usize,
    keys: &[usize],
    bg_thres: f32,
) -> Result<PseudoLabel> {
    let k = keys.len();
    if let Some(&bad) = keys.iter().find(|&&key| key >= 254) {
        return Err(CoreError::Invalid(format!(
            "class key {bad} does not fit an 8-bit label map (keys must be < 254)"
        )));
    }
    if rw.iter().any(|v| !v.is_finite()) {
        return Err(CoreError::Invalid(
            "random-walk scores are not finite".into(),
        ));
    }
    let up = upsample_crop(rw, k, h, w, GRID_STRIDE, height, width)?;
    let max = up.iter().copied().fold(0.0f32, f32::max);
    let n = height * width;
    let mut score = Vec::with_capacity((k + 1) * n);
    score.resize(n, bg_thres);
    if max > 0.0 {
        score.extend(up.iter().map(|&v| v / max));
    } else {
        score.extend_from_slice(&up);
    }
    let ids: Vec<u8> = std::iter::once(0)
        .chain(keys.iter().map(|&key| key as u8 + 1))
        .collect();
    let pred = (0..n)
        .map(|p| {
            let mut best = 0;
            for c in 1..=k {
                if score[c * n + p] > score[best * n + p] {
                    best = c;
                }
            }
            ids[best]
        })
        .collect();
    Ok(PseudoLabel {
        height,
        width,
        score,
        pred,
        keys: keys.to_vec(),
    })
}

/// Margin `top1 − top2` per pixel of a `channels×height×width` score stack (§4.8 step 1).
///
/// As in the reference, every entry equal to the pixel's maximum is zeroed before taking the
/// second maximum, so a tie for first place is not a zero margin but the gap to the next
/// distinct score (or to 0).
pub fn margins(score: &[f32], channels: usize, n: usize) -> Result<Vec<f32>> {
    if channels == 0 || score.len() != channels * n {
        return Err(CoreError::Invalid(format!(
            "score stack has {} values, expected {channels}×{n}",
            score.len()
        )));
    }
    Ok((0..n)
        .map(|p| {
            let top1 = (0..channels)
                .map(|c| score[c * n + p])
                .fold(f32::NEG_INFINITY, f32::max);
            let top2 = (0..channels)
                .map(|c| score[c * n + p])
                .map(|v| if v == top1 { 0.0 } else { v })
                .fold(f32::NEG_INFINITY, f32::max);
            top1 - top2
        })
        .collect())
}

/// Confidence mask of §4.8: for every label value present in `pred` (`H×W`), the
/// `floor(count · fraction)` pixels of that label with the largest margin get 255, all others 0.
///
/// Ties are broken deterministically: among equal margins the earlier pixel in raster order
/// wins (a stable sort by decreasing margin).
pub fn confidence_mask(
    score: &[f32],
    channels: usize,
    pred: &[u8],
    fraction: f32,
) -> Result<Vec<u8>> {
    let n = pred.len();
    let margin = margins(score, channels, n)?;
    if !(0.0..=1.0).contains(&fraction) {
        return Err(CoreError::Invalid(format!(
            "confidence fraction {fraction} outside [0, 1]"
        )));
    }
    let mut by_label: Vec<Vec<u32>> = vec![Vec::new(); 256];
    for (p, &l) in pred.iter().enumerate() {
        by_label[usize::from(l)].push(p as u32);
    }
    let mut mask = vec![0u8; n];
    for mut pixels in by_label.into_iter().filter(|v| !v.is_empty()) {
        let keep = (pixels.len() as f64 * f64::from(fraction)).floor() as usize;
        pixels.sort_by(|&a, &b| margin[b as usize].total_cmp(&margin[a as usize]));
        for &p in &pixels[..keep] {
            mask[p as usize] = 255;
        }
    }
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsampling_matches_torch_on_a_ramp() {
        // torch: F.interpolate([[0, 1]], scale_factor=4, bilinear) =
        // [0, 0, 0.125, 0.375, 0.625, 0.875, 1, 1] along the resized axis.
        let up = upsample_crop(&[0.0, 1.0], 1, 1, 2, 4, 4, 7).unwrap();
        let want = [0.0, 0.0, 0.125, 0.375, 0.625, 0.875, 1.0];
        for row in up.chunks_exact(7) {
            assert_eq!(row, &want);
        }
        assert!(upsample_crop(&[0.0, 1.0], 1, 1, 2, 4, 5, 8).is_err());
    }

    #[test]
    fn pseudo_label_maps_channels_to_ids() {
        // 1×1 grid upsampled to 4×4; class key 4 (VOC id 5) scores 0.5, key 14 scores 0.1.
        let l = pseudo_label(&[0.5, 0.1], 1, 1, 3, 2, &[4, 14], 0.25).unwrap();
        assert_eq!(l.pred, vec![5; 6]);
        assert_eq!(&l.score[..6], &[0.25; 6]);
        assert_eq!(&l.score[6..12], &[1.0; 6]); // normalised by the global max
        assert!((l.score[12] - 0.2).abs() < 1e-7);
        // Nothing propagated: all background, no NaN.
        let l = pseudo_label(&[0.0], 1, 1, 2, 2, &[3], 0.25).unwrap();
        assert_eq!(l.pred, vec![0; 4]);
        assert!(pseudo_label(&[0.5], 1, 1, 2, 2, &[254], 0.25).is_err());
        assert!(pseudo_label(&[f32::NAN], 1, 1, 2, 2, &[1], 0.25).is_err());
    }

    #[test]
    fn confidence_mask_keeps_the_surer_half_of_each_label() {
        // Two channels, six pixels; labels: three background, three class 5.
        #[rustfmt::skip]
        let score = [
            0.25, 0.25, 0.25, 0.25, 0.25, 0.25, // background
            0.10, 0.20, 0.00, 0.90, 0.30, 0.60, // class
        ];
        let pred = [0, 0, 0, 5, 5, 5];
        let m = margins(&score, 2, 6).unwrap();
        let want = [0.15, 0.05, 0.25, 0.65, 0.05, 0.35];
        for (a, b) in m.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{m:?}");
        }
        // floor(3/2) = 1 per label: the largest margin of each.
        let mask = confidence_mask(&score, 2, &pred, 0.5).unwrap();
        assert_eq!(mask, vec![0, 0, 255, 255, 0, 0]);
        let all = confidence_mask(&score, 2, &pred, 1.0).unwrap();
        assert_eq!(all, vec![255; 6]);
    }

    #[test]
    fn confidence_mask_ties_follow_raster_order_and_top_ties_skip_to_the_next_score() {
        // Pixel 0: both channels tie at 0.5 → both zeroed → margin 0.5 - 0 = 0.5.
        // Pixels 1..4 share margin 0.25; two of four are kept: the first two in raster order.
        #[rustfmt::skip]
        let score = [
            0.5, 0.25, 0.25, 0.25, 0.25,
            0.5, 0.5,  0.5,  0.5,  0.5,
        ];
        let m = margins(&score, 2, 5).unwrap();
        assert_eq!(m, vec![0.5, 0.25, 0.25, 0.25, 0.25]);
        let mask = confidence_mask(&score, 2, &[0, 7, 7, 7, 7], 0.5).unwrap();
        assert_eq!(mask, vec![0, 255, 255, 0, 0]);
        assert!(confidence_mask(&score, 2, &[0; 4], 0.5).is_err());
        assert!(confidence_mask(&score, 2, &[0; 5], 1.5).is_err());
    }
}
