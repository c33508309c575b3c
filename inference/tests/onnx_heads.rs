//! The IRN edge network (§4.2) and DeepLabV2 (§6.1) exported with random weights: they load
//! in ONNX Runtime, accept dynamic batch and odd H/W, give the specified output shapes, and
//! their heads agree with the candle modules of ssc-models (IRN edge branch, ASPP) run on the
//! same backbone features; DeepLab's `logits` are its `pre_logits` resized bilinearly.

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;
use ssc_core::resize::bilinear_chw;
use ssc_core::rng::Rng;
use ssc_inference::runtime::{Model, Output, SessionConfig};
use ssc_models::config::{DeepLabConfig, IrnConfig};
use ssc_models::deeplab::Aspp;
use ssc_models::irn::IrnEdge;
use ssc_models::onnx::{Weights, export_backbone, export_deeplab, export_irn_edge};

/// Odd, unequal sizes (the IRN crop and the stride-2 rounding both matter) and batch 1 / 2.
const SIZES: [[usize; 4]; 3] = [[2, 3, 45, 61], [1, 3, 33, 70], [1, 3, 64, 48]];

fn image(rng: &mut Rng, shape: [usize; 4]) -> Vec<f32> {
    common::randn(rng, shape.iter().product(), 1.0)
}

fn tensor(o: &Output) -> Tensor {
    Tensor::from_vec(o.data.clone(), o.shape.clone(), &Device::Cpu).unwrap()
}

fn get<'a>(outs: &'a [Output], name: &str) -> &'a Output {
    outs.iter().find(|o| o.name == name).unwrap()
}

/// The listed parameters of `w` as a candle `VarBuilder`.
fn candle_vars(w: &Weights, params: &[(String, Vec<usize>)]) -> VarBuilder<'static> {
    let mut map = HashMap::new();
    for (name, shape) in params {
        let v = w.get(name, shape, "test").unwrap().to_vec();
        map.insert(
            name.clone(),
            Tensor::from_vec(v, shape.clone(), &Device::Cpu).unwrap(),
        );
    }
    VarBuilder::from_tensors(map, DType::F32, &Device::Cpu)
}

fn ceil_div(a: usize, b: usize) -> usize {
    a.div_ceil(b)
}

#[test]
fn irn_edge_runs_on_odd_sizes_and_matches_candle() {
    if !common::ort_available() {
        return;
    }
    let mut rng = Rng::new(7);
    let mut cfg = IrnConfig::tiny();
    // two channels per GN group, so the grouping (not only per-channel norm) is exercised
    cfg.edge_width = 2 * cfg.gn_groups;
    let mut w = Weights::new();
    common::random_resnet(&cfg.backbone, &mut rng, &mut w);
    let ew = cfg.edge_width;
    let mut params = Vec::new();
    for (k, c) in cfg.feature_channels().into_iter().enumerate() {
        params.push((format!("fc_edge{}.0.weight", k + 1), vec![ew, c, 1, 1]));
        params.push((format!("fc_edge{}.1.weight", k + 1), vec![ew]));
        params.push((format!("fc_edge{}.1.bias", k + 1), vec![ew]));
    }
    params.push(("fc_edge6.weight".into(), vec![1, 5 * ew, 1, 1]));
    params.push(("fc_edge6.bias".into(), vec![1]));
    for (name, shape) in &params {
        let n = shape.iter().product();
        // GN weights around 1, everything else small and random
        let v = if name.ends_with(".1.weight") {
            (0..n).map(|_| rng.uniform(0.5, 1.5) as f32).collect()
        } else {
            common::randn(&mut rng, n, 0.3)
        };
        w.insert(name.clone(), v, shape.clone());
    }

    let sc = SessionConfig::default();
    let mut irn = Model::from_bytes(&export_irn_edge(&w, &cfg).unwrap(), "irn.onnx", &sc).unwrap();
    let mut bb = Model::from_bytes(
        &export_backbone(&w, cfg.backbone.as_resnet().unwrap(), None).unwrap(),
        "backbone.onnx",
        &sc,
    )
    .unwrap();
    assert_eq!(irn.info().arch, "irn");
    assert_eq!(irn.info().output_stride, 4);
    let edge = IrnEdge::new(&cfg, candle_vars(&w, &params)).unwrap();

    for shape in SIZES {
        let x = image(&mut rng, shape);
        let out = irn.run(&x, shape).unwrap();
        let [n, _, h, wd] = shape;
        assert_eq!(out[0].name, "edge_logits");
        assert_eq!(out[0].shape, [n, 1, ceil_div(h, 4), ceil_div(wd, 4)]);
        assert!(out[0].data.iter().all(|v| v.is_finite()));

        let feats = bb.run(&x, shape).unwrap();
        let feats: Vec<Tensor> = ["stem", "layer1", "layer2", "layer3", "layer4"]
            .iter()
            .map(|s| tensor(get(&feats, s)))
            .collect();
        let want = edge.forward(&feats).unwrap();
        assert_eq!(want.dims(), out[0].shape.as_slice());
        let want: Vec<f32> = want.flatten_all().unwrap().to_vec1().unwrap();
        common::assert_close(
            &format!("IRN edge {shape:?}"),
            &out[0].data,
            &want,
            1e-4,
            1e-5,
        );
    }
}

