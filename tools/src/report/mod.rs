//! `ssc-report`: one self-contained HTML page about a run folder of the main job or the
//! real-data job (or any folder laid out like them).
//!
//! What it reads, each only when present (nothing is required, so a run without ground truth
//! or stopped early still gets a page):
//! * `stages.tsv` (stage, wall seconds, command; written by `scripts/main-job.sh` and
//!   `scripts/voc-job.sh`);
//! * `eval-baseline.json`, `eval-cams.json`, `eval-pseudo.json`, `eval-seg.json` (`ssc-eval
//!   --json`) and `ir-labels.txt` (the IR-label stage's precision line);
//! * trainer folders (any sub-folder with a `config.json`) and their `train-log.jsonl`
//!   ([`ssc_training::run::LOG_FILE`]);
//! * the CAM folder (the one with `cams.json`), the pseudo-mask folder (`pseudo.json`),
//!   prediction folders (`predict.json`) and the IR labels (`ir_labels/` or `ir/`);
//! * photographs and ground truth from a VOC-layout root: `--gt ROOT`, else the dataset root
//!   recorded in `cams.json` / `pseudo.json` (pictures only, no scores).
//!
//! Charts come from `plotters` (SVG, inlined); pictures are PNG (label maps) or JPEG
//! (photographs, heat maps) `data:` URIs; there is no script, stylesheet, font or image link,
//! so the file opens anywhere, offline.

pub mod charts;
pub mod pictures;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use image::RgbImage;
use rayon::prelude::*;
use serde_json::Value;
use ssc_core::cam::CamRecord;
use ssc_core::classes::ClassMap;
use ssc_core::mask::read_mask;
use ssc_training::run::{LOG_FILE, LogRecord, read_log};

use charts::Series;

/// Name of the page in the run folder.
pub const REPORT_FILE: &str = "report.html";

/// What to put in the page.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// The run folder.
    pub run: PathBuf,
    /// VOC-layout root with `JPEGImages/` and `SegmentationClass[Aug]/` (scores per image).
    pub gt: Option<PathBuf>,
    /// Images per picture grid.
    pub images: usize,
    /// Long side of each picture in pixels.
    pub thumb: u32,
    /// Output file (default `<run>/report.html`).
    pub out: Option<PathBuf>,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct ReportSummary {
    /// The page.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: usize,
    /// Embedded pictures.
    pub pictures: usize,
    /// Embedded charts.
    pub charts: usize,
    /// Things that were present but could not be shown (named file and reason).
    pub warnings: Vec<String>,
}

/// The stage folders found in a run.
#[derive(Debug, Default)]
struct Layout {
    cams: Option<(PathBuf, Value)>,
    pseudo: Option<(PathBuf, Value)>,
    preds: Vec<(PathBuf, Value)>,
    ir: Option<PathBuf>,
    trainers: Vec<PathBuf>,
}

fn read_json(path: &Path) -> Result<Value> {
    let s = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&s).with_context(|| format!("{}: not valid JSON", path.display()))
}

fn sorted_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}

fn layout(run: &Path, warnings: &mut Vec<String>) -> Result<Layout> {
    let mut l = Layout::default();
    for dir in sorted_dir(run)?.into_iter().filter(|p| p.is_dir()) {
        let meta = |name: &str| -> Option<Value> {
            let p = dir.join(name);
            p.is_file().then(|| read_json(&p)).and_then(|r| match r {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::warn!("{e:#}");
                    None
                }
            })
        };
        if let Some(v) = meta("cams.json") {
            l.cams = Some((dir.clone(), v));
        } else if let Some(v) = meta("pseudo.json") {
            l.pseudo = Some((dir.clone(), v));
        } else if let Some(v) = meta("predict.json") {
            l.preds.push((dir.clone(), v));
        } else if dir.join("config.json").is_file() {
            l.trainers.push(dir.clone());
        }
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if matches!(name, "ir_labels" | "ir-labels" | "ir") && l.ir.is_none() {
            l.ir = Some(dir.clone());
        }
    }
    for f in ["eval-cams.json", "eval-pseudo.json"] {
        if run.join(f).is_file() && read_json(&run.join(f)).is_err() {
            warnings.push(format!("{}: not valid JSON", run.join(f).display()));
        }
    }
    Ok(l)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{:.2} %", v * 100.0))
        .unwrap_or_else(|| "–".into())
}

