//! `ssc-convert`: a folder of label masks (§1.2 label maps) to annotation-tool formats (VOC
//! palette PNGs, CVAT "Segmentation mask 1.1" zip, COCO JSON, Label Studio tasks + config),
//! through the streaming `ssc_core::formats` writers.
//!
//! Masks are read one at a time and handed to every requested writer, so memory stays flat
//! whatever the folder size. A bad mask (unreadable, unknown colour or class value, size
//! differing from its image, no image) is skipped and listed at the end, and the run exits
//! non-zero; every output appears atomically.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use ssc_core::classes::ClassMap;
use ssc_core::formats::coco::{CocoMode, CocoOptions, CocoWriter};
use ssc_core::formats::cvat::{CvatOptions, CvatWriter, IgnoreAs};
use ssc_core::formats::labelstudio::{
    LabelStudioOptions, LabelStudioWriter, write_labeling_config,
};
use ssc_core::formats::{MaskSource, MaskWriter};
use ssc_core::mask::{LabelMap, check_values, read_mask, write_palette_png};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// `voc/SegmentationClass/<id>.png` palette PNGs, `voc/classes.txt`, id list.
    Voc,
    /// `cvat.zip` (CVAT "Segmentation mask 1.1").
    Cvat,
    /// `coco.json` (COCO dataset JSON with RLE segmentations).
    Coco,
    /// `labelstudio-tasks.json` (brush-RLE predictions) and `labelstudio-config.xml`.
    Labelstudio,
}

#[derive(Clone, Copy, ValueEnum)]
enum CocoModeArg {
    /// One crowd annotation per class present in an image.
    Class,
    /// One annotation per connected component.
    Instance,
}

#[derive(Clone, Copy, ValueEnum)]
enum IgnoreArg {
    /// Paint ignore pixels (255) as background.
    Background,
    /// Declare an `ignore` label in the VOC void colour (read back as 255).
    Label,
}

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
    /// Output formats (repeat or separate with commas).
    #[arg(long = "to", value_enum, value_delimiter = ',', required = true)]
    to: Vec<Format>,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// COCO annotations per class or per connected instance.
    #[arg(long, value_enum, default_value = "class")]
    coco_mode: CocoModeArg,
    /// How CVAT zips carry ignore pixels.
    #[arg(long, value_enum, default_value = "background")]
    cvat_ignore: IgnoreArg,
    /// Label Studio: prefix of `data.image` (local-files serving by default).
    #[arg(long, default_value = "/data/local-files/?d=")]
    image_prefix: String,
    /// Label Studio: name of the BrushLabels control.
    #[arg(long, default_value = "tag")]
    from_name: String,
    /// Label Studio: name of the Image object.
    #[arg(long, default_value = "image")]
    to_name: String,
    /// Label Studio: `model_version` of the predictions.
    #[arg(long, default_value = "ssc")]
    model_version: String,
}

/// The VOC "writer": palette PNGs under `SegmentationClass` plus the class list and id list,
/// the id list written last so a complete folder is recognisable.
struct VocWriter {
    root: PathBuf,
    classes: ClassMap,
    ids: Vec<String>,
}

impl VocWriter {
    fn begin(root: &Path, classes: &ClassMap) -> Result<Self> {
        let dir = root.join("SegmentationClass");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(VocWriter {
            root: root.to_path_buf(),
            classes: classes.clone(),
            ids: Vec::new(),
        })
    }
}

impl MaskWriter for VocWriter {
    fn add(&mut self, m: &MaskSource) -> ssc_core::Result<()> {
        m.present_classes(&self.classes)?;
        let map = LabelMap::new(m.width as usize, m.height as usize, m.labels.clone())?;
        let path = self
            .root
            .join("SegmentationClass")
            .join(format!("{}.png", m.id));
        write_palette_png(&path, &map, &self.classes)?;
        self.ids.push(m.id.clone());
        Ok(())
    }

