//! CLI tests of `ssc-predict` on a tiny exported DeepLab (random weights) through ONNX Runtime:
//! nested folders with mixed formats and a corrupt file (a mask for every readable image at its
//! relative path, the corrupt one listed, non-zero exit), resume, CVAT/COCO files equal to the
//! PNG masks, list input, and the flip / CRF / overlay / scores options. Skips without the
//! runtime library.

#[path = "../../inference/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use ssc_core::classes::ClassMap;
use ssc_core::formats::MaskSource;
use ssc_core::formats::coco::{CocoReadOptions, read_coco};
use ssc_core::formats::cvat::read_cvat;
use ssc_core::formats::labelstudio::{LabelStudioOptions, read_tasks};
use ssc_core::mask::read_mask;
use ssc_core::rng::Rng;
use ssc_models::config::DeepLabConfig;
use ssc_models::onnx::{ExportMeta, Weights, export_deeplab_with};

const PREDICT: &str = env!("CARGO_BIN_EXE_ssc-predict");
const CLASSES: usize = 3;

fn tiny_model(path: &Path) {
    let mut rng = Rng::new(5);
    let cfg = DeepLabConfig::synthetic(CLASSES);
    let cin = cfg.backbone.feature_channels();
    let mut w = Weights::new();
    common::random_resnet(&cfg.backbone, &mut rng, &mut w);
    for i in 0..cfg.rates.len() {
        let shape = vec![CLASSES, cin, 3, 3];
        let v = common::randn(&mut rng, shape.iter().product(), 0.05);
        w.insert(format!("classifier.{i}.weight"), v, shape);
        w.insert(
            format!("classifier.{i}.bias"),
            common::randn(&mut rng, CLASSES, 0.5),
            vec![CLASSES],
        );
    }
    let meta = ExportMeta::with_background(CLASSES);
    std::fs::write(path, export_deeplab_with(&w, &cfg, &meta).unwrap()).unwrap();
}

/// A textured image (so the random network predicts more than one class somewhere).
fn picture(w: u32, h: u32, seed: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        let v = (x * 13 + y * 7 + seed * 31) % 256;
        image::Rgb([v as u8, ((x * y + seed) % 256) as u8, (255 - v) as u8])
    })
}

