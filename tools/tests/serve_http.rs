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
use ssc_tools::serve::{SegmentError, Segmentation, Segmenter, ServeConfig, router, serve};

/// Class 1 where red is high, class 2 where green is high, else background; scores fixed.
struct Threshold {
    delay: Duration,
    calls: Arc<AtomicUsize>,
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
        std::thread::sleep(self.delay);
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
}

impl Server {
    fn start(cfg: ServeConfig, workers: usize, delay: Duration) -> Server {
        let calls = Arc::new(AtomicUsize::new(0));
        let segs: Vec<Box<dyn Segmenter>> = (0..workers)
            .map(|_| {
                Box::new(Threshold {
                    delay,
                    calls: calls.clone(),
                }) as Box<dyn Segmenter>
            })
            .collect();
        let app = router(cfg, segs).unwrap();
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
            calls,
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

fn predict_body(images: &[&str]) -> Vec<u8> {
    let tasks: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, im)| json!({"id": i + 1, "data": {"image": im}}))
        .collect();
    json!({
        "tasks": tasks,
        "project": "1.1700000000",
        "label_config": "<View><Image name=\"pic\" value=\"$image\"/><BrushLabels name=\"paint\" toName=\"pic\"><Label value=\"red\"/><Label value=\"green\"/></BrushLabels></View>",
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
    assert_eq!((s, v), (200, json!({})));
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
