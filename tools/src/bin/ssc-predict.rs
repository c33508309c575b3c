//! `ssc-predict`: segment image folders with an exported DeepLab through ONNX Runtime,
//! sharded and resumable. This file parses the command line; the work is
//! `ssc_inference::jobs::PredictJob` (masks as VOC PNGs and the aggregate formats of
//! `ssc_inference::outputs`: CVAT, COCO, Label Studio; overlays; class scores).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use ssc_inference::jobs::predict::{PredictJob, ScoresFormat};
use ssc_inference::runtime::{Device, SessionConfig};
use ssc_inference::segment::SegmentConfig;
use ssc_tools::args::{BatchArgs, FormatArgs};

#[derive(Parser)]
#[command(
    name = "ssc-predict",
    version,
    about = "Segment image folders with an exported DeepLab (ONNX Runtime), sharded and resumable"
)]
struct Cli {
    /// The exported segmentation network (`ssc-export --arch deeplab`).
    #[arg(long)]
    model: PathBuf,
    /// An image folder (searched recursively) or a list file (one image path per line,
    /// relative to the list's folder or absolute; blank lines and `#` comments skipped).
    #[arg(long)]
    input: PathBuf,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Square base input side (§6.5).
    #[arg(long, default_value_t = 512)]
    input_size: usize,
    /// Extra scales fused by maximum (§6.5); `--scales ''` for single scale.
    #[arg(long, default_value = "0.5,0.75,1.0,1.25,1.5", value_delimiter = ',')]
    scales: Vec<String>,
    /// Also run the mirrored image at every scale and average (not in the reference).
    #[arg(long)]
    flip: bool,
    /// Refine with the dense CRF of §6.6 (on the real RGB image).
    #[arg(long)]
    crf: bool,
    /// Write colour overlays `overlays/<id>.jpg` (image blended with the class colours).
    #[arg(long)]
    overlay: bool,
    /// Write per-pixel class scores (soft-max, or CRF marginals with --crf), f32 K×H×W:
    /// `scores/<id>.safetensors` (default) or `.npy`.
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "safetensors")]
    scores: Option<ScoresFormat>,
    /// `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// The ONNX Runtime library (else ORT_DYLIB_PATH, else `.ort/lib`).
    #[arg(long)]
    ort_lib: Option<PathBuf>,
    #[command(flatten)]
    formats: FormatArgs,
    #[command(flatten)]
    batch: BatchArgs,
}

fn parse_scales(raw: &[String]) -> Result<Vec<f64>> {
    raw.iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse::<f64>()
                .with_context(|| format!("--scales: bad number {s:?}"))
        })
        .collect()
}

fn run(cli: Cli) -> Result<()> {
    let job = PredictJob {
        segment: SegmentConfig {
            input_size: cli.input_size,
            scales: parse_scales(&cli.scales)?,
        },
        session: SessionConfig {
            device: cli.device.parse::<Device>()?,
            library: cli.ort_lib,
            ..SessionConfig::default()
        },
        flip: cli.flip,
        crf: cli.crf,
        overlay: cli.overlay,
        scores: cli.scores,
        formats: cli.formats.options(),
        threads: cli.batch.threads,
        run: cli.batch.run_options("ssc-predict", &cli.out)?,
        model: cli.model,
        input: cli.input,
        out: cli.out,
    };
    job.run()?.into_result()?;
    Ok(())
}

fn main() -> std::process::ExitCode {
    ssc_tools::run_main(|| run(Cli::parse()))
}
