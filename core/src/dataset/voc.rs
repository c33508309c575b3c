//! PASCAL VOC 2012 + SBD devkit layout (§1.1) with image labels (§1.3).
//!
//! `root/JPEGImages/<id>.jpg`, `root/SegmentationClass/<id>.png` (palette PNGs),
//! `root/SegmentationClassAug/<id>.png` (grey PNGs), `root/ImageSets/Segmentation/<split>.txt`.
//! `train_aug` and `trainaug` name the same split (the SSC stages disagree on the spelling).

use std::path::{Path, PathBuf};

use super::labels::read_label_table;
use super::{Dataset, Item, LabelSource, labels_from_gt, read_id_list};
use crate::classes::ClassMap;
use crate::{CoreError, Result};

/// Which ground-truth masks to attach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum GtSource {
    /// `SegmentationClassAug/<id>.png` when it exists, else `SegmentationClass/<id>.png` when
    /// it exists, else none.
    #[default]
    Auto,
    /// `SegmentationClass` only; every id must have a mask.
    Class,
    /// `SegmentationClassAug` only; every id must have a mask.
    Aug,
    /// Another folder of `<id>.png` (e.g. pseudo labels); every id must have a mask.
    Dir(PathBuf),
    /// No masks.
    None,
}

/// Options of [`voc`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VocOptions {
    /// Ground-truth masks.
    pub gt: GtSource,
    /// Image labels; `Auto` = `root/cls_labels.npy` if present, else from the GT masks when
    /// every id has one, else none.
    pub labels: LabelSource,
    /// A list file to use instead of `ImageSets/Segmentation/<split>.txt`.
    pub list: Option<PathBuf>,
}

/// The list file of `split`, trying the `train_aug`/`trainaug` alias.
fn split_list(root: &Path, split: &str) -> Result<PathBuf> {
    let dir = root.join("ImageSets").join("Segmentation");
    let mut names = vec![split.to_string()];
    match split {
        "train_aug" => names.push("trainaug".into()),
        "trainaug" => names.push("train_aug".into()),
        _ => {}
    }
    names
        .iter()
        .map(|n| dir.join(format!("{n}.txt")))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            let p = dir.join(format!("{split}.txt"));
            CoreError::io(
                p,
                std::io::Error::new(std::io::ErrorKind::NotFound, "split list not found"),
            )
        })
}

/// Opens split `split` of the VOC devkit at `root`.
pub fn voc(root: &Path, split: &str, opts: &VocOptions) -> Result<Dataset> {
    let classes = ClassMap::voc();
    let list = match &opts.list {
        Some(p) => p.clone(),
        None => split_list(root, split)?,
    };
    let ids = read_id_list(&list)?;
    let jpeg = root.join("JPEGImages");
    let class_dir = root.join("SegmentationClass");
    let aug_dir = root.join("SegmentationClassAug");
    let mut items = Vec::with_capacity(ids.len());
    for (id, line) in &ids {
        let image = jpeg.join(format!("{id}.jpg"));
        if !image.is_file() {
            return Err(CoreError::format(
                &list,
                format!("line {line}: image {} not found", image.display()),
            ));
        }
        let required = |dir: &Path| -> Result<Option<PathBuf>> {
            let p = dir.join(format!("{id}.png"));
            if p.is_file() {
                Ok(Some(p))
            } else {
                Err(CoreError::format(
                    &list,
                    format!("line {line}: mask {} not found", p.display()),
                ))
            }
        };
        let gt = match &opts.gt {
            GtSource::Auto => [&aug_dir, &class_dir]
                .iter()
                .map(|d| d.join(format!("{id}.png")))
                .find(|p| p.is_file()),
            GtSource::Class => required(&class_dir)?,
            GtSource::Aug => required(&aug_dir)?,
            GtSource::Dir(d) => required(d)?,
            GtSource::None => None,
        };
        items.push(Item {
            id: id.clone(),
            image,
            gt,
            labels: None,
        });
    }
    let source = match &opts.labels {
        LabelSource::Auto => {
            let npy = root.join("cls_labels.npy");
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
        LabelSource::File(p) => attach_table(&mut items, &p, &list, &classes)?,
        LabelSource::FromGt => {
            tracing::info!("deriving image labels of {} from GT masks", list.display());
            labels_from_gt(&mut items, &classes)?
        }
        LabelSource::None | LabelSource::Auto => {}
    }
    Ok(Dataset {
        name: format!("voc:{split}"),
        classes,
        items,
    })
}

/// VOC key normalisation: file name without folder and extension, IRN integers get their `_`.
fn voc_key(k: &str) -> String {
    let stem = Path::new(k)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(k);
    if stem.len() == 10 && stem.bytes().all(|b| b.is_ascii_digit()) {
        format!("{}_{}", &stem[..4], &stem[4..])
    } else {
        stem.to_string()
    }
}

fn attach_table(items: &mut [Item], table: &Path, list: &Path, classes: &ClassMap) -> Result<()> {
    let t = read_label_table(table, classes)?;
    let index = t.index_by(voc_key)?;
    for it in items.iter_mut() {
        let e = index.get(&it.id).ok_or_else(|| {
            CoreError::format(
                table,
                format!("no labels for `{}` (listed in {})", it.id, list.display()),
            )
        })?;
        it.labels = Some(t.entries[*e].labels.clone());
    }
    tracing::debug!(
        "labels from {} ({} entries)",
        table.display(),
        t.entries.len()
    );
    Ok(())
}
