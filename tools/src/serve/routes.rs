//! HTTP routes of `ssc-serve`, the Label Studio ML backend protocol (label-studio-ml ≥ 2,
//! as Label Studio ≥ 1.10 calls it): `GET /health` (and `/`), `GET /versions`,
//! `POST /setup`, `POST /predict`, `POST /webhook`, `POST /train`, `GET /metrics`; everything
//! else is a JSON 404/405.
//!
//! `/predict` answers `{"results": [one entry per task, in task order], "model_version"}`.
//! A task that worked gets `{model_version, score, result: [brushlabels …]}` (see
//! [`super::predictor::prediction`]); a task that failed gets `{error, status, task}` and no
//! `result`, which Label Studio skips while keeping the other entries aligned with their
//! tasks. Only when every task fails is the answer itself an error (the first task's status).
//! A batch's tasks run on all workers at once (at most workers + 1 tasks of one request are
//! loaded at a time), and decoded pixels over all requests are bounded by
//! [`ServeConfig::max_pixels_in_flight`]: an image waits for room before it is decoded.
//!
//! The image's task data key and the result's `from_name` / `to_name` come from the labeling
//! config: the request's `label_config`, else the one `/setup` delivered for the project,
//! else the command-line defaults.

use std::collections::HashMap;
use std::future::Future;
use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use image::RgbImage;
use serde_json::{Value, json};
use ssc_core::imageio::{DecodeOptions, read_rgb_bytes_with};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::config::ServeConfig;
use super::corrections::Corrections;
use super::error::{ApiError, json_response};
use super::images::Fetcher;
use super::predictor::{BrushControl, Pool, Segmenter, brush_control, prediction};
use super::retrain::{RetrainPolicy, RetrainState};
use super::{auth, images};

/// Pixels per permit of the decoded-pixel budget (tokio takes at most `u32` permits at once).
const PIXEL_UNIT: u64 = 1024;

/// The model being served and its version; swapped whole after a retrain, while requests
/// that started before finish on the one they took.
struct Served {
    pool: Pool,
    version: String,
}

struct App {
    cfg: ServeConfig,
    served: std::sync::RwLock<Arc<Served>>,
    retrain: Option<RetrainPolicy>,
    retrain_state: Mutex<RetrainState>,
    fetcher: Fetcher,
    /// Budget of decoded pixels, in [`PIXEL_UNIT`]s.
    pixels: Arc<Semaphore>,
    pixels_in_flight: AtomicU64,
    pixels_peak: AtomicU64,
    /// Labeling configs delivered by `/setup`, by project (`"<id>.<time>"` as Label Studio
    /// names it), and the last one.
    controls: Mutex<(HashMap<String, BrushControl>, Option<BrushControl>)>,
    corrections: Option<Corrections>,
}

type Shared = State<Arc<App>>;

