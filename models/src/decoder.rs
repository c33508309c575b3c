//! CAM-driven reconstruction decoder (§2.4, Table I; SSC `net/decoder.py`,
//! `net/model_util.py`): CAM features `F` (C×h×w) → an image in (−1, 1) at 16× the size.
//!
//! Parameter names are SSC's state-dict names (`main.0.conv.weight`,
//! `main.1.model.0.model.0.conv.weight`, `upsample_1.0.weight`, `upsample_4.4.weight`, …), so a
//! reference checkpoint loads as is. Built with [`crate::init::SeededInit`], every parameter
//! gets PyTorch's default initialisation, with the LayerNorm γ ~ U[0, 1) and β = 0.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::config::DecoderConfig;
use crate::init::{PYTORCH_CONV_WEIGHT, pytorch_conv_bias};
use crate::ops::conv::{ConvParams, conv_transpose2d, conv2d};
use crate::ops::norm::{instance_norm, layer_norm_munit};
use crate::ops::pad::reflection_pad2d;

/// A 3×3 conv with optional bias (PyTorch layout out×in×3×3).
#[derive(Debug, Clone)]
struct Conv3 {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Conv3 {
    fn new(cin: usize, cout: usize, bias: bool, vb: VarBuilder) -> Result<Self> {
        let shape = [cout, cin, 3, 3];
        let weight = vb.get_with_hints(&shape, "weight", PYTORCH_CONV_WEIGHT)?;
        let bias = if bias {
            Some(vb.get_with_hints(cout, "bias", pytorch_conv_bias(&shape))?)
        } else {
            None
        };
        Ok(Conv3 { weight, bias })
    }

    /// `padding` is the zero padding (0 after an explicit reflection pad).
    ///
    /// # Shapes
    /// `x`: N×C_in×H×W → N×C_out×(H+2p−2)×(W+2p−2).
    fn forward(&self, x: &Tensor, padding: usize) -> Result<Tensor> {
        let p = ConvParams {
            padding,
            ..ConvParams::default()
        };
        let y = conv2d(x, &self.weight, p, true)?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
            None => Ok(y),
        }
    }
}

/// MUNIT LayerNorm parameters.
#[derive(Debug, Clone)]
struct LayerNorm {
    gamma: Tensor,
    beta: Tensor,
    eps: f64,
}

impl LayerNorm {
    fn new(c: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(LayerNorm {
            gamma: vb.get_with_hints(c, "gamma", Init::Uniform { lo: 0.0, up: 1.0 })?,
            beta: vb.get_with_hints(c, "beta", Init::Const(0.0))?,
            eps,
        })
    }

    /// # Shapes
    /// `x`: N×C×H×W → the same shape.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        layer_norm_munit(x, &self.gamma, &self.beta, self.eps)
    }
}

/// `Conv2dBlock` of the reference: pad, conv 3×3, LayerNorm, optional ReLU.
#[derive(Debug, Clone)]
struct ConvBlock {
    conv: Conv3,
    norm: LayerNorm,
    reflect: bool,
    relu: bool,
}

impl ConvBlock {
    fn new(
        cin: usize,
        cout: usize,
        bias: bool,
        reflect: bool,
        relu: bool,
        eps: f64,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(ConvBlock {
            conv: Conv3::new(cin, cout, bias, vb.pp("conv"))?,
            norm: LayerNorm::new(cout, eps, vb.pp("norm"))?,
            reflect,
            relu,
        })
    }

    /// # Shapes
    /// `x`: N×C_in×H×W → N×C_out×H×W.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = if self.reflect {
            self.conv.forward(&reflection_pad2d(x, 1)?, 0)?
        } else {
            self.conv.forward(x, 1)?
        };
        let y = self.norm.forward(&y)?;
        if self.relu { y.relu() } else { Ok(y) }
    }
}

/// Up-sample stage: ConvTranspose 4×4/s2/p1 (no bias), InstanceNorm, ReLU, ConvBlock.
#[derive(Debug, Clone)]
struct UpSample {
    up_weight: Tensor,
    block: ConvBlock,
    in_eps: f64,
}

