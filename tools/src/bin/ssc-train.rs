//! `ssc-train`: SSC classifier training (§2) and its ablation (paper Table VII), IRN (§4)
//! and DeepLabV2 (§6).
//!
//! `ssc-train cam --data DIR` trains one configuration (checkpoint every epoch, `--resume`
//! continues exactly) and optionally evaluates its CAM seeds on splits; `ssc-train ablation
//! --data DIR` trains the five variants with the same seed and prints the mIoU table.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use ssc_training::cam::ablation::{self, default_thresholds};
use ssc_training::cam::config::{CamTrainConfig, Variant};
use ssc_training::cam::data::{TrainSet, open_split};
use ssc_training::cam::generate::evaluate_seeds;
use ssc_training::cam::trainer::{TrainOptions, device, require_weights, saved_config, train};

#[derive(Parser)]
#[command(name = "ssc-train", version, about = "Train SSC networks (spec §2)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train the SSC classifier (one configuration).
    Cam {
        #[command(flatten)]
        common: Common,
        /// Ablation variant: baseline, drs, drs_cdr, drs_cdr_asm_noras, full.
        #[arg(long, default_value = "full")]
        variant: String,
        /// Continue from the latest checkpoint in --out (its saved config is used).
        #[arg(long)]
        resume: bool,
        /// After training, evaluate CAM seeds on these splits (comma-separated, e.g.
        /// `train,val`) with a threshold sweep 0.05…0.60.
        #[arg(long, value_delimiter = ',')]
        eval_split: Vec<String>,
    },
    /// Train the IRN class-boundary network on IR labels (spec §4.3–4.6).
    Irn(ssc_tools::irn_cli::TrainIrnArgs),
    /// Train DeepLabV2 on pseudo-masks with validation mIoU (spec §6).
    Deeplab(ssc_tools::deeplab_cli::TrainDeepLabArgs),
    /// Train and evaluate the five ablation variants with the same seed (Table VII).
    Ablation {
        #[command(flatten)]
        common: Common,
        /// Variants to run (default: all five).
        #[arg(long, value_delimiter = ',')]
        variants: Vec<String>,
        /// Splits to evaluate.
        #[arg(long, value_delimiter = ',', default_value = "train,val")]
        eval_split: Vec<String>,
    },
}

#[derive(Args, Clone)]
struct Common {
    /// Dataset root (VOC layout; the synthetic benchmark adds classes.txt, cls_labels.json).
    #[arg(long)]
    data: PathBuf,
    /// Training split.
    #[arg(long, default_value = "train")]
    split: String,
    /// Preset: synthetic, voc, voc-lite (EfficientNet-Lite0, real photographs on a CPU) or
    /// coco.
    #[arg(long, default_value = "synthetic")]
    preset: String,
    /// JSON file whose fields override the preset (nested objects merge).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Output folder.
    #[arg(long, default_value = "runs/cam")]
    out: PathBuf,
    /// cpu or cuda (needs the `cuda` feature).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// ImageNet weights (.pth or safetensors) for the backbone: torchvision ResNet, or
    /// EfficientNet-Lite (`weights/efficientnet-lite0.safetensors` from
    /// `scripts/get-weights.sh`) for the voc-lite preset.
    #[arg(long)]
    backbone_weights: Option<PathBuf>,
    /// torchvision VGG-19 weights for the perceptual loss (they take precedence over the
    /// EfficientNet-Lite features of the voc-lite preset).
    #[arg(long)]
    vgg_weights: Option<PathBuf>,
    /// ImageNet EfficientNet-Lite weights for the perceptual loss of the voc-lite preset
    /// (default: --backbone-weights).
    #[arg(long)]
    perceptual_weights: Option<PathBuf>,
    /// Override the number of epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Override the seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Use only the first N training images.
    #[arg(long)]
    max_images: Option<usize>,
    /// Evaluate at most N images per split.
    #[arg(long)]
    eval_max_images: Option<usize>,
    /// Reproduce the reference code's SGD momentum (1e-4) instead of the paper's 0.9.
    #[arg(long)]
    reference_momentum_quirk: bool,
}

