//! HTTP tests of the `ssc-serve` Label Studio ML backend through the library
//! (`ssc_tools::serve::router`) with a deterministic colour-threshold segmenter, served on
//! 127.0.0.1:0 and called with a real HTTP client. (The binary needs an ONNX model; these
//! tests cover the whole HTTP layer it runs.) All traffic is loopback, bounded in count and
//! time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use image::{Rgb, RgbImage};
use serde_json::{Value, json};
use ssc_core::classes::ClassMap;
use ssc_core::formats::brush::rle2mask;
use ssc_tools::serve::{
    RetrainPolicy, Retrained, Retrainer, SegmentError, Segmentation, Segmenter, ServeConfig,
    router_with, serve,
};

/// Class 1 where red is high, class 2 where green is high, else background; scores fixed.
struct Threshold {
    delay: Duration,
    calls: Arc<AtomicUsize>,
    /// Segmentations running now, and the most that ever ran at once.
    running: Arc<(AtomicUsize, AtomicUsize)>,
}

fn expected_labels(img: &RgbImage) -> Vec<u8> {
    img.pixels()
        .map(|p| match (p[0] > 128, p[1] > 128) {
            (true, _) => 1,
            (false, true) => 2,
            _ => 0,
        })
        .collect()
}

impl Segmenter for Threshold {
    fn segment(&mut self, image: &RgbImage) -> Result<Segmentation, SegmentError> {
        let now = self.running.0.fetch_add(1, Ordering::SeqCst) + 1;
        self.running.1.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(self.delay);
        self.running.0.fetch_sub(1, Ordering::SeqCst);
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(Segmentation {
            width: image.width(),
            height: image.height(),
            labels: expected_labels(image),
            scores: vec![1.0, 0.9, 0.7],
        })
    }
}

fn classes() -> ClassMap {
    ClassMap::custom(vec!["background".into(), "red".into(), "green".into()])
}

/// A running server; stops gracefully (and is joined) on drop.
struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    calls: Arc<AtomicUsize>,
    running: Arc<(AtomicUsize, AtomicUsize)>,
}

impl Server {
    fn start(cfg: ServeConfig, workers: usize, delay: Duration) -> Server {
        Server::start_with(cfg, workers, delay, None)
    }

    fn start_with(
        cfg: ServeConfig,
        workers: usize,
        delay: Duration,
        retrain: Option<RetrainPolicy>,
    ) -> Server {
        let calls = Arc::new(AtomicUsize::new(0));
        let running = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
        let segs: Vec<Box<dyn Segmenter>> = (0..workers)
            .map(|_| {
                Box::new(Threshold {
                    delay,
                    calls: calls.clone(),
                    running: running.clone(),
                }) as Box<dyn Segmenter>
            })
            .collect();
        let mut srv = Server::serve_router(router_with(cfg, segs, retrain).unwrap());
        srv.calls = calls;
        srv.running = running;
        srv
    }

    /// Serves any router (the backend, or a fake Label Studio / foreign host) on loopback.
    fn serve_router(app: axum::Router) -> Server {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(l.local_addr().unwrap()).unwrap();
                serve(l, app, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            });
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Server {
            addr,
            stop: Some(stop),
            thread: Some(thread),
            calls: Arc::new(AtomicUsize::new(0)),
            running: Arc::new((AtomicUsize::new(0), AtomicUsize::new(0))),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// Sends a request; returns the status and the body parsed as JSON (every answer must be).
fn call(
    srv: &Server,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    auth: Option<&str>,
) -> (u16, Value) {
    let a = agent();
    let url = srv.url(path);
    let mut resp = match (method, body) {
        ("GET", _) => {
            let mut r = a.get(&url);
            if let Some(h) = auth {
                r = r.header("Authorization", h);
            }
            r.call()
        }
        (_, b) => {
            let mut r = a.post(&url).header("Content-Type", "application/json");
            if let Some(h) = auth {
                r = r.header("Authorization", h);
            }
            r.send(b.unwrap_or(b"{}"))
        }
    }
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let text = resp.body_mut().read_to_string().unwrap();
    assert_eq!(ct.as_deref(), Some("application/json"), "{path}: {text}");
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}")),
    )
}

/// Synthetic images under `root`: a red block and a green block on black, in two folders.
fn write_images(root: &Path) -> Vec<(String, RgbImage)> {
    let mut a = RgbImage::new(37, 23);
    for (x, y, p) in a.enumerate_pixels_mut() {
        if (5..20).contains(&x) && (3..15).contains(&y) {
            *p = Rgb([250, 10, 10]);
        } else if x > 25 {
            *p = Rgb([0, 200, 0]);
        }
    }
    let mut b = RgbImage::new(16, 16);
    for (x, y, p) in b.enumerate_pixels_mut() {
        if x + y < 10 {
            *p = Rgb([0, 255, 0]);
        }
    }
    std::fs::create_dir_all(root.join("sub dir")).unwrap();
    a.save(root.join("a.png")).unwrap();
    b.save(root.join("sub dir/b.png")).unwrap();
    vec![("a.png".into(), a), ("sub dir/b.png".into(), b)]
}

fn config(root: &Path) -> ServeConfig {
    let mut c = ServeConfig::new(classes());
    c.local_root = Some(root.to_path_buf());
    c.model_version = "test-v1".into();
    c.model_class = "Threshold".into();
    c
}

