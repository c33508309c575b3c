//! The CAM job (`ssc-label cams`, spec §3.1–3.3): multi-scale CAMs of every image, one
//! `<out>/<id>.safetensors` per image (`keys`, `cam`, `high_res`, as
//! `ssc_core::cam::CamRecord`). Runs on the bounded pipeline of [`crate::pipeline`] (decode →
//! one session per inference worker → fuse and atomic write) with shards, resume, per-item
//! failures and a manifest from [`crate::batch`].
//!
//! The CAM stage ([`CamStage`]: options, model checks, sessions, per-image decode and batched
//! inference) is shared with the one-pass [`crate::jobs::masks`], which runs the same stage and
//! refines its output in memory instead of writing it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use ssc_core::cam::ScaleOutput;
use ssc_core::dataset::{Dataset, DatasetSpec, Item};

use crate::batch::{self, Resumable, RunOptions, Tracker};
use crate::cam::{self, CamConfig, Normalizer, Prepared};
use crate::error::{InferenceError, Result, bail};
use crate::pipeline::{self, PipelineConfig, StageTimes};
use crate::runtime::{self, Device, Model, ModelInfo, SessionConfig};

/// Options of the CAM stage shared by [`CamsJob`] and [`crate::jobs::masks::MasksJob`].
#[derive(Debug, Clone)]
pub struct CamStageOptions {
    /// Scales, label prediction and its threshold.
    pub config: CamConfig,
    /// Most images per network run (same-sized images are batched together; ≥ 1).
    pub batch: usize,
    /// Where the network runs.
    pub device: Device,
    /// The ONNX Runtime library (else `ORT_DYLIB_PATH`, else the project's `.ort/lib`).
    pub ort_lib: Option<PathBuf>,
}

impl Default for CamStageOptions {
    fn default() -> Self {
        CamStageOptions {
            config: CamConfig::default(),
            batch: 1,
            device: Device::Cpu,
            ort_lib: None,
        }
    }
}

/// `ssc-label cams` as a library call: the CAM file `<out>/<id>.safetensors` of every image
/// of this shard of a dataset, `cams.json` (the resolved settings) and the manifest.
#[derive(Debug, Clone)]
pub struct CamsJob {
    /// The exported CAM network (`ssc-export --arch cam`).
    pub model: PathBuf,
    /// The dataset whose images are labelled.
    pub dataset: DatasetSpec,
    /// Output folder.
    pub out: PathBuf,
    /// CAM stage options.
    pub cam: CamStageOptions,
    /// Worker threads (`None`: all cores).
    pub threads: Option<usize>,
    /// Shard, resume and reporting.
    pub run: RunOptions,
}

/// The resolved settings written beside the CAMs (`cams.json`).
#[derive(Serialize, Deserialize)]
pub struct Settings {
    model: PathBuf,
    arch: String,
    class_names: Vec<String>,
    mean: [f64; 3],
    std: [f64; 3],
    cam: CamConfig,
    dataset: DatasetSpec,
    version: String,
}

/// Writes `<dir>/cams.json`, refusing a folder holding CAMs made with other settings.
pub fn write_settings(dir: &Path, s: &Settings) -> Result<()> {
    let new = serde_json::to_value(s)?;
    super::write_settings_file(&dir.join("cams.json"), &new, None, "CAMs", |old| {
        let mut d = Vec::new();
        let old_cam = old
            .get("cam")
            .and_then(|c| serde_json::from_value::<CamConfig>(c.clone()).ok());
        if old_cam.as_ref() != Some(&s.cam) {
            d.push("cam".to_string());
        }
        d.extend(super::differing(old, &new, &["class_names"]));
        d
    })
}

/// An opened CAM network with its checked settings: everything the CAM stage of a pipeline
/// needs (sessions, normalisation, decode and inference functions).
pub struct CamStage {
    /// The validated CAM settings.
    pub cfg: CamConfig,
    /// The model's metadata.
    pub info: ModelInfo,
    /// The model's normalisation.
    pub norm: Normalizer,
    /// How every session is opened.
    pub session: SessionConfig,
    /// Worker threads of the run.
    pub threads: usize,
    /// Most images per network run.
    pub batch: usize,
    model: PathBuf,
    first: Option<Model>,
}

