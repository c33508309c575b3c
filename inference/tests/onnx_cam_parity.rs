//! The exported CAM network (§3.1) run through ONNX Runtime against the PyTorch goldens of
//! the `cam/` fixture (backbone `resnet/weights.safetensors`, OS16, DRS in layer4).

mod common;

use ssc_core::fixtures;
use ssc_core::tensors::TensorFile;
use ssc_inference::runtime::{Model, SessionConfig};
use ssc_models::onnx::{Weights, export_cam};

#[test]
fn cam_pairs_match_pytorch() {
    let (Some(cam_dir), Some(resnet_dir)) = (
        fixtures::case(env!("CARGO_MANIFEST_DIR"), "cam"),
        fixtures::case(env!("CARGO_MANIFEST_DIR"), "resnet"),
    ) else {
        return;
    };
    if !common::ort_available() {
        return;
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
    let mut model = Model::from_bytes(&bytes, "cam.onnx", &SessionConfig::default()).unwrap();
    assert_eq!(model.info().arch, "cam");
    assert_eq!(model.info().class_names.len(), c);
    assert_eq!(model.info().output_stride, cfg.output_stride());
    assert_eq!(model.output_names(), ["cam"]);

    let tol = &cfg_json["tolerance"]["network_outputs"];
    let (atol, rtol) = (tol["atol"].as_f64().unwrap(), tol["rtol"].as_f64().unwrap());
    let t = TensorFile::open(cam_dir.join("tensors.safetensors")).unwrap();
    let scales = cfg_json["per_scale"].as_array().unwrap().len();
    for i in 0..scales {
        let (x, xs) = t.f32(&format!("scale{i}_input")).unwrap();
        let (want, ws) = t.f32(&format!("scale{i}_cam_pair")).unwrap();
        let out = model.run(&x, xs.clone().try_into().unwrap()).unwrap();
        assert_eq!(out[0].shape, ws, "scale {i}: cam shape for input {xs:?}");
        common::assert_close(
            &format!("scale{i}_cam_pair"),
            &out[0].data,
            &want,
            atol,
            rtol,
        );
    }
}
