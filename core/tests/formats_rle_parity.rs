//! Parity of `formats::coco_rle` with pycocotools and of `formats::brush` with
//! label-studio-sdk, on every entry the fixtures' config.json lists.

use ssc_core::formats::{brush, coco_rle};
use ssc_core::tensors::TensorFile;

fn config(dir: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn coco_rle_matches_pycocotools() {
    let Some(dir) = ssc_core::fixtures::case(env!("CARGO_MANIFEST_DIR"), "rle") else {
        return;
    };
    let cfg = config(&dir);
    let masks = cfg["masks"].as_array().unwrap();
    assert!(!masks.is_empty());
    for m in masks {
        let name = m["name"].as_str().unwrap();
        let h = m["size"][0].as_u64().unwrap() as usize;
        let w = m["size"][1].as_u64().unwrap() as usize;
        let img = image::open(dir.join(m["png"].as_str().unwrap()))
            .unwrap()
            .to_luma8();
        assert_eq!(
            (img.height() as usize, img.width() as usize),
            (h, w),
            "{name}"
        );
        // 0/1 PNGs; a 1-bit PNG would read as 0/255, so normalise
        let mask: Vec<u8> = img.into_raw().iter().map(|&v| u8::from(v != 0)).collect();
        let want_counts: Vec<u32> = m["uncompressed_counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap() as u32)
            .collect();
        let want = m["counts"].as_str().unwrap();

        assert_eq!(
            coco_rle::uncompressed_counts(&mask, h, w).unwrap(),
            want_counts,
            "{name}: uncompressed counts"
        );
        let rle = coco_rle::encode(&mask, h, w).unwrap();
        assert_eq!(rle.counts, want, "{name}: compressed counts");
        assert_eq!(rle.size, [h as u32, w as u32]);
        assert_eq!(coco_rle::counts_from_string(want).unwrap(), want_counts);
        assert_eq!(coco_rle::decode(&rle).unwrap(), mask, "{name}: decode");
        assert_eq!(
            coco_rle::area(&rle).unwrap(),
            m["area"].as_u64().unwrap(),
            "{name}: area"
        );
        let bbox: Vec<f64> = m["bbox"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(
            coco_rle::to_bbox(&rle).unwrap().to_vec(),
            bbox,
            "{name}: bbox"
        );
    }
}

#[test]
fn brush_rle_matches_label_studio_sdk() {
    let Some(dir) = ssc_core::fixtures::case(env!("CARGO_MANIFEST_DIR"), "labelstudio") else {
        return;
    };
    let cfg = config(&dir);
    let tensors = TensorFile::open(dir.join("masks.safetensors")).unwrap();
    let cases = cfg["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let h = c["height"].as_u64().unwrap() as usize;
        let w = c["width"].as_u64().unwrap() as usize;
        let (mask, shape) = tensors.u8(name).unwrap();
        assert_eq!(shape, vec![h, w], "{name}");
        let want: Vec<u8> = c["rle"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| u8::try_from(v.as_u64().unwrap()).unwrap())
            .collect();
        assert_eq!(
            brush::mask2rle(&mask, h, w).unwrap(),
            want,
            "{name}: encode"
        );
        assert_eq!(
            brush::rle2mask(&want, h, w).unwrap(),
            mask,
            "{name}: decode"
        );
    }
}
