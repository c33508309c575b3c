//! The report's pictures: thumbnails of photographs, label maps in the class palette, CAM heat
//! maps over the photograph, each encoded as a `data:` URI so the page carries them itself.

use std::io::Cursor;

use base64::Engine;
use image::imageops::FilterType;
use image::{ImageFormat, RgbImage};
use ssc_core::cam::CamRecord;
use ssc_core::classes::{IGNORE, IGNORE_COLOR};
use ssc_core::mask::LabelMap;

/// `(w, h)` scaled so the long side is at most `long` (never enlarged, never zero).
pub fn thumb_size(w: u32, h: u32, long: u32) -> (u32, u32) {
    let s = (long as f64 / w.max(h).max(1) as f64).min(1.0);
    (
        ((w as f64 * s).round() as u32).max(1),
        ((h as f64 * s).round() as u32).max(1),
    )
}

/// The photograph at thumbnail size.
pub fn photo_thumb(img: &RgbImage, long: u32) -> RgbImage {
    let (w, h) = thumb_size(img.width(), img.height(), long);
    image::imageops::resize(img, w, h, FilterType::Triangle)
}

/// A label map in the palette's colours (ignored pixels in the VOC void colour), resized with
/// nearest-neighbour sampling to `(w, h)`.
pub fn mask_thumb(map: &LabelMap, palette: &[[u8; 3]; 256], w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let sx = ((x as u64 * map.width as u64) / w as u64) as usize;
        let sy = ((y as u64 * map.height as u64) / h as u64) as usize;
        let v = map.data[sy * map.width + sx];
        image::Rgb(if v == IGNORE {
            IGNORE_COLOR
        } else {
            palette[v as usize]
        })
    })
}

/// Channel `k` of the CAM as a turbo heat map blended half and half over `photo` (already at
/// thumbnail size).
pub fn heat_map(cam: &CamRecord, k: usize, photo: &RgbImage) -> RgbImage {
    let (h, w) = cam.size;
    let plane = &cam.high_res[k * h * w..(k + 1) * h * w];
    let (tw, th) = (photo.width(), photo.height());
    RgbImage::from_fn(tw, th, |x, y| {
        let sx = ((x as u64 * w as u64) / tw as u64) as usize;
        let sy = ((y as u64 * h as u64) / th as u64) as usize;
        let v = plane[sy * w + sx].clamp(0.0, 1.0) as f64;
        let c = colorous::TURBO.eval_continuous(v);
        let p = photo.get_pixel(x, y).0;
        let mix = |a: u8, b: u8| ((a as u16 + b as u16) / 2) as u8;
        image::Rgb([mix(p[0], c.r), mix(p[1], c.g), mix(p[2], c.b)])
    })
}

/// `img` as a `data:` URI (JPEG for photographs and heat maps, PNG for label maps).
pub fn data_uri(img: &RgbImage, jpeg: bool) -> Result<String, image::ImageError> {
    let mut bytes = Cursor::new(Vec::new());
    let mime = if jpeg {
        let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 85);
        enc.encode_image(img)?;
        "image/jpeg"
    } else {
        img.write_to(&mut bytes, ImageFormat::Png)?;
        "image/png"
    };
    Ok(format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes.into_inner())
    ))
}

/// The image's mean IoU over the classes in its ground truth or prediction (ignored pixels
/// left out); `None` when the sizes differ or no pixel is scored.
pub fn image_miou(pred: &LabelMap, gt: &LabelMap) -> Option<f64> {
    if pred.width != gt.width || pred.height != gt.height {
        return None;
    }
    let (mut inter, mut union) = ([0u64; 256], [0u64; 256]);
    for (&p, &g) in pred.data.iter().zip(&gt.data) {
        if g == IGNORE {
            continue;
        }
        if p == g {
            inter[p as usize] += 1;
            union[p as usize] += 1;
        } else {
            union[p as usize] += 1;
            union[g as usize] += 1;
        }
    }
    let scored: Vec<f64> = (0..256)
        .filter(|&c| union[c] > 0)
        .map(|c| inter[c] as f64 / union[c] as f64)
        .collect();
    (!scored.is_empty()).then(|| scored.iter().sum::<f64>() / scored.len() as f64)
}

/// `n` positions spread evenly over `len` items ranked best first: the first is the best, the
/// last the worst, and with odd `n` the middle one is the median.
pub fn spread(len: usize, n: usize) -> Vec<usize> {
    if len == 0 || n == 0 {
        return Vec::new();
    }
    if n >= len {
        return (0..len).collect();
    }
    if n == 1 {
        return vec![(len - 1) / 2];
    }
    let mut out: Vec<usize> = (0..n)
        .map(|k| ((k * (len - 1)) as f64 / (n - 1) as f64).round() as usize)
        .collect();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_takes_best_median_and_worst() {
        assert_eq!(spread(101, 3), vec![0, 50, 100]);
        assert_eq!(spread(11, 5), vec![0, 3, 5, 8, 10]);
        assert_eq!(spread(4, 9), vec![0, 1, 2, 3]);
        assert_eq!(spread(7, 1), vec![3]);
        assert!(spread(0, 3).is_empty());
    }

    #[test]
    fn image_miou_scores_present_classes_and_skips_ignore() {
        let gt = LabelMap::new(4, 1, vec![0, 1, 1, IGNORE]).unwrap();
        let pred = LabelMap::new(4, 1, vec![0, 1, 0, 2]).unwrap();
        // class 0: 1 / 2, class 1: 1 / 2; the ignored pixel's class 2 is not counted.
        assert_eq!(image_miou(&pred, &gt), Some(0.5));
        let other = LabelMap::new(2, 2, vec![0; 4]).unwrap();
        assert_eq!(image_miou(&other, &gt), None);
    }

    #[test]
    fn thumbnails_keep_the_aspect_and_never_vanish() {
        assert_eq!(thumb_size(500, 375, 200), (200, 150));
        assert_eq!(thumb_size(100, 50, 200), (100, 50));
        assert_eq!(thumb_size(1000, 1, 100), (100, 1));
    }
}
