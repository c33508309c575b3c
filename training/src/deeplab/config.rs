//! Configuration of DeepLabV2 training (§6.1–6.4) with presets.
//!
//! * [`DeepLabTrainConfig::voc`] / [`DeepLabTrainConfig::coco`]: the reference setup
//!   (ResNet-101 from ImageNet weights, output stride 8 as the code, 512 random-resized crops
//!   of area U[0.5, 0.75], batch 16, SGD lr 0.01 momentum 0.9 wd 1e-4 on every parameter,
//!   poly 0.9 floored at 1e-5, 100 epochs as SSC's `main.py`). `--backbone-weights` is
//!   required. [`DeepLabTrainConfig::set_output_stride`] switches to the paper's OS16.
//! * [`DeepLabTrainConfig::synthetic`]: a CPU-sized run on the ~128 px synthetic benchmark
//!   (tiny width-8 ResNet from scratch, 96 crops, batch 8, few epochs, a bounded number of
//!   images per epoch so it trains in about two minutes on two cores).
//!
//! Only one network is trained: BECO's second network, class mixing and co-training (§6.3)
//! are not part of this trainer; the loss is the §6.3 `L_ce` term without the boundary
//! weight (cross entropy ignoring 255, optionally weighted by the §4.8 confidence masks).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use ssc_models::config::{BackboneConfig, BnMode, DeepLabConfig, EfficientNetConfig, ResNetConfig};

use crate::error::{Result, TrainError};

/// How a training crop is cut from an image (§6.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CropMode {
    /// torchvision `RandomResizedCrop` as in SSC/BECO: a box of area fraction `~U[area]`
    /// and aspect ratio `exp(U[ln ratio])` (10 attempts, then a centre crop), resized to the
    /// crop size (non-uniform scaling allowed). Never pads.
    ResizedCrop {
        /// Area fraction range (0.5, 0.75): the first two of the config's listed scales.
        area: (f64, f64),
        /// Aspect-ratio range (3/4, 4/3).
        ratio: (f64, f64),
    },
    /// The classic DeepLab augmentation: rescale by `s ~ U[scale]`, then a random crop;
    /// where the image is smaller than the crop the image is padded with 0 (the mean after
    /// normalisation) and the label with 255 (ignored).
    ScaleCrop {
        /// Rescale factor range `[lo, hi)`.
        scale: (f64, f64),
    },
}

/// The DeepLab data pipeline (§6.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeepLabDataConfig {
    /// Square crop side (512 in the reference).
    pub crop: usize,
    /// How the crop is cut.
    pub crop_mode: CropMode,
    /// Horizontal flip probability (0.5).
    pub flip_prob: f64,
    /// Validation images (and GT) are resized to `val_size × val_size` (512 in the
    /// reference); `None` evaluates at the native size.
    pub val_size: Option<usize>,
    /// Evaluate at most this many validation images (`None` = all).
    pub val_max_images: Option<usize>,
    /// Batches prepared ahead of the training step.
    pub prefetch: usize,
    /// Use only the first N training images (`None` = all).
    pub max_images: Option<usize>,
    /// Train on at most N randomly drawn images per epoch (`None` = the whole set); keeps
    /// CPU epochs short on large synthetic sets.
    pub images_per_epoch: Option<usize>,
}

