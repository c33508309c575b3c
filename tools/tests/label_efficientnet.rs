//! The labelling tools run EfficientNet-Lite networks unchanged (everything they need is in
//! the ONNX metadata): `ssc-label masks` with a CAM and an IRN network on the tiny
//! EfficientNet-Lite layout of the package goldens (random weights) writes a valid mask of
//! each image's size, and the same as `ssc-label cams` followed by `ssc-label pseudo`.
//! Skips when the ONNX Runtime library is absent.

mod label_common;

use label_common::*;

#[test]
fn efficientnet_cam_and_irn_models_label_a_dataset() {
    if !ort_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let n = 3;
    let (root, cfg) = benchmark(d, n, 64);
    let (cam, irn) = tiny_efficientnet_models(d, cfg.classes);
    let common = ["--split", "train", "--threads", "2"];

    let cams = d.join("cams");
    let o = label_cmd(&cam, &root, &cams, &common).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let two = d.join("two");
    let o = label("pseudo")
        .arg("--irn")
        .arg(&irn)
        .arg("--cams")
        .arg(&cams)
        .arg("--root")
        .arg(&root)
        .arg("--out")
        .arg(&two)
        .args(common)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let one = d.join("one");
    let o = label("masks")
        .arg("--cam-model")
        .arg(&cam)
        .arg("--irn-model")
        .arg(&irn)
        .arg("--root")
        .arg(&root)
        .arg("--out")
        .arg(&one)
        .args(common)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let classes = ssc_core::classes::ClassMap::voc();
    for id in train_ids(n) {
        let img = ssc_core::imageio::read_rgb(root.join(format!("JPEGImages/{id}.jpg"))).unwrap();
        let a = ssc_core::mask::read_mask(&one.join(format!("{id}.png")), &classes).unwrap();
        let b = ssc_core::mask::read_mask(&two.join(format!("{id}.png")), &classes).unwrap();
        assert_eq!(
            (a.width, a.height),
            (img.width() as usize, img.height() as usize)
        );
        assert_eq!(a.data, b.data, "{id}: one pass vs two stages");
        assert!(a.data.iter().all(|&v| (v as usize) <= cfg.classes), "{id}");
    }
}
