//! Image decoding and writing (`ssc_core::imageio`): the real VOC JPEGs, PNG colour types
//! built here with the `png`/`image` encoders, EXIF orientation, other container formats,
//! and the error cases a user can hit (each error must name the file).

use std::io::Cursor;
use std::path::Path;

use image::{GrayAlphaImage, GrayImage, ImageFormat, Rgb, RgbImage, RgbaImage};
use ssc_core::imageio::{
    DecodeOptions, image_size, is_image_path, read_rgb, read_rgb_bytes, read_rgb_bytes_with,
    read_rgb_with, write_jpeg_rgb, write_png_rgb,
};

/// A small RGB test pattern with distinct values per pixel and channel.
fn pattern(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            (x * 37 + y * 11) as u8,
            (x * 5 + y * 53) as u8,
            (x * y * 7 + 3) as u8,
        ])
    })
}

fn encode(img: &image::DynamicImage, fmt: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, fmt).unwrap();
    out.into_inner()
}

fn png_bytes(
    w: u32,
    h: u32,
    color: png::ColorType,
    depth: png::BitDepth,
    data: &[u8],
    palette: Option<Vec<u8>>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(color);
    enc.set_depth(depth);
    if let Some(p) = palette {
        enc.set_palette(p);
    }
    let mut writer = enc.write_header().unwrap();
    writer.write_image_data(data).unwrap();
    writer.finish().unwrap();
    out
}

#[test]
fn decodes_real_voc_jpegs_with_index_sizes() {
    let Some(dir) = ssc_core::fixtures::voc_samples(env!("CARGO_MANIFEST_DIR")) else {
        return;
    };
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap()).unwrap();
    let pairs = index["pairs"].as_array().unwrap();
    assert!(!pairs.is_empty());
    for p in pairs {
        let id = p["id"].as_str().unwrap();
        let wh: Vec<u32> = p["image_size_wh"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let path = dir.join("JPEGImages").join(format!("{id}.jpg"));
        let img = read_rgb(&path).unwrap();
        assert_eq!(vec![img.width(), img.height()], wh, "{id}");
        assert_eq!(image_size(&path).unwrap(), (wh[0], wh[1]), "{id}");
        // A real photo: many distinct values, not a constant fill from a silent failure.
        let mut seen = [false; 256];
        img.as_raw().iter().for_each(|&v| seen[v as usize] = true);
        assert!(seen.iter().filter(|&&s| s).count() > 200, "{id}");
        // Palette masks decode through their palette to VOC colours (class 0 = black).
        let mask = read_rgb(dir.join("SegmentationClass").join(format!("{id}.png"))).unwrap();
        assert_eq!((mask.width(), mask.height()), (wh[0], wh[1]));
        assert!(mask.pixels().any(|p| p.0 == [0, 0, 0]), "{id}");
    }
}