/// The photograph of `id` under a VOC-layout root.
fn photo_path(root: &Path, id: &str) -> Option<PathBuf> {
    ["jpg", "jpeg", "png", "JPG", "JPEG", "PNG"]
        .iter()
        .map(|e| root.join("JPEGImages").join(format!("{id}.{e}")))
        .find(|p| p.is_file())
}

/// The ground-truth mask of `id` (`SegmentationClassAug` first, as the dataset reader does).
fn gt_path(root: &Path, id: &str) -> Option<PathBuf> {
    ["SegmentationClassAug", "SegmentationClass"]
        .iter()
        .map(|d| root.join(d).join(format!("{id}.png")))
        .find(|p| p.is_file())
}

/// PNG stems of a folder, sorted.
fn png_ids(dir: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .filter_map(|p| p.file_stem().and_then(|s| s.to_str()).map(String::from))
        .collect();
    ids.sort();
    ids
}

/// A path recorded in a stage's metadata, as given (relative to where the job ran) or, when
/// that does not exist, relative to the run folder's parent.
fn recorded_root(meta: &Value, run: &Path) -> Option<PathBuf> {
    let root = PathBuf::from(meta.get("dataset")?.get("root")?.as_str()?);
    if root.is_dir() {
        return Some(root);
    }
    let alt = run.parent()?.join(root.file_name()?);
    alt.is_dir().then_some(alt)
}

/// The class map: ground truth's `classes.txt`, else an evaluation's class names, else the
/// CAM or prediction metadata, else VOC.
fn classes(root: Option<&Path>, run: &Path, l: &Layout) -> ClassMap {
    if let Some(c) = root
        .map(|r| r.join("classes.txt"))
        .filter(|p| p.is_file())
        .and_then(|p| ssc_core::dataset::load_class_map(&p).ok())
    {
        return c;
    }
    let names = |v: &Value, key: &str| -> Option<Vec<String>> {
        v.get(key)?
            .as_array()?
            .iter()
            .map(|n| n.as_str().map(String::from))
            .collect()
    };
    for f in ["eval-pseudo.json", "eval-seg.json", "eval-cams.json"] {
        if let Ok(v) = read_json(&run.join(f))
            && let Some(n) = names(&v, "class_names").or_else(|| names(&v, "classes"))
        {
            return ClassMap::custom(n);
        }
    }
    if let Some(n) = l.preds.first().and_then(|(_, v)| names(v, "class_names")) {
        return ClassMap::custom(n);
    }
    if let Some(mut fg) = l.cams.as_ref().and_then(|(_, v)| names(v, "class_names")) {
        fg.insert(0, "background".into());
        return ClassMap::custom(fg);
    }
    ClassMap::voc()
}

/// The page under construction.
struct Page {
    body: String,
    pictures: usize,
    charts: usize,
    warnings: Vec<String>,
}

impl Page {
    fn h2(&mut self, title: &str, anchor: &str) {
        let _ = writeln!(self.body, "<h2 id=\"{anchor}\">{}</h2>", esc(title));
    }

    fn chart(&mut self, svg: std::result::Result<String, String>, what: &str) {
        match svg {
            Ok(s) => {
                // Inline SVG needs no XML declaration.
                let s = match s.find("<svg") {
                    Some(i) => &s[i..],
                    None => &s,
                };
                let _ = writeln!(self.body, "<div class=\"chart\">{s}</div>");
                self.charts += 1;
            }
            Err(e) => self.warnings.push(format!("chart {what}: {e}")),
        }
    }

    fn picture(&mut self, img: &RgbImage, jpeg: bool, caption: &str) -> String {
        match pictures::data_uri(img, jpeg) {
            Ok(uri) => {
                self.pictures += 1;
                format!(
                    "<figure><img src=\"{uri}\" width=\"{}\" height=\"{}\" alt=\"{c}\" \
                     title=\"{c}\"><figcaption>{c}</figcaption></figure>",
                    img.width(),
                    img.height(),
                    c = esc(caption)
                )
            }
            Err(e) => {
                self.warnings.push(format!("{caption}: {e}"));
                String::new()
            }
        }
    }
}

/// One evaluation file's headline numbers.
struct EvalRow {
    label: String,
    miou: Option<f64>,
    subset: Option<f64>,
    covered: Option<f64>,
    spilled: Option<f64>,
    names: Vec<String>,
    per_class: Vec<Option<f64>>,
    subset_names: Vec<String>,
}

