//! COCO-2014 WSSS layout (§1.4).
//!
//! `root/train2014/COCO_train2014_<12 digits>.jpg` (and `val2014`), semantic masks
//! `root/mask/train2014/<int id>.png` (8-bit grey, 0…80, no ignore), image labels as a float
//! `[N, 80]` array whose rows follow the image ids sorted ascending (BECO
//! `train_labels.npy`/`val_labels.npy`). Item ids are the full file stems, since pseudo labels
//! are named after them.

use std::path::{Path, PathBuf};

use super::labels::{label_rows, read_label_table};
use super::{Dataset, Item, LabelSource, labels_from_gt, read_id_list};
use crate::classes::ClassMap;
use crate::{CoreError, Result};

/// Options of [`coco`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CocoOptions {
    /// Image labels; `Auto` = `root/<train|val>_labels.npy` if present, else from the masks
    /// when every image has one, else none. A numeric `.npy` is aligned by sorted id; any other
    /// file is a keyed table (keys: file stems, file names or integer ids).
    pub labels: LabelSource,
    /// Restrict to the ids of this list (stems, file names or integer ids), in list order.
    pub list: Option<PathBuf>,
}

/// The integer image id of a COCO stem (`COCO_train2014_000000000042` → 42).
pub fn coco_image_id(stem: &str) -> Option<u64> {
    let digits: String = stem
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().ok()
}

/// `train` → `train2014`; names already ending in a year are kept.
fn split_dir(split: &str) -> String {
    match split {
        "train" | "val" | "test" => format!("{split}2014"),
        s => s.to_string(),
    }
}

/// Opens split `split` (`train`, `val`, `train2014`, …) of the COCO layout at `root`.
pub fn coco(root: &Path, split: &str, opts: &CocoOptions) -> Result<Dataset> {
    let classes = ClassMap::coco();
    let dir_name = split_dir(split);
    let img_dir = root.join(&dir_name);
    let mask_dir = root.join("mask").join(&dir_name);
    let rd = std::fs::read_dir(&img_dir).map_err(|e| CoreError::io(&img_dir, e))?;
    let mut found: Vec<(u64, String, PathBuf)> = Vec::new();
    for entry in rd {
        let path = entry.map_err(|e| CoreError::io(&img_dir, e))?.path();
        let is_img = path.extension().is_some_and(|e| {
            let e = e.to_string_lossy().to_ascii_lowercase();
            matches!(e.as_str(), "jpg" | "jpeg" | "png")
        });
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if !is_img || stem.starts_with('.') {
            continue;
        }
        let id = coco_image_id(stem).ok_or_else(|| {
            CoreError::format(&path, "COCO image name does not end in its numeric id")
        })?;
        found.push((id, stem.to_string(), path.clone()));
    }
    found.sort();
    if let Some(w) = found.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(CoreError::format(
            &w[1].2,
            format!("same image id {} as {}", w[0].0, w[0].2.display()),
        ));
    }
    if found.is_empty() {
        return Err(CoreError::format(&img_dir, "no images found"));
    }
    let mut items: Vec<Item> = found
        .iter()
        .map(|(num, stem, path)| {
            let m = mask_dir.join(format!("{num}.png"));
            Item {
                id: stem.clone(),
                image: path.clone(),
                gt: m.is_file().then_some(m),
                labels: None,
            }
        })
        .collect();

    let source = match &opts.labels {
        LabelSource::Auto => {
            let short = dir_name.trim_end_matches("2014");
            let npy = root.join(format!("{short}_labels.npy"));
            if npy.is_file() {
                LabelSource::File(npy)
            } else if items.iter().all(|i| i.gt.is_some()) {
                LabelSource::FromGt
            } else {
                LabelSource::None
            }
        }
        s => s.clone(),
    };
    match source {
        LabelSource::File(p) => attach(&mut items, &p, &classes)?,
        LabelSource::FromGt => labels_from_gt(&mut items, &classes)?,
        LabelSource::None | LabelSource::Auto => {}
    }
    if let Some(list) = &opts.list {
        items = restrict(items, list)?;
    }
    Ok(Dataset {
        name: format!("coco:{dir_name}"),
        classes,
        items,
    })
}

fn attach(items: &mut [Item], path: &Path, classes: &ClassMap) -> Result<()> {
    let is_npy = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    if is_npy {
        let arr = crate::npy::read(path)?;
        // A numeric array has no keys: its rows follow the sorted image ids (§1.4).
        if !matches!(arr.data, crate::npy::NpyData::Object(_)) {
            let rows = label_rows(&arr, classes, path)?;
            if rows.len() != items.len() {
                return Err(CoreError::format(
                    path,
                    format!(
                        "{} label rows but {} images; rows must follow the sorted image ids",
                        rows.len(),
                        items.len()
                    ),
                ));
            }
            for (it, r) in items.iter_mut().zip(rows) {
                it.labels = Some(r);
            }
            return Ok(());
        }
    }
    let t = read_label_table(path, classes)?;
    let norm = |k: &str| {
        let stem = Path::new(k)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or(k);
        coco_image_id(stem).map_or_else(|| stem.to_string(), |n| n.to_string())
    };
    let index = t.index_by(norm)?;
    for it in items.iter_mut() {
        let e = index
            .get(&norm(&it.id))
            .ok_or_else(|| CoreError::format(path, format!("no labels for image `{}`", it.id)))?;
        it.labels = Some(t.entries[*e].labels.clone());
    }
    Ok(())
}

/// Keeps the items named in `list`, in list order.
fn restrict(items: Vec<Item>, list: &Path) -> Result<Vec<Item>> {
    let by_num: std::collections::HashMap<u64, Item> = items
        .into_iter()
        .filter_map(|it| coco_image_id(&it.id).map(|n| (n, it)))
        .collect();
    let mut out = Vec::new();
    for (id, line) in read_id_list(list)? {
        let num = coco_image_id(&id).ok_or_else(|| {
            CoreError::format(list, format!("line {line}: `{id}` is not a COCO image id"))
        })?;
        let it = by_num.get(&num).ok_or_else(|| {
            CoreError::format(list, format!("line {line}: image `{id}` not found"))
        })?;
        out.push(it.clone());
    }
    Ok(out)
}
