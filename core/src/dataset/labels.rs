//! Image-level label tables (§1.3, §1.4): multi-hot vectors over the foreground classes.
//!
//! Accepted sources, chosen by file extension:
//! * `.npy` with an object dtype: IRN's `cls_labels.npy`, a pickled dict
//!   `{int id (underscore dropped) → float32[K]}` (string keys are accepted too);
//! * `.json`: an object `{"key": ["dog", "sofa"]}` (class names) or `{"key": [0, 1, …]}`
//!   (a 0/1 vector of length K);
//! * anything else is CSV: `key,classes` with the names separated by `;` or spaces (a name
//!   containing a space, like COCO's "traffic light", must use `;`), or `key,0,1,…` with K
//!   values; an optional header line whose first field is `image`, `id`, `file`, `filename`,
//!   `path` or `name`.
//!
//! Plain numeric `[N, K]` arrays (COCO `train_labels.npy`) carry no keys and are read with
//! [`read_label_rows`]; the dataset aligns their rows with its sorted ids.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::classes::ClassMap;
use crate::npy::{self, NpyArray, NpyData};
use crate::pickle::PyValue;
use crate::{CoreError, Result};

/// One row of a label table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelEntry {
    /// The key as written (id, file name or relative path; VOC integer ids get their `_` back).
    pub key: String,
    /// Multi-hot over the foreground classes (length `classes.len() − 1`).
    pub labels: Vec<u8>,
    /// 1-based line in a CSV file, for messages.
    pub line: Option<usize>,
}

/// A keyed label table read from `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelTable {
    /// The file it came from.
    pub path: PathBuf,
    /// Entries in file order.
    pub entries: Vec<LabelEntry>,
}

impl LabelTable {
    /// Indexes the entries by `norm(key)`; two entries with the same normalised key are an
    /// error naming the file and both places.
    pub fn index_by(&self, norm: impl Fn(&str) -> String) -> Result<HashMap<String, usize>> {
        let mut map = HashMap::with_capacity(self.entries.len());
        for (i, e) in self.entries.iter().enumerate() {
            if let Some(j) = map.insert(norm(&e.key), i) {
                return Err(CoreError::format(
                    &self.path,
                    format!(
                        "duplicate entry `{}` ({}) and `{}` ({})",
                        self.entries[j].key,
                        where_(&self.entries[j]),
                        e.key,
                        where_(e)
                    ),
                ));
            }
        }
        Ok(map)
    }
}

/// "line N" or "entry" for messages.
pub fn where_(e: &LabelEntry) -> String {
    e.line
        .map_or_else(|| "entry".to_string(), |l| format!("line {l}"))
}

/// `2007000032` → `2007_000032`: IRN stores VOC ids as integers without the underscore
/// (§1.1); other numbers are kept as they are.
pub fn voc_id_from_int(v: i64) -> String {
    let s = v.to_string();
    if s.len() == 10 && v > 0 {
        format!("{}_{}", &s[..4], &s[4..])
    } else {
        s
    }
}

/// Reads a keyed label table (see the module docs for the formats).
pub fn read_label_table(path: &Path, classes: &ClassMap) -> Result<LabelTable> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    let entries = match ext.as_deref() {
        Some("npy") => npy_table(path, classes)?,
        Some("json") => json_table(path, classes)?,
        _ => csv_table(path, classes)?,
    };
    Ok(LabelTable {
        path: path.to_path_buf(),
        entries,
    })
}

/// Reads a plain numeric `[N, K]` `.npy` (COCO `train_labels.npy`) as N multi-hot rows.
pub fn read_label_rows(path: &Path, classes: &ClassMap) -> Result<Vec<Vec<u8>>> {
    label_rows(&npy::read(path)?, classes, path)
}

/// [`read_label_rows`] on an array already read from `path` (used in messages).
pub fn label_rows(a: &NpyArray, classes: &ClassMap, path: &Path) -> Result<Vec<Vec<u8>>> {
    let k = classes.num_foreground();
    let bad = |m: String| CoreError::format(path, m);
    let vals = a.to_f32().ok_or_else(|| {
        bad("object array: expected a numeric [N, K] label array (use it as a table)".into())
    })?;
    if a.shape.len() != 2 || a.shape[1] != k {
        return Err(bad(format!(
            "label array has shape {:?}, expected [N, {k}]",
            a.shape
        )));
    }
    vals.chunks(k)
        .enumerate()
        .map(|(r, row)| {
            multi_hot(row.iter().map(|&x| x as f64)).map_err(|m| bad(format!("row {r}: {m}")))
        })
        .collect()
}

/// 0/1 values → multi-hot; anything else is an error (no silent thresholding).
fn multi_hot(vals: impl Iterator<Item = f64>) -> std::result::Result<Vec<u8>, String> {
    vals.map(|v| {
        if v.abs() < 1e-6 {
            Ok(0)
        } else if (v - 1.0).abs() < 1e-6 {
            Ok(1)
        } else {
            Err(format!("label value {v} is neither 0 nor 1"))
        }
    })
    .collect()
}

/// Class names → multi-hot; background names are allowed and ignored.
fn names_to_hot<'a>(
    names: impl Iterator<Item = &'a str>,
    classes: &ClassMap,
) -> std::result::Result<Vec<u8>, String> {
    let mut hot = vec![0u8; classes.num_foreground()];
    for n in names {
        match classes.index_of(n) {
            Some(0) => {}
            Some(i) => hot[i - 1] = 1,
            None => return Err(format!("unknown class name `{n}`")),
        }
    }
    Ok(hot)
}

