//! `ssc-label`: label whole image collections with exported networks through ONNX Runtime.
//!
//! `ssc-label cams`: multi-scale CAMs (§3.1–3.3) of every image, one `<out>/<id>.safetensors`
//! per image (`keys`, `cam`, `high_res`, as `ssc_core::cam::CamRecord`). Runs on the bounded
//! pipeline of `ssc_inference::pipeline` (decode → one session per inference worker → fuse and
//! atomic write) with shards, resume, per-item failures and a manifest from `ssc_tools::batch`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};
use ssc_core::dataset::{DatasetSpec, Item};
use ssc_inference::cam::{self, CamConfig, Normalizer, Prepared};
use ssc_inference::pipeline::{self, PipelineConfig};
use ssc_inference::runtime::{self, Device, Model, SessionConfig};
use ssc_tools::batch::{self, BatchArgs, DatasetArgs, Resumable, RunOptions, Tracker};

#[derive(Parser)]
#[command(
    name = "ssc-label",
    version,
    about = "Label image collections with exported networks (ONNX Runtime), sharded and resumable"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Multi-scale CAMs (spec §3.2) of every image: `<out>/<id>.safetensors`.
    Cams(CamsArgs),
    /// IR labels (spec §4.1: CAM thresholds + dense CRF + ignore band) from CAM files:
    /// `<out>/<id>.png`, with precision/coverage against the ground truth when it exists.
    Irlabels(ssc_tools::irn_cli::IrLabelArgs),
    /// Pseudo-masks (spec §4.7–4.8): CAM files + exported IRN edge network → random walk →
    /// `<out>/<id>.png`, optionally score stacks and confidence masks.
    Pseudo(ssc_tools::label_pseudo::PseudoArgs),
}

#[derive(clap::Args)]
struct CamsArgs {
    /// The exported CAM network (`ssc-export --arch cam`).
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    data: DatasetArgs,
    /// Output folder: `<id>.safetensors`, `cams.json`, `manifest.<i>-of-<n>.json`.
    #[arg(long)]
    out: PathBuf,
    /// Keep the classes the model finds instead of the dataset's image labels (score: mean of
    /// the flip-averaged ReLU CAM at scale 1.0, in logit units).
    #[arg(long)]
    predict_labels: bool,
    /// Score above which a class counts as present with --predict-labels (the best class is
    /// always kept).
    #[arg(long, default_value_t = 0.5)]
    label_threshold: f32,
    /// Image scales, comma-separated.
    #[arg(long, default_value = "1.0,0.5,1.5,2.0", value_delimiter = ',')]
    scales: Vec<f64>,
    /// Most images per network run (same-sized images are batched together).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// The ONNX Runtime library (else ORT_DYLIB_PATH, else `.ort/lib` from
    /// `scripts/setup-ort.sh`).
    #[arg(long)]
    ort_lib: Option<PathBuf>,
    #[command(flatten)]
    batch_args: BatchArgs,
}

/// The resolved settings written beside the CAMs (`cams.json`).
#[derive(Serialize, Deserialize)]
struct Settings {
    model: PathBuf,
    arch: String,
    class_names: Vec<String>,
    mean: [f64; 3],
    std: [f64; 3],
    cam: CamConfig,
    dataset: DatasetSpec,
    version: String,
}

/// Writes `cams.json`, refusing a folder holding CAMs made with other settings.
fn write_settings(out: &Path, s: &Settings) -> Result<()> {
    let path = out.join("cams.json");
    if path.is_file() {
        let old: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)
            .with_context(|| format!("{}: not valid JSON", path.display()))?;
        let old_cam = old
            .get("cam")
            .and_then(|c| serde_json::from_value::<CamConfig>(c.clone()).ok());
        let same_classes = old.get("class_names") == Some(&serde_json::json!(s.class_names));
        if old_cam.as_ref() != Some(&s.cam) || !same_classes {
            bail!(
                "{} holds CAMs made with other settings or classes; choose another --out or \
                 delete the folder",
                path.display()
            );
        }
    }
    ssc_core::atomic::write(&path, &serde_json::to_vec_pretty(s)?)?;
    Ok(())
}

/// Output paths and the resume check (used by `batch::plan`; processing runs on the pipeline).
struct CamJob {
    out: PathBuf,
    classes: usize,
}

impl CamJob {
    fn path(&self, item: &Item) -> PathBuf {
        self.out.join(format!("{}.safetensors", item.id))
    }
}

impl Resumable for CamJob {
    type Item = Item;

