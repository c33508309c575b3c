//! The exported ResNet backbone (BN folded) through ONNX Runtime against the PyTorch stage
//! outputs of the `resnet/` fixture: OS16 (IRN/SSC, with and without layer4 DRS) and OS8
//! (DeepLabV2).

mod common;

use ssc_core::fixtures;
use ssc_core::tensors::TensorFile;
use ssc_inference::runtime::{Model, SessionConfig};
use ssc_models::onnx::{Weights, export_backbone};

#[test]
fn stage_outputs_match_pytorch() {
    let Some(dir) = fixtures::case(env!("CARGO_MANIFEST_DIR"), "resnet") else {
        return;
    };
    if !common::ort_available() {
        return;
    }
    let root = common::json(&dir.join("config.json"));
    let (atol, rtol) = (
        root["tolerance"]["atol"].as_f64().unwrap(),
        root["tolerance"]["rtol"].as_f64().unwrap(),
    );
    let delta = root["drs_delta"].as_f64().unwrap() as f32;
    let w = Weights::open(dir.join("weights.safetensors")).unwrap();
    let input = TensorFile::open(dir.join("input.safetensors")).unwrap();
    let (x, xs) = input.f32("input").unwrap();
    let xs: [usize; 4] = xs.try_into().unwrap();

    let configs = root["configs"].as_object().unwrap();
    assert!(!configs.is_empty());
    for (variant, vcfg) in configs {
        let cfg = common::resnet_config(&root, vcfg);
        let golden = TensorFile::open(dir.join(format!("{variant}.safetensors"))).unwrap();
        let names: Vec<&String> = vcfg["tensors"].as_object().unwrap().keys().collect();
        let has_drs = names.iter().any(|n| n.as_str() == "layer4_drs");
        for drs in [None, Some(delta)]
            .into_iter()
            .filter(|d| d.is_none() || has_drs)
        {
            let bytes = export_backbone(&w, &cfg, drs).unwrap();
            let mut m =
                Model::from_bytes(&bytes, "backbone.onnx", &SessionConfig::default()).unwrap();
            let outs = m.run(&x, xs).unwrap();
            for o in &outs {
                // with DRS, layer4 is the fixture's `layer4_drs`; the other stages are shared
                let key = match (drs, o.name.as_str()) {
                    (Some(_), "layer4") => "layer4_drs".to_string(),
                    _ => o.name.clone(),
                };
                if !golden.contains(&key) {
                    continue;
                }
                let (want, shape) = golden.f32(&key).unwrap();
                assert_eq!(o.shape, shape, "{variant} {key}");
                common::assert_close(&format!("{variant} {key}"), &o.data, &want, atol, rtol);
            }
            // every golden stage was compared
            for n in &names {
                let covered =
                    outs.iter().any(|o| o.name == **n) || (n.as_str() == "layer4_drs" && has_drs);
                assert!(covered, "{variant}: golden `{n}` has no graph output");
            }
        }
    }
}
