//! CLI tests of `ssc-convert`: a tiny synthetic benchmark converted to every format and read
//! back equal to the masks; bad masks (wrong size, unknown colour, missing image) listed with
//! a non-zero exit while the good ones are still written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ssc_core::classes::{ClassMap, IGNORE};
use ssc_core::formats::MaskSource;
use ssc_core::formats::coco::{CocoReadOptions, read_coco};
use ssc_core::formats::cvat::read_cvat;
use ssc_core::formats::labelstudio::{LabelStudioOptions, read_tasks};
use ssc_core::mask::{LabelMap, read_mask, write_palette_png};
use ssc_core::synth::{SynthConfig, write_dataset};

const CONVERT: &str = env!("CARGO_BIN_EXE_ssc-convert");

fn run(args: &[&str]) -> Output {
    Command::new(CONVERT)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A tiny benchmark (6 train + 2 val images near 40 px, 3 classes, ignore band on).
fn tiny(dir: &Path) -> (PathBuf, ClassMap) {
    let cfg = SynthConfig {
        num_train: 6,
        num_val: 2,
        size: 40,
        classes: 3,
        ..SynthConfig::synthetic()
    };
    let root = dir.join("synth");
    write_dataset(&cfg, &root, &|| {}).unwrap();
    (root, cfg.class_map())
}

/// The benchmark's masks by id, sorted.
fn masks(root: &Path, classes: &ClassMap) -> Vec<(String, LabelMap)> {
    let mut out: Vec<_> = std::fs::read_dir(root.join("SegmentationClass"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let id = p.file_stem().unwrap().to_str().unwrap().to_string();
            (id, read_mask(&p, classes).unwrap())
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Asserts that `got` holds exactly the masks, with ignore mapped by `ignore_to`.
fn assert_same(got: &[MaskSource], want: &[(String, LabelMap)], ignore_to: u8, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: image count");
    let mut got: Vec<&MaskSource> = got.iter().collect();
    got.sort_by(|a, b| a.id.cmp(&b.id));
    for (g, (id, m)) in got.iter().zip(want) {
        assert_eq!(&g.id, id, "{what}");
        assert_eq!((g.width as usize, g.height as usize), (m.width, m.height));
        let expected: Vec<u8> = m
            .data
            .iter()
            .map(|&v| if v == IGNORE { ignore_to } else { v })
            .collect();
        assert!(g.labels == expected, "{what}: labels of {id} differ");
    }
}

#[test]
fn every_format_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let (root, classes) = tiny(dir.path());
    let want = masks(&root, &classes);
    assert!(
        want.iter().any(|(_, m)| m.data.contains(&IGNORE)),
        "the benchmark should exercise ignore pixels"
    );
    let out = dir.path().join("out");
    let o = run(&[
        "--masks",
        root.join("SegmentationClass").to_str().unwrap(),
        "--images",
        root.join("JPEGImages").to_str().unwrap(),
        "--classes",
        root.join("classes.txt").to_str().unwrap(),
        "--to",
        "voc,cvat",
        "--to",
        "coco",
        "--to",
        "labelstudio",
        "--cvat-ignore",
        "label",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    let cvat = read_cvat(&out.join("cvat.zip"), &classes).unwrap();
    assert_same(&cvat, &want, IGNORE, "cvat");
    // COCO and Label Studio have no ignore value: those pixels belong to no annotation
    let coco = read_coco(&out.join("coco.json"), &classes, CocoReadOptions::default()).unwrap();
    assert_same(&coco, &want, 0, "coco");
    assert!(coco.iter().all(|m| m.image == format!("{}.jpg", m.id)));
    let ls_opts = LabelStudioOptions::default();
    let ls = read_tasks(&out.join("labelstudio-tasks.json"), &classes, &ls_opts).unwrap();
    assert_same(&ls, &want, 0, "labelstudio");
    let config = std::fs::read_to_string(out.join("labelstudio-config.xml")).unwrap();
    assert!(config.contains("BrushLabels") && config.contains(&classes.names[1]));

    for (id, m) in &want {
        let voc = read_mask(
            &out.join(format!("voc/SegmentationClass/{id}.png")),
            &classes,
        );
        assert_eq!(&voc.unwrap(), m, "voc {id}");
    }
    let listed = std::fs::read_to_string(out.join("voc/ImageSets/Segmentation/default.txt"));
    assert_eq!(listed.unwrap().lines().count(), want.len());
    let names = std::fs::read_to_string(out.join("voc/classes.txt")).unwrap();
    assert_eq!(names.lines().collect::<Vec<_>>(), classes.names);
}

#[test]
fn bad_masks_are_listed_and_good_ones_written() {
    let dir = tempfile::tempdir().unwrap();
    let (root, classes) = tiny(dir.path());
    let seg = root.join("SegmentationClass");
    // wrong size: a 5x5 mask for an image near 40 px
    let first = masks(&root, &classes)[0].0.clone();
    write_palette_png(
        &seg.join(format!("{first}.png")),
        &LabelMap::filled(5, 5, 1),
        &classes,
    )
    .unwrap();
    // unknown colour: an RGB mask with a colour of no class
    let second = masks(&root, &classes)[1].0.clone();
    let img = image::RgbImage::from_pixel(40, 40, image::Rgb([1, 2, 3]));
    img.save(seg.join(format!("{second}.png"))).unwrap();
    // a class value beyond the 4 classes (palette index 9)
    write_palette_png(
        &seg.join("orphan.png"),
        &LabelMap::filled(4, 4, 9),
        &classes,
    )
    .unwrap();

    let out = dir.path().join("out");
    let o = run(&[
        "--masks",
        seg.to_str().unwrap(),
        "--images",
        root.join("JPEGImages").to_str().unwrap(),
        "--classes",
        root.join("classes.txt").to_str().unwrap(),
        "--to",
        "coco",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains(&format!("{first}.png")) && err.contains("5x5"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{second}.png")) && err.contains("colour"),
        "{err}"
    );
    assert!(err.contains("orphan.png"), "{err}");
    assert!(err.contains("3 of 9 masks"), "{err}");
    let coco = read_coco(&out.join("coco.json"), &classes, CocoReadOptions::default()).unwrap();
    assert_eq!(coco.len(), 6, "the good masks are still written");
}

#[test]
fn missing_folder_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(&[
        "--masks",
        dir.path().join("nope").to_str().unwrap(),
        "--to",
        "cvat",
        "--out",
        dir.path().join("out").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("nope"), "{}", stderr(&o));
}
