//! The §6.5 DeepLab segmenter through ONNX Runtime on a tiny exported network with random
//! weights: single-scale at the image's own size equals the arg-max of the graph's
//! full-size `logits` (normalisation, resize and arg-max agree with the graph), and the
//! multi-scale path gives a full-size map with sane scores. Skips without the runtime.

mod common;

use image::RgbImage;
use ssc_core::rng::Rng;
use ssc_inference::runtime::{Model, SessionConfig};
use ssc_inference::segment::{DeepLabSegmenter, SegmentConfig};
use ssc_models::config::DeepLabConfig;
use ssc_models::onnx::{Weights, export_deeplab};

fn tiny_deeplab(k: usize) -> Vec<u8> {
    let mut rng = Rng::new(5);
    let cfg = DeepLabConfig::synthetic(k);
    let cin = cfg.backbone.feature_channels();
    let mut w = Weights::new();
    common::random_resnet(&cfg.backbone, &mut rng, &mut w);
    for i in 0..cfg.rates.len() {
        let shape = vec![k, cin, 3, 3];
        let v = common::randn(&mut rng, shape.iter().product(), 0.05);
        w.insert(format!("classifier.{i}.weight"), v, shape);
        w.insert(
            format!("classifier.{i}.bias"),
            common::randn(&mut rng, k, 0.5),
            vec![k],
        );
    }
    export_deeplab(&w, &cfg).unwrap()
}

fn image(w: u32, h: u32) -> RgbImage {
    let mut rng = Rng::new(9);
    RgbImage::from_fn(w, h, |x, y| {
        let n = (rng.f64() * 60.0) as u8;
        image::Rgb([(x * 5) as u8 + n, (y * 4) as u8, 200 - n])
    })
}

#[test]
fn single_scale_equals_graph_logits_argmax() {
    if !common::ort_available() {
        return;
    }
    let k = 4;
    let bytes = tiny_deeplab(k);
    let sc = SessionConfig::default();
    let img = image(40, 40);
    let cfg = SegmentConfig {
        input_size: 40,
        scales: vec![],
    };
    let mut seg =
        DeepLabSegmenter::new(Model::from_bytes(&bytes, "dl.onnx", &sc).unwrap(), cfg).unwrap();
    assert_eq!(seg.class_names().len(), k);
    let p = seg.predict(&img).unwrap();

    let mut model = Model::from_bytes(&bytes, "dl.onnx", &sc).unwrap();
    let info = model.info().clone();
    let n = 40 * 40;
    let mut input = vec![0f32; 3 * n];
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            input[c * n + i] =
                (f32::from(px[c]) / 255.0 - info.mean[c] as f32) / info.std[c] as f32;
        }
    }
    let outs = model.run(&input, [1, 3, 40, 40]).unwrap();
    let logits = &outs.iter().find(|o| o.name == "logits").unwrap().data;
    let want: Vec<u8> = (0..n)
        .map(|i| {
            (0..k)
                .fold((0, f32::NEG_INFINITY), |m, c| {
                    if logits[c * n + i] > m.1 {
                        (c, logits[c * n + i])
                    } else {
                        m
                    }
                })
                .0 as u8
        })
        .collect();
    let same = p.labels.iter().zip(&want).filter(|(a, b)| a == b).count();
    // float rounding may flip near-ties only
    assert!(
        same as f64 >= 0.995 * n as f64,
        "{same} of {n} pixels agree"
    );
    assert!(
        want.iter().collect::<std::collections::HashSet<_>>().len() > 1,
        "test needs >1 class"
    );
}

#[test]
fn multi_scale_gives_a_full_size_map() {
    if !common::ort_available() {
        return;
    }
    let bytes = tiny_deeplab(3);
    let sc = SessionConfig::default();
    let cfg = SegmentConfig {
        input_size: 48,
        scales: vec![0.5, 0.75, 1.0, 1.25, 1.5],
    };
    let mut seg =
        DeepLabSegmenter::new(Model::from_bytes(&bytes, "dl.onnx", &sc).unwrap(), cfg).unwrap();
    let p = seg.predict(&image(37, 29)).unwrap();
    assert_eq!((p.width, p.height, p.labels.len()), (37, 29, 37 * 29));
    assert!(p.labels.iter().all(|&l| l < 3));
    for (c, &s) in p.scores.iter().enumerate() {
        let used = p.labels.contains(&(c as u8));
        assert!(
            if used {
                (1.0 / 3.0..=1.0).contains(&s)
            } else {
                s == 0.0
            },
            "class {c}: {s}"
        );
    }
}
