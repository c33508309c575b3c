//! CLI glue of the IRN stage (§4): the arguments of `ssc-label irlabels` (CAMs → IR labels,
//! §4.1, run by `ssc_inference::jobs::IrLabelsJob`), `ssc-train irn` (edge-branch training,
//! §4.5–4.6, `ssc_training::irn`) and the ONNX export of a trained IRN (§10.3).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use ssc_core::irlabel::IrLabelConfig;
use ssc_core::tensors::TensorFile;
use ssc_inference::jobs::{IrLabelSummary, IrLabelsJob};
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

/// Computes the IR labels of a dataset split (in parallel) without exiting
/// (`ssc_inference::jobs::IrLabelsJob`); see [`ir_labels`].
pub fn run_ir_labels(args: &IrLabelArgs, progress: bool) -> Result<IrLabelSummary> {
    let job = IrLabelsJob {
        dataset: args.dataset.clone(),
        split: args.split.clone(),
        cams: args.cams.clone(),
        out: args
            .out
            .clone()
            .unwrap_or_else(|| args.dataset.join("ir_labels")),
        config: IrLabelConfig {
            conf_fg_thres: args.conf_fg_thres,
            conf_bg_thres: args.conf_bg_thres,
            ..IrLabelConfig::ssc()
        },
        overwrite: args.overwrite,
        progress,
    };
    Ok(job.run()?)
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
