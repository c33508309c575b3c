//! Superpixels for stage 1 (§5, file format §1.5): Felzenszwalb–Huttenlocher segmentation
//! ([`fh`]), region features ([`features`]), greedy merge to at most 64 regions ([`merge`]) and
//! the superpixel PNG format ([`file`]).

pub mod fh;
pub mod file;

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