const LABEL_CONFIG: &str = "<View><Image name=\"pic\" value=\"$image\"/><BrushLabels name=\"paint\" toName=\"pic\"><Label value=\"red\"/><Label value=\"green\"/></BrushLabels></View>";

fn predict_body(images: &[&str]) -> Vec<u8> {
    let tasks: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, im)| json!({"id": i + 1, "data": {"image": im}}))
        .collect();
    json!({
        "tasks": tasks,
        "project": "1.1700000000",
        "label_config": LABEL_CONFIG,
    })
    .to_string()
    .into_bytes()
}

#[test]
fn health_setup_webhook_and_unknown_routes() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(config(dir.path()), 1, Duration::ZERO);
    let (s, v) = call(&srv, "GET", "/health", None, None);
    assert_eq!(
        (s, v["status"].as_str(), v["model_class"].as_str()),
        (200, Some("UP"), Some("Threshold"))
    );
    let setup = json!({"project": "1.1700000000", "schema": "<View/>", "hostname": "http://localhost:8080", "access_token": "x"});
    let (s, v) = call(
        &srv,
        "POST",
        "/setup",
        Some(setup.to_string().as_bytes()),
        None,
    );
    assert_eq!((s, v), (200, json!({"model_version": "test-v1"})));
    let (s, v) = call(
        &srv,
        "POST",
        "/webhook",
        Some(br#"{"action":"ANNOTATION_CREATED"}"#),
        None,
    );
    assert_eq!(
        (s, v),
        (200, json!({"action": "ANNOTATION_CREATED", "stored": 0})),
        "without --corrections a webhook is acknowledged and nothing is stored"
    );
    let (s, v) = call(&srv, "GET", "/versions", None, None);
    assert_eq!((s, v["versions"].clone()), (200, json!(["test-v1"])));
    let (s, v) = call(&srv, "GET", "/nope", None, None);
    assert_eq!(s, 404);
    assert!(v["error"].is_string());
    let (s, v) = call(&srv, "GET", "/predict", None, None);
    assert_eq!(s, 405);
    assert!(v["error"].is_string());
}

#[test]
fn predict_returns_brushes_that_decode_to_the_mask() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = write_images(dir.path());
    let srv = Server::start(config(dir.path()), 1, Duration::ZERO);
    let urls = [
        "/data/local-files/?d=a.png".to_string(),
        format!("http://{}/data/local-files/?d=sub%20dir/b.png", srv.addr),
    ];
    let (s, v) = call(
        &srv,
        "POST",
        "/predict",
        Some(&predict_body(&[&urls[0], &urls[1]])),
        None,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["model_version"], "test-v1");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "one prediction per task, in order");
    let names = classes().names;
    for ((_, img), pred) in imgs.iter().zip(results) {
        assert_eq!(pred["model_version"], "test-v1");
        let want = expected_labels(img);
        let (w, h) = (img.width() as usize, img.height() as usize);
        let mut painted = vec![0u8; w * h];
        let list = pred["result"].as_array().unwrap();
        let present: std::collections::BTreeSet<u8> =
            want.iter().copied().filter(|&c| c > 0).collect();
        assert_eq!(list.len(), present.len());
        let mut score = 0.0;
        for r in list {
            assert_eq!(r["type"], "brushlabels");
            assert_eq!(
                (r["from_name"].as_str(), r["to_name"].as_str()),
                (Some("paint"), Some("pic"))
            );
            assert_eq!(
                (r["original_width"].as_u64(), r["original_height"].as_u64()),
                (Some(w as u64), Some(h as u64))
            );
            assert_eq!(r["image_rotation"], 0);
            assert_eq!(r["value"]["format"], "rle");
            let label = r["value"]["brushlabels"][0].as_str().unwrap();
            let c = names.iter().position(|n| n == label).unwrap() as u8;
            score += [1.0, 0.9f32 as f64, 0.7f32 as f64][c as usize];
            let rle: Vec<u8> = r["value"]["rle"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u8)
                .collect();
            let alpha = rle2mask(&rle, h, w).unwrap();
            for (p, &a) in painted.iter_mut().zip(&alpha) {
                if a >= 128 {
                    assert_eq!(*p, 0, "brushes overlap");
                    *p = c;
                }
            }
        }
        assert_eq!(
            painted, want,
            "brush RLE decodes back to the predicted mask"
        );
        let mean = score / list.len() as f64;
        assert!((pred["score"].as_f64().unwrap() - mean).abs() < 1e-9);
    }
}