    fn id<'a>(&self, item: &'a Item) -> &'a str {
        &item.id
    }

    fn outputs(&self, item: &Item) -> Vec<PathBuf> {
        vec![self.path(item)]
    }

    /// Done when the file is a complete CAM record of the image's size with valid keys. Only
    /// the safetensors header and the keys are read (a resume pass over a whole dataset must
    /// not read every high-res CAM); truncation shows as a length mismatch.
    fn is_done(&self, item: &Item) -> bool {
        let Ok((w, h)) = ssc_core::imageio::image_size(&item.image) else {
            return false;
        };
        cam_file_ok(&self.path(item), (h as usize, w as usize), self.classes).unwrap_or(false)
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

fn main() -> std::process::ExitCode {
    ssc_tools::run_main(|| match Cli::parse().command {
        Command::Cams(args) => cams(args),
        Command::Irlabels(args) => ssc_tools::irn_cli::ir_labels(args),
        Command::Pseudo(args) => ssc_tools::label_pseudo::run(&args),
    })
}

fn cams(args: CamsArgs) -> Result<()> {
    let cfg = CamConfig {
        scales: args.scales.clone(),
        predict_labels: args.predict_labels,
        label_threshold: args.label_threshold,
    };
    cfg.validate()?;
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let device: Device = args.device.parse()?;
    let lib = runtime::init(args.ort_lib.as_deref())?;
    tracing::info!("ONNX Runtime: {}", lib.display());
    let ds = args.data.open()?;
    let opts = RunOptions::from_args("ssc-label cams", &args.out, &args.batch_args)?;
    let threads = args
        .batch_args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads == 0 {
        bail!("--threads must be at least 1");
    }
    // One session per inference worker (ort's `run` takes `&mut self`); one intra-op thread
    // each was fastest on CPU. A GPU gets a single session fed by all decode workers.
    let n_sessions = if device == Device::Cpu { threads } else { 1 };
    let session_cfg = SessionConfig {
        device,
        intra_threads: 1,
        library: args.ort_lib.clone(),
    };
    let first = Model::open(&args.model, &session_cfg)?;
    let info = first.info().clone();
    if info.arch != "cam" {
        bail!(
            "{} is a `{}` network; `ssc-label cams` needs a CAM network (ssc.arch = cam)",
            args.model.display(),
            info.arch
        );
    }
    let fg = ds.classes.len() - 1;
    if info.class_names.len() != fg {
        let msg = format!(
            "{} has {} classes but the dataset has {fg} foreground classes",
            args.model.display(),
            info.class_names.len()
        );
        if !cfg.predict_labels {
            bail!("{msg}: the image labels cannot select CAM channels");
        }
        tracing::warn!("{msg}");
    }
    write_settings(
        &args.out,
        &Settings {
            model: args.model.clone(),
            arch: info.arch.clone(),
            class_names: info.class_names.clone(),
            mean: info.mean,
            std: info.std,
            cam: cfg.clone(),
            dataset: args.data.spec()?,
            version: env!("CARGO_PKG_VERSION").to_string(),
        },
    )?;
    let job = CamJob {
        out: args.out.clone(),
        classes: info.class_names.len(),
    };
    let pool = batch::thread_pool(Some(threads))?;
    let plan = pool.install(|| batch::plan(&job, &ds.items, &opts));
    let tracker = Tracker::new(&opts, plan.total, plan.skipped);
    let mut sessions = vec![first];
    if !plan.todo.is_empty() {
        for _ in 1..n_sessions {
            sessions.push(Model::open(&args.model, &session_cfg)?);
        }
    }
    let norm = Normalizer::of(&info)?;
    let pcfg = PipelineConfig::for_threads(threads, sessions.len(), args.batch);
    let times = pipeline::run(
        &plan.todo,
        &pcfg,
        sessions,
        |item: &&Item| -> Result<Prepared> {
            let img = ssc_core::imageio::read_rgb(&item.image)?;
            Ok(cam::prepare(&img, &cfg.scales, &norm)?)
        },
        |model: &mut Model, batch: Vec<(usize, Prepared)>| {
            let preps: Vec<&Prepared> = batch.iter().map(|(_, p)| p).collect();
            let sizes: Vec<(usize, usize)> = preps.iter().map(|p| p.size).collect();
            cam::infer_batch(model, &preps)
                .into_iter()
                .zip(sizes)
                .map(|(r, size)| Ok((r?, size)))
                .collect()
        },
        |item: &&Item, (outputs, size)| {
            let rec = cam::finish(&outputs, size, item.labels.as_deref(), &cfg)?;
            rec.write(&job.path(item), &item.id)?;
            Ok(())
        },
        |item: &&Item, r: Result<()>| tracker.record(&item.id, r),
    );
    let busy = times.decode + times.infer + times.post;
    if !busy.is_zero() {
        let pct = |d: std::time::Duration| 100.0 * d.as_secs_f64() / busy.as_secs_f64();
        tracing::info!(
            "busy time: decode+prepare {:.0} %, inference {:.0} %, fuse+write {:.0} %",
            pct(times.decode),
            pct(times.infer),
            pct(times.post)
        );
    }
    tracker.finish()?.into_result().map(|_| ())
}
