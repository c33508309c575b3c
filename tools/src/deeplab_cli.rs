//! `ssc-train deeplab`: DeepLabV2 training on pseudo-masks (§6) with validation mIoU, best
//! checkpoint, resume, and the ONNX export of the best checkpoint (§10.3).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use ssc_training::cam::data::open_split;
use ssc_training::cam::trainer::device;
use ssc_training::checkpoint::saved_config;
use ssc_training::deeplab::config::DeepLabTrainConfig;
use ssc_training::deeplab::data::{DeepLabTrainSet, ValSet};
use ssc_training::deeplab::trainer::{BEST_FILE, DeepLabTrainOptions, train};

/// Arguments of `ssc-train deeplab`.
#[derive(Args, Debug, Clone)]
pub struct TrainDeepLabArgs {
    /// Dataset root (VOC layout, or the synthetic benchmark).
    #[arg(long)]
    pub data: PathBuf,
    /// Split to train on.
    #[arg(long, default_value = "train")]
    pub split: String,
    /// Folder of pseudo-masks `<id>.png` (palette or grey class ids, 255 = ignore), e.g. the
    /// output of `ssc-label pseudo`.
    #[arg(long)]
    pub pseudo: PathBuf,
    /// Folder of confidence masks `<id>.png` (0 = unreliable; `ssc-label pseudo
    /// --confidence` writes them to `<pseudo>/confidence`), used as per-pixel loss weights.
    #[arg(long)]
    pub confidence: Option<PathBuf>,
    /// Annotators' corrections (`ssc-serve --corrections DIR`): each replaces the pseudo-mask
    /// of the training image it names (matched by file name), at full confidence.
    /// Corrections of images outside `--split` are listed and left out.
    #[arg(long)]
    pub corrections: Option<PathBuf>,
    /// Start from a trained DeepLabV2 (a run's `best.safetensors`) instead of the preset's
    /// initialisation: fine-tuning, e.g. on corrections (`--backbone-weights` is then not
    /// needed). The network config must match the file.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Split with ground truth for the per-epoch validation mIoU.
    #[arg(long, default_value = "val")]
    pub val_split: String,
    /// Preset: `voc`, `coco` or `synthetic`.
    #[arg(long, default_value = "voc")]
    pub preset: String,
    /// A full config JSON (as written beside a run) instead of the preset.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Output stride 8 (reference code) or 16 (paper).
    #[arg(long)]
    pub output_stride: Option<usize>,
    /// torchvision ResNet-101 weights (.pth or safetensors); required by the voc/coco presets.
    #[arg(long)]
    pub backbone_weights: Option<PathBuf>,
    /// Output folder (checkpoints, `deeplab.safetensors`, `best.safetensors`, `config.json`).
    #[arg(long)]
    pub out: PathBuf,
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
    /// cpu or cuda (needs the `cuda` feature).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Stop after this many epochs (a later `--resume` continues).
    #[arg(long)]
    pub stop_after_epoch: Option<usize>,
    /// Export the best checkpoint to this ONNX file after training.
    #[arg(long)]
    pub export: Option<PathBuf>,
}

/// The config a run uses: the saved one when resuming, else the preset or file with the
/// flags applied.
pub fn resolve_config(
    args: &TrainDeepLabArgs,
    num_foreground: usize,
) -> Result<DeepLabTrainConfig> {
    if args.resume
        && let Some(c) = saved_config::<DeepLabTrainConfig>(&args.out)?
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
        .with_context(|| format!("{}: not a DeepLab training config", p.display()))?,
        None => DeepLabTrainConfig::preset(&args.preset, num_foreground)?,
    };
    if let Some(os) = args.output_stride {
        c.set_output_stride(os)?;
    }
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
    if args.confidence.is_some() {
        c.confidence_dir = args.confidence.clone();
    }
    if args.corrections.is_some() {
        c.corrections_dir = args.corrections.clone();
    }
    c.validate()?;
    Ok(c)
}

