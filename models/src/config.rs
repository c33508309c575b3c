//! Network configurations (serde) with presets. One ResNet type serves the CAM backbone
//! (§2.1, output stride 16), the IRN backbone (§4.2) and DeepLabV2 (§6.1, output stride 8).

use serde::{Deserialize, Serialize};

pub use crate::backbone::BackboneConfig;
pub use crate::efficientnet::{EfficientNetConfig, EfficientNetStage};

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

/// The CAM-driven reconstruction decoder (§2.4, Table I).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecoderConfig {
    /// Input channels C: the class count of the CAM features (20 VOC, 80 COCO).
    pub in_channels: usize,
    /// `widths[0]`: head and ResBlock width; up-sample k (1..=4) keeps `widths[k−1]` through
    /// its transposed conv and ends at `widths[k]`. Reference: 256, 256, 128, 64, 32.
    pub widths: [usize; 5],
    /// ResBlocks after the head (the reference has 1).
    pub res_blocks: usize,
    /// Output image channels (3).
    pub out_channels: usize,
    /// Epsilon added to the std in the MUNIT LayerNorm.
    pub ln_eps: f64,
    /// InstanceNorm epsilon.
    pub in_eps: f64,
}

impl DecoderConfig {
    /// The reference decoder for `in_channels` classes.
    pub fn reference(in_channels: usize) -> Self {
        DecoderConfig {
            in_channels,
            widths: [256, 256, 128, 64, 32],
            res_blocks: 1,
            out_channels: 3,
            ln_eps: 1e-5,
            in_eps: 1e-5,
        }
    }

    /// PASCAL VOC: 20 foreground classes.
    pub fn voc() -> Self {
        Self::reference(20)
    }

    /// COCO-2014: 80 foreground classes.
    pub fn coco() -> Self {
        Self::reference(80)
    }

    /// A narrow decoder for CPU tests and the synthetic preset.
    pub fn synthetic(in_channels: usize) -> Self {
        DecoderConfig {
            widths: [16, 16, 8, 8, 4],
            ..Self::reference(in_channels)
        }
    }
}

/// torchvision VGG `features` (the perceptual-loss network, §2.5): five blocks of 3×3 convs
/// (padding 1) + ReLU, each block closed by a 2×2/s2 max pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VggConfig {
    /// Convs per block (VGG-19: 2, 2, 4, 4, 4).
    pub convs: [usize; 5],
    /// Output channels of every conv of each block (VGG-19: 64, 128, 256, 512, 512).
    pub widths: [usize; 5],
}

impl VggConfig {
    /// torchvision `vgg19` (the `vgg19-dcbb9e9d.pth` checkpoint).
    pub fn vgg19() -> Self {
        VggConfig {
            convs: [2, 2, 4, 4, 4],
            widths: [64, 128, 256, 512, 512],
        }
    }

    /// VGG-19 with every width divided by `div` (CPU tests, synthetic preset).
    pub fn vgg19_narrow(div: usize) -> Self {
        let mut c = Self::vgg19();
        c.widths = c.widths.map(|w| (w / div.max(1)).max(1));
        c
    }

    /// torchvision `features` index of the ReLU after conv `conv` (1-based) of block `block`
    /// (1-based), e.g. relu1_1 → 1, relu5_1 → 29, relu5_4 → 35 for VGG-19. `None` when the
    /// layer does not exist.
    pub fn relu_index(&self, block: usize, conv: usize) -> Option<usize> {
        if !(1..=5).contains(&block) || conv == 0 || conv > self.convs[block - 1] {
            return None;
        }
        // every conv is followed by a ReLU (2 entries), every block by a pool (1 entry)
        let before: usize = self.convs[..block - 1].iter().map(|c| 2 * c + 1).sum();
        Some(before + 2 * (conv - 1) + 1)
    }
}

/// Which layers and weights the perceptual loss uses (§2.5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerceptualConfig {
    /// `features` indices of the compared activations.
    pub taps: Vec<usize>,
    /// Weight of each tap's L1 mean.
    pub weights: Vec<f64>,
    /// Both images are halved by 2×2 average pooling while their width exceeds this (1024).
    pub max_width: usize,
}

impl PerceptualConfig {
    /// **\[code\]** (the default, what SSC trains with): relu1_1 … relu5_1, weights 1/32, 1/16,
    /// 1/8, 1/4, 1.
    pub fn code(vgg: &VggConfig) -> Self {
        PerceptualConfig {
            taps: (1..=5).filter_map(|b| vgg.relu_index(b, 1)).collect(),
            weights: vec![1.0 / 32.0, 1.0 / 16.0, 1.0 / 8.0, 1.0 / 4.0, 1.0],
            max_width: 1024,
        }
    }

