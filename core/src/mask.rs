//! Label maps: reading and writing segmentation masks as PNG (§1.1, §1.2, §10.6).
//!
//! Three PNG flavours occur in practice and all decode to class indices:
//! * palette ("P") PNGs such as VOC `SegmentationClass`: the palette **indices** are the class
//!   ids, the colours are only for display;
//! * 8-bit grey PNGs (`SegmentationClassAug`, COCO masks, ssc's own outputs): grey value = id;
//!   16-bit grey is accepted while every value fits in a byte;
//! * RGB/RGBA colour PNGs (exported by annotation tools): each exact colour is looked up in the
//!   class map's colours, the VOC void colour (224,224,192) meaning ignore (255).
//!   Alpha is ignored: the colour alone decides the class.
//!
//! Writes go through [`crate::atomic`], so an interrupted run never leaves a truncated mask.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::Path;

use crate::classes::{ClassMap, IGNORE, IGNORE_COLOR};
use crate::{CoreError, Result, atomic};

/// A per-pixel class-index map, row-major; [`IGNORE`] (255) marks ignored pixels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMap {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height` class indices, row-major.
    pub data: Vec<u8>,
}

impl LabelMap {
    /// A map from raw data; fails when `data.len() != width * height`.
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Result<Self> {
        if width.checked_mul(height) != Some(data.len()) {
            return Err(CoreError::Invalid(format!(
                "label map of {width}x{height} needs {} values, got {}",
                width.saturating_mul(height),
                data.len()
            )));
        }
        Ok(LabelMap {
            width,
            height,
            data,
        })
    }

    /// A map filled with `value`.
    pub fn filled(width: usize, height: usize, value: u8) -> Self {
        LabelMap {
            width,
            height,
            data: vec![value; width * height],
        }
    }

    /// The label at column `x`, row `y`, or `None` outside the map.
    pub fn get(&self, x: usize, y: usize) -> Option<u8> {
        (x < self.width && y < self.height).then(|| self.data[y * self.width + x])
    }

    /// `(width, height)`.
    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }
}

/// Sorted distinct values present in `map`, ignore (255) included when present.
pub fn present_classes(map: &LabelMap) -> Vec<u8> {
    let mut seen = [false; 256];
    for &v in &map.data {
        seen[v as usize] = true;
    }
    (0..=255u8).filter(|&v| seen[v as usize]).collect()
}

/// Multi-hot image labels over the foreground classes (length `classes.len() − 1`): entry
/// `c − 1` is 1 when class `c` occurs. Background (0) and ignore (255) do not count. A value
/// that is neither a class of `classes` nor ignore is an error naming `path`.
pub fn foreground_labels(map: &LabelMap, classes: &ClassMap, path: &Path) -> Result<Vec<u8>> {
    check_values(map, classes, path)?;
    let mut labels = vec![0u8; classes.num_foreground()];
    for c in present_classes(map) {
        if c != 0 && c != IGNORE {
            labels[c as usize - 1] = 1;
        }
    }
    Ok(labels)
}

/// Checks that every value is a class index of `classes` or ignore; the error names `path`,
/// the value and its first pixel position.
pub fn check_values(map: &LabelMap, classes: &ClassMap, path: &Path) -> Result<()> {
    let n = classes.len();
    if let Some(i) = map
        .data
        .iter()
        .position(|&v| v != IGNORE && v as usize >= n)
    {
        let (x, y) = (i % map.width.max(1), i / map.width.max(1));
        return Err(CoreError::format(
            path,
            format!(
                "label {} at pixel (x={x}, y={y}) is not one of the {n} classes nor {IGNORE}",
                map.data[i]
            ),
        ));
    }
    Ok(())
}

/// Checks that `map` is `width × height` (e.g. the size of its image); the error names `path`.
pub fn check_size(map: &LabelMap, width: usize, height: usize, path: &Path) -> Result<()> {
    if map.size() != (width, height) {
        return Err(CoreError::format(
            path,
            format!(
                "mask is {}x{} but its image is {width}x{height}",
                map.width, map.height
            ),
        ));
    }
    Ok(())
}

