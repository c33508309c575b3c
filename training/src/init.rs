//! How a trainer's backbone starts: from ImageNet weights ([`imagenet_vars`]), or with
//! torchvision's initialisation for from-scratch networks (stage 1 §2.1, DeepLab §6.1, the
//! random perceptual VGG §2.5): conv weights Kaiming-normal (fan_out, ReLU gain), and for VGG
//! zero conv biases; every other parameter keeps the model's own hint (BN γ = 1, β = 0). The
//! models' hints follow PyTorch's generic conv default, which torchvision overrides.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use ssc_models::import::StateDict;
use ssc_models::init::SeededInit;

use crate::checkpoint::var_tensors;
use crate::error::{Result, TrainError};

/// The tensors of a torchvision ResNet state dict as trainable f32 variables on `dev`, named
/// `prefix` + the torchvision name, without the ImageNet classifier (`fc.*`) and the
/// `num_batches_tracked` counters, which no ssc network has.
pub fn imagenet_vars(sd: &StateDict, dev: &Device, prefix: &str) -> Result<VarMap> {
    let vm = sd.var_map(DType::F32, dev)?;
    {
        let mut data = vm
            .data()
            .lock()
            .map_err(|_| TrainError::State("parameter map lock poisoned".into()))?;
        let all = std::mem::take(&mut *data);
        data.extend(
            all.into_iter()
                // The ImageNet heads (torchvision `fc.*`, EfficientNet-Lite `_fc.*`) are unused.
                .filter(|(k, _)| {
                    !k.starts_with("fc.")
                        && !k.starts_with("_fc.")
                        && !k.ends_with("num_batches_tracked")
                })
                .map(|(k, v)| (format!("{prefix}{k}"), v)),
        );
    }
    Ok(vm)
}

/// Inserts Kaiming-normal (fan_out) weights into `vm` for every 4-D parameter of the model
/// that `build` constructs, except those `skip` names; call before the real build, which
/// then reuses them. Parameters are visited in name order, each with its own seeded stream.
pub fn kaiming_fan_out_init(
    vm: &VarMap,
    seed: u64,
    dev: &Device,
    skip: impl Fn(&str) -> bool,
    build: impl FnOnce(VarBuilder<'static>) -> Result<()>,
) -> Result<()> {
    kaiming_fan_out_init_with(vm, seed, dev, skip, false, build)
}

/// [`kaiming_fan_out_init`], and with `zero_conv_biases` every conv's bias set to 0 (what
/// torchvision's VGG does).
pub fn kaiming_fan_out_init_with(
    vm: &VarMap,
    seed: u64,
    dev: &Device,
    skip: impl Fn(&str) -> bool,
    zero_conv_biases: bool,
    build: impl FnOnce(VarBuilder<'static>) -> Result<()>,
) -> Result<()> {
    // Discover names and shapes with a throw-away build.
    let probe = VarMap::new();
    build(SeededInit::var_builder(&probe, 0, DType::F32, dev))?;
    let probe: HashMap<String, Tensor> = var_tensors(&probe)?;
    let mut names: Vec<_> = probe.keys().cloned().collect();
    names.sort();
    let mut data = vm
        .data()
        .lock()
        .map_err(|_| TrainError::State("parameter map lock poisoned".into()))?;
    for name in names {
        let t = &probe[&name];
        if skip(&name) {
            continue;
        }
        if zero_conv_biases && t.rank() == 1 && name.ends_with(".bias") {
            let weight = format!("{}.weight", name.trim_end_matches(".bias"));
            if probe.get(&weight).is_some_and(|w| w.rank() == 4) {
                data.insert(name, Var::from_tensor(&t.zeros_like()?)?);
            }
            continue;
        }
        if t.rank() != 4 {
            continue;
        }
        let d = t.dims();
        let std = (2.0 / (d[0] * d[2] * d[3]) as f64).sqrt();
        let mut rng = ssc_core::rng::Rng::fork(seed, 0x1417 + data.len() as u64);
        let v: Vec<f32> = (0..t.elem_count())
            .map(|_| (rng.normal() * std) as f32)
            .collect();
        let w = Tensor::from_vec(v, d, dev)?;
        data.insert(name, Var::from_tensor(&w)?);
    }
    Ok(())
}
