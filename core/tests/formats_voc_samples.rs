//! The annotation writers and readers on real PASCAL VOC masks (shared/data/voc-samples):
//! palette-index label maps with several classes and void borders survive every format.

use std::path::Path;

use ssc_core::classes::{ClassMap, IGNORE};
use ssc_core::formats::coco::{CocoMode, CocoOptions, CocoReadOptions, CocoWriter, read_coco};
use ssc_core::formats::cvat::{CvatOptions, CvatWriter, IgnoreAs, read_cvat};
use ssc_core::formats::labelstudio::{LabelStudioOptions, LabelStudioWriter, read_tasks};
use ssc_core::formats::{MaskSource, MaskWriter};

/// Palette indices of an 8-bit indexed PNG (no colour expansion).
fn read_indices(path: &Path) -> (u32, u32, Vec<u8>) {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0u8; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    assert_eq!(
        (info.color_type, info.bit_depth),
        (png::ColorType::Indexed, png::BitDepth::Eight),
        "{}",
        path.display()
    );
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

fn samples(dir: &Path) -> Vec<MaskSource> {
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap()).unwrap();
    let pairs = index["pairs"].as_array().unwrap();
    assert!(!pairs.is_empty());
    pairs
        .iter()
        .map(|p| {
            let id = p["id"].as_str().unwrap();
            let (w, h, labels) = read_indices(&dir.join(format!("SegmentationClass/{id}.png")));
            assert_eq!(
                [w as u64, h as u64],
                [
                    p["image_size_wh"][0].as_u64().unwrap(),
                    p["image_size_wh"][1].as_u64().unwrap()
                ]
            );
            let mut present: Vec<u64> = labels.iter().map(|&v| v as u64).collect();
            present.sort_unstable();
            present.dedup();
            let want: Vec<u64> = p["classes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            assert_eq!(present, want, "{id}");
            MaskSource::new(id, w, h, labels).unwrap()
        })
        .collect()
}

fn write_all(w: &mut dyn MaskWriter, masks: &[MaskSource]) {
    for m in masks {
        w.add(m).unwrap();
    }
    w.finish().unwrap();
}

fn without_ignore(m: &MaskSource) -> Vec<u8> {
    m.labels
        .iter()
        .map(|&v| if v == IGNORE { 0 } else { v })
        .collect()
}

#[test]
fn voc_masks_survive_every_format() {
    let Some(dir) = ssc_core::fixtures::voc_samples(env!("CARGO_MANIFEST_DIR")) else {
        return;
    };
    let masks = samples(&dir);
    let voc = ClassMap::voc();
    let out = tempfile::tempdir().unwrap();

    let zip = out.path().join("cvat.zip");
    let opts = CvatOptions {
        ignore: IgnoreAs::Label,
        ..Default::default()
    };
    write_all(&mut CvatWriter::begin(&zip, &voc, opts).unwrap(), &masks);
    let back = read_cvat(&zip, &voc).unwrap();
    for (m, r) in masks.iter().zip(&back) {
        assert_eq!(r.labels, m.labels, "CVAT {}", m.id);
    }

    for mode in [CocoMode::PerClass, CocoMode::PerInstance] {
        let json = out.path().join("coco.json");
        let opts = CocoOptions {
            mode,
            ..Default::default()
        };
        write_all(&mut CocoWriter::begin(&json, &voc, opts).unwrap(), &masks);
        let back = read_coco(&json, &voc, CocoReadOptions::default()).unwrap();
        for (m, r) in masks.iter().zip(&back) {
            assert_eq!(r.labels, without_ignore(m), "COCO {mode:?} {}", m.id);
        }
    }

    let tasks = out.path().join("tasks.json");
    let opts = LabelStudioOptions::default();
    write_all(
        &mut LabelStudioWriter::begin(&tasks, &voc, opts.clone()).unwrap(),
        &masks,
    );
    let back = read_tasks(&tasks, &voc, &opts).unwrap();
    for (m, r) in masks.iter().zip(&back) {
        assert_eq!(r.labels, without_ignore(m), "Label Studio {}", m.id);
    }
}