fn check_len(hot: &[u8], k: usize) -> std::result::Result<(), String> {
    if hot.len() != k {
        return Err(format!(
            "label vector has {} values, expected {k} (one per foreground class)",
            hot.len()
        ));
    }
    Ok(())
}

fn npy_table(path: &Path, classes: &ClassMap) -> Result<Vec<LabelEntry>> {
    let bad = |m: String| CoreError::format(path, m);
    let a = npy::read(path)?;
    let NpyData::Object(items) = a.data else {
        return Err(bad(
            "numeric array without ids: expected a pickled dict like IRN's cls_labels.npy".into(),
        ));
    };
    let [PyValue::Dict(pairs)] = &items[..] else {
        return Err(bad("object array does not hold a single dict".into()));
    };
    let k = classes.num_foreground();
    pairs
        .iter()
        .map(|(key, val)| {
            let key = match key {
                PyValue::Int(i) => voc_id_from_int(*i),
                PyValue::Str(s) => s.clone(),
                other => return Err(bad(format!("unsupported dict key {other:?}"))),
            };
            let vals: Vec<f64> = match val {
                PyValue::Array(arr) => arr
                    .to_f32()
                    .ok_or_else(|| bad(format!("`{key}`: value is an object array")))?
                    .into_iter()
                    .map(f64::from)
                    .collect(),
                PyValue::List(l) => l
                    .iter()
                    .map(|x| match x {
                        PyValue::Int(i) => Ok(*i as f64),
                        PyValue::Float(f) => Ok(*f),
                        _ => Err(bad(format!("`{key}`: non-numeric label"))),
                    })
                    .collect::<Result<_>>()?,
                _ => return Err(bad(format!("`{key}`: value is not an array"))),
            };
            let labels = multi_hot(vals.into_iter())
                .and_then(|h| check_len(&h, k).map(|_| h))
                .map_err(|m| bad(format!("`{key}`: {m}")))?;
            Ok(LabelEntry {
                key,
                labels,
                line: None,
            })
        })
        .collect()
}

fn json_table(path: &Path, classes: &ClassMap) -> Result<Vec<LabelEntry>> {
    let bad = |m: String| CoreError::format(path, m);
    let text = std::fs::read_to_string(path).map_err(|e| CoreError::io(path, e))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad("expected an object {\"image\": [classes]}".into()))?;
    let k = classes.num_foreground();
    obj.iter()
        .map(|(key, val)| {
            let arr = val
                .as_array()
                .ok_or_else(|| bad(format!("`{key}`: expected a list")))?;
            let hot = if arr.iter().all(|x| x.is_string()) && !arr.is_empty() {
                names_to_hot(arr.iter().filter_map(|x| x.as_str()), classes)
            } else if arr.iter().all(|x| x.is_number()) && !arr.is_empty() {
                multi_hot(arr.iter().filter_map(|x| x.as_f64()))
                    .and_then(|h| check_len(&h, k).map(|_| h))
            } else if arr.is_empty() {
                Ok(vec![0; k])
            } else {
                Err("expected a list of class names or of 0/1 values".into())
            };
            Ok(LabelEntry {
                key: key.clone(),
                labels: hot.map_err(|m| bad(format!("`{key}`: {m}")))?,
                line: None,
            })
        })
        .collect()
}

/// Splits one CSV line, honouring double quotes (`""` inside quotes is a quote).
fn split_csv(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                out.last_mut().unwrap().push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out.into_iter().map(|s| s.trim().to_string()).collect()
}

fn csv_table(path: &Path, classes: &ClassMap) -> Result<Vec<LabelEntry>> {
    let text = std::fs::read_to_string(path).map_err(|e| CoreError::io(path, e))?;
    let k = classes.num_foreground();
    let mut entries = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let bad = |m: String| CoreError::format(path, format!("line {line}: {m}"));
        if raw.trim().is_empty() || raw.trim_start().starts_with('#') {
            continue;
        }
        let fields = split_csv(raw.trim_start_matches('\u{feff}'));
        let key = fields[0].clone();
        if entries.is_empty()
            && matches!(
                key.to_ascii_lowercase().as_str(),
                "image" | "id" | "file" | "filename" | "path" | "name"
            )
        {
            continue; // header
        }
        if key.is_empty() {
            return Err(bad("empty image key".into()));
        }
        let rest = &fields[1..];
        let numeric = (rest.len() > 1 || (k == 1 && rest.len() == 1))
            && rest.iter().all(|f| f.parse::<f64>().is_ok());
        let hot = if numeric {
            multi_hot(rest.iter().map(|f| f.parse::<f64>().unwrap_or(f64::NAN)))
                .and_then(|h| check_len(&h, k).map(|_| h))
        } else if rest.len() > 1 {
            Err(format!(
                "expected `image,classes` (names separated by `;` or spaces) or `image` + {k} \
                 0/1 values, found {} fields",
                fields.len()
            ))
        } else {
            let field = rest.first().map(String::as_str).unwrap_or("");
            // `;` wins; a whole field that is one class name may contain spaces.
            let names: Vec<&str> = if field.contains(';') {
                field
                    .split(';')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect()
            } else if classes.index_of(field).is_some() {
                vec![field]
            } else {
                field.split_whitespace().collect()
            };
            names_to_hot(names.into_iter(), classes)
        };
        entries.push(LabelEntry {
            key,
            labels: hot.map_err(bad)?,
            line: Some(line),
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_splitting_and_ids() {
        assert_eq!(split_csv("a, \"b,c\" ,d"), vec!["a", "b,c", "d"]);
        assert_eq!(split_csv("\"x\"\"y\""), vec!["x\"y"]);
        assert_eq!(voc_id_from_int(2007000032), "2007_000032");
        assert_eq!(voc_id_from_int(42), "42");
    }
}
