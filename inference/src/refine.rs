//! IRN refinement at inference (§4.7): the class-boundary map from the exported IRN edge
//! network, the random walk of the stride-4 CAM over it, and the pseudo-label.
//!
//! The edge network runs on `[image, hflip(image)]` at scale 1.0; the two edge logit maps are
//! averaged (the flipped one flipped back) before the sigmoid, and cropped to the stride-4
//! grid `ceil(H/4) × ceil(W/4)` of the CAM. The reference zero-pads every image to its 512
//! training crop; the exported graph takes any size, so images are padded (bottom/right, with
//! the normalised mean colour 0) only up to a multiple of `pad_multiple`.

use image::RgbImage;
use serde::{Deserialize, Serialize};
use ssc_core::cam::CamRecord;
use ssc_core::normalize::normalize_flip_pair;
use ssc_core::pseudo::{PseudoLabel, SEM_SEG_BG_THRES, pseudo_label};
use ssc_core::randomwalk::walk::{WalkParams, random_walk};

use crate::runtime::Model;
use crate::{InferenceError, Result};

/// Settings of the refinement stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RefineParams {
    /// Random-walk radius, β and number of squarings (§4.7: 5, 10, 8).
    pub walk: WalkParams,
    /// Constant background score after the walk (§4.7 step 7: 0.25).
    pub bg_thres: f32,
    /// Pad the network input to a multiple of this many pixels (16 keeps every stride exact).
    pub pad_multiple: usize,
}

impl Default for RefineParams {
    fn default() -> Self {
        RefineParams {
            walk: WalkParams::irn(),
            bg_thres: SEM_SEG_BG_THRES,
            pad_multiple: 16,
        }
    }
}

/// The boundary map `B` (values in (0, 1)) on the stride-4 grid of `image`, row-major
/// `ceil(H/4) × ceil(W/4)`.
pub fn edge_map(model: &mut Model, image: &RgbImage, pad_multiple: usize) -> Result<Vec<f32>> {
    let (h, w) = (image.height() as usize, image.width() as usize);
    let m = pad_multiple.max(1);
    let (ph, pw) = (h.div_ceil(m) * m, w.div_ceil(m) * m);
    let pair = normalize_flip_pair(image);
    // Pad each of the 2×3 planes; the flipped copy is padded on its right too, so its
    // content stays left-aligned like the reference's padded batch.
    let mut input = vec![0f32; 2 * 3 * ph * pw];
    for plane in 0..6 {
        for y in 0..h {
            let src = &pair[(plane * h + y) * w..(plane * h + y + 1) * w];
            input[(plane * ph + y) * pw..(plane * ph + y) * pw + w].copy_from_slice(src);
        }
    }
    let outs = model.run(&input, [2, 3, ph, pw])?;
    let edge = outs
        .iter()
        .find(|o| o.name == "edge_logits")
        .ok_or_else(|| InferenceError::Invalid("model has no `edge_logits` output".into()))?;
    let [_, _, eh, ew] = edge.shape[..] else {
        return Err(InferenceError::Invalid(format!(
            "edge_logits has shape {:?}, expected [2, 1, h, w]",
            edge.shape
        )));
    };
    let (h4, w4) = (h.div_ceil(4), w.div_ceil(4));
    // The flipped image's content occupies its first `w` columns, i.e. the first w4 edge
    // columns; flipping it back maps column j to (w4 − 1 − j).
    if eh < h4 || ew < w4 {
        return Err(InferenceError::Invalid(format!(
            "edge map {eh}×{ew} smaller than the stride-4 grid {h4}×{w4}"
        )));
    }
    let (a, b) = edge.data.split_at(eh * ew);
    let mut out = Vec::with_capacity(h4 * w4);
    for y in 0..h4 {
        for x in 0..w4 {
            let l = 0.5 * a[y * ew + x] + 0.5 * b[y * ew + (w4 - 1 - x)];
            out.push(1.0 / (1.0 + (-l).exp()));
        }
    }
    Ok(out)
}

/// Pseudo-label of one image: random walk of `cam`'s stride-4 maps over `edge`, upsampling,
/// background threshold and label mapping (§4.7 steps 3–8).
pub fn refine_with_edge(
    cam: &CamRecord,
    edge: &[f32],
    params: &RefineParams,
) -> Result<PseudoLabel> {
    let (h4, w4) = cam.strided_size();
    let k = cam.keys.len();
    let keys: Vec<usize> = cam.keys.iter().map(|&k| k as usize).collect();
    let (height, width) = cam.size;
    if k == 0 {
        // No present class: everything is background.
        return Ok(pseudo_label(
            &[],
            h4,
            w4,
            height,
            width,
            &[],
            params.bg_thres,
        )?);
    }
    let rw = random_walk(&cam.cam, k, h4, w4, edge, &params.walk)?;
    Ok(pseudo_label(
        &rw,
        h4,
        w4,
        height,
        width,
        &keys,
        params.bg_thres,
    )?)
}

/// Edge map + random walk + pseudo-label for one image.
pub fn refine(
    model: &mut Model,
    image: &RgbImage,
    cam: &CamRecord,
    params: &RefineParams,
) -> Result<PseudoLabel> {
    let (h, w) = (image.height() as usize, image.width() as usize);
    if cam.size != (h, w) {
        return Err(InferenceError::Invalid(format!(
            "CAM is for a {}×{} image, the image is {h}×{w}",
            cam.size.0, cam.size.1
        )));
    }
    let edge = edge_map(model, image, params.pad_multiple)?;
    refine_with_edge(cam, &edge, params)
}
