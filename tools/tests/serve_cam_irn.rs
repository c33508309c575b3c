//! The real `ssc-serve` binary serving the CAM + IRN models of the pseudo-label stage (tiny
//! networks with random weights): `/health` names the model kind and `/predict` on a synthetic
//! image answers brush-RLE results of the image's size, one per foreground class found, named
//! after the CAM network's classes. Skips without the ONNX Runtime library.

mod label_common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use label_common::*;
use serde_json::{Value, json};
use ssc_core::formats::brush::rle2mask;

const SERVE: &str = env!("CARGO_BIN_EXE_ssc-serve");

#[test]
#[cfg(unix)]
fn serves_cam_irn_predictions() {
    if !ort_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cam = tiny_cam_model(dir.path(), 3);
    let irn = tiny_irn_model(dir.path());
    let names = ssc_inference::runtime::Model::open(&cam, &Default::default())
        .unwrap()
        .info()
        .class_names
        .clone();
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

    let mut child = Command::new(SERVE)
        .arg("--cam-model")
        .arg(&cam)
        .arg("--irn-model")
        .arg(&irn)
        .args([
            "--port",
            "0",
            "--label-threshold=-1e9",
            "--cam-scales",
            "1.0,0.5",
        ])
        .arg("--local-root")
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .unwrap();
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let get = |path: &str| -> Value {
        let mut r = agent.get(format!("http://{addr}{path}")).call().unwrap();
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
    };
    let health = get("/health");
    assert_eq!(health["status"], "UP");
    assert_eq!(health["model_class"], "SscCamIrn");

    let body = json!({
        "tasks": [{"id": 7, "data": {"image": "/data/local-files/?d=pic.png"}}],
        "label_config": "<View><Image name=\"img\" value=\"$image\"/>\
            <BrushLabels name=\"paint\" toName=\"img\"></BrushLabels></View>",
    });
    let mut resp = agent
        .post(format!("http://{addr}/predict"))
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let pred = &v["results"][0];
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
        let rle: Vec<u8> = r["value"]["rle"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u8)
            .collect();
        let mask = rle2mask(&rle, h as usize, w as usize).unwrap();
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

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no shutdown after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status:?}");
    drain.join().unwrap();
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
