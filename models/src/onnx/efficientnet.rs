//! EfficientNet-Lite as ONNX nodes (see [`crate::efficientnet`]): every BatchNorm folded into
//! its bias-free convolution (f64 fold stored as f32), depthwise convs as grouped `Conv`,
//! ReLU6 as `Clip(0, 6)`, optional DRS after the head. TF "SAME" padding: strided convs use
//! `auto_pad = SAME_UPPER` (which depends on the input size's parity, so it stays dynamic);
//! stride-1 convs have constant symmetric pads `(k−1)·d/2`.
//!
//! Parameter names are the package's (`_conv_stem.weight`, `_bn0.*`,
//! `_blocks.{i}._expand_conv.weight`, …, `_conv_head.weight`, `_bn1.*`, `_fc.*`).

use super::graph::Graph;
use super::{OnnxError, Result, Weights};
use crate::efficientnet::EfficientNetConfig;

/// Naming scheme quoted in missing-parameter errors.
pub(crate) const PACKAGE_NAMES: &str = "EfficientNet-Lite names (_conv_stem.weight, _bn0.*, \
     _blocks.0._depthwise_conv.weight, …, _conv_head.weight, _bn1.*)";

/// Names of the stage outputs in the graph.
#[derive(Debug, Clone)]
pub(crate) struct Stages {
    /// The last block's output of each stage.
    pub stages: Vec<String>,
    /// After the head (ReLU6, or DRS on it).
    pub features: String,
}

/// Geometry of one convolution.
struct Geo {
    cin: usize,
    cout: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    group: usize,
}

/// Adds conv `conv` (bias-free, weight `[cout, cin/group, k, k]`) followed by BN `bn`,
/// folded.
fn conv_bn(
    g: &mut Graph,
    w: &Weights,
    x: &str,
    conv: &str,
    bn: &str,
    c: Geo,
    eps: f64,
) -> Result<String> {
    let k = c.kernel;
    let per_group = c.cin / c.group;
    let shape = [c.cout, per_group, k, k];
    let weight = w.get(&format!("{conv}.weight"), &shape, PACKAGE_NAMES)?;
    let get = |p: &str| w.get(&format!("{bn}.{p}"), &[c.cout], PACKAGE_NAMES);
    let (gamma, beta, mean, var) = (
        get("weight")?,
        get("bias")?,
        get("running_mean")?,
        get("running_var")?,
    );
    let (wf, bf) = super::resnet::fold_bn(weight, [gamma, beta, mean, var], eps);
    let wn = g.initializer(&format!("{conv}.weight"), &shape, &wf)?;
    let bn_ = g.initializer(&format!("{conv}.bias"), &[c.cout], &bf)?;
    let half = (k - 1) * c.dilation / 2;
    Ok(g.conv_general(
        x,
        &wn,
        Some(&bn_),
        (k, c.stride, c.dilation),
        c.group,
        [half; 4],
        c.stride > 1,
    ))
}

/// Adds the backbone on `x` (`[N, 3, H, W]`); `drs_delta` puts DRS after the head's ReLU6.
pub(crate) fn backbone(
    g: &mut Graph,
    w: &Weights,
    cfg: &EfficientNetConfig,
    x: &str,
    drs_delta: Option<f32>,
) -> Result<Stages> {
    cfg.validate().map_err(OnnxError::Invalid)?;
    let eps = cfg.bn_eps;
    let geo = |cin, cout, kernel, stride, dilation, group| Geo {
        cin,
        cout,
        kernel,
        stride,
        dilation,
        group,
    };
    let stem = conv_bn(
        g,
        w,
        x,
        "_conv_stem",
        "_bn0",
        geo(3, cfg.stem_channels, 3, 2, 1, 1),
        eps,
    )?;
    let mut h = g.clip(&stem, 0.0, 6.0);
    let (geometry, _) = cfg.block_geometry();
    let mut idx = 0;
    let mut stages = Vec::with_capacity(cfg.stages.len());
    for s in &cfg.stages {
        for i in 0..s.repeats {
            let p = format!("_blocks.{idx}");
            let cin = if i == 0 {
                s.in_channels
            } else {
                s.out_channels
            };
            let mid = cin * s.expand_ratio;
            let (stride, dilation) = geometry[idx];
            let mut y = h.clone();
            if s.expand_ratio != 1 {
                let e = conv_bn(
                    g,
                    w,
                    &y,
                    &format!("{p}._expand_conv"),
                    &format!("{p}._bn0"),
                    geo(cin, mid, 1, 1, 1, 1),
                    eps,
                )?;
                y = g.clip(&e, 0.0, 6.0);
            }
            let d = conv_bn(
                g,
                w,
                &y,
                &format!("{p}._depthwise_conv"),
                &format!("{p}._bn1"),
                geo(mid, mid, s.kernel, stride, dilation, mid),
                eps,
            )?;
            let y = g.clip(&d, 0.0, 6.0);
            let y = conv_bn(
                g,
                w,
                &y,
                &format!("{p}._project_conv"),
                &format!("{p}._bn2"),
                geo(mid, s.out_channels, 1, 1, 1, 1),
                eps,
            )?;
            let nominal = if i == 0 { s.stride } else { 1 };
            h = if nominal == 1 && cin == s.out_channels {
                g.add(&y, &h)
            } else {
                y
            };
            idx += 1;
        }
        stages.push(h.clone());
    }
    let last = cfg.stages.last().map_or(0, |s| s.out_channels);
    let head = conv_bn(
        g,
        w,
        &h,
        "_conv_head",
        "_bn1",
        geo(last, cfg.head_channels, 1, 1, 1, 1),
        eps,
    )?;
    let head = g.clip(&head, 0.0, 6.0);
    let features = match drs_delta {
        Some(delta) => super::resnet::drs(g, &head, delta),
        None => head,
    };
    Ok(Stages { stages, features })
}
