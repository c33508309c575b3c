//! The model side of `ssc-serve` (§6.5 predictions as Label Studio brush results): the
//! [`Segmenter`] trait, a pool of segmenters behind a semaphore (bounded concurrent
//! inference, waiting with a timeout), and the conversion of a label map to brush results.
//!
//! ONNX Runtime sessions run with `&mut self`, so each worker owns one segmenter: the pool
//! holds as many permits as segmenters, and a permit guarantees a free one.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use image::RgbImage;
use serde_json::{Value, json};
use ssc_core::classes::ClassMap;
use ssc_core::formats::{MaskSource, brush};
use tokio::sync::Semaphore;

use super::error::ApiError;

/// One image's prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Segmentation {
    /// Width in pixels (the image's).
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Row-major class indices, `width × height`; 255 = no label.
    pub labels: Vec<u8>,
    /// Per-class confidence in `[0, 1]` (index = class index); may be empty (scores 1.0).
    pub scores: Vec<f32>,
}

/// Error of a segmenter (any model failure), reported as a 500.
pub type SegmentError = Box<dyn std::error::Error + Send + Sync>;

/// An image segmentation model: RGB image → label map of the image's size + class scores.
pub trait Segmenter: Send {
    /// Predicts the label map of `image`.
    fn segment(&mut self, image: &RgbImage) -> Result<Segmentation, SegmentError>;
}

/// Segmenters shared by the request handlers.
///
/// A segmenter leaves the free list only inside the blocking job that runs it, and that job
/// puts it back (and releases its permit) itself: when the request that started it is dropped
/// (a client that disconnects or times out), the job still finishes and the worker is not
/// lost. A segmenter that panics is retired with its permit.
pub struct Pool {
    free: Arc<Mutex<Vec<Box<dyn Segmenter>>>>,
    permits: Arc<Semaphore>,
    timeout: Duration,
    workers: usize,
    retired: Arc<AtomicUsize>,
}

impl Pool {
    /// A pool over `segmenters` (at least one); requests wait at most `timeout` for one.
    pub fn new(segmenters: Vec<Box<dyn Segmenter>>, timeout: Duration) -> Result<Self, ApiError> {
        if segmenters.is_empty() {
            return Err(ApiError::internal("ssc-serve needs at least one segmenter"));
        }
        Ok(Pool {
            permits: Arc::new(Semaphore::new(segmenters.len())),
            workers: segmenters.len(),
            free: Arc::new(Mutex::new(segmenters)),
            timeout,
            retired: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Segmenters the pool started with.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Segmenters still in service (a panicking one is retired).
    pub fn alive(&self) -> usize {
        self.workers - self.retired.load(Ordering::SeqCst)
    }

    /// Runs a free segmenter on `image` off the async threads; 503 when none frees up within
    /// the timeout, 500 when the model fails.
    pub async fn segment(&self, image: Arc<RgbImage>) -> Result<Segmentation, ApiError> {
        if self.alive() == 0 {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "every model worker has crashed; restart ssc-serve",
            ));
        }
        let permit = tokio::time::timeout(self.timeout, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "all segmenters busy for {:.1} s; retry later",
                        self.timeout.as_secs_f64()
                    ),
                )
            })?
            .map_err(|_| ApiError::internal("segmenter pool closed"))?;
        let mut seg = lock(&self.free)
            .pop()
            .ok_or_else(|| ApiError::internal("no free segmenter despite a permit"))?;
        let free = self.free.clone();
        let retired = self.retired.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Detached on purpose: dropping the request must not drop the segmenter.
        drop(tokio::task::spawn_blocking(move || {
            let out = std::panic::catch_unwind(AssertUnwindSafe(|| seg.segment(&image)));
            let answer = match out {
                Ok(out) => {
                    lock(&free).push(seg);
                    drop(permit);
                    out.map_err(|e| ApiError::internal(format!("model failed: {e}")))
                }
                Err(panic) => {
                    // the segmenter's state is unknown after a panic: retire it and its permit
                    // so that permits keep matching the segmenters left
                    permit.forget();
                    retired.fetch_add(1, Ordering::SeqCst);
                    drop(seg);
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "panic".into());
                    Err(ApiError::internal(format!(
                        "model crashed ({what}); its worker is retired"
                    )))
                }
            };
            let _ = tx.send(answer);
        }));
        let s = rx
            .await
            .map_err(|_| ApiError::internal("model job vanished"))??;
        check_shape(&s)?;
        Ok(s)
    }
}

fn lock(m: &Mutex<Vec<Box<dyn Segmenter>>>) -> std::sync::MutexGuard<'_, Vec<Box<dyn Segmenter>>> {
    // a poisoned lock only means a panic elsewhere; the Vec itself is still valid
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn check_shape(s: &Segmentation) -> Result<(), ApiError> {
    if (s.width as usize).checked_mul(s.height as usize) != Some(s.labels.len()) {
        return Err(ApiError::internal(format!(
            "model returned {} labels for a {}x{} image",
            s.labels.len(),
            s.width,
            s.height
        )));
    }
    Ok(())
}

/// What a labeling config says about the brush control: the names of the `BrushLabels`
/// control and of its image, the label values it offers, and the task data key the image
/// comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrushControl {
    /// `from_name`.
    pub from_name: String,
    /// `to_name`.
    pub to_name: String,
    /// `<Label value=…>` entries; empty = no restriction.
    pub labels: Vec<String>,
    /// Key of `task.data` holding the image URL: `photo` for `<Image value="$photo">`.
    pub data_key: String,
}

