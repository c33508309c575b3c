//! Reading and writing images (spec §1.1: JPEG inputs; §3–§6 outputs as PNG).
//!
//! Files are decoded by content, never by extension, to 8-bit RGB: grey and grey+alpha are
//! expanded, alpha is dropped (not composited), palette PNGs are expanded through their
//! palette, 16-bit samples are scaled to 8 bits with rounding (`round(v·255/65535)`), and
//! CMYK/YCCK JPEGs are converted to RGB by the decoder (zune-jpeg, Adobe inverted-ink
//! convention). EXIF orientation is
//! applied, so width and height are those of the image as displayed. Formats: JPEG, PNG,
//! GIF (first frame), BMP, TIFF and WebP (the workspace's `image` features).
//!
//! Every error is a [`CoreError`] naming the file (or the name given for in-memory data) and
//! the problem. A header-declared size above [`DecodeOptions::max_pixels`] is refused before
//! any pixel buffer is allocated, which guards against decompression bombs.

use std::io::Cursor;
use std::path::Path;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageEncoder, ImageError, ImageReader, RgbImage};

use crate::{CoreError, Result, atomic};

/// Default pixel limit (width·height): Pillow's `DecompressionBombError` threshold
/// (2 × 89,478,485), far above any dataset image (VOC ≤ 500×500) yet below sizes whose RGB
/// buffers would exhaust memory on a typical machine.
pub const DEFAULT_MAX_PIXELS: u64 = 2 * 89_478_485;

/// Lower-case extensions of the files a folder scan treats as images.
pub const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "jpe", "jfif", "png", "bmp", "gif", "tif", "tiff", "webp",
];

/// `true` if `path` has one of [`IMAGE_EXTENSIONS`] (case-insensitive). Only for choosing
/// files in a folder scan: decoding itself looks at the content.
pub fn is_image_path(path: impl AsRef<Path>) -> bool {
    path.as_ref()
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Decoding options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Largest accepted width·height (checked against the header before decoding).
    pub max_pixels: u64,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }
}

/// Decodes the image file at `path` to RGB8 with default options.
pub fn read_rgb(path: impl AsRef<Path>) -> Result<RgbImage> {
    read_rgb_with(path, &DecodeOptions::default())
}

/// Decodes the image file at `path` to RGB8.
pub fn read_rgb_with(path: impl AsRef<Path>, opts: &DecodeOptions) -> Result<RgbImage> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| CoreError::io(path, e))?;
    decode(&bytes, path, opts)
}

/// Decodes in-memory image data (e.g. an upload) to RGB8 with default options; `name` is
/// used in error messages.
pub fn read_rgb_bytes(bytes: &[u8], name: &str) -> Result<RgbImage> {
    read_rgb_bytes_with(bytes, name, &DecodeOptions::default())
}

/// Decodes in-memory image data to RGB8; `name` is used in error messages.
pub fn read_rgb_bytes_with(bytes: &[u8], name: &str, opts: &DecodeOptions) -> Result<RgbImage> {
    decode(bytes, Path::new(name), opts)
}

/// `(width, height)` of the image at `path` as [`read_rgb`] would return it (EXIF
/// orientation applied), read from the header without decoding pixels.
pub fn image_size(path: impl AsRef<Path>) -> Result<(u32, u32)> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| CoreError::io(path, e))?;
    let len = file.metadata().map_err(|e| CoreError::io(path, e))?.len();
    if len == 0 {
        return Err(CoreError::format(path, "empty file"));
    }
    let mut decoder = open_decoder(std::io::BufReader::new(file), path)?;
    let (w, h) = decoder.dimensions();
    let orientation = decoder.orientation().map_err(|e| describe(path, e))?;
    Ok(if swaps_axes(orientation) {
        (h, w)
    } else {
        (w, h)
    })
}

/// Writes `img` as an 8-bit RGB PNG, atomically.
pub fn write_png_rgb(path: impl AsRef<Path>, img: &RgbImage) -> Result<()> {
    let path = path.as_ref();
    atomic::write_with(path, |w| {
        PngEncoder::new(w)
            .write_image(
                img.as_raw(),
                img.width(),
                img.height(),
                image::ExtendedColorType::Rgb8,
            )
            .map_err(std::io::Error::other)
    })
}

/// Writes `img` as a baseline JPEG with `quality` in 1..=100, atomically.
pub fn write_jpeg_rgb(path: impl AsRef<Path>, img: &RgbImage, quality: u8) -> Result<()> {
    let path = path.as_ref();
    if !(1..=100).contains(&quality) {
        return Err(CoreError::Invalid(format!(
            "{}: JPEG quality {quality} is outside 1..=100",
            path.display()
        )));
    }
    atomic::write_with(path, |w| {
        JpegEncoder::new_with_quality(w, quality)
            .write_image(
                img.as_raw(),
                img.width(),
                img.height(),
                image::ExtendedColorType::Rgb8,
            )
            .map_err(std::io::Error::other)
    })
}

