//! CAM → IR labels (§4.1, IRN/SSC `step/cam_to_ir_label.py`): confident foreground and
//! background from two CAM thresholds, each refined by the dense CRF of §4.1.1, combined into
//! one label map with an ignore band (255) between them.

use serde::{Deserialize, Serialize};

use crate::crf::{CrfParams, argmax_labels};
use crate::{CoreError, Result};

/// The value of pixels that IRN training ignores.
pub const IGNORE: u8 = 255;

/// Parameters of the IR-label procedure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IrLabelConfig {
    /// Background score for confident foreground (`conf_fg_thres`).
    pub conf_fg_thres: f32,
    /// Background score for confident background (`conf_bg_thres`).
    pub conf_bg_thres: f32,
    /// Confidence given to the CAM label in the CRF unary.
    pub gt_prob: f64,
    /// The CRF.
    pub crf: CrfParams,
}

impl IrLabelConfig {
    /// SSC's values: thresholds 0.30 / 0.10, gt_prob 0.7, [`CrfParams::ir_label`].
    pub fn ssc() -> Self {
        IrLabelConfig {
            conf_fg_thres: 0.30,
            conf_bg_thres: 0.10,
            gt_prob: 0.7,
            crf: CrfParams::ir_label(),
        }
    }

    /// IRN's original values (background threshold 0.05).
    pub fn irn() -> Self {
        IrLabelConfig {
            conf_bg_thres: 0.05,
            ..Self::ssc()
        }
    }
}

impl Default for IrLabelConfig {
    fn default() -> Self {
        Self::ssc()
    }
}

/// Every intermediate map of the procedure (`H × W` each).
#[derive(Debug, Clone, PartialEq)]
pub struct IrLabelMaps {
    /// argmax over `[conf_fg_thres; high_res]` (0..=K).
    pub fg_conf_cam: Vec<u8>,
    /// argmax over `[conf_bg_thres; high_res]` (0..=K).
    pub bg_conf_cam: Vec<u8>,
    /// CRF labels of `fg_conf_cam` (0..=K).
    pub crf_fg: Vec<u8>,
    /// CRF labels of `bg_conf_cam` (0..=K).
    pub crf_bg: Vec<u8>,
    /// `crf_fg` mapped to VOC ids through `[0, keys + 1]`.
    pub fg_conf: Vec<u8>,
    /// `crf_bg` mapped to VOC ids.
    pub bg_conf: Vec<u8>,
    /// The IR label map: class where confident foreground, 0 where confident background, 255
    /// in between.
    pub ir_label: Vec<u8>,
}

/// argmax over `[thres; cams]` per pixel: 0 when no CAM exceeds `thres` (ties go to the
/// lower index, as numpy), else 1 + the index of the strongest CAM. `cams` is `K × n`.
pub fn conf_cam(cams: &[f32], n: usize, thres: f32) -> Vec<u8> {
    let k = cams.len().checked_div(n).unwrap_or(0);
    (0..n)
        .map(|p| {
            let (mut best, mut v) = (0usize, thres);
            for c in 0..k {
                if cams[c * n + p] > v {
                    best = c + 1;
                    v = cams[c * n + p];
                }
            }
            best as u8
        })
        .collect()
}

/// The IR label map (`H × W`) of one image; see [`ir_label_maps`].
///
/// # Errors
/// As [`ir_label_maps`].
pub fn ir_label(
    high_res: &[f32],
    keys: &[i64],
    width: usize,
    height: usize,
    rgb: &[u8],
    cfg: &IrLabelConfig,
) -> Result<Vec<u8>> {
    Ok(ir_label_maps(high_res, keys, width, height, rgb, cfg)?.ir_label)
}

