//! The prediction job (`ssc-predict`): segment image folders with an exported DeepLab (§6.5
//! multi-scale inference, optional flip, optional dense CRF of §6.6) through ONNX Runtime.
//!
//! Every image under the input (a folder, searched recursively, or a list file) gets a palette
//! PNG at `<out>/<id>.png`, where the id is the image's path relative to the input folder
//! without its extension, so nested folders are mirrored. On request: colour overlays
//! `<out>/overlays/<id>.jpg`, per-pixel class scores `<out>/scores/<id>.safetensors` (tensor
//! `scores`, f32 `K × H × W`, class names in the metadata) or `.npy` (the same array), and the
//! aggregate formats of [`crate::outputs`] (CVAT, COCO, Label Studio).
//!
//! The CRF sees the real RGB image: the reference feeds the mean-subtracted image wrapped to
//! uint8 (a bug, spec §6.6 and §11.4), which we do not reproduce.
//!
//! At scale ([`crate::batch`]): the worker threads each own one ONNX Runtime session and
//! one image at a time (bounded memory); items are taken in id order so the aggregate files
//! need only a small reorder buffer; shards, resume (an image whose mask, overlay and scores
//! exist and match its size is skipped), per-image failures listed at the end and in
//! `manifest.<i>-of-<n>.json`, non-zero exit when any image failed. Items finished by an
//! earlier run are read back from their PNGs into the aggregate files, with score 1 (the
//! per-class scores of a prediction are not stored).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use image::RgbImage;
use serde::Serialize;
use ssc_core::classes::{ClassMap, VOC_NAMES};
use ssc_core::crf::CrfParams;
use ssc_core::formats::MaskSource;

use crate::batch::{self, Failure, Resumable, RunOptions, Tracker};
use crate::error::{Context, InferenceError, Result, bail};
use crate::outputs::{OutputOptions, OutputPaths, Outputs, finish_run};
use crate::runtime::SessionConfig;
use crate::segment::{DeepLabSegmenter, SegmentConfig};

/// How per-pixel class scores are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum ScoresFormat {
    /// `scores/<id>.safetensors`, tensor `scores` (f32 K×H×W), class names in the metadata.
    Safetensors,
    /// `scores/<id>.npy` (f32 K×H×W, C order).
    Npy,
}

/// `ssc-predict` as a library call: the mask of every image of this shard of `input`, the
/// files of the options, `predict.json` (the resolved settings) and the manifest.
#[derive(Debug, Clone)]
pub struct PredictJob {
    /// The exported segmentation network (`ssc-export --arch deeplab`).
    pub model: PathBuf,
    /// An image folder (searched recursively) or a list file (one image path per line,
    /// relative to the list's folder or absolute; blank lines and `#` comments skipped).
    pub input: PathBuf,
    /// Output folder.
    pub out: PathBuf,
    /// Base input side and extra scales (§6.5).
    pub segment: SegmentConfig,
    /// Also run the mirrored image at every scale and average (not in the reference).
    pub flip: bool,
    /// Refine with the dense CRF of §6.6 (on the real RGB image).
    pub crf: bool,
    /// Write colour overlays `overlays/<id>.jpg`.
    pub overlay: bool,
    /// Write per-pixel class scores (soft-max, or CRF marginals with `crf`), f32 K×H×W.
    pub scores: Option<ScoresFormat>,
    /// Device and ONNX Runtime library (one intra-op thread per session is used).
    pub session: SessionConfig,
    /// Output formats.
    pub formats: OutputOptions,
    /// Worker threads (`None`: all cores).
    pub threads: Option<usize>,
    /// Shard, resume and reporting.
    pub run: RunOptions,
}

/// One input image.
struct Entry {
    /// Relative path without extension (`/`-separated); names every output.
    id: String,
    /// Relative path with extension (what the annotation formats reference).
    rel: String,
    /// The file.
    image: PathBuf,
}

