//! Region features for the greedy merge (§5.2).
//!
//! ICD averages VGG-16 conv5_3 features per FH region, but the "vgg16_20M" weights it uses are
//! not available, so the default here is hand-crafted features in the spirit of Selective
//! Search (Uijlings et al.), used with §5.3's cosine similarity unchanged:
//!
//! * colour: per channel a 25-bin histogram of the 8-bit values (75 values), L1-normalised;
//! * texture: per channel, Gaussian derivatives (σ = 1 smoothing, central differences) in 8
//!   orientations (every 45°; the positive part of the directional derivative, so opposite
//!   orientations are distinct), each histogrammed into 10 bins over `[0, q]` with `q` the
//!   image's 99th percentile of that channel's gradient magnitude (so one strong edge does not
//!   squash every other response into the first bin); 240 values, L1-normalised.
//!
//! Both blocks have unit mass, so colour and texture weigh equally in the cosine. The size-
//! weighted feature update of §5.3 keeps them exact: the weighted mean of two normalised
//! histograms is the normalised histogram of the union.
//!
//! Alternatively [`dense_means`] averages a caller-supplied dense feature map (any backbone,
//! any stride) per region, which is what ICD does with its VGG map.

use super::{Segmentation, fh};
use crate::{CoreError, Result};

/// Colour histogram bins per channel.
pub const COLOUR_BINS: usize = 25;
/// Orientations of the texture descriptor.
pub const TEXTURE_ORIENTATIONS: usize = 8;
/// Histogram bins per orientation and channel.
pub const TEXTURE_BINS: usize = 10;
/// Length of a [`colour_texture`] feature vector.
pub const COLOUR_TEXTURE_DIM: usize = 3 * COLOUR_BINS + 3 * TEXTURE_ORIENTATIONS * TEXTURE_BINS;

/// Colour and texture histograms per region of `seg` on the interleaved RGB image `rgb` of the
/// same size; row-major `seg.count × COLOUR_TEXTURE_DIM`.
pub fn colour_texture(rgb: &[u8], seg: &Segmentation) -> Result<Vec<f32>> {
    super::validate(seg)?;
    let (w, h) = (seg.width, seg.height);
    let planes = fh::smooth(rgb, w, h, 1.0)?;
    let dim = COLOUR_TEXTURE_DIM;
    let mut hist = vec![0u32; seg.count * dim];
    for (px, &l) in rgb.chunks_exact(3).zip(&seg.labels) {
        let base = l as usize * dim;
        for c in 0..3 {
            let bin = usize::from(px[c]) * COLOUR_BINS / 256;
            hist[base + c * COLOUR_BINS + bin] += 1;
        }
    }
    // Orientation k + 4 is the exact opposite of k, so its response is the negative part of
    // the same directional derivative: 4 products give all 8 responses.
    let half = TEXTURE_ORIENTATIONS / 2;
    let dirs: Vec<(f32, f32)> = (0..half)
        .map(|k| {
            let t = k as f32 * std::f32::consts::TAU / TEXTURE_ORIENTATIONS as f32;
            (t.cos(), t.sin())
        })
        .collect();
    let sizes = seg.sizes();
    let mut gx = vec![0f32; w * h];
    let mut gy = vec![0f32; w * h];
    // Per k < 4 and pixel: the orientation (k or k + 4 by the sign) and bin of the response,
    // as `orientation·TEXTURE_BINS + bin`, or NO_BIN for bin 0.
    const NO_BIN: u8 = u8::MAX;
    let mut codes = vec![vec![NO_BIN; w * h]; half];
    for (c, p) in planes.iter().enumerate() {
        gradients(p, w, h, &mut gx, &mut gy);
        let scale = percentile_magnitude(&gx, &gy, 0.99);
        let inv = if scale > 0.0 {
            TEXTURE_BINS as f32 / scale
        } else {
            0.0
        };
        for (k, (plane, &(co, si))) in codes.iter_mut().zip(&dirs).enumerate() {
            let (pos, neg) = ((k * TEXTURE_BINS) as u8, ((k + half) * TEXTURE_BINS) as u8);
            for ((cd, &x), &y) in plane.iter_mut().zip(&gx).zip(&gy) {
                let d = x * co + y * si;
                // Clamping before the conversion is the same as after (the value is ≥ 0 and
                // finite) and lets the loop vectorise.
                let bin = (d.abs() * inv).min((TEXTURE_BINS - 1) as f32) as u8;
                let o = if d >= 0.0 { pos } else { neg };
                *cd = if bin == 0 { NO_BIN } else { o + bin };
            }
        }
        // Each pixel adds one count to every orientation's histogram: to the bin of its
        // response in the orientation of the response's sign, and to bin 0 of the opposite
        // one. Only counts outside bin 0 are made here (most responses are weak, and the
        // repeated increments of one counter were most of the time); bin 0 is the rest.
        let off = 3 * COLOUR_BINS + c * TEXTURE_ORIENTATIONS * TEXTURE_BINS;
        for (i, &l) in seg.labels.iter().enumerate() {
            let base = l as usize * dim + off;
            for plane in &codes {
                let cd = plane[i];
                if cd != NO_BIN {
                    hist[base + usize::from(cd)] += 1;
                }
            }
        }
        for (r, &s) in sizes.iter().enumerate() {
            let base = r * dim + off;
            for o in hist[base..base + TEXTURE_ORIENTATIONS * TEXTURE_BINS]
                .chunks_exact_mut(TEXTURE_BINS)
            {
                let others: u32 = o[1..].iter().sum();
                o[0] = s as u32 - others;
            }
        }
    }
    let colour_mass = 3 * COLOUR_BINS;
    let mut out = vec![0f32; seg.count * dim];
    for (r, &s) in sizes.iter().enumerate() {
        if s == 0 {
            continue; // an empty region keeps a zero vector (cosine treats it as orthogonal)
        }
        let (cn, tn) = (
            1.0 / (3 * s) as f32,
            1.0 / (3 * TEXTURE_ORIENTATIONS * s) as f32,
        );
        for (j, (o, &v)) in out[r * dim..(r + 1) * dim]
            .iter_mut()
            .zip(&hist[r * dim..(r + 1) * dim])
            .enumerate()
        {
            *o = v as f32 * if j < colour_mass { cn } else { tn };
        }
    }
    Ok(out)
}

