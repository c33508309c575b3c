//! EfficientNet-Lite networks exported to ONNX and run in ONNX Runtime agree with the candle
//! modules within 1e-4, at odd input sizes and batch 1 and 2 (TF "SAME" padding is dynamic in
//! both): the CAM network (OS16, DRS after the head), the IRN edge network (OS16, five taps)
//! and DeepLabV2 (OS8) on the width-0.25 Lite1 layout of the package goldens with random
//! heads, and the whole ImageNet classifier (`export_imagenet`) with the real Lite0 weights
//! against the package goldens (skipped when `scripts/get-weights.sh` has not been run).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;
use ssc_core::rng::Rng;
use ssc_core::tensors::TensorFile;
use ssc_inference::runtime::{Model, SessionConfig};
use ssc_models::cam::CamNet;
use ssc_models::config::{BackboneConfig, CamNetConfig, DeepLabConfig, IrnConfig};
use ssc_models::deeplab::DeepLabV2;
use ssc_models::efficientnet::{EfficientNetClassifier, EfficientNetConfig};
use ssc_models::irn::Irn;
use ssc_models::onnx::{
    ExportMeta, Weights, export_cam, export_deeplab, export_imagenet, export_irn_edge,
};

const SIZES: [[usize; 4]; 3] = [[2, 3, 45, 61], [1, 3, 64, 64], [1, 3, 37, 50]];

fn goldens() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/goldens/efficientnet-lite")
}

fn shapes(w: &Weights) -> BTreeMap<String, Vec<usize>> {
    w.names()
        .into_iter()
        .map(|n| (n.to_string(), w.shape(n).unwrap().to_vec()))
        .collect()
}

/// Every tensor of `w` as a candle `VarBuilder`.
fn vars(w: &Weights) -> VarBuilder<'static> {
    let map: HashMap<String, Tensor> = w
        .names()
        .into_iter()
        .map(|n| {
            let s = w.shape(n).unwrap().to_vec();
            let v = w.get(n, &s, "test").unwrap().to_vec();
            (n.to_string(), Tensor::from_vec(v, s, &Device::Cpu).unwrap())
        })
        .collect();
    VarBuilder::from_tensors(map, DType::F32, &Device::Cpu)
}

fn random(w: &mut Weights, rng: &mut Rng, name: &str, shape: Vec<usize>, std: f64) {
    let v = common::randn(rng, shape.iter().product(), std);
    w.insert(name, v, shape);
}

fn tiny_backbone() -> (Weights, EfficientNetConfig) {
    let w = Weights::open(goldens().join("tiny_random_weights.safetensors")).unwrap();
    let cfg = EfficientNetConfig::infer(&shapes(&w), 32).unwrap();
    (w, cfg)
}

fn run(model: &mut Model, x: &[f32], shape: [usize; 4], name: &str) -> (Vec<f32>, Vec<usize>) {
    let out = model.run(x, shape).unwrap();
    let o = out.iter().find(|o| o.name == name).unwrap();
    (o.data.clone(), o.shape.clone())
}

fn flat(t: &Tensor) -> (Vec<f32>, Vec<usize>) {
    (
        t.flatten_all().unwrap().to_vec1().unwrap(),
        t.dims().to_vec(),
    )
}

