//! `ssc-report`: writes `RUN/report.html`, one self-contained page about a run of the main job
//! or the real-data job: results and wall time per stage, IoU per class, training curves, a
//! grid of pictures (best, median and worst images) and the configs, seeds and commands.
//! See `ssc_tools::report` for what it reads.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use ssc_tools::report::{ReportOptions, write_report};

#[derive(Parser)]
#[command(
    name = "ssc-report",
    version,
    about = "Write one self-contained HTML report (pictures, charts, configs) for a run folder"
)]
struct Cli {
    /// The run folder (e.g. runs/main).
    #[arg(long)]
    run: PathBuf,
    /// VOC-layout root with JPEGImages/ and SegmentationClass(Aug)/: the ground truth that
    /// scores and ranks the pictures. Without it the pictures come from the dataset root the
    /// stages recorded and carry no scores.
    #[arg(long)]
    gt: Option<PathBuf>,
    /// Images per picture grid (with ground truth: the best, the worst and evenly spaced ranks
    /// between, the median among them when odd).
    #[arg(long, default_value_t = 5)]
    images: usize,
    /// Long side of each picture, in pixels.
    #[arg(long, default_value_t = 200)]
    thumb: u32,
    /// Output file (default RUN/report.html).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    ssc_tools::run_main(|| -> Result<()> {
        let cli = Cli::parse();
        let s = write_report(&ReportOptions {
            run: cli.run,
            gt: cli.gt,
            images: cli.images,
            thumb: cli.thumb.max(16),
            out: cli.out,
        })?;
        for w in &s.warnings {
            tracing::warn!("not shown: {w}");
        }
        println!(
            "wrote {} ({:.1} MB: {} pictures, {} charts{})",
            s.path.display(),
            s.bytes as f64 / 1e6,
            s.pictures,
            s.charts,
            if s.warnings.is_empty() {
                String::new()
            } else {
                format!(", {} items not shown", s.warnings.len())
            }
        );
        Ok(())
    })
}
