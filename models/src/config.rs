//! Network configurations (serde) with presets. One ResNet type serves the CAM backbone
//! (§2.1, output stride 16), the IRN backbone (§4.2) and DeepLabV2 (§6.1, output stride 8).

use serde::{Deserialize, Serialize};

/// Torchvision-style Bottleneck ResNet ("v1.5": stride on the 3×3 conv).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResNetConfig {
    /// Bottleneck blocks per layer (ResNet-50: 3, 4, 6, 3).
    pub blocks: [usize; 4],
    /// Base width: planes of layer1 (64 in torchvision); layer L has `base·2^(L−1)` planes and
    /// `4·base·2^(L−1)` output channels.
    pub base_width: usize,
    /// Stride of the first block of each layer.
    pub strides: [usize; 4],
    /// Dilation (= padding) of the 3×3 convs of every block of each layer.
    pub dilations: [usize; 4],
    /// BatchNorm epsilon.
    pub bn_eps: f64,
}

impl ResNetConfig {
    /// ResNet-50 at output stride 16: the CAM and IRN backbone (§2.1, §4.2).
    pub fn resnet50_os16() -> Self {
        ResNetConfig {
            blocks: [3, 4, 6, 3],
            base_width: 64,
            strides: [1, 2, 2, 1],
            dilations: [1, 1, 1, 1],
            bn_eps: 1e-5,
        }
    }

    /// ResNet-101 at output stride 8: the DeepLabV2 backbone of the reference code (§6.1).
    pub fn resnet101_os8() -> Self {
        ResNetConfig {
            blocks: [3, 4, 23, 3],
            base_width: 64,
            strides: [1, 2, 1, 1],
            dilations: [1, 1, 2, 4],
            bn_eps: 1e-5,
        }
    }

    /// ResNet-101 at output stride 16, as the paper describes DeepLabV2 (§6.1).
    pub fn resnet101_os16() -> Self {
        ResNetConfig {
            strides: [1, 2, 2, 1],
            dilations: [1, 1, 1, 2],
            ..Self::resnet101_os8()
        }
    }

    /// A tiny ResNet for CPU tests and the synthetic preset (one block per layer, width 8).
    pub fn tiny_os16() -> Self {
        ResNetConfig {
            blocks: [1, 1, 1, 1],
            base_width: 8,
            ..Self::resnet50_os16()
        }
    }

    /// Output channels of layer `l` (0-based).
    pub fn out_channels(&self, l: usize) -> usize {
        (4 * self.base_width) << l
    }

    /// Total output stride of the network.
    pub fn output_stride(&self) -> usize {
        4 * self.strides.iter().product::<usize>()
    }
}

/// How a ResNet's BatchNorms normalise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BnMode {
    /// Always the stored running statistics, never updated (§2.1, §4.2); the affine γ/β stay
    /// trainable unless their layer is frozen.
    Frozen,
    /// PyTorch `BatchNorm2d`: batch statistics in training (running statistics updated with
    /// momentum 0.1), running statistics at evaluation (§6.1).
    Batch,
}

/// The activation that ends each layer4 bottleneck (after the residual addition).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Plain ReLU (IRN backbone §4.2, DeepLab §6.1).
    Relu,
    /// Discriminative region suppression with a fixed δ (§2.2, the SSC classifier).
    Drs {
        /// The suppression ratio δ (0.55 in SSC).
        delta: f64,
    },
}

/// Run-time choices of a ResNet that do not change its weights.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ResNetOptions {
    /// BatchNorm behaviour.
    pub bn: BnMode,
    /// Number of leading stages whose parameters are frozen (no gradient, not variables):
    /// 0 none, 1 the stem (conv1 + bn1), 2 also layer1, … 5 everything.
    pub frozen_stages: usize,
    /// The last activation of every layer4 block.
    pub layer4_act: Activation,
}

impl ResNetOptions {
    /// The SSC classifier backbone (§2.1–2.2): fixed BN, frozen stem, DRS(δ) in layer4.
    pub fn cam(delta: f64) -> Self {
        ResNetOptions {
            bn: BnMode::Frozen,
            frozen_stages: 1,
            layer4_act: Activation::Drs { delta },
        }
    }

    /// The IRN backbone (§4.2): fixed BN, everything frozen, ReLU.
    pub fn irn() -> Self {
        ResNetOptions {
            bn: BnMode::Frozen,
            frozen_stages: 5,
            layer4_act: Activation::Relu,
        }
    }

    /// The DeepLabV2 backbone (§6.1): trainable BN with batch statistics, nothing frozen.
    pub fn deeplab() -> Self {
        ResNetOptions {
            bn: BnMode::Batch,
            frozen_stages: 0,
            layer4_act: Activation::Relu,
        }
    }
}

impl Default for ResNetOptions {
    /// Fixed BN, nothing frozen, ReLU: a plain eval-style torchvision ResNet.
    fn default() -> Self {
        ResNetOptions {
            bn: BnMode::Frozen,
            frozen_stages: 0,
            layer4_act: Activation::Relu,
        }
    }
}

/// The SSC classification / CAM network (§2.1–2.3, §3.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CamNetConfig {
    /// Backbone layout (output stride 16 in SSC).
    pub backbone: ResNetConfig,
    /// Number of foreground classes C (the classifier has C outputs, no background).
    pub num_classes: usize,
    /// DRS suppression ratio δ (§2.2).
    pub drs_delta: f64,
}

impl CamNetConfig {
    /// PASCAL VOC: ResNet-50 OS16, 20 classes, δ = 0.55.
    pub fn voc() -> Self {
        CamNetConfig {
            backbone: ResNetConfig::resnet50_os16(),
            num_classes: 20,
            drs_delta: 0.55,
        }
    }

    /// COCO-2014: ResNet-50 OS16, 80 classes, δ = 0.55.
    pub fn coco() -> Self {
        CamNetConfig {
            num_classes: 80,
            ..Self::voc()
        }
    }

    /// Tiny network for CPU tests and the synthetic preset (width-8 ResNet, 4 classes).
    pub fn synthetic() -> Self {
        CamNetConfig {
            backbone: ResNetConfig::tiny_os16(),
            num_classes: 4,
            drs_delta: 0.55,
        }
    }

    /// Channels of the classifier input (layer4 output).
    pub fn feature_channels(&self) -> usize {
        self.backbone.out_channels(3)
    }
}
