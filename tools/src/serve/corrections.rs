//! Annotators' corrections (annotation-tool integration, the half of the loop after
//! pre-labelling): the brush annotations Label Studio delivers through its webhooks
//! (`ANNOTATION_CREATED` / `ANNOTATION_UPDATED` / `ANNOTATIONS_CREATED`, `ANNOTATIONS_DELETED`)
//! and its train call, stored as label maps that training can take in place of pseudo-masks.
//!
//! One task, one correction (the latest annotation delivered wins):
//! - `task-<id>.png`: palette PNG of class indices (the served model's class list,
//!   background 0; the brush labels are matched to it by name, later results painting over
//!   earlier ones, unpainted pixels background);
//! - `task-<id>.json`: `{task, annotation, image, data_key, updated_at, stored_at,
//!   model_version, width, height, classes}`, written after the PNG, so a correction exists
//!   once its JSON does.
//!
//! Both files are written atomically (temp file + rename), one writer at a time. A payload is
//! decoded and checked completely before anything is written: a malformed one is a 4xx and
//! leaves the folder as it was.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use serde_json::{Value, json};
use ssc_core::classes::ClassMap;
use ssc_core::formats::brush::rle2mask;
use ssc_core::mask::{LabelMap, write_palette_png};

use super::error::ApiError;
use super::predictor::BrushControl;

pub use ssc_core::formats::corrections::{Stored, list};

/// Largest side accepted from an annotation's `original_width` / `original_height`.
const MAX_SIDE: u64 = 1 << 15;

/// A decoded correction, ready to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Correction {
    /// Label Studio task id.
    pub task: u64,
    /// Annotation id.
    pub annotation: u64,
    /// The task's image reference (`data[data_key]`), if any.
    pub image: Option<String>,
    /// The label map.
    pub map: LabelMap,
    /// The sidecar record.
    pub record: Value,
}

/// The corrections folder.
#[derive(Clone)]
pub struct Corrections {
    dir: PathBuf,
    classes: ClassMap,
    writing: Arc<Mutex<()>>,
}

fn unprocessable(m: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m)
}

fn id_of(v: Option<&Value>, what: &str) -> Result<u64, ApiError> {
    match v {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| ApiError::bad_request(format!("{what}: no numeric \"id\"")))
}

/// The `(task, annotation)` pairs of an annotation webhook: one for `ANNOTATION_*`, one per
/// list entry for `ANNOTATIONS_CREATED`.
pub fn annotation_pairs(
    body: &serde_json::Map<String, Value>,
) -> Result<Vec<(Value, Value)>, ApiError> {
    let annotation = body
        .get("annotation")
        .ok_or_else(|| ApiError::bad_request("webhook without an \"annotation\""))?;
    let task = body
        .get("task")
        .ok_or_else(|| ApiError::bad_request("webhook without a \"task\""))?;
    match (annotation, task) {
        (Value::Object(_), Value::Object(_)) => Ok(vec![(task.clone(), annotation.clone())]),
        (Value::Array(a), Value::Array(t)) => {
            let find = |ann: &Value| -> Result<Value, ApiError> {
                let want = ann.get("task").and_then(|t| match t {
                    Value::Object(o) => o.get("id").and_then(Value::as_u64),
                    v => v.as_u64(),
                });
                t.iter()
                    .find(|task| task.get("id").and_then(Value::as_u64) == want)
                    .cloned()
                    .ok_or_else(|| ApiError::bad_request("an annotation's task is not in \"task\""))
            };
            a.iter().map(|ann| Ok((find(ann)?, ann.clone()))).collect()
        }
        _ => Err(ApiError::bad_request(
            "\"annotation\" and \"task\" must both be objects (or both lists)",
        )),
    }
}

/// Annotation ids of an `ANNOTATIONS_DELETED` webhook (`annotations: [{id}]`).
pub fn deleted_ids(body: &serde_json::Map<String, Value>) -> Result<Vec<u64>, ApiError> {
    let list = body
        .get("annotations")
        .or_else(|| body.get("annotation"))
        .ok_or_else(|| ApiError::bad_request("delete webhook without \"annotations\""))?;
    let list = match list {
        Value::Array(a) => a.clone(),
        v => vec![v.clone()],
    };
    list.iter()
        .map(|a| id_of(a.get("id").or(Some(a)), "deleted annotation"))
        .collect()
}

