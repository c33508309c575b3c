//! `ssc-label masks` (CAM → IRN edge map → random walk → pseudo-mask in one pass) with tiny
//! exported networks (random weights) on tiny data: its outputs equal `ssc-label cams`
//! followed by `ssc-label pseudo`, it resumes and shards, and on an unlabelled nested image
//! folder with `--predict-labels` it writes a mask for every readable image and reports the
//! unreadable ones. With `--format cvat,coco,labelstudio` the annotation files read back to
//! the PNG masks, also after a resume. Skips when the ONNX Runtime library is absent.

mod label_common;

use std::path::Path;
use std::process::Command;

use label_common::*;
use ssc_core::cam::CamRecord;

fn masks_cmd(cam: &Path, irn: &Path, root: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut cmd = label("masks");
    cmd.arg("--cam-model")
        .arg(cam)
        .arg("--irn-model")
        .arg(irn)
        .arg("--root")
        .arg(root)
        .arg("--out")
        .arg(out)
        .args(extra);
    cmd
}

fn run_ok(mut cmd: Command) -> String {
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    text(&o)
}

/// Class ids of a palette or grey mask PNG.
fn decoded(path: &Path) -> Vec<u8> {
    ssc_core::mask::read_mask(path, &ssc_core::classes::ClassMap::voc())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .data
}

/// Asserts two masks are equal without printing whole pixel arrays.
fn same(a: &[u8], b: &[u8], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: sizes differ");
    let diff = a.iter().zip(b).filter(|(x, y)| x != y).count();
    assert_eq!(diff, 0, "{what}: {diff} of {} pixels differ", a.len());
}

