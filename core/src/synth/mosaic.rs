//! A picture of the benchmark: rows of image / ground-truth pairs.

use super::{SynthConfig, render, sample_scene};
use crate::classes::ClassMap;

/// Renders images `first..first+count` of the generator as a mosaic with `cols` pairs per row;
/// each pair is the image and its ground truth in the class colours (ignore band in the VOC
/// void colour). Returns `(width, height, rgb8)`.
pub fn mosaic(cfg: &SynthConfig, first: u64, count: usize, cols: usize) -> (usize, usize, Vec<u8>) {
    let classes: ClassMap = cfg.class_map();
    let palette = classes.palette();
    let cell = (cfg.size as f64 * 1.15).ceil() as usize + 4;
    let cols = cols.max(1);
    let rows = count.div_ceil(cols);
    let (w, h) = (cols * 2 * cell, rows * cell);
    let mut out = vec![255u8; w * h * 3];
    for k in 0..count {
        let scene = sample_scene(cfg, first + k as u64);
        let (rgb, labels) = render(&scene, cfg.ignore_band);
        let (ox, oy) = ((k % cols) * 2 * cell + 2, (k / cols) * cell + 2);
        for y in 0..scene.height {
            for x in 0..scene.width {
                let src = (y * scene.width + x) * 3;
                let dst = ((oy + y) * w + ox + x) * 3;
                out[dst..dst + 3].copy_from_slice(&rgb[src..src + 3]);
                let c = palette[labels[y * scene.width + x] as usize];
                let dst = ((oy + y) * w + ox + cell + x) * 3;
                out[dst..dst + 3].copy_from_slice(&c);
            }
        }
    }
    (w, h, out)
}
