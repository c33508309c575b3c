//! Shared helpers of the `ssc-label` CLI tests: ONNX Runtime detection (skip when absent), a
//! tiny synthetic benchmark, and tiny CAM and IRN networks exported from random weights.
#![allow(dead_code)]

#[path = "../../../inference/tests/common/mod.rs"]
mod inference_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ssc_core::rng::Rng;
use ssc_core::synth::{SynthConfig, write_dataset};
use ssc_models::config::{IrnConfig, ResNetConfig};
use ssc_models::onnx::export::export_irn_edge;
use ssc_models::onnx::{Weights, export_cam};

pub const LABEL: &str = env!("CARGO_BIN_EXE_ssc-label");

/// Whether the ONNX Runtime library loads; prints a SKIP notice when not.
pub fn ort_available() -> bool {
    match ssc_inference::runtime::init(None) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("SKIP: {e}");
            false
        }
    }
}

/// A synthetic benchmark with `n` train images near `size` px and 3 classes.
pub fn benchmark(dir: &Path, n: usize, size: usize) -> (PathBuf, SynthConfig) {
    let root = dir.join("synth");
    let cfg = SynthConfig {
        num_train: n,
        num_val: 1,
        size,
        classes: 3,
        ..SynthConfig::synthetic()
    };
    write_dataset(&cfg, &root, &|| {}).unwrap();
    (root, cfg)
}

/// Exports a tiny OS16 CAM network (ResNet blocks [1,1,1,1], base width 8) with random
/// weights and `classes` outputs to `<dir>/cam.onnx`.
pub fn tiny_cam_model(dir: &Path, classes: usize) -> PathBuf {
    let cfg = ResNetConfig::tiny_os16();
    let mut rng = Rng::new(7);
    let mut w = Weights::new();
    let conv = |w: &mut Weights, rng: &mut Rng, name: &str, o: usize, i: usize, k: usize| {
        let std = (2.0 / (i * k * k) as f64).sqrt();
        let v = (0..o * i * k * k)
            .map(|_| (rng.normal() * std) as f32)
            .collect();
        w.insert(format!("{name}.weight"), v, vec![o, i, k, k]);
    };
    let bn = |w: &mut Weights, rng: &mut Rng, name: &str, c: usize| {
        let mut v = |lo: f64, hi: f64| (0..c).map(|_| rng.uniform(lo, hi) as f32).collect();
        w.insert(format!("{name}.weight"), v(0.5, 1.5), vec![c]);
        w.insert(format!("{name}.bias"), v(-0.2, 0.2), vec![c]);
        w.insert(format!("{name}.running_mean"), v(-0.2, 0.2), vec![c]);
        w.insert(format!("{name}.running_var"), v(0.5, 2.0), vec![c]);
    };
    conv(&mut w, &mut rng, "conv1", cfg.base_width, 3, 7);
    bn(&mut w, &mut rng, "bn1", cfg.base_width);
    let mut in_c = cfg.base_width;
    for l in 0..4 {
        let planes = cfg.base_width << l;
        let out = cfg.out_channels(l);
        let p = format!("layer{}.0", l + 1);
        conv(&mut w, &mut rng, &format!("{p}.conv1"), planes, in_c, 1);
        conv(&mut w, &mut rng, &format!("{p}.conv2"), planes, planes, 3);
        conv(&mut w, &mut rng, &format!("{p}.conv3"), out, planes, 1);
        conv(&mut w, &mut rng, &format!("{p}.downsample.0"), out, in_c, 1);
        for (n, c) in [
            ("bn1", planes),
            ("bn2", planes),
            ("bn3", out),
            ("downsample.1", out),
        ] {
            bn(&mut w, &mut rng, &format!("{p}.{n}"), c);
        }
        in_c = out;
    }
    conv(&mut w, &mut rng, "classifier", classes, in_c, 1);
    let bytes = export_cam(&w, &cfg, classes, 0.55).unwrap();
    let path = dir.join("cam.onnx");
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Exports a tiny IRN edge network (the tiny OS16 backbone, random weights) to
/// `<dir>/irn.onnx`. The edge head's bias is negative so that most of the map is "no edge"
/// and the walk actually spreads.
pub fn tiny_irn_model(dir: &Path) -> PathBuf {
    let mut rng = Rng::new(11);
    let cfg = IrnConfig::tiny();
    let mut w = Weights::new();
    inference_common::random_resnet(&cfg.backbone, &mut rng, &mut w);
    let ew = cfg.edge_width;
    for (k, c) in cfg.feature_channels().into_iter().enumerate() {
        w.insert(
            format!("fc_edge{}.0.weight", k + 1),
            inference_common::randn(&mut rng, ew * c, 0.3),
            vec![ew, c, 1, 1],
        );
        w.insert(
            format!("fc_edge{}.1.weight", k + 1),
            vec![1.0; ew],
            vec![ew],
        );
        w.insert(format!("fc_edge{}.1.bias", k + 1), vec![0.0; ew], vec![ew]);
    }
    w.insert(
        "fc_edge6.weight",
        inference_common::randn(&mut rng, 5 * ew, 0.3),
        vec![1, 5 * ew, 1, 1],
    );
    w.insert("fc_edge6.bias", vec![-1.0], vec![1]);
    let path = dir.join("irn.onnx");
    std::fs::write(&path, export_irn_edge(&w, &cfg).unwrap()).unwrap();
    path
}

/// `ssc-label <sub>` with the shard variables of the environment cleared.
pub fn label(sub: &str) -> Command {
    let mut cmd = Command::new(LABEL);
    cmd.arg(sub).env("RUST_LOG", "warn");
    for var in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "JOB_COMPLETION_INDEX",
        "SSC_NUM_SHARDS",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// `ssc-label cams` with the shard variables of the environment cleared.
pub fn label_cmd(model: &Path, root: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut cmd = label("cams");
    cmd.arg("--model")
        .arg(model)
        .arg("--root")
        .arg(root)
        .arg("--out")
        .arg(out)
        .args(extra);
    cmd
}

pub fn text(o: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Names in `dir` (hidden ones included).
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Ids of the CAM files in `dir`.
pub fn cam_ids(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .filter_map(|n| n.strip_suffix(".safetensors").map(str::to_string))
        .collect()
}

pub fn train_ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("train_{i:05}")).collect()
}

/// The width-0.25 EfficientNet-Lite1 layout of the package goldens (random weights,
/// `models/tests/goldens/efficientnet-lite/tiny_random_weights.safetensors`), at output stride
/// `os`.
pub fn tiny_efficientnet(os: usize) -> (Weights, ssc_models::config::BackboneConfig) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/tests/goldens/efficientnet-lite/tiny_random_weights.safetensors");
    let w = Weights::open(&path).unwrap();
    let shapes = w
        .names()
        .into_iter()
        .map(|n| (n.to_string(), w.shape(n).unwrap().to_vec()))
        .collect();
    let cfg = ssc_models::config::EfficientNetConfig::infer(&shapes, os).unwrap();
    (w, cfg.into())
}