    /// EfficientNet-Lite features for the perceptual loss when no ImageNet VGG-19 is at hand:
    /// the outputs of stages 1, 2, 3, 5 and 7 (strides 2, 4, 8, 16, 32), weighted like the
    /// reference's five VGG taps (1/32, 1/16, 1/8, 1/4, 1).
    pub fn efficientnet_lite() -> Self {
        PerceptualConfig {
            taps: vec![0, 1, 2, 4, 6],
            weights: vec![1.0 / 32.0, 1.0 / 16.0, 1.0 / 8.0, 1.0 / 4.0, 1.0],
            max_width: 1024,
        }
    }

    /// **\[paper\]** Eq. 5–6: the last ReLU of each block (relu1_2, relu2_2, relu3_4, relu4_4,
    /// relu5_4), weights 1/32, 1/16, 1/8, 1/4, 1/2.
    pub fn paper(vgg: &VggConfig) -> Self {
        PerceptualConfig {
            taps: (1..=5)
                .filter_map(|b| vgg.relu_index(b, vgg.convs[b - 1]))
                .collect(),
            weights: vec![1.0 / 32.0, 1.0 / 16.0, 1.0 / 8.0, 1.0 / 4.0, 1.0 / 2.0],
            max_width: 1024,
        }
    }
}

/// IRN's class-boundary (edge) branch on a frozen backbone (§4.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IrnConfig {
    /// The frozen backbone (ResNet-50 at output stride 16 in the reference).
    pub backbone: BackboneConfig,
    /// Channels of each of e1…e5 (32 in the reference; half the backbone's base width).
    pub edge_width: usize,
    /// GroupNorm groups of e1…e5 (4).
    pub gn_groups: usize,
    /// GroupNorm epsilon.
    pub gn_eps: f64,
}

impl IrnConfig {
    /// The reference: ResNet-50 OS16, 32-channel edge features, GN(4).
    pub fn resnet50() -> Self {
        Self::for_backbone(ResNetConfig::resnet50_os16())
    }

    /// A tiny network for CPU tests and the synthetic preset.
    pub fn tiny() -> Self {
        Self::for_backbone(ResNetConfig::tiny_os16())
    }

    /// Edge widths scaled with the backbone: a ResNet's base width / 2 (at least 4), 32
    /// (the reference's) for EfficientNet-Lite.
    pub fn for_backbone(backbone: impl Into<BackboneConfig>) -> Self {
        let backbone = backbone.into();
        IrnConfig {
            edge_width: match &backbone {
                BackboneConfig::ResNet(r) => (r.base_width / 2).max(4),
                BackboneConfig::EfficientNetLite(_) => 32,
            },
            backbone,
            gn_groups: 4,
            gn_eps: 1e-5,
        }
    }

    /// Channels of the five backbone features x1 … x5 ([`BackboneConfig::tap_channels`]).
    pub fn feature_channels(&self) -> [usize; 5] {
        self.backbone.tap_channels()
    }

    /// Up-sampling factor of e1…e5 back to the stride of x2 (1, 1, 2, 4, 4 at OS16).
    pub fn edge_factors(&self) -> [usize; 5] {
        let s = self.backbone.tap_strides();
        s.map(|t| (t / s[1].max(1)).max(1))
    }
}

/// DeepLabV2 (§6.1): ResNet backbone + ASPP head of summed dilated 3×3 convs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeepLabConfig {
    /// Backbone (ResNet-101 OS8 in the reference code, OS16 in the paper).
    pub backbone: BackboneConfig,
    /// Output classes, background included (21 VOC, 81 COCO).
    pub num_classes: usize,
    /// ASPP dilation (= padding) of each branch: 6, 12, 18, 24.
    pub rates: Vec<usize>,
    /// Std of the ASPP weights' normal initialisation (0.01).
    pub head_init_std: f64,
    /// The backbone's BatchNorms in training: batch statistics as SSC/BECO (`batch`, the
    /// default), or fixed ImageNet statistics with trainable affine parameters as the original
    /// DeepLabV2 (`frozen`; suits small CPU batches).
    #[serde(default = "batch_bn")]
    pub bn: BnMode,
    /// Leading backbone parts kept frozen (numbered as `ResNetOptions::frozen_stages`; 0, the
    /// reference, trains everything).
    #[serde(default)]
    pub frozen_parts: usize,
}

fn batch_bn() -> BnMode {
    BnMode::Batch
}

impl DeepLabConfig {
    /// The reference code's network: ResNet-101 at output stride 8.
    pub fn voc() -> Self {
        DeepLabConfig {
            backbone: ResNetConfig::resnet101_os8().into(),
            num_classes: 21,
            rates: vec![6, 12, 18, 24],
            head_init_std: 0.01,
            bn: BnMode::Batch,
            frozen_parts: 0,
        }
    }

    /// COCO-2014: 81 classes.
    pub fn coco() -> Self {
        DeepLabConfig {
            num_classes: 81,
            ..Self::voc()
        }
    }