/// Everything that defines a DeepLab training run. Written beside every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeepLabTrainConfig {
    /// Preset the config started from (informational).
    pub preset: String,
    /// Seed of initialisation, shuffling and augmentation (3223 in the reference).
    pub seed: u64,
    /// The network; `net.num_classes` counts the background.
    pub net: DeepLabConfig,
    /// 8 (reference code) or 16 (paper); must agree with `net.backbone`.
    pub output_stride: usize,
    /// Training data.
    pub data: DeepLabDataConfig,
    /// Images per batch (the last incomplete batch is dropped).
    pub batch_size: usize,
    /// Epochs.
    pub epochs: usize,
    /// Backbone learning rate `lr0` (0.01).
    pub lr: f64,
    /// The ASPP head's learning rate is `lr0 · classifier_lr_mult` (1 in SSC/BECO; the
    /// original DeepLab used 10).
    pub classifier_lr_mult: f64,
    /// L2 weight decay on all parameters, BN and biases included (1e-4).
    pub weight_decay: f64,
    /// SGD momentum (0.9).
    pub momentum: f64,
    /// Poly power (0.9).
    pub poly_power: f64,
    /// Floor of the poly learning rate (1e-5).
    pub min_lr: f64,
    /// ImageNet backbone weights are required (the reference presets).
    pub requires_pretrained: bool,
    /// Folder of confidence masks `<id>.png` (§4.8; 0 = unreliable, non-zero = reliable)
    /// used as per-pixel loss weights; `None` weighs every labelled pixel 1.
    pub confidence_dir: Option<PathBuf>,
    /// Folder of annotators' corrections (`ssc-serve --corrections`): their label maps
    /// replace the pseudo-masks of the images they name, at full confidence.
    #[serde(default)]
    pub corrections_dir: Option<PathBuf>,
}

/// Backbone strides and dilations for an output stride (§6.1).
fn layout(os: usize) -> Result<([usize; 4], [usize; 4])> {
    match os {
        8 => Ok(([1, 2, 1, 1], [1, 1, 2, 4])),
        16 => Ok(([1, 2, 2, 1], [1, 1, 1, 2])),
        _ => Err(TrainError::Config(format!(
            "output_stride must be 8 or 16, got {os}"
        ))),
    }
}

impl DeepLabTrainConfig {
    /// The reference VOC setup (§6.1–6.4).
    pub fn voc() -> Self {
        DeepLabTrainConfig {
            preset: "voc".into(),
            seed: 3223,
            net: DeepLabConfig::voc(),
            output_stride: 8,
            data: DeepLabDataConfig {
                crop: 512,
                crop_mode: CropMode::ResizedCrop {
                    area: (0.5, 0.75),
                    ratio: (3.0 / 4.0, 4.0 / 3.0),
                },
                flip_prob: 0.5,
                val_size: Some(512),
                val_max_images: None,
                prefetch: 2,
                max_images: None,
                images_per_epoch: None,
            },
            batch_size: 16,
            epochs: 100,
            lr: 0.01,
            classifier_lr_mult: 1.0,
            weight_decay: 1e-4,
            momentum: 0.9,
            poly_power: 0.9,
            min_lr: 1e-5,
            requires_pretrained: true,
            confidence_dir: None,
            corrections_dir: None,
        }
    }

    /// COCO-2014 (81 labels, 40 epochs as the paper, otherwise as VOC; §6.7).
    pub fn coco() -> Self {
        DeepLabTrainConfig {
            preset: "coco".into(),
            net: DeepLabConfig::coco(),
            epochs: 40,
            ..Self::voc()
        }
    }

    /// The CPU preset for the synthetic benchmark (see the module docs); `num_classes`
    /// counts the benchmark's foreground classes.
    pub fn synthetic(num_classes: usize) -> Self {
        let voc = Self::voc();
        DeepLabTrainConfig {
            preset: "synthetic".into(),
            seed: 0,
            net: DeepLabConfig::synthetic(num_classes + 1),
            data: DeepLabDataConfig {
                crop: 96,
                crop_mode: CropMode::ScaleCrop { scale: (0.5, 1.0) },
                val_size: None,
                images_per_epoch: Some(400),
                val_max_images: Some(150),
                ..voc.data
            },
            batch_size: 8,
            epochs: 6,
            lr: 0.05,
            requires_pretrained: false,
            ..voc
        }
    }