impl App {
    /// The model to use for one request.
    fn served(&self) -> Arc<Served> {
        self.served
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn retrain_state(&self) -> std::sync::MutexGuard<'_, RetrainState> {
        self.retrain_state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Starts a retraining job on a background thread when one is due (see
/// [`RetrainState::take_job`]); returns whether it did.
fn maybe_retrain(app: &Arc<App>, force: bool) -> bool {
    let (Some(policy), Some(store)) = (&app.retrain, &app.corrections) else {
        return false;
    };
    let Some(round) = app.retrain_state().take_job(policy.after, force) else {
        return false;
    };
    let (bg, dir, job) = (
        app.clone(),
        store.dir().to_path_buf(),
        policy.retrainer.clone(),
    );
    let spawned = std::thread::Builder::new()
        .name("ssc-retrain".into())
        .spawn(move || {
            let app = bg;
            let old = app.served().version.clone();
            tracing::info!(
                "retraining round {round} on the corrections in {} (serving {old} meanwhile)",
                dir.display()
            );
            let t0 = std::time::Instant::now();
            let out =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.retrain(&dir, round)))
                    .unwrap_or_else(|_| Err("the retraining job panicked".into()))
                    .and_then(|r| {
                        if r.model_version == old {
                            return Err(format!("the retrained model kept the version {old}"));
                        }
                        let pool = Pool::new(r.segmenters, app.cfg.queue_timeout)
                            .map_err(|e| e.message.clone())?;
                        Ok(Served {
                            pool,
                            version: r.model_version,
                        })
                    });
            let seconds = t0.elapsed().as_secs_f64();
            let mut st = app.retrain_state();
            st.running = false;
            st.last_seconds = Some(seconds);
            match out {
                Ok(served) => {
                    tracing::info!(
                        "retraining round {round} done in {seconds:.1} s: now serving {} \
                         (was {old})",
                        served.version
                    );
                    *app.served.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(served);
                    st.succeeded += 1;
                    st.last_error = None;
                }
                Err(e) => {
                    tracing::error!(
                        "retraining round {round} failed after {seconds:.1} s; still serving \
                         {old}: {e}"
                    );
                    st.failed += 1;
                    st.last_error = Some(e);
                }
            }
            drop(st);
            // corrections that arrived during the job may make the next one due
            maybe_retrain(&app, false);
        });
    if let Err(e) = spawned {
        let mut st = app.retrain_state();
        st.running = false;
        st.last_error = Some(format!("cannot start the retraining thread: {e}"));
        return false;
    }
    true
}

/// The backend's router over `segmenters` (one per concurrent inference).
pub fn router(cfg: ServeConfig, segmenters: Vec<Box<dyn Segmenter>>) -> Result<Router, ApiError> {
    router_with(cfg, segmenters, None)
}

/// [`router`] that also retrains on the corrections (needs [`ServeConfig::corrections`]).
pub fn router_with(
    cfg: ServeConfig,
    segmenters: Vec<Box<dyn Segmenter>>,
    retrain: Option<RetrainPolicy>,
) -> Result<Router, ApiError> {
    let pool = Pool::new(segmenters, cfg.queue_timeout)?;
    if retrain.is_some() && cfg.corrections.is_none() {
        return Err(ApiError::internal(
            "retraining needs a corrections folder (--corrections)",
        ));
    }

    let limit = cfg.max_body_bytes;
    let credentials = cfg.basic_auth.clone();
    let budget = budget_units(&cfg) as usize;
    let corrections = match &cfg.corrections {
        Some(dir) => Some(Corrections::open(dir, cfg.classes.clone())?),
        None => None,
    };
    let app = Arc::new(App {
        fetcher: Fetcher::new(&cfg),
        pixels: Arc::new(Semaphore::new(budget)),
        pixels_in_flight: AtomicU64::new(0),
        pixels_peak: AtomicU64::new(0),
        controls: Mutex::new((HashMap::new(), None)),
        corrections,
        served: std::sync::RwLock::new(Arc::new(Served {
            pool,
            version: cfg.model_version.clone(),
        })),
        retrain,
        retrain_state: Mutex::new(RetrainState::default()),
        cfg,
    });
    let mut r = Router::new()
        .route("/", get(health))
        .route("/health", get(health))
        .route("/versions", get(versions))
        .route("/metrics", get(metrics))
        .route("/setup", post(setup))
        .route("/predict", post(predict))
        .route("/webhook", post(webhook))
        .route("/train", post(train))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(limit, announced_size))
        .with_state(app);
    if let Some(c) = credentials {
        let expected = auth::expected_header(&c);
        r = r.layer(axum::middleware::from_fn_with_state(
            expected,
            auth::require,
        ));
    }
    Ok(r)
}

/// Serves `app` on `listener` until `shutdown` completes, then finishes the requests in
/// flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Refuses a body whose `Content-Length` already exceeds `limit`, before reading any of it
/// (the body limit alone only trips once that much data has arrived).
async fn announced_size(State(limit): State<usize>, req: Request, next: Next) -> Response {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match announced {
        Some(n) if n > limit as u64 => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body of {n} bytes exceeds the limit of {limit} bytes"),
        )
        .into_response(),
        _ => next.run(req).await,
    }
}

fn ok(body: Value) -> Response {
    json_response(StatusCode::OK, &body)
}

