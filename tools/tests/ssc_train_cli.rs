//! CLI tests of `ssc-train`: a tiny `cam` run with evaluation, `--resume` of a finished run (and
//! its refusal to continue as another variant), the ablation table, and clear failures
//! (ImageNet preset without weights, bad config file).

mod cli_common;

use std::path::{Path, PathBuf};

use cli_common::{TRAIN, run, synth, text};

/// A tiny benchmark and a config that shrinks the synthetic preset to 32 px crops.
fn setup(dir: &Path) -> (PathBuf, PathBuf) {
    let root = dir.join("synth");
    synth(&root, 8, 2, 40, 3);
    let cfg = dir.join("tiny.json");
    std::fs::write(
        &cfg,
        r#"{"net": {"backbone": {"base_width": 4}}, "decoder": {"widths": [4, 4, 4, 4, 4]},
            "vgg": {"widths": [2, 4, 8, 16, 16]}, "data": {"crop": 32, "resize_long": [28, 44]},
            "batch_size": 4, "epochs": 2, "asm_warmup_epochs": 1, "eval_scales": [1.0, 0.5]}"#,
    )
    .unwrap();
    (root, cfg)
}

#[test]
fn cam_trains_evaluates_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, cfg) = setup(tmp.path());
    let out = tmp.path().join("run");
    let args = [
        "cam",
        "--data",
        root.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--eval-split",
        "train,val",
    ];
    let o = run(TRAIN, &args);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("trained full (2 epochs, 4 steps"), "{t}");
    assert!(t.contains("val: CAM seed mIoU"), "{t}");
    assert!(out.join("cam_net.safetensors").is_file());
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(saved["data"]["crop"], 32);
    // resuming a finished run trains nothing more
    let mut resume = args.to_vec();
    resume.push("--resume");
    let o = run(TRAIN, &resume);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("(2 epochs, 4 steps"), "{}", text(&o));
    // resuming it as another variant is refused, and the weights stay as they were
    let before = std::fs::read(out.join("cam_net.safetensors")).unwrap();
    let mut other = resume.clone();
    other.extend(["--variant", "baseline"]);
    let o = run(TRAIN, &other);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("trained as variant full") && text(&o).contains("variant baseline"),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read(out.join("cam_net.safetensors")).unwrap(),
        before
    );
}

#[test]
fn ablation_writes_table() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, cfg) = setup(tmp.path());
    let out = tmp.path().join("abl");
    let o = run(
        TRAIN,
        &[
            "ablation",
            "--data",
            root.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--variants",
            "baseline,full",
            "--epochs",
            "1",
            "--eval-split",
            "val",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let md = std::fs::read_to_string(out.join("ablation.md")).unwrap();
    assert!(
        md.contains("| baseline |") && md.contains("| full |"),
        "{md}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("ablation.json")).unwrap()).unwrap();
    assert_eq!(json["rows"].as_array().unwrap().len(), 2);
}

#[test]
fn clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, _) = setup(tmp.path());
    let data = root.to_str().unwrap();
    let x = tmp.path().join("x");
    let o = run(
        TRAIN,
        &[
            "cam",
            "--data",
            data,
            "--preset",
            "voc",
            "--out",
            x.to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    // the VOC preset has 20 classes; the benchmark 3, and the error names the data folder
    assert!(
        text(&o).contains("3 classes") && text(&o).contains(data),
        "{}",
        text(&o)
    );
    let three = tmp.path().join("three.json");
    std::fs::write(
        &three,
        r#"{"net": {"num_classes": 3}, "decoder": {"in_channels": 3}}"#,
    )
    .unwrap();
    let o = run(
        TRAIN,
        &[
            "cam",
            "--data",
            data,
            "--preset",
            "voc",
            "--config",
            three.to_str().unwrap(),
            "--out",
            x.to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("--backbone-weights"), "{}", text(&o));
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, "{\"epochs\": \"many\"}").unwrap();
    let o = run(
        TRAIN,
        &[
            "cam",
            "--data",
            root.to_str().unwrap(),
            "--config",
            bad.to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("bad.json"), "{}", text(&o));
}
