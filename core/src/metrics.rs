//! Confusion-matrix segmentation metrics (§7): per-class IoU, mean IoU, pixel accuracy.
//!
//! Rows are ground truth, columns prediction. Pixels whose ground truth is not a valid class
//! (255 = ignore, or any value ≥ the class count) are not counted. A predicted 255 counts as
//! background, as the reference's `eval_sem_seg.py` does; any other out-of-range prediction
//! is rejected by [`Confusion::add`].

use serde::{Deserialize, Serialize};

use crate::classes::IGNORE;

/// A confusion matrix over `n` classes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    n: usize,
    counts: Vec<u64>,
}

/// An out-of-range predicted label found by [`Confusion::add`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadPrediction {
    /// Pixel index (row-major).
    pub index: usize,
    /// The offending value.
    pub value: u8,
}

impl Confusion {
    /// An empty matrix over `n` classes.
    pub fn new(n: usize) -> Self {
        Confusion {
            n,
            counts: vec![0; n * n],
        }
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.n
    }

    /// Count `M[gt][pred]`.
    pub fn get(&self, gt: usize, pred: usize) -> u64 {
        self.counts[gt * self.n + pred]
    }

    /// Accumulates one label-map pair of equal length.
    pub fn add(&mut self, gt: &[u8], pred: &[u8]) -> Result<(), BadPrediction> {
        assert_eq!(gt.len(), pred.len(), "label maps of different sizes");
        let n = self.n;
        for (index, (&g, &p)) in gt.iter().zip(pred).enumerate() {
            let p = if p == IGNORE { 0 } else { p };
            if (p as usize) >= n {
                return Err(BadPrediction { index, value: p });
            }
            if (g as usize) < n {
                self.counts[g as usize * n + p as usize] += 1;
            }
        }
        Ok(())
    }

    /// Adds another matrix of the same size.
    pub fn merge(&mut self, other: &Confusion) {
        assert_eq!(self.n, other.n);
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    /// Row sums (ground-truth pixels per class).
    pub fn gt_totals(&self) -> Vec<u64> {
        (0..self.n)
            .map(|c| (0..self.n).map(|j| self.get(c, j)).sum())
            .collect()
    }

    /// Column sums (predicted pixels per class).
    pub fn pred_totals(&self) -> Vec<u64> {
        (0..self.n)
            .map(|c| (0..self.n).map(|i| self.get(i, c)).sum())
            .collect()
    }

    /// IoU per class; `None` where the class is absent from both GT and prediction.
    pub fn iou(&self) -> Vec<Option<f64>> {
        let (rows, cols) = (self.gt_totals(), self.pred_totals());
        (0..self.n)
            .map(|c| {
                let tp = self.get(c, c);
                let denom = rows[c] + cols[c] - tp;
                (denom > 0).then(|| tp as f64 / denom as f64)
            })
            .collect()
    }

    /// Mean IoU over classes with a defined IoU (nanmean, IRN/SSC `eval_cam.py`).
    pub fn miou(&self) -> f64 {
        mean(self.iou().into_iter().flatten())
    }

    /// Mean IoU over classes present in the ground truth (BECO `test.py`).
    pub fn miou_gt_present(&self) -> f64 {
        let rows = self.gt_totals();
        mean(
            self.iou()
                .into_iter()
                .zip(rows)
                .filter(|(_, r)| *r > 0)
                .map(|(iou, _)| iou.unwrap_or(0.0)),
        )
    }

    /// Fraction of counted pixels predicted correctly.
    pub fn pixel_accuracy(&self) -> f64 {
        let total: u64 = self.counts.iter().sum();
        let correct: u64 = (0..self.n).map(|c| self.get(c, c)).sum();
        if total == 0 {
            f64::NAN
        } else {
            correct as f64 / total as f64
        }
    }

    /// Under-activation measure: the fraction of ground-truth object pixels (classes ≥ 1)
    /// predicted as their own class. NaN without object pixels.
    pub fn object_coverage(&self) -> f64 {
        let rows = self.gt_totals();
        let objects: u64 = rows.iter().skip(1).sum();
        let hit: u64 = (1..self.n).map(|c| self.get(c, c)).sum();
        hit as f64 / objects as f64
    }

    /// Over-activation measure: the fraction of ground-truth background pixels (class 0)
    /// predicted as some object class. NaN without background pixels.
    pub fn background_spill(&self) -> f64 {
        let bg = self.gt_totals().first().copied().unwrap_or(0);
        let spilled: u64 = (1..self.n).map(|p| self.get(0, p)).sum();
        spilled as f64 / bg as f64
    }

    /// Total counted pixels.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The matrix as rows.
    pub fn rows(&self) -> Vec<Vec<u64>> {
        self.counts.chunks(self.n).map(<[u64]>::to_vec).collect()
    }
}

fn mean(it: impl Iterator<Item = f64>) -> f64 {
    let (s, k) = it.fold((0.0, 0usize), |(s, k), x| (s + x, k + 1));
    if k == 0 { f64::NAN } else { s / k as f64 }
}

/// Summary written by `ssc-eval` (`--json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Mean IoU (nanmean over classes), a fraction in [0, 1].
    pub miou: f64,
    /// Mean IoU over classes present in the ground truth.
    pub miou_gt_present: f64,
    /// IoU per class (`null` where undefined).
    pub per_class_iou: Vec<Option<f64>>,
    /// Class names, same order.
    pub class_names: Vec<String>,
    /// Pixel accuracy.
    pub pixel_accuracy: f64,
    /// Confusion matrix, rows = ground truth.
    pub confusion: Vec<Vec<u64>>,
    /// Number of image pairs evaluated.
    pub images: usize,
    /// Counted pixels.
    pub pixels: u64,
    /// [`Confusion::object_coverage`].
    #[serde(default)]
    pub object_coverage: f64,
    /// [`Confusion::background_spill`].
    #[serde(default)]
    pub background_spill: f64,
}