async fn health(State(app): Shared) -> Response {
    let served = app.served();
    let alive = served.pool.alive();
    let status = if alive > 0 {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = json!({
        "status": if alive > 0 { "UP" } else { "DOWN" },
        "model_class": app.cfg.model_class,
        "model_version": served.version,
        "workers": served.pool.workers(),
        "workers_alive": alive,
        "classes": app.cfg.classes.names,
    });
    if let Some(p) = &app.retrain {
        body["retrain"] = app.retrain_state().to_json(p.after);
    }
    json_response(status, &body)
}

/// The model versions this backend can serve (Label Studio ≥ 1.10 asks; without the route
/// it shows "Upgrade your ML backend").
async fn versions(State(app): Shared) -> Response {
    let v = app.served().version.clone();
    ok(json!({ "versions": [v], "model_version": v }))
}

async fn metrics(State(app): Shared) -> Response {
    ok(json!({
        "decoded_pixels_in_flight": app.pixels_in_flight.load(Ordering::SeqCst),
        "decoded_pixels_peak": app.pixels_peak.load(Ordering::SeqCst),
        "decoded_pixels_budget": app.cfg.max_pixels_in_flight.max(app.cfg.max_pixels),
        "workers": app.served().pool.workers(),
        "workers_alive": app.served().pool.alive(),
    }))
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}

/// The request body as a JSON object: 413 past the limit, 400 for anything not an object.
fn json_body(
    body: Result<Bytes, BytesRejection>,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let body = body.map_err(|r| ApiError::new(r.status(), r.body_text()))?;
    match serde_json::from_slice(&body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request("expected a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("malformed JSON: {e}"))),
    }
}

/// Label Studio's project key (`"<id>.<time>"`, or an id).
fn project_key(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Object(o) => o.get("id").and_then(|id| project_key(Some(id))),
        _ => None,
    }
}

impl App {
    /// The brush control for a request: its own labeling config, else the project's from
    /// `/setup`, else the last `/setup`'s, else the command-line names.
    fn control(&self, label_config: Option<&str>, project: Option<&Value>) -> BrushControl {
        if let Some(c) = label_config.and_then(brush_control) {
            return c;
        }
        let known = self.controls.lock().unwrap_or_else(|p| p.into_inner());
        project_key(project)
            .and_then(|k| {
                known.0.get(&k).cloned().or_else(|| {
                    // a bare id matches "<id>.<time>"
                    let id = k.split('.').next().unwrap_or(&k).to_string();
                    known
                        .0
                        .iter()
                        .find(|(key, _)| key.split('.').next() == Some(id.as_str()))
                        .map(|(_, c)| c.clone())
                })
            })
            .or_else(|| known.1.clone())
            .unwrap_or_else(|| BrushControl {
                from_name: self.cfg.from_name.clone(),
                to_name: self.cfg.to_name.clone(),
                labels: Vec::new(),
                data_key: "image".into(),
            })
    }
}

async fn setup(
    State(app): Shared,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = json_body(body)?;
    if let Some(schema) = body.get("schema").and_then(Value::as_str) {
        match brush_control(schema) {
            Some(c) => {
                tracing::info!(
                    "setup: project {} uses <Image value=\"${}\"> and BrushLabels {} → {}",
                    project_key(body.get("project")).unwrap_or_else(|| "?".into()),
                    c.data_key,
                    c.from_name,
                    c.to_name
                );
                let mut known = app.controls.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(k) = project_key(body.get("project")) {
                    known.0.insert(k, c.clone());
                }
                known.1 = Some(c);
            }
            None => tracing::warn!(
                "project config has no BrushLabels control; predictions use the defaults"
            ),
        }
    }
    Ok(ok(json!({ "model_version": app.served().version })))
}

/// `ANNOTATION_CREATED` / `ANNOTATION_UPDATED` / `ANNOTATIONS_CREATED` store corrections,
/// `ANNOTATIONS_DELETED` removes them (with `--corrections`); other actions are acknowledged.
async fn webhook(
    State(app): Shared,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = json_body(body)?;
    let action = body
        .get("action")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("webhook without an \"action\" string"))?
        .to_string();
    let Some(store) = &app.corrections else {
        tracing::debug!("webhook {action} ignored (no --corrections folder)");
        return Ok(ok(json!({ "action": action, "stored": 0 })));
    };
    match action.as_str() {
        "ANNOTATION_CREATED" | "ANNOTATION_UPDATED" | "ANNOTATIONS_CREATED" => {
            let project = body.get("project");
            let label_config = project
                .and_then(|p| p.get("label_config"))
                .and_then(Value::as_str);
            let control = app.control(label_config, project);
            let pairs = super::corrections::annotation_pairs(&body)?;
            let stored = store_all(&app, store, pairs, &control).await?;
            app.retrain_state().pending += stored;
            let retraining = maybe_retrain(&app, false);
            Ok(ok(
                json!({ "action": action, "stored": stored, "retraining": retraining }),
            ))
        }
        "ANNOTATIONS_DELETED" | "ANNOTATION_DELETED" => {
            let ids = super::corrections::deleted_ids(&body)?;
            let store = store.clone();
            let removed = tokio::task::spawn_blocking(move || store.delete(&ids))
                .await
                .map_err(|e| ApiError::internal(format!("deleting crashed: {e}")))??;
            Ok(ok(json!({ "action": action, "removed": removed })))
        }
        _ => {
            tracing::debug!("webhook {action} acknowledged");
            Ok(ok(json!({ "action": action, "stored": 0 })))
        }
    }
}

