//! ImageNet normalisation of RGB images into network input planes (spec §0.2), and the
//! horizontal flip used by flip test-time augmentation (§3.2).
//!
//! `(v/255 − mean)/std` is computed in f64 and stored as f32, as the `cam` fixture's
//! reference does; a float32 computation differs by at most one f32 rounding.

use image::RgbImage;

use crate::{CoreError, Result};

/// ImageNet per-channel mean (RGB) of images scaled to [0, 1].
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
/// ImageNet per-channel standard deviation (RGB) of images scaled to [0, 1].
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// The normalised value of every byte, per channel (a 256-entry table is cheaper than
/// recomputing the f64 expression per pixel).
fn table() -> [[f32; 256]; 3] {
    let mut t = [[0.0; 256]; 3];
    for (c, row) in t.iter_mut().enumerate() {
        for (v, dst) in row.iter_mut().enumerate() {
            *dst = ((v as f64 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]) as f32;
        }
    }
    t
}

/// Normalises an RGB image to a `3×H×W` (CHW) f32 buffer.
pub fn normalize_chw(img: &RgbImage) -> Vec<f32> {
    let t = table();
    let n = img.width() as usize * img.height() as usize;
    let mut out = vec![0.0f32; 3 * n];
    let (r, rest) = out.split_at_mut(n);
    let (g, b) = rest.split_at_mut(n);
    for (i, px) in img.as_raw().chunks_exact(3).enumerate() {
        r[i] = t[0][px[0] as usize];
        g[i] = t[1][px[1] as usize];
        b[i] = t[2][px[2] as usize];
    }
    out
}

/// The flip-augmented network input of §3.2: `[img, hflip(img)]` normalised, `2×3×H×W`.
pub fn normalize_flip_pair(img: &RgbImage) -> Vec<f32> {
    let (h, w) = (img.height() as usize, img.width() as usize);
    let mut out = normalize_chw(img);
    let flipped = flip_rows(&out, w);
    out.extend(flipped);
    debug_assert_eq!(out.len(), 2 * 3 * h * w);
    out
}

fn flip_rows<T: Copy>(src: &[T], w: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(src.len());
    for row in src.chunks_exact(w.max(1)) {
        out.extend(row.iter().rev());
    }
    out
}

/// Mirrors `c` planes of `h×w` (`src` is `C×H×W`, any element type) left to right.
pub fn hflip_chw<T: Copy>(src: &[T], c: usize, h: usize, w: usize) -> Result<Vec<T>> {
    crate::resize::check_len(src.len(), &[c, h, w], "hflip_chw input")?;
    Ok(flip_rows(src, w))
}

/// Inverse of [`normalize_chw`] for viewing or saving network inputs: `3×H×W` → RGB with
/// `v = round(255·(x·std + mean))` clamped to [0, 255].
pub fn denormalize_chw(src: &[f32], h: usize, w: usize) -> Result<RgbImage> {
    crate::resize::check_len(src.len(), &[3, h, w], "denormalize_chw input")?;
    let n = h * w;
    let mut data = Vec::with_capacity(3 * n);
    for i in 0..n {
        for c in 0..3 {
            let v = (src[c * n + i] as f64 * IMAGENET_STD[c] + IMAGENET_MEAN[c]) * 255.0;
            data.push(v.round().clamp(0.0, 255.0) as u8);
        }
    }
    let too_big = || CoreError::Invalid(format!("denormalize_chw: {h}x{w} too large"));
    let (w32, h32) = (
        u32::try_from(w).map_err(|_| too_big())?,
        u32::try_from(h).map_err(|_| too_big())?,
    );
    RgbImage::from_raw(w32, h32, data).ok_or_else(too_big)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_per_channel_in_chw_order() {
        let img = RgbImage::from_raw(2, 1, vec![0, 128, 255, 10, 20, 30]).unwrap();
        let x = normalize_chw(&img);
        assert_eq!(x.len(), 6);
        let want = |v: f64, c: usize| ((v / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]) as f32;
        assert_eq!(x[0], want(0.0, 0));
        assert_eq!(x[1], want(10.0, 0));
        assert_eq!(x[2], want(128.0, 1));
        assert_eq!(x[5], want(30.0, 2));
        assert!((x[4] - (1.0 - 0.406) / 0.225).abs() < 1e-6);
    }

    #[test]
    fn flip_pair_and_round_trip() {
        let raw: Vec<u8> = (0..3 * 4 * 3).map(|v| (v * 7) as u8).collect();
        let img = RgbImage::from_raw(4, 3, raw).unwrap();
        let pair = normalize_flip_pair(&img);
        let (a, b) = pair.split_at(36);
        assert_eq!(hflip_chw(a, 3, 3, 4).unwrap(), b);
        assert_eq!(b[0], a[3]);
        assert_eq!(denormalize_chw(a, 3, 4).unwrap(), img);
        assert!(hflip_chw(a, 3, 3, 5).is_err());
        assert!(denormalize_chw(a, 2, 4).is_err());
    }
}
