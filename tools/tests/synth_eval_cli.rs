//! CLI tests of `ssc-synth` and `ssc-eval`: the benchmark round trip, determinism, and bad
//! input (missing, zero-byte, corrupt, wrong-size and wrongly coloured masks), checking both
//! the message and the exit code.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ssc_core::classes::ClassMap;
use ssc_core::mask::{LabelMap, read_mask, write_palette_png};

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("binary runs")
}

const SYNTH: &str = env!("CARGO_BIN_EXE_ssc-synth");
const EVAL: &str = env!("CARGO_BIN_EXE_ssc-eval");

/// A tiny benchmark (8 train + 4 val images at 48 px) in a temp folder.
fn tiny(dir: &Path, seed: &str) -> PathBuf {
    let root = dir.join(format!("synth-{seed}"));
    let out = run(
        SYNTH,
        &[
            "generate",
            "--out",
            root.to_str().unwrap(),
            "--seed",
            seed,
            "--num-images",
            "8",
            "--num-val",
            "4",
            "--size",
            "48",
            "--classes",
            "3",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    root
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn ground_truth_against_itself_is_perfect() {
    let dir = tempfile::tempdir().unwrap();
    let root = tiny(dir.path(), "3");
    let json = dir.path().join("eval.json");
    let gt = root.join("SegmentationClass");
    let out = run(
        EVAL,
        &[
            "--pred",
            gt.to_str().unwrap(),
            "--gt",
            root.to_str().unwrap(),
            "--split",
            "val",
            "--json",
            json.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("mIoU: 100.00 %"), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["miou"].as_f64(), Some(1.0));
    assert_eq!(report["images"].as_u64(), Some(4));
    assert_eq!(report["per_class_iou"].as_array().unwrap().len(), 4);
    assert!(report["confusion"].is_array() && report["pixel_accuracy"].as_f64() == Some(1.0));

    // The baseline is a real floor: all background scores far below 1.
    let out = run(
        EVAL,
        &["baseline", "--gt", root.to_str().unwrap(), "--split", "val"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("mIoU: 100.00"));
}

#[test]
fn synth_is_deterministic_and_labels_match_masks() {
    let dir = tempfile::tempdir().unwrap();
    let a = tiny(&dir.path().join("a"), "9");
    let b = tiny(&dir.path().join("b"), "9");
    let c = tiny(&dir.path().join("c"), "10");
    for rel in [
        "JPEGImages/train_00003.jpg",
        "SegmentationClass/val_00001.png",
        "cls_labels.json",
    ] {
        assert_eq!(
            std::fs::read(a.join(rel)).unwrap(),
            std::fs::read(b.join(rel)).unwrap(),
            "{rel}"
        );
    }
    assert_ne!(
        std::fs::read(a.join("JPEGImages/train_00003.jpg")).unwrap(),
        std::fs::read(c.join("JPEGImages/train_00003.jpg")).unwrap()
    );
    // Image-level labels are exactly the classes present in each mask.
    let classes = ssc_tools::read_class_file(&a.join("classes.txt")).unwrap();
    let labels: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("cls_labels.json")).unwrap()).unwrap();
    for (id, names) in labels.as_object().unwrap() {
        let mask = read_mask(&a.join(format!("SegmentationClass/{id}.png")), &classes).unwrap();
        let mut present: Vec<&str> = ssc_core::mask::present_classes(&mask)
            .into_iter()
            .filter(|&c| c != 0 && c != 255)
            .map(|c| classes.names[c as usize].as_str())
            .collect();
        present.sort_unstable();
        let mut want: Vec<&str> = names
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        want.sort_unstable();
        assert_eq!(present, want, "{id}");
    }
    // Another config into the same folder is refused.
    let out = run(
        SYNTH,
        &[
            "generate",
            "--out",
            a.to_str().unwrap(),
            "--num-images",
            "5",
            "--num-val",
            "1",
            "--size",
            "48",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("synth.json"), "{}", stderr(&out));
}

/// A prediction folder that is a copy of the ground truth, for breaking one file at a time.
fn pred_copy(root: &Path, dir: &Path) -> PathBuf {
    let pred = dir.join("pred");
    std::fs::create_dir_all(&pred).unwrap();
    for e in std::fs::read_dir(root.join("SegmentationClass")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, pred.join(p.file_name().unwrap())).unwrap();
    }
    pred
}

fn eval_err(root: &Path, pred: &Path) -> (Option<i32>, String) {
    let out = run(
        EVAL,
        &[
            "--pred",
            pred.to_str().unwrap(),
            "--gt",
            root.to_str().unwrap(),
        ],
    );
    assert!(out.stdout.is_empty() || !String::from_utf8_lossy(&out.stdout).contains("mIoU"));
    (out.status.code(), stderr(&out))
}

#[test]
fn bad_predictions_are_listed_and_fail() {
    let dir = tempfile::tempdir().unwrap();
    let root = tiny(dir.path(), "5");
    let classes = ClassMap::custom(
        std::fs::read_to_string(root.join("classes.txt"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect(),
    );

    // Missing file.
    let pred = pred_copy(&root, &dir.path().join("missing"));
    std::fs::remove_file(pred.join("val_00002.png")).unwrap();
    let (code, err) = eval_err(&root, &pred);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("val_00002.png") && err.contains("missing"),
        "{err}"
    );

    // Zero-byte file.
    let pred = pred_copy(&root, &dir.path().join("zero"));
    std::fs::write(pred.join("train_00001.png"), b"").unwrap();
    let (code, err) = eval_err(&root, &pred);
    assert_eq!(code, Some(1));
    assert!(err.contains("train_00001.png"), "{err}");

    // Corrupt (truncated) file.
    let pred = pred_copy(&root, &dir.path().join("corrupt"));
    let bytes = std::fs::read(pred.join("train_00004.png")).unwrap();
    std::fs::write(pred.join("train_00004.png"), &bytes[..bytes.len() / 2]).unwrap();
    let (code, err) = eval_err(&root, &pred);
    assert_eq!(code, Some(1));
    assert!(err.contains("train_00004.png"), "{err}");

    // Mask of the wrong size.
    let pred = pred_copy(&root, &dir.path().join("size"));
    write_palette_png(
        &pred.join("val_00000.png"),
        &LabelMap::filled(7, 5, 0),
        &classes,
    )
    .unwrap();
    let (code, err) = eval_err(&root, &pred);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("val_00000.png") && err.contains("size"),
        "{err}"
    );

    // RGB mask with a colour that is no class colour.
    let pred = pred_copy(&root, &dir.path().join("colour"));
    let gt = read_mask(&pred.join("val_00003.png"), &classes).unwrap();
    let mut rgb = image::RgbImage::new(gt.width as u32, gt.height as u32);
    rgb.put_pixel(1, 1, image::Rgb([1, 2, 3]));
    rgb.save(pred.join("val_00003.png")).unwrap();
    let (code, err) = eval_err(&root, &pred);
    assert_eq!(code, Some(1));
    assert!(err.contains("val_00003.png"), "{err}");
    assert!(
        err.contains("(1, 2, 3)") || err.contains("1,2,3") || err.contains("[1, 2, 3]"),
        "{err}"
    );

    // A label that is not a class.
    let pred = pred_copy(&root, &dir.path().join("label"));
    let mut m = read_mask(&pred.join("val_00001.png"), &classes).unwrap();
    m.data[0] = 17;
    ssc_core::mask::write_grey_png(&pred.join("val_00001.png"), &m).unwrap();
    let (code, err) = eval_err(&root, &pred);
    assert_eq!(code, Some(1));
    assert!(err.contains("val_00001.png") && err.contains("17"), "{err}");
}
