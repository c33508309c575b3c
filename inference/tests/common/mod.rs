//! Shared helpers of the ort-running tests: library detection (skip when absent), fixture
//! configs, tolerance checks and random state dicts.
#![allow(dead_code)]

use std::path::Path;

use ssc_core::rng::Rng;
use ssc_inference::runtime;
use ssc_models::config::{BackboneConfig, ResNetConfig};
use ssc_models::onnx::Weights;

/// Whether the ONNX Runtime library can be loaded; prints a SKIP notice when not.
pub fn ort_available() -> bool {
    match runtime::init(None) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("SKIP: {e}");
            false
        }
    }
}

/// Reads a JSON file.
pub fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn arr4(v: &serde_json::Value) -> [usize; 4] {
    let a: Vec<usize> = serde_json::from_value(v.clone()).unwrap();
    a.try_into().unwrap()
}

/// A ResNet config from `resnet/config.json` and one of its `configs` entries.
pub fn resnet_config(root: &serde_json::Value, variant: &serde_json::Value) -> ResNetConfig {
    ResNetConfig {
        blocks: arr4(&root["blocks"]),
        base_width: root["base_width"].as_u64().unwrap() as usize,
        strides: arr4(&variant["layer_strides"]),
        dilations: arr4(&variant["layer_dilations"]),
        bn_eps: root["bn_eps"].as_f64().unwrap(),
    }
}

/// `max |a − b| ≤ atol + rtol · max |b|`, with a message naming `what`.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let max_ref = want.iter().fold(0f64, |m, &v| m.max((v as f64).abs()));
    let err = got
        .iter()
        .zip(want)
        .fold(0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs()));
    let tol = atol + rtol * max_ref;
    assert!(err <= tol, "{what}: max |Δ| {err:e} > {tol:e}");
    eprintln!("{what}: max |Δ| {err:.3e} (tolerance {tol:.1e})");
}

/// Every parameter of a torchvision ResNet for `cfg` (BN statistics sane: var in [0.5, 2)).
pub fn random_resnet(cfg: impl Into<BackboneConfig>, rng: &mut Rng, w: &mut Weights) {
    let cfg = cfg.into();
    let cfg = cfg.as_resnet().expect("a ResNet layout");
    let mut conv = |w: &mut Weights, name: &str, o: usize, i: usize, k: usize| {
        let std = (2.0 / (i * k * k) as f64).sqrt();
        let v = (0..o * i * k * k)
            .map(|_| (rng.normal() * std) as f32)
            .collect();
        w.insert(format!("{name}.weight"), v, vec![o, i, k, k]);
    };
    let bn = |w: &mut Weights, name: &str, c: usize, rng: &mut Rng| {
        let mut v = |lo: f64, hi: f64| (0..c).map(|_| rng.uniform(lo, hi) as f32).collect();
        w.insert(format!("{name}.weight"), v(0.5, 1.5), vec![c]);
        w.insert(format!("{name}.bias"), v(-0.2, 0.2), vec![c]);
        w.insert(format!("{name}.running_mean"), v(-0.2, 0.2), vec![c]);
        w.insert(format!("{name}.running_var"), v(0.5, 2.0), vec![c]);
    };
    let mut bns = Vec::new();
    conv(w, "conv1", cfg.base_width, 3, 7);
    bns.push(("bn1".to_string(), cfg.base_width));
    let mut in_c = cfg.base_width;
    for l in 0..4 {
        let planes = cfg.base_width << l;
        let out = cfg.out_channels(l);
        for b in 0..cfg.blocks[l] {
            let p = format!("layer{}.{b}", l + 1);
            conv(w, &format!("{p}.conv1"), planes, in_c, 1);
            conv(w, &format!("{p}.conv2"), planes, planes, 3);
            conv(w, &format!("{p}.conv3"), out, planes, 1);
            for (n, c) in [(1, planes), (2, planes), (3, out)] {
                bns.push((format!("{p}.bn{n}"), c));
            }
            if b == 0 {
                conv(w, &format!("{p}.downsample.0"), out, in_c, 1);
                bns.push((format!("{p}.downsample.1"), out));
            }
            in_c = out;
        }
    }
    for (name, c) in bns {
        bn(w, &name, c, rng);
    }
}

/// `n` values ~ N(0, std²).
pub fn randn(rng: &mut Rng, n: usize, std: f64) -> Vec<f32> {
    (0..n).map(|_| (rng.normal() * std) as f32).collect()
}