/// Validates every pair first, then writes: a malformed payload writes nothing.
async fn store_all(
    app: &App,
    store: &Corrections,
    pairs: Vec<(Value, Value)>,
    control: &BrushControl,
) -> Result<usize, ApiError> {
    let mut decoded = Vec::with_capacity(pairs.len());
    for (task, annotation) in &pairs {
        if let Some(c) = store.decode(task, annotation, control, &app.served().version)? {
            decoded.push(c);
        }
    }
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        decoded
            .iter()
            .try_for_each(|c| store.write(c))
            .map(|()| decoded.len())
    })
    .await
    .map_err(|e| ApiError::internal(format!("storing crashed: {e}")))?
}

/// Label Studio's train call (`{annotations: [task with its annotations], label_config}`):
/// stores the latest annotation of every task as a correction.
async fn train(
    State(app): Shared,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = json_body(body)?;
    let Some(store) = &app.corrections else {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "ssc-serve stores corrections only with --corrections DIR",
        ));
    };
    let tasks = body
        .get("annotations")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::bad_request("expected \"annotations\": a list of tasks"))?;
    let control = app.control(
        body.get("label_config").and_then(Value::as_str),
        body.get("project"),
    );
    let mut pairs = Vec::new();
    for (i, task) in tasks.iter().enumerate() {
        let latest = task
            .get("annotations")
            .and_then(Value::as_array)
            .ok_or_else(|| ApiError::bad_request(format!("task #{i}: no \"annotations\" list")))?
            .iter()
            .filter(|a| {
                !a.get("was_cancelled")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            })
            .max_by_key(|a| {
                a.get("updated_at")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            });
        if let Some(a) = latest {
            pairs.push((task.clone(), a.clone()));
        }
    }
    let stored = store_all(&app, store, pairs, &control).await?;
    app.retrain_state().pending += stored;
    // the train call asks for training: retrain now when a retrainer is configured
    let retraining = maybe_retrain(&app, true);
    Ok(json_response(
        StatusCode::CREATED,
        &json!({ "stored": stored, "retraining": retraining }),
    ))
}

async fn predict(
    State(app): Shared,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = json_body(body)?;
    let tasks = body
        .get("tasks")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::bad_request("expected \"tasks\": a list"))?;
    let control = Arc::new(app.control(
        body.get("label_config").and_then(Value::as_str),
        body.get("project"),
    ));
    let n = tasks.len();
    let served = app.served();
    let mut answers: Vec<Option<Result<Value, ApiError>>> = (0..n).map(|_| None).collect();
    // Dropping the set (a client gone) aborts the tasks not finished; a segmenter already
    // running finishes on its own and returns to the pool.
    let mut running = tokio::task::JoinSet::new();
    let width = served.pool.workers() + 1;
    let mut next = 0;
    while next < n || !running.is_empty() {
        while next < n && running.len() < width {
            let (app, served, task, control) = (
                app.clone(),
                served.clone(),
                tasks[next].clone(),
                control.clone(),
            );
            let i = next;
            running.spawn(async move { (i, predict_task(&app, &served, &task, &control).await) });
            next += 1;
        }
        if let Some(done) = running.join_next().await {
            let (i, answer) =
                done.map_err(|e| ApiError::internal(format!("prediction task crashed: {e}")))?;
            answers[i] = Some(answer);
        }
    }
    let answers: Vec<Result<Value, ApiError>> = answers.into_iter().flatten().collect();
    if n > 0 && answers.iter().all(Result::is_err) {
        let first = answers.into_iter().next().and_then(Result::err);
        return Err(first.unwrap_or_else(|| ApiError::internal("no answer")));
    }
    let results: Vec<Value> = answers
        .into_iter()
        .zip(tasks)
        .map(|(a, task)| match a {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("task {}: {}: {}", task["id"], e.status, e.message);
                json!({
                    "task": task.get("id").cloned().unwrap_or(Value::Null),
                    "error": e.message,
                    "status": e.status.as_u16(),
                    "model_version": served.version,
                })
            }
        })
        .collect();
    Ok(ok(
        json!({ "results": results, "model_version": served.version }),
    ))
}

