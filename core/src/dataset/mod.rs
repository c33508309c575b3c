//! Datasets (§1.1, §1.3, §1.4): a list of images with optional ground-truth masks and
//! image-level labels, built from the VOC and COCO layouts or from any image folder.
//!
//! Constructors only look at paths (images are not decoded); they fail early, naming the file,
//! on missing list files, missing images and malformed lines, so a long run never starts on a
//! broken dataset.

pub mod coco;
pub mod folder;
pub mod labels;
pub mod voc;

use std::path::{Path, PathBuf};
use std::str::FromStr;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::classes::ClassMap;
use crate::{CoreError, Result, mask};

pub use coco::{CocoOptions, coco};
pub use folder::folder;
pub use voc::{GtSource, VocOptions, voc};

/// One image of a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Stable identifier, used to name every per-image output (`2007_000032`,
    /// `COCO_train2014_000000000042`, `sub/dir/photo`).
    pub id: String,
    /// The image file.
    pub image: PathBuf,
    /// Ground-truth mask, when the dataset has one for this image.
    pub gt: Option<PathBuf>,
    /// Multi-hot image labels over the foreground classes (length `classes.len() − 1`).
    pub labels: Option<Vec<u8>>,
}

impl Item {
    /// Foreground class indices (1-based, as in masks) set in `labels`.
    pub fn label_classes(&self) -> Vec<usize> {
        self.labels
            .iter()
            .flatten()
            .enumerate()
            .filter(|(_, v)| **v != 0)
            .map(|(i, _)| i + 1)
            .collect()
    }
}

/// A named list of items with their class map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// Human-readable name, e.g. `voc:train_aug`.
    pub name: String,
    /// Classes, background first.
    pub classes: ClassMap,
    /// Items in a deterministic order.
    pub items: Vec<Item>,
}

impl Dataset {
    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// `true` when there is no item.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The item with identifier `id`.
    pub fn get(&self, id: &str) -> Option<&Item> {
        self.items.iter().find(|i| i.id == id)
    }

    /// `true` when every item has image labels (required for classifier training).
    pub fn fully_labelled(&self) -> bool {
        self.items.iter().all(|i| i.labels.is_some())
    }
}

/// Where image-level labels come from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum LabelSource {
    /// The layout's usual label file if present, else derived from GT masks when every item
    /// has one, else no labels.
    #[default]
    Auto,
    /// No labels.
    None,
    /// A label file (see [`labels`] for the formats).
    File(PathBuf),
    /// Classes present in each GT mask, 0 and 255 excluded (every item must have a GT).
    FromGt,
}

/// Sets each item's labels to the classes present in its GT mask (read in parallel).
pub fn labels_from_gt(items: &mut [Item], classes: &ClassMap) -> Result<()> {
    items.par_iter_mut().try_for_each(|it| {
        let gt = it.gt.as_ref().ok_or_else(|| {
            CoreError::Invalid(format!(
                "cannot derive labels of `{}` from its mask: it has no GT mask",
                it.id
            ))
        })?;
        let m = mask::read_mask(gt, classes)?;
        it.labels = Some(mask::foreground_labels(&m, classes, gt)?);
        Ok(())
    })
}

/// Reads a split list: one id per line (blank lines and `#` comments skipped). A line may also
/// be `JPEGImages/<id>.jpg [SegmentationClassAug/<id>.png]` as in some train_aug lists, or an
/// IRN integer id (`2007000032`); both give the plain id. Returns `(id, line number)`.
pub fn read_id_list(path: &Path) -> Result<Vec<(String, usize)>> {
    let text = std::fs::read_to_string(path).map_err(|e| CoreError::io(path, e))?;
    let mut out = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let toks: Vec<&str> = t.split_whitespace().collect();
        let bad = |m: &str| CoreError::format(path, format!("line {line}: {m}: `{t}`"));
        if toks.len() > 2 {
            return Err(bad("expected one id per line"));
        }
        let first = toks[0].trim_start_matches('/');
        let stem = Path::new(first)
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| bad("malformed id"))?;
        let id = if stem.len() == 10 && stem.bytes().all(|b| b.is_ascii_digit()) {
            format!("{}_{}", &stem[..4], &stem[4..])
        } else {
            stem.to_string()
        };
        if id.is_empty() || id.chars().any(|c| c.is_control()) {
            return Err(bad("malformed id"));
        }
        if let Some(first_line) = seen.insert(id.clone(), line) {
            return Err(bad(&format!("duplicate id (first at line {first_line})")));
        }
        out.push((id, line));
    }
    Ok(out)
}