#[test]
fn bad_requests_get_json_errors_and_the_server_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    write_images(&root);
    std::fs::write(dir.path().join("secret.png"), b"not for you").unwrap();
    std::fs::write(root.join("junk.png"), b"not an image").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(dir.path().join("secret.png"), root.join("link.png")).unwrap();
    let mut cfg = config(&root);
    cfg.max_body_bytes = 64 << 10;
    let srv = Server::start(cfg, 1, Duration::ZERO);

    let post = |body: &[u8]| call(&srv, "POST", "/predict", Some(body), None);
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"{\"tasks\": [".to_vec(), 400),
        (b"[1, 2]".to_vec(), 400),
        (br#"{"tasks": "x"}"#.to_vec(), 400),
        (br#"{"tasks": [{"data": {}}]}"#.to_vec(), 400),
        (predict_body(&["/data/local-files/?d=missing.png"]), 404),
        (predict_body(&["/data/local-files/?d=../secret.png"]), 403),
        (
            predict_body(&["/data/local-files/?d=%2E%2E/secret.png"]),
            403,
        ),
        (predict_body(&["/data/local-files/?d=/etc/passwd"]), 403),
        (predict_body(&["/data/local-files/?d=junk.png"]), 422),
        // upload URLs need --upload-root or a Label Studio to fetch from
        (predict_body(&["/data/upload/1/a.png"]), 400),
        (vec![b' '; 100 << 10], 413),
    ];
    for (body, want) in cases {
        let (s, v) = post(&body);
        assert_eq!(
            s,
            want,
            "{}: {v}",
            String::from_utf8_lossy(&body[..body.len().min(80)])
        );
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    }
    #[cfg(unix)]
    {
        let (s, _) = post(&predict_body(&["/data/local-files/?d=link.png"]));
        assert_eq!(s, 403, "a symlink out of the root is refused");
    }
    // a body announced larger than the limit is refused before it is read
    let mut tcp = TcpStream::connect(srv.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        tcp,
        "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        9 << 20
    )
    .unwrap();
    let mut head = [0u8; 64];
    let n = tcp.read(&mut head).unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 413"));
    drop(tcp);
    // a chunked body (no length announced) is cut off at the limit while it is read
    let mut tcp = TcpStream::connect(srv.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let chunk = vec![b' '; 70 << 10];
    write!(
        tcp,
        "POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        chunk.len()
    )
    .unwrap();
    tcp.write_all(&chunk).unwrap();
    tcp.write_all(b"\r\n0\r\n\r\n").unwrap();
    let n = tcp.read(&mut head).unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 413"));
    drop(tcp);
    assert_eq!(
        srv.calls.load(Ordering::SeqCst),
        0,
        "no bad request reached the model"
    );
    let (s, v) = call(&srv, "GET", "/health", None, None);
    assert_eq!((s, v["status"].as_str()), (200, Some("UP")));
}

#[test]
fn oversized_images_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_images(dir.path());
    let mut cfg = config(dir.path());
    cfg.max_pixels = 20 * 20; // b.png (16x16) fits, a.png (37x23) does not
    let srv = Server::start(cfg, 1, Duration::ZERO);
    let (s, v) = call(
        &srv,
        "POST",
        "/predict",
        Some(&predict_body(&["a.png"])),
        None,
    );
    assert_eq!(s, 422, "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("--max-megapixels") && !msg.contains("DecodeOptions"),
        "the limit is named as the user sets it: {msg}"
    );
    let (s, _) = call(
        &srv,
        "POST",
        "/predict",
        Some(&predict_body(&["sub dir/b.png"])),
        None,
    );
    assert_eq!(s, 200);
}

#[test]
fn concurrent_burst_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    write_images(dir.path());
    let srv = Server::start(config(dir.path()), 2, Duration::from_millis(5));
    let body = predict_body(&["a.png"]);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..32)
            .map(|_| s.spawn(|| call(&srv, "POST", "/predict", Some(&body), None).0))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    assert_eq!(srv.calls.load(Ordering::SeqCst), 32);
    let (s, _) = call(&srv, "GET", "/health", None, None);
    assert_eq!(s, 200);
}

#[test]
fn busy_segmenters_time_out_with_503() {
    let dir = tempfile::tempdir().unwrap();
    write_images(dir.path());
    let mut cfg = config(dir.path());
    cfg.queue_timeout = Duration::from_millis(100);
    let srv = Server::start(cfg, 1, Duration::from_millis(1500));
    let body = predict_body(&["a.png"]);
    let mut got: Vec<(u16, Value)> = std::thread::scope(|s| {
        let first = s.spawn(|| call(&srv, "POST", "/predict", Some(&body), None));
        std::thread::sleep(Duration::from_millis(300));
        let second = call(&srv, "POST", "/predict", Some(&body), None);
        vec![first.join().unwrap(), second]
    });
    got.sort_by_key(|g| g.0);
    assert_eq!((got[0].0, got[1].0), (200, 503), "{got:?}");
    assert!(got[1].1["error"].as_str().unwrap().contains("busy"));
    // the pool recovered: the next request is served
    let (s, _) = call(&srv, "POST", "/predict", Some(&body), None);
    assert_eq!(s, 200);
}

#[test]
fn basic_auth_on_and_off() {
    let dir = tempfile::tempdir().unwrap();
    write_images(dir.path());
    let open = Server::start(config(dir.path()), 1, Duration::ZERO);
    assert_eq!(call(&open, "GET", "/health", None, None).0, 200);
    drop(open);

    let mut cfg = config(dir.path());
    cfg.basic_auth = Some("ls:s3cret".into());
    let srv = Server::start(cfg, 1, Duration::ZERO);
    let (s, v) = call(&srv, "GET", "/health", None, None);
    assert_eq!(s, 401);
    assert!(v["error"].is_string());
    let wrong = format!("Basic {}", ssc_tools::serve::auth::base64(b"ls:nope"));
    assert_eq!(call(&srv, "GET", "/health", None, Some(&wrong)).0, 401);
    let right = format!("Basic {}", ssc_tools::serve::auth::base64(b"ls:s3cret"));
    assert_eq!(call(&srv, "GET", "/health", None, Some(&right)).0, 200);
    let (s, _) = call(
        &srv,
        "POST",
        "/predict",
        Some(&predict_body(&["a.png"])),
        Some(&right),
    );
    assert_eq!(s, 200);
    assert_eq!(
        call(
            &srv,
            "POST",
            "/predict",
            Some(&predict_body(&["a.png"])),
            None
        )
        .0,
        401
    );
}