/// `(id, relative path, file)` of every image under a folder.
fn folder_entries(root: &Path) -> Result<Vec<Entry>> {
    let ds = ssc_core::dataset::folder(root, None, ClassMap::voc())
        .with_context(|| format!("cannot read the image folder {}", root.display()))?;
    Ok(ds
        .items
        .into_iter()
        .map(|it| {
            let rel = it
                .image
                .strip_prefix(root)
                .map(rel_string)
                .unwrap_or_else(|_| it.id.clone());
            Entry {
                id: it.id,
                rel,
                image: it.image,
            }
        })
        .collect())
}

fn rel_string(p: &Path) -> String {
    p.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Entries of a list file: ids are the paths relative to the deepest folder holding every
/// listed image, without extension.
fn list_entries(list: &Path) -> Result<Vec<Entry>> {
    let text = std::fs::read_to_string(list)
        .with_context(|| format!("cannot read the image list {}", list.display()))?;
    let base = list.parent().unwrap_or(Path::new("."));
    let mut files = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let p = Path::new(line);
        if p.components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            bail!(
                "{}:{}: `{line}`: `..` is not allowed (ids mirror the paths)",
                list.display(),
                n + 1
            );
        }
        files.push(if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        });
    }
    if files.is_empty() {
        bail!("{}: the image list is empty", list.display());
    }
    let mut common: PathBuf = files[0].parent().unwrap_or(Path::new("")).to_path_buf();
    for f in &files[1..] {
        while !f.starts_with(&common) {
            if !common.pop() {
                break;
            }
        }
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        let rel = rel_string(f.strip_prefix(&common).unwrap_or(&f));
        let id = match rel.rfind('.') {
            Some(dot) if !rel[dot..].contains('/') => rel[..dot].to_string(),
            _ => rel.clone(),
        };
        if !seen.insert(id.clone()) {
            bail!(
                "{}: two images have the id `{id}` (outputs are named by id)",
                list.display()
            );
        }
        out.push(Entry { id, rel, image: f });
    }
    Ok(out)
}

/// The resolved settings written beside the masks (`predict.json`).
#[derive(Serialize)]
struct Settings<'a> {
    model: &'a Path,
    input: &'a Path,
    class_names: &'a [String],
    input_size: usize,
    scales: &'a [f64],
    flip: bool,
    crf: Option<CrfParams>,
    scores: Option<ScoresFormat>,
    formats: Vec<&'static str>,
    version: &'static str,
}

/// The settings that decide what a mask looks like: a folder holding masks made otherwise is
/// not resumed into (its finished items would be kept as they are).
const MASK_SETTINGS: [&str; 5] = ["class_names", "input_size", "scales", "flip", "crf"];

/// Writes `predict.json`, refusing (unless `overwrite`) a folder whose earlier run used other
/// mask settings.
fn write_settings(out: &Path, s: &Settings<'_>, overwrite: bool) -> Result<()> {
    let new = serde_json::to_value(s)?;
    super::write_settings_file(
        &out.join("predict.json"),
        &new,
        Some(overwrite),
        "masks",
        |old| super::differing(old, &new, &MASK_SETTINGS),
    )
}

/// The per-item work of a [`PredictJob`] run.
struct PredictWork {
    out: PathBuf,
    classes: ClassMap,
    outputs: Outputs,
    crf: Option<CrfParams>,
    overlay: bool,
    scores: Option<ScoresFormat>,
}

impl PredictWork {
    fn overlay_path(&self, id: &str) -> PathBuf {
        self.out.join("overlays").join(format!("{id}.jpg"))
    }

    fn scores_path(&self, id: &str, f: ScoresFormat) -> PathBuf {
        let ext = match f {
            ScoresFormat::Safetensors => "safetensors",
            ScoresFormat::Npy => "npy",
        };
        self.out.join("scores").join(format!("{id}.{ext}"))
    }

