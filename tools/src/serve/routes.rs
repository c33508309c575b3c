//! HTTP routes of `ssc-serve`, the Label Studio ML backend protocol (label-studio-ml ≥ 2,
//! as Label Studio ≥ 1.10 calls it): `GET /health` (and `/`), `POST /setup`,
//! `POST /predict`, `POST /webhook`, `GET /metrics`; everything else is a JSON 404/405.
//!
//! `/predict` answers `{"results": [prediction per task, in task order], "model_version"}`,
//! each prediction `{model_version, score, result: [brushlabels …]}` (see
//! [`super::predictor::prediction`]). Any failing task fails the request with its status, so
//! Label Studio never receives predictions misaligned with its tasks.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use ssc_core::imageio::{DecodeOptions, read_rgb_bytes_with};

use super::config::ServeConfig;
use super::error::{ApiError, json_response};
use super::predictor::{BrushControl, Pool, Segmenter, brush_control, prediction};
use super::{auth, images};

struct App {
    cfg: ServeConfig,
    pool: Pool,
}

type Shared = State<Arc<App>>;

/// The backend's router over `segmenters` (one per concurrent inference).
pub fn router(cfg: ServeConfig, segmenters: Vec<Box<dyn Segmenter>>) -> Result<Router, ApiError> {
    let pool = Pool::new(segmenters, cfg.queue_timeout)?;
    let limit = cfg.max_body_bytes;
    let credentials = cfg.basic_auth.clone();
    let app = Arc::new(App { cfg, pool });
    let mut r = Router::new()
        .route("/", get(health))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/setup", post(setup))
        .route("/predict", post(predict))
        .route("/webhook", post(webhook))
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
    ok(json!({
        "status": "UP",
        "model_class": app.cfg.model_class,
        "model_version": app.cfg.model_version,
    }))
}

async fn metrics() -> Response {
    ok(json!({}))
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

async fn setup(
    State(app): Shared,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = json_body(body)?;
    if let Some(schema) = body.get("schema").and_then(Value::as_str)
        && brush_control(schema).is_none()
    {
        tracing::warn!("project config has no BrushLabels control; predictions use the defaults");
    }
    Ok(ok(json!({ "model_version": app.cfg.model_version })))
}

async fn webhook(body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let body = json_body(body)?;
    tracing::debug!(
        "webhook {} ignored (ssc-serve does not train)",
        body.get("action").and_then(|a| a.as_str()).unwrap_or("?")
    );
    Ok(ok(json!({})))
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
    let cfg = &app.cfg;
    let control = body
        .get("label_config")
        .and_then(Value::as_str)
        .and_then(brush_control)
        .unwrap_or_else(|| BrushControl {
            from_name: cfg.from_name.clone(),
            to_name: cfg.to_name.clone(),
            labels: Vec::new(),
        });
    let mut results = Vec::with_capacity(tasks.len());
    for (i, task) in tasks.iter().enumerate() {
        let url = task["data"]["image"]
            .as_str()
            .ok_or_else(|| ApiError::bad_request(format!("task #{i}: no data.image string")))?;
        results.push(predict_one(&app, url, &control).await?);
    }
    Ok(ok(
        json!({ "results": results, "model_version": cfg.model_version }),
    ))
}

async fn predict_one(app: &App, url: &str, control: &BrushControl) -> Result<Value, ApiError> {
    let bytes = images::load(url, &app.cfg).await?;
    let opts = DecodeOptions {
        max_pixels: app.cfg.max_pixels,
    };
    let name = url.to_string();
    let image = tokio::task::spawn_blocking(move || read_rgb_bytes_with(&bytes, &name, &opts))
        .await
        .map_err(|e| ApiError::internal(format!("decoding crashed: {e}")))?
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let (w, h) = image.dimensions();
    let seg = app.pool.segment(image).await?;
    if (seg.width, seg.height) != (w, h) {
        return Err(ApiError::internal(format!(
            "model returned a {}x{} map for a {w}x{h} image",
            seg.width, seg.height
        )));
    }
    prediction(&seg, &app.cfg.classes, control, &app.cfg.model_version)
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
