//! Weight import: the three containers agree exactly; altered state dicts fail naming the
//! offending keys; conversion to safetensors round-trips.

mod common;

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use ssc_models::error::ModelError;
use ssc_models::import::{self, StateDict};

fn fixture() -> Option<std::path::PathBuf> {
    ssc_core::fixtures::case(env!("CARGO_MANIFEST_DIR"), "resnet")
}

fn layout(sd: &StateDict) -> ssc_models::config::ResNetConfig {
    import::infer_resnet(sd, [1, 2, 2, 1], [1; 4]).unwrap()
}

#[test]
fn all_three_containers_hold_identical_tensors() {
    let Some(dir) = fixture() else { return };
    let st = import::load_state_dict(dir.join("weights.safetensors")).unwrap();
    for f in ["weights.pth", "weights_legacy.pth"] {
        let other = import::load_state_dict(dir.join(f)).unwrap();
        assert_eq!(st.names(), other.names(), "{f}");
        assert!(
            !other
                .names()
                .iter()
                .any(|n| n.contains("num_batches_tracked"))
        );
        for n in st.names() {
            assert_eq!(
                common::max_abs_diff(&st.tensors()[n], &other.tensors()[n]),
                0.0,
                "{f} {n}"
            );
        }
    }
}

#[test]
fn altered_state_dicts_fail_naming_the_keys() {
    let Some(dir) = fixture() else { return };
    let sd = import::load_state_dict(dir.join("weights.safetensors")).unwrap();
    let cfg = layout(&sd);
    import::check_resnet(&sd, &cfg, false).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut t: HashMap<String, Tensor> = sd.tensors().clone();
    t.remove("layer2.0.bn2.running_var");
    t.insert(
        "layer3.0.conv2.weight".into(),
        Tensor::zeros((3, 3, 3, 3), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    t.insert(
        "extra.weight".into(),
        Tensor::zeros(2, candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    t.insert(
        "fc.weight".into(),
        Tensor::zeros((10, 256), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    let path = tmp.path().join("altered.safetensors");
    StateDict::from_tensors(&path, t)
        .save_safetensors(&path)
        .unwrap();
    let altered = import::load_state_dict(&path).unwrap();
    let err = import::check_resnet(&altered, &cfg, true).unwrap_err();
    let msg = err.to_string();
    match &err {
        ModelError::Mismatch {
            missing,
            unexpected,
            shapes,
            ..
        } => {
            assert_eq!(missing, &["layer2.0.bn2.running_var"]);
            assert_eq!(unexpected, &["extra.weight"]); // fc.* ignored on request
            assert_eq!(shapes.len(), 1);
            assert_eq!(shapes[0].name, "layer3.0.conv2.weight");
            assert_eq!(shapes[0].found, vec![3, 3, 3, 3]);
        }
        e => panic!("wrong error {e:?}"),
    }
    for key in [
        "layer2.0.bn2.running_var",
        "extra.weight",
        "layer3.0.conv2.weight",
        "altered.safetensors",
    ] {
        assert!(msg.contains(key), "{key} not in: {msg}");
    }
    // Without ignoring fc, it is reported too.
    let err = import::check_resnet(&altered, &cfg, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("fc.weight"), "{err}");
}

#[test]
fn conversion_round_trips_and_bad_files_fail_clearly() {
    let Some(dir) = fixture() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("converted.safetensors");
    let n = import::convert_pth_to_safetensors(&dir.join("weights_legacy.pth"), &dst).unwrap();
    let a = import::load_state_dict(&dst).unwrap();
    let b = import::load_state_dict(dir.join("weights.safetensors")).unwrap();
    assert_eq!(n, b.names().len());
    assert_eq!(a.names(), b.names());
    for name in b.names() {
        assert_eq!(
            common::max_abs_diff(&a.tensors()[name], &b.tensors()[name]),
            0.0
        );
    }
    // Garbage and truncated files: errors naming the file, no panic.
    let junk = tmp.path().join("junk.pth");
    std::fs::write(&junk, b"definitely not weights").unwrap();
    let e = import::load_state_dict(&junk).unwrap_err().to_string();
    assert!(e.contains("junk.pth"), "{e}");
    let bytes = std::fs::read(dir.join("weights_legacy.pth")).unwrap();
    let cut = tmp.path().join("cut.pth");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let e = import::load_state_dict(&cut).unwrap_err().to_string();
    assert!(e.contains("cut.pth") && e.contains("truncated"), "{e}");
    let bytes = std::fs::read(dir.join("weights.pth")).unwrap();
    let cut = tmp.path().join("cutzip.pth");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    assert!(import::load_state_dict(&cut).is_err());
    let missing = tmp.path().join("nope.pth");
    assert!(
        import::load_state_dict(&missing)
            .unwrap_err()
            .to_string()
            .contains("nope.pth")
    );
}

#[test]
fn infers_resnet50_layout_from_torchvision_shapes() {
    // A zero-filled torchvision ResNet-50 key set (with fc) infers blocks 3-4-6-3, width 64.
    let cfg50 = ssc_models::config::ResNetConfig::resnet50_os16();
    let params = import::model_params(|vb| ssc_models::resnet::ResNet::new(&cfg50, vb)).unwrap();
    assert_eq!(params.len(), 265); // torchvision resnet50 without fc and num_batches_tracked
    let mut t: HashMap<String, Tensor> = params
        .iter()
        .map(|(k, s)| {
            let z = Tensor::zeros(s.as_slice(), candle_core::DType::F32, &Device::Cpu).unwrap();
            (k.clone(), z)
        })
        .collect();
    t.insert(
        "fc.weight".into(),
        Tensor::zeros((1000, 2048), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    let sd = StateDict::from_tensors("mem", t);
    let got = import::infer_resnet(&sd, cfg50.strides, cfg50.dilations).unwrap();
    assert_eq!(got, cfg50);
    import::check_resnet(&sd, &got, true).unwrap();
}

/// EfficientNet-Lite state dicts: the layout comes from the keys; a missing, an unexpected
/// and a mis-shaped key are each named; a ResNet checkpoint where an EfficientNet is expected
/// and a truncated file fail naming the file.
#[test]
fn efficientnet_state_dicts_are_checked_by_name() {
    use ssc_models::config::{BackboneConfig, EfficientNetConfig};
    let tiny = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/goldens/efficientnet-lite/tiny_random_weights.safetensors");
    let sd = import::load_state_dict(&tiny).unwrap();
    let cfg = import::infer_backbone(&sd, "", [1, 2, 2, 1], [1; 4], 16).unwrap();
    let BackboneConfig::EfficientNetLite(eff) = &cfg else {
        panic!("inferred {cfg:?}");
    };
    assert_eq!(eff.num_blocks(), 21);
    assert_eq!(eff.output_stride, 16);
    import::check_backbone(&sd, &cfg, true).unwrap();

    let mut t = sd.tensors().clone();
    t.remove("_blocks.4._bn1.running_var");
    t.insert(
        "_blocks.4._extra.weight".into(),
        Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    t.insert(
        "_blocks.2._depthwise_conv.weight".into(),
        Tensor::zeros((48, 1, 5, 5), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    let bad = StateDict::from_tensors(&tiny, t);
    match import::check_backbone(&bad, &cfg, true).unwrap_err() {
        ModelError::Mismatch {
            missing,
            unexpected,
            shapes,
            ..
        } => {
            assert_eq!(missing, ["_blocks.4._bn1.running_var"]);
            assert_eq!(unexpected, ["_blocks.4._extra.weight"]);
            assert_eq!(shapes.len(), 1);
            assert_eq!(shapes[0].name, "_blocks.2._depthwise_conv.weight");
        }
        e => panic!("{e:?}"),
    }

    // A ResNet where an EfficientNet is expected: its keys do not describe one.
    let mut resnet = std::collections::BTreeMap::new();
    resnet.insert("conv1.weight".to_string(), vec![64, 3, 7, 7]);
    let e = EfficientNetConfig::infer(&resnet, 32).unwrap_err();
    assert!(e.contains("_conv_stem"), "{e}");

    // A truncated file names the file.
    let tmp = tempfile::tempdir().unwrap();
    let cut = tmp.path().join("cut.safetensors");
    let bytes = std::fs::read(&tiny).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = import::load_state_dict(&cut).unwrap_err().to_string();
    assert!(e.contains("cut.safetensors"), "{e}");
}