impl Corrections {
    /// The folder `dir` (created if missing) for labels of `classes`.
    pub fn open(dir: &Path, classes: ClassMap) -> Result<Self, ApiError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            ApiError::internal(format!("corrections folder {}: {e}", dir.display()))
        })?;
        Ok(Corrections {
            dir: dir.to_path_buf(),
            classes,
            writing: Arc::new(Mutex::new(())),
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Decodes one annotation of `task` into a label map, checking everything; `None` for a
    /// cancelled (skipped) annotation.
    pub fn decode(
        &self,
        task: &Value,
        annotation: &Value,
        control: &BrushControl,
        model_version: &str,
    ) -> Result<Option<Correction>, ApiError> {
        let task_id = id_of(task.get("id"), "task")?;
        let ann_id = id_of(annotation.get("id"), &format!("task {task_id}: annotation"))?;
        let what = format!("task {task_id}, annotation {ann_id}");
        if annotation
            .get("was_cancelled")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            return Ok(None);
        }
        let results = annotation
            .get("result")
            .and_then(Value::as_array)
            .ok_or_else(|| ApiError::bad_request(format!("{what}: no \"result\" list")))?;
        let brushes: Vec<&Value> = results
            .iter()
            .filter(|r| r.get("type").and_then(Value::as_str) == Some("brushlabels"))
            .filter(|r| {
                r.get("from_name").and_then(Value::as_str) == Some(control.from_name.as_str())
                    || control.labels.is_empty()
            })
            .collect();
        let size = |r: &Value| -> Result<(usize, usize), ApiError> {
            let side = |k: &str| {
                r.get(k)
                    .and_then(Value::as_u64)
                    .filter(|&v| (1..=MAX_SIDE).contains(&v))
                    .ok_or_else(|| {
                        unprocessable(format!("{what}: brush result without a valid \"{k}\""))
                    })
            };
            Ok((
                side("original_width")? as usize,
                side("original_height")? as usize,
            ))
        };
        let Some(first) = brushes.first() else {
            return Err(unprocessable(format!(
                "{what}: no brushlabels result of control \"{}\" (an all-background correction \
                 needs at least one brush so that its size is known)",
                control.from_name
            )));
        };
        let (w, h) = size(first)?;
        let mut data = vec![0u8; w * h];
        let mut present = std::collections::BTreeSet::new();
        for (k, r) in brushes.iter().enumerate() {
            if size(r)? != (w, h) {
                return Err(unprocessable(format!(
                    "{what}: brush results of different sizes ({}x{} and {:?})",
                    w,
                    h,
                    size(r)?
                )));
            }
            let value = &r["value"];
            if value.get("format").and_then(Value::as_str) != Some("rle") {
                return Err(unprocessable(format!(
                    "{what}: result #{k} is not an RLE brush (format {})",
                    value.get("format").unwrap_or(&Value::Null)
                )));
            }
            let label = match value.get("brushlabels").and_then(Value::as_array) {
                Some(l) if l.len() == 1 => l[0].as_str(),
                _ => None,
            }
            .ok_or_else(|| {
                unprocessable(format!("{what}: result #{k} needs exactly one brush label"))
            })?;
            let class = self.classes.index_of(label).ok_or_else(|| {
                unprocessable(format!(
                    "{what}: brush label \"{label}\" is not a class of the served model ({})",
                    self.classes.names.join(", ")
                ))
            })?;
            let rle: Vec<u8> = value
                .get("rle")
                .and_then(Value::as_array)
                .ok_or_else(|| unprocessable(format!("{what}: result #{k} has no \"rle\" list")))?
                .iter()
                .map(|b| b.as_u64().filter(|&b| b < 256).map(|b| b as u8))
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    unprocessable(format!("{what}: result #{k}: RLE values must be bytes"))
                })?;
            let alpha = rle2mask(&rle, h, w)
                .map_err(|e| unprocessable(format!("{what}: result #{k}: {e}")))?;
            for (d, &a) in data.iter_mut().zip(&alpha) {
                if a >= 128 {
                    *d = class as u8;
                }
            }
            present.insert(class);
        }
        let image = task
            .get("data")
            .and_then(|d| d.get(control.data_key.as_str()))
            .and_then(Value::as_str)
            .map(str::to_string);
        let stored_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let record = json!({
            "task": task_id,
            "annotation": ann_id,
            "image": image,
            "data_key": control.data_key,
            "updated_at": annotation.get("updated_at").cloned().unwrap_or(Value::Null),
            "stored_at": stored_at,
            "model_version": model_version,
            "width": w,
            "height": h,
            "classes": present.iter().map(|&c| self.classes.names[c].clone()).collect::<Vec<_>>(),
        });
        let map = LabelMap::new(w, h, data).map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(Some(Correction {
            task: task_id,
            annotation: ann_id,
            image,
            map,
            record,
        }))
    }

    /// `task-<id>.png` and `task-<id>.json` of a task.
    pub fn paths(&self, task: u64) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("task-{task}.png")),
            self.dir.join(format!("task-{task}.json")),
        )
    }

    /// Writes a decoded correction (PNG, then its JSON), replacing the task's previous one.
    pub fn write(&self, c: &Correction) -> Result<(), ApiError> {
        let _one = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let (png, meta) = self.paths(c.task);
        let fail = |e: &dyn std::fmt::Display| {
            ApiError::internal(format!("storing the correction of task {}: {e}", c.task))
        };
        write_palette_png(&png, &c.map, &self.classes).map_err(|e| fail(&e))?;
        let text = serde_json::to_string_pretty(&c.record).map_err(|e| fail(&e))?;
        ssc_core::atomic::write(&meta, text.as_bytes()).map_err(|e| fail(&e))?;
        tracing::info!(
            "stored the correction of task {} (annotation {}) in {}",
            c.task,
            c.annotation,
            png.display()
        );
        Ok(())
    }

    /// Removes the corrections made by the annotations `ids`; returns how many.
    pub fn delete(&self, ids: &[u64]) -> Result<usize, ApiError> {
        let _one = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let mut removed = 0;
        for rec in self.list()? {
            if ids.contains(&rec.annotation) {
                let (png, meta) = self.paths(rec.task);
                // the JSON first: without it the PNG is no correction
                for p in [&meta, &png] {
                    match std::fs::remove_file(p) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(ApiError::internal(format!("{}: {e}", p.display())));
                        }
                    }
                }
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The stored corrections (their sidecars), by task id.
    pub fn list(&self) -> Result<Vec<Stored>, ApiError> {
        list(&self.dir).map_err(|e| ApiError::internal(e.to_string()))
    }
}