impl CamStage {
    /// Opens `model` and checks it is a CAM network whose classes fit `ds` (or that labels
    /// are predicted, which needs no dataset labels).
    pub fn open(
        model: &Path,
        opts: &CamStageOptions,
        threads: Option<usize>,
        ds: &Dataset,
    ) -> Result<Self> {
        let cfg = opts.config.clone();
        cfg.validate()?;
        if opts.batch == 0 {
            bail!("the CAM batch size must be at least 1 (--batch)");
        }
        let device = opts.device;
        let lib = runtime::init(opts.ort_lib.as_deref())?;
        tracing::info!("ONNX Runtime: {}", lib.display());
        let threads =
            threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if threads == 0 {
            bail!("the thread count must be at least 1");
        }
        // One session per inference worker (ort's `run` takes `&mut self`); one intra-op
        // thread each was fastest on CPU.
        let session = SessionConfig {
            device,
            intra_threads: 1,
            library: opts.ort_lib.clone(),
        };
        let first = Model::open(model, &session)?;
        let info = first.info().clone();
        if info.arch != "cam" {
            return Err(InferenceError::WrongModel {
                path: model.to_path_buf(),
                arch: info.arch,
                expected: "cam",
            });
        }
        let fg = ds.classes.len() - 1;
        if info.class_names.len() != fg {
            let msg = format!(
                "{} has {} classes but the dataset has {fg} foreground classes",
                model.display(),
                info.class_names.len()
            );
            if !cfg.predict_labels {
                bail!("{msg}: the image labels cannot select CAM channels");
            }
            tracing::warn!("{msg}");
        }
        Ok(CamStage {
            cfg,
            norm: Normalizer::of(&info)?,
            info,
            session,
            threads,
            batch: opts.batch,
            model: model.to_path_buf(),
            first: Some(first),
        })
    }

    /// Number of inference workers: one per thread on CPU; a GPU gets a single session fed
    /// by all decode workers.
    pub fn workers(&self) -> usize {
        if self.session.device == Device::Cpu {
            self.threads
        } else {
            1
        }
    }

    /// `n` sessions of the CAM network (the one opened by [`CamStage::open`] first).
    pub fn sessions(&mut self, n: usize) -> Result<Vec<Model>> {
        let mut v = Vec::with_capacity(n);
        if let Some(m) = self.first.take() {
            v.push(m);
        }
        while v.len() < n {
            v.push(Model::open(&self.model, &self.session)?);
        }
        v.truncate(n.max(1));
        Ok(v)
    }

    /// The pipeline's sizes for `workers` inference workers.
    pub fn pipeline_config(&self, workers: usize) -> PipelineConfig {
        PipelineConfig::for_threads(self.threads, workers, self.batch)
    }

    /// The settings written as `cams.json` beside CAM files.
    pub fn settings(&self, spec: DatasetSpec) -> Settings {
        Settings {
            model: self.model.clone(),
            arch: self.info.arch.clone(),
            class_names: self.info.class_names.clone(),
            mean: self.info.mean,
            std: self.info.std,
            cam: self.cfg.clone(),
            dataset: spec,
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// Decodes and prepares one image (decode stage).
    pub fn prepare(&self, image: &image::RgbImage) -> Result<Prepared> {
        cam::prepare(image, &self.cfg.scales, &self.norm)
    }
}

/// One image's CAM network outputs (one per scale) and its original `(H, W)`.
pub type CamOutputs = (Vec<ScaleOutput>, (usize, usize));

/// Runs the CAM network on a batch of prepared images (inference stage): one result per image,
/// in order, with the image's size.
pub fn infer_batch<'a>(
    model: &mut Model,
    preps: impl IntoIterator<Item = &'a Prepared>,
) -> Vec<Result<CamOutputs>> {
    let preps: Vec<&Prepared> = preps.into_iter().collect();
    let sizes: Vec<(usize, usize)> = preps.iter().map(|p| p.size).collect();
    cam::infer_batch(model, &preps)
        .into_iter()
        .zip(sizes)
        .map(|(r, size)| Ok((r?, size)))
        .collect()
}

/// Logs each stage's share of the busy time (where a slow run spends it).
pub fn log_stage_times(times: &StageTimes, names: [&str; 3]) {
    let busy = times.decode + times.infer + times.post;
    if busy.is_zero() {
        return;
    }
    let pct = |d: std::time::Duration| 100.0 * d.as_secs_f64() / busy.as_secs_f64();
    tracing::info!(
        "busy time: {} {:.0} %, {} {:.0} %, {} {:.0} %",
        names[0],
        pct(times.decode),
        names[1],
        pct(times.infer),
        names[2],
        pct(times.post)
    );
}

/// CAM file paths and the resume check of a folder of CAM files.
pub struct CamFiles {
    /// The folder.
    pub dir: PathBuf,
    /// Number of model classes (valid keys are below it).
    pub classes: usize,
}

impl CamFiles {
    /// `<dir>/<id>.safetensors`.
    pub fn path(&self, item: &Item) -> PathBuf {
        self.dir.join(format!("{}.safetensors", item.id))
    }