/// Loads a custom class list: a JSON list of names, or a text file with one name per line
/// (blank lines and `#` comments skipped). When the first name is not `background` (any
/// case), `background` is prepended, so a list of the foreground classes works as is.
pub fn load_class_map(path: &Path) -> Result<ClassMap> {
    let text = std::fs::read_to_string(path).map_err(|e| CoreError::io(path, e))?;
    let bad = |m: String| CoreError::format(path, m);
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        || text.trim_start().starts_with('[');
    let mut names: Vec<String> = if is_json {
        serde_json::from_str(&text)
            .map_err(|e| bad(format!("expected a JSON list of names: {e}")))?
    } else {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    };
    if names.iter().any(|n| n.trim().is_empty()) {
        return Err(bad("empty class name".into()));
    }
    if names
        .first()
        .is_none_or(|n| !n.eq_ignore_ascii_case("background"))
    {
        names.insert(0, "background".into());
    }
    if names.len() < 2 {
        return Err(bad("no foreground class".into()));
    }
    if names.len() > 255 {
        return Err(bad(format!(
            "{} classes; at most 255 (label 255 means ignore)",
            names.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(d) = names.iter().find(|n| !seen.insert(n.to_lowercase())) {
        return Err(bad(format!("duplicate class name `{d}`")));
    }
    Ok(ClassMap::custom(names))
}

/// The dataset layouts [`open`] understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetKind {
    /// PASCAL VOC 2012 (+ SBD) devkit layout.
    Voc,
    /// COCO-2014 WSSS layout.
    Coco,
    /// Any folder of images.
    Folder,
}

impl FromStr for DatasetKind {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "voc" | "voc12" | "voc2012" | "pascal" => Ok(DatasetKind::Voc),
            "coco" | "coco14" | "coco2014" => Ok(DatasetKind::Coco),
            "folder" | "dir" | "images" => Ok(DatasetKind::Folder),
            _ => Err(CoreError::Invalid(format!(
                "unknown dataset kind `{s}` (expected voc, coco or folder)"
            ))),
        }
    }
}

/// Everything a CLI needs to open a dataset; serialisable so it can be written beside the
/// artifacts it produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetSpec {
    /// Layout.
    pub kind: DatasetKind,
    /// Root folder (`VOC2012/`, `coco/`, or the image folder).
    pub root: PathBuf,
    /// Split name (VOC: `train`, `val`, `train_aug`…; COCO: `train`/`val`); ignored by folders.
    #[serde(default)]
    pub split: Option<String>,
    /// Label file; `None` = the layout's automatic choice.
    #[serde(default)]
    pub labels: Option<PathBuf>,
    /// VOC only: ground-truth folder to use instead of the automatic choice.
    #[serde(default)]
    pub gt_dir: Option<PathBuf>,
    /// Classes: `voc`, `coco` or a class-list file; `None` = the layout's own (VOC for
    /// folders).
    #[serde(default)]
    pub classes: Option<String>,
}

impl DatasetSpec {
    /// A spec with automatic choices.
    pub fn new(kind: DatasetKind, root: impl Into<PathBuf>, split: Option<&str>) -> Self {
        DatasetSpec {
            kind,
            root: root.into(),
            split: split.map(str::to_string),
            labels: None,
            gt_dir: None,
            classes: None,
        }
    }

    /// The class map named by `classes`.
    pub fn class_map(&self) -> Result<ClassMap> {
        match self.classes.as_deref() {
            Some(s) if s.eq_ignore_ascii_case("voc") => Ok(ClassMap::voc()),
            Some(s) if s.eq_ignore_ascii_case("coco") => Ok(ClassMap::coco()),
            Some(p) => load_class_map(Path::new(p)),
            None if self.kind == DatasetKind::Coco => Ok(ClassMap::coco()),
            None => Ok(ClassMap::voc()),
        }
    }

    /// Opens the dataset.
    pub fn open(&self) -> Result<Dataset> {
        let labels = match &self.labels {
            Some(p) => LabelSource::File(p.clone()),
            None => LabelSource::Auto,
        };
        let split = || {
            self.split.as_deref().ok_or_else(|| {
                CoreError::Invalid(format!("{:?} dataset needs a split name", self.kind))
            })
        };
        let mut ds = match self.kind {
            DatasetKind::Voc => {
                let opts = VocOptions {
                    gt: self.gt_dir.clone().map_or(GtSource::Auto, GtSource::Dir),
                    labels,
                    list: None,
                    classes: self
                        .classes
                        .is_some()
                        .then(|| self.class_map())
                        .transpose()?,
                };
                voc(&self.root, split()?, &opts)?
            }
            DatasetKind::Coco => coco(&self.root, split()?, &CocoOptions { labels, list: None })?,
            DatasetKind::Folder => {
                return folder(&self.root, self.labels.as_deref(), self.class_map()?);
            }
        };
        if self.classes.is_some() && self.kind != DatasetKind::Voc {
            let classes = self.class_map()?;
            if classes.len() != ds.classes.len() {
                return Err(CoreError::Invalid(format!(
                    "class list has {} classes but the {:?} layout has {}",
                    classes.len(),
                    self.kind,
                    ds.classes.len()
                )));
            }
            ds.classes = classes;
        }
        Ok(ds)
    }
}

/// Opens a dataset of `kind` at `root` with automatic choices (see [`DatasetSpec`]).
pub fn open(kind: DatasetKind, root: &Path, split: &str) -> Result<Dataset> {
    DatasetSpec::new(kind, root, Some(split)).open()
}

/// Opens `split` of a VOC-layout dataset. A `classes.txt` at the root (the synthetic
/// benchmark) gives a custom class list with labels from `cls_labels.json`; otherwise it is
/// read as PASCAL VOC (§1.1).
pub fn open_split(root: &Path, split: &str) -> Result<Dataset> {
    let classes_file = root.join("classes.txt");
    if !classes_file.is_file() {
        return DatasetSpec::new(DatasetKind::Voc, root, Some(split)).open();
    }
    let classes: ClassMap = load_class_map(&classes_file)?;
    let labels = root.join("cls_labels.json");
    let all = folder::folder(
        &root.join("JPEGImages"),
        labels.is_file().then_some(labels.as_path()),
        classes,
    )?;
    let list = root
        .join("ImageSets")
        .join("Segmentation")
        .join(format!("{split}.txt"));
    let ids = read_id_list(&list)?;
    let mut items = Vec::with_capacity(ids.len());
    for (id, line) in ids {
        let mut it = all.get(&id).cloned().ok_or_else(|| {
            CoreError::format(&list, format!("line {line}: image `{id}` not found"))
        })?;
        let gt = root.join("SegmentationClass").join(format!("{id}.png"));
        it.gt = gt.is_file().then_some(gt);
        items.push(it);
    }
    Ok(Dataset {
        name: format!("{}:{split}", root.display()),
        classes: all.classes,
        items,
    })
}