impl UpSample {
    fn new(cin: usize, cout: usize, cfg: &DecoderConfig, vb: VarBuilder) -> Result<Self> {
        Ok(UpSample {
            // PyTorch layout in×out×kH×kW; fan_in from dim 1, as PyTorch computes it.
            up_weight: vb.get_with_hints((cin, cin, 4, 4), "0.weight", PYTORCH_CONV_WEIGHT)?,
            block: ConvBlock::new(cin, cout, true, false, true, cfg.ln_eps, vb.pp("3"))?,
            in_eps: cfg.in_eps,
        })
    }

    /// # Shapes
    /// `x`: N×C_in×H×W → N×C_out×2H×2W.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = conv_transpose2d(x, &self.up_weight, 2, 1)?;
        let y = instance_norm(&y, self.in_eps)?.relu()?;
        self.block.forward(&y)
    }
}

/// Intermediate activations of one decoder pass (for parity tests and debugging).
#[derive(Debug, Clone)]
pub struct DecoderTaps {
    /// After the head ConvBlock: N×widths\[0\]×h×w.
    pub head: Tensor,
    /// After the last ResBlock (residual added): N×widths\[0\]×h×w.
    pub resblock: Tensor,
    /// After each up-sample stage k = 1..=4: N×widths\[k\]×(2^k·h)×(2^k·w).
    pub upsample: Vec<Tensor>,
    /// The reconstruction, tanh: N×out×16h×16w.
    pub output: Tensor,
}

/// The reconstruction decoder.
#[derive(Debug, Clone)]
pub struct Decoder {
    head: ConvBlock,
    res: Vec<(ConvBlock, ConvBlock)>,
    ups: Vec<UpSample>,
    tail: Conv3,
}

impl Decoder {
    /// Builds the decoder; parameters come from `vb` under SSC's names.
    pub fn new(cfg: &DecoderConfig, vb: VarBuilder) -> Result<Self> {
        let w = cfg.widths;
        if cfg.in_channels == 0 || cfg.out_channels == 0 || w.contains(&0) {
            candle_core::bail!("decoder config has a zero width: {cfg:?}");
        }
        let main = vb.pp("main");
        let head = ConvBlock::new(
            cfg.in_channels,
            w[0],
            false,
            true,
            true,
            cfg.ln_eps,
            main.pp("0"),
        )?;
        let mut res = Vec::with_capacity(cfg.res_blocks);
        for i in 0..cfg.res_blocks {
            let m = main.pp("1").pp("model").pp(i).pp("model");
            res.push((
                ConvBlock::new(w[0], w[0], true, false, true, cfg.ln_eps, m.pp("0"))?,
                ConvBlock::new(w[0], w[0], true, false, false, cfg.ln_eps, m.pp("1"))?,
            ));
        }
        let mut ups = Vec::with_capacity(4);
        for k in 1..=4 {
            ups.push(UpSample::new(
                w[k - 1],
                w[k],
                cfg,
                vb.pp(format!("upsample_{k}")),
            )?);
        }
        let tail = Conv3::new(w[4], cfg.out_channels, true, vb.pp("upsample_4").pp("4"))?;
        Ok(Decoder {
            head,
            res,
            ups,
            tail,
        })
    }

    /// Runs the decoder and keeps every stage output.
    ///
    /// # Shapes
    /// `f`: N×C×h×w (h, w ≥ 2 for the reflection pad). Output taps as in [`DecoderTaps`].
    pub fn forward_taps(&self, f: &Tensor) -> Result<DecoderTaps> {
        let head = self.head.forward(f)?;
        let mut x = head.clone();
        for (a, b) in &self.res {
            x = (b.forward(&a.forward(&x)?)? + &x)?;
        }
        let resblock = x.clone();
        let mut upsample = Vec::with_capacity(self.ups.len());
        for up in &self.ups {
            x = up.forward(&x)?;
            upsample.push(x.clone());
        }
        let output = self.tail.forward(&x, 1)?.tanh()?;
        Ok(DecoderTaps {
            head,
            resblock,
            upsample,
            output,
        })
    }
}

impl Module for Decoder {
    /// # Shapes
    /// `f`: N×C×h×w CAM features → N×3×16h×16w reconstruction in (−1, 1).
    fn forward(&self, f: &Tensor) -> Result<Tensor> {
        Ok(self.forward_taps(f)?.output)
    }
}
