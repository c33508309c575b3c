//! `ssc-label`: label whole image collections with exported networks through ONNX Runtime.
//!
//! Subcommands, all sharded and resumable: `cams` (§3, `ssc_inference::jobs::CamsJob`),
//! `irlabels` (§4.1, `ssc_tools::irn_cli`), `pseudo` (§4.7–4.8 from CAM files,
//! `ssc_inference::jobs::PseudoJob`) and `masks` (CAM → IRN → random walk → pseudo-mask in one
//! pass, `ssc_inference::jobs::MasksJob`). This file parses the command line and calls them.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use ssc_inference::jobs::pseudo::read_params;
use ssc_inference::jobs::{CamsJob, MaskOptions, MasksJob, PseudoJob};
use ssc_inference::runtime::{Device, SessionConfig};
use ssc_tools::args::{BatchArgs, CamOptions, DatasetArgs, FormatArgs};

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
    Pseudo(PseudoArgs),
    /// Pseudo-masks in one pass (spec §3, §4.7–4.8): CAM network → IRN edge map → random walk
    /// → `<out>/<id>.png`, no CAM files in between unless `--save-cams`.
    Masks(MasksArgs),
}

/// Options of `ssc-label cams`.
#[derive(clap::Args, Debug)]
struct CamsArgs {
    /// The exported CAM network (`ssc-export --arch cam`).
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    data: DatasetArgs,
    /// Output folder: `<id>.safetensors`, `cams.json`, `manifest.<i>-of-<n>.json`.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    cam: CamOptions,
    #[command(flatten)]
    batch_args: BatchArgs,
}

/// The files written beside each pseudo-mask.
#[derive(clap::Args, Debug)]
struct MaskArgs {
    /// Write grey PNGs (class ids) instead of palette PNGs.
    #[arg(long)]
    grey: bool,
    /// Also write the score stacks `scores/<id>.safetensors` ((K+1)×H×W, §4.7).
    #[arg(long)]
    scores: bool,
    /// Also write confidence masks `confidence/<id>.png` (0/255, §4.8).
    #[arg(long)]
    confidence: bool,
    /// Random-walk / background settings as JSON (`RefineParams`); default: the reference's.
    #[arg(long)]
    params: Option<PathBuf>,
}

impl MaskArgs {
    fn options(&self) -> MaskOptions {
        MaskOptions {
            grey: self.grey,
            scores: self.scores,
            confidence: self.confidence,
        }
    }
}

/// Options of `ssc-label pseudo`.
#[derive(clap::Args, Debug)]
struct PseudoArgs {
    #[command(flatten)]
    data: DatasetArgs,
    /// Exported IRN edge network (`ssc-export --arch irn`).
    #[arg(long)]
    irn: PathBuf,
    /// Folder of CAM files `<id>.safetensors` (`ssc-label cams`).
    #[arg(long)]
    cams: PathBuf,
    /// Output folder: `<id>.png` pseudo-masks (always written, whatever `--format`) and the
    /// annotation files of `--format`.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    mask: MaskArgs,
    /// ONNX Runtime library (else `ORT_DYLIB_PATH`, else `.ort/lib`).
    #[arg(long)]
    ort_lib: Option<PathBuf>,
    /// `cpu` or `cuda[:N]`.
    #[arg(long, default_value = "cpu")]
    device: String,
    #[command(flatten)]
    formats: FormatArgs,
    #[command(flatten)]
    batch: BatchArgs,
}

/// Options of `ssc-label masks`.
#[derive(clap::Args, Debug)]
struct MasksArgs {
    /// The exported CAM network (`ssc-export --arch cam`).
    #[arg(long)]
    cam_model: PathBuf,
    /// The exported IRN edge network (`ssc-export --arch irn`).
    #[arg(long)]
    irn_model: PathBuf,
    #[command(flatten)]
    data: DatasetArgs,
    /// Output folder: `<id>.png` masks (sub-folders of image folders are kept; always
    /// written, whatever `--format`), the annotation files of `--format`, `masks.json`,
    /// `manifest.<i>-of-<n>.json`.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    cam: CamOptions,
    /// Also keep the CAMs as `<out>/cams/<id>.safetensors` (what `ssc-label cams` writes).
    #[arg(long)]
    save_cams: bool,
    #[command(flatten)]
    mask: MaskArgs,
    #[command(flatten)]
    formats: FormatArgs,
    #[command(flatten)]
    batch_args: BatchArgs,
}

fn cams(args: CamsArgs) -> Result<()> {
    let job = CamsJob {
        model: args.model,
        dataset: args.data.spec()?,
        cam: args.cam.stage_options()?,
        threads: args.batch_args.threads,
        run: args.batch_args.run_options("ssc-label cams", &args.out)?,
        out: args.out,
    };
    job.run()?.into_result()?;
    Ok(())
}

fn pseudo(args: PseudoArgs) -> Result<()> {
    let job = PseudoJob {
        dataset: args.data.spec()?,
        irn: args.irn,
        cams: args.cams,
        masks: args.mask.options(),
        params: read_params(args.mask.params.as_deref())?,
        session: SessionConfig {
            device: args.device.parse::<Device>()?,
            library: args.ort_lib,
            ..SessionConfig::default()
        },
        formats: args.formats.options(),
        threads: args.batch.threads,
        run: args.batch.run_options("ssc-label pseudo", &args.out)?,
        out: args.out,
    };
    job.run()?.into_result()?;
    Ok(())
}

fn masks(args: MasksArgs) -> Result<()> {
    let job = MasksJob {
        cam_model: args.cam_model,
        irn_model: args.irn_model,
        dataset: args.data.spec()?,
        cam: args.cam.stage_options()?,
        save_cams: args.save_cams,
        masks: args.mask.options(),
        params: read_params(args.mask.params.as_deref())?,
        formats: args.formats.options(),
        threads: args.batch_args.threads,
        run: args.batch_args.run_options("ssc-label masks", &args.out)?,
        out: args.out,
    };
    job.run()?.into_result()?;
    Ok(())
}

fn main() -> std::process::ExitCode {
    ssc_tools::run_main(|| match Cli::parse().command {
        Command::Cams(args) => cams(args),
        Command::Irlabels(args) => ssc_tools::irn_cli::ir_labels(args),
        Command::Pseudo(args) => pseudo(args),
        Command::Masks(args) => masks(args),
    })
}
