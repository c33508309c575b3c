//! The real `ssc-serve` binary serving the CAM + IRN models of the pseudo-label stage (tiny
//! networks with random weights): `/health` names the model kind and `/predict` on a synthetic
//! image answers brush-RLE results of the image's size, one per foreground class found, named
//! after the CAM network's classes. Skips without the ONNX Runtime library.

mod label_common;
mod serve_common;

use label_common::*;
use serde_json::Value;
use serve_common::{Server, assert_served_equals_written, brush, class_names};

#[test]
#[cfg(unix)]
fn serves_cam_irn_predictions() {
    if !ort_available() {
        return;
    }
    let (dir, cam, irn, names) = models();
    let (w, h) = (45u32, 29u32);
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let inside = (x as i32 - 20).pow(2) + (y as i32 - 14).pow(2) < 100;
        if inside {
            image::Rgb([220, 40, 30])
        } else {
            image::Rgb([(x * 3) as u8, (y * 5) as u8, 120])
        }
    });
    img.save(dir.path().join("pic.png")).unwrap();

    let server = Server::start(&cam_irn_args(&cam, &irn), dir.path());
    let (addr, agent) = (server.addr.clone(), server.agent());
    let get = |path: &str| -> Value {
        let mut r = agent.get(format!("http://{addr}{path}")).call().unwrap();
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
    };
    let health = get("/health");
    assert_eq!(health["status"], "UP");
    assert_eq!(health["model_class"], "SscCamIrn");

    let preds = server.predict(&[(7, "pic.png")]);
    let pred = &preds[0];
    assert_eq!(pred["model_version"], "ssc-cam");
    let score = pred["score"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&score), "score {score}");
    let results = pred["result"].as_array().unwrap();
    assert!(!results.is_empty(), "no foreground class predicted");
    let mut covered = vec![0u8; (w * h) as usize];
    let mut labels = Vec::new();
    for r in results {
        assert_eq!(
            (r["from_name"].as_str(), r["to_name"].as_str()),
            (Some("paint"), Some("img"))
        );
        assert_eq!(r["type"], "brushlabels");
        assert_eq!(
            (r["original_width"].as_u64(), r["original_height"].as_u64()),
            (Some(w as u64), Some(h as u64))
        );
        let label = r["value"]["brushlabels"][0].as_str().unwrap().to_string();
        assert!(
            names.contains(&label),
            "{label} is not a class of the model ({names:?})"
        );
        let mask = brush(r, w as usize, h as usize);
        assert!(mask.iter().any(|&a| a >= 128), "{label}: empty brush");
        for (c, a) in covered.iter_mut().zip(mask) {
            *c += u8::from(a >= 128);
        }
        labels.push(label);
    }
    assert!(
        covered.iter().all(|&c| c <= 1),
        "brushes of different classes overlap"
    );
    labels.sort();
    labels.dedup();
    assert_eq!(labels.len(), results.len(), "one result per class");

    server.stop();
}

