//! `ssc-export`: trained (or torchvision) weights → a self-describing ONNX model for the
//! inference side (§10.3), and `.pth` → safetensors conversion.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use ssc_models::config::{BackboneConfig, CamNetConfig, IrnConfig};
use ssc_models::import::load_state_dict;
use ssc_models::onnx;
use ssc_tools::export::{
    deeplab_onnx, dim0, infer_layout, meta, read_net_config as read_json, to_weights,
};

#[derive(Parser)]
#[command(
    name = "ssc-export",
    version,
    about = "Export networks to ONNX (cam, irn, deeplab) or convert .pth to safetensors",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    export: ExportArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Convert a PyTorch state dict (`.pth`, zip or legacy format) to safetensors.
    Convert {
        /// Input `.pth` file.
        #[arg(long)]
        pth: PathBuf,
        /// Output `.safetensors` file.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Arch {
    /// Classifier backbone + DRS + 1×1 classifier → ReLU'd CAMs at stride 16 (§3.1).
    Cam,
    /// IRN class-boundary branch → edge logits at stride 4 (§4.2).
    Irn,
    /// DeepLabV2 (ResNet or EfficientNet-Lite + ASPP) → pre-logits at stride 8/16 and
    /// logits (§6.1).
    Deeplab,
    /// The whole EfficientNet-Lite ImageNet classifier (`_fc` included) → `logits` and
    /// `features`, to check an import against PyTorch.
    Imagenet,
}

#[derive(clap::Args)]
struct ExportArgs {
    /// Network to export.
    #[arg(long, value_enum)]
    arch: Option<Arch>,
    /// Weights: safetensors or PyTorch `.pth` (torchvision ResNet or EfficientNet-Lite
    /// package names).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Network config JSON, or a training run's `config.json`; default: inferred from the
    /// weights, with the stride/dilation layout of `--arch`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Class names for the metadata: `voc`, `coco` or a class-list file (background first).
    #[arg(long)]
    classes: Option<String>,
    /// DeepLab output stride when inferring the layout (8 as the reference code, 16 as the
    /// paper).
    #[arg(long, default_value_t = 8)]
    output_stride: usize,
    /// Output `.onnx` file.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    ssc_tools::run_main(run)
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Convert { pth, out }) = cli.command {
        let n = ssc_models::import::convert_pth_to_safetensors(&pth, &out)?;
        println!("wrote {} ({n} tensors)", out.display());
        return Ok(());
    }
    let a = cli.export;
    let (Some(arch), Some(weights), Some(out)) = (a.arch, a.weights.as_ref(), a.out.as_ref())
    else {
        bail!("--arch, --weights and --out are required (or use `ssc-export convert`)");
    };
    let sd = load_state_dict(weights)?;
    let bytes = match arch {
        Arch::Cam => {
            let w = to_weights(&sd)?;
            let cfg: CamNetConfig = match &a.config {
                Some(p) => read_json(p)?,
                None => CamNetConfig {
                    backbone: infer_layout(&w, &sd, [1, 2, 2, 1], [1, 1, 1, 1], 16)?,
                    num_classes: dim0(&w, "classifier.weight", weights)?,
                    ..CamNetConfig::voc()
                },
            };
            let meta = meta(&a.classes, cfg.num_classes, false)?;
            onnx::export::export_cam_with(&w, &cfg.backbone, cfg.drs_delta as f32, &meta)?
        }
        Arch::Irn => {
            let w = to_weights(&sd)?;
            let cfg: IrnConfig = match &a.config {
                Some(p) => read_json(p)?,
                None => IrnConfig {
                    edge_width: dim0(&w, "fc_edge1.0.weight", weights)?,
                    ..IrnConfig::for_backbone(infer_layout(
                        &w,
                        &sd,
                        [1, 2, 2, 1],
                        [1, 1, 1, 1],
                        16,
                    )?)
                },
            };
            let meta = meta(&a.classes, 0, false)?;
            onnx::export::export_irn_edge_with(&w, &cfg, &meta)?
        }
        Arch::Deeplab => deeplab_onnx(&sd, a.config.as_deref(), a.output_stride, &a.classes)?,
        Arch::Imagenet => {
            let w = to_weights(&sd)?;
            let BackboneConfig::EfficientNetLite(cfg) =
                infer_layout(&w, &sd, [1, 2, 2, 2], [1, 1, 1, 1], 32)?
            else {
                bail!(
                    "{}: --arch imagenet exports EfficientNet-Lite classifiers (package names                      _conv_stem.weight, …, _fc.weight)",
                    weights.display()
                );
            };
            let n = dim0(&w, "_fc.weight", weights)?;
            let meta = a
                .classes
                .as_ref()
                .map(|_| meta(&a.classes, n, false))
                .transpose()?;
            onnx::export::export_imagenet(&w, &cfg, n, meta.as_ref())?
        }
    };
    ssc_core::atomic::write(out, &bytes)?;
    println!(
        "wrote {} ({:.1} MB)",
        out.display(),
        bytes.len() as f64 / 1e6
    );
    Ok(())
}
