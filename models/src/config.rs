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
