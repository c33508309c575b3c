//! `ssc-eval`: mean IoU (§7) of a prediction folder against ground truth.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Parser;
use rayon::prelude::*;
use ssc_core::classes::ClassMap;
use ssc_core::mask::read_mask;
use ssc_core::metrics::{Confusion, Report};

#[derive(Parser)]
#[command(
    name = "ssc-eval",
    version,
    about = "Mean IoU of predicted masks against ground truth (spec §7)",
    args_conflicts_with_subcommands = true
)]
struct Top {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    masks: Cli,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Score the trivial all-background predictor on the ground truth (a floor for every
    /// later stage).
    Baseline {
        #[command(flatten)]
        gt: Cli,
    },
}

#[derive(clap::Args, Clone)]
struct Cli {
    /// Folder of predicted masks `<id>.png` (palette, grey or colour PNG).
    #[arg(long)]
    pred: Option<PathBuf>,
    /// Folder of ground-truth masks `<id>.png`, or a VOC-layout dataset root (then its
    /// `SegmentationClass` folder is used).
    #[arg(long)]
    gt: Option<PathBuf>,
    /// Evaluate only the ids of this split (`ImageSets/Segmentation/<split>.txt` under a
    /// dataset root) or of this list file; default: every ground-truth file.
    #[arg(long)]
    split: Option<String>,
    /// Class list: `voc`, `coco` or a file; default: `classes.txt` beside the ground truth, else
    /// VOC.
    #[arg(long)]
    classes: Option<String>,
    /// Number of classes (overrides the class list's length; names become `class_<i>`).
    #[arg(long)]
    num_classes: Option<usize>,
    /// Write the full report (miou, per_class_iou, pixel_accuracy, confusion, …) here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// The ground-truth folder and the dataset root it belongs to (if any).
fn gt_layout(gt: &Path) -> (PathBuf, Option<PathBuf>) {
    let voc_gt = gt.join("SegmentationClass");
    if voc_gt.is_dir() {
        (voc_gt, Some(gt.to_path_buf()))
    } else {
        (gt.to_path_buf(), gt.parent().map(Path::to_path_buf))
    }
}

fn resolve_classes(cli: &Cli, root: Option<&Path>) -> Result<ClassMap> {
    let mut classes = match (&cli.classes, root.map(|r| r.join("classes.txt"))) {
        (Some(spec), _) => ssc_tools::class_map(spec)?,
        (None, Some(file)) if file.is_file() => ssc_tools::read_class_file(&file)?,
        _ => ClassMap::voc(),
    };
    if let Some(n) = cli.num_classes {
        anyhow::ensure!(
            (1..=255).contains(&n),
            "--num-classes must be 1…255, got {n}"
        );
        let names = (0..n)
            .map(|i| {
                classes
                    .names
                    .get(i)
                    .cloned()
                    .unwrap_or(format!("class_{i}"))
            })
            .collect();
        classes = ClassMap::custom(names);
    }
    Ok(classes)
}

fn ids(cli: &Cli, gt_dir: &Path, root: Option<&Path>) -> Result<Vec<String>> {
    if let Some(split) = &cli.split {
        let as_file = PathBuf::from(split);
        let list = if as_file.is_file() {
            as_file
        } else {
            let root = root.context("--split needs a dataset root as --gt")?;
            root.join("ImageSets/Segmentation")
                .join(format!("{split}.txt"))
        };
        let text = std::fs::read_to_string(&list)
            .with_context(|| format!("cannot read split list {}", list.display()))?;
        return Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect());
    }
    let mut ids = BTreeSet::new();
    for entry in std::fs::read_dir(gt_dir)
        .with_context(|| format!("cannot read ground-truth folder {}", gt_dir.display()))?
    {
        let path = entry?.path();
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("png"))
            && let Some(stem) = path.file_stem()
        {
            ids.insert(stem.to_string_lossy().into_owned());
        }
    }
    Ok(ids.into_iter().collect())
}

