//! `ssc-superpixels`: ICD-style superpixels (§5: FH segmentation, greedy merge to at most 64
//! regions) for every image of a dataset, written as `<out>/<id>.png` in the §1.5 format.
//!
//! At scale through `ssc_inference::batch`: shards, resume (a finished, readable file of the right
//! size is skipped), one failing image does not stop the run, a manifest per shard, and the
//! resolved parameters in `<out>/superpixels.json`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde::{Deserialize, Serialize};
use ssc_core::dataset::{DatasetSpec, Item};
use ssc_core::superpixels::{self, Params};
use ssc_inference::batch::{self, Job, Resumable};
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

/// The resolved settings written beside the outputs.
#[derive(Serialize, Deserialize, PartialEq)]
struct Settings {
    params: Params,
    dataset: DatasetSpec,
    version: String,
}

fn params(cli: &Cli) -> Result<Params> {
    let mut p = Params::icd();
    if let Some(v) = cli.sigma {
        p.sigma = v;
    }
    if let Some(v) = cli.k {
        p.k = v;
    }
    if let Some(v) = cli.min_size {
        p.min_size = v;
    }
    if let Some(v) = cli.max_regions {
        p.max_regions = v;
    }
    if !(p.sigma.is_finite() && p.sigma >= 0.0) {
        bail!("--sigma must be a finite number ≥ 0, got {}", p.sigma);
    }
    if !(p.k.is_finite() && p.k > 0.0) {
        bail!("--k must be a finite number > 0, got {}", p.k);
    }
    if !(1..=256).contains(&p.max_regions) {
        bail!(
            "--max-regions must be 1…256 (the file stores 8-bit indices), got {}",
            p.max_regions
        );
    }
    Ok(p)
}

/// Writes `superpixels.json`, refusing a folder made with other parameters so one output
/// folder never mixes two settings.
fn write_settings(out: &Path, settings: &Settings) -> Result<()> {
    let path = out.join("superpixels.json");
    if path.is_file() {
        let old: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)
            .with_context(|| format!("{}: not valid JSON", path.display()))?;
        // Compared as `Params`, not as JSON values: f32 fields do not survive a JSON round
        // trip bit for bit as `Value`s.
        let same = old
            .get("params")
            .and_then(|p| serde_json::from_value::<Params>(p.clone()).ok())
            .is_some_and(|p| p == settings.params);
        if !same {
            bail!(
                "{} holds superpixels made with other parameters ({}); choose another --out \
                 or delete the folder",
                path.display(),
                old.get("params").map(|p| p.to_string()).unwrap_or_default()
            );
        }
    }
    ssc_core::atomic::write(&path, &serde_json::to_vec_pretty(settings)?)?;
    Ok(())
}

struct SuperpixelJob {
    out: PathBuf,
    params: Params,
}

impl SuperpixelJob {
    fn path(&self, item: &Item) -> PathBuf {
        self.out.join(format!("{}.png", item.id))
    }
}

impl Resumable for SuperpixelJob {
    type Item = Item;

    fn id<'a>(&self, item: &'a Item) -> &'a str {
        &item.id
    }

    fn outputs(&self, item: &Item) -> Vec<PathBuf> {
        vec![self.path(item)]
    }

    /// Done when the file decodes as a valid partition with the image's size.
    fn is_done(&self, item: &Item) -> bool {
        let Ok(seg) = superpixels::file::read(&self.path(item)) else {
            return false;
        };
        let size = ssc_core::imageio::image_size(&item.image).ok();
        size == Some((seg.width as u32, seg.height as u32))
            && seg.count <= self.params.max_regions
            && superpixels::validate(&seg).is_ok()
    }
}

impl Job for SuperpixelJob {
    type Error = anyhow::Error;

    fn process(&self, item: &Item) -> Result<()> {
        let img = ssc_core::imageio::read_rgb(&item.image)?;
        let seg = superpixels::superpixels_image(&img, &self.params)?;
        superpixels::file::write(&self.path(item), &seg)?;
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    ssc_tools::run_main(run)
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let params = params(&cli)?;
    let ds = cli.data.open()?;
    let opts = cli.batch.run_options("ssc-superpixels", &cli.out)?;
    write_settings(
        &cli.out,
        &Settings {
            params: params.clone(),
            dataset: cli.data.spec()?,
            version: env!("CARGO_PKG_VERSION").to_string(),
        },
    )?;
    let job = SuperpixelJob {
        out: cli.out.clone(),
        params,
    };
    let pool = batch::thread_pool(cli.batch.threads)?;
    let manifest = pool.install(|| batch::run(&job, &ds.items, &opts))?;
    manifest.into_result()?;
    Ok(())
}
