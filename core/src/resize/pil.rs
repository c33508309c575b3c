//! Pillow 13 `Image.resize` for 8-bit images (BICUBIC) and any pixel type (NEAREST), ported
//! from `libImaging/Resample.c` and `Geometry.c` so results are bit-exact (spec §0.2).
//!
//! BICUBIC is the Keys kernel (a = −0.5) with its support widened by the scale when
//! downscaling (antialiasing). Pillow normalises each output's coefficients in f64, converts
//! them to 22-bit fixed point, runs the horizontal pass (only when the width changes) into an
//! 8-bit buffer with clipping, then the vertical pass (only when the height changes) — except
//! that Pillow 13 runs the vertical pass first when the height shrinks and the width grows.
//! The rounding of every step is reproduced here, which is why the code mirrors the C closely.

use image::{GrayImage, RgbImage};

use super::{check_len, check_nonzero};
use crate::{CoreError, Result};

/// Fixed-point fraction bits: 32 bits minus 8 for the value and 2 for overshoot.
const PRECISION_BITS: u32 = 32 - 8 - 2;
/// Support of the bicubic kernel at scale 1.
const BICUBIC_SUPPORT: f64 = 2.0;

/// Keys cubic convolution kernel with a = −0.5 (Pillow's `bicubic_filter`).
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Fixed-point coefficients of one axis: output `o` reads `len[o]` inputs from `first[o]`
/// with weights `k[o·ksize ..]`.
struct Coeffs {
    ksize: usize,
    first: Vec<usize>,
    len: Vec<usize>,
    k: Vec<i32>,
}

/// Pillow's `precompute_coeffs` followed by `normalize_coeffs_8bpc`.
fn precompute(in_size: usize, out_size: usize) -> Coeffs {
    // Pillow passes the box edges as C floats; (in1 − in0) is computed in f32.
    let scale = (in_size as f32) as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = BICUBIC_SUPPORT * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let ss = 1.0 / filterscale;
    let mut c = Coeffs {
        ksize,
        first: Vec::with_capacity(out_size),
        len: Vec::with_capacity(out_size),
        k: vec![0; out_size * ksize],
    };
    let mut w = vec![0.0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // C's (int) cast truncates toward zero; negatives are clamped to 0 anyway.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin).min(ksize);
        let mut ww = 0.0;
        for (x, wx) in w.iter_mut().enumerate().take(n) {
            *wx = bicubic(((x + xmin) as f64 - center + 0.5) * ss);
            ww += *wx;
        }
        let row = &mut c.k[xx * ksize..xx * ksize + n];
        for (dst, &wx) in row.iter_mut().zip(&w) {
            let v = if ww != 0.0 { wx / ww } else { wx };
            let f = v * (1u32 << PRECISION_BITS) as f64;
            *dst = if v < 0.0 {
                (f - 0.5) as i32
            } else {
                (f + 0.5) as i32
            };
        }
        c.first.push(xmin);
        c.len.push(n);
    }
    c
}

