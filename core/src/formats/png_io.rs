//! Small PNG helpers for the annotation formats: RGB encoding of colour masks and decoding of
//! any PNG to 8-bit RGB (palette, grey, alpha and 16-bit inputs are expanded or stripped).

use std::io::Cursor;

use crate::{CoreError, Result};

/// Encodes an 8-bit RGB image (`rgb.len() == 3·w·h`) as PNG bytes; `what` names the output in
/// errors.
pub(crate) fn encode_rgb(w: u32, h: u32, rgb: &[u8], what: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let err = |e: png::EncodingError| CoreError::Invalid(format!("{what}: PNG encoding: {e}"));
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(err)?;
    writer.write_image_data(rgb).map_err(err)?;
    writer.finish().map_err(err)?;
    Ok(out)
}

/// Decodes PNG bytes to `(width, height, rgb)`; `what` names the input in errors. Alpha is
/// dropped (annotation masks are opaque).
pub(crate) fn decode_rgb(bytes: &[u8], what: &str) -> Result<(u32, u32, Vec<u8>)> {
    let err = |e: png::DecodingError| CoreError::format(what, format!("not a readable PNG: {e}"));
    let mut dec = png::Decoder::new(Cursor::new(bytes));
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = dec.read_info().map_err(err)?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| CoreError::format(what, "PNG too large"))?;
    let mut buf = vec![0u8; size];
    let info = reader.next_frame(&mut buf).map_err(err)?;
    buf.truncate(info.buffer_size());
    let (w, h) = (info.width, info.height);
    let rgb = match info.color_type {
        png::ColorType::Rgb => buf,
        png::ColorType::Rgba => buf
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        png::ColorType::Grayscale => buf.iter().flat_map(|&g| [g, g, g]).collect(),
        png::ColorType::GrayscaleAlpha => buf.chunks_exact(2).flat_map(|p| [p[0]; 3]).collect(),
        png::ColorType::Indexed => {
            return Err(CoreError::format(what, "palette PNG was not expanded"));
        }
    };
    Ok((w, h, rgb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rgb_round_trip_and_garbage() {
        let rgb: Vec<u8> = (0..2 * 3 * 3).map(|i| (i * 13) as u8).collect();
        let png = encode_rgb(3, 2, &rgb, "x").unwrap();
        assert_eq!(decode_rgb(&png, "x").unwrap(), (3, 2, rgb));
        let e = decode_rgb(b"nope", "dir/a.png").unwrap_err().to_string();
        assert!(e.contains("dir/a.png"), "{e}");
    }
}