/// A request whose client goes away during inference (Label Studio's ML_TIMEOUT_PREDICT, a
/// closed browser) must not cost a worker: every later request is still served.
#[test]
fn a_dropped_request_keeps_its_worker() {
    let dir = tempfile::tempdir().unwrap();
    write_images(dir.path());
    let srv = Server::start(config(dir.path()), 1, Duration::from_millis(400));
    let body = predict_body(&["a.png"]);
    let mut tcp = TcpStream::connect(srv.addr).unwrap();
    write!(
        tcp,
        "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    tcp.write_all(&body).unwrap();
    // wait until the model runs, then hang up mid-inference
    let t0 = std::time::Instant::now();
    while srv.running.0.load(Ordering::SeqCst) == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "inference never started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(tcp);
    std::thread::sleep(Duration::from_millis(100));
    let statuses: Vec<(u16, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| s.spawn(|| call(&srv, "POST", "/predict", Some(&body), None)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (st, v) in &statuses {
        assert_eq!(*st, 200, "after a dropped request: {v}");
    }
    let (s, v) = call(&srv, "GET", "/health", None, None);
    assert_eq!((s, v["workers_alive"].as_u64()), (200, Some(1)), "{v}");
}

/// A batch with a bad task answers every other task (aligned, the bad one without `result`),
/// and its tasks run on all workers.
#[test]
fn one_bad_task_does_not_fail_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = write_images(dir.path());
    let srv = Server::start(config(dir.path()), 2, Duration::from_millis(150));
    let names = [
        "a.png",
        "sub dir/b.png",
        "missing.png",
        "a.png",
        "sub dir/b.png",
    ];
    let (s, v) = call(&srv, "POST", "/predict", Some(&predict_body(&names)), None);
    assert_eq!(s, 200, "{v}");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), names.len(), "one entry per task: {v}");
    for (i, (name, r)) in names.iter().zip(results).enumerate() {
        if *name == "missing.png" {
            assert!(r.get("result").is_none(), "{r}");
            assert_eq!(
                (r["status"].as_u64(), r["task"].as_u64()),
                (Some(404), Some(3))
            );
            assert!(r["error"].as_str().unwrap().contains("missing.png"), "{r}");
        } else {
            let img = &imgs.iter().find(|(n, _)| n == name).unwrap().1;
            let list = r["result"]
                .as_array()
                .unwrap_or_else(|| panic!("task {i}: {r}"));
            assert!(!list.is_empty());
            assert_eq!(list[0]["original_width"].as_u64(), Some(img.width() as u64));
        }
    }
    assert_eq!(srv.calls.load(Ordering::SeqCst), 4);
    assert_eq!(
        srv.running.1.load(Ordering::SeqCst),
        2,
        "a batch's tasks run on both workers at once"
    );
    // a batch where every task fails is an error with the first task's status
    let (s, v) = call(
        &srv,
        "POST",
        "/predict",
        Some(&predict_body(&["missing.png", "also-missing.png"])),
        None,
    );
    assert_eq!(s, 404, "{v}");
}

/// Requests a fake host received: path and `Authorization` header.
type Requests = Arc<std::sync::Mutex<Vec<(String, Option<String>)>>>;

/// Fake HTTP host that records every request's path and `Authorization` header; answers PNG
/// images and, when `legacy` is off, only `Bearer` access tokens obtained from
/// `/api/token/refresh/` (Label Studio 1.23 with legacy tokens disabled).
#[derive(Clone, Default)]
struct Seen(Requests);

