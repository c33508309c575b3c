//! Exporters of the inference networks (§10.3) from a state dict.
//!
//! | function | network | inputs → outputs |
//! |---|---|---|
//! | [`export_cam`] | §2.1–2.3, §3.1: ResNet (OS16) with DRS in layer4, 1×1 classifier, ReLU | `image` `[N,3,H,W]` → `cam` `[N,C,⌈H/16⌉,⌈W/16⌉]` |
//! | [`export_irn_edge`] | §4.2: frozen ResNet + IRN edge branch | `image` → `edge_logits` `[N,1,⌈H/4⌉,⌈W/4⌉]` (before the sigmoid) |
//! | [`export_deeplab`] | §6.1: ResNet (OS8) + summed ASPP | `image` → `pre_logits` `[N,K,h/8,w/8]`, `logits` `[N,K,H,W]` |
//! | [`export_backbone`] | the ResNet alone (tests) | `image` → `conv1_relu`, `stem`, `layer1` … `layer4` |
//!
//! N, H and W are dynamic. Flipping, multi-scale fusion and normalisation stay in Rust.
//!
//! **Parameter names** (the candle modules use the same):
//! * backbone, every network: torchvision names at the root (`conv1.weight`, `bn1.*`,
//!   `layer1.0.conv1.weight`, `layer1.0.downsample.0.weight`, …); BN folded into the convs;
//! * CAM: `classifier.weight` `[C, 2048, 1, 1]` (no bias);
//! * IRN edge: `fc_edge{k}.0.weight` `[W, C_k, 1, 1]` (1×1 conv, no bias) and
//!   `fc_edge{k}.1.weight`/`.bias` `[W]` (GroupNorm) for k = 1…5, `fc_edge6.weight`
//!   `[1, 5W, 1, 1]` and `fc_edge6.bias` `[1]` — IRN's own names, as `ssc_models::irn` uses;
//! * DeepLab: `classifier.{i}.weight` `[K, 2048, 3, 3]` and `classifier.{i}.bias` `[K]` for
//!   ASPP branch i (rate `rates[i]`).
//!
//! Every file carries `metadata_props`: `ssc.arch` (`cam` | `irn` | `deeplab` | `backbone`),
//! `ssc.class_names` (JSON list), `ssc.mean` / `ssc.std` (JSON, RGB in [0, 1] units),
//! `ssc.output_stride`, `ssc.config` (the resolved configuration as JSON) and `ssc.version`.

use serde_json::json;
use ssc_core::classes::{COCO_NAMES, VOC_NAMES};
use ssc_core::normalize::{IMAGENET_MEAN, IMAGENET_STD};

use super::graph::{ConvSpec, Graph};
use super::proto::Dim;
use super::{OnnxError, Result, Weights};
use super::{efficientnet, resnet};
use crate::config::{BackboneConfig, DeepLabConfig, EfficientNetConfig, IrnConfig, ResNetConfig};

/// Descriptive metadata written into an exported file.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportMeta {
    /// Names of the output channels (classes), in order.
    pub class_names: Vec<String>,
    /// Normalisation mean (RGB, images scaled to [0, 1]).
    pub mean: [f64; 3],
    /// Normalisation std.
    pub std: [f64; 3],
}