/// Exports CAM (`classes` outputs, OS16) and IRN networks on the tiny EfficientNet-Lite
/// backbone (random heads) to `<dir>/cam-lite.onnx` and `<dir>/irn-lite.onnx`.
pub fn tiny_efficientnet_models(dir: &Path, classes: usize) -> (PathBuf, PathBuf) {
    let (bw, backbone) = tiny_efficientnet(16);
    let mut rng = Rng::new(21);
    let fc = backbone.feature_channels();
    let mut w = bw.clone();
    w.insert(
        "classifier.weight",
        inference_common::randn(&mut rng, classes * fc, 0.05),
        vec![classes, fc, 1, 1],
    );
    let cam = dir.join("cam-lite.onnx");
    std::fs::write(&cam, export_cam(&w, &backbone, classes, 0.55).unwrap()).unwrap();
    let cfg = IrnConfig::for_backbone(backbone);
    let ew = cfg.edge_width;
    let mut w = bw;
    for (k, c) in cfg.feature_channels().into_iter().enumerate() {
        let n = k + 1;
        w.insert(
            format!("fc_edge{n}.0.weight"),
            inference_common::randn(&mut rng, ew * c, 0.2),
            vec![ew, c, 1, 1],
        );
        w.insert(format!("fc_edge{n}.1.weight"), vec![1.0; ew], vec![ew]);
        w.insert(format!("fc_edge{n}.1.bias"), vec![0.0; ew], vec![ew]);
    }
    w.insert(
        "fc_edge6.weight",
        inference_common::randn(&mut rng, 5 * ew, 0.2),
        vec![1, 5 * ew, 1, 1],
    );
    w.insert("fc_edge6.bias", vec![-2.0], vec![1]);
    let irn = dir.join("irn-lite.onnx");
    std::fs::write(&irn, export_irn_edge(&w, &cfg).unwrap()).unwrap();
    (cam, irn)
}