#[test]
fn deeplab_runs_on_odd_sizes_and_matches_candle_aspp() {
    if !common::ort_available() {
        return;
    }
    let mut rng = Rng::new(11);
    let cfg = DeepLabConfig::synthetic(5);
    let k = cfg.num_classes;
    let cin = cfg.backbone.feature_channels();
    let mut w = Weights::new();
    common::random_resnet(&cfg.backbone, &mut rng, &mut w);
    let mut params = Vec::new();
    for i in 0..cfg.rates.len() {
        params.push((format!("classifier.{i}.weight"), vec![k, cin, 3, 3]));
        params.push((format!("classifier.{i}.bias"), vec![k]));
    }
    for (name, shape) in &params {
        let v = common::randn(&mut rng, shape.iter().product(), 0.05);
        w.insert(name.clone(), v, shape.clone());
    }

    let sc = SessionConfig::default();
    let mut dl = Model::from_bytes(&export_deeplab(&w, &cfg).unwrap(), "dl.onnx", &sc).unwrap();
    let mut bb = Model::from_bytes(
        &export_backbone(&w, cfg.backbone.as_resnet().unwrap(), None).unwrap(),
        "backbone.onnx",
        &sc,
    )
    .unwrap();
    assert_eq!(dl.info().arch, "deeplab");
    assert_eq!(dl.info().class_names.len(), k);
    assert_eq!(dl.info().output_stride, cfg.backbone.output_stride());
    assert_eq!(dl.output_names(), ["pre_logits", "logits"]);
    let vb = candle_vars(&w, &params);
    let aspp = Aspp::new(cin, k, &cfg.rates, cfg.head_init_std, vb.pp("classifier")).unwrap();
    let os = cfg.backbone.output_stride();

    for shape in SIZES {
        let x = image(&mut rng, shape);
        let out = dl.run(&x, shape).unwrap();
        let [n, _, h, wd] = shape;
        let (pre, logits) = (&out[0], &out[1]);
        let (h8, w8) = (ceil_div(h, os), ceil_div(wd, os));
        assert_eq!(pre.shape, [n, k, h8, w8]);
        assert_eq!(logits.shape, [n, k, h, wd]);

        let feats = bb.run(&x, shape).unwrap();
        let want = aspp.forward(&tensor(get(&feats, "layer4"))).unwrap();
        let want: Vec<f32> = want.flatten_all().unwrap().to_vec1().unwrap();
        common::assert_close(
            &format!("pre_logits {shape:?}"),
            &pre.data,
            &want,
            1e-4,
            1e-5,
        );

        for b in 0..n {
            let plane = k * h8 * w8;
            let up = bilinear_chw(&pre.data[b * plane..(b + 1) * plane], k, h8, w8, h, wd).unwrap();
            let got = &logits.data[b * k * h * wd..(b + 1) * k * h * wd];
            common::assert_close(&format!("logits {shape:?} #{b}"), got, &up, 1e-5, 1e-5);
        }
    }
}