    /// Real photographs on a CPU (VOC classes): DeepLabV2's ASPP (rates 6, 12, 18, 24) on an
    /// ImageNet EfficientNet-Lite0 at output stride 16 (the paper's stride; 8 costs 4× in the
    /// last stages). For a CPU budget it fine-tunes like the original DeepLabV2: fixed ImageNet
    /// BN statistics (affine trainable), and here the stride-8 stages frozen (SSC trains every
    /// layer with batch statistics, 16 × 512² per batch, 100 epochs on a GPU). SGD momentum
    /// 0.9, one lr for backbone and head as in SSC, but 0.003 rather than SSC's 0.01: on VOC
    /// pseudo-masks (40 steps, 320 images, the epoch-1 loss of the last 20 steps) 0.01 did not
    /// learn (loss stayed at 1.0–1.1), 0.003 and 0.001 did (0.76, 0.79), and the original
    /// DeepLab's 10× head diverged (1.7 to over 60). Poly schedule, confidence-weighted cross
    /// entropy; 256 px crops of images rescaled by 0.5–1.5, batch 8,
    /// 5 epochs, validation on at most 50 images at their own size. Needs
    /// `--backbone-weights` (`weights/efficientnet-lite0.safetensors`).
    pub fn voc_lite() -> Self {
        let voc = Self::voc();
        let backbone: BackboneConfig = EfficientNetConfig::lite(0)
            .unwrap_or_else(|| unreachable!("Lite0 is a preset"))
            .with_output_stride(16)
            .into();
        DeepLabTrainConfig {
            preset: "voc-lite".into(),
            seed: 0,
            net: DeepLabConfig {
                frozen_parts: backbone.early_parts(),
                backbone,
                bn: BnMode::Frozen,
                ..DeepLabConfig::voc()
            },
            output_stride: 16,
            data: DeepLabDataConfig {
                crop: 256,
                crop_mode: CropMode::ScaleCrop { scale: (0.5, 1.5) },
                val_size: None,
                val_max_images: Some(50),
                ..voc.data
            },
            batch_size: 8,
            epochs: 5,
            lr: 0.003,
            ..voc
        }
    }

    /// A preset by name; `num_classes` (foreground) is used by `synthetic`.
    pub fn preset(name: &str, num_classes: usize) -> Result<Self> {
        crate::config::preset(
            name,
            Self::voc,
            Self::coco,
            || Self::synthetic(num_classes),
            Self::voc_lite,
        )
    }

    /// Switches the backbone to output stride 8 (ResNet: strides 1,2,1,1, dilations
    /// 1,1,2,4) or 16 (1,2,2,1 and 1,1,1,2), keeping its depth and width.
    pub fn set_output_stride(&mut self, os: usize) -> Result<()> {
        let (strides, dilations) = layout(os)?;
        self.net.backbone = match &self.net.backbone {
            BackboneConfig::ResNet(r) => ResNetConfig {
                strides,
                dilations,
                ..r.clone()
            }
            .into(),
            BackboneConfig::EfficientNetLite(e) => e.clone().with_output_stride(os).into(),
        };
        self.output_stride = os;
        Ok(())
    }

