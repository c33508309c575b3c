//! `ssc-eval cams` on CAM files built from the ground truth of a tiny synthetic benchmark: a
//! CAM that is 1 exactly on each object scores 100 % below threshold 1 and drops at 1 (all
//! background); a missing CAM file of the split fails with exit code 1.

use std::path::Path;
use std::process::Command;

use ssc_core::cam::CamRecord;
use ssc_core::mask::read_mask;
use ssc_core::synth::{SynthConfig, write_dataset};

const EVAL: &str = env!("CARGO_BIN_EXE_ssc-eval");

/// Writes `<cams>/<id>.safetensors` for every val image: one channel per class present, 1 on
/// its pixels and 0 elsewhere.
fn perfect_cams(root: &Path, cams: &Path, cfg: &SynthConfig) -> usize {
    let classes = cfg.class_map();
    let ids: Vec<String> = (0..cfg.num_val).map(|i| format!("val_{i:05}")).collect();
    for id in &ids {
        let gt = read_mask(&root.join(format!("SegmentationClass/{id}.png")), &classes).unwrap();
        let (h, w) = (gt.height, gt.width);
        let keys: Vec<i64> = (1..classes.len() as u8)
            .filter(|c| gt.data.contains(c))
            .map(|c| c as i64 - 1)
            .collect();
        let high_res = keys
            .iter()
            .flat_map(|&k| gt.data.iter().map(move |&v| f32::from(v as i64 == k + 1)))
            .collect();
        let rec = CamRecord {
            cam: vec![0.0; keys.len() * h.div_ceil(4) * w.div_ceil(4)],
            keys,
            size: (h, w),
            high_res,
        };
        rec.write(&cams.join(format!("{id}.safetensors")), id)
            .unwrap();
    }
    ids.len()
}

#[test]
fn perfect_cams_score_full_marks_below_threshold_one() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("synth");
    let cfg = SynthConfig {
        num_train: 1,
        num_val: 4,
        size: 48,
        classes: 3,
        ..SynthConfig::synthetic()
    };
    write_dataset(&cfg, &root, &|| {}).unwrap();
    let cams = dir.path().join("cams");
    let n = perfect_cams(&root, &cams, &cfg);
    let json = dir.path().join("sweep.json");
    let out = Command::new(EVAL)
        .args(["cams", "--cams"])
        .arg(&cams)
        .arg("--gt")
        .arg(&root)
        .args(["--split", "val", "--thresholds", "0.5,1.0", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("best threshold: 0.500  mIoU: 100.00 %"),
        "{stdout}"
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["images"].as_u64(), Some(n as u64));
    assert_eq!(v["points"][0]["miou"].as_f64(), Some(1.0));
    let at_one = v["points"][1]["miou"].as_f64().unwrap();
    assert!(at_one < 0.5, "all-background mIoU {at_one}");

    // A split image without a CAM file: no score, exit code 1, the file named.
    std::fs::remove_file(cams.join("val_00002.safetensors")).unwrap();
    let out = Command::new(EVAL)
        .args(["cams", "--cams"])
        .arg(&cams)
        .arg("--gt")
        .arg(&root)
        .args(["--split", "val"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("val_00002.safetensors: missing CAM file"),
        "{err}"
    );
}