fn png_bytes() -> Vec<u8> {
    let img = RgbImage::from_fn(8, 6, |x, _| {
        if x < 4 {
            Rgb([255, 0, 0])
        } else {
            Rgb([0, 0, 0])
        }
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn fake_host(
    seen: Seen,
    legacy_key: Option<&'static str>,
    refresh_key: Option<&'static str>,
) -> Server {
    use axum::http::{HeaderMap, StatusCode, Uri};
    use axum::response::IntoResponse;
    let record = move |seen: &Seen, uri: &Uri, h: &HeaderMap| {
        let auth = h
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string());
        seen.0
            .lock()
            .unwrap()
            .push((uri.path().to_string(), auth.clone()));
        auth
    };
    let s1 = seen.clone();
    let s2 = seen.clone();
    let app = axum::Router::new()
        .route(
            "/api/token/refresh/",
            axum::routing::post(move |uri: Uri, h: HeaderMap, body: String| {
                let seen = s1.clone();
                async move {
                    record(&seen, &uri, &h);
                    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    match refresh_key {
                        Some(k) if v["refresh"] == k => (
                            StatusCode::OK,
                            json!({"access": "fresh-access"}).to_string(),
                        ),
                        _ => (StatusCode::UNAUTHORIZED, "{}".to_string()),
                    }
                }
            }),
        )
        .fallback(move |uri: Uri, h: HeaderMap| {
            let seen = s2.clone();
            async move {
                let auth = record(&seen, &uri, &h);
                let ok = match (legacy_key, refresh_key, auth.as_deref()) {
                    (None, None, _) => true,
                    (Some(k), _, Some(a)) if a == format!("Token {k}") => true,
                    (_, Some(_), Some("Bearer fresh-access")) => true,
                    _ => false,
                };
                if ok {
                    (StatusCode::OK, png_bytes()).into_response()
                } else {
                    (StatusCode::UNAUTHORIZED, "no").into_response()
                }
            }
        });
    Server::serve_router(app)
}

/// The API key goes to Label Studio's origin only; a foreign host in a task gets nothing and
/// is refused, unless allow-listed (then fetched without credentials).
#[test]
fn credentials_go_to_label_studio_only() {
    let dir = tempfile::tempdir().unwrap();
    write_images(dir.path());
    let ls_seen = Seen::default();
    let ls = fake_host(ls_seen.clone(), Some("s3cret"), None);
    let foreign_seen = Seen::default();
    let foreign = fake_host(foreign_seen.clone(), None, None);
    let mut cfg = config(dir.path());
    cfg.remote = Some(ssc_tools::serve::RemoteLabelStudio {
        url: ls.url(""),
        api_key: "s3cret".into(),
    });
    let srv = Server::start(cfg.clone(), 1, Duration::ZERO);
    let (s, v) = call(
        &srv,
        "POST",
        "/predict",
        Some(&predict_body(&[
            &ls.url("/data/upload/1/x.png"),
            "/data/upload/1/y.png",
        ])),
        None,
    );
    assert_eq!(s, 200, "{v}");
    assert!(
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["result"].is_array())
    );
    let got = ls_seen.0.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    assert!(
        got.iter()
            .all(|(_, a)| a.as_deref() == Some("Token s3cret")),
        "{got:?}"
    );

    let (s, v) = call(
        &srv,
        "POST",
        "/predict",
        Some(&predict_body(&[&foreign.url("/steal.png")])),
        None,
    );
    assert_eq!(s, 403, "{v}");
    assert!(v["error"].as_str().unwrap().contains("--allow-host"), "{v}");
    assert!(
        foreign_seen.0.lock().unwrap().is_empty(),
        "the foreign host was not contacted"
    );
    drop(srv);

    cfg.allow_hosts = vec![foreign.addr.to_string()];
    let srv = Server::start(cfg, 1, Duration::ZERO);
    let (s, v) = call(
        &srv,
        "POST",
        "/predict",
        Some(&predict_body(&[&foreign.url("/ok.png")])),
        None,
    );
    assert_eq!(s, 200, "{v}");
    let got = foreign_seen.0.lock().unwrap().clone();
    assert_eq!(
        got,
        vec![("/ok.png".to_string(), None)],
        "fetched without credentials"
    );
}

/// A personal access token (Label Studio 1.23's default; legacy tokens disabled) is exchanged
/// for a Bearer access token; a key that fits neither kind gets an error naming both.
#[test]
fn personal_access_tokens_and_legacy_tokens() {
    let dir = tempfile::tempdir().unwrap();
    write_images(dir.path());
    let pat = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2ln";
    let seen = Seen::default();
    let ls = fake_host(seen.clone(), None, Some(pat));
    let mut cfg = config(dir.path());
    cfg.remote = Some(ssc_tools::serve::RemoteLabelStudio {
        url: ls.url("/"),
        api_key: pat.into(),
    });
    let srv = Server::start(cfg.clone(), 1, Duration::ZERO);
    for _ in 0..2 {
        let (s, v) = call(
            &srv,
            "POST",
            "/predict",
            Some(&predict_body(&["/data/upload/2/p.png"])),
            None,
        );
        assert_eq!(s, 200, "{v}");
    }
    let got = seen.0.lock().unwrap().clone();
    let refreshes = got
        .iter()
        .filter(|(p, _)| p == "/api/token/refresh/")
        .count();
    assert_eq!(refreshes, 1, "the access token is reused: {got:?}");
    assert!(
        got.iter()
            .filter(|(p, _)| p.starts_with("/data/"))
            .all(|(_, a)| a.as_deref() == Some("Bearer fresh-access"))
    );
    drop(srv);

    // a legacy-looking key that this Label Studio refuses both ways
    cfg.remote.as_mut().unwrap().api_key = "0123456789abcdef0123456789abcdef01234567".into();
    let srv = Server::start(cfg, 1, Duration::ZERO);
    let (s, v) = call(
        &srv,
        "POST",
        "/predict",
        Some(&predict_body(&["/data/upload/2/p.png"])),
        None,
    );
    assert_eq!(s, 502, "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("legacy token")
            && msg.contains("personal access token")
            && msg.contains("401"),
        "{msg}"
    );
}

/// The image's data key and the control names come from the labeling config: the request's,
/// else the one `/setup` delivered for the project.
#[test]
fn data_key_from_the_labeling_config() {
    let dir = tempfile::tempdir().unwrap();
    write_images(dir.path());
    let srv = Server::start(config(dir.path()), 1, Duration::ZERO);
    let schema = "<View><Image name=\"im\" value=\"$photo\"/><BrushLabels name=\"br\" toName=\"im\"><Label value=\"red\"/><Label value=\"green\"/></BrushLabels></View>";
    let tasks = json!([{"id": 1, "data": {"photo": "a.png"}}]);
    let (s, v) = call(
        &srv,
        "POST",
        "/predict",
        Some(
            json!({"tasks": tasks, "label_config": schema})
                .to_string()
                .as_bytes(),
        ),
        None,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["results"][0]["result"][0]["from_name"], "br");
    // no label_config in the request: the project's from /setup
    let (s, _) = call(
        &srv,
        "POST",
        "/setup",
        Some(
            json!({"project": "7.1700000000", "schema": schema})
                .to_string()
                .as_bytes(),
        ),
        None,
    );
    assert_eq!(s, 200);
    let (s, v) = call(
        &srv,
        "POST",
        "/predict",
        Some(
            json!({"tasks": tasks, "project": "7.1700000000"})
                .to_string()
                .as_bytes(),
        ),
        None,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["results"][0]["result"][0]["to_name"], "im");
    // a task without that key is refused with a message naming it
    let (s, v) = call(
        &srv,
        "POST",
        "/predict",
        Some(
            json!({"tasks": [{"id": 2, "data": {"image": "a.png"}}], "label_config": schema})
                .to_string()
                .as_bytes(),
        ),
        None,
    );
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("data.photo"), "{v}");
}