#[test]
fn png_colour_types_become_rgb8() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (7u32, 5u32);
    let rgb = pattern(w, h);

    let grey = GrayImage::from_fn(w, h, |x, y| image::Luma([(x * 30 + y) as u8]));
    let got = read_rgb_bytes(&encode(&grey.clone().into(), ImageFormat::Png), "grey.png").unwrap();
    for (g, p) in grey.pixels().zip(got.pixels()) {
        assert_eq!(p.0, [g.0[0]; 3]);
    }

    let la = GrayAlphaImage::from_fn(w, h, |x, _| image::LumaA([(x * 9) as u8, (x * 40) as u8]));
    let got = read_rgb_bytes(&encode(&la.clone().into(), ImageFormat::Png), "la.png").unwrap();
    for (g, p) in la.pixels().zip(got.pixels()) {
        assert_eq!(p.0, [g.0[0]; 3], "alpha must be dropped, not composited");
    }

    let rgba = RgbaImage::from_fn(w, h, |x, y| {
        let p = rgb.get_pixel(x, y).0;
        image::Rgba([p[0], p[1], p[2], (x * 40) as u8])
    });
    let path = dir.path().join("rgba.png");
    std::fs::write(&path, encode(&rgba.into(), ImageFormat::Png)).unwrap();
    assert_eq!(read_rgb(&path).unwrap(), rgb);

    // Palette PNG: indices 0..3 through a 4-colour palette.
    let palette = vec![0, 0, 0, 128, 0, 0, 0, 128, 0, 255, 255, 255];
    let idx: Vec<u8> = (0..w * h).map(|i| (i % 4) as u8).collect();
    let bytes = png_bytes(
        w,
        h,
        png::ColorType::Indexed,
        png::BitDepth::Eight,
        &idx,
        Some(palette.clone()),
    );
    let got = read_rgb_bytes(&bytes, "palette.png").unwrap();
    for (i, p) in idx.iter().zip(got.pixels()) {
        let k = *i as usize * 3;
        assert_eq!(p.0[..], palette[k..k + 3]);
    }

    // 16-bit RGB: scaled to 8 bits with rounding, v8 = round(v16·255/65535).
    let samples: [u16; 6] = [0, 128, 129, 32896, 65535, 257 * 200];
    let want: [u8; 6] = [0, 0, 1, 128, 255, 200];
    let data: Vec<u8> = samples.iter().flat_map(|v| v.to_be_bytes()).collect();
    let bytes = png_bytes(
        2,
        1,
        png::ColorType::Rgb,
        png::BitDepth::Sixteen,
        &data,
        None,
    );
    assert_eq!(
        read_rgb_bytes(&bytes, "deep.png").unwrap().as_raw()[..],
        want
    );

    // 16-bit grey.
    let data: Vec<u8> = samples.iter().flat_map(|v| v.to_be_bytes()).collect();
    let bytes = png_bytes(
        6,
        1,
        png::ColorType::Grayscale,
        png::BitDepth::Sixteen,
        &data,
        None,
    );
    let got = read_rgb_bytes(&bytes, "deepgrey.png").unwrap();
    let firsts: Vec<u8> = got.pixels().map(|p| p.0[0]).collect();
    assert_eq!(firsts, want);
}

#[test]
fn other_formats_decode_by_content_not_extension() {
    let dir = tempfile::tempdir().unwrap();
    let rgb = pattern(9, 6);
    for (fmt, lossless) in [
        (ImageFormat::Bmp, true),
        (ImageFormat::Tiff, true),
        (ImageFormat::WebP, true),
        (ImageFormat::Gif, false),
        (ImageFormat::Jpeg, false),
    ] {
        // Wrong extension on purpose: the content decides.
        let path = dir.path().join(format!("{fmt:?}.png.txt"));
        std::fs::write(&path, encode(&rgb.clone().into(), fmt)).unwrap();
        let got = read_rgb(&path).unwrap_or_else(|e| panic!("{fmt:?}: {e}"));
        assert_eq!(got.dimensions(), rgb.dimensions(), "{fmt:?}");
        assert_eq!(image_size(&path).unwrap(), (9, 6), "{fmt:?}");
        if lossless {
            assert_eq!(got, rgb, "{fmt:?}");
        }
    }
}

/// Inserts an EXIF APP1 segment carrying `orientation` right after a JPEG's SOI marker.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = Vec::new();
    tiff.extend(b"II*\0"); // little-endian TIFF header
    tiff.extend(8u32.to_le_bytes()); // IFD0 offset
    tiff.extend(1u16.to_le_bytes()); // one entry
    tiff.extend(0x0112u16.to_le_bytes()); // Orientation tag
    tiff.extend(3u16.to_le_bytes()); // SHORT
    tiff.extend(1u32.to_le_bytes()); // count
    tiff.extend(orientation.to_le_bytes());
    tiff.extend([0, 0]); // value padding
    tiff.extend(0u32.to_le_bytes()); // no next IFD
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend(tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend([0xFF, 0xE1]);
    out.extend(((app1.len() + 2) as u16).to_be_bytes());
    out.extend(app1);
    out.extend(&jpeg[2..]);
    out
}

