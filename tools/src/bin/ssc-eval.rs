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
    /// Seed evaluation of cached CAM files (§3.4): sweep the background threshold and report
    /// the mIoU of each and the best (the reference protocol is the single threshold 0.2).
    Cams {
        /// Folder of CAM files `<id>.safetensors` (written by `ssc-label cams`).
        #[arg(long)]
        cams: PathBuf,
        /// Background thresholds: `FROM:TO:STEP` or a comma list (`0.15,0.2`).
        #[arg(long, default_value = "0.05:0.60:0.05")]
        thresholds: String,
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
    /// Also report the mean IoU over these classes only (comma-separated names, e.g.
    /// `background,cat,dog` for the well-represented classes of a small subset).
    #[arg(long, value_delimiter = ',')]
    subset: Vec<String>,
}

/// The mean IoU over the classes named in `subset` (undefined IoUs left out, as in the
/// nanmean of §7); `None` when `subset` is empty.
fn subset_miou(ious: &[Option<f64>], names: &[String], subset: &[String]) -> Result<Option<f64>> {
    if subset.is_empty() {
        return Ok(None);
    }
    let mut vals = Vec::with_capacity(subset.len());
    for s in subset {
        let i = names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(s.trim()))
            .with_context(|| format!("--subset: `{s}` is not a class (classes: {names:?})"))?;
        if let Some(v) = ious[i] {
            vals.push(v);
        }
    }
    Ok(Some(if vals.is_empty() {
        0.0
    } else {
        vals.iter().sum::<f64>() / vals.len() as f64
    }))
}

/// The ground-truth folder and the dataset root it belongs to (if any): a dataset root's
/// `SegmentationClass`, else its `SegmentationClassAug` (a train_aug-only copy such as
/// `voc12-subset` has only that), else the folder itself.
fn gt_layout(gt: &Path) -> (PathBuf, Option<PathBuf>) {
    for name in ["SegmentationClass", "SegmentationClassAug"] {
        let voc_gt = gt.join(name);
        if voc_gt.is_dir() {
            return (voc_gt, Some(gt.to_path_buf()));
        }
    }
    (gt.to_path_buf(), gt.parent().map(Path::to_path_buf))
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
    println!(
        "object pixels covered {:.1} %, background pixels spilled into {:.1} %",
        report.object_coverage * 100.0,
        report.background_spill * 100.0
    );
    println!("mIoU: {:.2} % ({:.6})", report.miou * 100.0, report.miou);
}

fn main() -> std::process::ExitCode {
    ssc_tools::run_main(run)
}

