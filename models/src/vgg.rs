//! Frozen VGG `features` and the perceptual loss L_p (§2.5).
//!
//! Layer indices and parameter names are torchvision's (`features.0.weight`, …,
//! `features.34.bias`), so `vgg19-dcbb9e9d.pth` (converted, or through `from_pth`) loads as
//! is; `classifier.*` entries are ignored. The weights are detached at load time: the network
//! is never trained, but gradients still flow through it to its input (the reconstruction).

use candle_core::{D, Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::config::{PerceptualConfig, VggConfig};
use crate::init::{PYTORCH_CONV_WEIGHT, pytorch_conv_bias};
use crate::ops::conv::{Conv2d, ConvParams};
use crate::ops::pool::max_pool2d;

/// One entry of torchvision's `features` sequence.
#[derive(Debug, Clone)]
enum Layer {
    Conv(Conv2d),
    Relu,
    MaxPool,
}

/// VGG `features` with frozen weights.
#[derive(Debug, Clone)]
pub struct Vgg {
    layers: Vec<Layer>,
}

impl Vgg {
    /// Loads `features.{i}.weight`/`.bias` from `vb` (pass the root of a torchvision VGG state
    /// dict). Weights are detached, so they never receive gradients.
    pub fn new(cfg: &VggConfig, vb: VarBuilder) -> Result<Self> {
        let vb = vb.pp("features");
        let mut layers = Vec::new();
        let mut cin = 3;
        for (&n, &w) in cfg.convs.iter().zip(&cfg.widths) {
            if w == 0 {
                candle_core::bail!("VGG config has a zero width: {cfg:?}");
            }
            for _ in 0..n {
                let i = layers.len();
                // The hints only matter when building a random VGG for tests.
                let shape = [w, cin, 3, 3];
                let weight = vb
                    .get_with_hints(&shape, &format!("{i}.weight"), PYTORCH_CONV_WEIGHT)?
                    .detach();
                let bias = vb
                    .get_with_hints(w, &format!("{i}.bias"), pytorch_conv_bias(&shape))?
                    .detach();
                let params = ConvParams {
                    padding: 1,
                    ..ConvParams::default()
                };
                // Frozen: the custom conv op then computes only the input gradient.
                layers.push(Layer::Conv(Conv2d::from_weight(
                    weight,
                    Some(bias),
                    params,
                    true,
                )));
                layers.push(Layer::Relu);
                cin = w;
            }
            layers.push(Layer::MaxPool);
        }
        Ok(Vgg { layers })
    }

    /// Number of entries of `features` (37 for VGG-19).
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// `true` when there are no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// Outputs of the `features` entries listed in `taps` (in the order given), running only as
    /// far as the largest tap.
    ///
    /// # Shapes
    /// `x`: N×3×H×W → one N×C_i×H_i×W_i per tap (H_i = H / 2^pools so far, floor).
    pub fn forward_taps(&self, x: &Tensor, taps: &[usize]) -> Result<Vec<Tensor>> {
        let Some(&last) = taps.iter().max() else {
            return Ok(Vec::new());
        };
        if last >= self.layers.len() {
            candle_core::bail!(
                "VGG tap {last} is beyond the {} feature layers",
                self.layers.len()
            );
        }
        let mut outs: Vec<Option<Tensor>> = vec![None; last + 1];
        let mut h = x.clone();
        for (i, layer) in self.layers[..=last].iter().enumerate() {
            h = match layer {
                Layer::Conv(conv) => conv.forward(&h)?,
                Layer::Relu => h.relu()?,
                // candle's own max_pool2d backward is scaled by 1/k² (platform notes).
                Layer::MaxPool => max_pool2d(&h, 2, 2, 0, false)?,
            };
            outs[i] = Some(h.clone());
        }
        taps.iter()
            .map(|&t| {
                outs[t]
                    .clone()
                    .ok_or_else(|| candle_core::Error::Msg(format!("VGG tap {t} not computed")))
            })
            .collect()
    }
}

/// 2×2/s2 average pooling (floor), from reshape + mean so its gradient is exact.
///
/// # Shapes
/// N×C×H×W → N×C×⌊H/2⌋×⌊W/2⌋.
pub fn avg_pool_2x2(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (oh, ow) = (h / 2, w / 2);
    if oh == 0 || ow == 0 {
        candle_core::bail!("avg_pool_2x2: input {h}×{w} is smaller than 2×2");
    }
    x.narrow(2, 0, 2 * oh)?
        .narrow(3, 0, 2 * ow)?
        .reshape((n, c, oh, 2, ow, 2))?
        .mean(D::Minus1)?
        .mean(3)
}

/// The frozen network whose features the perceptual loss compares.
#[derive(Debug, Clone)]
pub enum FeatureNet {
    /// VGG `features` (the reference); taps are `features` indices.
    Vgg(Vgg),
    /// An ImageNet EfficientNet-Lite in eval mode with frozen weights; taps are stage indices
    /// (0-based; stages 1, 2, 3, 5, 7 = `[0, 1, 2, 4, 6]` sit at strides 2 … 32).
    EfficientNet(Box<crate::efficientnet::EfficientNet>),
}

impl FeatureNet {
    fn depth(&self) -> usize {
        match self {
            FeatureNet::Vgg(v) => v.len(),
            FeatureNet::EfficientNet(e) => e.config().stages.len(),
        }
    }

    fn taps(&self, x: &Tensor, taps: &[usize]) -> Result<Vec<Tensor>> {
        match self {
            FeatureNet::Vgg(v) => v.forward_taps(x, taps),
            FeatureNet::EfficientNet(e) => e.forward_stage_taps(x, taps),
        }
    }
}

/// The perceptual loss network and its layer choice (§2.5).
#[derive(Debug, Clone)]
pub struct PerceptualLoss {
    net: FeatureNet,
    cfg: PerceptualConfig,
}

impl PerceptualLoss {
    /// Wraps a loaded VGG; fails when taps and weights disagree in number or a tap is out of
    /// range.
    pub fn new(vgg: Vgg, cfg: PerceptualConfig) -> Result<Self> {
        Self::with_features(FeatureNet::Vgg(vgg), cfg)
    }

    /// Wraps any [`FeatureNet`] (taps in its own numbering).
    pub fn with_features(net: FeatureNet, cfg: PerceptualConfig) -> Result<Self> {
        if cfg.taps.len() != cfg.weights.len() || cfg.taps.is_empty() {
            candle_core::bail!(
                "perceptual loss: {} taps but {} weights",
                cfg.taps.len(),
                cfg.weights.len()
            );
        }
        if let Some(&t) = cfg.taps.iter().find(|&&t| t >= net.depth()) {
            candle_core::bail!(
                "perceptual loss: tap {t} beyond the network's {} layers",
                net.depth()
            );
        }
        Ok(PerceptualLoss { net, cfg })
    }

    /// The frozen feature network.
    pub fn features(&self) -> &FeatureNet {
        &self.net
    }

    /// `L_p = Σ_j w_j · mean|φ_j(x_hat) − φ_j(target)|`, the target branch detached. Both
    /// images are first halved (2×2 average pool) while their width exceeds `max_width`.
    ///
    /// # Shapes
    /// `x_hat`, `target`: N×3×H×W (same shape). Output: scalar.
    pub fn forward(&self, x_hat: &Tensor, target: &Tensor) -> Result<Tensor> {
        if x_hat.dims() != target.dims() {
            candle_core::bail!(
                "perceptual loss: reconstruction {:?} and target {:?} differ in shape",
                x_hat.dims(),
                target.dims()
            );
        }
        let mut x = x_hat.clone();
        let mut y = target.detach();
        while x.dim(3)? > self.cfg.max_width {
            x = avg_pool_2x2(&x)?;
            y = avg_pool_2x2(&y)?;
        }
        let fx = self.net.taps(&x, &self.cfg.taps)?;
        let fy = self.net.taps(&y, &self.cfg.taps)?;
        let mut loss: Option<Tensor> = None;
        for ((a, b), &w) in fx.iter().zip(&fy).zip(&self.cfg.weights) {
            let term = ((a - b.detach())?.abs()?.mean_all()? * w)?;
            loss = Some(match loss {
                Some(l) => (l + term)?,
                None => term,
            });
        }
        loss.ok_or_else(|| candle_core::Error::Msg("perceptual loss without taps".into()))
    }
}
