//! CAM generation with the candle CAM network (§3.1–3.2) and seed evaluation (§3.4), for
//! evaluating a trained classifier. Fusion, selection and the sweep are `ssc_core::cam`.

use candle_core::{Device, Tensor};
use rayon::prelude::*;
use ssc_core::cam::{CamRecord, ScaleOutput, Sweep, SweepPoint, fuse_scales, keys_from_label};
use ssc_core::dataset::Dataset;
use ssc_core::normalize::{hflip_chw, normalize_flip_pair};
use ssc_core::resize::pil_rescale_rgb;
use ssc_core::{imageio, mask};
use ssc_models::cam::CamNet;

use crate::error::{Result, TrainError};

/// The multi-scale, flip-summed CAM of one image (§3.2) for the classes of `label`.
pub fn cam_for_image(
    net: &CamNet,
    img: &image::RgbImage,
    label: &[f32],
    scales: &[f64],
    dev: &Device,
) -> Result<CamRecord> {
    let (h, w) = (img.height() as usize, img.width() as usize);
    let mut outputs = Vec::with_capacity(scales.len());
    for &s in scales {
        let scaled = if s == 1.0 {
            img.clone()
        } else {
            pil_rescale_rgb(img, s)?
        };
        let (sh, sw) = (scaled.height() as usize, scaled.width() as usize);
        let x = Tensor::from_vec(normalize_flip_pair(&scaled), (2, 3, sh, sw), dev)?;
        let cam = net.forward_cam(&x)?;
        let (_, c, oh, ow) = cam.dims4()?;
        let v = cam.flatten_all()?.to_vec1::<f32>()?;
        let plane = c * oh * ow;
        let flipped = hflip_chw(&v[plane..], c, oh, ow)?;
        let data = v[..plane]
            .iter()
            .zip(&flipped)
            .map(|(a, b)| a + b)
            .collect();
        outputs.push(ScaleOutput {
            data,
            channels: c,
            h: oh,
            w: ow,
        });
    }
    let fused = fuse_scales(&outputs, h, w)?;
    Ok(CamRecord::from_fused(&fused, &keys_from_label(label))?)
}

/// Result of evaluating CAM seeds on a split.
#[derive(Debug, Clone)]
pub struct SeedEval {
    /// Images evaluated.
    pub images: usize,
    /// mIoU per threshold.
    pub points: Vec<SweepPoint>,
    /// The best threshold.
    pub best: SweepPoint,
}

/// Generates CAMs for the first `max_images` labelled images with GT of `ds` and sweeps the
/// background threshold (§3.4). Images run in parallel (one forward each at a time).
pub fn evaluate_seeds(
    net: &CamNet,
    ds: &Dataset,
    scales: &[f64],
    thresholds: &[f32],
    max_images: Option<usize>,
    dev: &Device,
) -> Result<SeedEval> {
    let items: Vec<_> = ds
        .items
        .iter()
        .filter(|it| it.gt.is_some() && it.labels.is_some())
        .take(max_images.unwrap_or(usize::MAX))
        .collect();
    if items.is_empty() {
        return Err(TrainError::Config(format!(
            "{}: no image with both labels and ground truth to evaluate",
            ds.name
        )));
    }
    let n_classes = ds.classes.len();
    let sweep = items
        .par_iter()
        .map(|it| -> Result<Sweep> {
            let img = imageio::read_rgb(&it.image)?;
            let label: Vec<f32> = it.labels.iter().flatten().map(|&v| v as f32).collect();
            let rec = cam_for_image(net, &img, &label, scales, dev)?;
            let gt_path = it.gt.as_ref().expect("filtered on gt");
            let gt = mask::read_mask(gt_path, &ds.classes)?;
            let mut s = Sweep::new(thresholds.to_vec(), n_classes);
            s.add(&rec, &gt.data)
                .map_err(|e| TrainError::file(gt_path, e.to_string()))?;
            Ok(s)
        })
        .try_reduce_with(|mut a, b| {
            a.merge(&b);
            Ok(a)
        })
        .expect("items is not empty")?;
    let best = sweep.best().expect("thresholds are not empty");
    Ok(SeedEval {
        images: items.len(),
        points: sweep.points(),
        best,
    })
}
