//! `ssc-convert`: a folder of label masks (§1.2 label maps) to annotation-tool formats (VOC
//! palette PNGs, CVAT "Segmentation mask 1.1" zip, COCO JSON, Label Studio tasks + config),
//! through the shared output sink `ssc_inference::outputs` (the streaming `ssc_core::formats`
//! writers).
//!
//! Masks are read one at a time and handed to every requested writer, so memory stays flat
//! whatever the folder size. A bad mask (unreadable, unknown colour or class value, size
//! differing from its image, no image) is skipped and listed at the end, and the run exits
//! non-zero; every output appears atomically.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Parser;
use ssc_core::classes::ClassMap;
use ssc_core::formats::MaskSource;
use ssc_core::mask::{check_values, read_mask};
use ssc_inference::batch::Shard;
use ssc_inference::outputs::{OutputPaths, Outputs};
use ssc_tools::args::FormatArgs;

#[derive(Parser)]
#[command(
    name = "ssc-convert",
    version,
    about = "Convert a folder of label masks to VOC, CVAT, COCO and Label Studio formats"
)]
struct Cli {
    /// Folder of label masks `<id>.png` (palette, grey or colour PNG).
    #[arg(long)]
    masks: PathBuf,
    /// Folder of the images (searched recursively); gives each mask's image path and checks
    /// its size. Without it, images are referenced as `<id>.jpg`.
    #[arg(long)]
    images: Option<PathBuf>,
    /// Class list: `voc`, `coco` or a file (one name per line or a JSON list).
    #[arg(long, default_value = "voc")]
    classes: String,
    /// Output folder: `voc/` (SegmentationClass PNGs, classes.txt, ImageSets list),
    /// `cvat.zip`, `coco.json`, `labelstudio-tasks.json` + `labelstudio-config.xml`.
    #[arg(long)]
    out: PathBuf,
    /// Output formats (`--to` is the same as `--format`).
    #[command(flatten)]
    formats: FormatArgs,
}

/// Mask files `<id>.png` of `dir`, sorted by id.
fn list_masks(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = e
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        let is_png = path
            .extension()
            .is_some_and(|x| x.eq_ignore_ascii_case("png"));
        if is_png && let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
            out.push((stem.to_string(), path));
        }
    }
    out.sort();
    Ok(out)
}

/// Images under `dir` by id (file stem): `(relative path, full path)`.
fn index_images(dir: &Path) -> Result<HashMap<String, (String, PathBuf)>> {
    let mut out = HashMap::new();
    for (rel, full) in ssc_core::dataset::folder::list_images(dir)? {
        let stem = full
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        // the first (sorted) path wins when two images share a stem
        out.entry(stem).or_insert((rel, full));
    }
    Ok(out)
}

/// Reads and checks one mask into a [`MaskSource`].
fn load(
    id: &str,
    path: &Path,
    classes: &ClassMap,
    images: Option<&HashMap<String, (String, PathBuf)>>,
) -> Result<MaskSource> {
    let map = read_mask(path, classes)?;
    check_values(&map, classes, path)?;
    let mut image = format!("{id}.jpg");
    if let Some(images) = images {
        let Some((rel, full)) = images.get(id) else {
            bail!("{}: no image with id {id}", path.display());
        };
        let (w, h) = ssc_core::imageio::image_size(full)?;
        if (w as usize, h as usize) != (map.width, map.height) {
            bail!(
                "{}: mask is {}x{} but its image {} is {w}x{h}",
                path.display(),
                map.width,
                map.height,
                full.display()
            );
        }
        image = rel.clone();
    }
    let (w, h) = (u32::try_from(map.width)?, u32::try_from(map.height)?);
    Ok(MaskSource::new(id, w, h, map.data)?.with_image(image))
}

fn run(cli: Cli) -> Result<()> {
    let classes = ssc_tools::class_map(&cli.classes)?;
    let masks = list_masks(&cli.masks)?;
    if masks.is_empty() {
        bail!("{}: no mask PNGs found", cli.masks.display());
    }
    let images = cli.images.as_deref().map(index_images).transpose()?;
    std::fs::create_dir_all(&cli.out).with_context(|| format!("creating {}", cli.out.display()))?;
    let voc = cli.out.join("voc");
    let paths = OutputPaths {
        masks: voc.join("SegmentationClass"),
        files: cli.out.clone(),
        voc_root: Some(voc),
        shard: Shard::ALL,
    };
    let outputs = Outputs::create(paths, &classes, &cli.formats.options())?;
    let bar = ssc_tools::progress(masks.len() as u64, "converting");
    let mut bad: Vec<String> = Vec::new();
    for (id, path) in &masks {
        bar.inc(1);
        let added = load(id, path, &classes, images.as_ref())
            .and_then(|m| outputs.add(m).with_context(|| path.display().to_string()));
        if let Err(e) = added {
            bad.push(format!("{e:#}"));
        }
    }
    bar.finish_and_clear();
    let finished = outputs.finish()?;
    bad.extend(
        finished
            .failures
            .iter()
            .map(|f| format!("{}: {}", f.id, f.message)),
    );
    let good = masks.len() - bad.len();
    tracing::info!("{good} masks written to {}", cli.out.display());
    if !bad.is_empty() {
        for b in &bad {
            eprintln!("bad mask: {b}");
        }
        bail!(
            "{} of {} masks could not be converted",
            bad.len(),
            masks.len()
        );
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    ssc_tools::run_main(|| run(Cli::parse()))
}
