//! Annotators' corrections as `ssc-serve --corrections DIR` stores them (annotation-tool
//! integration), read back for training: `task-<id>.png` (palette PNG of class indices) and
//! its sidecar `task-<id>.json` (`{task, annotation, image, …}`; a correction exists once its
//! sidecar does).
//!
//! A correction names its image only by the Label Studio reference it was annotated on
//! (`/data/local-files/?d=JPEGImages/2007_000032.jpg`, `/data/upload/3/1a2b3c4d-2007_000032.jpg`,
//! `http://host/…/x.jpg`); [`image_id`] turns that into a dataset id (the file stem, without
//! the 8-hex-digit prefix Label Studio gives uploads) so corrections can replace the
//! pseudo-masks of the same images.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::stem_of;
use crate::{CoreError, Result};

/// A stored correction as its sidecar describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Label Studio task id.
    pub task: u64,
    /// Annotation id.
    pub annotation: u64,
    /// The task's image reference.
    pub image: Option<String>,
    /// The label PNG.
    pub png: PathBuf,
}

/// The corrections stored in `dir` (sidecars whose PNG exists), sorted by task id.
pub fn list(dir: &Path) -> Result<Vec<Stored>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| CoreError::io(dir, e))? {
        let path = entry.map_err(|e| CoreError::io(dir, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !(name.starts_with("task-") && name.ends_with(".json")) {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| CoreError::io(&path, e))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| CoreError::format(&path, format!("not a correction record: {e}")))?;
        let (Some(task), Some(annotation)) = (v["task"].as_u64(), v["annotation"].as_u64()) else {
            return Err(CoreError::format(&path, "no task / annotation id"));
        };
        let png = dir.join(format!("task-{task}.png"));
        if png.is_file() {
            out.push(Stored {
                task,
                annotation,
                image: v["image"].as_str().map(str::to_string),
                png,
            });
        }
    }
    out.sort_by_key(|s| s.task);
    Ok(out)
}

/// Decodes `%XX` and `+` (form encoding, as Django reads `?d=`); `None` for a bad escape or
/// bytes that are not UTF-8.
pub fn form_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The file stems an image reference may stand for, most specific first: the stem of the
/// referenced file (the `d` parameter of a local-files URL, else the path without query),
/// then, for an upload (`<8 hex digits>-<name>`), the name Label Studio was given.
pub fn image_ids(reference: &str) -> Vec<String> {
    let path = match reference
        .split_once("?d=")
        .or_else(|| reference.split_once("&d="))
    {
        Some((_, d)) => d.split('&').next().unwrap_or(d),
        None => reference.split(['?', '#']).next().unwrap_or(reference),
    };
    let path = form_decode(path).unwrap_or_else(|| path.to_string());
    let stem = stem_of(&path);
    let mut out = vec![stem.clone()];
    if let Some((prefix, rest)) = stem.split_once('-')
        && prefix.len() == 8
        && prefix.bytes().all(|c| c.is_ascii_hexdigit())
        && !rest.is_empty()
    {
        out.push(rest.to_string());
    }
    out
}

/// The dataset id of an image reference among `ids`, if any.
pub fn image_id<'a>(reference: &str, ids: &'a [String]) -> Option<&'a String> {
    image_ids(reference)
        .iter()
        .find_map(|c| ids.iter().find(|id| *id == c))
}

/// The corrections of `dir` matched to the dataset `ids`: label PNG by id (a later task wins
/// when two corrections name one image), and the corrections that match no id.
pub fn by_id(dir: &Path, ids: &[String]) -> Result<(HashMap<String, PathBuf>, Vec<Stored>)> {
    let mut found = HashMap::new();
    let mut unmatched = Vec::new();
    for s in list(dir)? {
        match s.image.as_deref().and_then(|r| image_id(r, ids)) {
            Some(id) => {
                found.insert(id.clone(), s.png);
            }
            None => unmatched.push(s),
        }
    }
    Ok((found, unmatched))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_to_ids() {
        assert_eq!(
            image_ids("/data/local-files/?d=JPEGImages%2F2007_000032.jpg"),
            ["2007_000032"]
        );
        assert_eq!(
            image_ids("/data/upload/3/1a2b3c4d-2007_000032.jpg"),
            ["1a2b3c4d-2007_000032", "2007_000032"]
        );
        assert_eq!(image_ids("http://h:8080/img/a+b.png?x=1"), ["a b"]);
        assert_eq!(image_ids("/data/upload/3/short-x.jpg"), ["short-x"]);
        let ids = vec!["2007_000032".to_string(), "a".to_string()];
        assert_eq!(
            image_id("/data/upload/3/1a2b3c4d-2007_000032.jpg", &ids),
            Some(&ids[0])
        );
        assert_eq!(image_id("/data/upload/3/zz.jpg", &ids), None);
        assert_eq!(form_decode("%zz"), None);
        assert_eq!(form_decode("%4"), None);
        assert_eq!(form_decode("a%20b+c").as_deref(), Some("a b c"));
    }

    #[test]
    fn listing_needs_the_png_and_a_valid_sidecar() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("task-2.json"),
            r#"{"task": 2, "annotation": 5, "image": "/data/upload/1/x.png"}"#,
        )
        .unwrap();
        assert!(list(d.path()).unwrap().is_empty(), "no PNG yet");
        std::fs::write(d.path().join("task-2.png"), b"png").unwrap();
        let l = list(d.path()).unwrap();
        assert_eq!((l[0].task, l[0].annotation), (2, 5));
        let (m, un) = by_id(d.path(), &["x".into()]).unwrap();
        assert_eq!(m["x"], d.path().join("task-2.png"));
        assert!(un.is_empty());
        std::fs::write(d.path().join("task-3.json"), "{}").unwrap();
        let e = list(d.path()).unwrap_err().to_string();
        assert!(e.contains("task-3.json"), "{e}");
    }
}
