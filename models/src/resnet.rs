//! Torchvision-named Bottleneck ResNet ("v1.5", stride on the 3×3 conv): the SSC classifier
//! backbone (§2.1), the IRN backbone (§4.2) and the DeepLabV2 backbone (§6.1).
//!
//! Parameter names mirror torchvision (`conv1`, `bn1`, `layer{1..4}.{i}.conv{1,2,3}`,
//! `.bn{1,2,3}`, `.downsample.{0,1}`), so ImageNet state dicts load unchanged. Every block of
//! a layer uses the layer's dilation (SSC's segmentation backbone, not torchvision's
//! `replace_stride_with_dilation`); only the first block has the layer's stride.

use candle_core::{Module, ModuleT, Result, Tensor};
use candle_nn::VarBuilder;

use crate::config::{Activation, BnMode, ResNetConfig, ResNetOptions};
use crate::ops::affine::{Act, affine_act};
use crate::ops::conv::{Conv2d, ConvParams};
use crate::ops::pool::max_pool2d;

/// BatchNorm2d in one of the [`BnMode`]s. Loads `weight`, `bias`, `running_mean`,
/// `running_var`.
#[derive(Debug, Clone)]
pub enum BatchNorm2d {
    /// Fixed statistics: `y = (x − μ)/√(σ² + ε)·γ + β` with stored μ, σ².
    Frozen {
        /// γ (detached when the layer is frozen).
        weight: Tensor,
        /// β (detached when the layer is frozen).
        bias: Tensor,
        /// Running mean, never trained.
        mean: Tensor,
        /// Running variance, never trained.
        var: Tensor,
        /// ε.
        eps: f64,
    },
    /// candle's BatchNorm (PyTorch training semantics).
    Batch(candle_nn::BatchNorm),
}

impl BatchNorm2d {
    /// Loads a BN over `c` channels. `frozen` detaches γ and β (no gradient).
    pub fn new(c: usize, eps: f64, mode: BnMode, frozen: bool, vb: VarBuilder) -> Result<Self> {
        Self::with_momentum(c, eps, 0.1, mode, frozen, vb)
    }

    /// [`BatchNorm2d::new`] with another running-statistics momentum (PyTorch's sense: the
    /// weight of the new batch) for [`BnMode::Batch`].
    pub fn with_momentum(
        c: usize,
        eps: f64,
        momentum: f64,
        mode: BnMode,
        frozen: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        use candle_nn::Init::Const;
        match mode {
            BnMode::Frozen => {
                let get = |name: &str, init: f64| vb.get_with_hints(c, name, Const(init));
                let (weight, bias) = (get("weight", 1.0)?, get("bias", 0.0)?);
                let (weight, bias) = if frozen {
                    (weight.detach(), bias.detach())
                } else {
                    (weight, bias)
                };
                Ok(BatchNorm2d::Frozen {
                    weight,
                    bias,
                    mean: get("running_mean", 0.0)?.detach(),
                    var: get("running_var", 1.0)?.detach(),
                    eps,
                })
            }
            BnMode::Batch => {
                let cfg = candle_nn::BatchNormConfig {
                    eps,
                    momentum,
                    ..Default::default()
                };
                candle_nn::batch_norm(c, cfg, vb).map(BatchNorm2d::Batch)
            }
        }
    }
}

/// Fixed-statistics BN as one per-channel scale and shift (cheap on C-vectors):
/// `scale = γ/√(σ² + ε)`, `shift = β − μ·scale`.
fn folded(
    weight: &Tensor,
    bias: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor)> {
    let scale = weight.mul(&(var + eps)?.sqrt()?.recip()?)?;
    let shift = bias.sub(&mean.mul(&scale)?)?;
    Ok((scale, shift))
}

impl BatchNorm2d {
    /// The BN followed by `act`; with fixed statistics both run as one fused pass
    /// ([`crate::ops::affine::affine_act`], bit-identical to the separate ops).
    ///
    /// # Shapes
    /// `[N, C, H, W]` → `[N, C, H, W]`.
    pub fn forward_act(&self, x: &Tensor, act: Act, train: bool) -> Result<Tensor> {
        match self {
            BatchNorm2d::Frozen {
                weight,
                bias,
                mean,
                var,
                eps,
            } => {
                let (scale, shift) = folded(weight, bias, mean, var, *eps)?;
                affine_act(x, &scale, &shift, act)
            }
            BatchNorm2d::Batch(bn) => {
                let y = bn.forward_t(x, train)?;
                match act {
                    Act::Linear => Ok(y),
                    Act::Relu => y.relu(),
                    Act::Relu6 => y.clamp(0f32, 6f32),
                }
            }
        }
    }
}