    /// Segments one image and writes its outputs.
    fn process(&self, seg: &mut DeepLabSegmenter, e: &Entry) -> Result<()> {
        let img = ssc_core::imageio::read_rgb(&e.image)?;
        let (w, h) = (img.width(), img.height());
        let pred = if self.crf.is_some() || self.scores.is_some() {
            let mut probs = seg
                .probabilities(&img)
                .with_context(|| format!("{}: inference", e.image.display()))?;
            if let Some(crf) = &self.crf {
                probs.data = crf
                    .refine_softmax(
                        &probs.data,
                        probs.classes,
                        w as usize,
                        h as usize,
                        img.as_raw(),
                    )
                    .with_context(|| format!("{}: dense CRF", e.image.display()))?;
            }
            if let Some(f) = self.scores {
                let path = self.scores_path(&e.id, f);
                let shape = vec![probs.classes, h as usize, w as usize];
                match f {
                    ScoresFormat::Safetensors => {
                        let meta = [(
                            "class_names".to_string(),
                            serde_json::to_string(&self.classes.names)?,
                        )]
                        .into();
                        ssc_core::tensors::write(
                            &path,
                            &[(
                                "scores",
                                ssc_core::tensors::Array::F32(probs.data.clone(), shape),
                            )],
                            Some(meta),
                        )
                    }
                    ScoresFormat::Npy => ssc_core::npy::write_f32(&path, &shape, &probs.data),
                }
                .with_context(|| format!("cannot write {}", path.display()))?;
            }
            probs.prediction()
        } else {
            seg.predict(&img)
                .with_context(|| format!("{}: inference", e.image.display()))?
        };
        if self.overlay {
            let path = self.overlay_path(&e.id);
            let ov = overlay(&img, &pred.labels, &self.classes);
            ssc_core::imageio::write_jpeg_rgb(&path, &ov, 90)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        let mask = MaskSource::new(e.id.as_str(), w, h, pred.labels)?
            .with_image(e.rel.as_str())
            .with_scores(pred.scores);
        self.outputs.add(mask)
    }
}

/// The image with every non-background pixel blended half-and-half with its class colour.
fn overlay(img: &RgbImage, labels: &[u8], classes: &ClassMap) -> RgbImage {
    let palette = classes.palette();
    let mut out = img.clone();
    for (p, &l) in out.pixels_mut().zip(labels) {
        if l != 0 {
            let c = palette[l as usize];
            for k in 0..3 {
                p[k] = ((u16::from(p[k]) + u16::from(c[k])) / 2) as u8;
            }
        }
    }
    out
}

impl Resumable for PredictWork {
    type Item = Entry;

    fn id<'a>(&self, item: &'a Entry) -> &'a str {
        &item.id
    }

    fn outputs(&self, item: &Entry) -> Vec<PathBuf> {
        let mut v = vec![self.outputs.mask_path(&item.id)];
        if self.overlay {
            v.push(self.overlay_path(&item.id));
        }
        if let Some(f) = self.scores {
            v.push(self.scores_path(&item.id, f));
        }
        v
    }

    /// Done when the mask decodes with the image's size and the other outputs exist (never
    /// without `voc` masks: see `ssc_inference::outputs`).
    fn is_done(&self, item: &Entry) -> bool {
        let Ok(size) = ssc_core::imageio::image_size(&item.image) else {
            return false;
        };
        self.outputs.is_done(&item.id, size) && self.outputs(item).iter().all(|p| p.is_file())
    }
}

