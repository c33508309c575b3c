//! DeepLabV2's ASPP head (§6.1, SSC `segmentation/networks/deeplabv2.py`): four parallel 3×3
//! convs with dilation = padding ∈ {6, 12, 18, 24}, each with bias, whose outputs are
//! **summed** (no BN, dropout or image pooling); `logits` are the `pre_logits` resized
//! (bilinear, align_corners=False) to the input size.
//!
//! Parameter names: `classifier.{i}.weight`/`.bias` for branch i (as the DeepLabV2 heads of
//! the BECO/ST++ family name their `nn.ModuleList`).

use candle_core::{Module, ModuleT, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::backbone::Backbone;
use crate::config::{DeepLabConfig, ResNetOptions};
use crate::ops::conv::{Conv2d, ConvParams};
use crate::ops::resize::bilinear;

/// The ASPP head.
#[derive(Debug, Clone)]
pub struct Aspp {
    branches: Vec<Conv2d>,
}

impl Aspp {
    /// Builds one branch per rate under `vb` (`{i}.weight`, `{i}.bias`): weights
    /// N(0, `init_std`²), biases 0 when freshly initialised.
    pub fn new(
        in_channels: usize,
        num_classes: usize,
        rates: &[usize],
        init_std: f64,
        vb: VarBuilder,
    ) -> Result<Self> {
        if rates.is_empty() || rates.contains(&0) {
            candle_core::bail!("ASPP rates must be non-empty and positive, got {rates:?}");
        }
        let mut branches = Vec::with_capacity(rates.len());
        for (i, &r) in rates.iter().enumerate() {
            let v = vb.pp(i);
            let init = Init::Randn {
                mean: 0.0,
                stdev: init_std,
            };
            let w = v.get_with_hints((num_classes, in_channels, 3, 3), "weight", init)?;
            let b = v.get_with_hints(num_classes, "bias", Init::Const(0.0))?;
            let p = ConvParams {
                stride: 1,
                padding: r,
                dilation: r,
            };
            branches.push(Conv2d::from_weight(w, Some(b), p, false));
        }
        Ok(Aspp { branches })
    }
}

impl Module for Aspp {
    /// # Shapes
    /// N×C_in×h×w → N×classes×h×w (padding = dilation keeps the size).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut sum = self.branches[0].forward(x)?;
        for b in &self.branches[1..] {
            sum = (sum + b.forward(x)?)?;
        }
        Ok(sum)
    }
}

/// `logits`: `pre_logits` resized to the input size `h×w` (bilinear, align_corners=False).
///
/// # Shapes
/// N×K×h'×w' → N×K×h×w.
pub fn logits_from_pre(pre_logits: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    bilinear(pre_logits, h, w)
}

/// Both outputs of a DeepLabV2 pass.
#[derive(Debug, Clone)]
pub struct DeepLabOutput {
    /// ASPP output at the backbone's output stride: N×K×⌈H/os⌉×⌈W/os⌉.
    pub pre_logits: Tensor,
    /// `pre_logits` resized to the input size: N×K×H×W.
    pub logits: Tensor,
}

/// DeepLabV2 (§6.1): a backbone (ResNet or EfficientNet-Lite; trainable BN with batch
/// statistics in training) + ASPP on its final features.
///
/// Names: the backbone under `backbone.` with torchvision's names (`backbone.conv1.weight`,
/// `backbone.layer3.22.bn2.running_var`, …) and the head under `classifier.{i}`. A
/// torchvision `resnet101` checkpoint therefore loads through
/// [`DeepLabV2::from_parts`] with the checkpoint's root as `backbone_vb`
/// (`num_batches_tracked` and `fc.*` are simply never asked for).
#[derive(Debug, Clone)]
pub struct DeepLabV2 {
    backbone: Backbone,
    aspp: Aspp,
}

impl DeepLabV2 {
    /// Backbone from `backbone_vb` (torchvision names at its root), head from `head_vb`
    /// (`{i}.weight`, `{i}.bias`).
    pub fn from_parts(
        cfg: &DeepLabConfig,
        backbone_vb: VarBuilder,
        head_vb: VarBuilder,
    ) -> Result<Self> {
        let opts = ResNetOptions {
            bn: cfg.bn,
            frozen_stages: cfg.frozen_parts,
            ..ResNetOptions::deeplab()
        };
        let backbone = Backbone::new(&cfg.backbone, &opts, backbone_vb)?;
        let aspp = Aspp::new(
            cfg.backbone.feature_channels(),
            cfg.num_classes,
            &cfg.rates,
            cfg.head_init_std,
            head_vb,
        )?;
        Ok(DeepLabV2 { backbone, aspp })
    }

    /// Everything from one `vb`: `backbone.*` and `classifier.*`.
    pub fn new(cfg: &DeepLabConfig, vb: VarBuilder) -> Result<Self> {
        Self::from_parts(cfg, vb.pp("backbone"), vb.pp("classifier"))
    }

    /// `pre_logits` and `logits`; `train` selects batch statistics in the BNs.
    ///
    /// # Shapes
    /// N×3×H×W → see [`DeepLabOutput`].
    pub fn forward_both(&self, x: &Tensor, train: bool) -> Result<DeepLabOutput> {
        let (_, _, h, w) = x.dims4()?;
        let feats = self.backbone.forward_t(x, train)?;
        let pre_logits = self.aspp.forward(&feats)?;
        let logits = logits_from_pre(&pre_logits, h, w)?;
        Ok(DeepLabOutput { pre_logits, logits })
    }
}

impl ModuleT for DeepLabV2 {
    /// # Shapes
    /// N×3×H×W → N×K×H×W logits.
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self.forward_both(x, train)?.logits)
    }
}