/// Decoded pixels over all requests stay within the budget, however many tasks arrive.
#[test]
fn decoded_pixels_stay_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    write_images(dir.path());
    let mut cfg = config(dir.path());
    cfg.max_pixels = 900; // a.png is 37x23 = 851 pixels
    cfg.max_pixels_in_flight = 1800; // two of them
    let srv = Server::start(cfg, 4, Duration::from_millis(60));
    let body = predict_body(&["a.png"; 6]);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| s.spawn(|| call(&srv, "POST", "/predict", Some(&body), None).0))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    assert_eq!(srv.calls.load(Ordering::SeqCst), 18);
    let (_, m) = call(&srv, "GET", "/metrics", None, None);
    let peak = m["decoded_pixels_peak"].as_u64().unwrap();
    assert!(
        (851..=1800).contains(&peak),
        "peak {peak} within the budget: {m}"
    );
    assert!(
        srv.running.1.load(Ordering::SeqCst) <= 2,
        "no more images segmented at once than the budget holds"
    );
    assert_eq!(m["decoded_pixels_in_flight"].as_u64(), Some(0));
}

/// A brush result as Label Studio sends it: `mask` (0/255 per pixel) encoded by `mask2rle`.
fn brush_result(label: &str, mask: &[u8], w: usize, h: usize) -> Value {
    let rle = ssc_core::formats::brush::mask2rle(mask, h, w).unwrap();
    json!({
        "id": format!("r-{label}"),
        "type": "brushlabels",
        "from_name": "paint",
        "to_name": "pic",
        "original_width": w,
        "original_height": h,
        "image_rotation": 0,
        "value": {"format": "rle", "rle": rle, "brushlabels": [label]},
    })
}

fn annotation_webhook(task: u64, annotation: u64, results: Vec<Value>) -> Vec<u8> {
    json!({
        "action": "ANNOTATION_CREATED",
        "task": {"id": task, "data": {"image": "/data/upload/1/a.png"}, "project": 1},
        "annotation": {
            "id": annotation,
            "task": task,
            "result": results,
            "was_cancelled": false,
            "updated_at": "2026-12-03T12:00:00Z",
        },
        "project": {"id": 1, "label_config": LABEL_CONFIG},
    })
    .to_string()
    .into_bytes()
}

