//! CLI glue of the IRN stage (§4): `ssc-label irlabels` (CAMs → IR labels, §4.1),
//! `ssc-train irn` (edge-branch training, §4.5–4.6) and the ONNX export of a trained IRN
//! (§10.3).
//!
//! CAM files are read from `<cams>/<id>.safetensors` (the `ssc_core::cam::CamRecord` format);
//! IR labels are written as 8-bit grey PNGs `<out>/<id>.png` (255 = ignore).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use clap::Args;
use rayon::prelude::*;
use ssc_core::cam::CamRecord;
use ssc_core::irlabel::{IGNORE, IrLabelConfig, ir_label};
use ssc_core::mask::{LabelMap, read_mask, write_grey_png};
use ssc_core::tensors::TensorFile;
use ssc_models::onnx::{Weights, export_irn_edge};
use ssc_training::cam::data::open_split;
use ssc_training::irn::config::IrnTrainConfig;
use ssc_training::irn::data::IrnTrainSet;
use ssc_training::irn::trainer::{
    BACKBONE_PREFIX, IrnTrainOptions, WEIGHTS_FILE, saved_config, train,
};

/// Arguments of `ssc-label irlabels`.
#[derive(Args, Debug, Clone)]
pub struct IrLabelArgs {
    /// Dataset root (VOC layout, or the synthetic benchmark).
    #[arg(long)]
    pub dataset: PathBuf,
    /// Split (`ImageSets/Segmentation/<split>.txt`).
    #[arg(long, default_value = "train")]
    pub split: String,
    /// Folder of CAM files `<id>.safetensors`.
    #[arg(long)]
    pub cams: PathBuf,
    /// Output folder of IR-label PNGs (default `<dataset>/ir_labels`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Background score for confident foreground (§4.1, SSC 0.30).
    #[arg(long, default_value_t = 0.30)]
    pub conf_fg_thres: f32,
    /// Background score for confident background (§4.1, SSC 0.10; IRN 0.05).
    #[arg(long, default_value_t = 0.10)]
    pub conf_bg_thres: f32,
    /// Recompute labels that already exist (default: skip them, so a killed run resumes).
    #[arg(long)]
    pub overwrite: bool,
}

/// Quality of IR labels against ground truth.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct IrLabelStats {
    /// Non-ignored IR pixels with a GT label (GT 255 excluded).
    pub labelled: u64,
    /// Of those, pixels whose IR label equals GT.
    pub correct: u64,
    /// All pixels of the images with GT.
    pub pixels: u64,
    /// Pixels whose IR label is not 255.
    pub covered: u64,
}

impl IrLabelStats {
    /// Fraction of non-ignored IR pixels (with a GT label) that equal GT.
    pub fn precision(&self) -> f64 {
        self.correct as f64 / self.labelled.max(1) as f64
    }

    /// Fraction of pixels that are not ignored.
    pub fn coverage(&self) -> f64 {
        self.covered as f64 / self.pixels.max(1) as f64
    }

    /// Adds one image's IR label and GT (same size).
    pub fn add(&mut self, ir: &[u8], gt: &[u8]) {
        self.pixels += ir.len() as u64;
        for (&a, &g) in ir.iter().zip(gt) {
            if a == IGNORE {
                continue;
            }
            self.covered += 1;
            if g != IGNORE {
                self.labelled += 1;
                self.correct += (a == g) as u64;
            }
        }
    }
}

/// What `ir_labels` did.
#[derive(Debug, Clone, Default)]
pub struct IrLabelSummary {
    /// Labels computed in this run.
    pub written: usize,
    /// Labels that already existed.
    pub skipped: usize,
    /// `(id, error)` of every image that failed.
    pub failed: Vec<(String, String)>,
    /// Precision/coverage against GT (`None` when no image has GT).
    pub stats: Option<IrLabelStats>,
}

/// One image: the label (computed, or read back when it exists) and whether it was written.
fn one_label(
    id: &str,
    image: &Path,
    cams: &Path,
    out: &Path,
    cfg: &IrLabelConfig,
    overwrite: bool,
) -> Result<(LabelMap, bool)> {
    let dst = out.join(format!("{id}.png"));
    if !overwrite && dst.is_file() {
        let m = read_mask(&dst, &ssc_core::classes::ClassMap::voc())?;
        return Ok((m, false));
    }
    let cam_path = cams.join(format!("{id}.safetensors"));
    let rec = CamRecord::read(&cam_path)?;
    let img = ssc_core::imageio::read_rgb(image)?;
    let (h, w) = rec.size;
    if (img.width() as usize, img.height() as usize) != (w, h) {
        bail!(
            "{}: CAM is {w}×{h}, image {} is {}×{}",
            cam_path.display(),
            image.display(),
            img.width(),
            img.height()
        );
    }
    let data = ir_label(&rec.high_res, &rec.keys, w, h, img.as_raw(), cfg)
        .with_context(|| format!("IR label of {}", cam_path.display()))?;
    let map = LabelMap::new(w, h, data)?;
    write_grey_png(&dst, &map)?;
    Ok((map, true))
}