#[test]
fn one_pass_equals_cams_then_pseudo_and_resumes() {
    if !ort_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let n = 5;
    let (root, cfg) = benchmark(d, n, 48);
    let cam = tiny_cam_model(d, cfg.classes);
    let irn = tiny_irn_model(d);
    let common = ["--split", "train", "--threads", "2"];

    // Two stages through files.
    let cams = d.join("cams");
    run_ok({
        let mut c = label_cmd(&cam, &root, &cams, &common);
        c.args(["--batch", "2"]);
        c
    });
    let two = d.join("two-stage");
    run_ok({
        let mut c = label("pseudo");
        c.arg("--irn").arg(&irn).arg("--cams").arg(&cams);
        c.arg("--root").arg(&root).arg("--out").arg(&two);
        c.args(common)
            .args(["--scores", "--confidence", "--format", "coco"]);
        c
    });

    // One pass.
    let one = d.join("one-pass");
    let mut args = common.to_vec();
    args.extend(["--batch", "2", "--scores", "--confidence", "--save-cams"]);
    run_ok(masks_cmd(&cam, &irn, &root, &one, &args));

    let mut foreground = 0;
    for id in train_ids(n) {
        let (a, b) = (
            decoded(&two.join(format!("{id}.png"))),
            decoded(&one.join(format!("{id}.png"))),
        );
        same(&a, &b, &id);
        foreground += a.iter().filter(|&&v| v != 0).count();
        let conf = format!("confidence/{id}.png");
        same(
            &decoded(&two.join(&conf)),
            &decoded(&one.join(&conf)),
            &conf,
        );
        assert!(one.join(format!("scores/{id}.safetensors")).is_file());
        let (ca, cb) = (
            CamRecord::read(&cams.join(format!("{id}.safetensors"))).unwrap(),
            CamRecord::read(&one.join(format!("cams/{id}.safetensors"))).unwrap(),
        );
        assert_eq!((ca.keys, ca.size), (cb.keys, cb.size), "{id}");
        assert!(ca.high_res == cb.high_res, "{id}: saved CAMs differ");
    }
    assert!(foreground > 0, "the walk labelled no pixel as foreground");
    let dataset = ssc_core::dataset::DatasetSpec::new(
        ssc_core::dataset::DatasetKind::Voc,
        &root,
        Some("train"),
    )
    .open()
    .unwrap();
    // The library's Labeler, given each image's labels, makes the masks the binary wrote
    // (whose CAM inference ran in batches of 2).
    let mut labeler =
        ssc_inference::labeler::Labeler::open(&cam, &irn, &Default::default()).unwrap();
    for item in &dataset.items {
        let image = ssc_core::imageio::read_rgb(&item.image).unwrap();
        let labels = item.labels.as_deref().unwrap();
        let out = labeler
            .label(&image, ssc_inference::labeler::ImageLabels::Given(labels))
            .unwrap();
        same(
            &out.mask.data,
            &decoded(&one.join(format!("{}.png", item.id))),
            &format!("Labeler {}", item.id),
        );
    }
    // The library's MasksJob (what the binary runs), called directly with the progress output
    // off, writes the same masks and a manifest of every item; a second run finds them done.
    let lib = d.join("library");
    let job = ssc_inference::jobs::MasksJob {
        cam_model: cam.clone(),
        irn_model: irn.clone(),
        dataset: ssc_core::dataset::DatasetSpec::new(
            ssc_core::dataset::DatasetKind::Voc,
            &root,
            Some("train"),
        ),
        out: lib.clone(),
        cam: Default::default(),
        save_cams: false,
        masks: Default::default(),
        params: Default::default(),
        formats: Default::default(),
        threads: Some(2),
        run: ssc_inference::batch::RunOptions {
            tool: "library test".into(),
            out_dir: lib.clone(),
            shard: ssc_inference::batch::Shard::ALL,
            overwrite: false,
            progress: false,
        },
    };
    let manifest = job.run().unwrap();
    assert_eq!((manifest.written, manifest.skipped), (n, 0));
    assert!(manifest.failures.is_empty(), "{:?}", manifest.failures);
    for id in train_ids(n) {
        same(
            &decoded(&lib.join(format!("{id}.png"))),
            &decoded(&one.join(format!("{id}.png"))),
            &format!("MasksJob {id}"),
        );
    }
    assert_eq!(job.run().unwrap().skipped, n, "a rerun resumes");
    // Errors a program can match on: other walk settings in the same folder, a swapped model.
    let mut other = job.clone();
    other.params.walk.beta += 1.0;
    match other.run() {
        Err(ssc_inference::InferenceError::SettingsMismatch { differ, .. }) => {
            assert_eq!(differ, ["params"])
        }
        r => panic!(
            "expected a settings mismatch, got {:?}",
            r.map(|m| m.written)
        ),
    }
    let swapped = ssc_inference::jobs::MasksJob {
        cam_model: irn.clone(),
        ..job.clone()
    };
    match swapped.run() {
        Err(ssc_inference::InferenceError::WrongModel { arch, expected, .. }) => {
            assert_eq!((arch.as_str(), expected), ("irn", "cam"))
        }
        r => panic!(
            "expected a wrong-model error, got {:?}",
            r.map(|m| m.written)
        ),
    }
    // `ssc-label pseudo --format coco` holds the same masks as its PNGs.
    let classes = dataset.classes;
    let coco = ssc_core::formats::coco::read_coco(
        &two.join("coco.json"),
        &classes,
        ssc_core::formats::coco::CocoReadOptions {
            include_crowd: true,
        },
    )
    .unwrap();
    assert_eq!(coco.len(), n);
    for m in &coco {
        same(
            &m.labels,
            &decoded(&two.join(format!("{}.png", m.id))),
            &m.id,
        );
    }
    // The saved CAMs are a complete `ssc-label cams` folder.
    assert_eq!(json(&one.join("cams/cams.json"))["arch"], "cam");
    let m = json(&one.join("manifest.0-of-1.json"));
    assert_eq!(m["tool"], "ssc-label masks");
    assert_eq!(
        (m["items"].as_u64(), m["written"].as_u64()),
        (Some(n as u64), Some(n as u64))
    );
    assert_eq!(json(&one.join("masks.json"))["stage"], "masks");

    // Resume: everything done is skipped; a lost confidence mask redoes only its image.
    std::fs::remove_file(one.join("confidence/train_00002.png")).unwrap();
    run_ok(masks_cmd(&cam, &irn, &root, &one, &args));
    let m = json(&one.join("manifest.0-of-1.json"));
    assert_eq!(
        (m["skipped"].as_u64(), m["written"].as_u64()),
        (Some(n as u64 - 1), Some(1))
    );
    // Other walk settings in the same folder are refused instead of mixed in.
    let params = d.join("params.json");
    std::fs::write(&params, r#"{"bg_thres": 0.5}"#).unwrap();
    let mut other = args.clone();
    other.extend(["--params", params.to_str().unwrap()]);
    let o = masks_cmd(&cam, &irn, &root, &one, &other).output().unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("masks.json"), "{}", text(&o));

    // Two shards write disjoint halves whose union is the dataset.
    let sharded = d.join("sharded");
    for shard in ["0/2", "1/2"] {
        let mut a = vec!["--split", "train", "--threads", "1", "--shard", shard];
        a.push("--grey");
        run_ok(masks_cmd(&cam, &irn, &root, &sharded, &a));
    }
    let (m0, m1) = (
        json(&sharded.join("manifest.0-of-2.json")),
        json(&sharded.join("manifest.1-of-2.json")),
    );
    assert_eq!(
        (m0["written"].as_u64(), m1["written"].as_u64()),
        (Some(3), Some(2))
    );
    for id in train_ids(n) {
        // Grey masks hold the same class ids as the palette ones.
        same(
            &decoded(&sharded.join(format!("{id}.png"))),
            &decoded(&two.join(format!("{id}.png"))),
            &id,
        );
    }
}