/// Scores one image; `pred_dir = None` scores the all-background predictor.
fn evaluate_one(
    id: &str,
    gt_dir: &Path,
    pred_dir: Option<&Path>,
    classes: &ClassMap,
) -> Result<Confusion> {
    let gt_path = gt_dir.join(format!("{id}.png"));
    let gt = read_mask(&gt_path, classes)?;
    let (pred, pred_path) = match pred_dir {
        Some(dir) => {
            let pred_path = dir.join(format!("{id}.png"));
            if !pred_path.is_file() {
                bail!("{}: missing prediction", pred_path.display());
            }
            (read_mask(&pred_path, classes)?, pred_path)
        }
        None => (
            ssc_core::mask::LabelMap::filled(gt.width, gt.height, 0),
            PathBuf::from("<all background>"),
        ),
    };
    if (gt.width, gt.height) != (pred.width, pred.height) {
        bail!(
            "{}: size {}×{} differs from the ground truth's {}×{} ({})",
            pred_path.display(),
            pred.width,
            pred.height,
            gt.width,
            gt.height,
            gt_path.display()
        );
    }
    let mut conf = Confusion::new(classes.len());
    conf.add(&gt.data, &pred.data).map_err(|bad| {
        anyhow::anyhow!(
            "{}: label {} at pixel ({}, {}) is not a class (there are {})",
            pred_path.display(),
            bad.value,
            bad.index % pred.width,
            bad.index / pred.width,
            classes.len()
        )
    })?;
    Ok(conf)
}

fn print_table(report: &Report) {
    println!("{:>4}  {:<20} {:>8}", "id", "class", "IoU %");
    for (i, (name, iou)) in report
        .class_names
        .iter()
        .zip(&report.per_class_iou)
        .enumerate()
    {
        let v = iou.map_or("-".to_string(), |v| format!("{:.2}", v * 100.0));
        println!("{i:>4}  {name:<20} {v:>8}");
    }
    println!("images: {}  pixels: {}", report.images, report.pixels);
    println!("pixel accuracy: {:.2} %", report.pixel_accuracy * 100.0);
    println!("mIoU: {:.2} % ({:.6})", report.miou * 100.0, report.miou);
}

fn main() -> std::process::ExitCode {
    ssc_tools::run_main(run)
}

fn run() -> Result<()> {
    let top = Top::parse();
    let (cli, pred) = match top.command {
        Some(Command::Baseline { gt }) => (gt, None),
        None => {
            let pred = top.masks.pred.clone().context("--pred is required")?;
            (top.masks, Some(pred))
        }
    };
    let gt = cli.gt.clone().context("--gt is required")?;
    let (gt_dir, root) = gt_layout(&gt);
    let classes = resolve_classes(&cli, root.as_deref())?;
    let ids = ids(&cli, &gt_dir, root.as_deref())?;
    anyhow::ensure!(
        !ids.is_empty(),
        "no ground-truth masks found in {}",
        gt_dir.display()
    );
    let bar = ssc_tools::progress(ids.len() as u64, "eval");
    let results: Vec<(String, Result<Confusion>)> = ids
        .par_iter()
        .map(|id| {
            let r = evaluate_one(id, &gt_dir, pred.as_deref(), &classes);
            bar.inc(1);
            (id.clone(), r)
        })
        .collect();
    bar.finish_and_clear();
    let mut total = Confusion::new(classes.len());
    let mut problems = Vec::new();
    for (id, r) in results {
        match r {
            Ok(c) => total.merge(&c),
            Err(e) => problems.push(format!("{id}: {e:#}")),
        }
    }
    if !problems.is_empty() {
        eprintln!(
            "{} of {} images could not be evaluated:",
            problems.len(),
            ids.len()
        );
        for p in &problems {
            eprintln!("  {p}");
        }
        bail!(
            "evaluation incomplete: {} problem(s), no score reported",
            problems.len()
        );
    }
    let report = Report::new(&total, classes.names.clone(), ids.len());
    print_table(&report);
    if let Some(path) = &cli.json {
        let json = serde_json::to_vec_pretty(&report)?;
        ssc_core::atomic::write(path, &json)?;
    }
    Ok(())
}
