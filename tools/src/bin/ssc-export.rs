//! `ssc-export`: trained (or torchvision) weights → a self-describing ONNX model for the
//! inference side (§10.3), and `.pth` → safetensors conversion.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use ssc_models::config::{CamNetConfig, DeepLabConfig, IrnConfig, ResNetConfig};
use ssc_models::import::{StateDict, infer_resnet, load_state_dict};
use ssc_models::onnx::{self, ExportMeta, Weights};

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
    /// DeepLabV2 (ResNet + ASPP) → pre-logits at stride 8/16 and logits (§6.1).
    Deeplab,
}

#[derive(clap::Args)]
struct ExportArgs {
    /// Network to export.
    #[arg(long, value_enum)]
    arch: Option<Arch>,
    /// Weights: safetensors or PyTorch `.pth` (torchvision names).
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
    let w = to_weights(&sd)?;
    let bytes = match arch {
        Arch::Cam => {
            let cfg: CamNetConfig = match &a.config {
                Some(p) => read_json(p)?,
                None => CamNetConfig {
                    backbone: infer_resnet(&sd, [1, 2, 2, 1], [1, 1, 1, 1])?,
                    num_classes: dim0(&w, "classifier.weight", weights)?,
                    ..CamNetConfig::voc()
                },
            };
            let meta = meta(&a.classes, cfg.num_classes, false)?;
            onnx::export::export_cam_with(&w, &cfg.backbone, cfg.drs_delta as f32, &meta)?
        }
        Arch::Irn => {
            let cfg: IrnConfig = match &a.config {
                Some(p) => read_json(p)?,
                None => IrnConfig {
                    edge_width: dim0(&w, "fc_edge1.0.weight", weights)?,
                    ..IrnConfig::for_backbone(infer_resnet(&sd, [1, 2, 2, 1], [1, 1, 1, 1])?)
                },
            };
            let meta = meta(&a.classes, 0, false)?;
            onnx::export::export_irn_edge_with(&w, &cfg, &meta)?
        }
        Arch::Deeplab => {
            // The candle DeepLab keeps its backbone under `backbone.`; the exporter reads
            // torchvision names at the root.
            let w = if w.names().iter().any(|n| n.starts_with("backbone.")) {
                let mut root = w.strip_prefix("backbone.");
                root.merge(w.strip_prefix("classifier."), "classifier.");
                root
            } else {
                w
            };
            let cfg: DeepLabConfig = match &a.config {
                Some(p) => read_json(p)?,
                None => {
                    let (strides, dilations) = match a.output_stride {
                        8 => ([1, 2, 1, 1], [1, 1, 2, 4]),
                        16 => ([1, 2, 2, 1], [1, 1, 1, 2]),
                        s => bail!("--output-stride must be 8 or 16, got {s}"),
                    };
                    DeepLabConfig {
                        backbone: infer_layout(&w, &sd, strides, dilations)?,
                        num_classes: dim0(&w, "classifier.0.weight", weights)?,
                        ..DeepLabConfig::voc()
                    }
                }
            };
            let meta = meta(&a.classes, cfg.num_classes, true)?;
            onnx::export::export_deeplab_with(&w, &cfg, &meta)?
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

/// ResNet layout inferred from `backbone.`-prefixed or root torchvision keys.
fn infer_layout(
    w: &Weights,
    sd: &StateDict,
    strides: [usize; 4],
    dilations: [usize; 4],
) -> Result<ResNetConfig> {
    match infer_resnet(sd, strides, dilations) {
        Ok(cfg) => Ok(cfg),
        Err(_) => {
            let mut blocks = [0usize; 4];
            for name in w.names() {
                let mut parts = name.split('.');
                if let (Some(l), Some(i)) = (parts.next(), parts.next())
                    && let (Some(Ok(l)), Ok(i)) = (
                        l.strip_prefix("layer").map(str::parse::<usize>),
                        i.parse::<usize>(),
                    )
                    && (1..=4).contains(&l)
                {
                    blocks[l - 1] = blocks[l - 1].max(i + 1);
                }
            }
            let base = dim0(w, "conv1.weight", sd.path())?;
            anyhow::ensure!(
                blocks.iter().all(|&b| b > 0),
                "{}: no torchvision ResNet layers found",
                sd.path().display()
            );
            Ok(ResNetConfig {
                blocks,
                base_width: base,
                strides,
                dilations,
                bn_eps: 1e-5,
            })
        }
    }
}

fn to_weights(sd: &StateDict) -> Result<Weights> {
    let mut w = Weights::new();
    for (name, t) in sd.tensors() {
        let v: Vec<f32> = t
            .to_dtype(candle_core::DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1())
            .with_context(|| format!("{}: tensor {name}", sd.path().display()))?;
        w.insert(name.clone(), v, t.dims().to_vec());
    }
    Ok(w)
}

fn dim0(w: &Weights, name: &str, file: &Path) -> Result<usize> {
    w.shape(name)
        .and_then(|s| s.first().copied())
        .with_context(|| format!("{}: no tensor `{name}`", file.display()))
}

/// A network config, or a training run's `config.json` (whose `net` field is the network).
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut v: serde_json::Value =
        serde_json::from_slice(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    if let Some(net) = v.get_mut("net") {
        v = net.take();
    }
    serde_json::from_value(v).with_context(|| format!("{}: not a valid config", path.display()))
}

/// Metadata class names: from `--classes`, else defaults by count.
fn meta(classes: &Option<String>, n: usize, with_background: bool) -> Result<ExportMeta> {
    let Some(spec) = classes else {
        return Ok(if with_background {
            ExportMeta::with_background(n)
        } else {
            ExportMeta::foreground(n)
        });
    };
    let map = ssc_tools::class_map(spec)?;
    let names = if with_background {
        map.names.clone()
    } else {
        map.names[1..].to_vec()
    };
    anyhow::ensure!(
        n == 0 || names.len() == n,
        "--classes lists {} classes but the network has {n}",
        names.len()
    );
    Ok(ExportMeta::new(names))
}