/// Central differences with clamped borders of a `w×h` plane.
fn gradients(p: &[f32], w: usize, h: usize, gx: &mut [f32], gy: &mut [f32]) {
    for y in 0..h {
        let (yu, yd) = (y.saturating_sub(1), (y + 1).min(h - 1));
        let row = &p[y * w..(y + 1) * w];
        let (up, down) = (&p[yu * w..(yu + 1) * w], &p[yd * w..(yd + 1) * w]);
        let (gxr, gyr) = (&mut gx[y * w..(y + 1) * w], &mut gy[y * w..(y + 1) * w]);
        for ((g, &a), &b) in gyr.iter_mut().zip(up).zip(down) {
            *g = 0.5 * (b - a);
        }
        gxr[0] = 0.5 * (row[1.min(w - 1)] - row[0]);
        if w > 1 {
            gxr[w - 1] = 0.5 * (row[w - 1] - row[w - 2]);
        }
        if w > 2 {
            for (g, t) in gxr[1..w - 1].iter_mut().zip(row.windows(3)) {
                *g = 0.5 * (t[2] - t[0]);
            }
        }
    }
}

/// The `q`-quantile of the gradient magnitude `|(gx, gy)|`.
///
/// A radix select on the bits of the squared magnitudes (non-negative floats order as their
/// bits, and the square root is monotone, so it commutes with the order statistic): two
/// counting passes instead of a comparison-based selection.
fn percentile_magnitude(gx: &[f32], gy: &[f32], q: f64) -> f32 {
    if gx.is_empty() {
        return 0.0;
    }
    let m: Vec<u32> = gx
        .iter()
        .zip(gy)
        .map(|(a, b)| (a * a + b * b).to_bits())
        .collect();
    let mut k = ((m.len() - 1) as f64 * q).round() as usize;
    let mut count = vec![0u32; 1 << 16];
    for &v in &m {
        count[(v >> 16) as usize] += 1;
    }
    let mut hi = 0;
    for (i, &c) in count.iter().enumerate() {
        if k < c as usize {
            hi = i as u32;
            break;
        }
        k -= c as usize;
    }
    count.iter_mut().for_each(|c| *c = 0);
    for &v in &m {
        if v >> 16 == hi {
            count[(v & 0xffff) as usize] += 1;
        }
    }
    let mut lo = 0;
    for (i, &c) in count.iter().enumerate() {
        if k < c as usize {
            lo = i as u32;
            break;
        }
        k -= c as usize;
    }
    f32::from_bits(hi << 16 | lo).sqrt()
}

