//! The ablation study of paper Table VII on a dataset: the five variants trained with the
//! same seed and data, each evaluated by CAM seed mIoU at the best threshold of a sweep
//! (§3.4) on the requested splits.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use ssc_core::cam::Sweep;

use super::config::{CamTrainConfig, Variant};
use super::data::{TrainSet, open_split};
use super::generate::evaluate_seeds;
use super::trainer::{TrainOptions, train};
use crate::error::{Result, TrainError};

/// Seed mIoU of one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitScore {
    /// Split name.
    pub split: String,
    /// Images evaluated.
    pub images: usize,
    /// Best mIoU of the sweep (0…1).
    pub miou: f64,
    /// Its threshold.
    pub threshold: f32,
    /// mIoU at the reference threshold 0.2 (§3.4), if it is in the sweep.
    pub miou_at_020: Option<f64>,
}

/// One variant's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AblationRow {
    /// Variant name.
    pub variant: String,
    /// Scores per evaluated split.
    pub scores: Vec<SplitScore>,
    /// Training seconds (wall clock, data loading included).
    pub train_seconds: f64,
    /// Mean seconds per optimiser step.
    pub seconds_per_step: f64,
    /// Evaluation seconds.
    pub eval_seconds: f64,
    /// Mean loss terms of the last epoch: cls, perceptual, align.
    pub last_epoch_losses: [f64; 3],
    /// Peak resident memory of the process so far (VmHWM, MiB).
    pub peak_rss_mib: Option<f64>,
}

/// The whole study.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AblationReport {
    /// Dataset root.
    pub data: PathBuf,
    /// Training split.
    pub train_split: String,
    /// The configuration shared by all rows (`variant` differs per row).
    pub config: CamTrainConfig,
    /// Rows in table order.
    pub rows: Vec<AblationRow>,
}

/// Peak resident set size of this process in MiB (`VmHWM` of `/proc/self/status`).
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Thresholds of the sweep: 0.05…0.60 step 0.05.
pub fn default_thresholds() -> Vec<f32> {
    Sweep::range(0.05, 0.60, 0.05)
}

/// Trains and evaluates each of `variants` with `base` (only `variant` changes), writing
/// every run under `out/<variant>` and the table to `out/ablation.{json,md}` after each row.
pub fn run(
    root: &Path,
    train_split: &str,
    eval_splits: &[String],
    base: &CamTrainConfig,
    variants: &[Variant],
    out: &Path,
    opts: &TrainOptions,
) -> Result<AblationReport> {
    let ds = open_split(root, train_split)?;
    let set = Arc::new(TrainSet::new(&ds, root, &base.data)?);
    let eval_sets = eval_splits
        .iter()
        .map(|s| open_split(root, s))
        .collect::<Result<Vec<_>>>()?;
    let thresholds = default_thresholds();
    let mut report = AblationReport {
        data: root.to_path_buf(),
        train_split: train_split.to_string(),
        config: base.clone(),
        rows: Vec::new(),
    };
    for &variant in variants {
        let cfg = CamTrainConfig {
            variant,
            ..base.clone()
        };
        let run_opts = TrainOptions {
            out: out.join(variant.name()),
            ..opts.clone()
        };
        tracing::info!(variant = variant.name(), "training");
        let t0 = Instant::now();
        let (nets, rep) = train(&cfg, set.clone(), &run_opts)?;
        let train_seconds = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let mut scores = Vec::new();
        for (name, eds) in eval_splits.iter().zip(&eval_sets) {
            let ev = evaluate_seeds(
                &nets.net,
                eds,
                &cfg.eval_scales,
                &thresholds,
                cfg.eval_max_images,
                &opts.device,
            )?;
            let at = ev
                .points
                .iter()
                .find(|p| (p.threshold - 0.2).abs() < 1e-4)
                .map(|p| p.miou);
            tracing::info!(
                variant = variant.name(),
                split = name.as_str(),
                miou = ev.best.miou,
                threshold = ev.best.threshold,
                "seed mIoU"
            );
            scores.push(SplitScore {
                split: name.clone(),
                images: ev.images,
                miou: ev.best.miou,
                threshold: ev.best.threshold,
                miou_at_020: at,
            });
        }
        let last = rep.epoch_stats.last().copied().unwrap_or_default();
        report.rows.push(AblationRow {
            variant: variant.name().into(),
            scores,
            train_seconds,
            seconds_per_step: rep.seconds_per_step,
            eval_seconds: t1.elapsed().as_secs_f64(),
            last_epoch_losses: [last.cls, last.perceptual, last.align],
            peak_rss_mib: peak_rss_mib(),
        });
        report.write(out)?;
    }
    Ok(report)
}

impl AblationReport {
    /// The table as markdown (mIoU in percent).
    pub fn markdown(&self) -> String {
        let splits: Vec<&str> = self
            .rows
            .first()
            .map(|r| r.scores.iter().map(|s| s.split.as_str()).collect())
            .unwrap_or_default();
        let mut s = String::from("| variant |");
        for sp in &splits {
            s += &format!(" {sp} mIoU (best thr) | {sp} mIoU @0.20 |");
        }
        s += " train s | s/step | peak RSS MiB |\n|---|";
        s += &"---|---|".repeat(splits.len());
        s += "---|---|---|\n";
        for r in &self.rows {
            s += &format!("| {} |", r.variant);
            for sc in &r.scores {
                s += &format!(
                    " {:.1} ({:.2}) | {} |",
                    100.0 * sc.miou,
                    sc.threshold,
                    sc.miou_at_020
                        .map_or("-".to_string(), |m| format!("{:.1}", 100.0 * m))
                );
            }
            s += &format!(
                " {:.0} | {:.3} | {} |\n",
                r.train_seconds,
                r.seconds_per_step,
                r.peak_rss_mib.map_or("-".into(), |m| format!("{m:.0}"))
            );
        }
        s
    }

    /// Writes `ablation.json` and `ablation.md` under `out` (atomically).
    pub fn write(&self, out: &Path) -> Result<()> {
        std::fs::create_dir_all(out).map_err(|e| TrainError::file(out, e.to_string()))?;
        let json =
            serde_json::to_string_pretty(self).map_err(|e| TrainError::State(e.to_string()))?;
        ssc_core::atomic::write(&out.join("ablation.json"), json.as_bytes())?;
        ssc_core::atomic::write(&out.join("ablation.md"), self.markdown().as_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_lists_rows_and_splits() {
        let r = AblationReport {
            data: "d".into(),
            train_split: "train".into(),
            config: CamTrainConfig::synthetic(2),
            rows: vec![AblationRow {
                variant: "full".into(),
                scores: vec![SplitScore {
                    split: "val".into(),
                    images: 3,
                    miou: 0.5123,
                    threshold: 0.25,
                    miou_at_020: Some(0.5),
                }],
                train_seconds: 12.0,
                seconds_per_step: 0.25,
                eval_seconds: 1.0,
                last_epoch_losses: [0.1, 0.2, 0.3],
                peak_rss_mib: Some(100.0),
            }],
        };
        let md = r.markdown();
        assert!(md.contains("| full | 51.2 (0.25) | 50.0 |"), "{md}");
        assert!(md.contains("val mIoU"));
        assert!(peak_rss_mib().is_some_and(|m| m > 0.0));
    }
}
