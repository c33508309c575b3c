//! Throughput and peak memory of `ssc-predict` (§6.5 inference at scale) on a folder of
//! synthetic images (`ssc_core::synth`), with a random-weight synthetic DeepLab exported here.
//!
//! Runs the real binary at 1 and 2 worker threads on the same folder and prints images/s,
//! the peak resident memory of each run (VmHWM of the child, polled from /proc until it
//! exits) and the 2-thread/1-thread ratio measured in this run.
//!
//! ```text
//! cargo bench -p ssc-tools --bench predict
//! SSC_BENCH_IMAGES=100 SSC_BENCH_INPUT_SIZE=256 SSC_BENCH_ARGS="--crf" cargo bench -p ssc-tools --bench predict
//! ```
//! Defaults: 500 images near 128 px, `--input-size 128`, the reference scales. Needs the
//! ONNX Runtime library (`.ort/lib` or `ORT_DYLIB_PATH`); prints a notice and exits otherwise.

#[path = "../../inference/tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ssc_core::rng::Rng;
use ssc_core::synth::{SynthConfig, write_dataset};
use ssc_models::config::DeepLabConfig;
use ssc_models::onnx::{ExportMeta, Weights, export_deeplab_with};

const PREDICT: &str = env!("CARGO_BIN_EXE_ssc-predict");

fn env_or(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn model(path: &Path, classes: usize) {
    let mut rng = Rng::new(11);
    let cfg = DeepLabConfig::synthetic(classes);
    let cin = cfg.backbone.out_channels(3);
    let mut w = Weights::new();
    common::random_resnet(&cfg.backbone, &mut rng, &mut w);
    for i in 0..cfg.rates.len() {
        let shape = vec![classes, cin, 3, 3];
        let v = common::randn(&mut rng, shape.iter().product(), 0.05);
        w.insert(format!("classifier.{i}.weight"), v, shape);
        let b = common::randn(&mut rng, classes, 0.5);
        w.insert(format!("classifier.{i}.bias"), b, vec![classes]);
    }
    let meta = ExportMeta::with_background(classes);
    std::fs::write(path, export_deeplab_with(&w, &cfg, &meta).unwrap()).unwrap();
}

/// Peak resident set (kB) of a running process, from /proc.
fn vm_hwm(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs ssc-predict once; returns (seconds, peak kB).
fn run(
    model: &Path,
    input: &Path,
    out: &Path,
    threads: usize,
    size: usize,
    extra: &[String],
) -> (f64, u64) {
    let _ = std::fs::remove_dir_all(out);
    let start = Instant::now();
    let mut child = Command::new(PREDICT)
        .args([
            "--model",
            model.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
        ])
        .args([
            "--out",
            out.to_str().unwrap(),
            "--threads",
            &threads.to_string(),
        ])
        .args(["--input-size", &size.to_string()])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("ssc-predict starts");
    let mut peak = 0;
    let status = loop {
        if let Some(kb) = vm_hwm(child.id()) {
            peak = peak.max(kb);
        }
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let secs = start.elapsed().as_secs_f64();
    assert!(status.success(), "ssc-predict failed");
    (secs, peak)
}

fn main() {
    if !common::ort_available() {
        return;
    }
    let n = env_or("SSC_BENCH_IMAGES", 500);
    let size = env_or("SSC_BENCH_INPUT_SIZE", 128);
    let extra: Vec<String> = std::env::var("SSC_BENCH_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        num_train: n,
        num_val: 0,
        ..SynthConfig::synthetic()
    };
    let root = dir.path().join("synth");
    write_dataset(&cfg, &root, &|| {}).unwrap();
    let images = root.join("JPEGImages");
    let onnx = dir.path().join("seg.onnx");
    model(&onnx, cfg.classes + 1);
    println!(
        "ssc-predict on {n} synthetic images (~{} px), --input-size {size}, scales 0.5…1.5 {}",
        cfg.size,
        extra.join(" ")
    );
    // warm-up (page cache, library load) on the 1-thread settings
    let _ = run(&onnx, &images, &dir.path().join("warm"), 1, size, &extra);
    let mut rates = Vec::new();
    for threads in [1, 2] {
        let (secs, peak) = run(
            &onnx,
            &images,
            &dir.path().join("out"),
            threads,
            size,
            &extra,
        );
        let rate = n as f64 / secs;
        println!(
            "threads {threads}: {secs:.2} s, {rate:.1} images/s, peak RSS {:.1} MiB",
            peak as f64 / 1024.0
        );
        rates.push(rate);
    }
    println!("ratio 2-thread/1-thread: {:.2}x", rates[1] / rates[0]);
}