/// Webhook annotations become label PNGs (classes by name, later brushes over earlier ones),
/// malformed ones write nothing, deletions remove them, and the train call stores the latest
/// annotation of each task.
#[test]
fn corrections_are_stored_validated_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("corrections");
    let mut cfg = config(dir.path());
    cfg.corrections = Some(store.clone());
    let srv = Server::start(cfg, 1, Duration::ZERO);
    let (w, h) = (9usize, 5usize);
    // green on the left 4 columns, red on rows 0-1 (painted after green: wins where both)
    let green: Vec<u8> = (0..w * h)
        .map(|i| if i % w < 4 { 255 } else { 0 })
        .collect();
    let red: Vec<u8> = (0..w * h)
        .map(|i| if i / w < 2 { 255 } else { 0 })
        .collect();
    let body = annotation_webhook(
        7,
        70,
        vec![
            brush_result("green", &green, w, h),
            brush_result("red", &red, w, h),
        ],
    );
    let (s, v) = call(&srv, "POST", "/webhook", Some(&body), None);
    assert_eq!((s, v["stored"].as_u64()), (200, Some(1)), "{v}");
    let map = ssc_core::mask::read_mask(&store.join("task-7.png"), &classes()).unwrap();
    assert_eq!((map.width, map.height), (w, h));
    let want: Vec<u8> = (0..w * h)
        .map(|i| match (i / w < 2, i % w < 4) {
            (true, _) => 1,
            (false, true) => 2,
            _ => 0,
        })
        .collect();
    assert_eq!(map.data, want);
    let rec: Value =
        serde_json::from_str(&std::fs::read_to_string(store.join("task-7.json")).unwrap()).unwrap();
    assert_eq!(rec["task"], 7);
    assert_eq!(rec["annotation"], 70);
    assert_eq!(rec["image"], "/data/upload/1/a.png");
    assert_eq!(rec["model_version"], "test-v1");
    assert_eq!(rec["classes"], json!(["red", "green"]));

    // malformed payloads: 4xx, nothing written or changed
    let before = std::fs::read(store.join("task-7.png")).unwrap();
    let unknown = annotation_webhook(8, 80, vec![brush_result("sofa", &red, w, h)]);
    let (s, v) = call(&srv, "POST", "/webhook", Some(&unknown), None);
    assert_eq!(s, 422, "{v}");
    assert!(v["error"].as_str().unwrap().contains("sofa"), "{v}");
    let mut broken = brush_result("red", &red, w, h);
    broken["value"]["rle"] = json!([1, 2, 3]);
    let (s, v) = call(
        &srv,
        "POST",
        "/webhook",
        Some(&annotation_webhook(
            7,
            71,
            vec![brush_result("green", &green, w, h), broken],
        )),
        None,
    );
    assert_eq!(s, 422, "{v}");
    let (s, _) = call(
        &srv,
        "POST",
        "/webhook",
        Some(&annotation_webhook(9, 90, vec![])),
        None,
    );
    assert_eq!(s, 422, "an annotation without brushes has no size");
    assert!(!store.join("task-8.png").exists() && !store.join("task-9.json").exists());
    assert_eq!(std::fs::read(store.join("task-7.png")).unwrap(), before);

    // the train call: the latest non-cancelled annotation of each task
    let all_red = vec![255u8; w * h];
    let train = json!({
        "annotations": [{
            "id": 7,
            "data": {"image": "/data/upload/1/a.png"},
            "annotations": [
                {"id": 72, "updated_at": "2026-12-03T13:00:00Z", "was_cancelled": false,
                 "result": [brush_result("red", &all_red, w, h)]},
                {"id": 71, "updated_at": "2026-12-03T12:30:00Z", "was_cancelled": false,
                 "result": [brush_result("green", &all_red, w, h)]},
                {"id": 73, "updated_at": "2026-12-03T14:00:00Z", "was_cancelled": true,
                 "result": []},
            ],
        }],
        "project": 1,
    })
    .to_string();
    let (s, v) = call(&srv, "POST", "/train", Some(train.as_bytes()), None);
    assert_eq!((s, v["stored"].as_u64()), (201, Some(1)), "{v}");
    let map = ssc_core::mask::read_mask(&store.join("task-7.png"), &classes()).unwrap();
    assert!(map.data.iter().all(|&c| c == 1));
    let rec: Value =
        serde_json::from_str(&std::fs::read_to_string(store.join("task-7.json")).unwrap()).unwrap();
    assert_eq!(rec["annotation"], 72);

    // deleting another annotation keeps it; deleting this one removes both files
    let del = |id: u64| json!({"action": "ANNOTATIONS_DELETED", "annotations": [{"id": id}]});
    let (s, v) = call(
        &srv,
        "POST",
        "/webhook",
        Some(del(70).to_string().as_bytes()),
        None,
    );
    assert_eq!((s, v["removed"].as_u64()), (200, Some(0)), "{v}");
    let (s, v) = call(
        &srv,
        "POST",
        "/webhook",
        Some(del(72).to_string().as_bytes()),
        None,
    );
    assert_eq!((s, v["removed"].as_u64()), (200, Some(1)), "{v}");
    assert!(!store.join("task-7.png").exists() && !store.join("task-7.json").exists());
    assert!(
        std::fs::read_dir(&store).unwrap().next().is_none(),
        "no temp files left behind"
    );
}

/// A retraining job that takes `delay`, records (round, corrections in the folder) and
/// returns a threshold model versioned `test-v1-r<round>`, or fails.
struct FakeRetrainer {
    delay: Duration,
    fail: bool,
    seen: Arc<std::sync::Mutex<Vec<(usize, usize)>>>,
}

impl Retrainer for FakeRetrainer {
    fn retrain(&self, dir: &Path, round: usize) -> Result<Retrained, String> {
        std::thread::sleep(self.delay);
        let n = ssc_core::formats::corrections::list(dir)
            .map_err(|e| e.to_string())?
            .len();
        self.seen.lock().unwrap().push((round, n));
        if self.fail {
            return Err(format!(
                "training diverged in round {round} (log: round.log)"
            ));
        }
        Ok(Retrained {
            segmenters: vec![Box::new(Threshold {
                delay: Duration::from_millis(5),
                calls: Arc::new(AtomicUsize::new(0)),
                running: Arc::new((AtomicUsize::new(0), AtomicUsize::new(0))),
            })],
            model_version: format!("test-v1-r{round}"),
        })
    }
}

