//! `ssc-export`: `.pth` conversion, CAM/DeepLab export from torchvision-named fixture weights
//! checked through ONNX Runtime against the PyTorch goldens, and missing-tensor errors.

use std::path::Path;
use std::process::Command;

use ssc_core::tensors::{Array, TensorFile, write};
use ssc_inference::runtime::{Model, SessionConfig, find_library};

const EXPORT: &str = env!("CARGO_BIN_EXE_ssc-export");

fn export(args: &[&str]) -> std::process::Output {
    Command::new(EXPORT)
        .args(args)
        .output()
        .expect("ssc-export runs")
}

/// Copies every tensor of `files` into one safetensors file, leaving out `drop`.
/// `ssc-export --arch ARCH --weights W --out ONNX` (must succeed), then the ONNX opened in ONNX
/// Runtime; `None` (with a notice) when the runtime library is absent.
fn export_and_open(arch: &str, weights: &Path, onnx: &Path) -> Option<Model> {
    let o = export(&[
        "--arch",
        arch,
        "--weights",
        weights.to_str().unwrap(),
        "--out",
        onnx.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    if find_library(None).is_err() {
        eprintln!("SKIP: ONNX Runtime library not found (run scripts/setup-ort.sh)");
        return None;
    }
    Some(Model::open(onnx, &SessionConfig::default()).unwrap())
}

fn combine(files: &[&Path], drop: Option<&str>, out: &Path) {
    let mut arrays = Vec::new();
    for f in files {
        let tf = TensorFile::open(f).unwrap();
        for name in tf.names() {
            if Some(name.as_str()) == drop {
                continue;
            }
            let (v, s) = tf.f32(&name).unwrap();
            arrays.push((name, Array::F32(v, s)));
        }
    }
    let refs: Vec<(&str, Array)> = arrays
        .iter()
        .map(|(n, a)| (n.as_str(), a.clone()))
        .collect();
    write(out, &refs, None).unwrap();
}

fn max_err(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .fold(0f64, |m, (x, y)| m.max((x - y).abs() as f64))
}

#[test]
fn convert_legacy_pth_round_trips() {
    let Some(dir) = ssc_core::fixtures::case(env!("CARGO_MANIFEST_DIR"), "resnet") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("w.safetensors");
    let legacy = dir.join("weights_legacy.pth");
    let o = export(&[
        "convert",
        "--pth",
        legacy.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = TensorFile::open(&out).unwrap();
    let want = TensorFile::open(dir.join("weights.safetensors")).unwrap();
    assert_eq!(got.names(), want.names());
    for n in want.names() {
        assert_eq!(got.f32(&n).unwrap(), want.f32(&n).unwrap(), "{n}");
    }
}

#[test]
fn cam_export_matches_the_reference_through_ort() {
    let Some(root) = ssc_core::fixtures::root(env!("CARGO_MANIFEST_DIR")) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let weights = tmp.path().join("cam.safetensors");
    combine(
        &[
            &root.join("resnet/weights.safetensors"),
            &root.join("cam/weights.safetensors"),
        ],
        None,
        &weights,
    );
    let onnx = tmp.path().join("cam.onnx");
    let Some(mut model) = export_and_open("cam", &weights, &onnx) else {
        return;
    };
    assert_eq!(model.info().arch, "cam");
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("cam/config.json")).unwrap()).unwrap();
    let t = TensorFile::open(root.join("cam/tensors.safetensors")).unwrap();
    for i in 0..cfg["scales"].as_array().unwrap().len() {
        let (x, s) = t.f32(&format!("scale{i}_input")).unwrap();
        let (want, ws) = t.f32(&format!("scale{i}_cam_pair")).unwrap();
        let out = model.run(&x, [s[0], s[1], s[2], s[3]]).unwrap();
        assert_eq!(out[0].shape, ws);
        let scale = want.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
        let err = max_err(&out[0].data, &want);
        assert!(err <= 1e-4 + 1e-5 * scale, "scale {i}: {err}");
    }
}

#[test]
fn missing_tensor_is_named_and_deeplab_exports() {
    let Some(root) = ssc_core::fixtures::root(env!("CARGO_MANIFEST_DIR")) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let broken = tmp.path().join("broken.safetensors");
    combine(
        &[
            &root.join("resnet/weights.safetensors"),
            &root.join("cam/weights.safetensors"),
        ],
        Some("layer2.0.conv2.weight"),
        &broken,
    );
    let out = tmp.path().join("x.onnx");
    let o = export(&[
        "--arch",
        "cam",
        "--weights",
        broken.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("layer2"), "{err}");
    assert!(!out.exists(), "no output on failure");

    // DeepLab: the fixture backbone plus a 3-class ASPP head, OS8 layout from the flag.
    let mut rng = ssc_core::rng::Rng::new(1);
    let c = TensorFile::open(root.join("resnet/weights.safetensors")).unwrap();
    let cin = c.shape("layer4.0.conv3.weight").unwrap()[0];
    let mut arrays: Vec<(String, Array)> = c
        .names()
        .into_iter()
        .map(|n| {
            let (v, s) = c.f32(&n).unwrap();
            (n, Array::F32(v, s))
        })
        .collect();
    for i in 0..4 {
        let w: Vec<f32> = (0..3 * cin * 9)
            .map(|_| (rng.normal() * 0.01) as f32)
            .collect();
        arrays.push((
            format!("classifier.{i}.weight"),
            Array::F32(w, vec![3, cin, 3, 3]),
        ));
        arrays.push((
            format!("classifier.{i}.bias"),
            Array::F32(vec![0.0; 3], vec![3]),
        ));
    }
    let refs: Vec<(&str, Array)> = arrays
        .iter()
        .map(|(n, a)| (n.as_str(), a.clone()))
        .collect();
    let dl = tmp.path().join("deeplab.safetensors");
    write(&dl, &refs, None).unwrap();
    let onnx = tmp.path().join("deeplab.onnx");
    let Some(mut model) = export_and_open("deeplab", &dl, &onnx) else {
        return;
    };
    assert_eq!(model.info().output_stride, 8);
    let (h, w) = (37, 50);
    let x: Vec<f32> = (0..3 * h * w).map(|_| rng.normal() as f32).collect();
    let outs = model.run(&x, [1, 3, h, w]).unwrap();
    let logits = outs.iter().find(|o| o.name == "logits").unwrap();
    assert_eq!(logits.shape, vec![1, 3, h, w]);
}
