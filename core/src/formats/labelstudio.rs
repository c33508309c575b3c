//! Label Studio import files from label maps (annotation-tool integration): a tasks JSON with
//! brush-RLE predictions (pre-annotations) and the matching labeling config XML; and a reader
//! for tasks JSON (predictions or human annotations) back to label maps.
//!
//! One task per image: `data.image` is the configured prefix (`/data/local-files/?d=` serves
//! local files) plus [`MaskSource::image`]; one `brushlabels` result per foreground class
//! present, RLE from [`super::brush`]. `data.width` / `data.height` are added so the reader
//! knows the size of images without any result (Label Studio ignores unreferenced data keys).
//! Label Studio has no ignore value: ignore pixels (255) are left unlabelled and read back as
//! background.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{MaskSource, MaskWriter, brush, check_class_names, stem_of};
use crate::classes::ClassMap;
use crate::{CoreError, Result, atomic};

/// Options shared by the Label Studio writer, config and reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelStudioOptions {
    /// Prefix of `data.image` before [`MaskSource::image`] (a URL, a path, or empty).
    pub image_prefix: String,
    /// Name of the `BrushLabels` control (`from_name`).
    pub from_name: String,
    /// Name of the `Image` object (`to_name`).
    pub to_name: String,
    /// `model_version` of the predictions.
    pub model_version: String,
}

impl Default for LabelStudioOptions {
    fn default() -> Self {
        LabelStudioOptions {
            image_prefix: "/data/local-files/?d=".into(),
            from_name: "tag".into(),
            to_name: "image".into(),
            model_version: "ssc".into(),
        }
    }
}

/// Streams label maps into a Label Studio tasks JSON (predictions).
pub struct LabelStudioWriter {
    path: PathBuf,
    classes: ClassMap,
    opts: LabelStudioOptions,
    tasks: Vec<Value>,
    seen: HashSet<String>,
    finished: bool,
}

impl LabelStudioWriter {
    /// Starts a tasks file at `path` (written in `finish`).
    pub fn begin(path: &Path, classes: &ClassMap, opts: LabelStudioOptions) -> Result<Self> {
        check_class_names(classes)?;
        Ok(LabelStudioWriter {
            path: path.to_path_buf(),
            classes: classes.clone(),
            opts,
            tasks: Vec::new(),
            seen: HashSet::new(),
            finished: false,
        })
    }

    fn check_open(&self) -> Result<()> {
        if self.finished {
            return Err(CoreError::Invalid(format!(
                "{}: writer already finished",
                self.path.display()
            )));
        }
        Ok(())
    }
}

impl MaskWriter for LabelStudioWriter {
    fn add(&mut self, m: &MaskSource) -> Result<()> {
        self.check_open()?;
        let present = m.present_classes(&self.classes)?;
        if self.seen.contains(&m.id) {
            return Err(CoreError::Invalid(format!("{}: id added twice", m.id)));
        }
        let (w, h) = (m.width as usize, m.height as usize);
        let mut results = Vec::with_capacity(present.len());
        for &c in &present {
            let mask: Vec<u8> = m
                .labels
                .iter()
                .map(|&v| if v == c { 255 } else { 0 })
                .collect();
            results.push(json!({
                "id": format!("ssc{c}"),
                "from_name": self.opts.from_name,
                "to_name": self.opts.to_name,
                "type": "brushlabels",
                "original_width": m.width,
                "original_height": m.height,
                "image_rotation": 0,
                "value": {
                    "format": "rle",
                    "rle": brush::mask2rle(&mask, h, w)?,
                    "brushlabels": [self.classes.names[c as usize]],
                },
            }));
        }
        // the prediction's score: mean confidence of the classes it labels
        let score = if present.is_empty() {
            1.0
        } else {
            present.iter().map(|&c| m.score(c)).sum::<f64>() / present.len() as f64
        };
        self.tasks.push(json!({
            "data": {
                "image": format!("{}{}", self.opts.image_prefix, m.image),
                "width": m.width,
                "height": m.height,
            },
            "predictions": [{
                "model_version": self.opts.model_version,
                "score": score,
                "result": results,
            }],
        }));
        self.seen.insert(m.id.clone());
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.check_open()?;
        self.finished = true;
        let tasks = Value::Array(std::mem::take(&mut self.tasks));
        atomic::write_with(&self.path, |w| {
            serde_json::to_writer(w, &tasks).map_err(std::io::Error::other)
        })
    }
}

/// The labeling config XML: an `Image` and a `BrushLabels` control with one `Label` per
/// foreground class in its colour.
pub fn labeling_config(classes: &ClassMap, opts: &LabelStudioOptions) -> String {
    let mut s = format!(
        "<View>\n  <Image name=\"{to}\" value=\"$image\" zoom=\"true\"/>\n  <BrushLabels name=\"{from}\" toName=\"{to}\">\n",
        to = xml_escape(&opts.to_name),
        from = xml_escape(&opts.from_name),
    );
    for (n, c) in classes.names.iter().zip(&classes.colors).skip(1) {
        s.push_str(&format!(
            "    <Label value=\"{}\" background=\"#{:02x}{:02x}{:02x}\"/>\n",
            xml_escape(n),
            c[0],
            c[1],
            c[2]
        ));
    }
    s.push_str("  </BrushLabels>\n</View>\n");
    s
}