impl ExportMeta {
    /// ImageNet normalisation with the given class names.
    pub fn new(class_names: Vec<String>) -> Self {
        ExportMeta {
            class_names,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }

    /// Foreground classes for a CAM network: VOC's 20 or COCO's 80 names when the count
    /// matches, else `class0`, `class1`, ….
    pub fn foreground(num_classes: usize) -> Self {
        let names: Vec<String> = match num_classes {
            20 => VOC_NAMES[1..].iter().map(|s| s.to_string()).collect(),
            80 => COCO_NAMES.iter().map(|s| s.to_string()).collect(),
            n => (0..n).map(|i| format!("class{i}")).collect(),
        };
        Self::new(names)
    }

    /// Background + foreground classes for a segmentation network (21 VOC, 81 COCO, else
    /// `background`, `class1`, …).
    pub fn with_background(num_classes: usize) -> Self {
        let mut names = vec!["background".to_string()];
        names.extend(match num_classes {
            21 => VOC_NAMES[1..]
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
            81 => COCO_NAMES.iter().map(|s| s.to_string()).collect(),
            n => (1..n).map(|i| format!("class{i}")).collect(),
        });
        names.truncate(num_classes);
        Self::new(names)
    }

    fn props(
        &self,
        arch: &str,
        output_stride: usize,
        config: serde_json::Value,
    ) -> Vec<(String, String)> {
        [
            ("ssc.arch", arch.to_string()),
            ("ssc.class_names", json!(self.class_names).to_string()),
            ("ssc.mean", json!(self.mean).to_string()),
            ("ssc.std", json!(self.std).to_string()),
            ("ssc.output_stride", output_stride.to_string()),
            ("ssc.config", config.to_string()),
            ("ssc.version", env!("CARGO_PKG_VERSION").to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

fn p(s: &str) -> Dim {
    Dim::Param(s.to_string())
}

fn image_input(g: &mut Graph) -> String {
    g.input("image", &[p("N"), Dim::Fixed(3), p("H"), p("W")])
}

fn check_classes(meta: &ExportMeta, n: usize) -> Result<()> {
    if n == 0 || meta.class_names.len() != n {
        return Err(OnnxError::Invalid(format!(
            "{n} output classes but {} class names",
            meta.class_names.len()
        )));
    }
    Ok(())
}

/// The values a head taps from a backbone graph.
struct BackboneGraph {
    /// IRN's x1…x5 ([`crate::backbone::Backbone::taps_t`]).
    taps: [String; 5],
    /// The final features (with DRS when asked for).
    features: String,
}

/// Adds `cfg`'s backbone on `x`; `drs_delta` ends it in DRS (ResNet: every layer4 block;
/// EfficientNet-Lite: after the head).
fn backbone_graph(
    g: &mut Graph,
    w: &Weights,
    cfg: &BackboneConfig,
    x: &str,
    drs_delta: Option<f32>,
) -> Result<BackboneGraph> {
    cfg.validate().map_err(OnnxError::Invalid)?;
    Ok(match cfg {
        BackboneConfig::ResNet(c) => {
            let s = resnet::backbone(g, w, c, x, drs_delta)?;
            let [l1, l2, l3, l4] = s.layers;
            BackboneGraph {
                features: l4.clone(),
                taps: [s.stem, l1, l2, l3, l4],
            }
        }
        BackboneConfig::EfficientNetLite(c) => {
            let s = efficientnet::backbone(g, w, c, x, drs_delta)?;
            // x1: stage 1 at even rows and columns (stride 4).
            let x1 = g.slice_steps(&s.stages[0], &[0, 0], &[2, 3], &[2, 2]);
            BackboneGraph {
                taps: [
                    x1,
                    s.stages[1].clone(),
                    s.stages[2].clone(),
                    s.stages[4].clone(),
                    s.stages[6].clone(),
                ],
                features: s.features,
            }
        }
    })
}

/// The whole EfficientNet-Lite ImageNet classifier (`_fc` included, dropout off): `image` →
/// `logits` `[N, num_classes]` and `features` `[N, 1280, ⌈H/os⌉, ⌈W/os⌉]`, so an import can
/// be checked against PyTorch. Class names are `class0`, … unless `meta` gives them.
pub fn export_imagenet(
    w: &Weights,
    cfg: &EfficientNetConfig,
    num_classes: usize,
    meta: Option<&ExportMeta>,
) -> Result<Vec<u8>> {
    let default = ExportMeta::new((0..num_classes).map(|i| format!("class{i}")).collect());
    let meta = meta.unwrap_or(&default);
    check_classes(meta, num_classes)?;
    let mut g = Graph::new("ssc_imagenet");
    let x = image_input(&mut g);
    let s = efficientnet::backbone(&mut g, w, cfg, &x, None)?;
    let fw = w.get(
        "_fc.weight",
        &[num_classes, cfg.head_channels],
        efficientnet::PACKAGE_NAMES,
    )?;
    let fb = w.get("_fc.bias", &[num_classes], efficientnet::PACKAGE_NAMES)?;
    let fw = g.initializer("_fc.weight", &[num_classes, cfg.head_channels], fw)?;
    let fb = g.initializer("_fc.bias", &[num_classes], fb)?;
    let logits = g.pooled_linear(&s.features, &fw, &fb);
    g.output(&logits, "logits", &[p("N"), Dim::Fixed(num_classes as i64)]);
    g.output(
        &s.features,
        "features",
        &[
            p("N"),
            Dim::Fixed(cfg.head_channels as i64),
            p("h_out"),
            p("w_out"),
        ],
    );
    let config =
        json!({ "backbone": BackboneConfig::from(cfg.clone()), "num_classes": num_classes });
    Ok(g.to_model_bytes(&meta.props("imagenet", cfg.output_stride, config)))
}

/// The ResNet alone with every stage as an output (`conv1_relu`, `stem`, `layer1` …
/// `layer4`); `drs_delta` puts DRS in layer4. For parity tests and feature extraction.
pub fn export_backbone(w: &Weights, cfg: &ResNetConfig, drs_delta: Option<f32>) -> Result<Vec<u8>> {
    let mut g = Graph::new("ssc_backbone");
    let x = image_input(&mut g);
    let s = resnet::backbone(&mut g, w, cfg, &x, drs_delta)?;
    let dims = |c: usize, h: &str, w: &str| vec![p("N"), Dim::Fixed(c as i64), p(h), p(w)];
    g.output(
        &s.conv1_relu,
        "conv1_relu",
        &dims(cfg.base_width, "h2", "w2"),
    );
    g.output(&s.stem, "stem", &dims(cfg.base_width, "h4", "w4"));
    for (l, v) in s.layers.iter().enumerate() {
        let (h, wd) = (format!("h_layer{}", l + 1), format!("w_layer{}", l + 1));
        g.output(
            v,
            &format!("layer{}", l + 1),
            &dims(cfg.out_channels(l), &h, &wd),
        );
    }
    let config = json!({ "backbone": cfg, "drs_delta": drs_delta });
    Ok(g.to_model_bytes(&ExportMeta::new(vec![]).props("backbone", cfg.output_stride(), config)))
}

/// The CAM network (§3.1) with `num_classes` foreground classes and default class names
/// ([`ExportMeta::foreground`]). Output `cam` = ReLU(classifier(layer4)).
pub fn export_cam(
    w: &Weights,
    cfg: impl Into<BackboneConfig>,
    num_classes: usize,
    drs_delta: f32,
) -> Result<Vec<u8>> {
    export_cam_with(w, cfg, drs_delta, &ExportMeta::foreground(num_classes))
}

/// [`export_cam`] with explicit metadata; the class count is `meta.class_names.len()`.
pub fn export_cam_with(
    w: &Weights,
    cfg: impl Into<BackboneConfig>,
    drs_delta: f32,
    meta: &ExportMeta,
) -> Result<Vec<u8>> {
    let cfg = &cfg.into();
    let c = meta.class_names.len();
    check_classes(meta, c)?;
    if !(drs_delta.is_finite() && drs_delta > 0.0) {
        return Err(OnnxError::Invalid(format!(
            "DRS δ must be positive, got {drs_delta}"
        )));
    }
    let mut g = Graph::new("ssc_cam");
    let x = image_input(&mut g);
    let s = backbone_graph(&mut g, w, cfg, &x, Some(drs_delta))?;
    let fc = cfg.feature_channels();
    let cw = w.get(
        "classifier.weight",
        &[c, fc, 1, 1],
        "`classifier.weight` [C, feature_channels, 1, 1] beside the backbone",
    )?;
    let cw = g.initializer("classifier.weight", &[c, fc, 1, 1], cw)?;
    let f = g.conv(&s.features, &cw, None, ConvSpec::k(1));
    let cam = g.relu(&f);
    g.output(
        &cam,
        "cam",
        &[p("N"), Dim::Fixed(c as i64), p("h_out"), p("w_out")],
    );
    let config = json!({ "backbone": cfg, "num_classes": c, "drs_delta": drs_delta });
    Ok(g.to_model_bytes(&meta.props("cam", cfg.output_stride(), config)))
}

/// The IRN edge network (§4.2) with no class names. Output `edge_logits` at stride 4.
pub fn export_irn_edge(w: &Weights, cfg: &IrnConfig) -> Result<Vec<u8>> {
    export_irn_edge_with(w, cfg, &ExportMeta::new(vec![]))
}

/// [`export_irn_edge`] with explicit metadata.
pub fn export_irn_edge_with(w: &Weights, cfg: &IrnConfig, meta: &ExportMeta) -> Result<Vec<u8>> {
    const IRN: &str = "IRN edge names (edge1.0.weight, edge1.1.weight/bias, …, edge6.weight/bias)";
    let ew = cfg.edge_width;
    let mut g = Graph::new("ssc_irn_edge");
    let x = image_input(&mut g);
    let s = backbone_graph(&mut g, w, &cfg.backbone, &x, None)?;
    let feats: Vec<&String> = s.taps.iter().collect();
    // e1…e5 are cropped (top-left) to e2's size, which is x2's (a 1×1 conv keeps it).
    let hw2 = g.spatial_size(&s.taps[1]);
    let mut maps = Vec::with_capacity(5);
    for (k, ((feat, &cin), &factor)) in feats
        .iter()
        .zip(&cfg.feature_channels())
        .zip(&cfg.edge_factors())
        .enumerate()
    {
        let n = k + 1;
        let cw = w.get(&format!("fc_edge{n}.0.weight"), &[ew, cin, 1, 1], IRN)?;
        let gamma = w.get(&format!("fc_edge{n}.1.weight"), &[ew], IRN)?;
        let beta = w.get(&format!("fc_edge{n}.1.bias"), &[ew], IRN)?;
        let cw = g.initializer(&format!("fc_edge{n}.0.weight"), &[ew, cin, 1, 1], cw)?;
        let y = g.conv(feat, &cw, None, ConvSpec::k(1));
        let mut y = g.group_norm(&y, cfg.gn_groups, gamma, beta, cfg.gn_eps)?;
        if factor > 1 {
            y = g.resize_scale(&y, factor as f32)?;
            y = g.slice(&y, &[0, 0], &hw2, &[2, 3]);
        }
        maps.push(g.relu(&y));
    }
    let refs: Vec<&str> = maps.iter().map(String::as_str).collect();
    let cat = g.concat(&refs, 1);
    let w6 = w.get("fc_edge6.weight", &[1, 5 * ew, 1, 1], IRN)?;
    let b6 = w.get("fc_edge6.bias", &[1], IRN)?;
    let w6 = g.initializer("fc_edge6.weight", &[1, 5 * ew, 1, 1], w6)?;
    let b6 = g.initializer("fc_edge6.bias", &[1], b6)?;
    let edge = g.conv(&cat, &w6, Some(&b6), ConvSpec::k(1));
    g.output(
        &edge,
        "edge_logits",
        &[p("N"), Dim::Fixed(1), p("h4"), p("w4")],
    );
    let config = serde_json::to_value(cfg).map_err(|e| OnnxError::Invalid(e.to_string()))?;
    Ok(g.to_model_bytes(&meta.props("irn", 4, config)))
}

/// DeepLabV2 (§6.1) with default class names ([`ExportMeta::with_background`]).
pub fn export_deeplab(w: &Weights, cfg: &DeepLabConfig) -> Result<Vec<u8>> {
    export_deeplab_with(w, cfg, &ExportMeta::with_background(cfg.num_classes))
}

/// [`export_deeplab`] with explicit metadata (`class_names.len()` must be `num_classes`).
pub fn export_deeplab_with(w: &Weights, cfg: &DeepLabConfig, meta: &ExportMeta) -> Result<Vec<u8>> {
    const ASPP: &str =
        "DeepLabV2 ASPP names (classifier.{i}.weight [K, 2048, 3, 3], classifier.{i}.bias)";
    let k = cfg.num_classes;
    check_classes(meta, k)?;
    if cfg.rates.is_empty() || cfg.rates.contains(&0) {
        return Err(OnnxError::Invalid(format!(
            "ASPP rates must be non-empty and positive: {:?}",
            cfg.rates
        )));
    }
    let mut g = Graph::new("ssc_deeplab");
    let x = image_input(&mut g);
    let s = backbone_graph(&mut g, w, &cfg.backbone, &x, None)?;
    let cin = cfg.backbone.feature_channels();
    let mut sum: Option<String> = None;
    for (i, &r) in cfg.rates.iter().enumerate() {
        let wt = w.get(&format!("classifier.{i}.weight"), &[k, cin, 3, 3], ASPP)?;
        let b = w.get(&format!("classifier.{i}.bias"), &[k], ASPP)?;
        let wt = g.initializer(&format!("classifier.{i}.weight"), &[k, cin, 3, 3], wt)?;
        let b = g.initializer(&format!("classifier.{i}.bias"), &[k], b)?;
        let spec = ConvSpec {
            kernel: 3,
            stride: 1,
            pad: r,
            dilation: r,
        };
        let y = g.conv(&s.features, &wt, Some(&b), spec);
        sum = Some(match sum {
            Some(acc) => g.add(&acc, &y),
            None => y,
        });
    }
    let pre = sum.unwrap_or_default();
    let hw = g.spatial_size(&x);
    let logits = g.resize_to(&pre, &hw);
    let kd = Dim::Fixed(k as i64);
    g.output(
        &pre,
        "pre_logits",
        &[p("N"), kd.clone(), p("h_out"), p("w_out")],
    );
    g.output(&logits, "logits", &[p("N"), kd, p("H"), p("W")]);
    let config = serde_json::to_value(cfg).map_err(|e| OnnxError::Invalid(e.to_string()))?;
    Ok(g.to_model_bytes(&meta.props("deeplab", cfg.backbone.output_stride(), config)))
}
