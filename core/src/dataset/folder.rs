//! Any folder of images (custom data, inference on a collection): recursive, sorted, with an
//! optional label file (§1.3 formats, see [`super::labels`]).
//!
//! Ids are relative paths without extension, `/`-separated, so outputs mirror the input tree.
//! Hidden files and folders (starting with `.`) are skipped; they include our own atomic-write
//! temporaries.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::labels::{read_label_table, where_};
use super::{Dataset, Item};
use crate::classes::ClassMap;
use crate::{CoreError, Result};

/// Image extensions picked up by [`folder`] (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "bmp", "tif", "tiff", "webp", "gif"];

/// Guards against symlink loops.
const MAX_DEPTH: usize = 64;

/// Relative path with `/` separators.
fn rel_string(rel: &Path) -> String {
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

fn walk(root: &Path, dir: &Path, depth: usize, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(CoreError::format(
            dir,
            "folder nesting too deep (symlink loop?)",
        ));
    }
    let rd = std::fs::read_dir(dir).map_err(|e| CoreError::io(dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| CoreError::io(dir, e))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        // metadata() follows symlinks, so linked folders and images are included.
        let meta = std::fs::metadata(&path).map_err(|e| CoreError::io(&path, e))?;
        if meta.is_dir() {
            walk(root, &path, depth + 1, out)?;
        } else if path.extension().is_some_and(|e| {
            let e = e.to_string_lossy().to_ascii_lowercase();
            IMAGE_EXTENSIONS.contains(&e.as_str())
        }) {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            out.push((rel_string(rel), path));
        }
    }
    Ok(())
}

/// All images under `root`, sorted by relative path: `(relative path, full path)`.
pub fn list_images(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    walk(root, root, 0, &mut out)?;
    out.sort();
    Ok(out)
}

/// The id of a relative path: the path without its extension.
fn id_of(rel: &str) -> String {
    match rel.rfind('.') {
        Some(dot) if !rel[dot..].contains('/') => rel[..dot].to_string(),
        _ => rel.to_string(),
    }
}

/// Opens the images under `root` with optional labels from `labels_file` (keys: relative
/// paths with or without extension). Images not in the label file get `labels: None`; an
/// entry naming no image is an error naming the file and line.
pub fn folder(root: &Path, labels_file: Option<&Path>, classes: ClassMap) -> Result<Dataset> {
    if !root.is_dir() {
        return Err(CoreError::io(
            root,
            std::io::Error::new(std::io::ErrorKind::NotFound, "image folder not found"),
        ));
    }
    let images = list_images(root)?;
    let mut items = Vec::with_capacity(images.len());
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for (rel, path) in images {
        let id = id_of(&rel);
        if let Some(&j) = by_id.get(&id) {
            let other: &Item = &items[j];
            return Err(CoreError::format(
                &path,
                format!(
                    "same id `{id}` as {} (outputs are named by id)",
                    other.image.display()
                ),
            ));
        }
        by_id.insert(id.clone(), items.len());
        items.push(Item {
            id,
            image: path,
            gt: None,
            labels: None,
        });
    }
    if let Some(lf) = labels_file {
        let t = read_label_table(lf, &classes)?;
        t.index_by(|k| id_of(&k.replace('\\', "/")))?;
        for e in &t.entries {
            let key = id_of(&e.key.replace('\\', "/"));
            let i = *by_id.get(&key).ok_or_else(|| {
                CoreError::format(
                    lf,
                    format!(
                        "{}: image `{}` not found under {}",
                        where_(e),
                        e.key,
                        root.display()
                    ),
                )
            })?;
            items[i].labels = Some(e.labels.clone());
        }
    }
    Ok(Dataset {
        name: format!("folder:{}", root.display()),
        classes,
        items,
    })
}
