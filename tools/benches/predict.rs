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
//! Defaults: 500 images near 128 px, `--input-size 128`, the reference scales, files in the
//! system temporary folder (`SSC_BENCH_DIR=/dev/shm` takes the per-file fsync of the atomic
//! writes out of the measurement). Needs the
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
    let cin = cfg.backbone.feature_channels();
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

/// CPU seconds (user + system) a running process has used so far, from /proc (clock ticks
/// of 1/100 s, the Linux default).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // fields after the parenthesised command name; utime and stime are fields 14 and 15
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Runs ssc-predict once; returns (seconds, peak kB, CPU seconds).
fn run(
    model: &Path,
    input: &Path,
    out: &Path,
    threads: usize,
    size: usize,
    extra: &[String],
) -> (f64, u64, f64) {
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
    let mut cpu = 0.0f64;
    let status = loop {
        if let Some(kb) = vm_hwm(child.id()) {
            peak = peak.max(kb);
        }
        if let Some(c) = cpu_seconds(child.id()) {
            cpu = cpu.max(c);
        }
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let secs = start.elapsed().as_secs_f64();
    assert!(status.success(), "ssc-predict failed");
    (secs, peak, cpu)
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
    let dir = match std::env::var_os("SSC_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
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
        let out = dir.path().join("out");
        let (secs, peak, cpu) = run(&onnx, &images, &out, threads, size, &extra);
        let rate = n as f64 / secs;
        println!(
            "threads {threads}: {secs:.2} s, {rate:.1} images/s, peak RSS {:.1} MiB, \
             CPU {cpu:.1} s ({:.2} cores busy on average)",
            peak as f64 / 1024.0,
            cpu / secs
        );
        rates.push(rate);
    }
    println!("ratio 2-thread/1-thread: {:.2}x", rates[1] / rates[0]);
}