/// Holds a share of the decoded-pixel budget and counts the pixels in flight.
struct PixelGuard<'a> {
    app: &'a App,
    pixels: u64,
    _permit: OwnedSemaphorePermit,
}

impl Drop for PixelGuard<'_> {
    fn drop(&mut self) {
        self.app
            .pixels_in_flight
            .fetch_sub(self.pixels, Ordering::SeqCst);
    }
}

async fn reserve_pixels(app: &App, pixels: u64) -> Result<PixelGuard<'_>, ApiError> {
    let units = pixels.div_ceil(PIXEL_UNIT).clamp(1, budget_units(&app.cfg));
    let permit = app
        .pixels
        .clone()
        .acquire_many_owned(units as u32)
        .await
        .map_err(|_| ApiError::internal("pixel budget closed"))?;
    let now = app.pixels_in_flight.fetch_add(pixels, Ordering::SeqCst) + pixels;
    app.pixels_peak.fetch_max(now, Ordering::SeqCst);
    Ok(PixelGuard {
        app,
        pixels,
        _permit: permit,
    })
}

/// The decoded-pixel budget in [`PIXEL_UNIT`]s (at least one image of the largest size).
fn budget_units(cfg: &ServeConfig) -> u64 {
    cfg.max_pixels_in_flight
        .max(cfg.max_pixels)
        .div_ceil(PIXEL_UNIT)
        .min(Semaphore::MAX_PERMITS as u64)
        .min(u64::from(u32::MAX))
}

/// `(width, height)` from the image header, if it can be read.
fn header_size(bytes: &[u8]) -> Option<(u32, u32)> {
    image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .ok()?
        .into_dimensions()
        .ok()
}

async fn predict_task(
    app: &App,
    served: &Served,
    task: &Value,
    control: &BrushControl,
) -> Result<Value, ApiError> {
    let key = &control.data_key;
    let url = task["data"][key.as_str()].as_str().ok_or_else(|| {
        ApiError::bad_request(format!(
            "task {}: no data.{key} string (the labeling config's <Image value=\"${key}\">)",
            task.get("id").cloned().unwrap_or(Value::Null)
        ))
    })?;
    let bytes = images::load(url, &app.cfg, &app.fetcher).await?;
    let max = app.cfg.max_pixels;
    let pixels = match header_size(&bytes) {
        Some((w, h)) => {
            let p = u64::from(w) * u64::from(h);
            if p > max {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "{url}: image is {w}x{h} = {:.1} megapixels, above the server's limit \
                         of {:.1} (ssc-serve --max-megapixels)",
                        p as f64 / 1e6,
                        max as f64 / 1e6
                    ),
                ));
            }
            p
        }
        // not readable: the decoder below says why
        None => 1,
    };
    let _room = reserve_pixels(app, pixels).await?;
    let opts = DecodeOptions { max_pixels: max };
    let name = url.to_string();
    let image: RgbImage =
        tokio::task::spawn_blocking(move || read_rgb_bytes_with(&bytes, &name, &opts))
            .await
            .map_err(|e| ApiError::internal(format!("decoding crashed: {e}")))?
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let (w, h) = image.dimensions();
    let seg = served.pool.segment(Arc::new(image)).await?;
    if (seg.width, seg.height) != (w, h) {
        return Err(ApiError::internal(format!(
            "model returned a {}x{} map for a {w}x{h} image",
            seg.width, seg.height
        )));
    }
    prediction(&seg, &app.cfg.classes, control, &served.version)
}

/// Completes on ctrl-c or SIGTERM (graceful shutdown of the binary).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