fn merge(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// The preset for the dataset, with the --config file and flags applied.
fn resolve(c: &Common, num_classes: usize, variant: Option<Variant>) -> Result<CamTrainConfig> {
    let preset = CamTrainConfig::preset(&c.preset, num_classes)?;
    let mut v = serde_json::to_value(&preset)?;
    if let Some(p) = &c.config {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let over: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: invalid JSON", p.display()))?;
        merge(&mut v, over);
    }
    let mut cfg: CamTrainConfig = serde_json::from_value(v).with_context(|| {
        format!(
            "{}: fields do not fit the training config",
            c.config
                .as_deref()
                .map_or("config".into(), |p| p.display().to_string())
        )
    })?;
    if let Some(e) = c.epochs {
        cfg.epochs = e;
    }
    if let Some(s) = c.seed {
        cfg.seed = s;
    }
    if let Some(m) = c.max_images {
        cfg.data.max_images = Some(m);
    }
    if let Some(m) = c.eval_max_images {
        cfg.eval_max_images = Some(m);
    }
    if c.reference_momentum_quirk {
        cfg.reference_momentum_quirk = true;
    }
    if let Some(v) = variant {
        cfg.variant = v;
    }
    if c.vgg_weights.is_some() {
        // Given VGG-19 weights are what the perceptual loss uses; say so in the saved config.
        cfg.perceptual_net = ssc_training::cam::config::PerceptualNet::Vgg;
    }
    if cfg.net.num_classes != num_classes {
        bail!(
            "{}: the dataset's image-level labels have {num_classes} classes but the config's \
             network has {}",
            c.data.display(),
            cfg.net.num_classes
        );
    }
    cfg.validate()?;
    Ok(cfg)
}

fn options(c: &Common, out: &Path) -> Result<TrainOptions> {
    Ok(TrainOptions {
        out: out.to_path_buf(),
        device: device(&c.device)?,
        backbone_weights: c.backbone_weights.clone(),
        init_weights: None,
        vgg_weights: c.vgg_weights.clone(),
        perceptual_weights: c.perceptual_weights.clone(),
        resume: false,
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        stop_after_epoch: None,
    })
}

fn run() -> Result<()> {
    match Cli::parse().command {
        Command::Irn(args) => ssc_tools::irn_cli::train_irn(args),
        Command::Deeplab(args) => ssc_tools::deeplab_cli::train_deeplab(args),
        Command::Cam {
            common,
            variant,
            resume,
            eval_split,
        } => {
            let ds = open_split(&common.data, &common.split)?;
            let k = ds.classes.num_foreground();
            let mut cfg = resolve(&common, k, Some(Variant::parse(&variant)?))?;
            if resume && let Some(saved) = saved_config(&common.out)? {
                // Continuing another variant's or seed's run would silently hand back
                // weights of a different experiment under the asked-for name.
                if saved.variant != cfg.variant || saved.seed != cfg.seed {
                    bail!(
                        "{}: the checkpoint there was trained as variant {} with seed {}, but this \
                         run asks for variant {} with seed {}; use another --out or leave out --resume",
                        common.out.display(),
                        saved.variant.name(),
                        saved.seed,
                        cfg.variant.name(),
                        cfg.seed
                    );
                }
                if saved != cfg {
                    tracing::warn!("resuming with the checkpoint's saved config");
                }
                cfg = saved;
            }
            let mut opts = options(&common, &common.out)?;
            opts.resume = resume;
            require_weights(&cfg, &opts)?;
            let set = Arc::new(TrainSet::new(&ds, &common.data, &cfg.data)?);
            let (nets, rep) = train(&cfg, set, &opts)?;
            println!(
                "trained {} ({} epochs, {} steps, {:.3} s/step after a first step of {:.3} s); \
                 weights: {}",
                cfg.variant.name(),
                rep.epochs,
                rep.iterations,
                rep.seconds_per_step,
                rep.first_step_seconds,
                rep.weights
                    .as_deref()
                    .map_or("-".into(), |p| p.display().to_string())
            );
            for split in &eval_split {
                let eds = open_split(&common.data, split)?;
                let ev = evaluate_seeds(
                    &nets.net,
                    &eds,
                    &cfg.eval_scales,
                    &default_thresholds(),
                    cfg.eval_max_images,
                    &opts.device,
                )?;
                println!(
                    "{split}: CAM seed mIoU {:.2} at threshold {:.2} ({} images)",
                    100.0 * ev.best.miou,
                    ev.best.threshold,
                    ev.images
                );
            }
            Ok(())
        }
        Command::Ablation {
            common,
            variants,
            eval_split,
        } => {
            let ds = open_split(&common.data, &common.split)?;
            let cfg = resolve(&common, ds.classes.num_foreground(), None)?;
            let variants = if variants.is_empty() {
                Variant::ALL.to_vec()
            } else {
                variants
                    .iter()
                    .map(|v| Variant::parse(v))
                    .collect::<Result<_, _>>()?
            };
            let opts = options(&common, &common.out)?;
            for &v in &variants {
                require_weights(
                    &CamTrainConfig {
                        variant: v,
                        ..cfg.clone()
                    },
                    &opts,
                )?;
            }
            let rep = ablation::run(
                &common.data,
                &common.split,
                &eval_split,
                &cfg,
                &variants,
                &common.out,
                &opts,
            )?;
            print!("{}", rep.markdown());
            println!(
                "written to {} and {}",
                common.out.join("ablation.json").display(),
                common.out.join("ablation.md").display()
            );
            Ok(())
        }
    }
}

fn main() -> std::process::ExitCode {
    ssc_tools::run_main(run)
}