fn eval_row(label: &str, v: &Value, cams: bool) -> EvalRow {
    let f = |k: &str| v.get(k).and_then(Value::as_f64);
    let list = |k: &str| -> Vec<String> {
        v.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|n| n.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let per_class = |k: &str| -> Vec<Option<f64>> {
        v.get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().map(Value::as_f64).collect())
            .unwrap_or_default()
    };
    if cams {
        let thr = v
            .get("best")
            .and_then(|b| b.get("threshold"))
            .and_then(Value::as_f64);
        EvalRow {
            label: match thr {
                Some(t) => format!("{label} (best threshold {t:.2})"),
                None => label.into(),
            },
            miou: v
                .get("best")
                .and_then(|b| b.get("miou"))
                .and_then(Value::as_f64),
            subset: f("subset_miou_at_best"),
            covered: f("object_coverage_at_best"),
            spilled: f("background_spill_at_best"),
            names: list("classes"),
            per_class: per_class("per_class_iou_at_best"),
            subset_names: list("subset"),
        }
    } else {
        EvalRow {
            label: label.into(),
            miou: f("miou"),
            subset: f("subset_miou"),
            covered: f("object_coverage"),
            spilled: f("background_spill"),
            names: list("class_names"),
            per_class: per_class("per_class_iou"),
            subset_names: list("subset"),
        }
    }
}

fn results_section(page: &mut Page, run: &Path, classes: &ClassMap) {
    let known = [
        ("eval-baseline.json", "all-background baseline", false),
        ("eval-cams.json", "CAM seeds", true),
        ("eval-pseudo.json", "pseudo-masks (IRN random walk)", false),
        (
            "eval-seg.json",
            "segmentation (DeepLabV2 predictions)",
            false,
        ),
    ];
    let mut rows = Vec::new();
    for (file, label, cams) in known {
        let p = run.join(file);
        if !p.is_file() {
            continue;
        }
        match read_json(&p) {
            Ok(v) => rows.push(eval_row(label, &v, cams)),
            Err(e) => page.warnings.push(format!("{e:#}")),
        }
    }
    let ir = std::fs::read_to_string(run.join("ir-labels.txt"))
        .ok()
        .and_then(|s| {
            s.lines()
                .rev()
                .find(|l| l.contains("precision"))
                .map(str::to_string)
        });
    let stages = read_stages(&run.join("stages.tsv"), &mut page.warnings);
    if rows.is_empty() && ir.is_none() && stages.is_empty() {
        return;
    }
    page.h2("Results per stage", "results");
    if !rows.is_empty() || ir.is_some() {
        let with_subset = rows.iter().any(|r| r.subset.is_some());
        page.body
            .push_str("<table><tr><th>result</th><th>mIoU</th>");
        if with_subset {
            page.body.push_str("<th>mIoU (subset)</th>");
        }
        page.body
            .push_str("<th>objects covered</th><th>background spilled</th></tr>\n");
        for r in &rows {
            let _ = write!(
                page.body,
                "<tr><td>{}</td><td class=\"num\">{}</td>",
                esc(&r.label),
                pct(r.miou)
            );
            if with_subset {
                let _ = write!(page.body, "<td class=\"num\">{}</td>", pct(r.subset));
            }
            let _ = writeln!(
                page.body,
                "<td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                pct(r.covered),
                pct(r.spilled)
            );
        }
        if let Some(ir) = &ir {
            let _ = writeln!(
                page.body,
                "<tr><td>IR labels</td><td colspan=\"{}\">{}</td></tr>",
                if with_subset { 4 } else { 3 },
                esc(ir.trim())
            );
        }
        page.body.push_str("</table>\n");
        if let Some(r) = rows.iter().find(|r| !r.subset_names.is_empty()) {
            let _ = writeln!(
                page.body,
                "<p class=\"note\">subset: {}</p>",
                esc(&r.subset_names.join(", "))
            );
        }
    }
    if !stages.is_empty() {
        let total: f64 = stages.iter().map(|s| s.1).sum();
        page.body
            .push_str("<table><tr><th>stage</th><th>wall time (s)</th></tr>\n");
        for (name, secs, _) in &stages {
            let _ = writeln!(
                page.body,
                "<tr><td>{}</td><td class=\"num\">{secs:.1}</td></tr>",
                esc(name)
            );
        }
        let _ = writeln!(
            page.body,
            "<tr><th>total</th><th class=\"num\">{total:.1}</th></tr></table>"
        );
    }
    // The all-background baseline's bars say nothing a reader does not know.
    let scored: Vec<&EvalRow> = rows
        .iter()
        .skip_while(|r| r.label == "all-background baseline")
        .filter(|r| r.per_class.iter().any(Option::is_some))
        .collect();
    if !scored.is_empty() {
        page.h2("IoU per class", "per-class");
        page.body.push_str("<div class=\"row\">");
        for r in scored {
            let names = if r.names.len() == r.per_class.len() {
                r.names.clone()
            } else {
                classes.names.clone()
            };
            page.chart(
                charts::class_bars(&r.label, &names, &r.per_class, &classes.colors),
                &r.label,
            );
        }
        page.body.push_str("</div>\n");
    }
    if let Ok(v) = read_json(&run.join("eval-cams.json"))
        && let Some(points) = v.get("points").and_then(Value::as_array)
    {
        let pts: Vec<(f64, f64)> = points
            .iter()
            .filter_map(|p| {
                Some((
                    p.get("threshold")?.as_f64()?,
                    p.get("miou")?.as_f64()? * 100.0,
                ))
            })
            .collect();
        if pts.len() > 1 {
            page.chart(
                charts::lines(
                    "CAM seeds: mIoU against the background threshold",
                    "background threshold",
                    "mIoU %",
                    &[Series {
                        name: "mIoU".into(),
                        points: pts,
                        markers: true,
                        faint: false,
                    }],
                    (460, 260),
                ),
                "threshold sweep",
            );
        }
    }
}