/// `ssc-train deeplab`.
pub fn train_deeplab(args: TrainDeepLabArgs) -> Result<()> {
    let ds = open_split(&args.data, &args.split)
        .with_context(|| format!("opening {}", args.data.display()))?;
    let cfg = resolve_config(&args, ds.classes.num_foreground())?;
    let opts = DeepLabTrainOptions {
        device: device(&args.device)?,
        backbone_weights: args.backbone_weights.clone(),
        init_weights: args.init.clone(),
        resume: args.resume,
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        stop_after_epoch: args.stop_after_epoch,
        ..DeepLabTrainOptions::new(&args.out)
    };
    ssc_training::deeplab::trainer::require_weights(&cfg, &opts)?;
    let labels = ds.classes.num_foreground() + 1;
    anyhow::ensure!(
        cfg.net.num_classes == labels,
        "{}: the dataset has {labels} labels (background included) but the network has {}",
        args.data.display(),
        cfg.net.num_classes
    );
    let mut set = DeepLabTrainSet::new(
        &ds,
        &args.pseudo,
        cfg.confidence_dir.as_deref(),
        cfg.net.num_classes,
        &cfg.data,
    )?;
    if let Some(dir) = &cfg.corrections_dir {
        apply_corrections(&mut set, dir, &args.out, args.init.as_deref())?;
    }
    let set = Arc::new(set);
    let vds = open_split(&args.data, &args.val_split)
        .with_context(|| format!("opening split {}", args.val_split))?;
    let val = ValSet::new(&vds, cfg.data.val_size, cfg.data.val_max_images)?;
    let t0 = std::time::Instant::now();
    let (_, report) = train(&cfg, set, &val, &opts)?;
    for s in &report.epoch_stats {
        eprintln!(
            "epoch {}: loss {:.4}, val mIoU {:.2}",
            s.epoch,
            s.loss,
            100.0 * s.val_miou
        );
    }
    eprintln!(
        "{:.3} s per step, {:.1} s in all",
        report.seconds_per_step,
        t0.elapsed().as_secs_f64()
    );
    if let Some(b) = report.best {
        println!(
            "best: epoch {} val mIoU {:.2} ({})",
            b.epoch,
            100.0 * b.miou,
            args.out.join(BEST_FILE).display()
        );
    }
    if let (Some(_), Some(onnx)) = (&report.weights, &args.export) {
        let classes = args.data.join("classes.txt");
        let classes = classes.is_file().then(|| classes.display().to_string());
        export_best(&args.out, onnx, &classes)?;
        println!("exported {}", onnx.display());
    }
    Ok(())
}

/// Puts the corrections of `dir` in place of the pseudo-masks they name and records which
/// (`<out>/corrections.json`: folder, init weights, ids used, references left out).
fn apply_corrections(
    set: &mut DeepLabTrainSet,
    dir: &Path,
    out: &Path,
    init: Option<&Path>,
) -> Result<()> {
    let (found, unmatched) = ssc_core::formats::corrections::by_id(dir, &set.ids())
        .with_context(|| format!("reading the corrections in {}", dir.display()))?;
    let used = set.apply_corrections(&found);
    let left_out: Vec<String> = unmatched
        .iter()
        .map(|s| {
            format!(
                "task {}: {}",
                s.task,
                s.image.as_deref().unwrap_or("(no image reference)")
            )
        })
        .collect();
    if !left_out.is_empty() {
        tracing::warn!(
            "{} correction(s) in {} name no training image and are left out: {}",
            left_out.len(),
            dir.display(),
            left_out
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    anyhow::ensure!(
        !used.is_empty() || found.is_empty() && unmatched.is_empty(),
        "{}: none of its {} correction(s) names a training image (matched by file name)",
        dir.display(),
        unmatched.len()
    );
    tracing::info!(
        "{} of {} training images use annotators' corrections from {}",
        used.len(),
        set.len(),
        dir.display()
    );
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let record = serde_json::json!({
        "corrections": dir,
        "init": init,
        "used": used,
        "left_out": left_out,
    });
    ssc_core::atomic::write(
        &out.join("corrections.json"),
        serde_json::to_string_pretty(&record)?.as_bytes(),
    )?;
    Ok(())
}

/// Exports `<run>/best.safetensors` with the run's `config.json` to ONNX through
/// [`crate::export::deeplab_onnx`] (the code path of `ssc-export --arch deeplab`).
pub fn export_best(run: &Path, onnx: &Path, classes: &Option<String>) -> Result<()> {
    let weights = run.join(BEST_FILE);
    let sd = ssc_models::import::load_state_dict(&weights)?;
    let bytes = crate::export::deeplab_onnx(&sd, Some(&run.join("config.json")), 8, classes)
        .with_context(|| format!("exporting {}", weights.display()))?;
    ssc_core::atomic::write(onnx, &bytes)?;
    Ok(())
}
