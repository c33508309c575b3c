//! `ssc-label cams` end to end with a tiny exported CAM network on a tiny synthetic benchmark:
//! a labelled run (keys = the image labels, sizes = the images, then `ssc-eval cams` reads the
//! folder), a `--predict-labels` run on an unlabelled image folder, kill-and-resume, and two
//! shards running side by side. Skips when the ONNX Runtime library is absent.

mod label_common;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use label_common::*;
use ssc_core::cam::CamRecord;
use ssc_core::dataset::{DatasetKind, open};

#[test]
fn labelled_run_keeps_the_image_labels() {
    if !ort_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (root, cfg) = benchmark(dir.path(), 6, 48);
    let model = tiny_cam_model(dir.path(), cfg.classes);
    let out = dir.path().join("cams");
    let o = label_cmd(
        &model,
        &root,
        &out,
        &["--split", "train", "--threads", "2", "--batch", "3"],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let ds = open(DatasetKind::Voc, &root, "train").unwrap();
    for item in &ds.items {
        let rec = CamRecord::read(&out.join(format!("{}.safetensors", item.id))).unwrap();
        let want: Vec<i64> = item.label_classes().iter().map(|&c| c as i64 - 1).collect();
        assert_eq!(rec.keys, want, "{}", item.id);
        let (w, h) = ssc_core::imageio::image_size(&item.image).unwrap();
        assert_eq!(rec.size, (h as usize, w as usize));
        // Each kept channel is max-normalised (max just below 1) unless it is all zero.
        for ch in rec.high_res.chunks(rec.size.0 * rec.size.1) {
            let m = ch.iter().copied().fold(0f32, f32::max);
            assert!(m == 0.0 || (0.99..1.0).contains(&m), "{}: max {m}", item.id);
        }
    }
    let m = json(&out.join("manifest.0-of-1.json"));
    assert_eq!(
        (m["items"].as_u64(), m["written"].as_u64()),
        (Some(6), Some(6))
    );
    let settings = json(&out.join("cams.json"));
    assert_eq!(settings["cam"]["scales"].as_array().unwrap().len(), 4);
    assert_eq!(settings["arch"], "cam");

    // The folder is what `ssc-eval cams` reads.
    let e = std::process::Command::new(env!("CARGO_BIN_EXE_ssc-eval"))
        .args(["cams", "--cams"])
        .arg(&out)
        .arg("--gt")
        .arg(&root)
        .args(["--split", "train", "--thresholds", "0.1:0.3:0.1"])
        .output()
        .unwrap();
    assert!(e.status.success(), "{}", text(&e));
    assert!(String::from_utf8_lossy(&e.stdout).contains("images: 6"));
}

#[test]
fn predicted_labels_work_without_dataset_labels() {
    if !ort_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (root, cfg) = benchmark(dir.path(), 4, 48);
    let model = tiny_cam_model(dir.path(), cfg.classes);
    let images = root.join("JPEGImages");
    let classes = dir.path().join("classes.txt");
    std::fs::write(&classes, "star\ndrop\nbean\n").unwrap();
    let folder = [
        "--dataset",
        "folder",
        "--classes",
        classes.to_str().unwrap(),
    ];

    // Without labels and without --predict-labels every image fails, named in the manifest.
    let out = dir.path().join("no-labels");
    let o = label_cmd(&model, &images, &out, &folder).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let m = json(&out.join("manifest.0-of-1.json"));
    assert_eq!(m["failures"].as_array().unwrap().len(), 5);
    assert!(text(&o).contains("--predict-labels"), "{}", text(&o));

    let out = dir.path().join("predicted");
    let mut args = folder.to_vec();
    args.extend([
        "--predict-labels",
        "--label-threshold",
        "0.0",
        "--scales",
        "1.0,0.5",
    ]);
    let o = label_cmd(&model, &images, &out, &args).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let ids = cam_ids(&out);
    assert_eq!(ids.len(), 5); // 4 train + 1 val image in the folder
    for id in &ids {
        let rec = CamRecord::read(&out.join(format!("{id}.safetensors"))).unwrap();
        assert!(!rec.keys.is_empty(), "{id}: no class kept");
        assert!(rec.keys.iter().all(|&k| (0..3).contains(&k)));
    }
    // A huge threshold keeps exactly the best class.
    let out = dir.path().join("best-only");
    let mut args = folder.to_vec();
    args.extend(["--predict-labels", "--label-threshold", "1e9"]);
    let o = label_cmd(&model, &images, &out, &args).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    for id in cam_ids(&out) {
        let rec = CamRecord::read(&out.join(format!("{id}.safetensors"))).unwrap();
        assert_eq!(rec.keys.len(), 1, "{id}");
    }
}

#[test]
fn killed_run_resumes_to_a_complete_valid_set() {
    if !ort_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let n = 40;
    let (root, cfg) = benchmark(dir.path(), n, 96);
    let model = tiny_cam_model(dir.path(), cfg.classes);
    let out = dir.path().join("cams");
    let args = ["--split", "train", "--threads", "1"];
    let mut child = label_cmd(&model, &root, &out, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let done = if out.exists() { cam_ids(&out).len() } else { 0 };
        if done >= 3 || start.elapsed() > Duration::from_secs(120) {
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().ok();
    child.wait().unwrap();
    let after_kill = cam_ids(&out).len();
    eprintln!("{after_kill} of {n} CAM files existed when the run was killed");

    let o = label_cmd(&model, &root, &out, &args).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let m = json(&out.join("manifest.0-of-1.json"));
    assert_eq!(m["skipped"].as_u64(), Some(after_kill as u64));
    assert_eq!(m["written"].as_u64(), Some((n - after_kill) as u64));
    assert_eq!(cam_ids(&out), train_ids(n));
    for id in train_ids(n) {
        CamRecord::read(&out.join(format!("{id}.safetensors"))).unwrap();
    }
    let temps: Vec<String> = names(&out)
        .into_iter()
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(temps.is_empty(), "temporary files left: {temps:?}");

    // A truncated file (e.g. a copy cut short) is redone; the others are skipped.
    let victim = out.join("train_00007.safetensors");
    let before = CamRecord::read(&victim).unwrap();
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() - 100]).unwrap();
    let o = label_cmd(&model, &root, &out, &args).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let m = json(&out.join("manifest.0-of-1.json"));
    assert_eq!(
        (m["skipped"].as_u64(), m["written"].as_u64()),
        (Some(n as u64 - 1), Some(1))
    );
    // Same record up to float noise (ONNX Runtime need not be bit-reproducible).
    let after = CamRecord::read(&victim).unwrap();
    assert_eq!(
        (after.keys.clone(), after.size),
        (before.keys.clone(), before.size)
    );
    let diff = after
        .high_res
        .iter()
        .zip(&before.high_res)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff < 1e-4, "rewritten CAM differs by {diff}");
}