    fn finish(&mut self) -> ssc_core::Result<()> {
        let names = self.classes.names.join("\n") + "\n";
        ssc_core::atomic::write(&self.root.join("classes.txt"), names.as_bytes())?;
        let list = self.root.join("ImageSets/Segmentation");
        std::fs::create_dir_all(&list).map_err(|e| ssc_core::CoreError::io(&list, e))?;
        let ids = self.ids.join("\n") + "\n";
        ssc_core::atomic::write(&list.join("default.txt"), ids.as_bytes())
    }
}

/// Opens one writer per requested format (duplicates collapsed).
fn writers(cli: &Cli, classes: &ClassMap) -> Result<Vec<(Format, Box<dyn MaskWriter>)>> {
    let mut seen = Vec::new();
    let mut out: Vec<(Format, Box<dyn MaskWriter>)> = Vec::new();
    for &f in &cli.to {
        if seen.contains(&f) {
            continue;
        }
        seen.push(f);
        let w: Box<dyn MaskWriter> = match f {
            Format::Voc => Box::new(VocWriter::begin(&cli.out.join("voc"), classes)?),
            Format::Cvat => {
                let opts = CvatOptions {
                    ignore: match cli.cvat_ignore {
                        IgnoreArg::Background => IgnoreAs::Background,
                        IgnoreArg::Label => IgnoreAs::Label,
                    },
                    ..Default::default()
                };
                Box::new(CvatWriter::begin(&cli.out.join("cvat.zip"), classes, opts)?)
            }
            Format::Coco => {
                let opts = CocoOptions {
                    mode: match cli.coco_mode {
                        CocoModeArg::Class => CocoMode::PerClass,
                        CocoModeArg::Instance => CocoMode::PerInstance,
                    },
                    ..Default::default()
                };
                Box::new(CocoWriter::begin(
                    &cli.out.join("coco.json"),
                    classes,
                    opts,
                )?)
            }
            Format::Labelstudio => {
                let opts = ls_options(cli);
                write_labeling_config(&cli.out.join("labelstudio-config.xml"), classes, &opts)?;
                let path = cli.out.join("labelstudio-tasks.json");
                Box::new(LabelStudioWriter::begin(&path, classes, opts)?)
            }
        };
        out.push((f, w));
    }
    Ok(out)
}

fn ls_options(cli: &Cli) -> LabelStudioOptions {
    LabelStudioOptions {
        image_prefix: cli.image_prefix.clone(),
        from_name: cli.from_name.clone(),
        to_name: cli.to_name.clone(),
        model_version: cli.model_version.clone(),
    }
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
    let mut writers = writers(&cli, &classes)?;
    let bar = ssc_tools::progress(masks.len() as u64, "converting");
    let mut bad: Vec<String> = Vec::new();
    let mut failed = 0usize;
    for (id, path) in &masks {
        bar.inc(1);
        let before = bad.len();
        match load(id, path, &classes, images.as_ref()) {
            Ok(m) => {
                for (f, w) in &mut writers {
                    if let Err(e) = w.add(&m) {
                        let name = f.to_possible_value().map(|v| v.get_name().to_string());
                        bad.push(format!(
                            "{} ({}): {e}",
                            path.display(),
                            name.unwrap_or_default()
                        ));
                    }
                }
            }
            Err(e) => bad.push(format!("{e:#}")),
        }
        failed += usize::from(bad.len() > before);
    }
    bar.finish_and_clear();
    for (_, w) in &mut writers {
        w.finish()?;
    }
    let good = masks.len() - failed;
    tracing::info!("{good} masks written to {}", cli.out.display());
    if !bad.is_empty() {
        for b in &bad {
            eprintln!("bad mask: {b}");
        }
        bail!("{failed} of {} masks could not be converted", masks.len());
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    ssc_tools::run_main(|| run(Cli::parse()))
}
