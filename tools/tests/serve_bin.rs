//! The real `ssc-serve` binary on a tiny exported DeepLab (random weights) through ONNX
//! Runtime: it logs its address, answers `/health` and `/predict` with full-size brush masks,
//! and exits 0 on SIGTERM (graceful shutdown). Skips without the runtime library.

#[path = "../../inference/tests/common/mod.rs"]
mod common;

mod serve_common;

use std::process::Command;

use serde_json::Value;
use serve_common::{Server, assert_served_equals_written, brush, class_names};
use ssc_core::rng::Rng;
use ssc_models::config::DeepLabConfig;
use ssc_models::onnx::{ExportMeta, Weights, export_deeplab_with};

fn tiny_model(path: &std::path::Path) {
    let mut rng = Rng::new(3);
    let cfg = DeepLabConfig::synthetic(3);
    let cin = cfg.backbone.feature_channels();
    let mut w = Weights::new();
    common::random_resnet(&cfg.backbone, &mut rng, &mut w);
    for i in 0..cfg.rates.len() {
        let shape = vec![3, cin, 3, 3];
        let v = common::randn(&mut rng, shape.iter().product(), 0.05);
        w.insert(format!("classifier.{i}.weight"), v, shape);
        w.insert(
            format!("classifier.{i}.bias"),
            common::randn(&mut rng, 3, 0.5),
            vec![3],
        );
    }
    let meta = ExportMeta::with_background(3);
    std::fs::write(path, export_deeplab_with(&w, &cfg, &meta).unwrap()).unwrap();
}

#[test]
#[cfg(unix)]
fn binary_serves_predictions_and_stops_on_sigterm() {
    if !common::ort_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("seg.onnx");
    tiny_model(&model);
    let img = image::RgbImage::from_fn(33, 21, |x, y| {
        image::Rgb([(x * 7) as u8, (y * 11) as u8, 90])
    });
    img.save(dir.path().join("pic.png")).unwrap();

    let server = Server::start(
        &[
            "--model",
            model.to_str().unwrap(),
            "--input-size",
            "64",
            "--model-version",
            "tiny",
        ],
        dir.path(),
    );
    let (addr, agent) = (server.addr.clone(), server.agent());
    let health: Value = serde_json::from_str(
        &agent
            .get(format!("http://{addr}/health"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(health["status"], "UP");
    let preds = server.predict(&[(1, "pic.png")]);
    let pred = &preds[0];
    assert_eq!(pred["model_version"], "tiny");
    let mut covered = vec![0u8; 33 * 21];
    for r in pred["result"].as_array().unwrap() {
        assert_eq!(
            (r["original_width"].as_u64(), r["original_height"].as_u64()),
            (Some(33), Some(21))
        );
        for (c, a) in covered.iter_mut().zip(brush(r, 33, 21)) {
            *c += u8::from(a >= 128);
        }
    }
    assert!(
        covered.iter().all(|&c| c <= 1),
        "brushes of different classes overlap"
    );

    let log = server.stop().join("\n");
    assert!(log.contains("stopped"), "{log}");
}

/// The same images get the same masks from `ssc-serve` as from `ssc-predict` with the same
/// settings (one `DeepLabSegmenter` behind both), down to a 1×1 image.
#[test]
#[cfg(unix)]
fn served_masks_equal_the_masks_ssc_predict_writes() {
    if !common::ort_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("seg.onnx");
    tiny_model(&model);
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    let sizes = [("wide", 33u32, 21u32), ("tall", 9, 40), ("one", 1, 1)];
    for (name, w, h) in sizes {
        image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7) as u8, (y * 11) as u8, 90]))
            .save(photos.join(format!("{name}.png")))
            .unwrap();
    }
    let out = dir.path().join("pred");
    let o = Command::new(env!("CARGO_BIN_EXE_ssc-predict"))
        .arg("--model")
        .arg(&model)
        .arg("--input")
        .arg(&photos)
        .arg("--out")
        .arg(&out)
        .args(["--input-size", "64"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let names = class_names(&model);
    let server = Server::start(
        &["--model", model.to_str().unwrap(), "--input-size", "64"],
        &photos,
    );
    let foreground = assert_served_equals_written(server, &sizes, &names, &out);
    assert!(foreground > 0, "some pixel is not background");
}