/// `stages.tsv`: `name \t seconds \t command` per line.
fn read_stages(path: &Path, warnings: &mut Vec<String>) -> Vec<(String, f64, String)> {
    let Ok(s) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, line) in s.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let mut f = line.splitn(3, '\t');
        let (name, secs, cmd) = (f.next(), f.next(), f.next());
        match (name, secs.and_then(|s| s.trim().parse::<f64>().ok())) {
            (Some(n), Some(t)) => out.push((n.to_string(), t, cmd.unwrap_or("").to_string())),
            _ => warnings.push(format!(
                "{} line {}: expected `stage<TAB>seconds<TAB>command`",
                path.display(),
                i + 1
            )),
        }
    }
    out
}

fn training_section(page: &mut Page, trainers: &[PathBuf]) {
    let mut first = true;
    for dir in trainers {
        let log_path = dir.join(LOG_FILE);
        if !log_path.is_file() {
            continue;
        }
        let log = match read_log(&log_path) {
            Ok(l) => l,
            Err(e) => {
                page.warnings.push(e.to_string());
                continue;
            }
        };
        if first {
            page.h2("Training", "training");
            first = false;
        }
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("run");
        let (mut steps, mut epochs): (BTreeMap<String, Vec<(f64, f64)>>, _) =
            (BTreeMap::new(), BTreeMap::<String, Vec<(f64, f64)>>::new());
        let mut table = Vec::new();
        let mut val = Vec::new();
        for r in &log {
            match r {
                LogRecord::Step {
                    iteration, terms, ..
                } => {
                    for (k, v) in terms {
                        steps
                            .entry(k.clone())
                            .or_default()
                            .push((*iteration as f64, *v));
                    }
                }
                LogRecord::Epoch {
                    epoch,
                    iteration,
                    terms,
                    val_miou,
                    seconds_per_step,
                } => {
                    for (k, v) in terms {
                        epochs
                            .entry(k.clone())
                            .or_default()
                            .push((*iteration as f64, *v));
                    }
                    if let Some(m) = val_miou {
                        val.push((*epoch as f64, m * 100.0));
                    }
                    table.push((*epoch, terms.clone(), *val_miou, *seconds_per_step));
                }
            }
        }
        let _ = writeln!(page.body, "<h3>{}</h3><div class=\"row\">", esc(name));
        for (term, pts) in &steps {
            // A term the variant does not train (the baseline's perceptual loss) stays 0.
            if pts.iter().all(|p| p.1 == 0.0) {
                continue;
            }
            let mut series = vec![Series {
                name: "per step".into(),
                points: pts.clone(),
                markers: false,
                faint: true,
            }];
            if let Some(e) = epochs.get(term) {
                series.push(Series {
                    name: "epoch mean".into(),
                    points: e.clone(),
                    markers: true,
                    faint: false,
                });
            }
            page.chart(
                charts::lines(
                    &format!("{name}: {term}"),
                    "iteration",
                    "loss",
                    &series,
                    (340, 230),
                ),
                term,
            );
        }
        if !val.is_empty() {
            page.chart(
                charts::lines(
                    &format!("{name}: validation mIoU"),
                    "epoch",
                    "mIoU %",
                    &[Series {
                        name: "val mIoU".into(),
                        points: val,
                        markers: true,
                        faint: false,
                    }],
                    (340, 230),
                ),
                "validation",
            );
        }
        page.body.push_str("</div>\n");
        if let Some((_, terms, _, _)) = table.first() {
            page.body.push_str("<table><tr><th>epoch</th>");
            for k in terms.keys() {
                let _ = write!(page.body, "<th>{}</th>", esc(k));
            }
            page.body
                .push_str("<th>val mIoU</th><th>s per step</th></tr>\n");
            for (e, terms, v, sps) in &table {
                let _ = write!(page.body, "<tr><td class=\"num\">{e}</td>");
                for t in terms.values() {
                    let _ = write!(page.body, "<td class=\"num\">{t:.4}</td>");
                }
                let _ = writeln!(
                    page.body,
                    "<td class=\"num\">{}</td><td class=\"num\">{sps:.3}</td></tr>",
                    pct(*v)
                );
            }
            page.body.push_str("</table>\n");
        }
    }
}

