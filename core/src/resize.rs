//! Resize primitives (spec §0.2): PyTorch bilinear (`align_corners=False`) and nearest ×0.5,
//! Pillow `Image.resize` BICUBIC and NEAREST, and the rescale-size rule of `pil_rescale`.
//!
//! All functions work on plain row-major buffers (`C×H×W` planes for float maps, interleaved
//! `H×W×C` for 8-bit images) and return [`CoreError::Invalid`] when a buffer does not match
//! the shape it is said to have, so bad input never panics. Sizes are always given
//! height first, like the spec and the fixtures.

mod pil;
mod torch;

pub use pil::pil_nearest_rgb;
pub use pil::{pil_bicubic_gray, pil_bicubic_rgb, pil_bicubic_u8, pil_nearest, pil_nearest_gray};
pub use torch::{bilinear_chw, bilinear_matrix, bilinear_matrix_f64, torch_nearest_half};

use crate::{CoreError, Result};

/// Target size of a rescale by `scale`: `(round(h·s), round(w·s))` with numpy's
/// round-half-to-even, the product taken in f64 as numpy does (spec §0.2, `pil_rescale`).
///
/// A negative or non-finite product saturates to 0 (Rust's float-to-int cast); callers that
/// need a usable image check for 0.
pub fn rescale_size(h: usize, w: usize, scale: f64) -> (usize, usize) {
    let r = |n: usize| (n as f64 * scale).round_ties_even() as usize;
    (r(h), r(w))
}

/// Pillow-bicubic rescale of an RGB image by `scale` to [`rescale_size`] (IRN/SSC
/// `pil_rescale`, used by the stage-1 random resize §2.9 and multi-scale CAMs §3.2). A scale
/// that keeps the size returns the image unchanged; one that rounds a side to 0 is an error.
pub fn pil_rescale_rgb(img: &image::RgbImage, scale: f64) -> Result<image::RgbImage> {
    let (oh, ow) = rescale_size(img.height() as usize, img.width() as usize, scale);
    pil_bicubic_rgb(img, oh, ow)
}

/// Checks that `len` is `planes·h·w` (with an overflow-safe product) and that no size is 0.
pub(crate) fn check_len(len: usize, dims: &[usize], what: &str) -> Result<()> {
    let want = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    match want {
        Some(n) if n == len => Ok(()),
        _ => Err(CoreError::Invalid(format!(
            "{what}: buffer has {len} values, shape {dims:?} needs {}",
            want.map_or_else(|| "an overflowing count".to_string(), |n| n.to_string())
        ))),
    }
}

/// Rejects zero sizes, which no resize can produce or consume.
pub(crate) fn check_nonzero(dims: &[usize], what: &str) -> Result<()> {
    if dims.contains(&0) {
        return Err(CoreError::Invalid(format!("{what}: zero size in {dims:?}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescale_rounds_half_to_even() {
        // 51·0.5 = 25.5 → 26 (even), 35·… ; 5·0.5 = 2.5 → 2; 7·0.5 = 3.5 → 4.
        assert_eq!(rescale_size(51, 70, 0.5), (26, 35));
        assert_eq!(rescale_size(5, 7, 0.5), (2, 4));
        assert_eq!(rescale_size(5, 7, 0.25), (1, 2));
        assert_eq!(rescale_size(10, 10, -1.0), (0, 0));
    }

    #[test]
    fn rescale_image_uses_rounded_size() {
        let img =
            image::RgbImage::from_fn(7, 5, |x, y| image::Rgb([x as u8 * 30, y as u8 * 40, 9]));
        let half = pil_rescale_rgb(&img, 0.5).unwrap();
        assert_eq!(half.dimensions(), (4, 2));
        assert_eq!(pil_rescale_rgb(&img, 1.0).unwrap(), img);
        assert!(pil_rescale_rgb(&img, 0.05).is_err());
    }

    #[test]
    fn length_checks_name_the_problem() {
        assert!(check_len(6, &[1, 2, 3], "x").is_ok());
        let e = check_len(5, &[1, 2, 3], "bilinear")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bilinear") && e.contains('5') && e.contains('6'),
            "{e}"
        );
        assert!(check_len(0, &[usize::MAX, 3], "x").is_err());
        assert!(check_nonzero(&[2, 0], "x").is_err());
    }
}