/// Computes the IR labels of a dataset split (in parallel) without exiting; see
/// [`ir_labels`].
pub fn run_ir_labels(args: &IrLabelArgs, progress: bool) -> Result<IrLabelSummary> {
    let ds = open_split(&args.dataset, &args.split)
        .with_context(|| format!("opening {}", args.dataset.display()))?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.dataset.join("ir_labels"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let cfg = IrLabelConfig {
        conf_fg_thres: args.conf_fg_thres,
        conf_bg_thres: args.conf_bg_thres,
        ..IrLabelConfig::ssc()
    };
    let pb = if progress {
        crate::progress(ds.len() as u64, "IR labels")
    } else {
        indicatif::ProgressBar::hidden()
    };
    let written = AtomicU64::new(0);
    let results: Vec<_> =
        ds.items
            .par_iter()
            .map(|it| {
                let r = one_label(&it.id, &it.image, &args.cams, &out, &cfg, args.overwrite)
                    .and_then(|(map, new)| {
                        written.fetch_add(new as u64, Ordering::Relaxed);
                        let mut st = None;
                        if let Some(gt) = &it.gt {
                            let g = read_mask(gt, &ds.classes)?;
                            if g.size() != map.size() {
                                bail!(
                                    "{}: GT size {:?} differs from {:?}",
                                    gt.display(),
                                    g.size(),
                                    map.size()
                                );
                            }
                            let mut s = IrLabelStats::default();
                            s.add(&map.data, &g.data);
                            st = Some(s);
                        }
                        Ok(st)
                    });
                pb.inc(1);
                (it.id.clone(), r)
            })
            .collect();
    pb.finish_and_clear();
    let mut summary = IrLabelSummary::default();
    let mut total: Option<IrLabelStats> = None;
    for (id, r) in results {
        match r {
            Ok(Some(s)) => {
                let t = total.get_or_insert_with(IrLabelStats::default);
                t.labelled += s.labelled;
                t.correct += s.correct;
                t.pixels += s.pixels;
                t.covered += s.covered;
            }
            Ok(None) => {}
            Err(e) => summary.failed.push((id, format!("{e:#}"))),
        }
    }
    summary.written = written.into_inner() as usize;
    summary.skipped = ds.len() - summary.written - summary.failed.len();
    summary.stats = total;
    Ok(summary)
}

/// `ssc-label irlabels`: IR labels (§4.1) for every image of a split; finished labels are
/// skipped (resume), failures are listed at the end and make the command fail.
pub fn ir_labels(args: IrLabelArgs) -> Result<()> {
    let s = run_ir_labels(&args, true)?;
    eprintln!(
        "IR labels: {} written, {} already present",
        s.written, s.skipped
    );
    if let Some(st) = s.stats {
        eprintln!(
            "vs GT: precision {:.2} % (of non-ignored pixels), coverage {:.2} % (not ignored)",
            100.0 * st.precision(),
            100.0 * st.coverage()
        );
    }
    if !s.failed.is_empty() {
        for (id, e) in &s.failed {
            eprintln!("failed: {id}: {e}");
        }
        bail!("{} of the images failed", s.failed.len());
    }
    Ok(())
}

/// Arguments of `ssc-train irn`.
#[derive(Args, Debug, Clone)]
pub struct TrainIrnArgs {
    /// Dataset root (VOC layout, or the synthetic benchmark).
    #[arg(long)]
    pub dataset: PathBuf,
    /// Split to train on.
    #[arg(long, default_value = "train")]
    pub split: String,
    /// Folder of IR labels (default `<dataset>/ir_labels`).
    #[arg(long)]
    pub ir_labels: Option<PathBuf>,
    /// Output folder (checkpoints, `irn.safetensors`, `config.json`).
    #[arg(long)]
    pub out: PathBuf,
    /// Preset: `voc`, `coco` or `synthetic`.
    #[arg(long, default_value = "voc")]
    pub preset: String,
    /// A full config JSON (as written beside a run) instead of the preset.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// torchvision ResNet-50 weights (.pth or safetensors) for the frozen backbone; required
    /// by the voc/coco presets.
    #[arg(long)]
    pub backbone_weights: Option<PathBuf>,
    /// Continue from the latest checkpoint in `--out` (with its saved config).
    #[arg(long)]
    pub resume: bool,
    /// Override the number of epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Override the batch size.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Override the seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Train on the first N images only.
    #[arg(long)]
    pub max_images: Option<usize>,
    /// Train like the reference code (momentum 1e-4, §2.8).
    #[arg(long)]
    pub reference_momentum_quirk: bool,
    /// Stop after this many epochs (a later `--resume` continues).
    #[arg(long)]
    pub stop_after_epoch: Option<usize>,
    /// Also export the trained network to this ONNX file.
    #[arg(long)]
    pub export: Option<PathBuf>,
}

/// The config a `train_irn` call runs with (preset or file, overrides, or the saved one when
/// resuming).
pub fn resolve_config(args: &TrainIrnArgs, num_foreground: usize) -> Result<IrnTrainConfig> {
    if args.resume
        && let Some(c) = saved_config(&args.out)?
    {
        if args.config.is_some() || args.epochs.is_some() || args.batch_size.is_some() {
            tracing::warn!(
                "resuming with the saved config; --config/--epochs/--batch-size ignored"
            );
        }
        return Ok(c);
    }
    let mut c = match &args.config {
        Some(p) => serde_json::from_str(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("{}: not an IRN training config", p.display()))?,
        None => IrnTrainConfig::preset(&args.preset, num_foreground)?,
    };
    if let Some(e) = args.epochs {
        c.epochs = e;
    }
    if let Some(b) = args.batch_size {
        c.batch_size = b;
    }
    if let Some(s) = args.seed {
        c.seed = s;
    }
    if args.max_images.is_some() {
        c.data.max_images = args.max_images;
    }
    if args.ir_labels.is_some() {
        c.data.ir_label_dir = args.ir_labels.clone();
    }
    c.reference_momentum_quirk |= args.reference_momentum_quirk;
    c.validate()?;
    Ok(c)
}

/// `ssc-train irn`: trains the IRN edge branch (§4.6).
pub fn train_irn(args: TrainIrnArgs) -> Result<()> {
    let ds = open_split(&args.dataset, &args.split)
        .with_context(|| format!("opening {}", args.dataset.display()))?;
    let cfg = resolve_config(&args, ds.classes.num_foreground())?;
    let set = Arc::new(IrnTrainSet::new(&ds, &args.dataset, &cfg)?);
    if !set.left_out().is_empty() {
        eprintln!(
            "training on {} of {} images: {} IR labels have more than {:.0} % foreground \
             (data.max_fg_fraction)",
            set.len(),
            set.len() + set.left_out().len(),
            set.left_out().len(),
            cfg.data.max_fg_fraction.unwrap_or(1.0) * 100.0
        );
    }
    let opts = IrnTrainOptions {
        backbone_weights: args.backbone_weights.clone(),
        resume: args.resume,
        progress: true,
        stop_after_epoch: args.stop_after_epoch,
        ..IrnTrainOptions::new(&args.out)
    };
    let (_, report) = train(&cfg, set, &opts)?;
    for (i, l) in report.epoch_stats.iter().enumerate() {
        eprintln!(
            "epoch {}: loss {:.4} (bg_pos {:.4}, fg_pos {:.4}, neg {:.4})",
            report.epochs - report.epoch_stats.len() + i + 1,
            l.total,
            l.bg_pos,
            l.fg_pos,
            l.neg
        );
    }
    eprintln!("{:.3} s per step", report.seconds_per_step);
    if let (Some(w), Some(onnx)) = (&report.weights, &args.export) {
        export_irn(w, onnx)?;
        eprintln!("exported {}", onnx.display());
    }
    Ok(())
}

/// The weights file and config of a trained IRN given as the weights file itself, a
/// checkpoint folder or a run folder.
fn locate(checkpoint: &Path) -> Result<(PathBuf, PathBuf)> {
    if checkpoint.is_file() {
        let dir = checkpoint.parent().unwrap_or(Path::new("."));
        return Ok((checkpoint.to_path_buf(), dir.join("config.json")));
    }
    for name in [WEIGHTS_FILE, "net.safetensors"] {
        let f = checkpoint.join(name);
        if f.is_file() {
            return Ok((f, checkpoint.join("config.json")));
        }
    }
    if let Some(dir) = ssc_training::checkpoint::latest(checkpoint)? {
        return Ok((dir.join("net.safetensors"), dir.join("config.json")));
    }
    bail!(
        "{}: neither an IRN weights file nor a folder holding {WEIGHTS_FILE} or a checkpoint",
        checkpoint.display()
    )
}

/// Exports a trained IRN (weights file, checkpoint folder or run folder; the `config.json`
/// beside it gives the network) to ONNX with
/// [`ssc_models::onnx::export_irn_edge`]. The exporter reads the backbone at the root and the
/// branch as `fc_edge{n}` (IRN's names); the training layout keeps the backbone under
/// `backbone.`, which is stripped here.
pub fn export_irn(checkpoint: &Path, out: &Path) -> Result<()> {
    let (weights, config) = locate(checkpoint)?;
    let cfg: IrnTrainConfig = serde_json::from_str(
        &std::fs::read_to_string(&config)
            .with_context(|| format!("reading {}", config.display()))?,
    )
    .with_context(|| format!("{}: not an IRN training config", config.display()))?;
    let f = TensorFile::open(&weights)?;
    let mut w = Weights::new();
    for name in f.names() {
        let new = if let Some(rest) = name.strip_prefix(BACKBONE_PREFIX) {
            rest.to_string()
        } else if name.starts_with("fc_edge") {
            name.clone()
        } else {
            continue;
        };
        if new.ends_with("num_batches_tracked") {
            continue;
        }
        let (v, s) = f.f32(&name)?;
        w.insert(new, v, s);
    }
    let bytes = export_irn_edge(&w, &cfg.net)
        .with_context(|| format!("exporting {}", weights.display()))?;
    ssc_core::atomic::write(out, &bytes)?;
    Ok(())
}