fn run() -> Result<()> {
    let top = Top::parse();
    let (cli, pred) = match top.command {
        Some(Command::Baseline { gt }) => (gt, None),
        Some(Command::Cams {
            cams,
            thresholds,
            gt,
        }) => return cams::run(&cams, &thresholds, &gt),
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
    let subset = subset_miou(&report.per_class_iou, &report.class_names, &cli.subset)?;
    if let Some(v) = subset {
        println!(
            "mIoU over {} classes ({}): {:.2} % ({v:.6})",
            cli.subset.len(),
            cli.subset.join(", "),
            v * 100.0
        );
    }
    if let Some(path) = &cli.json {
        let mut json = serde_json::to_value(&report)?;
        if let (Some(v), Some(obj)) = (subset, json.as_object_mut()) {
            obj.insert("subset".into(), serde_json::json!(cli.subset));
            obj.insert("subset_miou".into(), serde_json::json!(v));
        }
        ssc_core::atomic::write(path, &serde_json::to_vec_pretty(&json)?)?;
    }
    Ok(())
}

/// `ssc-eval cams`: seed evaluation with a background-threshold sweep over cached CAMs (§3.4).
mod cams {
    use std::path::{Path, PathBuf};

    use anyhow::{Context, Result, bail, ensure};
    use rayon::prelude::*;
    use ssc_core::cam::{CamRecord, Sweep};
    use ssc_core::mask::read_mask;

    use super::{Cli, gt_layout, ids, resolve_classes};

    /// Parses `FROM:TO:STEP` or a comma list into thresholds.
    pub fn parse_thresholds(spec: &str) -> Result<Vec<f32>> {
        let num = |v: &str| -> Result<f32> {
            let x: f32 = v
                .trim()
                .parse()
                .with_context(|| format!("--thresholds `{spec}`: `{v}` is not a number"))?;
            ensure!(x.is_finite(), "--thresholds `{spec}`: `{v}` is not finite");
            Ok(x)
        };
        let parts: Vec<&str> = spec.split(':').collect();
        let t = match parts.as_slice() {
            [from, to, step] => {
                let (from, to, step) = (num(from)?, num(to)?, num(step)?);
                ensure!(
                    step > 0.0 && to >= from,
                    "--thresholds `{spec}`: need FROM ≤ TO and STEP > 0"
                );
                ensure!(
                    (to - from) / step <= 10_000.0,
                    "--thresholds `{spec}`: more than 10,000 thresholds"
                );
                Sweep::range(from, to, step)
            }
            [list] => list.split(',').map(num).collect::<Result<_>>()?,
            _ => bail!("--thresholds `{spec}`: expected FROM:TO:STEP or a comma list"),
        };
        ensure!(!t.is_empty(), "--thresholds `{spec}`: no threshold");
        Ok(t)
    }

    /// Ids of the CAM files in `dir` (`<id>.safetensors`, sorted).
    fn cam_ids(dir: &Path) -> Result<Vec<String>> {
        let mut ids: Vec<String> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read the CAM folder {}", dir.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .filter_map(|n| n.strip_suffix(".safetensors").map(str::to_string))
            .collect();
        ids.sort();
        Ok(ids)
    }

    fn one(
        id: &str,
        cams: &Path,
        gt_dir: &Path,
        cli_classes: &ssc_core::classes::ClassMap,
        thresholds: &[f32],
    ) -> Result<Sweep> {
        let cam_path = cams.join(format!("{id}.safetensors"));
        if !cam_path.is_file() {
            bail!("{}: missing CAM file", cam_path.display());
        }
        let rec = CamRecord::read(&cam_path)?;
        let gt_path = gt_dir.join(format!("{id}.png"));
        let gt = read_mask(&gt_path, cli_classes)?;
        if (gt.height, gt.width) != rec.size {
            bail!(
                "{}: CAM is {}×{} (H×W) but the ground truth {} is {}×{}",
                cam_path.display(),
                rec.size.0,
                rec.size.1,
                gt_path.display(),
                gt.height,
                gt.width
            );
        }
        if let Some(k) = rec
            .keys
            .iter()
            .find(|&&k| k < 0 || k as usize + 1 >= cli_classes.len())
        {
            bail!(
                "{}: key {k} is not a foreground class index (there are {} classes)",
                cam_path.display(),
                cli_classes.len()
            );
        }
        let mut s = Sweep::new(thresholds.to_vec(), cli_classes.len());
        s.add(&rec, &gt.data)
            .with_context(|| format!("{}", cam_path.display()))?;
        Ok(s)
    }

    /// Runs the sweep and prints the table; fails (no score) if any image cannot be evaluated.
    pub fn run(cams: &Path, thresholds: &str, cli: &Cli) -> Result<()> {
        ensure!(
            cli.pred.is_none(),
            "`ssc-eval cams` takes --cams, not --pred"
        );
        let thresholds = parse_thresholds(thresholds)?;
        let gt: PathBuf = cli.gt.clone().context("--gt is required")?;
        let (gt_dir, root) = gt_layout(&gt);
        let classes = resolve_classes(cli, root.as_deref())?;
        let ids = if cli.split.is_some() {
            ids(cli, &gt_dir, root.as_deref())?
        } else {
            cam_ids(cams)?
        };
        ensure!(
            !ids.is_empty(),
            "no CAM files to evaluate in {}",
            cams.display()
        );
        let bar = ssc_tools::progress(ids.len() as u64, "eval cams");
        let results: Vec<(String, Result<Sweep>)> = ids
            .par_iter()
            .map(|id| {
                let r = one(id, cams, &gt_dir, &classes, &thresholds);
                bar.inc(1);
                (id.clone(), r)
            })
            .collect();
        bar.finish_and_clear();
        let mut total = Sweep::new(thresholds.clone(), classes.len());
        let mut problems = Vec::new();
        for (id, r) in results {
            match r {
                Ok(s) => total.merge(&s),
                Err(e) => problems.push(format!("{id}: {e:#}")),
            }
        }
        if !problems.is_empty() {
            eprintln!(
                "{} of {} images could not be evaluated:",
                problems.len(),
                ids.len()
            );
            for p in problems.iter().take(20) {
                eprintln!("  {p}");
            }
            bail!(
                "CAM evaluation incomplete: {} problem(s), no score reported",
                problems.len()
            );
        }
        let points = total.points();
        let best = total.best().context("no threshold")?;
        println!("{:>9}  {:>8}", "threshold", "mIoU %");
        for p in &points {
            let mark = if p.threshold == best.threshold {
                "  <- best"
            } else {
                ""
            };
            println!("{:>9.3}  {:>8.2}{mark}", p.threshold, p.miou * 100.0);
        }
        let at_best = &total.confusions()[points
            .iter()
            .position(|p| p.threshold == best.threshold)
            .unwrap_or(0)];
        println!("images: {}", ids.len());
        println!(
            "at the best threshold: object pixels covered {:.1} %, background pixels spilled \
             into {:.1} %",
            at_best.object_coverage() * 100.0,
            at_best.background_spill() * 100.0
        );
        let subset = super::subset_miou(&at_best.iou(), &classes.names, &cli.subset)?;
        if let Some(v) = subset {
            println!(
                "at the best threshold, mIoU over {} classes ({}): {:.2} % ({v:.6})",
                cli.subset.len(),
                cli.subset.join(", "),
                v * 100.0
            );
        }
        println!(
            "best threshold: {:.3}  mIoU: {:.2} % ({:.6})",
            best.threshold,
            best.miou * 100.0,
            best.miou
        );
        if let Some(path) = &cli.json {
            let json = serde_json::json!({
                "subset": cli.subset,
                "subset_miou_at_best": subset,
                "images": ids.len(),
                "classes": classes.names,
                "points": points.iter().map(|p| serde_json::json!({
                    "threshold": p.threshold,
                    "miou": p.miou,
                })).collect::<Vec<_>>(),
                "best": {"threshold": best.threshold, "miou": best.miou},
                "per_class_iou_at_best": at_best.iou(),
                "object_coverage_at_best": at_best.object_coverage(),
                "background_spill_at_best": at_best.background_spill(),
            });
            ssc_core::atomic::write(path, &serde_json::to_vec_pretty(&json)?)?;
        }
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::parse_thresholds;

        #[test]
        fn thresholds_parse_as_range_or_list() {
            let t = parse_thresholds("0.05:0.60:0.05").unwrap();
            assert_eq!(t.len(), 12);
            assert!((t[11] - 0.60).abs() < 1e-6);
            assert_eq!(parse_thresholds("0.15,0.2").unwrap(), vec![0.15, 0.2]);
            for bad in ["0.6:0.05:0.05", "0:1:0", "a", "0.1:0.2", ""] {
                assert!(parse_thresholds(bad).is_err(), "{bad} accepted");
            }
        }
    }
}