#[test]
fn cam_irn_and_deeplab_match_candle() {
    if !common::ort_available() {
        return;
    }
    let (bw, eff) = tiny_backbone();
    let mut rng = Rng::new(3);
    let sc = SessionConfig::default();

    // CAM network at output stride 16 with DRS after the head.
    let os16: BackboneConfig = eff.clone().with_output_stride(16).into();
    let classes = 4;
    let mut w = bw.clone();
    random(
        &mut w,
        &mut rng,
        "classifier.weight",
        vec![classes, 1280, 1, 1],
        0.05,
    );
    let cam_cfg = CamNetConfig {
        backbone: os16.clone(),
        num_classes: classes,
        ..CamNetConfig::synthetic(classes)
    };
    let cam = CamNet::new(&cam_cfg, vars(&w)).unwrap();
    let mut onnx = Model::from_bytes(
        &export_cam(&w, &os16, classes, cam_cfg.drs_delta as f32).unwrap(),
        "cam.onnx",
        &sc,
    )
    .unwrap();
    assert_eq!(onnx.info().output_stride, 16);

    // IRN edge network on the same (frozen) backbone.
    let irn_cfg = IrnConfig::for_backbone(os16.clone());
    let mut wi = bw.clone();
    let ew = irn_cfg.edge_width;
    for (k, c) in irn_cfg.feature_channels().into_iter().enumerate() {
        random(
            &mut wi,
            &mut rng,
            &format!("fc_edge{}.0.weight", k + 1),
            vec![ew, c, 1, 1],
            0.3,
        );
        let gw = (0..ew).map(|_| rng.uniform(0.5, 1.5) as f32).collect();
        wi.insert(format!("fc_edge{}.1.weight", k + 1), gw, vec![ew]);
        random(
            &mut wi,
            &mut rng,
            &format!("fc_edge{}.1.bias", k + 1),
            vec![ew],
            0.1,
        );
    }
    random(
        &mut wi,
        &mut rng,
        "fc_edge6.weight",
        vec![1, 5 * ew, 1, 1],
        0.3,
    );
    random(&mut wi, &mut rng, "fc_edge6.bias", vec![1], 0.1);
    let irn = Irn::from_parts(&irn_cfg, vars(&bw), vars(&wi)).unwrap();
    let mut irn_onnx =
        Model::from_bytes(&export_irn_edge(&wi, &irn_cfg).unwrap(), "irn.onnx", &sc).unwrap();

    // DeepLabV2 at output stride 8.
    let dl_cfg = DeepLabConfig {
        backbone: eff.clone().with_output_stride(8).into(),
        num_classes: 3,
        ..DeepLabConfig::synthetic(3)
    };
    let mut wd = bw.clone();
    for i in 0..dl_cfg.rates.len() {
        random(
            &mut wd,
            &mut rng,
            &format!("classifier.{i}.weight"),
            vec![3, 1280, 3, 3],
            0.02,
        );
        random(
            &mut wd,
            &mut rng,
            &format!("classifier.{i}.bias"),
            vec![3],
            0.1,
        );
    }
    let mut dl_vars = bw.clone();
    dl_vars.merge(bw.clone(), "backbone.");
    for i in 0..dl_cfg.rates.len() {
        for p in ["weight", "bias"] {
            let n = format!("classifier.{i}.{p}");
            let s = wd.shape(&n).unwrap().to_vec();
            let v = wd.get(&n, &s, "test").unwrap().to_vec();
            dl_vars.insert(n, v, s);
        }
    }
    let dl = DeepLabV2::new(&dl_cfg, vars(&dl_vars)).unwrap();
    let mut dl_onnx =
        Model::from_bytes(&export_deeplab(&wd, &dl_cfg).unwrap(), "deeplab.onnx", &sc).unwrap();

    for shape in SIZES {
        let x: Vec<f32> = common::randn(&mut rng, shape.iter().product(), 1.0);
        let xt = Tensor::from_vec(x.clone(), &shape, &Device::Cpu).unwrap();
        let (got, gs) = run(&mut onnx, &x, shape, "cam");
        let (want, ws) = flat(&cam.forward_cam(&xt).unwrap());
        assert_eq!(gs, ws);
        assert_eq!(gs[2..], [shape[2].div_ceil(16), shape[3].div_ceil(16)]);
        common::assert_close(&format!("CAM {shape:?}"), &got, &want, 1e-4, 1e-5);

        let (got, gs) = run(&mut irn_onnx, &x, shape, "edge_logits");
        let (want, ws) = flat(&irn.forward(&xt).unwrap());
        assert_eq!(gs, ws);
        assert_eq!(gs[2..], [shape[2].div_ceil(4), shape[3].div_ceil(4)]);
        common::assert_close(&format!("IRN {shape:?}"), &got, &want, 1e-4, 1e-5);

        let both = dl.forward_both(&xt, false).unwrap();
        for (name, t) in [("pre_logits", &both.pre_logits), ("logits", &both.logits)] {
            let (got, gs) = run(&mut dl_onnx, &x, shape, name);
            let (want, ws) = flat(t);
            assert_eq!(gs, ws);
            common::assert_close(
                &format!("DeepLab {name} {shape:?}"),
                &got,
                &want,
                1e-4,
                1e-5,
            );
        }
    }
}

#[test]
fn imagenet_classifier_matches_the_package_and_candle() {
    if !common::ort_available() {
        return;
    }
    let Some(weights) = ssc_core::fixtures::weights_file(
        env!("CARGO_MANIFEST_DIR"),
        "efficientnet-lite0.safetensors",
    ) else {
        return;
    };
    let w = Weights::open(&weights).unwrap();
    let cfg = EfficientNetConfig::infer(&shapes(&w), 32).unwrap();
    let meta = ExportMeta::new((0..1000).map(|i| format!("imagenet{i}")).collect());
    let bytes = export_imagenet(&w, &cfg, 1000, Some(&meta)).unwrap();
    let mut onnx = Model::from_bytes(&bytes, "imagenet.onnx", &SessionConfig::default()).unwrap();
    assert_eq!(onnx.info().arch, "imagenet");
    let candle = EfficientNetClassifier::new(&cfg, 1000, vars(&w)).unwrap();
    let golden = common::json(&goldens().join("config.json"));
    for case in ["lite0_imagenet_224", "lite0_imagenet_odd"] {
        let f = TensorFile::open(goldens().join(format!("{case}.safetensors"))).unwrap();
        let (x, s) = f.f32("input").unwrap();
        let shape: [usize; 4] = s.clone().try_into().unwrap();
        let (got, _) = run(&mut onnx, &x, shape, "logits");
        let (want, _) = f.f32("logits").unwrap();
        let tol = &golden["cases"][case]["tolerance"];
        common::assert_close(
            &format!("{case}: ONNX vs package"),
            &got,
            &want,
            tol["atol"].as_f64().unwrap(),
            tol["rtol"].as_f64().unwrap(),
        );
        let xt = Tensor::from_vec(x, s, &Device::Cpu).unwrap();
        let (c, _) = flat(&candle.forward(&xt).unwrap());
        common::assert_close(&format!("{case}: ONNX vs candle"), &got, &c, 1e-4, 1e-5);
        let (feat, _) = run(&mut onnx, &f.f32("input").unwrap().0, shape, "features");
        let (want, _) = f.f32("features").unwrap();
        common::assert_close(&format!("{case}: features"), &feat, &want, 1e-3, 1e-5);
    }
}
