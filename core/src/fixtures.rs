//! Locating the golden fixtures for parity tests.
//!
//! The fixture root comes from `SSC_FIXTURES`, else `shared/fixtures` beside the repository
//! root (`<repo>/../shared/fixtures`). Tests resolve it from their crate's
//! `CARGO_MANIFEST_DIR`, never from the working directory, and skip with a printed notice when
//! it is absent (a user's clone has no fixtures).

use std::path::{Path, PathBuf};

/// The fixture root for a crate whose manifest folder is `manifest_dir` (pass
/// `env!("CARGO_MANIFEST_DIR")`). Returns `None`, after printing a notice, when it is absent.
pub fn root(manifest_dir: &str) -> Option<PathBuf> {
    let root = match std::env::var_os("SSC_FIXTURES") {
        Some(p) => PathBuf::from(p),
        None => Path::new(manifest_dir)
            .parent()
            .map(|repo| repo.join("..").join("shared").join("fixtures"))?,
    };
    if root.is_dir() {
        Some(root)
    } else {
        eprintln!(
            "SKIP: fixture folder {} not found (set SSC_FIXTURES to run parity tests)",
            root.display()
        );
        None
    }
}

/// A fixture case folder (`<root>/<name>`), or `None` with a notice when it is missing.
pub fn case(manifest_dir: &str, name: &str) -> Option<PathBuf> {
    let dir = root(manifest_dir)?.join(name);
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIP: fixture case {} not found", dir.display());
        None
    }
}

/// The real VOC image/mask pairs (`<repo>/../shared/data/voc-samples`), if present.
pub fn voc_samples(manifest_dir: &str) -> Option<PathBuf> {
    let dir = match std::env::var_os("SSC_VOC_SAMPLES") {
        Some(p) => PathBuf::from(p),
        None => Path::new(manifest_dir)
            .parent()?
            .join("../shared/data/voc-samples"),
    };
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIP: VOC samples {} not found", dir.display());
        None
    }
}

/// The folder of downloaded ImageNet weights: `SSC_WEIGHTS`, else `<repo>/weights` (what
/// `scripts/get-weights.sh` fills).
pub fn weights_dir(manifest_dir: &str) -> PathBuf {
    match std::env::var_os("SSC_WEIGHTS") {
        Some(p) => PathBuf::from(p),
        None => Path::new(manifest_dir)
            .parent()
            .map_or_else(|| PathBuf::from("weights"), |repo| repo.join("weights")),
    }
}

/// A downloaded weights file (`<weights dir>/<name>`), or `None` with a notice saying how to
/// get it.
pub fn weights_file(manifest_dir: &str, name: &str) -> Option<PathBuf> {
    let p = weights_dir(manifest_dir).join(name);
    if p.is_file() {
        Some(p)
    } else {
        eprintln!(
            "SKIP: weights {} not found (run `bash scripts/get-weights.sh` to download them)",
            p.display()
        );
        None
    }
}

/// The real VOC subset (`<repo>/../shared/data/voc12-subset`, or `SSC_VOC12_SUBSET`), if
/// present.
pub fn voc12_subset(manifest_dir: &str) -> Option<PathBuf> {
    let dir = match std::env::var_os("SSC_VOC12_SUBSET") {
        Some(p) => PathBuf::from(p),
        None => Path::new(manifest_dir)
            .parent()?
            .join("../shared/data/voc12-subset"),
    };
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIP: VOC subset {} not found", dir.display());
        None
    }
}
