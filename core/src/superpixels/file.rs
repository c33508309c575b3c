//! The superpixel file format (§1.5, §5.3 last step).
//!
//! ICD writes its superpixels with OpenCV as a 3-channel 8-bit PNG whose first array channel
//! holds the region index; OpenCV stores channels as BGR, so the index lands in the PNG's
//! **blue** channel with R = G = 0. We write the same so SSC's own loader reads our files. On
//! reading, any such PNG is decoded as `R + 256·G + 65536·B` (the SSC loader's formula) and the
//! distinct values are relabelled `0..K` in increasing order; 8- and 16-bit grey PNGs (the
//! fixtures' label maps) are read as the grey value.

use std::path::Path;

use image::{DynamicImage, ImageFormat};

use super::Segmentation;
use crate::{CoreError, Result, atomic};

/// Most regions an 8-bit index channel can hold.
pub const MAX_FILE_REGIONS: usize = 256;

/// Encodes `seg` as the ICD/SSC superpixel PNG (index in blue, R = G = 0).
pub fn encode(seg: &Segmentation) -> Result<Vec<u8>> {
    if seg.count > MAX_FILE_REGIONS {
        return Err(CoreError::Invalid(format!(
            "superpixel file holds at most {MAX_FILE_REGIONS} regions, got {}",
            seg.count
        )));
    }
    if seg.labels.len() != seg.width * seg.height {
        return Err(CoreError::Invalid(format!(
            "segmentation has {} labels for {}×{} pixels",
            seg.labels.len(),
            seg.width,
            seg.height
        )));
    }
    let (w, h) = dims_u32(seg.width, seg.height)?;
    let mut rgb = Vec::with_capacity(seg.labels.len() * 3);
    for &l in &seg.labels {
        // `count ≤ 256` bounds valid labels; a larger one is a corrupt segmentation.
        let b = u8::try_from(l)
            .map_err(|_| CoreError::Invalid(format!("label {l} out of range for an 8-bit file")))?;
        rgb.extend_from_slice(&[0, 0, b]);
    }
    let img = image::RgbImage::from_raw(w, h, rgb).expect("buffer sized from dimensions");
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png)
        .map_err(|e| CoreError::Invalid(format!("PNG encoding failed: {e}")))?;
    Ok(out.into_inner())
}

fn dims_u32(width: usize, height: usize) -> Result<(u32, u32)> {
    match (u32::try_from(width), u32::try_from(height)) {
        (Ok(w), Ok(h)) => Ok((w, h)),
        _ => Err(CoreError::Invalid(format!(
            "image {width}×{height} too large for PNG"
        ))),
    }
}

/// Writes `seg` to `path` atomically in the ICD/SSC format.
pub fn write(path: &Path, seg: &Segmentation) -> Result<()> {
    let bytes = encode(seg).map_err(|e| CoreError::format(path, e.to_string()))?;
    atomic::write(path, &bytes)
}

/// Reads a superpixel or label PNG; `path` is only used in messages.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<Segmentation> {
    let img = image::load_from_memory_with_format(bytes, ImageFormat::Png)
        .map_err(|e| CoreError::format(path, format!("not a readable PNG: {e}")))?;
    let (width, height) = (img.width() as usize, img.height() as usize);
    let raw: Vec<u32> = match &img {
        DynamicImage::ImageLuma8(g) => g.as_raw().iter().map(|&v| u32::from(v)).collect(),
        DynamicImage::ImageLuma16(g) => g.as_raw().iter().map(|&v| u32::from(v)).collect(),
        DynamicImage::ImageRgb8(c) => c.as_raw().chunks_exact(3).map(rgb_id).collect(),
        DynamicImage::ImageRgba8(c) => c.as_raw().chunks_exact(4).map(rgb_id).collect(),
        other => {
            return Err(CoreError::format(
                path,
                format!(
                    "unsupported superpixel PNG colour type {:?} (expected 8-bit RGB/RGBA or 8/16-bit grey)",
                    other.color()
                ),
            ));
        }
    };
    Ok(relabel(width, height, &raw))
}

/// The SSC loader's id formula without its `+1`.
fn rgb_id(px: &[u8]) -> u32 {
    u32::from(px[0]) + 256 * u32::from(px[1]) + 65536 * u32::from(px[2])
}

/// Relabels distinct raw values to `0..K` in increasing value order.
fn relabel(width: usize, height: usize, raw: &[u32]) -> Segmentation {
    let mut values = raw.to_vec();
    values.sort_unstable();
    values.dedup();
    let labels = raw
        .iter()
        .map(|v| values.binary_search(v).expect("value collected above") as u32)
        .collect();
    Segmentation {
        width,
        height,
        labels,
        count: values.len(),
    }
}

/// Reads a superpixel or label PNG from `path`.
pub fn read(path: &Path) -> Result<Segmentation> {
    let bytes = std::fs::read(path).map_err(|e| CoreError::io(path, e))?;
    decode(path, &bytes)
}

/// Region ids as the stage-1 loader uses them: label + 1, so 0 stays free for crop padding.
pub fn loader_ids(seg: &Segmentation) -> Vec<u32> {
    seg.labels.iter().map(|&l| l + 1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg() -> Segmentation {
        let labels: Vec<u32> = (0..6 * 4).map(|i| (i * 7 % 5) as u32).collect();
        Segmentation {
            width: 6,
            height: 4,
            labels,
            count: 5,
        }
    }

    #[test]
    fn round_trip_and_blue_channel() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sp/x.png");
        let s = seg();
        write(&p, &s).unwrap();
        let img = image::open(&p).unwrap().to_rgb8();
        for (px, &l) in img.pixels().zip(&s.labels) {
            assert_eq!(px.0, [0, 0, l as u8]);
        }
        assert_eq!(read(&p).unwrap(), s);
        assert_eq!(loader_ids(&s)[1], s.labels[1] + 1);
    }

    #[test]
    fn decodes_any_rgb_partition_in_value_order() {
        // Region ids spread over all three channels, as SSC's loader would see them.
        let px = [[5u8, 0, 0], [0, 1, 0], [0, 0, 1], [5, 0, 0]];
        let img = image::RgbImage::from_raw(4, 1, px.concat()).unwrap();
        let mut bytes = std::io::Cursor::new(Vec::new());
        img.write_to(&mut bytes, ImageFormat::Png).unwrap();
        let s = decode(Path::new("m.png"), bytes.get_ref()).unwrap();
        assert_eq!(s.labels, vec![0, 1, 2, 0]);
        assert_eq!(s.count, 3);
    }

    #[test]
    fn non_png_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("broken.png");
        std::fs::write(&p, b"not a png at all").unwrap();
        let err = read(&p).unwrap_err().to_string();
        assert!(err.contains("broken.png") && err.contains("PNG"), "{err}");
        let missing = read(&dir.path().join("none.png")).unwrap_err().to_string();
        assert!(missing.contains("none.png"), "{missing}");
    }

    #[test]
    fn too_many_regions_is_an_error() {
        let s = Segmentation {
            width: 300,
            height: 1,
            labels: (0..300).collect(),
            count: 300,
        };
        assert!(encode(&s).is_err());
    }
}