#[test]
fn predicted_labels_on_a_nested_unlabelled_folder_report_unreadable_files() {
    if !ort_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (synth, cfg) = benchmark(d, 2, 40);
    let cam = tiny_cam_model(d, cfg.classes);
    let irn = tiny_irn_model(d);
    let classes = d.join("classes.txt");
    std::fs::write(&classes, "background\nstar\ndrop\nbean\n").unwrap();

    // photos/a/x.jpg, photos/a/b/y.png (readable); photos/c/broken.jpg (a truncated JPEG),
    // photos/c/d/notes.png (text named like an image); photos/readme.txt (not an image name:
    // not part of the folder dataset).
    let root = d.join("photos");
    for sub in ["a/b", "c/d"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let jpg = synth.join("JPEGImages/train_00000.jpg");
    std::fs::copy(&jpg, root.join("a/x.jpg")).unwrap();
    ssc_core::imageio::read_rgb(synth.join("JPEGImages/train_00001.jpg"))
        .unwrap()
        .save(root.join("a/b/y.png"))
        .unwrap();
    let bytes = std::fs::read(&jpg).unwrap();
    std::fs::write(root.join("c/broken.jpg"), &bytes[..bytes.len() / 3]).unwrap();
    std::fs::write(root.join("c/d/notes.png"), "not an image\n").unwrap();
    std::fs::write(root.join("readme.txt"), "hello\n").unwrap();
    // Images smaller than the network's stride at the smallest scale (a 1×1 image rounds to
    // 0×0 at scale 0.5) get a mask too.
    image::RgbImage::from_pixel(1, 1, image::Rgb([200, 40, 40]))
        .save(root.join("a/one.png"))
        .unwrap();
    image::RgbImage::from_fn(3, 2, |x, y| image::Rgb([40 * x as u8, 90 * y as u8, 7]))
        .save(root.join("a/tiny.png"))
        .unwrap();

    let out = d.join("masks");
    let o = masks_cmd(
        &cam,
        &irn,
        &root,
        &out,
        &[
            "--dataset",
            "folder",
            "--classes",
            classes.to_str().unwrap(),
            "--predict-labels",
            "--label-threshold",
            "0.0",
            "--scales",
            "1.0,0.5",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    for id in ["a/x", "a/b/y", "a/one", "a/tiny"] {
        let mask = decoded(&out.join(format!("{id}.png")));
        let img = ssc_core::imageio::read_rgb(root.join(if id == "a/x" {
            "a/x.jpg".to_string()
        } else {
            format!("{id}.png")
        }))
        .unwrap();
        assert_eq!(mask.len(), (img.width() * img.height()) as usize, "{id}");
        assert!(
            mask.iter().all(|&v| v <= 3),
            "{id}: values beyond the classes"
        );
    }
    assert!(!out.join("c/broken.png").exists());
    assert!(!out.join("c/d/notes.png").exists());
    let m = json(&out.join("manifest.0-of-1.json"));
    assert_eq!(
        (m["items"].as_u64(), m["written"].as_u64()),
        (Some(6), Some(4))
    );
    let failed: Vec<&str> = m["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["c/broken", "c/d/notes"]);
    let log = text(&o);
    for name in ["c/broken", "c/d/notes", "2 of 6 item(s) failed"] {
        assert!(log.contains(name), "{name} not reported:\n{log}");
    }
}

/// Reads `cvat.zip`, `coco.json` and `labelstudio-tasks.json` of `out` back with the
/// `ssc_core::formats` readers and checks they hold the PNG mask of every id, in id order.
fn check_annotation_files(out: &Path, root: &Path, ids: &[String]) {
    use ssc_core::formats::coco::{CocoReadOptions, read_coco};
    use ssc_core::formats::cvat::read_cvat;
    use ssc_core::formats::labelstudio::{LabelStudioOptions, read_tasks};
    let classes = ssc_core::dataset::DatasetSpec::new(
        ssc_core::dataset::DatasetKind::Voc,
        root,
        Some("train"),
    )
    .open()
    .unwrap()
    .classes;
    let png: Vec<Vec<u8>> = ids
        .iter()
        .map(|id| decoded(&out.join(format!("{id}.png"))))
        .collect();
    assert!(
        png.iter().flatten().any(|&v| v != 0),
        "no foreground: the comparison would be trivial"
    );
    let coco = CocoReadOptions {
        include_crowd: true,
    };
    let read = [
        ("cvat", read_cvat(&out.join("cvat.zip"), &classes)),
        ("coco", read_coco(&out.join("coco.json"), &classes, coco)),
        (
            "labelstudio",
            read_tasks(
                &out.join("labelstudio-tasks.json"),
                &classes,
                &LabelStudioOptions::default(),
            ),
        ),
    ];
    for (name, masks) in read {
        let masks = masks.unwrap_or_else(|e| panic!("{name}: {e}"));
        let got: Vec<&str> = masks.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(got, ids, "{name}: ids");
        for (m, p) in masks.iter().zip(&png) {
            same(&m.labels, p, &format!("{name} {}", m.id));
        }
    }
    assert!(out.join("labelstudio-config.xml").is_file());
    // The predictions carry the walk's class scores, not the writer's default of 1.
    let tasks = json(&out.join("labelstudio-tasks.json"));
    let scores: Vec<f64> = tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["predictions"][0]["score"].as_f64().unwrap())
        .collect();
    assert!(
        scores.iter().all(|s| (0.0..=1.0).contains(s)) && scores.iter().any(|&s| s < 1.0),
        "scores {scores:?}"
    );
}

#[test]
fn annotation_formats_equal_the_png_masks_and_stay_complete_on_resume() {
    if !ort_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let n = 4;
    let (root, cfg) = benchmark(d, n, 40);
    let cam = tiny_cam_model(d, cfg.classes);
    let irn = tiny_irn_model(d);
    let out = d.join("formats");
    let args = [
        "--split",
        "train",
        "--threads",
        "2",
        "--format",
        "voc,cvat",
        "--format",
        "coco,labelstudio",
    ];
    run_ok(masks_cmd(&cam, &irn, &root, &out, &args));
    let ids = train_ids(n);
    check_annotation_files(&out, &root, &ids);

    // Resume with one mask lost and the aggregate files gone: one image is redone, the
    // others are read back from their PNGs, and the files again cover every image in order.
    std::fs::remove_file(out.join("train_00001.png")).unwrap();
    for f in ["cvat.zip", "coco.json", "labelstudio-tasks.json"] {
        std::fs::remove_file(out.join(f)).unwrap();
    }
    run_ok(masks_cmd(&cam, &irn, &root, &out, &args));
    let m = json(&out.join("manifest.0-of-1.json"));
    assert_eq!(
        (m["skipped"].as_u64(), m["written"].as_u64()),
        (Some(n as u64 - 1), Some(1))
    );
    check_annotation_files(&out, &root, &ids);
}
