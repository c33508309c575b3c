//! CRF parameter sets (§4.1.1, §6.6) with the reference presets, and one-call helpers that
//! build and run a CRF from them.

use serde::{Deserialize, Serialize};

use super::{DenseCrf, unary_from_labels, unary_from_softmax};
use crate::Result;

/// Gaussian (smoothness) kernel: features `(x/sxy, y/sxy)`, Potts weight `compat`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GaussianParams {
    /// Spatial standard deviation in pixels.
    pub sxy: f32,
    /// Potts weight.
    pub compat: f32,
}

/// Bilateral (appearance) kernel: features `(x/sxy, y/sxy, r/srgb, g/srgb, b/srgb)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BilateralParams {
    /// Spatial standard deviation in pixels.
    pub sxy: f32,
    /// Colour standard deviation in uint8 levels.
    pub srgb: f32,
    /// Potts weight.
    pub compat: f32,
}

/// A dense CRF configuration: its kernels and the number of mean-field iterations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrfParams {
    /// Gaussian kernel, if any.
    pub gaussian: Option<GaussianParams>,
    /// Bilateral kernel, if any.
    pub bilateral: Option<BilateralParams>,
    /// Mean-field iterations.
    pub iterations: usize,
}

/// Lower clip of probabilities before `−ln` in the softmax unary (pydensecrf's default).
pub const SOFTMAX_CLIP: f32 = 1e-5;

impl CrfParams {
    /// IRN's CRF for IR labels (§4.1.1): Gaussian sxy 3 / 3, bilateral sxy 50, srgb 5 / 10,
    /// 10 iterations.
    pub fn ir_label() -> Self {
        CrfParams {
            gaussian: Some(GaussianParams {
                sxy: 3.0,
                compat: 3.0,
            }),
            bilateral: Some(BilateralParams {
                sxy: 50.0,
                srgb: 5.0,
                compat: 10.0,
            }),
            iterations: 10,
        }
    }

    /// The optional stage-2 CRF (§6.6, DeepLab-v2 defaults): Gaussian sxy 1 / 3, bilateral
    /// sxy 67, srgb 3 / 4, 10 iterations.
    pub fn stage2() -> Self {
        CrfParams {
            gaussian: Some(GaussianParams {
                sxy: 1.0,
                compat: 3.0,
            }),
            bilateral: Some(BilateralParams {
                sxy: 67.0,
                srgb: 3.0,
                compat: 4.0,
            }),
            iterations: 10,
        }
    }

    /// A CRF over the `width × height` image `rgb` (H×W×3 uint8) with these kernels and no
    /// unary yet.
    ///
    /// # Errors
    /// As [`DenseCrf::new`] and its `add_pairwise_*` methods.
    pub fn build(
        &self,
        width: usize,
        height: usize,
        n_labels: usize,
        rgb: &[u8],
    ) -> Result<DenseCrf> {
        let mut crf = DenseCrf::new(width, height, n_labels)?;
        crf.add_pairwise_pair(
            self.gaussian.map(|g| (g.sxy, g.compat)),
            self.bilateral.map(|b| (b.sxy, b.srgb, rgb, b.compat)),
        )?;
        Ok(crf)
    }

    /// Refines hard labels (0-based, `H × W`) with the unary of `unary_from_labels`
    /// (`zero_unsure = false`) and returns the CRF's marginals (label-major).
    ///
    /// # Errors
    /// Bad sizes, labels ≥ `n_labels`, `gt_prob` outside (0, 1), fewer than 2 labels.
    pub fn refine_labels_q(
        &self,
        labels: &[u8],
        n_labels: usize,
        gt_prob: f64,
        width: usize,
        height: usize,
        rgb: &[u8],
    ) -> Result<Vec<f32>> {
        let mut crf = self.build(width, height, n_labels, rgb)?;
        crf.set_unary_energy(&unary_from_labels(labels, n_labels, gt_prob, false)?)?;
        Ok(crf.inference(self.iterations))
    }

    /// Refines class probabilities (label-major `n_labels × H × W`) with the unary
    /// `−ln(clip(p, 1e-5, 1))` and returns the marginals (label-major).
    ///
    /// # Errors
    /// Bad sizes or NaN probabilities.
    pub fn refine_softmax(
        &self,
        probs: &[f32],
        n_labels: usize,
        width: usize,
        height: usize,
        rgb: &[u8],
    ) -> Result<Vec<f32>> {
        let mut crf = self.build(width, height, n_labels, rgb)?;
        crf.set_unary_energy(&unary_from_softmax(probs, SOFTMAX_CLIP)?)?;
        Ok(crf.inference(self.iterations))
    }
}

/// Label map (`H × W`, first maximum) of label-major marginals `q` with `n_labels` planes.
pub fn argmax_labels(q: &[f32], n_labels: usize) -> Vec<u8> {
    if n_labels == 0 {
        return Vec::new();
    }
    let n = q.len() / n_labels;
    (0..n)
        .map(|p| {
            let mut best = 0;
            for k in 1..n_labels {
                if q[k * n + p] > q[best * n + p] {
                    best = k;
                }
            }
            best as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_round_trip_through_json() {
        for p in [CrfParams::ir_label(), CrfParams::stage2()] {
            let s = serde_json::to_string(&p).unwrap();
            assert_eq!(serde_json::from_str::<CrfParams>(&s).unwrap(), p);
        }
        assert_eq!(CrfParams::ir_label().bilateral.unwrap().srgb, 5.0);
        assert_eq!(CrfParams::stage2().gaussian.unwrap().sxy, 1.0);
    }

    #[test]
    fn argmax_of_label_major_planes() {
        // Two pixels, three labels.
        let q = [0.2, 0.5, 0.5, 0.1, 0.3, 0.4];
        assert_eq!(argmax_labels(&q, 3), vec![1, 0]);
    }
}
