//! ResNet stages vs the torch fixture (`resnet/`): OS16 (± layer4 DRS) and OS8, weights from
//! safetensors, zip `.pth` and legacy `.pth`.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde_json::Value;
use ssc_core::tensors::TensorFile;
use ssc_models::config::{Activation, ResNetConfig, ResNetOptions};
use ssc_models::import;
use ssc_models::resnet::ResNet;

fn usize4(v: &Value) -> [usize; 4] {
    let a: Vec<usize> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    a.try_into().unwrap()
}

fn load(dir: &Path, name: &str) -> Tensor {
    let tf = TensorFile::open(dir.join(name.split('/').next().unwrap())).unwrap();
    let (v, s) = tf.f32(name.split('/').nth(1).unwrap()).unwrap();
    Tensor::from_vec(v, s, &Device::Cpu).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar()
        .unwrap()
}

#[test]
fn resnet_stages_match_fixture_for_every_weight_format() {
    let Some(dir) = ssc_core::fixtures::case(env!("CARGO_MANIFEST_DIR"), "resnet") else {
        return;
    };
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let (atol, rtol) = (
        cfg["tolerance"]["atol"].as_f64().unwrap(),
        cfg["tolerance"]["rtol"].as_f64().unwrap(),
    );
    let delta = cfg["drs_delta"].as_f64().unwrap();
    let input = load(&dir, "input.safetensors/input");
    let dev = Device::Cpu;
    for file in ["weights.safetensors", "weights.pth", "weights_legacy.pth"] {
        let sd = import::load_state_dict(dir.join(file)).unwrap();
        for (name, c) in cfg["configs"].as_object().unwrap() {
            // Blocks and width come from the state dict; they must agree with the JSON.
            let layout = import::infer_resnet(
                &sd,
                usize4(&c["layer_strides"]),
                usize4(&c["layer_dilations"]),
            )
            .unwrap();
            let expected = ResNetConfig {
                blocks: usize4(&cfg["blocks"]),
                base_width: cfg["base_width"].as_u64().unwrap() as usize,
                strides: usize4(&c["layer_strides"]),
                dilations: usize4(&c["layer_dilations"]),
                bn_eps: cfg["bn_eps"].as_f64().unwrap(),
            };
            assert_eq!(layout, expected);
            import::check_resnet(&sd, &layout, true).unwrap();
            let vb = VarBuilder::from_tensors(sd.tensors().clone(), DType::F32, &dev);
            let net = ResNet::new(&layout, vb).unwrap();
            let st = net.forward_stages_t(&input, false).unwrap();
            let mut got: HashMap<&str, Tensor> = HashMap::from([
                ("conv1_relu", st.conv1_relu.clone()),
                ("stem", st.stem.clone()),
            ]);
            for (l, t) in st.layers.iter().enumerate() {
                got.insert(["layer1", "layer2", "layer3", "layer4"][l], t.clone());
            }
            let drs = Activation::Drs { delta };
            got.insert(
                "layer4_drs",
                net.layer_with_t(3, &st.layers[2], drs, false).unwrap(),
            );
            let tensors = c["tensors"].as_object().unwrap();
            assert!(tensors.len() >= 6);
            for t in tensors.keys() {
                let want = load(&dir, &format!("{name}.safetensors/{t}"));
                let gmax = c["max_abs"][t].as_f64().unwrap();
                let err = max_abs_diff(&got[t.as_str()], &want);
                assert!(err <= atol + rtol * gmax, "{file} {name} {t}: {err}");
            }
            // The same DRS layer4 through the options route.
            if tensors.contains_key("layer4_drs") {
                let vb = VarBuilder::from_tensors(sd.tensors().clone(), DType::F32, &dev);
                let opts = ResNetOptions::cam(delta);
                let net = ResNet::with_options(&layout, &opts, vb).unwrap();
                let l4 = net.layer_t(3, &st.layers[2], false).unwrap();
                let want = load(&dir, &format!("{name}.safetensors/layer4_drs"));
                assert!(
                    max_abs_diff(&l4, &want)
                        <= atol + rtol * c["max_abs"]["layer4_drs"].as_f64().unwrap()
                );
            }
        }
    }
}

/// Deterministic f64 weights for `cfg` (He-scaled convs, BN statistics near identity).
fn det_weights(cfg: &ResNetConfig, seed: u64) -> HashMap<String, Tensor> {
    use ssc_models::ops::gradcheck::random_f64;
    let params = import::model_params(|vb| ResNet::new(cfg, vb)).unwrap();
    let mut out = HashMap::new();
    for (i, (name, shape)) in params.iter().enumerate() {
        let u = random_f64(shape, seed + i as u64, &Device::Cpu).unwrap();
        let t = if shape.len() == 4 {
            let fan_in: usize = shape[1..].iter().product();
            (u * (6.0 / fan_in as f64).sqrt()).unwrap()
        } else if name.ends_with("running_var") {
            u.abs().unwrap().affine(0.5, 1.0).unwrap()
        } else if name.ends_with(".weight") {
            u.affine(0.2, 1.0).unwrap()
        } else {
            (u * 0.1).unwrap()
        };
        out.insert(name.clone(), t);
    }
    out
}

/// The whole tiny ResNet has the input gradient of its finite differences (f64,
/// deterministic weights): fixed BN with layer4 DRS (the CAM backbone, OS16) and batch BN in
/// training mode (the DeepLab backbone, OS8).
#[test]
fn tiny_resnet_input_gradient_matches_finite_differences() {
    use ssc_models::config::BnMode;
    use ssc_models::ops::gradcheck::{check, random_f64};
    let dev = Device::Cpu;
    let os16 = ResNetConfig {
        base_width: 4,
        ..ResNetConfig::tiny_os16()
    };
    let os8 = ResNetConfig {
        strides: [1, 2, 1, 1],
        dilations: [1, 1, 2, 4],
        ..os16.clone()
    };
    let cases = [
        (os16, ResNetOptions::cam(0.55), [2, 3, 13, 10]),
        (os8, ResNetOptions::deeplab(), [2, 3, 16, 16]),
    ];
    for (cfg, opts, shape) in cases {
        let vb = VarBuilder::from_tensors(det_weights(&cfg, 40), DType::F64, &dev);
        let net = ResNet::with_options(&cfg, &opts, vb).unwrap();
        let x = random_f64(&shape, 11, &dev).unwrap();
        let train = opts.bn == BnMode::Batch;
        let f = |t: &Tensor| net.forward_stages_t(t, train).map(|s| s.layers[3].clone());
        let r = check(f, &x, 1e-6, 5).unwrap();
        assert!(r.passes(1e-6, 1e-5), "{opts:?}: {r:?}");
        assert!(r.max_abs_grad > 1e-3, "{opts:?}: {r:?}");
    }
}
