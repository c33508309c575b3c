//! The SSC classification / CAM network (§2.1–2.3, §3.1): an OS16 backbone ending in DRS
//! (ResNet: in every layer4 block; EfficientNet-Lite: after the head), a bias-free 1×1
//! classifier, global average pooling. In training a second DRS follows the early stages
//! (stride 8), whose output is detached unless every stage trains.
//!
//! Parameter names: the backbone's own names at the root (torchvision's or the
//! EfficientNet-Lite package's, so ImageNet weights load unchanged) and `classifier.weight`
//! `[C, feature_channels, 1, 1]`.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::backbone::Backbone;
use crate::config::{Activation, CamNetConfig, ResNetOptions};
use crate::ops::conv::{Conv2d, ConvParams};
use crate::ops::pool::{global_avg_pool, global_max_pool};

/// Outputs of the training forward pass.
#[derive(Debug, Clone)]
pub struct CamTrainOutput {
    /// CAM features F = classifier(layer4), pre-ReLU, `[N, C, h, w]` (§2.3).
    pub features: Tensor,
    /// Class scores q = spatial mean of F, `[N, C]`.
    pub scores: Tensor,
}

/// The CAM network.
#[derive(Debug, Clone)]
pub struct CamNet {
    backbone: Backbone,
    classifier: Conv2d,
    cfg: CamNetConfig,
    layer4_act: Activation,
}

impl CamNet {
    /// Builds the network: fixed BN, frozen stem (§2.1), DRS(δ) ending every layer4 block.
    pub fn new(cfg: &CamNetConfig, vb: VarBuilder) -> Result<Self> {
        Self::with_options(cfg, &ResNetOptions::cam_for(cfg), vb)
    }

    /// Builds the network with explicit backbone options (e.g. everything frozen for
    /// inference-only use, which skips all weight gradients).
    pub fn with_options(cfg: &CamNetConfig, opts: &ResNetOptions, vb: VarBuilder) -> Result<Self> {
        if cfg.num_classes == 0 {
            candle_core::bail!("cam: num_classes must be > 0");
        }
        let backbone = Backbone::new(&cfg.backbone, opts, vb.clone())?;
        let classifier = Conv2d::new(
            cfg.feature_channels(),
            cfg.num_classes,
            1,
            ConvParams::default(),
            false,
            false,
            vb.pp("classifier"),
        )?;
        Ok(CamNet {
            backbone,
            classifier,
            cfg: cfg.clone(),
            layer4_act: opts.layer4_act,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &CamNetConfig {
        &self.cfg
    }

    /// The backbone.
    pub fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    /// Training forward (§2.1–2.3): early stages (output detached unless every stage
    /// trains), the training-only DRS without ReLU `min(x, δ·max_hw x)` (the reference's; not
    /// for variants without DRS), the late stages ending in DRS, classifier, spatial mean.
    ///
    /// # Shapes
    /// `[N, 3, H, W]` → features `[N, C, ⌈H/16⌉, ⌈W/16⌉]`, scores `[N, C]`.
    pub fn forward_train(&self, x: &Tensor) -> Result<CamTrainOutput> {
        let b = &self.backbone;
        let mid = b.early_t(x, true)?;
        let mid = if self.cfg.train_all_stages {
            mid
        } else {
            mid.detach()
        };
        let mid = match self.layer4_act {
            Activation::Drs { delta } => {
                let peak = global_max_pool(&mid)?;
                let peak = if self.cfg.detach_early_drs_cap {
                    peak.detach()
                } else {
                    peak
                };
                mid.broadcast_minimum(&(peak * delta)?)?
            }
            Activation::Relu => mid,
        };
        let l4 = b.late_t(&mid, true)?;
        let features = self.classifier.forward(&l4)?;
        let scores = global_avg_pool(&features)?;
        Ok(CamTrainOutput { features, scores })
    }

    /// Pre-ReLU CAM features at inference (§3.1: no DRS after layer2).
    ///
    /// # Shapes
    /// `[N, 3, H, W]` → `[N, C, ⌈H/16⌉, ⌈W/16⌉]`.
    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        self.classifier.forward(&self.backbone.forward_t(x, false)?)
    }

    /// The inference CAM, ReLU(F) (§3.1).
    ///
    /// # Shapes
    /// `[N, 3, H, W]` → `[N, C, ⌈H/16⌉, ⌈W/16⌉]`.
    pub fn forward_cam(&self, x: &Tensor) -> Result<Tensor> {
        self.features(x)?.relu()
    }

    /// The last activation of the backbone (DRS unless built otherwise).
    pub fn layer4_activation(&self) -> Activation {
        self.layer4_act
    }
}
