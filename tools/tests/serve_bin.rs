//! The real `ssc-serve` binary on a tiny exported DeepLab (random weights) through ONNX
//! Runtime: it logs its address, answers `/health` and `/predict` with full-size brush masks,
//! and exits 0 on SIGTERM (graceful shutdown). Skips without the runtime library.

#[path = "../../inference/tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use ssc_core::formats::brush::rle2mask;
use ssc_core::rng::Rng;
use ssc_models::config::DeepLabConfig;
use ssc_models::onnx::{ExportMeta, Weights, export_deeplab_with};

const SERVE: &str = env!("CARGO_BIN_EXE_ssc-serve");

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

    let mut child = Command::new(SERVE)
        .args([
            "--model",
            model.to_str().unwrap(),
            "--port",
            "0",
            "--input-size",
            "64",
        ])
        .args([
            "--local-root",
            dir.path().to_str().unwrap(),
            "--model-version",
            "tiny",
        ])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .unwrap();
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    // keep draining the log so the server never blocks on a full pipe
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
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
    let body = json!({"tasks": [{"id": 1, "data": {"image": "/data/local-files/?d=pic.png"}}]});
    let mut resp = agent
        .post(format!("http://{addr}/predict"))
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    let pred = &v["results"][0];
    assert_eq!(pred["model_version"], "tiny");
    let mut covered = vec![0u8; 33 * 21];
    for r in pred["result"].as_array().unwrap() {
        assert_eq!(
            (r["original_width"].as_u64(), r["original_height"].as_u64()),
            (Some(33), Some(21))
        );
        let rle: Vec<u8> = r["value"]["rle"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u8)
            .collect();
        for (c, a) in covered.iter_mut().zip(rle2mask(&rle, 21, 33).unwrap()) {
            *c += u8::from(a >= 128);
        }
    }
    assert!(
        covered.iter().all(|&c| c <= 1),
        "brushes of different classes overlap"
    );

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no shutdown after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status:?}");
    let log = drain.join().unwrap().join("\n");
    assert!(log.contains("stopped"), "{log}");
}
