//! Superpixels for stage 1 (§5, file format §1.5): Felzenszwalb–Huttenlocher segmentation
//! ([`fh`]), region features ([`features`]), greedy merge to at most 64 regions ([`merge`]) and
//! the superpixel PNG format ([`mod@file`]).

pub mod features;
pub mod fh;
pub mod file;
pub mod merge;

use crate::{CoreError, Result};
pub use features::{DenseFeatures, Sampling};

/// A partition of a `width×height` image into `count` regions labelled `0..count`
/// (row-major `labels`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segmentation {
    /// Image width in pixels.
    pub width: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Region index per pixel, row-major, each in `0..count`.
    pub labels: Vec<u32>,
    /// Number of regions.
    pub count: usize,
}

impl Segmentation {
    /// Pixel count of each region.
    pub fn sizes(&self) -> Vec<usize> {
        let mut s = vec![0usize; self.count];
        for &l in &self.labels {
            s[l as usize] += 1;
        }
        s
    }
}

/// Region features used by the merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureKind {
    /// Colour and texture histograms ([`features::colour_texture`]); the default, since ICD's
    /// VGG weights are unavailable.
    ColourTexture,
}

/// Superpixel parameters (§5.1, §5.3).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// FH Gaussian smoothing σ.
    pub sigma: f32,
    /// FH scale `k`.
    pub k: f32,
    /// FH minimum component size in pixels.
    pub min_size: usize,
    /// Most regions after the merge (≤ 256 to fit the 8-bit file format).
    pub max_regions: usize,
    /// Region features for the merge.
    pub features: FeatureKind,
}

impl Params {
    /// ICD's settings: σ 0.8, k 75, min_size 75, at most 64 regions.
    pub fn icd() -> Self {
        Params {
            sigma: 0.8,
            k: 75.0,
            min_size: 75,
            max_regions: 64,
            features: FeatureKind::ColourTexture,
        }
    }
}

impl Default for Params {
    fn default() -> Self {
        Params::icd()
    }
}

/// FH segmentation of `rgb` (interleaved `height×width×3`) with `params`.
pub fn fh_only(rgb: &[u8], width: usize, height: usize, params: &Params) -> Result<Segmentation> {
    fh::segment(rgb, width, height, params.sigma, params.k, params.min_size)
}

/// Superpixels as ICD makes them: FH, then the greedy merge to at most `max_regions` with the
/// features named in `params` (§5).
pub fn superpixels(
    rgb: &[u8],
    width: usize,
    height: usize,
    params: &Params,
) -> Result<Segmentation> {
    let seg = fh_only(rgb, width, height, params)?;
    if seg.count <= params.max_regions {
        return Ok(seg);
    }
    let feats = match params.features {
        FeatureKind::ColourTexture => features::colour_texture(rgb, &seg)?,
    };
    merge::merge(
        &seg,
        &feats,
        features::COLOUR_TEXTURE_DIM,
        params.max_regions,
    )
}

/// [`superpixels`] of an `image` RGB buffer.
pub fn superpixels_image(image: &image::RgbImage, params: &Params) -> Result<Segmentation> {
    superpixels(
        image.as_raw(),
        image.width() as usize,
        image.height() as usize,
        params,
    )
}

/// FH, then the merge on a caller-supplied dense feature map (e.g. CNN features of any loaded
/// backbone) averaged per region, as ICD does with VGG-16 conv5_3 (§5.2). `params.features`
/// is ignored.
pub fn superpixels_with_features(
    rgb: &[u8],
    width: usize,
    height: usize,
    params: &Params,
    dense: &DenseFeatures,
) -> Result<Segmentation> {
    let seg = fh_only(rgb, width, height, params)?;
    if seg.count <= params.max_regions {
        return Ok(seg);
    }
    let feats = features::dense_means(dense, &seg)?;
    merge::merge(&seg, &feats, dense.channels, params.max_regions)
}

/// Checks that `seg` is a consistent partition (sizes, label range).
pub fn validate(seg: &Segmentation) -> Result<()> {
    if seg.labels.len() != seg.width * seg.height {
        return Err(CoreError::Invalid(format!(
            "segmentation has {} labels for {}×{} pixels",
            seg.labels.len(),
            seg.width,
            seg.height
        )));
    }
    if let Some(&l) = seg.labels.iter().find(|&&l| l as usize >= seg.count) {
        return Err(CoreError::Invalid(format!(
            "segmentation label {l} ≥ region count {}",
            seg.count
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small image of four flat quadrants with distinct colours, two pairs alike.
    fn quadrants(w: usize, h: usize) -> Vec<u8> {
        let mut rgb = vec![0u8; w * h * 3];
        for (i, px) in rgb.chunks_exact_mut(3).enumerate() {
            let (x, y) = (i % w, i / w);
            let v = match (x < w / 2, y < h / 2) {
                (true, true) => [250, 0, 0],
                (false, true) => [0, 0, 250],
                (true, false) => [0, 0, 240],
                (false, false) => [240, 0, 0],
            };
            px.copy_from_slice(&v);
        }
        rgb
    }

    #[test]
    fn merges_alike_quadrants_into_non_adjacent_regions() {
        let (w, h) = (40, 30);
        let rgb = quadrants(w, h);
        let p = Params {
            max_regions: 2,
            ..Params::icd()
        };
        assert_eq!(fh_only(&rgb, w, h, &p).unwrap().count, 4);
        let s = superpixels(&rgb, w, h, &p).unwrap();
        assert_eq!(s.count, 2);
        // Diagonal quadrants share a colour and merge although they only touch at a corner.
        let at = |x: usize, y: usize| s.labels[y * w + x];
        assert_eq!(at(0, 0), at(w - 1, h - 1));
        assert_eq!(at(w - 1, 0), at(0, h - 1));
        assert_ne!(at(0, 0), at(w - 1, 0));
        validate(&s).unwrap();
    }

    #[test]
    fn params_serde_defaults_are_icd() {
        let p: Params = serde_json::from_str(r#"{"max_regions": 32}"#).unwrap();
        assert_eq!(
            p,
            Params {
                max_regions: 32,
                ..Params::icd()
            }
        );
        assert_eq!(
            serde_json::to_value(Params::icd()).unwrap()["features"],
            "colour_texture"
        );
        assert!(serde_json::from_str::<Params>(r#"{"kk": 1}"#).is_err());
    }
}
