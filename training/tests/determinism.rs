//! Seeded CPU training is bit-identical across runs and across thread counts: the SSC
//! classifier (full variant: DRS, reconstruction with the perceptual loss, the alignment loss,
//! batch-statistics BN as the synthetic preset has it), IRN and DeepLabV2 each train a few
//! steps on a tiny synthetic dataset in a child process with `RAYON_NUM_THREADS` = 1, 2 and 2
//! again, and the written weight files hash the same.
//!
//! Why child processes: rayon's global pool (and candle's gemm threading, which reads
//! `RAYON_NUM_THREADS`) is sized once per process.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use ssc_core::synth::{SynthConfig, write_dataset};
use ssc_training::cam::data::{TrainSet, open_split};
use ssc_training::deeplab::data::{DeepLabTrainSet, ValSet};
use ssc_training::irn::data::IrnTrainSet;
use ssc_training::run::TrainOptions;

const CHILD: &str = "SSC_DETERMINISM_CHILD";

/// FNV-1a over the file's bytes (a test fingerprint, not a security hash).
fn fingerprint(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{h:016x}")
}

/// Trains the three networks in `dir` and returns each weight file's fingerprint.
fn train_all(dir: &Path) -> BTreeMap<&'static str, String> {
    let data = dir.join("data");
    let synth = SynthConfig {
        num_train: 12,
        num_val: 4,
        size: 40,
        classes: 3,
        ..SynthConfig::synthetic()
    };
    write_dataset(&synth, &data, &|| {}).unwrap();
    let k = synth.classes;
    let ds = open_split(&data, "train").unwrap();
    let mut out = BTreeMap::new();

    let cam = common::tiny_cam(k);
    let set = Arc::new(TrainSet::new(&ds, &data, &cam.data).unwrap());
    let (_, rep) =
        ssc_training::cam::trainer::train(&cam, set, &TrainOptions::new(dir.join("cam"))).unwrap();
    out.insert("cam", fingerprint(&rep.weights.unwrap()));

    // GT masks stand in for IR labels and pseudo-masks.
    let irn = common::tiny_irn(k, &data);
    let set = Arc::new(IrnTrainSet::new(&ds, &data, &irn).unwrap());
    let (_, rep) =
        ssc_training::irn::trainer::train(&irn, set, &TrainOptions::new(dir.join("irn"))).unwrap();
    out.insert("irn", fingerprint(&rep.weights.unwrap()));

    let dl = common::tiny_deeplab(k);
    let set = Arc::new(
        DeepLabTrainSet::new(
            &ds,
            &data.join("SegmentationClass"),
            None,
            dl.net.num_classes,
            &dl.data,
        )
        .unwrap(),
    );
    let val = ValSet::new(&open_split(&data, "val").unwrap(), None, None).unwrap();
    let (_, rep) =
        ssc_training::deeplab::trainer::train(&dl, set, &val, &TrainOptions::new(dir.join("dl")))
            .unwrap();
    out.insert("deeplab", fingerprint(&rep.weights.unwrap()));
    out
}

/// The child's entry: trains and prints one `HASH name value` line per network.
#[test]
fn child_trains_and_prints_hashes() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    for (name, h) in train_all(tmp.path()) {
        println!("HASH {name} {h}");
    }
}

#[test]
fn weights_are_identical_across_runs_and_thread_counts() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let run = |threads: &str| -> BTreeMap<String, String> {
        let out = Command::new(&exe)
            .args(["--exact", "child_trains_and_prints_hashes", "--nocapture"])
            .env(CHILD, "1")
            .env("RAYON_NUM_THREADS", threads)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child with {threads} thread(s) failed:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let hashes: BTreeMap<String, String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("HASH "))
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(hashes.len(), 3, "child output:\n{text}");
        hashes
    };
    let one = run("1");
    let two = run("2");
    let again = run("2");
    assert_eq!(one, two, "1 thread vs 2 threads");
    assert_eq!(two, again, "two runs with 2 threads");
}