/// Pillow's `clip8`: drop the fraction bits and clamp to a byte.
#[inline]
fn clip8(ss: i32) -> u8 {
    (ss >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Rounding offset every accumulator starts from (half of one output level).
const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// Horizontal pass over rows `y0..y1` of an interleaved `h×w×C` image.
fn horizontal<const C: usize>(
    src: &[u8],
    w: usize,
    rows: std::ops::Range<usize>,
    c: &Coeffs,
) -> Vec<u8> {
    let out_w = c.first.len();
    let mut out = Vec::with_capacity(rows.len() * out_w * C);
    for y in rows {
        let row = &src[y * w * C..(y + 1) * w * C];
        for xx in 0..out_w {
            let k = &c.k[xx * c.ksize..xx * c.ksize + c.len[xx]];
            let px = &row[c.first[xx] * C..];
            let mut ss = [HALF; C];
            for (x, &kx) in k.iter().enumerate() {
                for (ch, s) in ss.iter_mut().enumerate() {
                    // Wrapping mirrors C int arithmetic; Pillow's bit budget keeps it in range.
                    *s = s.wrapping_add((px[x * C + ch] as i32).wrapping_mul(kx));
                }
            }
            out.extend(ss.iter().map(|&s| clip8(s)));
        }
    }
    out
}

/// Vertical pass of an interleaved `rows×w×C` image, row bounds shifted by `offset`.
fn vertical<const C: usize>(src: &[u8], w: usize, offset: usize, c: &Coeffs) -> Vec<u8> {
    let out_h = c.first.len();
    let stride = w * C;
    let mut out = Vec::with_capacity(out_h * stride);
    let mut ss = vec![0i32; stride];
    for yy in 0..out_h {
        let k = &c.k[yy * c.ksize..yy * c.ksize + c.len[yy]];
        let y0 = c.first[yy] - offset;
        ss.fill(HALF);
        for (y, &ky) in k.iter().enumerate() {
            let row = &src[(y0 + y) * stride..(y0 + y + 1) * stride];
            for (s, &p) in ss.iter_mut().zip(row) {
                *s = s.wrapping_add((p as i32).wrapping_mul(ky));
            }
        }
        out.extend(ss.iter().map(|&s| clip8(s)));
    }
    out
}

fn bicubic_impl<const C: usize>(
    src: &[u8],
    h: usize,
    w: usize,
    out_h: usize,
    out_w: usize,
) -> Vec<u8> {
    if (h, w) == (out_h, out_w) {
        return src.to_vec();
    }
    // Pillow 13 (python-pillow/Pillow#9549) runs the vertical pass first when the height
    // shrinks but the width does not; the 8-bit rounding between passes makes the order
    // visible in the result (the fixture's 23×31 → 5×40 case differs by one level otherwise).
    if out_h < h && out_w > w {
        let cy = precompute(h, out_h);
        let tmp = vertical::<C>(src, w, 0, &cy);
        let cx = precompute(w, out_w);
        return horizontal::<C>(&tmp, w, 0..out_h, &cx);
    }
    let cy = precompute(h, out_h);
    // Only the source rows the vertical pass reads go through the horizontal pass.
    let (y_first, y_last) = if out_h != h {
        (cy.first[0], cy.first[out_h - 1] + cy.len[out_h - 1])
    } else {
        (0, h)
    };
    let (tmp, tmp_w, offset) = if out_w != w {
        let cx = precompute(w, out_w);
        (
            horizontal::<C>(src, w, y_first..y_last, &cx),
            out_w,
            y_first,
        )
    } else {
        (src.to_vec(), w, 0)
    };
    if out_h != h {
        vertical::<C>(&tmp, tmp_w, offset, &cy)
    } else {
        tmp
    }
}

/// Pillow BICUBIC resize of an interleaved 8-bit `h×w×channels` image (channels 1 to 4,
/// e.g. "L" or "RGB"; no alpha premultiplication) to `out_h×out_w`. Same size returns the
/// input unchanged, as Pillow does.
pub fn pil_bicubic_u8(
    src: &[u8],
    h: usize,
    w: usize,
    channels: usize,
    out_h: usize,
    out_w: usize,
) -> Result<Vec<u8>> {
    check_len(src.len(), &[h, w, channels], "pil_bicubic input")?;
    check_nonzero(&[h, w, out_h, out_w], "pil_bicubic")?;
    Ok(match channels {
        1 => bicubic_impl::<1>(src, h, w, out_h, out_w),
        2 => bicubic_impl::<2>(src, h, w, out_h, out_w),
        3 => bicubic_impl::<3>(src, h, w, out_h, out_w),
        4 => bicubic_impl::<4>(src, h, w, out_h, out_w),
        n => {
            return Err(CoreError::Invalid(format!(
                "pil_bicubic: {n} channels, expected 1 to 4"
            )));
        }
    })
}

fn dims(width: u32, height: u32) -> (usize, usize) {
    (height as usize, width as usize)
}

fn to_u32(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| CoreError::Invalid(format!("{what}: size {v} too large")))
}

/// Pillow BICUBIC resize of an RGB image to `out_h×out_w` (height first).
pub fn pil_bicubic_rgb(img: &RgbImage, out_h: usize, out_w: usize) -> Result<RgbImage> {
    let (h, w) = dims(img.width(), img.height());
    let data = pil_bicubic_u8(img.as_raw(), h, w, 3, out_h, out_w)?;
    let (ow, oh) = (to_u32(out_w, "pil_bicubic")?, to_u32(out_h, "pil_bicubic")?);
    RgbImage::from_raw(ow, oh, data)
        .ok_or_else(|| CoreError::Invalid("pil_bicubic: output buffer size".into()))
}

/// Pillow BICUBIC resize of a greyscale ("L") image to `out_h×out_w` (height first).
pub fn pil_bicubic_gray(img: &GrayImage, out_h: usize, out_w: usize) -> Result<GrayImage> {
    let (h, w) = dims(img.width(), img.height());
    let data = pil_bicubic_u8(img.as_raw(), h, w, 1, out_h, out_w)?;
    let (ow, oh) = (to_u32(out_w, "pil_bicubic")?, to_u32(out_h, "pil_bicubic")?);
    GrayImage::from_raw(ow, oh, data)
        .ok_or_else(|| CoreError::Invalid("pil_bicubic: output buffer size".into()))
}

/// Source index of every output index for Pillow NEAREST (`ImagingScaleAffine`): the
/// position starts at `0.5·in/out` and is advanced by adding `in/out` in f64, as Pillow does
/// (the accumulated sum, not `(o + 0.5)·in/out`, decides ties). `None` = outside the source
/// (Pillow fills 0; does not happen for plain resizes).
fn nearest_index(in_size: usize, out_size: usize) -> Vec<Option<usize>> {
    let a = (in_size as f32) as f64 / out_size as f64;
    let mut pos = a * 0.5;
    (0..out_size)
        .map(|_| {
            let i = if pos < 0.0 { None } else { Some(pos as usize) };
            pos += a;
            i.filter(|&i| i < in_size)
        })
        .collect()
}

/// Pillow NEAREST resize of an interleaved `h×w×channels` buffer of any pixel type (RGB8,
/// "L", "I" id maps as i32, u16 …) to `out_h×out_w`. Same size returns a copy.
pub fn pil_nearest<T: Copy + Default>(
    src: &[T],
    h: usize,
    w: usize,
    channels: usize,
    out_h: usize,
    out_w: usize,
) -> Result<Vec<T>> {
    check_len(src.len(), &[h, w, channels], "pil_nearest input")?;
    check_nonzero(&[h, w, channels, out_h, out_w], "pil_nearest")?;
    if (h, w) == (out_h, out_w) {
        return Ok(src.to_vec());
    }
    let xs = nearest_index(w, out_w);
    let ys = nearest_index(h, out_h);
    let mut out = Vec::with_capacity(out_h * out_w * channels);
    for y in ys {
        for &x in &xs {
            match (y, x) {
                (Some(y), Some(x)) => {
                    let p = (y * w + x) * channels;
                    out.extend_from_slice(&src[p..p + channels]);
                }
                _ => out.extend(std::iter::repeat_n(T::default(), channels)),
            }
        }
    }
    Ok(out)
}

/// Pillow NEAREST resize of an RGB image to `out_h×out_w` (height first).
pub fn pil_nearest_rgb(img: &RgbImage, out_h: usize, out_w: usize) -> Result<RgbImage> {
    let (h, w) = dims(img.width(), img.height());
    let data = pil_nearest(img.as_raw(), h, w, 3, out_h, out_w)?;
    let (ow, oh) = (to_u32(out_w, "pil_nearest")?, to_u32(out_h, "pil_nearest")?);
    RgbImage::from_raw(ow, oh, data)
        .ok_or_else(|| CoreError::Invalid("pil_nearest: output buffer size".into()))
}

/// Pillow NEAREST resize of a greyscale image (e.g. a label map) to `out_h×out_w`.
pub fn pil_nearest_gray(img: &GrayImage, out_h: usize, out_w: usize) -> Result<GrayImage> {
    let (h, w) = dims(img.width(), img.height());
    let data = pil_nearest(img.as_raw(), h, w, 1, out_h, out_w)?;
    let (ow, oh) = (to_u32(out_w, "pil_nearest")?, to_u32(out_h, "pil_nearest")?);
    GrayImage::from_raw(ow, oh, data)
        .ok_or_else(|| CoreError::Invalid("pil_nearest: output buffer size".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_values() {
        assert_eq!(bicubic(0.0), 1.0);
        assert_eq!(bicubic(1.0), 0.0);
        assert_eq!(bicubic(0.5), 0.5625);
        assert_eq!(bicubic(1.5), -0.0625);
        assert_eq!(bicubic(-2.0), 0.0);
    }

    #[test]
    fn fixed_point_rows_sum_to_one() {
        for (i, o) in [(23, 12), (23, 46), (31, 9), (7, 7), (500, 13)] {
            let c = precompute(i, o);
            for xx in 0..o {
                let s: i32 = c.k[xx * c.ksize..xx * c.ksize + c.len[xx]].iter().sum();
                // Rounding each coefficient moves the sum by at most half a unit each.
                assert!(
                    (s - (1 << PRECISION_BITS)).abs() <= c.len[xx] as i32,
                    "{i}->{o}"
                );
            }
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        let src = vec![77u8; 9 * 13 * 3];
        for (oh, ow) in [(4, 5), (20, 30), (9, 2), (1, 1)] {
            let out = pil_bicubic_u8(&src, 9, 13, 3, oh, ow).unwrap();
            assert!(out.iter().all(|&v| v == 77), "{oh}x{ow}");
        }
    }

    #[test]
    fn rgb_equals_each_channel_resized_alone() {
        // Channels never mix, so interleaved RGB must equal three grey resizes, in every
        // pass order (both down, both up, vertical-first, one axis only).
        let (h, w) = (11, 17);
        let rgb: Vec<u8> = (0..h * w * 3).map(|i| ((i * 7919) % 251) as u8).collect();
        for (oh, ow) in [(5, 8), (23, 40), (4, 30), (11, 6), (20, 17)] {
            let out = pil_bicubic_u8(&rgb, h, w, 3, oh, ow).unwrap();
            for ch in 0..3 {
                let plane: Vec<u8> = rgb.iter().skip(ch).step_by(3).copied().collect();
                let want = pil_bicubic_u8(&plane, h, w, 1, oh, ow).unwrap();
                let got: Vec<u8> = out.iter().skip(ch).step_by(3).copied().collect();
                assert_eq!(got, want, "{oh}x{ow} channel {ch}");
            }
        }
    }

    #[test]
    fn nearest_keeps_wide_ids() {
        let ids: Vec<u16> = (0..6).map(|v| 60000 + v).collect();
        assert_eq!(pil_nearest(&ids, 2, 3, 1, 4, 3).unwrap(), {
            let mut v = vec![60000, 60001, 60002, 60000, 60001, 60002];
            v.extend([60003, 60004, 60005, 60003, 60004, 60005]);
            v
        });
    }

    #[test]
    fn nearest_picks_centres() {
        let src: Vec<i32> = (0..10).collect();
        assert_eq!(
            pil_nearest(&src, 1, 10, 1, 1, 5).unwrap(),
            vec![1, 3, 5, 7, 9]
        );
        assert_eq!(pil_nearest(&src, 1, 10, 1, 1, 3).unwrap(), vec![1, 5, 8]);
        assert!(pil_nearest(&src, 1, 10, 1, 0, 3).is_err());
        assert!(pil_bicubic_u8(&[0; 10], 1, 10, 5, 1, 3).is_err());
    }
}