/// An image above the work size is labelled as its PIL-style shrink to that size and the
/// labels enlarged back by nearest neighbour: the same answer as segmenting the shrunk image
/// directly, at the original size.
#[test]
fn large_images_are_labelled_at_the_work_size() {
    use ssc_tools::serve::Segmenter;
    use ssc_tools::serve::camirn::{CamIrnSegmenter, enlarge_nearest};
    if !ort_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cam = tiny_cam_model(dir.path(), 3);
    let irn = tiny_irn_model(dir.path());
    let open = |work: u64| {
        CamIrnSegmenter::open(
            &cam,
            &irn,
            &Default::default(),
            ssc_inference::cam::CamConfig {
                scales: vec![1.0, 0.5],
                predict_labels: true,
                label_threshold: -1e9,
            },
            Default::default(),
        )
        .unwrap()
        .with_work_pixels(work)
    };
    let (w, h) = (230u32, 130u32);
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        if (x as i32 - 90).pow(2) + (y as i32 - 60).pow(2) < 1600 {
            image::Rgb([220, 40, 30])
        } else {
            image::Rgb([(x % 256) as u8, (y * 2 % 256) as u8, 120])
        }
    });
    let work = 10_000u64;
    let got = open(work).segment(&img).unwrap();
    let scale = (work as f64 / f64::from(w * h)).sqrt();
    let small = ssc_core::resize::pil_rescale_rgb(&img, scale).unwrap();
    assert!(u64::from(small.width() * small.height()) <= work);
    let direct = open(10 * work).segment(&small).unwrap();
    assert_eq!((got.width, got.height), (w, h));
    assert_eq!(got.scores, direct.scores);
    assert_eq!(
        got.labels,
        enlarge_nearest(&direct.labels, small.width(), small.height(), w, h)
    );
    // an image exactly at the work size is not shrunk
    let at = open(u64::from(w * h)).segment(&img).unwrap();
    let above = open(100 * u64::from(w * h)).segment(&img).unwrap();
    assert_eq!(at, above);
}

/// A temporary folder with tiny CAM (3 classes) and IRN models, and the CAM's class names.
fn models() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::path::PathBuf,
    Vec<String>,
) {
    let dir = tempfile::tempdir().unwrap();
    let cam = tiny_cam_model(dir.path(), 3);
    let irn = tiny_irn_model(dir.path());
    let names = class_names(&cam);
    (dir, cam, irn, names)
}

/// `ssc-serve` arguments of the CAM + IRN models at scales 1.0 and 0.5 with every class score
/// above the label threshold.
fn cam_irn_args(cam: &std::path::Path, irn: &std::path::Path) -> Vec<std::ffi::OsString> {
    let mut a: Vec<std::ffi::OsString> = vec!["--cam-model".into(), cam.into()];
    a.extend(["--irn-model".into(), irn.into()]);
    a.extend(["--label-threshold=-1e9", "--cam-scales", "1.0,0.5"].map(Into::into));
    a
}

/// The same image gets the same mask from `ssc-serve` as from `ssc-label masks` (one Labeler
/// behind both), down to a 1×1 image.
#[test]
#[cfg(unix)]
fn served_masks_equal_the_masks_ssc_label_writes() {
    if !ort_available() {
        return;
    }
    let (dir, cam, irn, names) = models();
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    let sizes = [
        ("blob", 45u32, 29u32),
        ("strip", 70, 9),
        ("tiny", 3, 2),
        ("one", 1, 1),
    ];
    for (i, (name, w, h)) in sizes.iter().enumerate() {
        image::RgbImage::from_fn(*w, *h, |x, y| {
            if (x as i32 - 20).pow(2) + (y as i32 - 14).pow(2) < 100 {
                image::Rgb([220, 40, 30])
            } else {
                image::Rgb([(x * 3) as u8, (y * 5) as u8, 40 * i as u8])
            }
        })
        .save(photos.join(format!("{name}.png")))
        .unwrap();
    }
    let classes = dir.path().join("classes.txt");
    std::fs::write(&classes, format!("background\n{}\n", names.join("\n"))).unwrap();
    let out = dir.path().join("masks");
    let o = label("masks")
        .arg("--cam-model")
        .arg(&cam)
        .arg("--irn-model")
        .arg(&irn)
        .args(["--dataset", "folder", "--root"])
        .arg(&photos)
        .arg("--classes")
        .arg(&classes)
        .args([
            "--predict-labels",
            "--label-threshold=-1e9",
            "--scales",
            "1.0,0.5",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));

    let server = Server::start(&cam_irn_args(&cam, &irn), &photos);
    let labels: Vec<String> = std::iter::once("background".to_string())
        .chain(names.iter().cloned())
        .collect();
    let foreground = assert_served_equals_written(server, &sizes, &labels, &out);
    assert!(foreground > 0, "some image has a foreground class");
}