fn run(model: &Path, input: &Path, out: &Path, extra: &[&str]) -> Output {
    Command::new(PREDICT)
        .args(["--model", model.to_str().unwrap()])
        .args(["--input", input.to_str().unwrap()])
        .args(["--out", out.to_str().unwrap()])
        .args(["--input-size", "32", "--scales", "0.75,1.25"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .output()
        .expect("binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Images: `(relative path, id, width, height)`.
const IMAGES: [(&str, &str, u32, u32); 4] = [
    ("a.png", "a", 33, 21),
    ("sub/b.jpg", "sub/b", 40, 30),
    ("sub/deeper/c.bmp", "sub/deeper/c", 17, 26),
    ("sub/d.tiff", "sub/d", 24, 24),
];

fn image_folder(root: &Path) {
    for (i, (rel, _, w, h)) in IMAGES.iter().enumerate() {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        picture(*w, *h, i as u32).save(&p).unwrap();
    }
    std::fs::write(
        root.join("sub/broken.jpg"),
        b"\xff\xd8\xff\xe0 not really a jpeg",
    )
    .unwrap();
}

fn setup() -> Option<(tempfile::TempDir, PathBuf, PathBuf)> {
    if !common::ort_available() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("seg.onnx");
    tiny_model(&model);
    let input = dir.path().join("images");
    image_folder(&input);
    Some((dir, model, input))
}

fn classes() -> ClassMap {
    ClassMap::custom(ExportMeta::with_background(CLASSES).class_names)
}

/// The PNG masks of the good images, by id, in id order.
fn png_masks(out: &Path) -> Vec<(String, Vec<u8>, (usize, usize))> {
    let mut v: Vec<_> = IMAGES
        .iter()
        .map(|(_, id, w, h)| {
            let m = read_mask(&out.join(format!("{id}.png")), &classes()).unwrap();
            assert_eq!((m.width, m.height), (*w as usize, *h as usize), "{id}");
            assert!(m.data.iter().all(|&v| (v as usize) < CLASSES), "{id}");
            (id.to_string(), m.data, (m.width, m.height))
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn assert_same(what: &str, got: &[MaskSource], want: &[(String, Vec<u8>, (usize, usize))]) {
    let got: Vec<_> = got
        .iter()
        .map(|m| (m.id.clone(), m.labels.clone()))
        .collect();
    let want: Vec<_> = want.iter().map(|w| (w.0.clone(), w.1.clone())).collect();
    assert_eq!(got, want, "{what} differs from the PNG masks");
}

#[test]
fn nested_mixed_folder_with_a_corrupt_file_then_resume() {
    let Some((dir, model, input)) = setup() else {
        return;
    };
    let out = dir.path().join("out");
    let args = ["--format", "voc,cvat", "--format", "coco", "--threads", "2"];
    let o = run(&model, &input, &out, &args);
    assert!(!o.status.success(), "a corrupt file must fail the run");
    let t = text(&o);
    assert!(t.contains("sub/broken"), "the corrupt file is listed: {t}");

    let masks = png_masks(&out);
    let mut seen: Vec<u8> = masks.iter().flat_map(|m| m.1.iter().copied()).collect();
    seen.sort_unstable();
    seen.dedup();
    assert!(
        seen.len() >= 2,
        "a degenerate test model: only {seen:?} predicted"
    );
    assert!(!out.join("sub/broken.png").exists());
    let m = json(&out.join("manifest.0-of-1.json"));
    assert_eq!(m["items"], 5);
    assert_eq!(m["written"], 4);
    let failures = m["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["id"], "sub/broken");

    // the annotation files hold exactly the PNG masks, in id order
    let cvat = read_cvat(&out.join("cvat.zip"), &classes()).unwrap();
    assert_same("cvat", &cvat, &masks);
    let coco = read_coco(
        &out.join("coco.json"),
        &classes(),
        CocoReadOptions::default(),
    )
    .unwrap();
    let mut coco_by_id: Vec<MaskSource> = coco
        .into_iter()
        .map(|mut m| {
            // COCO names images by file; map back to ids
            let id = m.image.rsplit_once('.').unwrap().0.to_string();
            m.id = id;
            m
        })
        .collect();
    coco_by_id.sort_by(|a, b| a.id.cmp(&b.id));
    assert_same("coco", &coco_by_id, &masks);
    let names: Vec<String> = json(&out.join("coco.json"))["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["file_name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        ["a.png", "sub/b.jpg", "sub/d.tiff", "sub/deeper/c.bmp"]
    );

    // resume: the four done images are skipped, the corrupt one is retried (and fails again),
    // and the annotation files still cover every image
    let before = std::fs::metadata(out.join("a.png"))
        .unwrap()
        .modified()
        .unwrap();
    let o = run(&model, &input, &out, &args);
    assert!(!o.status.success());
    let m = json(&out.join("manifest.0-of-1.json"));
    assert_eq!(
        (m["skipped"].as_u64(), m["written"].as_u64()),
        (Some(4), Some(0))
    );
    assert_eq!(m["failures"].as_array().unwrap().len(), 1);
    let after = std::fs::metadata(out.join("a.png"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(before, after, "a finished mask is not rewritten");
    let cvat = read_cvat(&out.join("cvat.zip"), &classes()).unwrap();
    assert_same("cvat after resume", &cvat, &masks);

    // other mask settings are refused in a folder made with these, unless --overwrite
    let mut flipped = args.to_vec();
    flipped.push("--flip");
    let o = run(&model, &input, &out, &flipped);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("predict.json") && text(&o).contains("flip"),
        "{}",
        text(&o)
    );

    // without the corrupt file the run succeeds

    std::fs::remove_file(input.join("sub/broken.jpg")).unwrap();
    let o = run(&model, &input, &out, &args);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn list_input_and_flip_crf_overlay_scores() {
    let Some((dir, model, input)) = setup() else {
        return;
    };
    std::fs::remove_file(input.join("sub/broken.jpg")).unwrap();
    let list = input.join("list.txt");
    std::fs::write(&list, "# two images\nsub/b.jpg\n\nsub/deeper/c.bmp\n").unwrap();

    // plain run from the list: ids relative to the deepest common folder (`sub`)
    let plain = dir.path().join("plain");
    let args = [
        "--threads",
        "1",
        "--scales",
        "",
        "--format",
        "voc,labelstudio",
    ];
    let o = run(&model, &list, &plain, &args);
    assert!(o.status.success(), "{}", text(&o));
    let ls = read_tasks(
        &plain.join("labelstudio-tasks.json"),
        &classes(),
        &LabelStudioOptions::default(),
    )
    .unwrap();
    assert_eq!(ls.len(), 2);
    for (m, (id, rel)) in ls
        .iter()
        .zip([("b", "b.jpg"), ("deeper/c", "deeper/c.bmp")])
    {
        let png = read_mask(&plain.join(format!("{id}.png")), &classes()).unwrap();
        assert_eq!(m.labels, png.data, "labelstudio {id}");
        assert!(m.image.ends_with(rel), "{} vs {rel}", m.image);
    }
    assert!(plain.join("labelstudio-config.xml").is_file());

    for (name, extra) in [
        (
            "npy",
            vec!["--flip", "--crf", "--overlay", "--scores", "npy"],
        ),
        ("st", vec!["--crf", "--scores"]),
    ] {
        let out = dir.path().join(name);
        let mut args = vec!["--threads", "2"];
        args.extend(extra.iter().copied());
        let o = run(&model, &input, &out, &args);
        assert!(o.status.success(), "{name}: {}", text(&o));
        let masks = png_masks(&out);
        for (id, labels, (w, h)) in &masks {
            let (scores, shape) = if name == "npy" {
                assert!(out.join(format!("overlays/{id}.jpg")).is_file());
                let a = ssc_core::npy::read(&out.join(format!("scores/{id}.npy"))).unwrap();
                (a.to_f32().unwrap(), a.shape.clone())
            } else {
                let f = ssc_core::tensors::TensorFile::open(
                    out.join(format!("scores/{id}.safetensors")),
                )
                .unwrap();
                f.f32("scores").unwrap()
            };
            assert_eq!(shape, [CLASSES, *h, *w], "{name} {id}");
            // the mask is the arg-max of the written scores (CRF marginals here)
            let n = w * h;
            for (p, &l) in labels.iter().enumerate() {
                let best = (0..CLASSES)
                    .max_by(|&a, &b| scores[a * n + p].total_cmp(&scores[b * n + p]))
                    .unwrap();
                assert_eq!(
                    scores[best * n + p],
                    scores[l as usize * n + p],
                    "{name} {id} px {p}"
                );
                let sum: f32 = (0..CLASSES).map(|c| scores[c * n + p]).sum();
                assert!((sum - 1.0).abs() < 1e-3, "{name} {id}: sums to {sum}");
            }
        }
        let settings = json(&out.join("predict.json"));
        assert!(settings["crf"].is_object());
    }
    // flipping changes nothing about the outputs' shape but is recorded
    assert_eq!(json(&dir.path().join("npy/predict.json"))["flip"], true);
}

#[test]
fn a_bad_model_or_input_fails_before_any_work() {
    let Some((dir, model, input)) = setup() else {
        return;
    };
    let out = dir.path().join("out");
    let missing = dir.path().join("nope.onnx");
    let o = run(&missing, &input, &out, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("nope.onnx"), "{}", text(&o));
    let o = run(&model, &dir.path().join("no-such-folder"), &out, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("no-such-folder"), "{}", text(&o));
    assert!(!out.join("manifest.0-of-1.json").exists());
}
