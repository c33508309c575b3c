//! `ssc-report` on a small hand-made run folder (no ONNX Runtime needed): the page is written,
//! stands alone, every picture decodes, the chosen images are the best, median and worst by
//! pseudo-mask IoU, and what cannot be shown is named in the page instead of failing the run.

use std::path::Path;
use std::process::Command;

use ssc_core::cam::CamRecord;
use ssc_core::classes::ClassMap;
use ssc_core::mask::{LabelMap, write_palette_png};
use ssc_tools::report::verify_self_contained;
use ssc_training::run::LogRecord;

const W: usize = 24;
const H: usize = 16;

fn report(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ssc-report"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A VOC-layout root with `n` images whose ground truth is a square of class 1 or 2, and a
/// run folder with CAMs, pseudo-masks that get worse with the image number, a trainer's log.
fn fixture(root: &Path, run: &Path, n: usize) {
    let classes = ClassMap::custom(vec!["background".into(), "star".into(), "drop".into()]);
    for d in ["JPEGImages", "SegmentationClass"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("classes.txt"), "background\nstar\ndrop\n").unwrap();
    for d in ["cams", "pseudo", "cam", "irn"] {
        std::fs::create_dir_all(run.join(d)).unwrap();
    }
    for i in 0..n {
        let id = format!("img_{i:02}");
        let class = 1 + (i % 2) as u8;
        let gt: Vec<u8> = (0..W * H)
            .map(|p| {
                if (4..12).contains(&(p % W)) && (4..12).contains(&(p / W)) {
                    class
                } else {
                    0
                }
            })
            .collect();
        write_palette_png(
            &root.join("SegmentationClass").join(format!("{id}.png")),
            &LabelMap::new(W, H, gt.clone()).unwrap(),
            &classes,
        )
        .unwrap();
        image::RgbImage::from_fn(W as u32, H as u32, |x, y| {
            image::Rgb([(x * 10) as u8, (y * 15) as u8, (i * 20) as u8])
        })
        .save(root.join("JPEGImages").join(format!("{id}.jpg")))
        .unwrap();
        // Image i has its first i columns wrong: image 0 is perfect, the last the worst.
        let pseudo: Vec<u8> = gt
            .iter()
            .enumerate()
            .map(|(p, &v)| if p % W < i { class } else { v })
            .collect();
        write_palette_png(
            &run.join("pseudo").join(format!("{id}.png")),
            &LabelMap::new(W, H, pseudo).unwrap(),
            &classes,
        )
        .unwrap();
        let high_res: Vec<f32> = (0..W * H).map(|p| (p % W) as f32 / W as f32).collect();
        let cam = vec![0.5f32; H.div_ceil(4) * W.div_ceil(4)];
        CamRecord {
            keys: vec![class as i64 - 1],
            size: (H, W),
            cam,
            high_res,
        }
        .write(&run.join("cams").join(format!("{id}.safetensors")), &id)
        .unwrap();
    }
    let meta = serde_json::json!({
        "dataset": {"kind": "voc", "root": root, "split": "train"},
        "class_names": ["star", "drop"],
    });
    std::fs::write(run.join("cams/cams.json"), meta.to_string()).unwrap();
    std::fs::write(run.join("pseudo/pseudo.json"), meta.to_string()).unwrap();
    std::fs::write(run.join("cam/config.json"), r#"{"seed": 7, "epochs": 2}"#).unwrap();
    let mut log = String::new();
    for epoch in 1..=2usize {
        for it in 0..3u64 {
            let iteration = (epoch as u64 - 1) * 3 + it + 1;
            let terms = [("cls".to_string(), 1.0 / iteration as f64)].into();
            let r = LogRecord::Step {
                epoch,
                iteration,
                terms,
            };
            log += &format!("{}\n", serde_json::to_string(&r).unwrap());
        }
        let r = LogRecord::Epoch {
            epoch,
            iteration: epoch as u64 * 3,
            terms: [("cls".to_string(), 0.5 / epoch as f64)].into(),
            val_miou: Some(0.2 * epoch as f64),
            seconds_per_step: 0.1,
        };
        log += &format!("{}\n", serde_json::to_string(&r).unwrap());
    }
    std::fs::write(run.join("cam/train-log.jsonl"), log).unwrap();
    // A broken log and a broken stages line: named in the page, not fatal.
    std::fs::write(run.join("irn/config.json"), r#"{"seed": 7}"#).unwrap();
    std::fs::write(run.join("irn/train-log.jsonl"), "{not json\n").unwrap();
    std::fs::write(
        run.join("stages.tsv"),
        "train classifier (baseline)\t12.5\tssc-train cam --seed 7\nbroken line\n",
    )
    .unwrap();
}

#[test]
fn report_stands_alone_and_picks_best_median_worst() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, run) = (tmp.path().join("data"), tmp.path().join("run"));
    fixture(&root, &run, 9);
    let out = report(&["--run", s(&run), "--gt", s(&root), "--images", "3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    // 3 rows × (image, ground truth, one CAM, pseudo-mask).
    assert_eq!(verify_self_contained(&html), Ok(12));
    // Ranked by IoU: image 0 is perfect, image 8 the worst, image 4 the median.
    let row = |id: &str| html.find(&format!("<div class=\"id\">{id}<br>"));
    let (best, median, worst) = (row("img_00"), row("img_04"), row("img_08"));
    assert!(
        best.is_some() && median.is_some() && worst.is_some(),
        "rows"
    );
    assert!(best < median && median < worst, "best first");
    assert!(html.contains("image mIoU 100.0 %"));
    for other in ["img_01", "img_02", "img_03", "img_05", "img_06", "img_07"] {
        assert!(row(other).is_none(), "{other} was not chosen");
    }
    // Training curves (a chart per term, the validation score), the seed, the command.
    assert!(html.contains("cam: cls") && html.contains("cam: validation mIoU"));
    assert!(html.contains("ssc-train cam --seed 7") && html.contains("cam/config.json"));
    // What could not be shown is named.
    assert!(html.contains("Not shown"), "warnings section");
    assert!(
        html.contains("train-log.jsonl") && html.contains("line 1"),
        "broken log named"
    );
    assert!(
        html.contains("stages.tsv line 2"),
        "broken stages line named"
    );

    // Without ground truth: pictures from the recorded dataset root, no scores.
    let bare = tmp.path().join("bare.html");
    let out = report(&["--run", s(&run), "--images", "2", "--out", s(&bare)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&bare).unwrap();
    // 2 rows × (image, CAM, pseudo-mask).
    assert_eq!(verify_self_contained(&html), Ok(6));
    assert!(!html.contains("image mIoU") && html.contains("no ground truth"));
}

#[test]
fn a_missing_run_folder_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-run");
    let out = report(&["--run", s(&missing)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-run") && err.contains("not a folder"),
        "{err}"
    );
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    // An empty run still gets a (short) page.
    let out = report(&["--run", s(&empty)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(empty.join("report.html").is_file());
}