#[test]
fn exif_orientation_6_rotates_clockwise() {
    // 32 wide × 16 tall: left half red, right half blue (solid blocks survive JPEG).
    let img = RgbImage::from_fn(32, 16, |x, _| {
        if x < 16 {
            Rgb([250, 0, 0])
        } else {
            Rgb([0, 0, 250])
        }
    });
    let plain = encode(&img.into(), ImageFormat::Jpeg);
    let rotated = with_exif_orientation(&plain, 6);
    let got = read_rgb_bytes(&rotated, "rotated.jpg").unwrap();
    assert_eq!(got.dimensions(), (16, 32), "width and height swap");
    // Rotating 90° clockwise puts the left (red) half on top.
    let top = got.get_pixel(8, 4).0;
    let bottom = got.get_pixel(8, 27).0;
    assert!(top[0] > 200 && top[2] < 50, "top {top:?}");
    assert!(bottom[2] > 200 && bottom[0] < 50, "bottom {bottom:?}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rotated.jpg");
    std::fs::write(&path, &rotated).unwrap();
    assert_eq!(image_size(&path).unwrap(), (16, 32));
    // Orientation 1 leaves the image as stored.
    let same = read_rgb_bytes(&with_exif_orientation(&plain, 1), "plain.jpg").unwrap();
    assert_eq!(same.dimensions(), (32, 16));
}

fn err_text(r: ssc_core::Result<RgbImage>) -> String {
    r.expect_err("decoding must fail").to_string()
}

#[test]
fn bad_files_give_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let missing = d.join("missing_image.jpg");
    let e = err_text(read_rgb(&missing));
    assert!(e.contains("missing_image.jpg"), "{e}");
    assert!(
        image_size(&missing)
            .unwrap_err()
            .to_string()
            .contains("missing_image.jpg")
    );

    let empty = d.join("empty_image.png");
    std::fs::write(&empty, b"").unwrap();
    let e = err_text(read_rgb(&empty));
    assert!(
        e.contains("empty_image.png") && e.contains("empty file"),
        "{e}"
    );
    assert!(
        image_size(&empty)
            .unwrap_err()
            .to_string()
            .contains("empty file")
    );

    let text = d.join("notes.jpg");
    std::fs::write(&text, b"this is a text file, not an image\n").unwrap();
    let e = err_text(read_rgb(&text));
    assert!(
        e.contains("notes.jpg") && e.contains("not a supported image"),
        "{e}"
    );

    let jpeg = encode(&pattern(64, 48).into(), ImageFormat::Jpeg);
    let cut = d.join("cut.jpg");
    std::fs::write(&cut, &jpeg[..jpeg.len() / 2]).unwrap();
    let e = err_text(read_rgb(&cut));
    assert!(e.contains("cut.jpg") && e.contains("truncated"), "{e}");

    let png = encode(&pattern(64, 48).into(), ImageFormat::Png);
    let e = err_text(read_rgb_bytes(&png[..png.len() / 2], "upload-17"));
    assert!(e.contains("upload-17"), "{e}");
    // Header only: signature and IHDR, no image data.
    let e = err_text(read_rgb_bytes(&png[..33], "header-only.png"));
    assert!(e.contains("header-only.png"), "{e}");
}

#[test]
fn real_truncated_jpeg_is_an_error() {
    let Some(dir) = ssc_core::fixtures::voc_samples(env!("CARGO_MANIFEST_DIR")) else {
        return;
    };
    let bytes = std::fs::read(dir.join("JPEGImages/2011_000003.jpg")).unwrap();
    for keep in [bytes.len() - 2, bytes.len() * 3 / 4, 2000] {
        let e = err_text(read_rgb_bytes(&bytes[..keep], "2011_000003.jpg"));
        assert!(
            e.contains("2011_000003.jpg") && e.contains("truncated"),
            "{keep}: {e}"
        );
    }
}