/// How pixel `o` of an `out`-pixel image maps to a coordinate of an `in`-cell feature map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// Bilinear resize with aligned corners (MXNet `BilinearResize2D`, torch
    /// `align_corners=True`): `x = o·(in−1)/(out−1)`.
    AlignCorners,
    /// Bilinear resize sampling at pixel centres (torch `align_corners=False`):
    /// `x = (o+½)·in/out − ½`, clamped to ≥ 0.
    HalfPixel,
    /// The map has a fixed stride in pixels: `x = o/stride`. ICD's VGG map (65×65 for the
    /// 513-padded input, resized corner-aligned to 513) is exactly `Stride(8.0)`.
    Stride(f32),
}

/// A dense feature map, channel-major `channels×height×width`.
#[derive(Debug, Clone, Copy)]
pub struct DenseFeatures<'a> {
    /// The values, `channels·height·width` of them.
    pub data: &'a [f32],
    /// Channels (feature dimension).
    pub channels: usize,
    /// Map height in cells.
    pub height: usize,
    /// Map width in cells.
    pub width: usize,
    /// How image pixels map onto the map.
    pub sampling: Sampling,
}

/// Interpolation taps `(i0, i1, t)` of each of `out` pixels along one axis.
fn taps(out: usize, cells: usize, sampling: Sampling) -> Vec<(usize, usize, f32)> {
    let last = cells - 1;
    (0..out)
        .map(|o| {
            let x = match sampling {
                Sampling::AlignCorners if out > 1 => o as f64 * last as f64 / (out - 1) as f64,
                Sampling::AlignCorners => 0.0,
                Sampling::HalfPixel => {
                    ((o as f64 + 0.5) * cells as f64 / out as f64 - 0.5).max(0.0)
                }
                Sampling::Stride(s) => o as f64 / f64::from(s),
            };
            let x = x.min(last as f64);
            let i0 = x.floor() as usize;
            (i0, (i0 + 1).min(last), (x - i0 as f64) as f32)
        })
        .collect()
}