impl PredictJob {
    /// Runs the job over this shard: returns the manifest (written to `out`), whose failures
    /// list the images that could not be segmented ([`batch::Manifest::into_result`]); `Err`
    /// when the run could not start or its annotation files are incomplete.
    pub fn run(&self) -> Result<batch::Manifest> {
        let session = SessionConfig {
            intra_threads: 1,
            ..self.session.clone()
        };
        let seg_cfg = self.segment.clone();
        let scales = seg_cfg.scales.clone();
        let open = || -> Result<DeepLabSegmenter> {
            Ok(
                DeepLabSegmenter::open(&self.model, &session, seg_cfg.clone())
                    .with_context(|| format!("cannot open the model {}", self.model.display()))?
                    .with_flip(self.flip),
            )
        };
        // Opened up front: a bad model or runtime fails the run before any work.
        let first = open()?;
        let names = first.class_names().to_vec();
        let classes = if names.iter().map(String::as_str).eq(VOC_NAMES) {
            ClassMap::voc()
        } else {
            ClassMap::custom(names)
        };

        let entries = if self.input.is_dir() {
            folder_entries(&self.input)?
        } else if self.input.is_file() {
            list_entries(&self.input)?
        } else {
            bail!(
                "{}: no such image folder or list file",
                self.input.display()
            );
        };
        if entries.is_empty() {
            return Err(InferenceError::NoImages(self.input.clone()));
        }
        std::fs::create_dir_all(&self.out)
            .with_context(|| format!("cannot create {}", self.out.display()))?;

        let opts = &self.run;
        let pool = batch::thread_pool(self.threads)?;
        let workers = pool.current_num_threads();
        let outputs = Outputs::create(
            OutputPaths::flat(&self.out, opts.shard),
            &classes,
            &self.formats,
        )?
        .with_window(4 * workers + 4);
        let crf = self.crf.then(CrfParams::stage2);
        let settings = Settings {
            model: &self.model,
            input: &self.input,
            class_names: &classes.names,
            input_size: seg_cfg.input_size,
            scales: &scales,
            flip: self.flip,
            crf: crf.clone(),
            scores: self.scores,
            formats: self.formats.formats().iter().map(|f| f.name()).collect(),
            version: env!("CARGO_PKG_VERSION"),
        };
        write_settings(&self.out, &settings, opts.overwrite)?;
        let job = PredictWork {
            out: self.out.clone(),
            classes,
            outputs,
            crf,
            overlay: self.overlay,
            scores: self.scores,
        };

        let plan = batch::plan(&job, &entries, opts);
        let todo: HashSet<&str> = plan.todo.iter().map(|e| e.id.as_str()).collect();
        // Every item of the shard in id order; finished ones only feed the aggregate files.
        let mine = opts
            .shard
            .select(entries.iter().collect(), |e: &&Entry| &e.id);
        job.outputs.set_order(mine.iter().map(|e| e.id.as_str()))?;
        let tracker = Tracker::new(opts, plan.total, plan.skipped);
        let next = AtomicUsize::new(0);
        let spare = Mutex::new(Some(first));
        let late: Mutex<Vec<Failure>> = Mutex::new(Vec::new());
        let open_err: Mutex<Option<String>> = Mutex::new(None);
        pool.broadcast(|_| {
            let mut seg: Option<DeepLabSegmenter> = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(e) = mine.get(i) else { break };
                job.outputs.admit(&e.id);
                if !todo.contains(e.id.as_str()) {
                    if let Err(err) = job.outputs.add_existing(&e.id, &e.rel, None) {
                        job.outputs.skip(&e.id);
                        late.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(Failure {
                                id: e.id.clone(),
                                message: format!("{err:#}"),
                            });
                    }
                    continue;
                }
                if seg.is_none() {
                    let taken = spare.lock().unwrap_or_else(|p| p.into_inner()).take();
                    match taken.map_or_else(&open, Ok) {
                        Ok(s) => seg = Some(s),
                        Err(err) => {
                            // cannot happen after the first open succeeded, but never hang
                            *open_err.lock().unwrap_or_else(|p| p.into_inner()) =
                                Some(format!("{err:#}"));
                        }
                    }
                }
                let result = match seg.as_mut() {
                    // a panic must not leave the reorder buffer waiting for this item
                    Some(s) => {
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.process(s, e)))
                            .unwrap_or_else(|_| Err(InferenceError::Panic(format!("on {}", e.id))))
                    }
                    None => Err(InferenceError::Invalid(
                        "no inference session for this worker".into(),
                    )),
                };
                if result.is_err() {
                    job.outputs.skip(&e.id);
                }
                tracker.record(&e.id, result);
            }
        });
        let manifest = tracker.finish()?;
        if let Some(e) = open_err.into_inner().unwrap_or_else(|p| p.into_inner()) {
            tracing::error!("a worker could not open the model: {e}");
        }
        let late = late.into_inner().unwrap_or_else(|p| p.into_inner());
        super::report_files(finish_run(job.outputs, late)?, opts);
        Ok(manifest)
    }
}