/// The images of one grid, best first, with their IoU when ground truth scores them.
fn pick(
    ids: &[String],
    mask_dir: &Path,
    gt_root: Option<&Path>,
    classes: &ClassMap,
    n: usize,
) -> (Vec<(String, Option<f64>)>, usize) {
    if let Some(root) = gt_root {
        let mut scored: Vec<(String, f64)> = ids
            .par_iter()
            .filter_map(|id| {
                let gt = read_mask(&gt_path(root, id)?, classes).ok()?;
                let pred = read_mask(&mask_dir.join(format!("{id}.png")), classes).ok()?;
                Some((id.clone(), pictures::image_miou(&pred, &gt)?))
            })
            .collect();
        if !scored.is_empty() {
            scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let picked = pictures::spread(scored.len(), n)
                .into_iter()
                .map(|i| (scored[i].0.clone(), Some(scored[i].1)))
                .collect();
            return (picked, scored.len());
        }
    }
    let picked = pictures::spread(ids.len(), n)
        .into_iter()
        .map(|i| (ids[i].clone(), None))
        .collect();
    (picked, 0)
}

/// Sources of one grid's columns.
struct Columns<'a> {
    root: Option<&'a Path>,
    gt_root: Option<&'a Path>,
    cams: Option<&'a Path>,
    ir: Option<&'a Path>,
    masks: Vec<(&'a str, &'a Path)>,
}

/// Adds the picture of the mask at `path` (when it exists) at the row's size, which the first
/// picture of the row fixes.
struct Cell<'a> {
    id: &'a str,
    classes: &'a ClassMap,
    palette: [[u8; 3]; 256],
    thumb: u32,
    size: Option<(u32, u32)>,
    cells: Vec<String>,
}

impl Cell<'_> {
    fn mask(&mut self, page: &mut Page, path: PathBuf, what: &str) {
        if !path.is_file() {
            return;
        }
        match read_mask(&path, self.classes) {
            Ok(m) => {
                let (w, h) = self.size.unwrap_or_else(|| {
                    pictures::thumb_size(m.width as u32, m.height as u32, self.thumb)
                });
                self.size = Some((w, h));
                let img = pictures::mask_thumb(&m, &self.palette, w, h);
                let cell = page.picture(&img, false, &format!("{}: {what}", self.id));
                self.cells.push(cell);
            }
            Err(e) => page.warnings.push(format!("{}: {e}", path.display())),
        }
    }
}