impl ModuleT for BatchNorm2d {
    /// # Shapes
    /// `[N, C, H, W]` → `[N, C, H, W]`. `train` matters only in [`BnMode::Batch`].
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match self {
            BatchNorm2d::Frozen {
                weight,
                bias,
                mean,
                var,
                eps,
            } => {
                let (scale, shift) = folded(weight, bias, mean, var, *eps)?;
                let shape = (1, (), 1, 1);
                x.broadcast_mul(&scale.reshape(shape)?)?
                    .broadcast_add(&shift.reshape(shape)?)
            }
            BatchNorm2d::Batch(bn) => bn.forward_t(x, train),
        }
    }
}

/// One torchvision Bottleneck: 1×1 → 3×3 (stride, dilation) → 1×1 (×4), projection shortcut
/// in the first block of a layer.
#[derive(Debug, Clone)]
pub struct Bottleneck {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    conv3: Conv2d,
    bn3: BatchNorm2d,
    downsample: Option<(Conv2d, BatchNorm2d)>,
}

/// Construction parameters of one block.
struct BlockSpec {
    in_c: usize,
    planes: usize,
    stride: usize,
    dilation: usize,
    eps: f64,
    bn: BnMode,
    frozen: bool,
}

impl Bottleneck {
    fn new(s: &BlockSpec, vb: VarBuilder) -> Result<Self> {
        let out_c = 4 * s.planes;
        let conv = |i: usize, o: usize, k: usize, p: ConvParams, vb: VarBuilder| {
            Conv2d::new(i, o, k, p, false, s.frozen, vb)
        };
        let bn = |c: usize, vb: VarBuilder| BatchNorm2d::new(c, s.eps, s.bn, s.frozen, vb);
        let p1 = ConvParams::default();
        let p3 = ConvParams {
            stride: s.stride,
            padding: s.dilation,
            dilation: s.dilation,
        };
        let downsample = if s.stride != 1 || s.in_c != out_c {
            let pd = ConvParams {
                stride: s.stride,
                ..p1
            };
            Some((
                conv(s.in_c, out_c, 1, pd, vb.pp("downsample.0"))?,
                bn(out_c, vb.pp("downsample.1"))?,
            ))
        } else {
            None
        };
        Ok(Bottleneck {
            conv1: conv(s.in_c, s.planes, 1, p1, vb.pp("conv1"))?,
            bn1: bn(s.planes, vb.pp("bn1"))?,
            conv2: conv(s.planes, s.planes, 3, p3, vb.pp("conv2"))?,
            bn2: bn(s.planes, vb.pp("bn2"))?,
            conv3: conv(s.planes, out_c, 1, p1, vb.pp("conv3"))?,
            bn3: bn(out_c, vb.pp("bn3"))?,
            downsample,
        })
    }

    /// The block with `act` as its final activation (after the residual addition).
    ///
    /// # Shapes
    /// `[N, C_in, H, W]` → `[N, 4·planes, ⌈H/stride⌉, ⌈W/stride⌉]`.
    pub fn forward_t(&self, x: &Tensor, act: Activation, train: bool) -> Result<Tensor> {
        let y = self.bn1.forward_t(&self.conv1.forward(x)?, train)?.relu()?;
        let y = self
            .bn2
            .forward_t(&self.conv2.forward(&y)?, train)?
            .relu()?;
        let y = self.bn3.forward_t(&self.conv3.forward(&y)?, train)?;
        let shortcut = match &self.downsample {
            Some((conv, bn)) => bn.forward_t(&conv.forward(x)?, train)?,
            None => x.clone(),
        };
        act.apply(&(y + shortcut)?)
    }
}

/// Every stage output of a [`ResNet`] forward pass, for the heads that tap them.
#[derive(Debug, Clone)]
pub struct ResNetStages {
    /// After conv1 + bn1 + ReLU (stride 2).
    pub conv1_relu: Tensor,
    /// After the 3×3/s2/p1 max pool (stride 4).
    pub stem: Tensor,
    /// layer1 … layer4 outputs.
    pub layers: [Tensor; 4],
}

/// A torchvision Bottleneck ResNet without `fc`.
#[derive(Debug, Clone)]
pub struct ResNet {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    layers: Vec<Vec<Bottleneck>>,
    options: ResNetOptions,
}

impl ResNet {
    /// A ResNet with default options (fixed BN, nothing frozen, ReLU everywhere).
    pub fn new(cfg: &ResNetConfig, vb: VarBuilder) -> Result<Self> {
        Self::with_options(cfg, &ResNetOptions::default(), vb)
    }

