//! `ssc-irn-dev`: TEMPORARY development entry point of the IRN stage until the coordinator
//! wires [`ssc_tools::irn_cli`] into `ssc-train irn` and `ssc-label irlabels`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use ssc_tools::irn_cli::{IrLabelArgs, TrainIrnArgs, export_irn, ir_labels, train_irn};

#[derive(Parser)]
#[command(name = "ssc-irn-dev", about = "IRN stage (development entry point)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// CAM files → IR labels (§4.1).
    Irlabels(IrLabelArgs),
    /// Train the IRN edge branch (§4.6).
    Train(TrainIrnArgs),
    /// Export a trained IRN (weights file, checkpoint or run folder) to ONNX.
    Export {
        /// Weights file, checkpoint folder or run folder.
        #[arg(long)]
        checkpoint: PathBuf,
        /// Output ONNX file.
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    ssc_tools::run_main(|| match Cli::parse().command {
        Command::Irlabels(a) => ir_labels(a),
        Command::Train(a) => train_irn(a),
        Command::Export { checkpoint, out } => export_irn(&checkpoint, &out),
    })
}
