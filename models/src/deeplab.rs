//! DeepLabV2's ASPP head (§6.1, SSC `segmentation/networks/deeplabv2.py`): four parallel 3×3
//! convs with dilation = padding ∈ {6, 12, 18, 24}, each with bias, whose outputs are
//! **summed** (no BN, dropout or image pooling); `logits` are the `pre_logits` resized
//! (bilinear, align_corners=False) to the input size.
//!
//! Parameter names: `classifier.{i}.weight`/`.bias` for branch i (as the DeepLabV2 heads of
//! the BECO/ST++ family name their `nn.ModuleList`).

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

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