fn grid_row(
    page: &mut Page,
    id: &str,
    score: Option<f64>,
    c: &Columns,
    classes: &ClassMap,
    thumb: u32,
) {
    let palette = classes.palette();
    let photo = c
        .root
        .and_then(|r| photo_path(r, id))
        .map(|p| ssc_core::imageio::read_rgb(&p));
    let photo = match photo {
        Some(Ok(img)) => Some(pictures::photo_thumb(&img, thumb)),
        Some(Err(e)) => {
            page.warnings.push(format!("{id}: {e}"));
            None
        }
        None => None,
    };
    let mut row = Cell {
        id,
        classes,
        palette,
        thumb,
        size: photo.as_ref().map(|p| (p.width(), p.height())),
        cells: Vec::new(),
    };
    if let Some(p) = &photo {
        let cell = page.picture(p, true, &format!("{id}: image"));
        row.cells.push(cell);
    }
    if let Some(g) = c.gt_root.and_then(|r| gt_path(r, id)) {
        row.mask(page, g, "ground truth");
    }
    if let Some(dir) = c.cams {
        let p = dir.join(format!("{id}.safetensors"));
        if p.is_file() {
            match CamRecord::read(&p) {
                Ok(cam) => {
                    let base = photo.clone().unwrap_or_else(|| {
                        let (w, h) = row.size.unwrap_or_else(|| {
                            pictures::thumb_size(cam.size.1 as u32, cam.size.0 as u32, thumb)
                        });
                        RgbImage::new(w, h)
                    });
                    for (k, key) in cam.keys.iter().enumerate() {
                        let name = classes
                            .names
                            .get(*key as usize + 1)
                            .cloned()
                            .unwrap_or_else(|| format!("class {}", key + 1));
                        let img = pictures::heat_map(&cam, k, &base);
                        let cell = page.picture(&img, true, &format!("{id}: CAM {name}"));
                        row.cells.push(cell);
                    }
                }
                Err(e) => page.warnings.push(e.to_string()),
            }
        }
    }
    if let Some(dir) = c.ir {
        row.mask(page, dir.join(format!("{id}.png")), "IR label");
    }
    for (what, dir) in &c.masks {
        row.mask(page, dir.join(format!("{id}.png")), what);
    }
    let _ = writeln!(
        page.body,
        "<div class=\"grid-row\"><div class=\"id\">{}<br>{}</div>{}</div>",
        esc(id),
        score
            .map(|s| format!("image mIoU {:.1} %", s * 100.0))
            .unwrap_or_default(),
        row.cells.join("")
    );
}

fn pictures_section(
    page: &mut Page,
    l: &Layout,
    root: Option<&Path>,
    opts: &ReportOptions,
    classes: &ClassMap,
) {
    let gt_root = opts.gt.as_deref();
    let pred_dirs: Vec<(String, &Path)> = l
        .preds
        .iter()
        .map(|(d, _)| {
            let n = d
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("prediction");
            (format!("prediction ({n})"), d.as_path())
        })
        .collect();
    let legend = |page: &mut Page| {
        page.body.push_str("<p class=\"legend\">");
        for (i, n) in classes.names.iter().enumerate() {
            let [r, g, b] = classes.colors[i];
            let _ = write!(
                page.body,
                "<span><i style=\"background:rgb({r},{g},{b})\"></i>{}</span>",
                esc(n)
            );
        }
        page.body
            .push_str("<span><i style=\"background:rgb(224,224,192)\"></i>ignored</span></p>\n");
    };
    let mut grids: Vec<(String, Vec<String>, &Path, Columns)> = Vec::new();
    if let Some((pseudo, _)) = &l.pseudo {
        let mut masks = vec![("pseudo-mask", pseudo.as_path())];
        masks.extend(pred_dirs.iter().map(|(n, d)| (n.as_str(), *d)));
        grids.push((
            "Pseudo-masks".into(),
            png_ids(pseudo),
            pseudo.as_path(),
            Columns {
                root,
                gt_root,
                cams: l.cams.as_ref().map(|c| c.0.as_path()),
                ir: l.ir.as_deref(),
                masks,
            },
        ));
    }
    for (name, dir) in &pred_dirs {
        grids.push((
            name.clone(),
            png_ids(dir),
            dir,
            Columns {
                root,
                gt_root,
                cams: l.cams.as_ref().map(|c| c.0.as_path()),
                ir: None,
                masks: vec![(name.as_str(), *dir)],
            },
        ));
    }
    if grids.is_empty()
        && let Some((cams, _)) = &l.cams
    {
        let mut ids: Vec<String> = std::fs::read_dir(cams)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .filter_map(|p| p.file_stem().and_then(|s| s.to_str()).map(String::from))
            .collect();
        ids.sort();
        grids.push((
            "CAMs".into(),
            ids,
            cams.as_path(),
            Columns {
                root,
                gt_root,
                cams: Some(cams.as_path()),
                ir: l.ir.as_deref(),
                masks: Vec::new(),
            },
        ));
    }
    if grids.is_empty() || opts.images == 0 {
        return;
    }
    page.h2("Pictures", "pictures");
    legend(page);
    for (title, ids, ranked_by, cols) in grids {
        let (picked, scored) = pick(&ids, ranked_by, gt_root, classes, opts.images);
        let how = if scored > 0 {
            format!(
                "{} of {} images scored against ground truth, ranked by their mIoU: the best, \
                 the worst and evenly spaced ranks between (the median among them when the \
                 count is odd)",
                picked.len(),
                scored
            )
        } else {
            format!(
                "{} of {} images, evenly spaced in name order (no ground truth: no scores)",
                picked.len(),
                ids.len()
            )
        };
        let _ = writeln!(
            page.body,
            "<h3>{}</h3><p class=\"note\">{}</p>",
            esc(&title),
            esc(&how)
        );
        for (id, score) in picked {
            grid_row(page, &id, score, &cols, classes, opts.thumb);
        }
    }
}