/// Writes [`labeling_config`] to `path` atomically.
pub fn write_labeling_config(
    path: &Path,
    classes: &ClassMap,
    opts: &LabelStudioOptions,
) -> Result<()> {
    atomic::write(path, labeling_config(classes, opts).as_bytes())
}

/// Escapes text for XML attribute values.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Reads a Label Studio tasks JSON (a list of tasks, as imported or exported) into label maps.
///
/// Per task the results come from the last non-cancelled annotation that has any, else from
/// the first prediction. Every `brushlabels` result with RLE is decoded; pixels with alpha
/// ≥ 128 get the class named by its first label (results painted in order, later ones win).
/// Only results whose `from_name` is `opts.from_name` count. `data.image` minus
/// `opts.image_prefix` becomes [`MaskSource::image`], its file stem the id. Tasks without any
/// result and without `data.width`/`data.height` are skipped with a warning (their size is
/// unknown).
pub fn read_tasks(
    path: &Path,
    classes: &ClassMap,
    opts: &LabelStudioOptions,
) -> Result<Vec<MaskSource>> {
    let text = std::fs::read_to_string(path).map_err(|e| CoreError::io(path, e))?;
    let doc: Value = serde_json::from_str(&text)
        .map_err(|e| CoreError::format(path, format!("not JSON: {e}")))?;
    let tasks = doc
        .as_array()
        .ok_or_else(|| CoreError::format(path, "expected a list of tasks"))?;
    let mut out = Vec::with_capacity(tasks.len());
    for (t, task) in tasks.iter().enumerate() {
        let bad = |m: String| CoreError::format(path, format!("task #{t}: {m}"));
        let image = task["data"]["image"]
            .as_str()
            .ok_or_else(|| bad("no data.image".into()))?;
        let image = image
            .strip_prefix(opts.image_prefix.as_str())
            .unwrap_or(image);
        let results = chosen_results(task);
        let brushes: Vec<&Value> = results
            .iter()
            .filter(|r| {
                r["type"]
                    .as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case("brushlabels"))
                    && r["from_name"].as_str() == Some(opts.from_name.as_str())
            })
            .collect();
        let dims = |a: &Value, b: &Value| {
            Some((
                u32::try_from(a.as_u64()?).ok()?,
                u32::try_from(b.as_u64()?).ok()?,
            ))
        };
        let size = brushes
            .first()
            .and_then(|r| dims(&r["original_width"], &r["original_height"]))
            .or_else(|| dims(&task["data"]["width"], &task["data"]["height"]));
        let Some((w, h)) = size else {
            tracing::warn!(
                "{}: task #{t} ({image}) has no result and no size; skipped",
                path.display()
            );
            continue;
        };
        let mut m = MaskSource::new(stem_of(image), w, h, vec![0; w as usize * h as usize])
            .map_err(|e| bad(e.to_string()))?
            .with_image(image);
        for r in brushes {
            let v = &r["value"];
            if v["format"].as_str().is_some_and(|f| f != "rle") {
                return Err(bad(format!("unsupported brush format {}", v["format"])));
            }
            if dims(&r["original_width"], &r["original_height"]) != Some((w, h)) {
                return Err(bad("brush results of different sizes".into()));
            }
            let name = v["brushlabels"][0]
                .as_str()
                .ok_or_else(|| bad("brush result without a label".into()))?;
            let c = classes
                .index_of(name)
                .ok_or_else(|| bad(format!("label {name:?} is not in the class map")))?;
            let rle = v["rle"]
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .map(|x| x.as_u64().and_then(|x| u8::try_from(x).ok()))
                        .collect::<Option<Vec<u8>>>()
                })
                .ok_or_else(|| bad("value.rle is not a list of bytes".into()))?;
            let alpha =
                brush::rle2mask(&rle, h as usize, w as usize).map_err(|e| bad(e.to_string()))?;
            for (l, &a) in m.labels.iter_mut().zip(&alpha) {
                if a >= 128 {
                    *l = c as u8;
                }
            }
        }
        out.push(m);
    }
    Ok(out)
}

/// The result list a task's labels come from (see [`read_tasks`]).
fn chosen_results(task: &Value) -> Vec<Value> {
    let list = |v: &Value| v["result"].as_array().cloned().unwrap_or_default();
    if let Some(anns) = task["annotations"].as_array() {
        let human = anns
            .iter()
            .rev()
            .filter(|a| !a["was_cancelled"].as_bool().unwrap_or(false))
            .map(list)
            .find(|r| !r.is_empty());
        if let Some(r) = human {
            return r;
        }
    }
    task["predictions"]
        .as_array()
        .and_then(|p| p.first())
        .map(list)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escaping() {
        assert_eq!(xml_escape(r#"a&b<"c'>"#), "a&amp;b&lt;&quot;c&apos;&gt;");
    }

    #[test]
    fn annotations_win_over_predictions() {
        let t = json!({
            "annotations": [{"result": [{"x": 1}]}, {"was_cancelled": true, "result": [{"x": 2}]}],
            "predictions": [{"result": [{"x": 3}]}],
        });
        assert_eq!(chosen_results(&t)[0]["x"], 1);
        let t = json!({"annotations": [], "predictions": [{"result": [{"x": 3}]}]});
        assert_eq!(chosen_results(&t)[0]["x"], 3);
    }
}
