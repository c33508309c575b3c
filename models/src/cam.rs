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
    /// for variants without DRS unless `early_drs_every_variant`), the late stages ending in DRS, classifier, spatial mean.
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
        // (δ, detach the cap): the baseline's optional cap always passes gradient, the form
        // measured to help it (README, "the synthetic recipe's departures").
        let early_cap = match self.layer4_act {
            Activation::Drs { delta } => Some((delta, self.cfg.detach_early_drs_cap)),
            Activation::Relu if self.cfg.early_drs_every_variant => {
                Some((self.cfg.drs_delta, false))
            }
            Activation::Relu => None,
        };
        let mid = match early_cap {
            Some((delta, detach)) => {
                let peak = global_max_pool(&mid)?;
                let peak = if detach { peak.detach() } else { peak };
                mid.broadcast_minimum(&(peak * delta)?)?
            }
            None => mid,
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

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};
    use candle_nn::{VarBuilder, VarMap};

    use super::*;

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .and_then(|d| d.abs())
            .and_then(|d| d.flatten_all())
            .and_then(|d| d.max(0))
            .and_then(|d| d.to_scalar::<f32>())
            .expect("difference")
    }

    /// The baseline's training forward has no early DRS (the reference's plain CAM) unless
    /// `early_drs_every_variant` asks for it; inference never has it.
    #[test]
    fn early_drs_every_variant_caps_the_baseline_in_training_only() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
        let plain_cfg = CamNetConfig::synthetic(3);
        let capped_cfg = CamNetConfig {
            early_drs_every_variant: true,
            ..plain_cfg.clone()
        };
        let opts = ResNetOptions {
            layer4_act: Activation::Relu,
            ..ResNetOptions::cam_for(&plain_cfg)
        };
        let plain = CamNet::with_options(&plain_cfg, &opts, vb.clone()).expect("plain");
        let capped = CamNet::with_options(&capped_cfg, &opts, vb).expect("capped");
        let x = Tensor::randn(0f32, 1.0, (2, 3, 48, 48), &dev).expect("input");
        let (p, c) = (
            plain.forward_train(&x).expect("plain forward"),
            capped.forward_train(&x).expect("capped forward"),
        );
        assert!(max_abs_diff(&p.features, &c.features) > 1e-4);
        let (pi, ci) = (
            plain.features(&x).expect("plain features"),
            capped.features(&x).expect("capped features"),
        );
        assert_eq!(max_abs_diff(&pi, &ci), 0.0);
    }

    /// Gradients reaching conv1 with `act` in layer4 and the early cap detached or not (one
    /// set of weights for both networks).
    fn early_grads(act: Activation) -> (Tensor, Tensor) {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
        let cfg = |detach| CamNetConfig {
            train_all_stages: true,
            detach_early_drs_cap: detach,
            early_drs_every_variant: true,
            ..CamNetConfig::synthetic(3)
        };
        let opts = ResNetOptions {
            layer4_act: act,
            ..ResNetOptions::cam_for(&cfg(true))
        };
        let x = Tensor::randn(0f32, 1.0, (2, 3, 48, 48), &dev).expect("input");
        let grad = |detach| {
            let net = CamNet::with_options(&cfg(detach), &opts, vb.clone()).expect("net");
            let loss = net
                .forward_train(&x)
                .and_then(|o| o.scores.sqr())
                .and_then(|s| s.sum_all())
                .expect("loss");
            let grads = loss.backward().expect("backward");
            let w = vm
                .data()
                .lock()
                .expect("vars")
                .get("conv1.weight")
                .expect("conv1")
                .clone();
            grads.get(w.as_tensor()).expect("conv1 gradient").clone()
        };
        (grad(true), grad(false))
    }

    /// `detach_early_drs_cap` changes the gradient of a DRS variant, never the baseline's.
    #[test]
    fn detached_cap_applies_to_drs_variants_only() {
        let zero = |t: &Tensor| Tensor::zeros_like(t).expect("zeros");
        let (d, g) = early_grads(Activation::Drs { delta: 0.55 });
        assert!(
            max_abs_diff(&g, &zero(&g)) > 0.0,
            "no gradient reaches conv1"
        );
        assert!(max_abs_diff(&d, &g) > 0.0);
        let (d, g) = early_grads(Activation::Relu);
        assert!(
            max_abs_diff(&g, &zero(&g)) > 0.0,
            "no gradient reaches conv1"
        );
        assert_eq!(max_abs_diff(&d, &g), 0.0);
    }
}
