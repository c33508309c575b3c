//! CAM network (§2.1–2.3, §3.1) vs `cam/`: per-scale CAM pairs and flip-summed maps.

mod common;

use candle_core::{DType, Device, Tensor};
use ssc_core::tensors::TensorFile;
use ssc_models::cam::CamNet;
use ssc_models::config::CamNetConfig;
use ssc_models::import;

fn usize4(v: &serde_json::Value) -> [usize; 4] {
    let a: Vec<usize> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    a.try_into().unwrap()
}

fn hflip(x: &Tensor) -> Tensor {
    let w = x.dim(candle_core::D::Minus1).unwrap();
    let idx: Vec<u32> = (0..w as u32).rev().collect();
    let idx = Tensor::new(idx.as_slice(), x.device()).unwrap();
    x.index_select(&idx, x.rank() - 1).unwrap()
}

#[test]
fn cam_pairs_match_fixture() {
    let root = env!("CARGO_MANIFEST_DIR");
    let (Some(dir), Some(rdir)) = (
        ssc_core::fixtures::case(root, "cam"),
        ssc_core::fixtures::case(root, "resnet"),
    ) else {
        return;
    };
    let cfg = common::config(&dir);
    let rcfg = common::config(&rdir);
    let os16 = &rcfg["configs"]["os16"];
    let mut tensors = import::load_state_dict(rdir.join("weights.safetensors"))
        .unwrap()
        .into_tensors();
    tensors.extend(
        import::load_state_dict(dir.join("weights.safetensors"))
            .unwrap()
            .into_tensors(),
    );
    let sd = import::StateDict::from_tensors(dir.join("weights.safetensors"), tensors);
    let backbone = import::infer_resnet(
        &sd,
        usize4(&os16["layer_strides"]),
        usize4(&os16["layer_dilations"]),
    )
    .unwrap();
    let net_cfg = CamNetConfig {
        backbone: backbone.into(),
        num_classes: cfg["C"].as_u64().unwrap() as usize,
        drs_delta: rcfg["drs_delta"].as_f64().unwrap(),
        train_all_stages: false,
        bn: Default::default(),
        detach_early_drs_cap: false,
        early_drs_every_variant: false,
    };
    // The classifier and backbone keys are exactly what the model requests.
    let expected = import::model_params(|vb| CamNet::new(&net_cfg, vb)).unwrap();
    import::check_params(&sd, &expected, &[]).unwrap();
    let net = CamNet::new(&net_cfg, sd.var_builder(DType::F32, &Device::Cpu)).unwrap();

    let tol = &cfg["tolerance"]["network_outputs"];
    let (atol, rtol) = (tol["atol"].as_f64().unwrap(), tol["rtol"].as_f64().unwrap());
    let tf = TensorFile::open(dir.join("tensors.safetensors")).unwrap();
    let scales = cfg["per_scale"].as_array().unwrap();
    assert!(!scales.is_empty());
    for i in 0..scales.len() {
        let input = common::tensor(&tf, &format!("scale{i}_input"));
        let cam = net.forward_cam(&input).unwrap();
        let want = common::tensor(&tf, &format!("scale{i}_cam_pair"));
        common::assert_close(&format!("scale{i}_cam_pair"), &cam, &want, atol, rtol);
        let o = (cam.get(0).unwrap() + hflip(&cam.get(1).unwrap())).unwrap();
        let want_o = common::tensor(&tf, &format!("scale{i}_o"));
        common::assert_close(&format!("scale{i}_o"), &o, &want_o, atol, rtol);
    }
}

#[test]
fn training_forward_shapes_scores_and_frozen_parts() {
    use candle_core::Var;
    let cfg = CamNetConfig::synthetic(4);
    let vm = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    let net = CamNet::new(&cfg, vb).unwrap();
    let x = Tensor::randn(0f32, 1.0, (2, 3, 35, 50), &Device::Cpu).unwrap();
    let out = net.forward_train(&x).unwrap();
    assert_eq!(out.features.dims(), &[2, cfg.num_classes, 3, 4]);
    assert_eq!(out.scores.dims(), &[2, cfg.num_classes]);
    let mean = out.features.mean(3).unwrap().mean(2).unwrap();
    assert!(common::max_abs_diff(&mean, &out.scores) < 1e-6);
    let grads = out.scores.sum_all().unwrap().backward().unwrap();
    let data = vm.data().lock().unwrap();
    let has = |n: &str| grads.get(data[n].as_tensor()).is_some();
    // Stem frozen, layer1/2 behind the detach: no gradient. layer3/4 and classifier: yes.
    assert!(!has("conv1.weight") && !has("bn1.weight"));
    assert!(!has("layer1.0.conv1.weight") && !has("layer2.0.conv2.weight"));
    assert!(has("layer3.0.conv1.weight") && has("layer3.0.bn1.weight"));
    assert!(has("layer4.0.conv3.weight") && has("classifier.weight"));
    assert!(!has("layer4.0.bn1.running_mean"));
    let _: Option<&Var> = data.get("classifier.weight");
    // Inference CAM is ReLU of the (non-DRS-after-layer2) features.
    let cam = net.forward_cam(&x).unwrap();
    assert!(
        cam.flatten_all()
            .unwrap()
            .min(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            >= 0.0
    );
}
