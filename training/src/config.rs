//! What the trainers' configs share: preset lookup by name, the reference code's momentum
//! quirk (§2.8, §9), the checks of batch size and epochs, and the settings the epoch loop
//! reads ([`RunConfig`]). Each config keeps its own fields, so what it serialises to does not
//! change.

use serde::Serialize;

use crate::error::{Result, TrainError};

/// The SGD momentum the reference code effectively trains with: an argument-order bug passes
/// the weight decay 1e-4 as momentum (§2.8, §9).
pub const REFERENCE_MOMENTUM: f64 = 1e-4;

/// The settings of a config that the epoch loop ([`crate::run::run`]) reads.
pub trait RunConfig: Serialize {
    /// Seed of initialisation, shuffling and augmentation.
    fn seed(&self) -> u64;
    /// Epochs.
    fn epochs(&self) -> usize;
    /// Images per batch.
    fn batch_size(&self) -> usize;
}

/// Implements [`RunConfig`] for a config with the fields `seed`, `epochs` and `batch_size`
/// (every trainer's config names them alike).
macro_rules! impl_run_config {
    ($config:ty) => {
        impl $crate::config::RunConfig for $config {
            fn seed(&self) -> u64 {
                self.seed
            }
            fn epochs(&self) -> usize {
                self.epochs
            }
            fn batch_size(&self) -> usize {
                self.batch_size
            }
        }
    };
}
pub(crate) use impl_run_config;

/// The preset called `name`: `voc`, `coco`, `synthetic` or `voc-lite`.
pub fn preset<C>(
    name: &str,
    voc: impl FnOnce() -> C,
    coco: impl FnOnce() -> C,
    synthetic: impl FnOnce() -> C,
    voc_lite: impl FnOnce() -> C,
) -> Result<C> {
    match name {
        "voc" => Ok(voc()),
        "coco" => Ok(coco()),
        "synthetic" => Ok(synthetic()),
        "voc-lite" => Ok(voc_lite()),
        _ => Err(TrainError::Config(format!(
            "unknown preset `{name}` (expected voc, voc-lite, coco or synthetic)"
        ))),
    }
}

/// The SGD momentum actually used: `momentum` as the paper states it, or the reference
/// code's [`REFERENCE_MOMENTUM`] with `reference_quirk`.
pub fn effective_momentum(momentum: f64, reference_quirk: bool) -> f64 {
    if reference_quirk {
        REFERENCE_MOMENTUM
    } else {
        momentum
    }
}

/// Checks that a batch holds at least `min_batch` images and that there are epochs to train.
pub fn check_batch_and_epochs(batch_size: usize, min_batch: usize, epochs: usize) -> Result<()> {
    if batch_size >= min_batch.max(1) && epochs > 0 {
        return Ok(());
    }
    Err(TrainError::Config(if min_batch <= 1 {
        "batch_size and epochs must be > 0".into()
    } else {
        format!("batch_size must be ≥ {min_batch} and epochs > 0")
    }))
}

/// Fails with a clear message when a preset that trains from ImageNet weights
/// (`requires_pretrained`) is started without `--backbone-weights`; `trains` says what the
/// preset does (`trains IRN on a frozen ImageNet backbone`), `file` names the torchvision
/// weights of a ResNet `backbone` (an EfficientNet-Lite's come from `scripts/get-weights.sh`).
pub fn require_backbone(
    requires_pretrained: bool,
    given: bool,
    preset: &str,
    trains: &str,
    file: &str,
    backbone: &ssc_models::config::BackboneConfig,
) -> Result<()> {
    if requires_pretrained && !given {
        let what = match backbone {
            ssc_models::config::BackboneConfig::EfficientNetLite(_) => {
                "weights/efficientnet-lite0.safetensors; run `bash scripts/get-weights.sh` \
                 first"
                    .to_string()
            }
            _ => format!("torchvision {file} or its safetensors conversion"),
        };
        return Err(TrainError::Config(format!(
            "the `{preset}` preset {trains}: pass --backbone-weights ({what})"
        )));
    }
    Ok(())
}

/// Asserts that every preset validates and survives a JSON round trip (the config saved
/// beside a run is read back on resume).
#[cfg(test)]
pub(crate) fn assert_presets_round_trip<C>(presets: &[C], validate: impl Fn(&C) -> Result<()>)
where
    C: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    for c in presets {
        validate(c).unwrap();
        let back: C = serde_json::from_str(&serde_json::to_string(c).unwrap()).unwrap();
        assert_eq!(&back, c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_by_name() {
        let p = |n| preset(n, || 1, || 2, || 3, || 4);
        assert_eq!(
            (
                p("voc").unwrap(),
                p("coco").unwrap(),
                p("synthetic").unwrap(),
                p("voc-lite").unwrap()
            ),
            (1, 2, 3, 4)
        );
        assert!(p("nope").unwrap_err().to_string().contains("`nope`"));
    }

    #[test]
    fn momentum_quirk_and_counts() {
        assert_eq!(effective_momentum(0.9, false), 0.9);
        assert_eq!(effective_momentum(0.9, true), 1e-4);
        check_batch_and_epochs(1, 1, 1).unwrap();
        let e = check_batch_and_epochs(0, 1, 3).unwrap_err().to_string();
        assert!(e.contains("batch_size and epochs must be > 0"), "{e}");
        assert!(check_batch_and_epochs(4, 1, 0).is_err());
        let e = check_batch_and_epochs(1, 2, 3).unwrap_err().to_string();
        assert!(e.contains("batch_size must be ≥ 2"), "{e}");
        check_batch_and_epochs(2, 2, 1).unwrap();
    }

    #[test]
    fn missing_backbone_is_named() {
        use ssc_models::config::{BackboneConfig, EfficientNetConfig, ResNetConfig};
        let r: BackboneConfig = ResNetConfig::resnet50_os16().into();
        require_backbone(false, false, "synthetic", "trains", "x.pth", &r).unwrap();
        require_backbone(true, true, "voc", "trains", "x.pth", &r).unwrap();
        let e = require_backbone(true, false, "voc", "trains IRN", "x.pth", &r)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "config: the `voc` preset trains IRN: pass --backbone-weights (torchvision x.pth \
             or its safetensors conversion)"
        );
        let lite: BackboneConfig = EfficientNetConfig::lite(0).unwrap().into();
        let e = require_backbone(true, false, "voc-lite", "trains", "x.pth", &lite)
            .unwrap_err()
            .to_string();
        assert!(e.contains("scripts/get-weights.sh"), "{e}");
    }
}