fn configs_section(page: &mut Page, run: &Path) -> Result<()> {
    let mut files = Vec::new();
    for dir in sorted_dir(run)?.into_iter().filter(|p| p.is_dir()) {
        for f in [
            "config.json",
            "cams.json",
            "pseudo.json",
            "predict.json",
            "synth.json",
            "best.json",
            "corrections.json",
        ] {
            let p = dir.join(f);
            if p.is_file() {
                files.push(p);
            }
        }
    }
    let stages = read_stages(&run.join("stages.tsv"), &mut Vec::new());
    if files.is_empty() && stages.is_empty() {
        return Ok(());
    }
    page.h2("Configs, seeds and commands", "configs");
    let mut seeds = Vec::new();
    for p in &files {
        if let Ok(v) = read_json(p)
            && let Some(s) = v.get("seed").and_then(Value::as_u64)
        {
            seeds.push((p.strip_prefix(run).unwrap_or(p).display().to_string(), s));
        }
    }
    if !seeds.is_empty() {
        page.body
            .push_str("<table><tr><th>config</th><th>seed</th></tr>\n");
        for (p, s) in seeds {
            let _ = writeln!(
                page.body,
                "<tr><td>{}</td><td class=\"num\">{s}</td></tr>",
                esc(&p)
            );
        }
        page.body.push_str("</table>\n");
    }
    if !stages.is_empty() {
        page.body.push_str("<h3>Commands</h3><ol class=\"cmds\">");
        for (name, _, cmd) in &stages {
            let _ = writeln!(
                page.body,
                "<li><b>{}</b><pre>{}</pre></li>",
                esc(name),
                esc(cmd)
            );
        }
        page.body.push_str("</ol>\n");
    }
    for p in files {
        let text = match read_json(&p) {
            Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
            Err(e) => {
                page.warnings.push(format!("{e:#}"));
                continue;
            }
        };
        let _ = writeln!(
            page.body,
            "<details><summary>{}</summary><pre>{}</pre></details>",
            esc(&p.strip_prefix(run).unwrap_or(&p).display().to_string()),
            esc(&text)
        );
    }
    Ok(())
}

