//! Mask reading/writing (§1.1, §1.2): real VOC palette PNGs, round trips of every flavour,
//! and the error cases, each of which must name the file.

use std::collections::BTreeSet;
use std::path::Path;

use ssc_core::classes::{ClassMap, IGNORE, IGNORE_COLOR, voc_color};
use ssc_core::mask::{
    LabelMap, check_size, foreground_labels, present_classes, read_mask, write_grey_png,
    write_palette_png,
};

/// Encodes a PNG with the png crate (independent of the writer under test).
fn encode(path: &Path, w: u32, h: u32, ct: png::ColorType, depth: png::BitDepth, data: &[u8]) {
    let f = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(f), w, h);
    enc.set_color(ct);
    enc.set_depth(depth);
    if ct == png::ColorType::Indexed {
        enc.set_palette(vec![0u8; 3 * 256]);
    }
    let mut wr = enc.write_header().unwrap();
    wr.write_image_data(data).unwrap();
    wr.finish().unwrap();
}

/// A small map using background, two classes and ignore.
fn sample_map() -> LabelMap {
    let (w, h) = (7, 5);
    let data = (0..w * h)
        .map(|i| match i % 5 {
            0 => 0,
            1 | 2 => 15,
            3 => 20,
            _ => IGNORE,
        })
        .collect();
    LabelMap::new(w, h, data).unwrap()
}

