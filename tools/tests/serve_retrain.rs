//! The whole loop with the real binaries: a tiny DeepLab trained by `ssc-train deeplab` and
//! exported, served by `ssc-serve --corrections … --retrain-run … --retrain-after 1`; one
//! correction through the webhook starts a fine-tuning round (`ssc-train deeplab --init
//! --corrections` in a child process), after which the retrained model is served under a new
//! `model_version` and predictions keep working. Skips without the ONNX Runtime library.

#[path = "../../inference/tests/common/mod.rs"]
mod common;
mod serve_common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use serve_common::Server;
use ssc_training::deeplab::config::DeepLabTrainConfig;

const TRAIN: &str = env!("CARGO_BIN_EXE_ssc-train");
const SYNTH: &str = env!("CARGO_BIN_EXE_ssc-synth");

fn ok(o: Output) {
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
#[cfg(unix)]
fn a_correction_retrains_and_swaps_the_served_model() {
    if !common::ort_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("synth");
    ok(Command::new(SYNTH)
        .args(["generate", "--out", path(&root)])
        .args(["--num-images", "8", "--num-val", "4", "--size", "40"])
        .args(["--classes", "3"])
        .output()
        .unwrap());
    let mut cfg = DeepLabTrainConfig::synthetic(3);
    cfg.net.backbone.as_resnet_mut().unwrap().base_width = 4;
    cfg.data.crop = 32;
    cfg.batch_size = 4;
    let cfg_path = tmp.path().join("tiny.json");
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let run = tmp.path().join("seg");
    let onnx = tmp.path().join("seg.onnx");
    let gt = root.join("SegmentationClass");
    ok(Command::new(TRAIN)
        .args(["deeplab", "--data", path(&root), "--pseudo", path(&gt)])
        .args(["--config", path(&cfg_path), "--epochs", "1"])
        .args(["--out", path(&run), "--export", path(&onnx)])
        .output()
        .unwrap());

    let corrections = tmp.path().join("corrections");
    let server = Server::start(
        &[
            "--model",
            path(&onnx),
            "--input-size",
            "48",
            "--scales",
            "",
            "--corrections",
            path(&corrections),
            "--retrain-run",
            path(&run),
            "--retrain-data",
            path(&root),
            "--retrain-pseudo",
            path(&gt),
            "--retrain-after",
            "1",
            "--retrain-epochs",
            "1",
        ],
        &root,
    );
    let get = |p: &str| server.get(p);
    let post = |p: &str, body: &Value| server.post(p, body);
    let health = get("/health");
    assert_eq!(health["model_version"], "ssc-seg");
    assert_eq!(health["retrain"]["state"], "idle");
    let label = health["classes"][1].as_str().unwrap().to_string();

    // one annotator's correction of a train image
    let id = std::fs::read_to_string(root.join("ImageSets/Segmentation/train.txt"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    let image = format!("/data/local-files/?d=JPEGImages/{id}.jpg");
    let (w, h) = image::image_dimensions(root.join(format!("JPEGImages/{id}.jpg"))).unwrap();
    let (w, h) = (w as usize, h as usize);
    let mask: Vec<u8> = (0..w * h)
        .map(|i| if i % w < w / 2 { 255 } else { 0 })
        .collect();
    let rle = ssc_core::formats::brush::mask2rle(&mask, h, w).unwrap();
    let hook = json!({
        "action": "ANNOTATION_CREATED",
        "task": {"id": 5, "data": {"image": image}},
        "annotation": {"id": 50, "task": 5, "result": [{
            "type": "brushlabels", "from_name": "tag", "to_name": "image",
            "original_width": w, "original_height": h,
            "value": {"format": "rle", "rle": rle, "brushlabels": [label]}}]},
    });
    let (s, v) = post("/webhook", &hook);
    assert_eq!((s, &v["retraining"]), (200, &json!(true)), "{v}");

    // predictions are answered while the round runs, and by the new model after it
    let body = json!({"tasks": [{"id": 1, "data": {"image": image}}]});
    let t0 = Instant::now();
    let health = loop {
        let (s, v) = post("/predict", &body);
        assert_eq!(s, 200, "{v}");
        let h = get("/health");
        if h["retrain"]["state"] != "running" {
            break h;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "retraining hangs: {h}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(health["retrain"]["rounds_succeeded"], 1, "{health}");
    assert_eq!(health["model_version"], "ssc-seg-r1");
    let (s, v) = post("/predict", &body);
    assert_eq!(
        (s, v["model_version"].as_str()),
        (200, Some("ssc-seg-r1")),
        "{v}"
    );
    let round = tmp.path().join("corrections-retrain/round-1");
    let used: Value =
        serde_json::from_slice(&std::fs::read(round.join("corrections.json")).unwrap()).unwrap();
    assert_eq!(used["used"], json!([id]));
    assert!(round.join("deeplab.onnx").is_file() && round.join("train.log").is_file());

    server.stop();
}