const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#222;max-width:1500px}\
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}\
h3{font-size:15px}table{border-collapse:collapse;margin:10px 0}\
td,th{border:1px solid #ddd;padding:3px 8px;font-size:13px;text-align:left}\
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}\
.row{display:flex;flex-wrap:wrap;gap:10px}.chart svg{display:block}\
.grid-row{display:flex;flex-wrap:wrap;gap:6px;align-items:flex-start;margin:8px 0;\
border-top:1px solid #eee;padding-top:6px}\
.id{width:130px;font-size:12px;font-family:monospace}figure{margin:0}\
figcaption{font-size:11px;color:#555;max-width:220px}\
.note{font-size:12px;color:#555}.legend span{margin-right:10px;font-size:12px;white-space:nowrap}\
.legend i{display:inline-block;width:12px;height:12px;margin-right:3px;vertical-align:middle;\
border:1px solid #999}pre{font-size:11px;background:#f6f6f6;padding:6px;overflow-x:auto;\
white-space:pre-wrap}.warn{color:#a40}";

/// Writes the page for `opts.run` (atomically) and returns what it holds.
pub fn write_report(opts: &ReportOptions) -> Result<ReportSummary> {
    let run = &opts.run;
    if !run.is_dir() {
        anyhow::bail!("{}: not a folder (expected a run folder)", run.display());
    }
    if let Some(g) = &opts.gt
        && !g.is_dir()
    {
        anyhow::bail!(
            "--gt {}: not a folder (expected a VOC-layout root)",
            g.display()
        );
    }
    let mut warnings = Vec::new();
    let l = layout(run, &mut warnings)?;
    let root = opts.gt.clone().or_else(|| {
        l.cams
            .iter()
            .chain(l.pseudo.iter())
            .find_map(|(_, v)| recorded_root(v, run))
    });
    let classes = classes(root.as_deref(), run, &l);
    let mut page = Page {
        body: String::new(),
        pictures: 0,
        charts: 0,
        warnings,
    };
    results_section(&mut page, run, &classes);
    training_section(&mut page, &l.trainers);
    pictures_section(&mut page, &l, root.as_deref(), opts, &classes);
    configs_section(&mut page, run)?;

    let mut html = String::new();
    let title = format!("ssc run {}", run.display());
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{t}</title><style>{STYLE}</style></head><body>\n<h1>{t}</h1>\n",
        t = esc(&title)
    );
    let _ = writeln!(
        html,
        "<p class=\"note\">written by ssc-report {} · images and ground truth: {} · classes: {}</p>",
        env!("CARGO_PKG_VERSION"),
        esc(&root
            .as_ref()
            .map(|r| r.display().to_string())
            .unwrap_or_else(|| "not found (pass --gt ROOT)".into())),
        classes.names.len()
    );
    html.push_str(&page.body);
    if !page.warnings.is_empty() {
        html.push_str("<h2 id=\"warnings\">Not shown</h2><ul class=\"warn\">");
        for w in &page.warnings {
            let _ = write!(html, "<li>{}</li>", esc(w));
        }
        html.push_str("</ul>\n");
    }
    html.push_str("</body></html>\n");
    let path = opts.out.clone().unwrap_or_else(|| run.join(REPORT_FILE));
    ssc_core::atomic::write(&path, html.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(ReportSummary {
        path,
        bytes: html.len(),
        pictures: page.pictures,
        charts: page.charts,
        warnings: page.warnings,
    })
}

/// Checks that a page stands alone: no script, stylesheet, font, frame or picture loaded from
/// elsewhere, every `<img>` a base64 PNG or JPEG `data:` URI that decodes, every inline SVG
/// closed. Returns the number of pictures (the report test's check; usable on any page).
pub fn verify_self_contained(html: &str) -> std::result::Result<usize, String> {
    use base64::Engine;
    for pat in [
        "href=\"http",
        "href=\"//",
        "<link",
        "<script",
        "@import",
        "url(",
        "<iframe",
        "<object",
        "<embed",
    ] {
        if html.contains(pat) {
            return Err(format!("the page refers to something outside it: `{pat}`"));
        }
    }
    let mut pictures = 0;
    for (i, _) in html.match_indices("src=\"") {
        let rest = &html[i + 5..];
        let uri = &rest[..rest.find('"').unwrap_or(rest.len())];
        let short = &uri[..uri.len().min(40)];
        let Some((head, b64)) = uri.split_once(";base64,") else {
            return Err(format!("not a base64 data URI: {short}"));
        };
        if head != "data:image/png" && head != "data:image/jpeg" {
            return Err(format!("not a PNG or JPEG data URI: {short}"));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("picture {}: bad base64: {e}", pictures + 1))?;
        let img = image::load_from_memory(&bytes)
            .map_err(|e| format!("picture {}: does not decode: {e}", pictures + 1))?;
        if img.width() == 0 || img.height() == 0 {
            return Err(format!("picture {}: empty", pictures + 1));
        }
        pictures += 1;
    }
    let (open, close) = (html.matches("<svg").count(), html.matches("</svg>").count());
    if open != close {
        return Err(format!("{open} <svg> elements but {close} </svg>"));
    }
    Ok(pictures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_refuses_pages_that_reach_outside() {
        let png = pictures::data_uri(&RgbImage::new(2, 3), false).unwrap();
        let ok = format!("<img src=\"{png}\"><svg></svg>");
        assert_eq!(verify_self_contained(&ok), Ok(1));
        for bad in [
            "<img src=\"http://example.com/a.png\">".to_string(),
            "<script src=\"x.js\"></script>".into(),
            "<style>@import 'x.css';</style>".into(),
            "<img src=\"data:image/png;base64,AAAA\">".into(),
            "<svg>".into(),
        ] {
            assert!(verify_self_contained(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(esc("<a href=\"x\">&"), "&lt;a href=&quot;x&quot;&gt;&amp;");
    }
}