/// Reads a mask PNG into class indices (see the module docs for the accepted flavours).
/// `classes` is only consulted for colour PNGs.
pub fn read_mask(path: &Path, classes: &ClassMap) -> Result<LabelMap> {
    let bytes = std::fs::read(path).map_err(|e| CoreError::io(path, e))?;
    decode_mask(&bytes, classes, path)
}

/// Decodes PNG bytes like [`read_mask`]; `path` is only used in messages.
pub fn decode_mask(bytes: &[u8], classes: &ClassMap, path: &Path) -> Result<LabelMap> {
    let bad = |m: String| CoreError::format(path, m);
    if bytes.is_empty() {
        return Err(bad("empty file, expected a PNG mask".into()));
    }
    // IDENTITY keeps palette indices instead of expanding them to colours.
    let decoder = png::Decoder::new(Cursor::new(bytes));
    let mut reader = decoder
        .read_info()
        .map_err(|e| bad(format!("not a readable PNG: {e}")))?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| bad("image too large".into()))?;
    let mut buf = vec![0u8; size];
    let frame = reader
        .next_frame(&mut buf)
        .map_err(|e| bad(format!("corrupt or truncated PNG: {e}")))?;
    buf.truncate(frame.buffer_size());
    let (w, h) = (frame.width as usize, frame.height as usize);
    let line = frame.line_size;
    let depth = frame.bit_depth as u8;
    use png::ColorType::*;
    let data = match (frame.color_type, depth) {
        (Indexed | Grayscale, 1 | 2 | 4) => unpack_low_bits(&buf, w, h, line, depth),
        (Indexed | Grayscale, 8) => rows(&buf, w, h, line, 1).collect(),
        (Grayscale, 16) => grey16(&buf, w, line, path)?,
        (GrayscaleAlpha, 8) => rows(&buf, w, h, line, 2).collect(),
        (GrayscaleAlpha, 16) => grey16_stride(&buf, w, line, 4, path)?,
        (Rgb, 8) => colours(&buf, w, line, 3, classes, path)?,
        (Rgba, 8) => colours(&buf, w, line, 4, classes, path)?,
        (ct, d) => {
            return Err(bad(format!(
                "unsupported mask PNG type {ct:?} with {d}-bit samples \
                 (expected palette, grey or 8-bit RGB/RGBA)"
            )));
        }
    };
    LabelMap::new(w, h, data)
}

/// First sample of each pixel, row by row (skips alpha / row padding).
fn rows(buf: &[u8], w: usize, h: usize, line: usize, bpp: usize) -> impl Iterator<Item = u8> {
    (0..h).flat_map(move |y| (0..w).map(move |x| buf[y * line + x * bpp]))
}

/// Unpacks 1/2/4-bit samples (most significant bits first, rows byte-aligned) to one byte
/// each, keeping the raw sample value (a 1-bit mask reads as 0/1, not 0/255).
fn unpack_low_bits(buf: &[u8], w: usize, h: usize, line: usize, depth: u8) -> Vec<u8> {
    let per_byte = 8 / depth as usize;
    let mask = (1u16 << depth) as u8 - 1;
    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        for x in 0..w {
            let byte = buf[y * line + x / per_byte];
            let shift = 8 - depth as usize * (x % per_byte + 1);
            out.push((byte >> shift) & mask);
        }
    }
    out
}

fn grey16(buf: &[u8], w: usize, line: usize, path: &Path) -> Result<Vec<u8>> {
    grey16_stride(buf, w, line, 2, path)
}