    /// A ResNet with explicit BN mode, frozen stages and layer4 activation.
    pub fn with_options(cfg: &ResNetConfig, opts: &ResNetOptions, vb: VarBuilder) -> Result<Self> {
        if cfg.base_width == 0 || cfg.strides.contains(&0) || cfg.dilations.contains(&0) {
            candle_core::bail!("resnet: base width, strides and dilations must be > 0: {cfg:?}");
        }
        let frozen = |stage: usize| opts.frozen_stages > stage;
        let stem_p = ConvParams {
            stride: 2,
            padding: 3,
            dilation: 1,
        };
        let w = cfg.base_width;
        let conv1 = Conv2d::new(3, w, 7, stem_p, false, frozen(0), vb.pp("conv1"))?;
        let bn1 = BatchNorm2d::new(w, cfg.bn_eps, opts.bn, frozen(0), vb.pp("bn1"))?;
        let mut in_c = w;
        let mut layers = Vec::with_capacity(4);
        for l in 0..4 {
            let vl = vb.pp(format!("layer{}", l + 1));
            let mut blocks = Vec::with_capacity(cfg.blocks[l]);
            for i in 0..cfg.blocks[l] {
                let spec = BlockSpec {
                    in_c,
                    planes: w << l,
                    stride: if i == 0 { cfg.strides[l] } else { 1 },
                    dilation: cfg.dilations[l],
                    eps: cfg.bn_eps,
                    bn: opts.bn,
                    frozen: frozen(l + 1),
                };
                blocks.push(Bottleneck::new(&spec, vl.pp(i))?);
                in_c = cfg.out_channels(l);
            }
            layers.push(blocks);
        }
        Ok(ResNet {
            conv1,
            bn1,
            layers,
            options: *opts,
        })
    }

    /// The options the network was built with.
    pub fn options(&self) -> &ResNetOptions {
        &self.options
    }

    /// conv1 + bn1 + ReLU, then the max pool: returns `(conv1_relu, stem)`.
    ///
    /// # Shapes
    /// `[N, 3, H, W]` → `[N, w, ⌈H/2⌉, ⌈W/2⌉]`, `[N, w, ⌈H/4⌉, ⌈W/4⌉]` (w = base width).
    pub fn stem_t(&self, x: &Tensor, train: bool) -> Result<(Tensor, Tensor)> {
        let c1 = self.bn1.forward_t(&self.conv1.forward(x)?, train)?.relu()?;
        let stem = max_pool2d(&c1, 3, 2, 1, false)?;
        Ok((c1, stem))
    }

    /// Layer `l` (0-based) with the configured activations (layer4 ends its blocks with
    /// `options.layer4_act`).
    ///
    /// # Shapes
    /// `[N, C_in, h, w]` → `[N, 4·base·2^l, ⌈h/s_l⌉, ⌈w/s_l⌉]`.
    pub fn layer_t(&self, l: usize, x: &Tensor, train: bool) -> Result<Tensor> {
        let act = if l == 3 {
            self.options.layer4_act
        } else {
            Activation::Relu
        };
        self.layer_with_t(l, x, act, train)
    }

    /// Layer `l` (0-based) with `act` ending every block.
    ///
    /// # Shapes
    /// As [`ResNet::layer_t`].
    pub fn layer_with_t(
        &self,
        l: usize,
        x: &Tensor,
        act: Activation,
        train: bool,
    ) -> Result<Tensor> {
        let Some(blocks) = self.layers.get(l) else {
            candle_core::bail!("resnet: no layer {l} (0..4)");
        };
        blocks
            .iter()
            .try_fold(x.clone(), |x, b| b.forward_t(&x, act, train))
    }

    /// The full network, returning every stage.
    ///
    /// # Shapes
    /// `[N, 3, H, W]` → stem at stride 4, layers at the configured strides.
    pub fn forward_stages_t(&self, x: &Tensor, train: bool) -> Result<ResNetStages> {
        let (conv1_relu, stem) = self.stem_t(x, train)?;
        let l1 = self.layer_t(0, &stem, train)?;
        let l2 = self.layer_t(1, &l1, train)?;
        let l3 = self.layer_t(2, &l2, train)?;
        let l4 = self.layer_t(3, &l3, train)?;
        Ok(ResNetStages {
            conv1_relu,
            stem,
            layers: [l1, l2, l3, l4],
        })
    }
}

impl ModuleT for ResNet {
    /// # Shapes
    /// `[N, 3, H, W]` → layer4 output `[N, 4·8·base, H/os, W/os]` (ceil).
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let s = self.forward_stages_t(x, train)?;
        let [_, _, _, l4] = s.layers;
        Ok(l4)
    }
}