/// The per-region mean of `feat` bilinearly sampled at every pixel of `seg`; row-major
/// `seg.count × feat.channels`.
pub fn dense_means(feat: &DenseFeatures, seg: &Segmentation) -> Result<Vec<f32>> {
    super::validate(seg)?;
    let (c, fh_, fw) = (feat.channels, feat.height, feat.width);
    if c == 0 || fh_ == 0 || fw == 0 || feat.data.len() != c * fh_ * fw {
        return Err(CoreError::Invalid(format!(
            "dense features: {} values for {c}×{fh_}×{fw}",
            feat.data.len()
        )));
    }
    if let Sampling::Stride(s) = feat.sampling
        && !(s.is_finite() && s > 0.0)
    {
        return Err(CoreError::Invalid(format!(
            "dense features: stride must be positive, got {s}"
        )));
    }
    let ty = taps(seg.height, fh_, feat.sampling);
    let tx = taps(seg.width, fw, feat.sampling);
    let n = seg.count;
    // Channel-outer with a channel-major accumulator keeps both the plane and the sums in
    // cache; transposed to region-major at the end.
    let mut sums = vec![0f64; c * n];
    for ch in 0..c {
        let plane = &feat.data[ch * fh_ * fw..(ch + 1) * fh_ * fw];
        let acc = &mut sums[ch * n..(ch + 1) * n];
        for (y, &(y0, y1, wy)) in ty.iter().enumerate() {
            let (r0, r1) = (
                &plane[y0 * fw..(y0 + 1) * fw],
                &plane[y1 * fw..(y1 + 1) * fw],
            );
            let labels = &seg.labels[y * seg.width..(y + 1) * seg.width];
            for (&l, &(x0, x1, wx)) in labels.iter().zip(&tx) {
                let top = r0[x0] + wx * (r0[x1] - r0[x0]);
                let bot = r1[x0] + wx * (r1[x1] - r1[x0]);
                acc[l as usize] += f64::from(top + wy * (bot - top));
            }
        }
    }
    let sizes = seg.sizes();
    let mut out = vec![0f32; n * c];
    for r in 0..n {
        let s = sizes[r].max(1) as f64;
        for ch in 0..c {
            out[r * c + ch] = (sums[ch * n + r] / s) as f32;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn halves(w: usize, h: usize) -> Segmentation {
        Segmentation {
            width: w,
            height: h,
            labels: (0..w * h).map(|i| u32::from(i % w >= w / 2)).collect(),
            count: 2,
        }
    }

    #[test]
    fn colour_texture_histograms_have_unit_blocks() {
        let (w, h) = (16, 8);
        let mut rgb = vec![0u8; w * h * 3];
        for (i, px) in rgb.chunks_exact_mut(3).enumerate() {
            let (x, y) = (i % w, i / w);
            // Left: flat red. Right: a noisy-ish checker (texture).
            let v = if x < w / 2 {
                [200, 10, 10]
            } else {
                [((x + y) % 2 * 255) as u8; 3]
            };
            px.copy_from_slice(&v);
        }
        let f = colour_texture(&rgb, &halves(w, h)).unwrap();
        assert_eq!(f.len(), 2 * COLOUR_TEXTURE_DIM);
        for r in 0..2 {
            let v = &f[r * COLOUR_TEXTURE_DIM..(r + 1) * COLOUR_TEXTURE_DIM];
            let colour: f32 = v[..3 * COLOUR_BINS].iter().sum();
            let texture: f32 = v[3 * COLOUR_BINS..].iter().sum();
            assert!((colour - 1.0).abs() < 1e-5 && (texture - 1.0).abs() < 1e-5);
        }
        // The flat red half: each channel's mass sits in one bin (200·25/256 = 19 for red).
        assert!((f[19] - 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn dense_means_of_constant_and_linear_maps() {
        let seg = halves(8, 4);
        // Channel 0 constant 3; channel 1 equals the x coordinate on a stride-1 map.
        let mut data = vec![3.0f32; 32];
        data.extend((0..32).map(|i| (i % 8) as f32));
        let f = DenseFeatures {
            data: &data,
            channels: 2,
            height: 4,
            width: 8,
            sampling: Sampling::Stride(1.0),
        };
        let m = dense_means(&f, &seg).unwrap();
        assert_eq!(m, vec![3.0, 1.5, 3.0, 5.5]);
        // A 2×2 map resized corner-aligned to 8×4: x runs 0..1 linearly across the image.
        let small = [0.0f32, 1.0, 0.0, 1.0];
        let f = DenseFeatures {
            data: &small,
            channels: 1,
            height: 2,
            width: 2,
            sampling: Sampling::AlignCorners,
        };
        let m = dense_means(&f, &seg).unwrap();
        assert!((m[0] - 1.5 / 7.0).abs() < 1e-6 && (m[1] - 5.5 / 7.0).abs() < 1e-6);
        let bad = DenseFeatures { channels: 3, ..f };
        assert!(dense_means(&bad, &seg).is_err());
    }

    #[test]
    fn radix_select_percentile_matches_sorting() {
        let mut rng = crate::rng::Rng::new(5);
        for n in [1usize, 2, 7, 1000, 4099] {
            // Coarse values give many ties; a few zeros and large values too.
            let gx: Vec<f32> = (0..n).map(|_| rng.below(9) as f32 * 0.37 - 1.0).collect();
            let gy: Vec<f32> = (0..n).map(|_| rng.below(5) as f32 * 2.5).collect();
            let mut m: Vec<f32> = gx
                .iter()
                .zip(&gy)
                .map(|(a, b)| (a * a + b * b).sqrt())
                .collect();
            m.sort_by(f32::total_cmp);
            for q in [0.0, 0.5, 0.99, 1.0] {
                let k = ((n - 1) as f64 * q).round() as usize;
                assert_eq!(percentile_magnitude(&gx, &gy, q), m[k], "n {n} q {q}");
            }
        }
    }

    #[test]
    fn gradients_clamp_at_borders_for_any_width() {
        for (w, h) in [(1usize, 3usize), (2, 1), (3, 2), (5, 4)] {
            let p: Vec<f32> = (0..w * h).map(|i| (i * i % 7) as f32).collect();
            let (mut gx, mut gy) = (vec![0f32; w * h], vec![0f32; w * h]);
            gradients(&p, w, h, &mut gx, &mut gy);
            for y in 0..h {
                for x in 0..w {
                    let (xl, xr) = (x.saturating_sub(1), (x + 1).min(w - 1));
                    let (yu, yd) = (y.saturating_sub(1), (y + 1).min(h - 1));
                    assert_eq!(gx[y * w + x], 0.5 * (p[y * w + xr] - p[y * w + xl]));
                    assert_eq!(gy[y * w + x], 0.5 * (p[yd * w + x] - p[yu * w + x]));
                }
            }
        }
    }

    #[test]
    fn half_pixel_taps_follow_torch() {
        // in 4 → out 8: x = (o + 0.5)/2 − 0.5 → 0 (clamped), 0.25, 0.75, …, 3 (clamped).
        let t = taps(8, 4, Sampling::HalfPixel);
        assert_eq!(t[0], (0, 1, 0.0));
        assert_eq!(t[1], (0, 1, 0.25));
        assert_eq!(t[7], (3, 3, 0.0));
    }
}
