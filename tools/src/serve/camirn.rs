//! The CAM + IRN model behind `ssc-serve` (§3 CAMs with predicted labels, §4.7 random walk):
//! pre-annotations straight from the pseudo-label stage, before any segmentation network is
//! trained. A thin adapter from the library's [`Labeler`] (which `ssc-label masks` computes
//! the same way) to the server's [`Segmenter`]; each worker owns one.
//!
//! The CAMs at four scales and the random walk need memory in proportion to the image (a
//! 24-megapixel photograph peaked at 18.9 GB), so an image above the work size
//! ([`CamIrnSegmenter::with_work_pixels`], 1 megapixel by default) is labelled at that size
//! and the label map enlarged back ([`Labeler::with_work_pixels`]): a worker's memory is
//! bounded whatever the image's size.

use std::path::Path;

use image::RgbImage;
use ssc_inference::Result;
use ssc_inference::cam::CamConfig;
use ssc_inference::labeler::{DEFAULT_SERVE_WORK_PIXELS, ImageLabels, Labeler};
use ssc_inference::refine::RefineParams;
use ssc_inference::runtime::SessionConfig;

pub use ssc_inference::labeler::{class_confidence, enlarge_nearest};

use super::predictor::{SegmentError, Segmentation, Segmenter};

/// Exported CAM and IRN edge networks labelling one image at a time.
pub struct CamIrnSegmenter(Labeler);

/// Default work size of [`CamIrnSegmenter`]: one megapixel.
pub const DEFAULT_WORK_PIXELS: u64 = DEFAULT_SERVE_WORK_PIXELS;

impl CamIrnSegmenter {
    /// Opens the two networks, checking their kinds. Labels are always predicted (a served
    /// image has no image-level labels), whatever `cfg.predict_labels` says.
    pub fn open(
        cam: &Path,
        irn: &Path,
        session: &SessionConfig,
        cfg: CamConfig,
        params: RefineParams,
    ) -> Result<Self> {
        let labeler = Labeler::open(cam, irn, session)?
            .with_cam_config(CamConfig {
                predict_labels: true,
                ..cfg
            })?
            .with_params(params)
            .with_work_pixels(Some(DEFAULT_WORK_PIXELS));
        Ok(CamIrnSegmenter(labeler))
    }

    /// Runs images larger than `pixels` (at least 10,000) at that size.
    pub fn with_work_pixels(self, pixels: u64) -> Self {
        CamIrnSegmenter(self.0.with_work_pixels(Some(pixels)))
    }

    /// Label names: background, then the CAM network's classes.
    pub fn class_names(&self) -> Vec<String> {
        self.0.class_names()
    }
}

impl Segmenter for CamIrnSegmenter {
    fn segment(&mut self, image: &RgbImage) -> std::result::Result<Segmentation, SegmentError> {
        let out = self.0.label(image, ImageLabels::Predict)?;
        Ok(Segmentation {
            width: out.mask.width as u32,
            height: out.mask.height as u32,
            labels: out.mask.data,
            scores: out.confidence,
        })
    }
}
