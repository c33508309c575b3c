//! Shared by the tests that run the real `ssc-serve` binary: start it on a free port, send
//! `/predict`, read brush results back into label maps, stop it with SIGTERM.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use ssc_core::formats::brush::rle2mask;

const SERVE: &str = env!("CARGO_BIN_EXE_ssc-serve");

/// A running `ssc-serve` binary.
pub struct Server {
    child: std::process::Child,
    /// `host:port` it listens on.
    pub addr: String,
    drain: std::thread::JoinHandle<Vec<String>>,
}

impl Server {
    /// Starts `ssc-serve ARGS --port 0 --local-root ROOT` and waits until it listens.
    pub fn start<S: AsRef<OsStr>>(args: &[S], root: &Path) -> Self {
        let mut child = Command::new(SERVE)
            .args(args)
            .args(["--port", "0"])
            .arg("--local-root")
            .arg(root)
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
        Server { child, addr, drain }
    }

    /// An HTTP client that returns error statuses instead of failing.
    pub fn agent(&self) -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into()
    }

    /// `GET path` as JSON.
    pub fn get(&self, path: &str) -> Value {
        let mut r = self
            .agent()
            .get(format!("http://{}{path}", self.addr))
            .call()
            .unwrap();
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
    }

    /// `POST path` with a JSON body: the status and the JSON answer.
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let mut r = self
            .agent()
            .post(format!("http://{}{path}", self.addr))
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .unwrap();
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// `/predict` for tasks `(id, file under the local root)`; the answer's `results`.
    pub fn predict(&self, files: &[(u64, &str)]) -> Vec<Value> {
        let tasks: Vec<Value> = files
            .iter()
            .map(
                |(id, f)| json!({"id": id, "data": {"image": format!("/data/local-files/?d={f}")}}),
            )
            .collect();
        let body = json!({
            "tasks": tasks,
            "label_config": "<View><Image name=\"img\" value=\"$image\"/>\
                <BrushLabels name=\"paint\" toName=\"img\"></BrushLabels></View>",
        });
        let (status, v) = self.post("/predict", &body);
        assert_eq!(status, 200, "{v}");
        v["results"].as_array().unwrap().clone()
    }

    /// SIGTERM, then a clean exit within 20 s; returns the log.
    pub fn stop(mut self) -> Vec<String> {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let t0 = std::time::Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "no shutdown after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "exit status {status:?}");
        self.drain.join().unwrap()
    }
}

/// The alpha mask (`w × h`, 0–255) that one brush result's RLE decodes to.
pub fn brush(result: &Value, w: usize, h: usize) -> Vec<u8> {
    let rle: Vec<u8> = result["value"]["rle"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u8)
        .collect();
    rle2mask(&rle, h, w).unwrap()
}

/// The label map a prediction's brushes paint: each pixel the index in `names` (background
/// first) of the brush covering it, 0 where none does.
pub fn painted(pred: &Value, names: &[String], w: usize, h: usize) -> Vec<u8> {
    let mut map = vec![0u8; w * h];
    for r in pred["result"].as_array().unwrap() {
        let label = r["value"]["brushlabels"][0].as_str().unwrap();
        let class = names.iter().position(|n| n == label).unwrap() as u8;
        for (m, a) in map.iter_mut().zip(brush(r, w, h)) {
            if a >= 128 {
                *m = class;
            }
        }
    }
    map
}

/// The class names an exported model carries.
pub fn class_names(model: &Path) -> Vec<String> {
    ssc_inference::runtime::Model::open(model, &Default::default())
        .unwrap()
        .info()
        .class_names
        .clone()
}

/// Asks `server` for the images `<name>.png` of `sizes` (under its local root), stops it, and
/// asserts each served mask (brushes named by `labels`, background first) equals
/// `<written>/<name>.png` pixel for pixel. Returns the number of non-background pixels.
pub fn assert_served_equals_written(
    server: Server,
    sizes: &[(&str, u32, u32)],
    labels: &[String],
    written: &Path,
) -> usize {
    let files: Vec<(u64, String)> = sizes
        .iter()
        .enumerate()
        .map(|(i, (n, ..))| (i as u64, format!("{n}.png")))
        .collect();
    let refs: Vec<(u64, &str)> = files.iter().map(|(i, f)| (*i, f.as_str())).collect();
    let preds = server.predict(&refs);
    server.stop();
    assert_eq!(preds.len(), sizes.len());
    let voc = ssc_core::classes::ClassMap::voc();
    let mut foreground = 0;
    for ((name, w, h), pred) in sizes.iter().zip(&preds) {
        let mask = ssc_core::mask::read_mask(&written.join(format!("{name}.png")), &voc).unwrap();
        assert_eq!((mask.width, mask.height), (*w as usize, *h as usize));
        let served = painted(pred, labels, *w as usize, *h as usize);
        let diff = served
            .iter()
            .zip(&mask.data)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            diff, 0,
            "{name}: {diff} pixels differ between served and written"
        );
        foreground += mask.data.iter().filter(|&&v| v != 0).count();
    }
    foreground
}