impl Report {
    /// Builds the report of a confusion matrix.
    pub fn new(conf: &Confusion, class_names: Vec<String>, images: usize) -> Self {
        Report {
            miou: conf.miou(),
            miou_gt_present: conf.miou_gt_present(),
            per_class_iou: conf.iou(),
            class_names,
            pixel_accuracy: conf.pixel_accuracy(),
            confusion: conf.rows(),
            images,
            pixels: conf.total(),
            object_coverage: conf.object_coverage(),
            background_spill: conf.background_spill(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_and_spill_count_the_right_cells() {
        let mut c = Confusion::new(3);
        // gt: 4 background, 3 of class 1, 1 of class 2.
        let gt = [0, 0, 0, 0, 1, 1, 1, 2];
        let pred = [0, 1, 2, 0, 1, 1, 0, 1];
        c.add(&gt, &pred).unwrap();
        assert!((c.object_coverage() - 2.0 / 4.0).abs() < 1e-12);
        assert!((c.background_spill() - 2.0 / 4.0).abs() < 1e-12);
        assert!(Confusion::new(2).object_coverage().is_nan());
    }

    #[test]
    fn perfect_and_ignored() {
        let mut c = Confusion::new(3);
        c.add(&[0, 1, 2, 255, 2], &[0, 1, 2, 1, 2]).unwrap();
        assert_eq!(c.miou(), 1.0);
        assert_eq!(c.total(), 4);
        assert_eq!(c.pixel_accuracy(), 1.0);
    }

    #[test]
    fn hand_computed() {
        let mut c = Confusion::new(3);
        // gt: 0 0 1 1, pred: 0 1 1 1 -> IoU0 = 1/2, IoU1 = 2/3, class 2 absent (None).
        c.add(&[0, 0, 1, 1], &[0, 1, 1, 1]).unwrap();
        let iou = c.iou();
        assert_eq!(iou[0], Some(0.5));
        assert!((iou[1].unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(iou[2], None);
        assert!((c.miou() - (0.5 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        assert_eq!(c.pixel_accuracy(), 0.75);
    }

    #[test]
    fn predicted_void_is_background_and_bad_values_rejected() {
        let mut c = Confusion::new(2);
        c.add(&[0], &[255]).unwrap();
        assert_eq!(c.get(0, 0), 1);
        let err = c.add(&[0, 0], &[0, 7]).unwrap_err();
        assert_eq!(err, BadPrediction { index: 1, value: 7 });
    }
}
