//! `ssc-synth`: writes the built-in synthetic WSSS benchmark in the VOC layout, or a mosaic
//! picture of it.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use image::ImageEncoder;
use ssc_core::synth::{SynthConfig, mosaic, write_dataset};

#[derive(Parser)]
#[command(
    name = "ssc-synth",
    version,
    about = "Generate the synthetic WSSS benchmark (VOC layout)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the benchmark: JPEGImages, SegmentationClass, ImageSets, cls_labels.json.
    Generate {
        /// Output folder (created).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        generator: GenArgs,
    },
    /// Write a PNG mosaic of images next to their ground truth.
    Mosaic {
        /// Output PNG file.
        #[arg(long)]
        out: PathBuf,
        /// Number of image/mask pairs.
        #[arg(long, default_value_t = 16)]
        count: usize,
        /// Pairs per row.
        #[arg(long, default_value_t = 4)]
        cols: usize,
        #[command(flatten)]
        generator: GenArgs,
    },
}

#[derive(Args)]
struct GenArgs {
    /// JSON file with a full generator config (flags below override it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seed; the same seed and settings give identical files.
    #[arg(long)]
    seed: Option<u64>,
    /// Images in the train split.
    #[arg(long)]
    num_images: Option<usize>,
    /// Images in the val split.
    #[arg(long)]
    num_val: Option<usize>,
    /// Nominal image side in pixels (each image varies by ±15 %).
    #[arg(long)]
    size: Option<usize>,
    /// Number of foreground classes (1–10).
    #[arg(long)]
    classes: Option<usize>,
}

impl GenArgs {
    fn resolve(&self) -> Result<SynthConfig> {
        let mut cfg = match &self.config {
            Some(p) => {
                let text =
                    std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
                serde_json::from_slice(&text)
                    .with_context(|| format!("{}: not a synth config", p.display()))?
            }
            None => SynthConfig::synthetic(),
        };
        if let Some(v) = self.seed {
            cfg.seed = v;
        }
        if let Some(v) = self.num_images {
            cfg.num_train = v;
        }
        if let Some(v) = self.num_val {
            cfg.num_val = v;
        }
        if let Some(v) = self.size {
            cfg.size = v;
        }
        if let Some(v) = self.classes {
            cfg.classes = v;
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

fn main() -> std::process::ExitCode {
    ssc_tools::run_main(run)
}

fn run() -> Result<()> {
    match Cli::parse().command {
        Command::Generate { out, generator } => {
            let cfg = generator.resolve()?;
            let total = cfg.num_train + cfg.num_val;
            let bar = ssc_tools::progress(total as u64, "synth");
            let t0 = std::time::Instant::now();
            let summary = write_dataset(&cfg, &out, &|| bar.inc(1))
                .with_context(|| format!("writing the benchmark to {}", out.display()))?;
            bar.finish_and_clear();
            tracing::info!(
                train = summary.train,
                val = summary.val,
                seconds = format!("{:.1}", t0.elapsed().as_secs_f64()),
                "wrote {}",
                out.display()
            );
            println!(
                "wrote {} train + {} val images ({} classes) to {}",
                summary.train,
                summary.val,
                cfg.classes,
                out.display()
            );
        }
        Command::Mosaic {
            out,
            count,
            cols,
            generator,
        } => {
            let cfg = generator.resolve()?;
            let (w, h, px) = mosaic(&cfg, 0, count, cols);
            let mut png = Vec::new();
            image::codecs::png::PngEncoder::new(&mut png)
                .write_image(&px, w as u32, h as u32, image::ExtendedColorType::Rgb8)
                .context("encoding the mosaic")?;
            ssc_core::atomic::write(&out, &png)?;
            println!("wrote {} ({}×{})", out.display(), w, h);
        }
    }
    Ok(())
}