#[test]
fn real_voc_palette_masks_read_as_indices() {
    let Some(dir) = ssc_core::fixtures::voc_samples(env!("CARGO_MANIFEST_DIR")) else {
        return;
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let pairs = index["pairs"].as_array().unwrap();
    assert!(!pairs.is_empty());
    let voc = ClassMap::voc();
    for p in pairs {
        let id = p["id"].as_str().unwrap();
        let path = dir.join("SegmentationClass").join(format!("{id}.png"));
        let m = read_mask(&path, &voc).unwrap();
        let wh: Vec<usize> = p["image_size_wh"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!((m.width, m.height), (wh[0], wh[1]), "{id}");
        check_size(&m, wh[0], wh[1], &path).unwrap();
        let want: Vec<u8> = p["classes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u8)
            .collect();
        assert_eq!(present_classes(&m), want, "{id}");
        let labels = foreground_labels(&m, &voc, &path).unwrap();
        let fg: Vec<u8> = want
            .iter()
            .copied()
            .filter(|&c| c != 0 && c != 255)
            .collect();
        for c in 1..=20u8 {
            assert_eq!(
                labels[c as usize - 1] == 1,
                fg.contains(&c),
                "{id} class {c}"
            );
        }
        // A wrong expected size is reported with the file name.
        let err = check_size(&m, wh[0] + 1, wh[1], &path)
            .unwrap_err()
            .to_string();
        assert!(err.contains(id), "{err}");
    }
}

#[test]
fn miou_fixture_pngs_read_as_grey() {
    let Some(dir) = ssc_core::fixtures::case(env!("CARGO_MANIFEST_DIR"), "miou") else {
        return;
    };
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let n = cfg["n_class"].as_u64().unwrap() as usize;
    let ignore = cfg["ignore_label"].as_u64().unwrap() as u8;
    let conf = cfg["confusion"].as_array().unwrap();
    let classes = ClassMap::custom((0..n).map(|i| format!("c{i}")).collect());
    // Recompute the confusion matrix from the decoded PNGs: exact equality proves every
    // pixel was read as its grey value.
    let mut m = vec![vec![0u64; n]; n];
    for pair in cfg["pairs"].as_array().unwrap() {
        let gt = read_mask(&dir.join(pair["gt"].as_str().unwrap()), &classes).unwrap();
        let pred = read_mask(&dir.join(pair["pred"].as_str().unwrap()), &classes).unwrap();
        assert_eq!(gt.size(), pred.size());
        assert!(present_classes(&gt).contains(&ignore));
        for (&g, &p) in gt.data.iter().zip(&pred.data) {
            if (g as usize) < n {
                m[g as usize][p as usize] += 1;
            }
        }
    }
    for (r, row) in conf.iter().enumerate() {
        let want: Vec<u64> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(m[r], want, "confusion row {r}");
    }
}

#[test]
fn palette_round_trip_keeps_indices_and_writes_voc_palette() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("sub/pal.png");
    let m = sample_map();
    let voc = ClassMap::voc();
    write_palette_png(&p, &m, &voc).unwrap();
    assert_eq!(read_mask(&p, &voc).unwrap(), m);
    // Independent check of the file layout: indexed, 8-bit, 256-entry VOC palette.
    let dec = png::Decoder::new(std::io::Cursor::new(std::fs::read(&p).unwrap()));
    let r = dec.read_info().unwrap();
    let info = r.info();
    assert_eq!(info.color_type, png::ColorType::Indexed);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let pal = info.palette.as_ref().unwrap();
    assert_eq!(pal.len(), 256 * 3);
    assert_eq!(&pal[15 * 3..16 * 3], &voc_color(15));
    assert_eq!(&pal[255 * 3..], &IGNORE_COLOR);
    // No temporary file left beside it.
    assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
}

#[test]
fn grey_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("grey.png");
    let m = sample_map();
    write_grey_png(&p, &m).unwrap();
    let dec = png::Decoder::new(std::io::Cursor::new(std::fs::read(&p).unwrap()));
    assert_eq!(
        dec.read_info().unwrap().info().color_type,
        png::ColorType::Grayscale
    );
    assert_eq!(read_mask(&p, &ClassMap::voc()).unwrap(), m);
}

#[test]
fn rgb_and_rgba_colour_masks_map_to_classes() {
    let dir = tempfile::tempdir().unwrap();
    let m = sample_map();
    let voc = ClassMap::voc();
    let pal = voc.palette();
    let rgb: Vec<u8> = m.data.iter().flat_map(|&v| pal[v as usize]).collect();
    let p = dir.path().join("rgb.png");
    encode(&p, 7, 5, png::ColorType::Rgb, png::BitDepth::Eight, &rgb);
    assert_eq!(read_mask(&p, &voc).unwrap(), m);
    let rgba: Vec<u8> = m
        .data
        .iter()
        .flat_map(|&v| {
            let c = pal[v as usize];
            [c[0], c[1], c[2], 255]
        })
        .collect();
    let p = dir.path().join("rgba.png");
    encode(&p, 7, 5, png::ColorType::Rgba, png::BitDepth::Eight, &rgba);
    assert_eq!(read_mask(&p, &voc).unwrap(), m);
}

#[test]
fn unknown_colour_is_an_error_naming_file_colour_and_pixel() {
    let dir = tempfile::tempdir().unwrap();
    let mut rgb = vec![0u8; 4 * 3 * 3];
    // Pixel (x=2, y=1) gets a colour no VOC class has.
    let o = (4 + 2) * 3;
    rgb[o..o + 3].copy_from_slice(&[1, 2, 3]);
    let p = dir.path().join("odd_colour.png");
    encode(&p, 4, 3, png::ColorType::Rgb, png::BitDepth::Eight, &rgb);
    let err = read_mask(&p, &ClassMap::voc()).unwrap_err().to_string();
    assert!(err.contains("odd_colour.png"), "{err}");
    assert!(err.contains("(1, 2, 3)"), "{err}");
    assert!(err.contains("x=2, y=1"), "{err}");
}

#[test]
fn sixteen_bit_grey_accepted_up_to_255_only() {
    let dir = tempfile::tempdir().unwrap();
    let vals: [u16; 6] = [0, 3, 255, 20, 1, 0];
    let be: Vec<u8> = vals.iter().flat_map(|v| v.to_be_bytes()).collect();
    let p = dir.path().join("ok16.png");
    encode(
        &p,
        3,
        2,
        png::ColorType::Grayscale,
        png::BitDepth::Sixteen,
        &be,
    );
    let m = read_mask(&p, &ClassMap::voc()).unwrap();
    assert_eq!(m.data, vec![0, 3, 255, 20, 1, 0]);

    let mut bad = be.clone();
    bad[8..10].copy_from_slice(&300u16.to_be_bytes()); // pixel 4 = (x=1, y=1)
    let p = dir.path().join("big16.png");
    encode(
        &p,
        3,
        2,
        png::ColorType::Grayscale,
        png::BitDepth::Sixteen,
        &bad,
    );
    let err = read_mask(&p, &ClassMap::voc()).unwrap_err().to_string();
    assert!(
        err.contains("big16.png") && err.contains("300") && err.contains("x=1, y=1"),
        "{err}"
    );
}

#[test]
fn low_bit_depth_masks_keep_sample_values() {
    let dir = tempfile::tempdir().unwrap();
    // 1-bit grey, 10 pixels wide: 1010110000 → packed MSB first.
    let p = dir.path().join("bits.png");
    encode(
        &p,
        10,
        1,
        png::ColorType::Grayscale,
        png::BitDepth::One,
        &[0b1010_1100, 0b0000_0000],
    );
    let m = read_mask(&p, &ClassMap::voc()).unwrap();
    assert_eq!(m.data, vec![1, 0, 1, 0, 1, 1, 0, 0, 0, 0]);
    // 4-bit palette: indices 3, 12, 7.
    let p = dir.path().join("nib.png");
    encode(
        &p,
        3,
        1,
        png::ColorType::Indexed,
        png::BitDepth::Four,
        &[0x3C, 0x70],
    );
    assert_eq!(
        read_mask(&p, &ClassMap::voc()).unwrap().data,
        vec![3, 12, 7]
    );
}

fn assert_names(err: ssc_core::CoreError, path: &Path) {
    let s = err.to_string();
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(s.contains(name), "message does not name {name}: {s}");
}

#[test]
fn broken_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let voc = ClassMap::voc();
    let good = dir.path().join("good.png");
    write_grey_png(&good, &LabelMap::filled(40, 30, 7)).unwrap();
    let bytes = std::fs::read(&good).unwrap();

    let truncated = dir.path().join("truncated.png");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert_names(read_mask(&truncated, &voc).unwrap_err(), &truncated);

    let empty = dir.path().join("empty.png");
    std::fs::write(&empty, b"").unwrap();
    assert_names(read_mask(&empty, &voc).unwrap_err(), &empty);

    let missing = dir.path().join("missing.png");
    let err = read_mask(&missing, &voc).unwrap_err();
    assert!(matches!(err, ssc_core::CoreError::Io { .. }));
    assert_names(err, &missing);

    let text = dir.path().join("text.png");
    std::fs::write(&text, b"this is not a png at all").unwrap();
    assert_names(read_mask(&text, &voc).unwrap_err(), &text);
}

#[test]
fn label_helpers() {
    let m = sample_map();
    assert_eq!(present_classes(&m), vec![0, 15, 20, 255]);
    let voc = ClassMap::voc();
    let l = foreground_labels(&m, &voc, Path::new("x.png")).unwrap();
    assert_eq!(l.len(), 20);
    let on: BTreeSet<usize> = l
        .iter()
        .enumerate()
        .filter(|(_, v)| **v == 1)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(on, BTreeSet::from([14, 19]));
    // A value outside a 3-class map is rejected with its position.
    let small = ClassMap::custom(vec!["background".into(), "a".into(), "b".into()]);
    let err = foreground_labels(&m, &small, Path::new("y.png"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("y.png") && err.contains("15"), "{err}");
    assert!(LabelMap::new(3, 3, vec![0; 8]).is_err());
    assert_eq!(m.get(1, 0), Some(15));
    assert_eq!(m.get(7, 0), None);
    // Writing an inconsistent map is an error, not a panic.
    let bad = LabelMap {
        width: 4,
        height: 4,
        data: vec![0; 3],
    };
    let dir = tempfile::tempdir().unwrap();
    assert!(write_grey_png(&dir.path().join("bad.png"), &bad).is_err());
}
