//! The IR-label job (`ssc-label irlabels`, spec §4.1): from each image's CAM file, the
//! confident foreground and background (thresholds on the background score), refined by the
//! dense CRF, with an ignore band between them; one 8-bit grey PNG `<out>/<id>.png` per image
//! (255 = ignore), the labels the IRN edge network trains on (§4.5). Existing labels are kept
//! (resume); precision and coverage against the ground truth are summed where it exists.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use ssc_core::cam::CamRecord;
use ssc_core::irlabel::{IGNORE, IrLabelConfig, ir_label};
use ssc_core::mask::{LabelMap, read_mask, write_grey_png};

use crate::error::{Context, Result, bail};

/// IR labels of one split of a VOC-layout dataset (the synthetic benchmark included).
#[derive(Debug, Clone)]
pub struct IrLabelsJob {
    /// Dataset root (VOC layout, or the synthetic benchmark).
    pub dataset: PathBuf,
    /// Split (`ImageSets/Segmentation/<split>.txt`).
    pub split: String,
    /// Folder of CAM files `<id>.safetensors`.
    pub cams: PathBuf,
    /// Output folder of the IR-label PNGs.
    pub out: PathBuf,
    /// Thresholds and CRF settings (SSC's: [`IrLabelConfig::ssc`]).
    pub config: IrLabelConfig,
    /// Recompute labels that already exist.
    pub overwrite: bool,
    /// Show a progress bar.
    pub progress: bool,
}

/// Quality of IR labels against ground truth.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct IrLabelStats {
    /// Non-ignored IR pixels with a GT label (GT 255 excluded).
    pub labelled: u64,
    /// Of those, pixels whose IR label equals GT.
    pub correct: u64,
    /// All pixels of the images with GT.
    pub pixels: u64,
    /// Pixels whose IR label is not 255.
    pub covered: u64,
}

impl IrLabelStats {
    /// Fraction of non-ignored IR pixels (with a GT label) that equal GT.
    pub fn precision(&self) -> f64 {
        self.correct as f64 / self.labelled.max(1) as f64
    }

    /// Fraction of pixels that are not ignored.
    pub fn coverage(&self) -> f64 {
        self.covered as f64 / self.pixels.max(1) as f64
    }

    /// Adds one image's IR label and GT (same size).
    pub fn add(&mut self, ir: &[u8], gt: &[u8]) {
        self.pixels += ir.len() as u64;
        for (&a, &g) in ir.iter().zip(gt) {
            if a == IGNORE {
                continue;
            }
            self.covered += 1;
            if g != IGNORE {
                self.labelled += 1;
                self.correct += (a == g) as u64;
            }
        }
    }
}

/// What `ir_labels` did.
#[derive(Debug, Clone, Default)]
pub struct IrLabelSummary {
    /// Labels computed in this run.
    pub written: usize,
    /// Labels that already existed.
    pub skipped: usize,
    /// `(id, error)` of every image that failed.
    pub failed: Vec<(String, String)>,
    /// Precision/coverage against GT (`None` when no image has GT).
    pub stats: Option<IrLabelStats>,
}

/// One image: the label (computed, or read back when it exists) and whether it was written.
fn one_label(
    id: &str,
    image: &Path,
    cams: &Path,
    out: &Path,
    cfg: &IrLabelConfig,
    overwrite: bool,
) -> Result<(LabelMap, bool)> {
    let dst = out.join(format!("{id}.png"));
    if !overwrite && dst.is_file() {
        let m = read_mask(&dst, &ssc_core::classes::ClassMap::voc())?;
        return Ok((m, false));
    }
    let cam_path = cams.join(format!("{id}.safetensors"));
    let rec = CamRecord::read(&cam_path)?;
    let img = ssc_core::imageio::read_rgb(image)?;
    let (h, w) = rec.size;
    if (img.width() as usize, img.height() as usize) != (w, h) {
        bail!(
            "{}: CAM is {w}×{h}, image {} is {}×{}",
            cam_path.display(),
            image.display(),
            img.width(),
            img.height()
        );
    }
    let data = ir_label(&rec.high_res, &rec.keys, w, h, img.as_raw(), cfg)
        .with_context(|| format!("IR label of {}", cam_path.display()))?;
    let map = LabelMap::new(w, h, data)?;
    write_grey_png(&dst, &map)?;
    Ok((map, true))
}

impl IrLabelsJob {
    /// Computes the IR labels of the split in parallel; failed images are listed in the
    /// summary, not returned as an error.
    pub fn run(&self) -> Result<IrLabelSummary> {
        let ds = ssc_core::dataset::open_split(&self.dataset, &self.split)
            .with_context(|| format!("opening {}", self.dataset.display()))?;
        let out = self.out.clone();
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let cfg = self.config.clone();
        let pb = if self.progress {
            crate::batch::progress_bar(ds.len() as u64, "IR labels")
        } else {
            indicatif::ProgressBar::hidden()
        };
        let written = AtomicU64::new(0);
        let results: Vec<_> = ds
            .items
            .par_iter()
            .map(|it| {
                let r = one_label(&it.id, &it.image, &self.cams, &out, &cfg, self.overwrite)
                    .and_then(|(map, new)| {
                        written.fetch_add(new as u64, Ordering::Relaxed);
                        let mut st = None;
                        if let Some(gt) = &it.gt {
                            let g = read_mask(gt, &ds.classes)?;
                            if g.size() != map.size() {
                                bail!(
                                    "{}: GT size {:?} differs from {:?}",
                                    gt.display(),
                                    g.size(),
                                    map.size()
                                );
                            }
                            let mut s = IrLabelStats::default();
                            s.add(&map.data, &g.data);
                            st = Some(s);
                        }
                        Ok(st)
                    });
                pb.inc(1);
                (it.id.clone(), r)
            })
            .collect();
        pb.finish_and_clear();
        let mut summary = IrLabelSummary::default();
        let mut total: Option<IrLabelStats> = None;
        for (id, r) in results {
            match r {
                Ok(Some(s)) => {
                    let t = total.get_or_insert_with(IrLabelStats::default);
                    t.labelled += s.labelled;
                    t.correct += s.correct;
                    t.pixels += s.pixels;
                    t.covered += s.covered;
                }
                Ok(None) => {}
                Err(e) => summary.failed.push((id, format!("{e:#}"))),
            }
        }
        summary.written = written.into_inner() as usize;
        summary.skipped = ds.len() - summary.written - summary.failed.len();
        summary.stats = total;
        Ok(summary)
    }
}