    /// Checks values that would otherwise fail deep inside the loop.
    pub fn validate(&self) -> Result<()> {
        // Batch statistics need more than one sample per BN (§6.1).
        crate::config::check_batch_and_epochs(self.batch_size, 2, self.epochs)?;
        let bad = |m: String| Err(TrainError::Config(m));
        let (strides, dilations) = layout(self.output_stride)?;
        match &self.net.backbone {
            BackboneConfig::ResNet(b) if (b.strides, b.dilations) != (strides, dilations) => {
                return bad(format!(
                    "output_stride {} does not match the backbone's strides {:?} / dilations {:?}",
                    self.output_stride, b.strides, b.dilations
                ));
            }
            b if b.output_stride() != self.output_stride => {
                return bad(format!(
                    "output_stride {} does not match the backbone's {}",
                    self.output_stride,
                    b.output_stride()
                ));
            }
            _ => {}
        }
        let d = &self.data;
        if d.crop < 16 {
            return bad(format!("crop {} is too small (≥ 16)", d.crop));
        }
        let range_ok = |(lo, hi): (f64, f64)| lo > 0.0 && lo <= hi && hi.is_finite();
        match d.crop_mode {
            CropMode::ResizedCrop { area, ratio } => {
                if !range_ok(area) || area.1 > 1.0 || !range_ok(ratio) {
                    return bad(format!(
                        "resized crop area {area:?} must lie in (0, 1] and ratio {ratio:?} be \
                         positive"
                    ));
                }
            }
            CropMode::ScaleCrop { scale } => {
                if !range_ok(scale) {
                    return bad(format!("scale range {scale:?} must be 0 < lo ≤ hi"));
                }
            }
        }
        if !(0.0..=1.0).contains(&d.flip_prob) {
            return bad(format!("flip_prob {} outside [0, 1]", d.flip_prob));
        }
        if d.val_size == Some(0) || d.images_per_epoch == Some(0) {
            return bad("val_size and images_per_epoch must be > 0".into());
        }
        if !(2..=255).contains(&self.net.num_classes) {
            return bad(format!(
                "net.num_classes {} must be in 2..=255",
                self.net.num_classes
            ));
        }
        let pos = |v: f64| v.is_finite() && v > 0.0;
        if !pos(self.lr) || !pos(self.classifier_lr_mult) || self.weight_decay < 0.0 {
            return bad("lr and classifier_lr_mult must be > 0, weight_decay ≥ 0".into());
        }
        if self.min_lr < 0.0 || !pos(self.poly_power) {
            return bad("min_lr must be ≥ 0 and poly_power > 0".into());
        }
        Ok(())
    }

    /// The learning-rate factor before update `t` of `total`: poly decay, floored so that
    /// the backbone's rate never drops below `min_lr` (§6.4).
    pub fn lr_factor(&self, t: u64, total: u64) -> f64 {
        crate::schedule::poly_factor(t, total, self.poly_power).max(self.min_lr / self.lr)
    }
}

crate::config::impl_run_config!(DeepLabTrainConfig);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_round_trip() {
        crate::config::assert_presets_round_trip(
            &[
                DeepLabTrainConfig::voc(),
                DeepLabTrainConfig::coco(),
                DeepLabTrainConfig::voc_lite(),
                DeepLabTrainConfig::synthetic(6),
            ],
            DeepLabTrainConfig::validate,
        );
        let v = DeepLabTrainConfig::voc();
        assert_eq!(
            (v.data.crop, v.batch_size, v.epochs, v.seed, v.output_stride),
            (512, 16, 100, 3223, 8)
        );
        assert_eq!(v.net.backbone.as_resnet().unwrap().blocks, [3, 4, 23, 3]);
        assert_eq!(DeepLabTrainConfig::synthetic(6).net.num_classes, 7);
        assert!(DeepLabTrainConfig::preset("nope", 1).is_err());
    }

    #[test]
    fn output_stride_switch_and_checks() {
        let mut c = DeepLabTrainConfig::voc();
        c.set_output_stride(16).unwrap();
        c.validate().unwrap();
        assert_eq!(c.net.backbone.output_stride(), 16);
        assert_eq!(c.net.backbone.as_resnet().unwrap().blocks, [3, 4, 23, 3]);
        assert!(c.set_output_stride(32).is_err());
        c.output_stride = 8; // no longer matches the backbone
        assert!(c.validate().is_err());
        let mut c = DeepLabTrainConfig::synthetic(2);
        c.batch_size = 1;
        assert!(c.validate().is_err());
    }

    #[test]
    fn poly_is_floored_at_min_lr() {
        let c = DeepLabTrainConfig::voc();
        assert_eq!(c.lr_factor(0, 100), 1.0);
        assert!((c.lr_factor(100, 100) * c.lr - 1e-5).abs() < 1e-15);
        assert!(c.lr_factor(99, 100) * c.lr >= 1e-5);
    }
}
