//! `ssc-superpixels`: ICD-style superpixels (§5: FH segmentation, greedy merge to at most 64
//! regions) for every image of a dataset, written as `<out>/<id>.png` in the §1.5 format.
//! This file parses the command line; the work, sharded and resumable, is
//! `ssc_inference::jobs::SuperpixelsJob`.

use std::path::PathBuf;

use clap::Parser;
use ssc_core::superpixels::Params;
use ssc_inference::jobs::SuperpixelsJob;
use ssc_tools::args::{BatchArgs, DatasetArgs};

#[derive(Parser)]
#[command(
    name = "ssc-superpixels",
    version,
    about = "Superpixels (FH + greedy merge, spec §5) for a whole dataset, sharded and resumable"
)]
struct Cli {
    #[command(flatten)]
    data: DatasetArgs,
    /// Output folder: `<id>.png` per image, `superpixels.json`, `manifest.<i>-of-<n>.json`.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    batch: BatchArgs,
    /// FH Gaussian σ (ICD: 0.8).
    #[arg(long)]
    sigma: Option<f32>,
    /// FH scale k (ICD: 75).
    #[arg(long)]
    k: Option<f32>,
    /// FH minimum region size in pixels (ICD: 75).
    #[arg(long)]
    min_size: Option<usize>,
    /// Most regions after the merge (ICD: 64; at most 256).
    #[arg(long)]
    max_regions: Option<usize>,
}

fn params(cli: &Cli) -> Params {
    let icd = Params::icd();
    Params {
        sigma: cli.sigma.unwrap_or(icd.sigma),
        k: cli.k.unwrap_or(icd.k),
        min_size: cli.min_size.unwrap_or(icd.min_size),
        max_regions: cli.max_regions.unwrap_or(icd.max_regions),
        ..icd
    }
}

fn main() -> std::process::ExitCode {
    ssc_tools::run_main(|| {
        let cli = Cli::parse();
        let job = SuperpixelsJob {
            dataset: cli.data.spec()?,
            params: params(&cli),
            threads: cli.batch.threads,
            run: cli.batch.run_options("ssc-superpixels", &cli.out)?,
            out: cli.out,
        };
        job.run()?.into_result()?;
        Ok(())
    })
}