/// The full §4.1 procedure for one image. `high_res` is the CAM record's `K × H × W`
/// max-normalised CAMs, `keys` their 0-based class indices (VOC id = key + 1), `rgb` the raw
/// `H × W × 3` uint8 image. An image with no class (K = 0) is all background.
///
/// # Errors
/// Sizes that do not agree, more than 254 classes, or a key whose VOC id is not in 1..=254.
pub fn ir_label_maps(
    high_res: &[f32],
    keys: &[i64],
    width: usize,
    height: usize,
    rgb: &[u8],
    cfg: &IrLabelConfig,
) -> Result<IrLabelMaps> {
    let n = width * height;
    let k = keys.len();
    if n == 0 || high_res.len() != k * n || rgb.len() != 3 * n {
        return Err(CoreError::Invalid(format!(
            "IR labels: {} CAM values for {k} keys and {width}×{height} pixels, image of {} bytes",
            high_res.len(),
            rgb.len()
        )));
    }
    // VOC ids through [0, keys + 1]; 255 is reserved for the ignore band.
    let mut ids = vec![0u8];
    for &key in keys {
        match u8::try_from(key + 1) {
            Ok(id) if (1..IGNORE).contains(&id) => ids.push(id),
            _ => {
                return Err(CoreError::Invalid(format!(
                    "IR labels: key {key} does not give a class id in 1..=254"
                )));
            }
        }
    }

    let fg_conf_cam = conf_cam(high_res, n, cfg.conf_fg_thres);
    let bg_conf_cam = conf_cam(high_res, n, cfg.conf_bg_thres);
    let (crf_fg, crf_bg) = if k == 0 {
        // A single label: the CRF cannot change anything (and its unary is undefined).
        (fg_conf_cam.clone(), bg_conf_cam.clone())
    } else {
        let refine = |labels: &[u8]| -> Result<Vec<u8>> {
            let q = cfg
                .crf
                .refine_labels_q(labels, k + 1, cfg.gt_prob, width, height, rgb)?;
            Ok(argmax_labels(&q, k + 1))
        };
        (refine(&fg_conf_cam)?, refine(&bg_conf_cam)?)
    };
    let fg_conf: Vec<u8> = crf_fg.iter().map(|&l| ids[l as usize]).collect();
    let bg_conf: Vec<u8> = crf_bg.iter().map(|&l| ids[l as usize]).collect();
    let ir_label = fg_conf
        .iter()
        .zip(&bg_conf)
        .map(|(&f, &b)| match (f, b) {
            (0, 0) => 0,
            (0, _) => IGNORE,
            (f, _) => f,
        })
        .collect();
    Ok(IrLabelMaps {
        fg_conf_cam,
        bg_conf_cam,
        crf_fg,
        crf_bg,
        fg_conf,
        bg_conf,
        ir_label,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_cam_thresholds_and_ties() {
        // Two CAMs, three pixels.
        let cams = [0.5, 0.2, 0.3, 0.4, 0.25, 0.3];
        assert_eq!(conf_cam(&cams, 3, 0.3), vec![1, 0, 0]);
        assert_eq!(conf_cam(&cams, 3, 0.1), vec![1, 2, 1]);
    }

    #[test]
    fn combines_fg_bg_and_ignore_band() {
        // A 24×24 image: a left band with a strong CAM (confident fg), a middle band with a
        // weak CAM (fg only at the low threshold), the rest zero; each band has its own colour.
        // Without kernels the CRF keeps the CAM labels.
        let (w, h) = (24, 24);
        let cam: Vec<f32> = (0..w * h)
            .map(|p| match p % w {
                0..=9 => 0.9,
                10..=15 => 0.2,
                _ => 0.0,
            })
            .collect();
        let rgb: Vec<u8> = (0..w * h)
            .flat_map(|p| match p % w {
                0..=9 => [200, 30, 30],
                10..=15 => [30, 200, 30],
                _ => [30, 30, 200],
            })
            .collect();
        let mut cfg = IrLabelConfig::ssc();
        cfg.crf.gaussian = None;
        cfg.crf.bilateral = None;
        let maps = ir_label_maps(&cam, &[14], w, h, &rgb, &cfg).unwrap();
        let row: Vec<u8> = maps.ir_label[..w].to_vec();
        assert!(row[..10].iter().all(|&v| v == 15));
        assert!(row[10..16].iter().all(|&v| v == IGNORE));
        assert!(row[16..].iter().all(|&v| v == 0));
        // With the real CRF the structure follows the colour edges.
        let maps = ir_label_maps(&cam, &[14], w, h, &rgb, &IrLabelConfig::ssc()).unwrap();
        assert_eq!(maps.ir_label[12 * w + 2], 15);
        assert_eq!(maps.ir_label[12 * w + 22], 0);
    }

    #[test]
    fn no_class_is_all_background_and_bad_input_is_rejected() {
        let rgb = vec![0u8; 12];
        assert_eq!(
            ir_label(&[], &[], 2, 2, &rgb, &IrLabelConfig::ssc()).unwrap(),
            vec![0; 4]
        );
        assert!(ir_label(&[0.5; 3], &[1], 2, 2, &rgb, &IrLabelConfig::ssc()).is_err());
        assert!(ir_label(&[0.5; 4], &[254], 2, 2, &rgb, &IrLabelConfig::ssc()).is_err());
        assert!(ir_label(&[0.5; 4], &[-1], 2, 2, &rgb, &IrLabelConfig::ssc()).is_err());
    }
}