/// A PNG whose header claims `w×h` RGB pixels and which has no image data.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut c = 0xFFFF_FFFFu32;
        for &b in data {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    let mut chunk = b"IHDR".to_vec();
    chunk.extend(w.to_be_bytes());
    chunk.extend(h.to_be_bytes());
    chunk.extend([8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(13u32.to_be_bytes());
    out.extend(&chunk);
    out.extend(crc32(&chunk).to_be_bytes());
    // The decoder reads up to the first IDAT before reporting the size, so give it one (an
    // empty zlib stream) and the end marker.
    for (name, data) in [
        (
            &b"IDAT"[..],
            &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01][..],
        ),
        (b"IEND", &[]),
    ] {
        let mut chunk = name.to_vec();
        chunk.extend(data);
        out.extend((data.len() as u32).to_be_bytes());
        out.extend(&chunk);
        out.extend(crc32(&chunk).to_be_bytes());
    }
    out
}

#[test]
fn oversized_images_are_refused_before_decoding() {
    let bomb = png_header_only(100_000, 100_000);
    let e = err_text(read_rgb_bytes(&bomb, "bomb.png"));
    assert!(
        e.contains("bomb.png") && e.contains("100000x100000") && e.contains("limit"),
        "{e}"
    );

    let small = encode(&pattern(20, 10).into(), ImageFormat::Png);
    let strict = DecodeOptions { max_pixels: 199 };
    let e = err_text(read_rgb_bytes_with(&small, "small.png", &strict));
    assert!(e.contains("200 pixels") && e.contains("199"), "{e}");
    let exact = DecodeOptions { max_pixels: 200 };
    assert!(read_rgb_bytes_with(&small, "small.png", &exact).is_ok());
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("small.png");
    std::fs::write(&p, &small).unwrap();
    assert!(read_rgb_with(&p, &strict).is_err());
}

#[test]
fn writers_round_trip_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let img = pattern(33, 21);
    let png = dir.path().join("out/a.png");
    write_png_rgb(&png, &img).unwrap();
    assert_eq!(read_rgb(&png).unwrap(), img);

    let smooth = RgbImage::from_fn(40, 24, |x, y| Rgb([(x * 6) as u8, (y * 10) as u8, 128]));
    let jpg = dir.path().join("out/b.jpg");
    write_jpeg_rgb(&jpg, &smooth, 95).unwrap();
    let back = read_rgb(&jpg).unwrap();
    assert_eq!(back.dimensions(), smooth.dimensions());
    let mean_err: f64 = back
        .as_raw()
        .iter()
        .zip(smooth.as_raw())
        .map(|(a, b)| a.abs_diff(*b) as f64)
        .sum::<f64>()
        / back.as_raw().len() as f64;
    assert!(mean_err < 3.0, "mean |error| {mean_err}");
    let names: Vec<_> = std::fs::read_dir(dir.path().join("out")).unwrap().collect();
    assert_eq!(names.len(), 2, "no temporary files left");

    let e = write_jpeg_rgb(dir.path().join("q.jpg"), &smooth, 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("q.jpg") && e.contains("quality"), "{e}");
    assert!(!dir.path().join("q.jpg").exists());
}

#[test]
fn image_paths_by_extension() {
    assert!(is_image_path(Path::new(
        "VOC2012/JPEGImages/2007_000032.jpg"
    )));
    assert!(is_image_path("a.PNG"));
    assert!(is_image_path("a.tiff"));
    assert!(!is_image_path("a.json"));
    assert!(!is_image_path("noext"));
}