#[test]
fn two_shards_side_by_side_are_disjoint_and_complete() {
    if !ort_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let n = 9;
    let (root, cfg) = benchmark(dir.path(), n, 48);
    let model = tiny_cam_model(dir.path(), cfg.classes);
    let out = dir.path().join("cams");
    let common = ["--split", "train", "--threads", "1", "--scales", "1.0"];
    let mut a = label_cmd(&model, &root, &out, &common);
    a.args(["--shard", "0/2"]);
    // The second shard comes from a Kubernetes indexed job.
    let mut b = label_cmd(&model, &root, &out, &common);
    b.args(["--shards", "2"]).env("JOB_COMPLETION_INDEX", "1");
    for c in [&mut a, &mut b] {
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let (ca, cb) = (a.spawn().unwrap(), b.spawn().unwrap());
    let (oa, ob) = (
        ca.wait_with_output().unwrap(),
        cb.wait_with_output().unwrap(),
    );
    assert!(oa.status.success(), "{}", text(&oa));
    assert!(ob.status.success(), "{}", text(&ob));
    let ma = json(&out.join("manifest.0-of-2.json"));
    let mb = json(&out.join("manifest.1-of-2.json"));
    assert_eq!(
        (ma["items"].as_u64(), mb["items"].as_u64()),
        (Some(5), Some(4))
    );
    assert_eq!(
        (ma["written"].as_u64(), mb["written"].as_u64()),
        (Some(5), Some(4))
    );
    let got: BTreeSet<String> = cam_ids(&out).into_iter().collect();
    assert_eq!(got, train_ids(n).into_iter().collect());
}