/// 16-bit big-endian grey samples narrowed to bytes; a value above 255 cannot be a class id.
fn grey16_stride(buf: &[u8], w: usize, line: usize, stride: usize, path: &Path) -> Result<Vec<u8>> {
    let h = buf.len() / line.max(1);
    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        for x in 0..w {
            let o = y * line + x * stride;
            let v = u16::from_be_bytes([buf[o], buf[o + 1]]);
            if v > 255 {
                return Err(CoreError::format(
                    path,
                    format!(
                        "16-bit mask value {v} at pixel (x={x}, y={y}) is above 255 \
                         and cannot be a class index"
                    ),
                ));
            }
            out.push(v as u8);
        }
    }
    Ok(out)
}

/// Exact colour → class index through the class colours plus the VOC void colour.
fn colours(
    buf: &[u8],
    w: usize,
    line: usize,
    bpp: usize,
    classes: &ClassMap,
    path: &Path,
) -> Result<Vec<u8>> {
    let mut lut: HashMap<[u8; 3], u8> = HashMap::new();
    lut.insert(IGNORE_COLOR, IGNORE);
    // Reverse order so that, if two classes share a colour, the lower index wins.
    for (i, c) in classes.colors.iter().enumerate().rev() {
        lut.insert(*c, i as u8);
    }
    let h = buf.len() / line.max(1);
    let mut out = Vec::with_capacity(w * h);
    let mut last: Option<([u8; 3], u8)> = None;
    for y in 0..h {
        for x in 0..w {
            let o = y * line + x * bpp;
            let rgb = [buf[o], buf[o + 1], buf[o + 2]];
            // Masks are mostly runs of one colour: skip the hash lookup on repeats.
            let v = match last {
                Some((c, v)) if c == rgb => v,
                _ => {
                    let v = *lut.get(&rgb).ok_or_else(|| {
                        CoreError::format(
                            path,
                            format!(
                                "colour ({}, {}, {}) at pixel (x={x}, y={y}) is not the colour \
                                 of any of the {} classes nor the void colour {IGNORE_COLOR:?}",
                                rgb[0],
                                rgb[1],
                                rgb[2],
                                classes.len()
                            ),
                        )
                    })?;
                    last = Some((rgb, v));
                    v
                }
            };
            out.push(v);
        }
    }
    Ok(out)
}

/// Writes `map` as an indexed PNG with the 256-entry palette of `classes` (8-bit indices,
/// 255 drawn in the void colour), so image viewers show VOC colours and Pillow opens it as
/// mode "P" with the indices as values. Atomic.
pub fn write_palette_png(path: &Path, map: &LabelMap, classes: &ClassMap) -> Result<()> {
    let palette: Vec<u8> = classes.palette().iter().flatten().copied().collect();
    write_png(path, map, png::ColorType::Indexed, Some(palette))
}

/// Writes `map` as an 8-bit grey PNG whose values are the class indices. Atomic.
pub fn write_grey_png(path: &Path, map: &LabelMap) -> Result<()> {
    write_png(path, map, png::ColorType::Grayscale, None)
}

fn write_png(
    path: &Path,
    map: &LabelMap,
    color: png::ColorType,
    palette: Option<Vec<u8>>,
) -> Result<()> {
    if map.width.checked_mul(map.height) != Some(map.data.len()) || map.data.is_empty() {
        return Err(CoreError::Invalid(format!(
            "{}: cannot write a {}x{} label map holding {} values",
            path.display(),
            map.width,
            map.height,
            map.data.len()
        )));
    }
    let (w, h) = (
        u32::try_from(map.width).map_err(|_| too_big(path))?,
        u32::try_from(map.height).map_err(|_| too_big(path))?,
    );
    atomic::write_with(path, |out| {
        let mut enc = png::Encoder::new(out, w, h);
        enc.set_color(color);
        enc.set_depth(png::BitDepth::Eight);
        if let Some(p) = palette {
            enc.set_palette(p);
        }
        let mut writer = enc.write_header()?;
        writer.write_image_data(&map.data)?;
        writer.finish()?;
        Ok(())
    })
}

fn too_big(path: &Path) -> CoreError {
    CoreError::Invalid(format!("{}: label map too large for PNG", path.display()))
}
