//! IRN's class-boundary (edge) branch (§4.2, IRN `net/resnet50_irn.py`): five 1×1 conv +
//! GroupNorm + ReLU heads on the frozen backbone's stage outputs, brought to the stride of
//! `x2` (bilinear, align_corners=False), cropped to `e2`'s size, concatenated, and a 1×1 conv
//! with bias to one edge logit at stride 4.
//!
//! Parameter names are IRN's own state-dict names (`resnet50_irn.py` calls the modules
//! `fc_edge1` … `fc_edge6`): `fc_edge1.0.weight` (conv), `fc_edge1.1.weight`/`.bias` (GN), …,
//! `fc_edge6.weight`, `fc_edge6.bias`, so a trained IRN's edge branch loads as is. The
//! displacement branch (instance segmentation only) is not built.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::backbone::Backbone;
use crate::config::{IrnConfig, ResNetOptions};
use crate::ops::conv::{Conv2d, ConvParams};
use crate::ops::norm::group_norm;
use crate::ops::resize::bilinear;

/// One of e1…e5: conv 1×1 (no bias) → GN → up×factor → ReLU.
#[derive(Debug, Clone)]
struct EdgeHead {
    conv: Conv2d,
    gn_weight: Tensor,
    gn_bias: Tensor,
    factor: usize,
}

/// The trainable edge branch.
#[derive(Debug, Clone)]
pub struct IrnEdge {
    heads: Vec<EdgeHead>,
    out: Conv2d,
    groups: usize,
    eps: f64,
}

impl IrnEdge {
    /// Builds e1…e6 from `vb` (IRN names, PyTorch default initialisation: Kaiming-uniform
    /// a = √5 convs, GN weight 1 and bias 0).
    pub fn new(cfg: &IrnConfig, vb: VarBuilder) -> Result<Self> {
        let w = cfg.edge_width;
        if cfg.gn_groups == 0 || !w.is_multiple_of(cfg.gn_groups) {
            candle_core::bail!(
                "IRN: edge width {w} is not divisible into {} groups",
                cfg.gn_groups
            );
        }
        let chans = cfg.feature_channels();
        let factors = cfg.edge_factors();
        let p = ConvParams::default();
        let mut heads = Vec::with_capacity(5);
        for k in 0..5 {
            let v = vb.pp(format!("fc_edge{}", k + 1));
            heads.push(EdgeHead {
                conv: Conv2d::new(chans[k], w, 1, p, false, false, v.pp("0"))?,
                gn_weight: v.pp("1").get_with_hints(w, "weight", Init::Const(1.0))?,
                gn_bias: v.pp("1").get_with_hints(w, "bias", Init::Const(0.0))?,
                factor: factors[k],
            });
        }
        let out = Conv2d::new(5 * w, 1, 1, p, true, false, vb.pp("fc_edge6"))?;
        Ok(IrnEdge {
            heads,
            out,
            groups: cfg.gn_groups,
            eps: cfg.gn_eps,
        })
    }

    /// Edge logits from the backbone's stage outputs `[x1, x2, x3, x4, x5]` (the caller
    /// detaches them; [`IrnEdge`] itself lets gradients through, for testing).
    ///
    /// # Shapes
    /// `feats[k]`: N×C_k×H_k×W_k with x1 and x2 at stride 4 (`h4×w4`) and each `x_k` at most
    /// `factor_k`× smaller. Output: N×1×h4×w4 (edge logits, before the sigmoid).
    pub fn forward(&self, feats: &[Tensor]) -> Result<Tensor> {
        if feats.len() != self.heads.len() {
            candle_core::bail!("IRN edge branch needs 5 features, got {}", feats.len());
        }
        let (_, _, h2, w2) = feats[1].dims4()?;
        let mut maps = Vec::with_capacity(5);
        for (head, x) in self.heads.iter().zip(feats) {
            let y = head.conv.forward(x)?;
            let mut y = group_norm(&y, self.groups, &head.gn_weight, &head.gn_bias, self.eps)?;
            if head.factor > 1 {
                let (_, _, h, w) = y.dims4()?;
                y = bilinear(&y, h * head.factor, w * head.factor)?;
            }
            let (_, _, h, w) = y.dims4()?;
            if h < h2 || w < w2 {
                candle_core::bail!("IRN: edge feature {h}×{w} is smaller than e2's {h2}×{w2}");
            }
            // IRN crops the up-sampled maps to e2's size (top-left).
            maps.push(y.narrow(2, 0, h2)?.narrow(3, 0, w2)?.relu()?);
        }
        self.out.forward(&Tensor::cat(&maps, 1)?)
    }
}

/// The IRN edge network (§4.2): a completely frozen backbone (fixed BN, detached outputs) and
/// the trainable [`IrnEdge`] branch.
#[derive(Debug, Clone)]
pub struct Irn {
    backbone: Backbone,
    edge: IrnEdge,
}

impl Irn {
    /// Backbone from `backbone_vb` (its own names at the root, e.g. an ImageNet `resnet50`
    /// state dict), edge branch from `edge_vb` (`fc_edge*` names). Keeping them
    /// apart lets the backbone come from a checkpoint while the branch is trained in a
    /// `VarMap` that then holds only trainable parameters.
    pub fn from_parts(
        cfg: &IrnConfig,
        backbone_vb: VarBuilder,
        edge_vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Irn {
            backbone: Backbone::new(&cfg.backbone, &ResNetOptions::irn(), backbone_vb)?,
            edge: IrnEdge::new(cfg, edge_vb)?,
        })
    }

    /// Everything from one `vb`: the backbone under `backbone.`, the branch at the root.
    pub fn new(cfg: &IrnConfig, vb: VarBuilder) -> Result<Self> {
        Self::from_parts(cfg, vb.pp("backbone"), vb)
    }

    /// The trainable branch.
    pub fn edge(&self) -> &IrnEdge {
        &self.edge
    }

    /// The detached backbone features `[x1, x2, x3, x4, x5]` ([`Backbone::taps_t`]; for a
    /// ResNet the stem after the max pool and layer1 … layer4), always with the stored BN
    /// statistics.
    ///
    /// # Shapes
    /// N×3×H×W → x1, x2 at ⌈H/4⌉×⌈W/4⌉, x3 at stride 8, x4 and x5 at stride 16 (OS16).
    pub fn features(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        Ok(self
            .backbone
            .taps_t(x, false)?
            .iter()
            .map(Tensor::detach)
            .collect())
    }
}

impl Module for Irn {
    /// # Shapes
    /// N×3×H×W image → N×1×⌈H/4⌉×⌈W/4⌉ edge logits (class-boundary map before the sigmoid).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.edge.forward(&self.features(x)?)
    }
}