    /// The paper's output stride 16.
    pub fn voc_os16() -> Self {
        DeepLabConfig {
            backbone: ResNetConfig::resnet101_os16().into(),
            ..Self::voc()
        }
    }

    /// A tiny network for CPU tests and the synthetic preset.
    pub fn synthetic(num_classes: usize) -> Self {
        DeepLabConfig {
            backbone: ResNetConfig {
                strides: [1, 2, 1, 1],
                dilations: [1, 1, 2, 4],
                ..ResNetConfig::tiny_os16()
            }
            .into(),
            num_classes,
            ..Self::voc()
        }
    }
}

/// How a ResNet's BatchNorms normalise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BnMode {
    /// Always the stored running statistics, never updated (§2.1, §4.2); the affine γ/β stay
    /// trainable unless their layer is frozen.
    #[default]
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

    /// [`ResNetOptions::cam`] for a network config: nothing frozen when it trains every
    /// stage, else every part before the training forward's detach (§2.1: the reference
    /// freezes the stem and detaches layer2's output, so no gradient reaches layers 1–2
    /// either; freezing them too changes no value and spares their autograd bookkeeping); BN
    /// as the config says.
    pub fn cam_for(cfg: &CamNetConfig) -> Self {
        ResNetOptions {
            frozen_stages: if cfg.train_all_stages {
                0
            } else {
                cfg.backbone.early_parts()
            },
            bn: cfg.bn,
            ..Self::cam(cfg.drs_delta)
        }
    }

    /// The IRN backbone (§4.2): fixed BN, everything frozen, ReLU.
    pub fn irn() -> Self {
        ResNetOptions {
            bn: BnMode::Frozen,
            frozen_stages: usize::MAX,
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
    pub backbone: BackboneConfig,
    /// Number of foreground classes C (the classifier has C outputs, no background).
    pub num_classes: usize,
    /// DRS suppression ratio δ (§2.2).
    pub drs_delta: f64,
    /// Train every stage: no frozen stem and no gradient stop after layer2. The reference
    /// (§2.1) freezes both because its backbone is ImageNet-pretrained; a from-scratch
    /// backbone would keep random early features. `false` (the default) is the reference.
    #[serde(default)]
    pub train_all_stages: bool,
    /// How the backbone's BatchNorms normalise in training. The reference keeps them fixed
    /// (`frozen`, the default) because its statistics come from ImageNet.
    #[serde(default)]
    pub bn: BnMode,
    /// Compute the cap of the training-only DRS after the early stages from a detached copy
    /// (`min(x, δ·stopgrad(max x))`), so no gradient pushes the peak up through the cap.
    /// Only matters with `train_all_stages` (the reference detaches the early stages'
    /// output anyway) and only in variants with DRS: the baseline's optional cap
    /// (`early_drs_every_variant`) passes gradient, the form measured to help it. `false`
    /// (the default) is the reference's DRS.
    #[serde(default)]
    pub detach_early_drs_cap: bool,
    /// Apply the training-only DRS after the early stages (δ = `drs_delta`, gradient through
    /// its cap) in variants without DRS too, i.e. the plain-CAM baseline. Not the reference: IRN's plain CAM has
    /// no DRS anywhere (the `train-steps` fixture's baseline case). `false` (the default) is
    /// the reference; the switch exists because this code did it for every variant until
    /// the trajectory parity, and on the from-scratch synthetic benchmark it changes the
    /// baseline's seed (README, "the synthetic recipe's departures").
    #[serde(default)]
    pub early_drs_every_variant: bool,
}

impl CamNetConfig {
    /// PASCAL VOC: ResNet-50 OS16, 20 classes, δ = 0.55.
    pub fn voc() -> Self {
        CamNetConfig {
            backbone: ResNetConfig::resnet50_os16().into(),
            num_classes: 20,
            drs_delta: 0.55,
            train_all_stages: false,
            bn: BnMode::Frozen,
            detach_early_drs_cap: false,
            early_drs_every_variant: false,
        }
    }

    /// COCO-2014: ResNet-50 OS16, 80 classes, δ = 0.55.
    pub fn coco() -> Self {
        CamNetConfig {
            num_classes: 80,
            ..Self::voc()
        }
    }

    /// Tiny network for CPU tests and the synthetic preset (width-8 ResNet).
    pub fn synthetic(num_classes: usize) -> Self {
        CamNetConfig {
            backbone: ResNetConfig::tiny_os16().into(),
            num_classes,
            drs_delta: 0.55,
            train_all_stages: false,
            bn: BnMode::Frozen,
            detach_early_drs_cap: false,
            early_drs_every_variant: false,
        }
    }

    /// Channels of the classifier input (the backbone's final features).
    pub fn feature_channels(&self) -> usize {
        self.backbone.feature_channels()
    }
}
