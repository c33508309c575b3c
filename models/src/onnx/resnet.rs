//! The Bottleneck ResNet (§2.1, §4.2, §6.1) as ONNX nodes, with every BatchNorm folded into
//! the preceding convolution (inference statistics; the fold is computed in f64 and stored
//! as f32), and optional DRS (§2.2) in place of the final ReLU of every layer4 block.
//!
//! Parameter names are torchvision's: `conv1.weight`, `bn1.{weight,bias,running_mean,
//! running_var}`, `layer{L}.{i}.conv{1,2,3}.weight`, `layer{L}.{i}.bn{1,2,3}.*`,
//! `layer{L}.0.downsample.{0,1}.*`. Every block of a layer uses the layer's dilation; only
//! the first block has the layer's stride and the projection shortcut.

use super::graph::{ConvSpec, Graph};
use super::{OnnxError, Result, Weights};
use crate::config::ResNetConfig;

/// Naming scheme quoted in missing-parameter errors.
pub(crate) const TORCHVISION: &str =
    "torchvision ResNet names (conv1.weight, bn1.*, layer1.0.conv1.weight, …)";

/// Names of the stage outputs in the graph.
#[derive(Debug, Clone)]
pub(crate) struct Stages {
    /// After conv1 + BN + ReLU (stride 2).
    pub conv1_relu: String,
    /// After the max pool (stride 4): IRN's `x1`.
    pub stem: String,
    /// Outputs of layer1…layer4.
    pub layers: [String; 4],
}

/// Checks that the configuration describes a buildable network.
pub(crate) fn validate(cfg: &ResNetConfig) -> Result<()> {
    let zero = cfg.base_width == 0
        || cfg.blocks.contains(&0)
        || cfg.strides.contains(&0)
        || cfg.dilations.contains(&0);
    if zero || cfg.bn_eps.is_nan() || cfg.bn_eps < 0.0 {
        return Err(OnnxError::Invalid(format!(
            "ResNet: widths, blocks, strides and dilations must be > 0 and eps ≥ 0: {cfg:?}"
        )));
    }
    Ok(())
}

/// Adds conv `conv` followed by BN `bn`, folded: `w' = w·γ/√(σ²+ε)`,
/// `b' = β − μ·γ/√(σ²+ε)`.
#[allow(clippy::too_many_arguments)]
fn conv_bn(
    g: &mut Graph,
    w: &Weights,
    x: &str,
    conv: &str,
    bn: &str,
    cin: usize,
    cout: usize,
    spec: ConvSpec,
    eps: f64,
) -> Result<String> {
    let k = spec.kernel;
    let weight = w.get(&format!("{conv}.weight"), &[cout, cin, k, k], TORCHVISION)?;
    let get = |p: &str| w.get(&format!("{bn}.{p}"), &[cout], TORCHVISION);
    let (gamma, beta, mean, var) = (
        get("weight")?,
        get("bias")?,
        get("running_mean")?,
        get("running_var")?,
    );
    let (wf, bf) = fold_bn(weight, [gamma, beta, mean, var], eps);
    let wn = g.initializer(&format!("{conv}.weight"), &[cout, cin, k, k], &wf)?;
    let bn_ = g.initializer(&format!("{conv}.bias"), &[cout], &bf)?;
    Ok(g.conv(x, &wn, Some(&bn_), spec))
}

/// BN `[γ, β, μ, σ²]` folded into the bias-free conv weight before it (rows of equal length per
/// output channel): `w' = w·γ/√(σ²+ε)`, `b' = β − μ·γ/√(σ²+ε)`, computed in f64.
pub(crate) fn fold_bn(weight: &[f32], bn: [&[f32]; 4], eps: f64) -> (Vec<f32>, Vec<f32>) {
    let [gamma, beta, mean, var] = bn;
    let cout = gamma.len();
    let per_out = weight.len() / cout.max(1);
    let mut wf = Vec::with_capacity(weight.len());
    let mut bf = Vec::with_capacity(cout);
    for o in 0..cout {
        let scale = gamma[o] as f64 / (var[o] as f64 + eps).sqrt();
        let row = &weight[o * per_out..(o + 1) * per_out];
        wf.extend(row.iter().map(|&v| (v as f64 * scale) as f32));
        bf.push((beta[o] as f64 - mean[o] as f64 * scale) as f32);
    }
    (wf, bf)
}

/// DRS (§2.2): `min(ReLU(x), δ · max_hw ReLU(x))`.
pub(crate) fn drs(g: &mut Graph, x: &str, delta: f32) -> String {
    let r = g.relu(x);
    let m = g.reduce_max(&r, &[2, 3], true);
    let d = g.scalar("drs_delta", delta);
    let cap = g.mul(&m, &d);
    g.min(&r, &cap)
}

/// Adds the backbone on `x` (`[N, 3, H, W]`); `drs_delta` puts DRS in layer4.
pub(crate) fn backbone(
    g: &mut Graph,
    w: &Weights,
    cfg: &ResNetConfig,
    x: &str,
    drs_delta: Option<f32>,
) -> Result<Stages> {
    validate(cfg)?;
    let eps = cfg.bn_eps;
    let base = cfg.base_width;
    let stem_spec = ConvSpec {
        kernel: 7,
        stride: 2,
        pad: 3,
        dilation: 1,
    };
    let c1 = conv_bn(g, w, x, "conv1", "bn1", 3, base, stem_spec, eps)?;
    let conv1_relu = g.relu(&c1);
    let stem = g.max_pool(&conv1_relu, 3, 2, 1);
    let mut h = stem.clone();
    let mut in_c = base;
    let mut layers: [String; 4] = Default::default();
    for (l, layer_out) in layers.iter_mut().enumerate() {
        let planes = base << l;
        let out_c = cfg.out_channels(l);
        let d = cfg.dilations[l];
        for i in 0..cfg.blocks[l] {
            let p = format!("layer{}.{i}", l + 1);
            let stride = if i == 0 { cfg.strides[l] } else { 1 };
            let one = ConvSpec::k(1);
            let three = ConvSpec {
                kernel: 3,
                stride,
                pad: d,
                dilation: d,
            };
            let cv = |n: usize| format!("{p}.conv{n}");
            let bn = |n: usize| format!("{p}.bn{n}");
            let y = conv_bn(g, w, &h, &cv(1), &bn(1), in_c, planes, one, eps)?;
            let y = g.relu(&y);
            let y = conv_bn(g, w, &y, &cv(2), &bn(2), planes, planes, three, eps)?;
            let y = g.relu(&y);
            let y = conv_bn(g, w, &y, &cv(3), &bn(3), planes, out_c, one, eps)?;
            let shortcut = if i == 0 {
                let ds = ConvSpec {
                    stride,
                    ..ConvSpec::k(1)
                };
                let (c, b) = (format!("{p}.downsample.0"), format!("{p}.downsample.1"));
                conv_bn(g, w, &h, &c, &b, in_c, out_c, ds, eps)?
            } else {
                h.clone()
            };
            let s = g.add(&y, &shortcut);
            h = match drs_delta {
                Some(delta) if l == 3 => drs(g, &s, delta),
                _ => g.relu(&s),
            };
            in_c = out_c;
        }
        *layer_out = h.clone();
    }
    Ok(Stages {
        conv1_relu,
        stem,
        layers,
    })
}