fn open_decoder<'a, R: std::io::BufRead + std::io::Seek + 'a>(
    reader: R,
    path: &Path,
) -> Result<impl ImageDecoder + use<'a, R>> {
    let mut reader = ImageReader::new(reader)
        .with_guessed_format()
        .map_err(|e| CoreError::io(path, e))?;
    if reader.format().is_none() {
        return Err(CoreError::format(
            path,
            "not a supported image (content is not JPEG, PNG, GIF, BMP, TIFF or WebP)",
        ));
    }
    // Our own pixel check runs on the header; the decoder-side allocation cap is off so that
    // the two limits cannot disagree.
    reader.no_limits();
    reader.into_decoder().map_err(|e| describe(path, e))
}

fn decode(bytes: &[u8], path: &Path, opts: &DecodeOptions) -> Result<RgbImage> {
    if bytes.is_empty() {
        return Err(CoreError::format(path, "empty file"));
    }
    let mut decoder = open_decoder(Cursor::new(bytes), path)?;
    let (w, h) = decoder.dimensions();
    let pixels = u64::from(w) * u64::from(h);
    if pixels > opts.max_pixels {
        return Err(CoreError::format(
            path,
            format!(
                "image is {w}x{h} = {pixels} pixels, above the limit of {} (raise \
                 DecodeOptions::max_pixels if this is intended)",
                opts.max_pixels
            ),
        ));
    }
    if w == 0 || h == 0 {
        return Err(CoreError::format(
            path,
            format!("image has zero size {w}x{h}"),
        ));
    }
    let orientation = decoder.orientation().map_err(|e| describe(path, e))?;
    // zune-jpeg decodes a cut-off JPEG without complaint (grey fill), so require the
    // end-of-image marker after the first scan. (A complete JPEG that merely lacks EOI is
    // refused too; such files are rare and usually damaged.)
    if bytes.starts_with(&[0xFF, 0xD8]) && !jpeg_has_end(bytes) {
        return Err(CoreError::format(
            path,
            "truncated JPEG: no end-of-image marker after the image data",
        ));
    }
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| describe(path, e))?;
    img.apply_orientation(orientation);
    Ok(img.into_rgb8())
}

fn swaps_axes(o: Orientation) -> bool {
    matches!(
        o,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

/// Turns a decoder error into a message a user can act on.
fn describe(path: &Path, e: ImageError) -> CoreError {
    let msg = match &e {
        ImageError::Unsupported(u) => format!("unsupported image: {u}"),
        ImageError::Decoding(d) => format!("corrupt or truncated image data: {d}"),
        ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            format!("truncated image data: {io}")
        }
        ImageError::Limits(l) => format!("image exceeds decoder limits: {l}"),
        other => format!("cannot decode image: {other}"),
    };
    CoreError::format(path, msg)
}

/// `true` if a JPEG byte stream has an end-of-image marker (FF D9) after its first
/// start-of-scan. Marker segments before the scan are skipped by their length, so an EXIF
/// thumbnail's own markers are not mistaken for the main image's.
fn jpeg_has_end(b: &[u8]) -> bool {
    let mut i = 2; // after SOI
    loop {
        // Fill bytes (FF FF …) may precede a marker.
        while i < b.len() && b[i] == 0xFF && b.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        if i + 4 > b.len() || b[i] != 0xFF {
            return false;
        }
        let marker = b[i + 1];
        if (0xD0..=0xD7).contains(&marker) || marker == 0x01 {
            i += 2;
            continue;
        }
        let len = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
        if marker == 0xDA {
            // Inside scans, FF is stuffed (FF 00) and RST markers are FF D0–D7, so FF D9 only
            // occurs as the real end-of-image marker.
            return b[i + 2..].windows(2).any(|w| w == [0xFF, 0xD9]);
        }
        i += 2 + len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_are_case_insensitive() {
        assert!(is_image_path("a/b/2007_000032.JPG"));
        assert!(is_image_path("x.webp"));
        assert!(!is_image_path("x.txt"));
        assert!(!is_image_path("jpg"));
    }

    #[test]
    fn jpeg_end_marker_scan_skips_segments() {
        // SOI, APP1 (len 6) containing a fake FF D9, SOS (len 2), data, EOI.
        let mut ok = vec![0xFF, 0xD8, 0xFF, 0xE1, 0, 6, 0xFF, 0xD9, 0, 0];
        ok.extend([0xFF, 0xDA, 0, 2, 1, 2, 0xFF, 0x00, 3, 0xFF, 0xD9]);
        assert!(jpeg_has_end(&ok));
        let cut = &ok[..ok.len() - 2];
        assert!(!jpeg_has_end(cut));
        // The APP1's FF D9 must not count when the scan is cut.
        assert!(!jpeg_has_end(&ok[..12]));
    }
}
