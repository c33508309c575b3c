//! `ssc-label`: label whole image collections with exported networks through ONNX Runtime.
//!
//! Subcommands (each a library module of `ssc_tools`, all sharded and resumable through
//! `ssc_tools::batch`): `cams` (§3, `label_cams`), `irlabels` (§4.1, `irn_cli`), `pseudo`
//! (§4.7–4.8 from CAM files, `label_pseudo`) and `masks` (CAM → IRN → random walk →
//! pseudo-mask in one pass, `label_masks`).

use clap::{Parser, Subcommand};

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
    Cams(ssc_tools::label_cams::CamsArgs),
    /// IR labels (spec §4.1: CAM thresholds + dense CRF + ignore band) from CAM files:
    /// `<out>/<id>.png`, with precision/coverage against the ground truth when it exists.
    Irlabels(ssc_tools::irn_cli::IrLabelArgs),
    /// Pseudo-masks (spec §4.7–4.8): CAM files + exported IRN edge network → random walk →
    /// `<out>/<id>.png`, optionally score stacks and confidence masks.
    Pseudo(ssc_tools::label_pseudo::PseudoArgs),
    /// Pseudo-masks in one pass (spec §3, §4.7–4.8): CAM network → IRN edge map → random walk
    /// → `<out>/<id>.png`, no CAM files in between unless `--save-cams`.
    Masks(ssc_tools::label_masks::MasksArgs),
}

fn main() -> std::process::ExitCode {
    ssc_tools::run_main(|| match Cli::parse().command {
        Command::Cams(args) => ssc_tools::label_cams::run(&args),
        Command::Irlabels(args) => ssc_tools::irn_cli::ir_labels(args),
        Command::Pseudo(args) => ssc_tools::label_pseudo::run(&args),
        Command::Masks(args) => ssc_tools::label_masks::run(&args),
    })
}
