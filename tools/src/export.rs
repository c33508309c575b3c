//! Weights → ONNX export shared by `ssc-export` and the trainers' `--export` (§10.3): state
//! dict conversion, layout inference and the DeepLabV2 export of a trained network.

use std::path::Path;

use anyhow::{Context, Result, bail};
use ssc_models::config::{BackboneConfig, DeepLabConfig, EfficientNetConfig, ResNetConfig};
use ssc_models::import::{StateDict, infer_resnet};
use ssc_models::onnx::{self, ExportMeta, Weights};

/// Every tensor of a state dict as f32 export weights.
pub fn to_weights(sd: &StateDict) -> Result<Weights> {
    let mut w = Weights::new();
    for (name, t) in sd.tensors() {
        let v: Vec<f32> = t
            .to_dtype(candle_core::DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1())
            .with_context(|| format!("{}: tensor {name}", sd.path().display()))?;
        w.insert(name.clone(), v, t.dims().to_vec());
    }
    Ok(w)
}

/// The first dimension of tensor `name` of `file`.
pub fn dim0(w: &Weights, name: &str, file: &Path) -> Result<usize> {
    w.shape(name)
        .and_then(|s| s.first().copied())
        .with_context(|| format!("{}: no tensor `{name}`", file.display()))
}

/// A network config, or a training run's `config.json` (whose `net` field is the network).
pub fn read_net_config<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut v: serde_json::Value =
        serde_json::from_slice(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    if let Some(net) = v.get_mut("net") {
        v = net.take();
    }
    serde_json::from_value(v).with_context(|| format!("{}: not a valid config", path.display()))
}

/// Metadata class names: from `--classes` (`voc`, `coco` or a class-list file), else
/// defaults by count.
pub fn meta(classes: &Option<String>, n: usize, with_background: bool) -> Result<ExportMeta> {
    let Some(spec) = classes else {
        return Ok(if with_background {
            ExportMeta::with_background(n)
        } else {
            ExportMeta::foreground(n)
        });
    };
    let map = crate::class_map(spec)?;
    let names = if with_background {
        map.names.clone()
    } else {
        map.names[1..].to_vec()
    };
    anyhow::ensure!(
        n == 0 || names.len() == n,
        "--classes lists {} classes but the network has {n}",
        names.len()
    );
    Ok(ExportMeta::new(names))
}

/// The backbone layout of the exporter's weights `w` (backbone at the root): an
/// EfficientNet-Lite (package names, at `output_stride`) or a torchvision ResNet (with
/// `strides` and `dilations`); `sd` is the file they came from.
pub fn infer_layout(
    w: &Weights,
    sd: &StateDict,
    strides: [usize; 4],
    dilations: [usize; 4],
    output_stride: usize,
) -> Result<BackboneConfig> {
    if w.shape("_conv_stem.weight").is_some() {
        let shapes = w
            .names()
            .into_iter()
            .filter_map(|n| Some((n.to_string(), w.shape(n)?.to_vec())))
            .collect();
        return EfficientNetConfig::infer(&shapes, output_stride)
            .map(BackboneConfig::from)
            .map_err(|e| anyhow::anyhow!("{}: {e}", sd.path().display()));
    }
    infer_resnet_layout(w, sd, strides, dilations).map(BackboneConfig::from)
}

/// ResNet layout inferred from `backbone.`-prefixed or root torchvision keys.
fn infer_resnet_layout(
    w: &Weights,
    sd: &StateDict,
    strides: [usize; 4],
    dilations: [usize; 4],
) -> Result<ResNetConfig> {
    match infer_resnet(sd, strides, dilations) {
        Ok(cfg) => Ok(cfg),
        Err(_) => {
            let mut blocks = [0usize; 4];
            for name in w.names() {
                let mut parts = name.split('.');
                if let (Some(l), Some(i)) = (parts.next(), parts.next())
                    && let (Some(Ok(l)), Ok(i)) = (
                        l.strip_prefix("layer").map(str::parse::<usize>),
                        i.parse::<usize>(),
                    )
                    && (1..=4).contains(&l)
                {
                    blocks[l - 1] = blocks[l - 1].max(i + 1);
                }
            }
            let base = dim0(w, "conv1.weight", sd.path())?;
            anyhow::ensure!(
                blocks.iter().all(|&b| b > 0),
                "{}: no torchvision ResNet layers found",
                sd.path().display()
            );
            Ok(ResNetConfig {
                blocks,
                base_width: base,
                strides,
                dilations,
                bn_eps: 1e-5,
            })
        }
    }
}

/// ONNX bytes of a DeepLabV2 (§6.1) from the weights `sd` (the candle layout `backbone.*` +
/// `classifier.*`, or torchvision names at the root). The network comes from `config` (a
/// network config or a run's `config.json`), else it is inferred from the weights with the
/// layout of `output_stride` (8 or 16).
pub fn deeplab_onnx(
    sd: &StateDict,
    config: Option<&Path>,
    output_stride: usize,
    classes: &Option<String>,
) -> Result<Vec<u8>> {
    let w = to_weights(sd)?;
    // The candle DeepLab keeps its backbone under `backbone.`; the exporter reads torchvision
    // names at the root.
    let w = if w.names().iter().any(|n| n.starts_with("backbone.")) {
        let mut root = w.strip_prefix("backbone.");
        root.merge(w.strip_prefix("classifier."), "classifier.");
        root
    } else {
        w
    };
    let cfg: DeepLabConfig = match config {
        Some(p) => read_net_config(p)?,
        None => {
            let (strides, dilations) = match output_stride {
                8 => ([1, 2, 1, 1], [1, 1, 2, 4]),
                16 => ([1, 2, 2, 1], [1, 1, 1, 2]),
                s => bail!("--output-stride must be 8 or 16, got {s}"),
            };
            DeepLabConfig {
                backbone: infer_layout(&w, sd, strides, dilations, output_stride)?,
                num_classes: dim0(&w, "classifier.0.weight", sd.path())?,
                ..DeepLabConfig::voc()
            }
        }
    };
    let meta = meta(classes, cfg.num_classes, true)?;
    Ok(onnx::export::export_deeplab_with(&w, &cfg, &meta)?)
}
