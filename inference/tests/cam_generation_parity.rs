//! `ssc_inference::cam` end to end (§3.1–3.2) through ONNX Runtime against the `cam/` fixture:
//! the fixture image, its labels and scales in, `keys`, the strided `cam` and `high_res` out.
//! Also checks that batched inference of same-sized images equals one-by-one inference.
//! Skips when the fixture or the ONNX Runtime library is absent.

mod common;

use ssc_core::fixtures;
use ssc_core::tensors::TensorFile;
use ssc_inference::cam::{self, CamConfig, Normalizer};
use ssc_inference::runtime::{Model, SessionConfig};
use ssc_models::onnx::{Weights, export_cam};

fn fixture_model() -> Option<(Model, serde_json::Value, std::path::PathBuf)> {
    let (Some(cam_dir), Some(resnet_dir)) = (
        fixtures::case(env!("CARGO_MANIFEST_DIR"), "cam"),
        fixtures::case(env!("CARGO_MANIFEST_DIR"), "resnet"),
    ) else {
        return None;
    };
    if !common::ort_available() {
        return None;
    }
    let cfg_json = common::json(&cam_dir.join("config.json"));
    let rn_json = common::json(&resnet_dir.join("config.json"));
    let cfg = common::resnet_config(&rn_json, &rn_json["configs"]["os16"]);
    let delta = rn_json["drs_delta"].as_f64().unwrap() as f32;
    let c = cfg_json["C"].as_u64().unwrap() as usize;
    let mut w = Weights::open(resnet_dir.join("weights.safetensors")).unwrap();
    w.merge(
        Weights::open(cam_dir.join("weights.safetensors")).unwrap(),
        "",
    );
    let bytes = export_cam(&w, &cfg, c, delta).unwrap();
    let model = Model::from_bytes(&bytes, "cam.onnx", &SessionConfig::default()).unwrap();
    Some((model, cfg_json, cam_dir))
}

#[test]
fn multi_scale_cams_match_the_reference() {
    let Some((mut model, cfg_json, dir)) = fixture_model() else {
        return;
    };
    let img = ssc_core::imageio::read_rgb(dir.join("image.png")).unwrap();
    assert_eq!(
        (img.height() as u64, img.width() as u64),
        (
            cfg_json["image"]["H"].as_u64().unwrap(),
            cfg_json["image"]["W"].as_u64().unwrap()
        )
    );
    let labels: Vec<u8> = cfg_json["label"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v.as_f64().unwrap() > 0.5) as u8)
        .collect();
    let cfg = CamConfig {
        scales: serde_json::from_value(cfg_json["scales"].clone()).unwrap(),
        ..CamConfig::default()
    };
    let rec = cam::cam_for_image(&mut model, &img, Some(&labels), &cfg).unwrap();

    let t = TensorFile::open(dir.join("tensors.safetensors")).unwrap();
    let (keys, _) = t.i64("keys").unwrap();
    assert_eq!(rec.keys, keys);
    let tol = &cfg_json["tolerance"]["cam_high_res"];
    let (atol, rtol) = (tol["atol"].as_f64().unwrap(), tol["rtol"].as_f64().unwrap());
    let (want_cam, cam_shape) = t.f32("cam").unwrap();
    let (sh, sw) = rec.strided_size();
    assert_eq!(vec![keys.len(), sh, sw], cam_shape);
    common::assert_close("cam", &rec.cam, &want_cam, atol, rtol);
    let (want_hr, _) = t.f32("high_res").unwrap();
    common::assert_close("high_res", &rec.high_res, &want_hr, atol, rtol);

    // Predicted labels keep at least one class, and the record is well formed.
    let predicted = CamConfig {
        predict_labels: true,
        ..cfg.clone()
    };
    let p = cam::cam_for_image(&mut model, &img, None, &predicted).unwrap();
    assert!(!p.keys.is_empty());
    assert_eq!(
        p.high_res.len(),
        p.keys.len() * img.height() as usize * img.width() as usize
    );
}

#[test]
fn batched_inference_equals_single_inference() {
    let Some((mut model, _, dir)) = fixture_model() else {
        return;
    };
    let img = ssc_core::imageio::read_rgb(dir.join("image.png")).unwrap();
    let flipped = image::imageops::flip_horizontal(&img);
    let small = image::imageops::crop_imm(&img, 0, 0, 40, 30).to_image();
    let norm = Normalizer::of(model.info()).unwrap();
    let scales = [1.0, 0.5];
    let preps: Vec<_> = [&img, &small, &flipped]
        .iter()
        .map(|i| cam::prepare(i, &scales, &norm).unwrap())
        .collect();
    let refs: Vec<_> = preps.iter().collect();
    let batched = cam::infer_batch(&mut model, &refs);
    assert_eq!(batched.len(), 3);
    for (p, b) in preps.iter().zip(batched) {
        let single = cam::infer(&mut model, p).unwrap();
        let b = b.unwrap();
        assert_eq!(single.len(), b.len());
        for (s, bb) in single.iter().zip(&b) {
            assert_eq!((s.channels, s.h, s.w), (bb.channels, bb.h, bb.w));
            common::assert_close("batched o_s", &bb.data, &s.data, 1e-5, 1e-5);
        }
    }
}
