//! Tiny training configurations shared by the tests that train every network for a few
//! steps (determinism, generic op path): width-4 backbones, 32–48 px crops, batch 4, 2 epochs.

use std::path::Path;

use ssc_training::cam::config::{CamTrainConfig, Variant};
use ssc_training::deeplab::config::{CropMode, DeepLabTrainConfig};
use ssc_training::irn::config::IrnTrainConfig;

/// Full SSC classifier (DRS, CDR with a narrow random VGG, ASM from epoch 1).
pub fn tiny_cam(num_classes: usize) -> CamTrainConfig {
    let mut cam = CamTrainConfig::synthetic(num_classes);
    cam.variant = Variant::Full;
    cam.net.backbone.as_resnet_mut().unwrap().base_width = 4;
    cam.decoder.widths = [4, 4, 4, 4, 4];
    cam.vgg = ssc_models::config::VggConfig::vgg19_narrow(32);
    cam.perceptual = ssc_models::config::PerceptualConfig::code(&cam.vgg);
    cam.data.crop = 32;
    cam.data.resize_long = (28, 44);
    cam.batch_size = 4;
    cam.epochs = 2;
    cam.asm_warmup_epochs = 1;
    cam
}

/// IRN trained on the dataset's ground-truth masks in place of IR labels.
pub fn tiny_irn(num_classes: usize, data: &Path) -> IrnTrainConfig {
    let mut irn = IrnTrainConfig::synthetic(num_classes);
    irn.net.backbone.as_resnet_mut().unwrap().base_width = 4;
    irn.data.crop = 48;
    irn.data.radius = 3;
    irn.data.ir_label_dir = Some(data.join("SegmentationClass"));
    irn.data.max_fg_fraction = None;
    irn.batch_size = 4;
    irn.epochs = 2;
    irn
}

/// DeepLabV2 with scale crops, every image each epoch.
pub fn tiny_deeplab(num_classes: usize) -> DeepLabTrainConfig {
    let mut dl = DeepLabTrainConfig::synthetic(num_classes);
    dl.net.backbone.as_resnet_mut().unwrap().base_width = 4;
    dl.data.crop = 32;
    dl.data.crop_mode = CropMode::ScaleCrop { scale: (0.7, 1.1) };
    dl.data.images_per_epoch = None;
    dl.batch_size = 4;
    dl.epochs = 2;
    dl
}