fn wait_health(srv: &Server, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let t0 = std::time::Instant::now();
    loop {
        let (_, h) = call(srv, "GET", "/health", None, None);
        if ok(&h) {
            return h;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "{what}: {h}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn red_correction(task: u64, annotation: u64) -> Vec<u8> {
    let (w, h) = (6usize, 4usize);
    let mask: Vec<u8> = (0..w * h)
        .map(|i| if i % 2 == 0 { 255 } else { 0 })
        .collect();
    annotation_webhook(task, annotation, vec![brush_result("red", &mask, w, h)])
}

/// After `after` corrections one retraining job runs in the background; predictions keep
/// being answered throughout (none dropped, versions only move forward) and the retrained
/// model replaces the served one with a new `model_version`. The train call forces a round.
#[test]
fn corrections_retrain_and_swap_the_model() {
    let dir = tempfile::tempdir().unwrap();
    write_images(dir.path());
    let mut cfg = config(dir.path());
    cfg.corrections = Some(dir.path().join("corrections"));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let policy = RetrainPolicy {
        after: Some(2),
        retrainer: Arc::new(FakeRetrainer {
            delay: Duration::from_millis(400),
            fail: false,
            seen: seen.clone(),
        }),
    };
    let srv = Server::start_with(cfg, 2, Duration::from_millis(5), Some(policy));
    let (s, v) = call(&srv, "POST", "/webhook", Some(&red_correction(1, 10)), None);
    assert_eq!((s, &v["retraining"]), (200, &json!(false)), "{v}");
    let h = wait_health(&srv, "one pending", |h| {
        h["retrain"]["pending_corrections"] == 1
    });
    assert_eq!(h["retrain"]["state"], "idle");
    let (s, v) = call(&srv, "POST", "/webhook", Some(&red_correction(2, 20)), None);
    assert_eq!((s, &v["retraining"]), (200, &json!(true)), "{v}");

    // predictions all the while
    let versions: Vec<String> = std::thread::scope(|sc| {
        let poller = sc.spawn(|| {
            let mut out = Vec::new();
            let body = predict_body(&["a.png", "sub dir/b.png"]);
            loop {
                let (s, v) = call(&srv, "POST", "/predict", Some(&body), None);
                assert_eq!(s, 200, "{v}");
                out.push(v["model_version"].as_str().unwrap().to_string());
                for r in v["results"].as_array().unwrap() {
                    assert_eq!(r["model_version"], v["model_version"]);
                    assert!(r["result"].is_array(), "{r}");
                }
                if out.last().unwrap() == "test-v1-r1" {
                    return out;
                }
            }
        });
        poller.join().unwrap()
    });
    assert_eq!(versions.first().map(String::as_str), Some("test-v1"));
    let first_new = versions.iter().position(|v| v == "test-v1-r1").unwrap();
    assert!(versions[first_new..].iter().all(|v| v == "test-v1-r1"));
    let h = wait_health(&srv, "round 1 done", |h| h["retrain"]["state"] == "idle");
    assert_eq!(h["model_version"], "test-v1-r1");
    assert_eq!(h["retrain"]["rounds_succeeded"], 1);
    let (_, v) = call(&srv, "GET", "/versions", None, None);
    assert_eq!(v["versions"], json!(["test-v1-r1"]));
    assert_eq!(*seen.lock().unwrap(), vec![(1, 2)]);

    // the train call stores and retrains at once
    let train = json!({
        "annotations": [{"id": 3, "data": {"image": "a.png"}, "annotations": [{
            "id": 30, "updated_at": "2026-12-03T13:00:00Z", "was_cancelled": false,
            "result": [brush_result("green", &[255u8; 24], 6, 4)]}]}],
        "project": 1,
    })
    .to_string();
    let (s, v) = call(&srv, "POST", "/train", Some(train.as_bytes()), None);
    assert_eq!((s, &v["retraining"]), (201, &json!(true)), "{v}");
    wait_health(&srv, "round 2", |h| h["model_version"] == "test-v1-r2");
    assert_eq!(*seen.lock().unwrap(), vec![(1, 2), (2, 3)]);
}

/// A retraining job that fails keeps the served model and says why in `/health`.
#[test]
fn a_failed_retrain_keeps_the_model() {
    let dir = tempfile::tempdir().unwrap();
    write_images(dir.path());
    let mut cfg = config(dir.path());
    cfg.corrections = Some(dir.path().join("corrections"));
    let policy = RetrainPolicy {
        after: Some(1),
        retrainer: Arc::new(FakeRetrainer {
            delay: Duration::from_millis(50),
            fail: true,
            seen: Arc::new(std::sync::Mutex::new(Vec::new())),
        }),
    };
    let srv = Server::start_with(cfg, 1, Duration::ZERO, Some(policy));
    let (s, v) = call(&srv, "POST", "/webhook", Some(&red_correction(1, 10)), None);
    assert_eq!((s, &v["retraining"]), (200, &json!(true)), "{v}");
    let h = wait_health(&srv, "failure reported", |h| {
        h["retrain"]["state"] == "failed"
    });
    assert!(
        h["retrain"]["last_error"]
            .as_str()
            .unwrap()
            .contains("diverged in round 1"),
        "{h}"
    );
    assert_eq!(h["status"], "UP");
    assert_eq!(h["model_version"], "test-v1");
    let (s, v) = call(
        &srv,
        "POST",
        "/predict",
        Some(&predict_body(&["a.png"])),
        None,
    );
    assert_eq!(
        (s, v["model_version"].as_str()),
        (200, Some("test-v1")),
        "{v}"
    );
}
