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

/// The exported graph run by ONNX Runtime equals the candle CAM network on the same input
/// and weights (≤ 1e-4), at every fixture scale.
#[test]
fn cam_export_matches_the_candle_network() {
    use candle_core::{DType, Device, Tensor};
    use ssc_models::cam::CamNet;
    use ssc_models::config::CamNetConfig;
    use ssc_models::import::load_state_dict;

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
    let net_cfg = CamNetConfig {
        backbone: common::resnet_config(&rn_json, &rn_json["configs"]["os16"]).into(),
        num_classes: cfg_json["C"].as_u64().unwrap() as usize,
        drs_delta: rn_json["drs_delta"].as_f64().unwrap(),
        train_all_stages: false,
        bn: Default::default(),
        detach_early_drs_cap: false,
        early_drs_every_variant: false,
    };
    let mut tensors = load_state_dict(resnet_dir.join("weights.safetensors"))
        .unwrap()
        .into_tensors();
    tensors.extend(
        load_state_dict(cam_dir.join("weights.safetensors"))
            .unwrap()
            .into_tensors(),
    );
    let vb = candle_nn::VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let net = CamNet::new(&net_cfg, vb).unwrap();

    let mut w = Weights::open(resnet_dir.join("weights.safetensors")).unwrap();
    w.merge(
        Weights::open(cam_dir.join("weights.safetensors")).unwrap(),
        "",
    );
    let bytes = export_cam(
        &w,
        &net_cfg.backbone,
        net_cfg.num_classes,
        net_cfg.drs_delta as f32,
    )
    .unwrap();
    let mut model = Model::from_bytes(&bytes, "cam.onnx", &SessionConfig::default()).unwrap();

    let t = TensorFile::open(cam_dir.join("tensors.safetensors")).unwrap();
    for i in 0..cfg_json["per_scale"].as_array().unwrap().len() {
        let (x, xs) = t.f32(&format!("scale{i}_input")).unwrap();
        let ort = model.run(&x, xs.clone().try_into().unwrap()).unwrap();
        let input = Tensor::from_vec(x, xs, &Device::Cpu).unwrap();
        let candle: Vec<f32> = net
            .forward_cam(&input)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        common::assert_close(
            &format!("scale {i}: ort vs candle"),
            &ort[0].data,
            &candle,
            1e-4,
            0.0,
        );
    }
}