/// Finds the first `<BrushLabels name=… toName=…>` of a labeling config, its labels, and the
/// `value="$key"` of the `<Image>` it points to (`image` when that tag is not found). A light
/// tag scan: Label Studio configs are small, flat XML.
pub fn brush_control(label_config: &str) -> Option<BrushControl> {
    let start = label_config.find("<BrushLabels")?;
    let rest = &label_config[start..];
    let head_end = rest.find('>')?;
    let head = &rest[..head_end];
    let body_end = rest.find("</BrushLabels>").unwrap_or(rest.len());
    let body = &rest[head_end..body_end];
    let labels = body
        .split("<Label")
        .skip(1)
        .filter_map(|tag| attribute(&tag[..tag.find('>').unwrap_or(tag.len())], "value"))
        .collect();
    let to_name = attribute(head, "toName")?;
    let data_key = label_config
        .split("<Image")
        .skip(1)
        .map(|tag| &tag[..tag.find('>').unwrap_or(tag.len())])
        .filter(|tag| tag.starts_with(|c: char| c.is_whitespace()))
        .find(|tag| attribute(tag, "name").as_deref() == Some(to_name.as_str()))
        .and_then(|tag| attribute(tag, "value"))
        .map(|v| v.trim_start_matches('$').to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "image".into());
    Some(BrushControl {
        from_name: attribute(head, "name")?,
        to_name,
        labels,
        data_key,
    })
}

/// Value of ` key="…"` (or single quotes) inside one tag, XML entities decoded.
fn attribute(tag: &str, key: &str) -> Option<String> {
    let mut from = 0;
    while let Some(i) = tag[from..].find(key) {
        let at = from + i;
        from = at + key.len();
        let before_ok = tag[..at].ends_with(|c: char| c.is_whitespace());
        let after = tag[from..].trim_start();
        if !before_ok || !after.starts_with('=') {
            continue;
        }
        let after = after[1..].trim_start();
        let quote = after.chars().next()?;
        if quote != '"' && quote != '\'' {
            return None;
        }
        let end = after[1..].find(quote)?;
        return Some(unescape(&after[1..1 + end]));
    }
    None
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// One Label Studio prediction (`{model_version, score, result}`) from a segmentation: one
/// `brushlabels` result per class present that the control offers; score = mean confidence
/// of those classes.
pub fn prediction(
    s: &Segmentation,
    classes: &ClassMap,
    control: &BrushControl,
    model_version: &str,
) -> Result<Value, ApiError> {
    let mut labels = s.labels.clone();
    // values beyond the class list would make present_classes fail: treat them as unlabelled
    for v in &mut labels {
        if *v as usize >= classes.len() {
            *v = 255;
        }
    }
    let m = MaskSource::new("image", s.width, s.height, labels)
        .map_err(|e| ApiError::internal(e.to_string()))?
        .with_scores(s.scores.clone());
    let present = m
        .present_classes(classes)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let offered =
        |c: u8| control.labels.is_empty() || control.labels.contains(&classes.names[c as usize]);
    let (h, w) = (s.height as usize, s.width as usize);
    let mut results = Vec::new();
    let mut score_sum = 0.0;
    for c in present.into_iter().filter(|&c| offered(c)) {
        let mask: Vec<u8> = m
            .labels
            .iter()
            .map(|&v| if v == c { 255 } else { 0 })
            .collect();
        let rle = brush::mask2rle(&mask, h, w).map_err(|e| ApiError::internal(e.to_string()))?;
        score_sum += m.score(c);
        results.push(json!({
            "id": format!("ssc{c}"),
            "from_name": control.from_name,
            "to_name": control.to_name,
            "type": "brushlabels",
            "original_width": s.width,
            "original_height": s.height,
            "image_rotation": 0,
            "value": {
                "format": "rle",
                "rle": rle,
                "brushlabels": [classes.names[c as usize]],
            },
        }));
    }
    let score = if results.is_empty() {
        1.0
    } else {
        score_sum / results.len() as f64
    };
    Ok(json!({ "model_version": model_version, "score": score, "result": results }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_brush_control() {
        let cfg = r#"<View><Image name="img" value="$image"/>
            <BrushLabels name='paint' toName="img"><Label value="cat" background="red"/>
            <Label value="a&amp;b"/></BrushLabels></View>"#;
        let c = brush_control(cfg).unwrap();
        assert_eq!((c.from_name.as_str(), c.to_name.as_str()), ("paint", "img"));
        assert_eq!(c.labels, vec!["cat".to_string(), "a&b".to_string()]);
        assert_eq!(c.data_key, "image");
        assert!(brush_control("<View><Image name=\"x\"/></View>").is_none());
        let photo = r#"<View><Image name="other" value="$other"/><Image name='img' value='$photo'/>
            <BrushLabels name="paint" toName="img"><Label value="cat"/></BrushLabels></View>"#;
        assert_eq!(brush_control(photo).unwrap().data_key, "photo");
    }

    #[test]
    fn prediction_keeps_offered_classes() {
        let classes = ClassMap::custom(vec!["background".into(), "a".into(), "b".into()]);
        let s = Segmentation {
            width: 2,
            height: 2,
            labels: vec![0, 1, 2, 9],
            scores: vec![1.0, 0.5, 0.25],
        };
        let all = BrushControl {
            from_name: "t".into(),
            to_name: "i".into(),
            labels: vec![],
            data_key: "image".into(),
        };
        let p = prediction(&s, &classes, &all, "v1").unwrap();
        assert_eq!(p["result"].as_array().unwrap().len(), 2);
        assert_eq!(p["score"], 0.375);
        let only_b = BrushControl {
            labels: vec!["b".into()],
            ..all
        };
        let p = prediction(&s, &classes, &only_b, "v1").unwrap();
        assert_eq!(p["result"][0]["value"]["brushlabels"][0], "b");
        assert_eq!(p["result"].as_array().unwrap().len(), 1);
    }
}