    /// Whether the item's CAM file is complete and of the image's size with valid keys.
    /// Only the safetensors header and the keys are read (a resume pass over a whole dataset
    /// must not read every high-res CAM); truncation shows as a length mismatch.
    pub fn is_done(&self, item: &Item) -> bool {
        let Ok((w, h)) = ssc_core::imageio::image_size(&item.image) else {
            return false;
        };
        cam_file_ok(&self.path(item), (h as usize, w as usize), self.classes).unwrap_or(false)
    }
}

impl Resumable for CamFiles {
    type Item = Item;

    fn id<'a>(&self, item: &'a Item) -> &'a str {
        &item.id
    }

    fn outputs(&self, item: &Item) -> Vec<PathBuf> {
        vec![self.path(item)]
    }

    fn is_done(&self, item: &Item) -> bool {
        CamFiles::is_done(self, item)
    }
}

/// Checks a CAM file's safetensors header against the image size `(h, w)`, its total length,
/// and its keys against the class count.
fn cam_file_ok(path: &Path, (h, w): (usize, usize), classes: usize) -> Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let mut n = [0u8; 8];
    f.read_exact(&mut n)?;
    let n = u64::from_le_bytes(n);
    if n > 1 << 20 || 8 + n > len {
        return Ok(false);
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header)?;
    let header: serde_json::Value = serde_json::from_slice(&header)?;
    let tensor = |name: &str| -> Option<(Vec<usize>, u64, u64)> {
        let t = header.get(name)?;
        let shape = serde_json::from_value(t.get("shape")?.clone()).ok()?;
        let [a, b]: [u64; 2] = serde_json::from_value(t.get("data_offsets")?.clone()).ok()?;
        Some((shape, a, b))
    };
    let (Some(keys), Some(cam), Some(hr)) = (tensor("keys"), tensor("cam"), tensor("high_res"))
    else {
        return Ok(false);
    };
    let k = keys.0.first().copied().unwrap_or(usize::MAX);
    let end = keys.2.max(cam.2).max(hr.2);
    if keys.0.len() != 1
        || cam.0 != [k, h.div_ceil(4), w.div_ceil(4)]
        || hr.0 != [k, h, w]
        || 8 + n + end != len
        || keys.2 - keys.1 != 8 * k as u64
    {
        return Ok(false);
    }
    let mut raw = vec![0u8; 8 * k];
    f.seek(SeekFrom::Start(8 + n + keys.1))?;
    f.read_exact(&mut raw)?;
    Ok(raw.chunks_exact(8).all(|c| {
        let v = i64::from_le_bytes(c.try_into().unwrap_or([0xff; 8]));
        v >= 0 && (v as usize) < classes
    }))
}

impl CamsJob {
    /// Runs the job over this shard: returns the manifest (written to `out`), whose failures
    /// list the images that could not be labelled ([`batch::Manifest::into_result`]).
    pub fn run(&self) -> Result<batch::Manifest> {
        let ds = super::open_dataset(&self.dataset)?;
        let mut stage = CamStage::open(&self.model, &self.cam, self.threads, &ds)?;
        write_settings(&self.out, &stage.settings(self.dataset.clone()))?;
        let job = CamFiles {
            dir: self.out.clone(),
            classes: stage.info.class_names.len(),
        };
        let opts = &self.run;
        let pool = batch::thread_pool(Some(stage.threads))?;
        let plan = pool.install(|| batch::plan(&job, &ds.items, opts));
        let tracker = Tracker::new(opts, plan.total, plan.skipped);
        let n = if plan.todo.is_empty() {
            1
        } else {
            stage.workers()
        };
        let sessions = stage.sessions(n)?;
        let pcfg = stage.pipeline_config(sessions.len());
        let stage = &stage;
        let times = pipeline::run(
            &plan.todo,
            &pcfg,
            sessions,
            |item: &&Item| -> Result<Prepared> {
                stage.prepare(&ssc_core::imageio::read_rgb(&item.image)?)
            },
            |model: &mut Model, batch: Vec<(usize, Prepared)>| {
                infer_batch(model, batch.iter().map(|(_, p)| p))
            },
            |item: &&Item, (outputs, size)| {
                let rec = cam::finish(&outputs, size, item.labels.as_deref(), &stage.cfg)?;
                rec.write(&job.path(item), &item.id)?;
                Ok(())
            },
            |item: &&Item, r: Result<()>| tracker.record(&item.id, r),
        );
        log_stage_times(&times, ["decode+prepare", "inference", "fuse+write"]);
        tracker.finish()
    }
}