/// Appends `n` bits of `v` (MSB first) to a JPEG entropy-coded bit stream.
struct Bits {
    bytes: Vec<u8>,
    acc: u32,
    n: u32,
}

impl Bits {
    fn put(&mut self, v: u32, n: u32) {
        for i in (0..n).rev() {
            self.acc = (self.acc << 1) | ((v >> i) & 1);
            self.n += 1;
            if self.n == 8 {
                self.bytes.push(self.acc as u8);
                if self.acc == 0xFF {
                    self.bytes.push(0x00); // byte stuffing
                }
                (self.acc, self.n) = (0, 0);
            }
        }
    }

    fn finish(mut self) -> Vec<u8> {
        while self.n != 0 {
            self.put(1, 1); // pad with ones
        }
        self.bytes
    }
}

/// A hand-made 8×8 baseline JPEG with four components (Adobe APP14, transform 0 = CMYK)
/// whose stored samples are the flat values `cmyk`. Each block is DC-only, quantiser 1.
fn cmyk_jpeg(cmyk: [u8; 4]) -> Vec<u8> {
    fn segment(out: &mut Vec<u8>, marker: u8, body: &[u8]) {
        out.extend([0xFF, marker]);
        out.extend(((body.len() + 2) as u16).to_be_bytes());
        out.extend(body);
    }
    let mut out = vec![0xFF, 0xD8];
    segment(&mut out, 0xEE, b"Adobe\x00\x64\x00\x00\x00\x00\x00");
    let mut dqt = vec![0x00];
    dqt.extend([1u8; 64]);
    segment(&mut out, 0xDB, &dqt);
    let mut sof = vec![8, 0, 8, 0, 8, 4];
    for id in 1..=4 {
        sof.extend([id, 0x11, 0]);
    }
    segment(&mut out, 0xC0, &sof);
    // DC table: categories 0..=11, all 4-bit codes (code = category). AC table: EOB = "0".
    let mut dht = vec![0x00, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    dht.extend(0..12u8);
    dht.extend([0x10, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00]);
    segment(&mut out, 0xC4, &dht);
    let mut sos = vec![4];
    for id in 1..=4 {
        sos.extend([id, 0x00]);
    }
    sos.extend([0, 63, 0]);
    segment(&mut out, 0xDA, &sos);
    let mut bits = Bits {
        bytes: Vec::new(),
        acc: 0,
        n: 0,
    };
    for s in cmyk {
        // Flat block: DC = 8·(s − 128), every AC coefficient 0.
        let dc = 8 * (s as i32 - 128);
        let cat = 32 - dc.unsigned_abs().leading_zeros();
        let extra = if dc >= 0 { dc } else { dc + (1 << cat) - 1 };
        bits.put(cat, 4);
        bits.put(extra as u32, cat);
        bits.put(0, 1); // EOB
    }
    out.extend(bits.finish());
    out.extend([0xFF, 0xD9]);
    out
}

#[test]
fn cmyk_jpeg_is_converted_to_rgb() {
    // Adobe CMYK JPEGs store inverted ink amounts: (255, 0, 0, 255) = no cyan, full magenta
    // and yellow, no black = red; all 255 = white.
    for (cmyk, want) in [
        ([255, 0, 0, 255], [255, 0, 0]),
        ([255, 255, 255, 255], [255, 255, 255]),
        ([255, 255, 0, 255], [255, 255, 0]),
        ([255, 255, 255, 0], [0, 0, 0]),
    ] {
        let got = read_rgb_bytes(&cmyk_jpeg(cmyk), "cmyk.jpg")
            .unwrap_or_else(|e| panic!("{cmyk:?}: {e}"));
        assert_eq!(got.dimensions(), (8, 8));
        for p in got.pixels() {
            for c in 0..3 {
                assert!(
                    p.0[c].abs_diff(want[c]) <= 2,
                    "{cmyk:?}: {:?} vs {want:?}",
                    p.0
                );
            }
        }
    }
}
