//! The SSC classification / CAM network (§2.1–2.3, §3.1): ResNet OS16 backbone with DRS in
//! every layer4 block, a bias-free 1×1 classifier, global average pooling.
//!
//! Parameter names: the backbone's torchvision names at the root (so ImageNet weights load
//! unchanged) and `classifier.weight` `[C, 4·8·base, 1, 1]`.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::config::{Activation, CamNetConfig, ResNetOptions};
use crate::drs::drs;
use crate::ops::conv::{Conv2d, ConvParams};
use crate::ops::pool::global_avg_pool;
use crate::resnet::ResNet;

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
    backbone: ResNet,
    classifier: Conv2d,
    cfg: CamNetConfig,
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
        let backbone = ResNet::with_options(&cfg.backbone, opts, vb.clone())?;
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
        })
    }

    /// The configuration.
    pub fn config(&self) -> &CamNetConfig {
        &self.cfg
    }

    /// The backbone.
    pub fn backbone(&self) -> &ResNet {
        &self.backbone
    }

    /// Training forward (§2.1–2.3): stage-2 output detached, DRS after layer2, layer4 with
    /// its DRS blocks, classifier, spatial mean.
    ///
    /// # Shapes
    /// `[N, 3, H, W]` → features `[N, C, ⌈H/16⌉, ⌈W/16⌉]`, scores `[N, C]`.
    pub fn forward_train(&self, x: &Tensor) -> Result<CamTrainOutput> {
        let b = &self.backbone;
        let (_, stem) = b.stem_t(x, true)?;
        let l2 = b.layer_t(1, &b.layer_t(0, &stem, true)?, true)?;
        let l2 = if self.cfg.train_all_stages {
            l2
        } else {
            l2.detach()
        };
        let l2 = drs(&l2, self.cfg.drs_delta)?;
        let l4 = b.layer_t(3, &b.layer_t(2, &l2, true)?, true)?;
        let features = self.classifier.forward(&l4)?;
        let scores = global_avg_pool(&features)?;
        Ok(CamTrainOutput { features, scores })
    }

    /// Pre-ReLU CAM features at inference (§3.1: no DRS after layer2).
    ///
    /// # Shapes
    /// `[N, 3, H, W]` → `[N, C, ⌈H/16⌉, ⌈W/16⌉]`.
    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        let b = &self.backbone;
        let (_, stem) = b.stem_t(x, false)?;
        let mut y = stem;
        for l in 0..4 {
            y = b.layer_t(l, &y, false)?;
        }
        self.classifier.forward(&y)
    }

    /// The inference CAM, ReLU(F) (§3.1).
    ///
    /// # Shapes
    /// `[N, 3, H, W]` → `[N, C, ⌈H/16⌉, ⌈W/16⌉]`.
    pub fn forward_cam(&self, x: &Tensor) -> Result<Tensor> {
        self.features(x)?.relu()
    }

    /// The layer4 activation in use (DRS unless built otherwise).
    pub fn layer4_activation(&self) -> Activation {
        self.backbone.options().layer4_act
    }
}
