//! The DeepLabV2 training step (§6.3 `L_ce`, §6.4) and its validation, run by the shared epoch
//! loop ([`crate::run`]: per-epoch checkpoints, exact resume, best-checkpoint selection).
//!
//! Per iteration: poly learning rate (floored, §6.4) → forward in training mode (BN batch
//! statistics, running statistics updated) → logits at the crop size → cross entropy
//! ignoring 255, weighted by the confidence masks when given → backward → SGD (backbone at
//! `lr`, ASPP head at `lr · classifier_lr_mult`, momentum, L2 decay on every parameter).
//! After each epoch: checkpoint, single-scale validation mIoU in eval mode (running
//! statistics), and `best.safetensors` + `best.json` when the mIoU improved.
//!
//! Weights files hold the whole network in [`DeepLabV2::new`]'s layout (`backbone.*` with
//! torchvision names including the BN running statistics, `classifier.{i}.*`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use rayon::prelude::*;
use ssc_core::metrics::Confusion;
use ssc_models::deeplab::DeepLabV2;
use ssc_models::import::{check_backbone, load_state_dict};
use ssc_models::init::SeededInit;

use super::config::DeepLabTrainConfig;
use super::data::{DeepLabBatch, DeepLabTrainSet, ValSet};
use crate::checkpoint::var_tensors;
use crate::error::{Result, TrainError};
use crate::losses::weighted_pixel_ce;
use crate::optim::{BackboneHead, Sgd};
pub use crate::run::{BEST_FILE, BEST_JSON, BestRecord};
use crate::run::{RunReport, TrainOptions, Trainer};

/// Name of the final weights file in the output folder.
pub const WEIGHTS_FILE: &str = "deeplab.safetensors";

/// Run-time choices that do not change the result (those of every trainer).
pub type DeepLabTrainOptions = TrainOptions;

/// What one epoch gave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochStats {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss.
    pub loss: f64,
    /// Validation mIoU in [0, 1].
    pub val_miou: f64,
}

/// Summary of a finished (or stopped) run, with the best epoch of the whole run.
pub type DeepLabTrainReport = RunReport<EpochStats>;

/// The network of a run and its parameters.
pub struct DeepLabNetwork {
    /// The network.
    pub net: DeepLabV2,
    /// Every tensor (`backbone.*`, `classifier.*`), BN running statistics included.
    pub vars: VarMap,
}

impl DeepLabNetwork {
    /// Every tensor in the weights-file layout.
    pub fn weights(&self) -> Result<HashMap<String, Tensor>> {
        var_tensors(&self.vars)
    }
}

/// Fails with a clear message when `cfg` needs ImageNet weights that `opts` does not give.
pub fn require_weights(cfg: &DeepLabTrainConfig, opts: &DeepLabTrainOptions) -> Result<()> {
    crate::config::require_backbone(
        cfg.requires_pretrained,
        opts.backbone_weights.is_some() || opts.init_weights.is_some(),
        &cfg.preset,
        "trains DeepLabV2 from an ImageNet backbone",
        "resnet101-cd907fc2.pth",
        &cfg.net.backbone,
    )
}

/// Builds the network: every tensor from `opts.init_weights` when given (fine-tuning a
/// trained DeepLabV2; the file must hold exactly the network's tensors), else the backbone
/// from torchvision weights when given (required when the preset says so), otherwise
/// torchvision's from-scratch initialisation (seeded); the head N(0, 0.01²) with zero bias
/// (seeded).
pub fn build_network(
    cfg: &DeepLabTrainConfig,
    opts: &DeepLabTrainOptions,
) -> Result<DeepLabNetwork> {
    require_weights(cfg, opts)?;
    let dev = &opts.device;
    if let Some(p) = &opts.init_weights {
        let vm = init_vars(cfg, p, dev)?;
        let net = DeepLabV2::new(
            &cfg.net,
            candle_nn::VarBuilder::from_varmap(&vm, DType::F32, dev),
        )
        .map_err(|e| TrainError::file(p, format!("not a DeepLabV2 of this config: {e}")))?;
        return Ok(DeepLabNetwork { net, vars: vm });
    }
    let vm = match &opts.backbone_weights {
        Some(p) => {
            let sd = load_state_dict(p)?;
            check_backbone(&sd, &cfg.net.backbone, true)?;
            crate::init::imagenet_vars(&sd, dev, "backbone.")?
        }
        None => {
            let vm = VarMap::new();
            crate::init::kaiming_fan_out_init(
                &vm,
                cfg.seed,
                dev,
                |name| name.starts_with("classifier"),
                |vb| DeepLabV2::new(&cfg.net, vb).map(|_| ()).map_err(Into::into),
            )?;
            vm
        }
    };
    let net = DeepLabV2::new(
        &cfg.net,
        SeededInit::var_builder(&vm, cfg.seed, DType::F32, dev),
    )?;
    Ok(DeepLabNetwork { net, vars: vm })
}

/// The variables of a whole trained network from `path`, checked name by name and shape by
/// shape against the network `cfg` builds: missing, unexpected and misshaped tensors are
/// reported by name.
fn init_vars(cfg: &DeepLabTrainConfig, path: &Path, dev: &Device) -> Result<VarMap> {
    let want = VarMap::new();
    DeepLabV2::new(
        &cfg.net,
        SeededInit::var_builder(&want, cfg.seed, DType::F32, dev),
    )?;
    let want: std::collections::BTreeMap<String, Vec<usize>> = var_tensors(&want)?
        .into_iter()
        .map(|(k, t)| (k, t.dims().to_vec()))
        .collect();
    let sd = load_state_dict(path)?;
    let vm = sd.var_map(DType::F32, dev)?;
    let got: std::collections::BTreeMap<String, Vec<usize>> = var_tensors(&vm)?
        .into_iter()
        .filter(|(k, _)| !k.ends_with("num_batches_tracked"))
        .map(|(k, t)| (k, t.dims().to_vec()))
        .collect();
    let missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let unexpected: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    let misshaped: Vec<String> = want
        .iter()
        .filter_map(|(k, s)| {
            got.get(k)
                .filter(|g| *g != s)
                .map(|g| format!("{k} {g:?} (expected {s:?})"))
        })
        .collect();
    if !(missing.is_empty() && unexpected.is_empty() && misshaped.is_empty()) {
        let few = |v: Vec<String>| {
            let n = v.len();
            let mut s = v.into_iter().take(5).collect::<Vec<_>>().join(", ");
            if n > 5 {
                s.push_str(&format!(" and {} more", n - 5));
            }
            s
        };
        return Err(TrainError::file(
            path,
            format!(
                "not the weights of this DeepLabV2 (--init): missing [{}], unexpected [{}], \
                 misshaped [{}]",
                few(missing.into_iter().cloned().collect()),
                few(unexpected.into_iter().cloned().collect()),
                few(misshaped)
            ),
        ));
    }
    Ok(vm)
}

/// The trainable parameters (BN running statistics are buffers, not parameters).
fn is_param(name: &str) -> bool {
    !name.ends_with("running_mean") && !name.ends_with("running_var")
}

/// The optimiser: backbone and head groups (§6.4).
fn optimiser(cfg: &DeepLabTrainConfig, vars: &VarMap) -> Result<Sgd> {
    BackboneHead {
        lr: cfg.lr,
        head_mult: cfg.classifier_lr_mult,
        weight_decay: cfg.weight_decay,
        momentum: cfg.momentum,
    }
    .sgd(vars, is_param)
}

/// One training step; returns the loss.
fn step(
    cfg: &DeepLabTrainConfig,
    net: &DeepLabV2,
    sgd: &mut Sgd,
    batch: &DeepLabBatch,
    dev: &Device,
) -> Result<f64> {
    let c = cfg.data.crop;
    let x = Tensor::from_slice(&batch.images, (batch.len, 3, c, c), dev)?;
    let logits = net.forward_both(&x, true)?.logits;
    let loss = weighted_pixel_ce(&logits, &batch.labels, batch.weights.as_deref())?;
    let value = f64::from(loss.to_scalar::<f32>()?);
    if !value.is_finite() {
        return Err(TrainError::State(format!("DeepLab loss became {value}")));
    }
    sgd.step(&loss.backward()?)?;
    Ok(value)
}

/// Single-scale predictions of `net` in eval mode for a normalised batch `N×3×H×W`:
/// `N·H·W` class ids (argmax of the logits).
pub fn predict(
    net: &DeepLabV2,
    images: &[f32],
    shape: [usize; 4],
    dev: &Device,
) -> Result<Vec<u8>> {
    let x = Tensor::from_slice(images, &shape, dev)?;
    let logits = net.forward_both(&x, false)?.logits;
    Ok(logits
        .argmax(1)?
        .flatten_all()?
        .to_vec1::<u32>()?
        .into_iter()
        .map(|v| v as u8)
        .collect())
}

/// The confusion matrix of `net` (eval mode, single scale) on `val`; images of equal size
/// are run `batch` at a time.
pub fn evaluate(
    net: &DeepLabV2,
    val: &ValSet,
    num_classes: usize,
    batch: usize,
    dev: &Device,
) -> Result<Confusion> {
    let mut conf = Confusion::new(num_classes);
    let idx: Vec<usize> = (0..val.len()).collect();
    for chunk in idx.chunks(batch.max(1)) {
        let imgs = chunk
            .par_iter()
            .map(|&i| val.get(i))
            .collect::<Result<Vec<_>>>()?;
        // Split the chunk where the size changes.
        let mut start = 0;
        while start < imgs.len() {
            let (h, w) = imgs[start].size;
            let end = imgs[start..]
                .iter()
                .position(|v| v.size != (h, w))
                .map_or(imgs.len(), |p| start + p);
            let group = &imgs[start..end];
            let data: Vec<f32> = group.iter().flat_map(|v| v.image.iter().copied()).collect();
            let pred = predict(net, &data, [group.len(), 3, h, w], dev)?;
            for (v, p) in group.iter().zip(pred.chunks_exact(h * w)) {
                conf.add(&v.gt, p)
                    .map_err(|e| TrainError::State(format!("validation: {e:?}")))?;
            }
            start = end;
        }
    }
    Ok(conf)
}

/// A DeepLab run as the epoch loop drives it.
struct DeepLabRun<'a> {
    cfg: &'a DeepLabTrainConfig,
    set: Arc<DeepLabTrainSet>,
    val: &'a ValSet,
    nets: DeepLabNetwork,
    sgd: Sgd,
    device: Device,
}

impl Trainer for DeepLabRun<'_> {
    type Config = DeepLabTrainConfig;
    type Data = DeepLabTrainSet;
    type Optimiser = Sgd;
    type Terms = f64;
    type Epoch = EpochStats;
    const WEIGHTS_FILE: &'static str = WEIGHTS_FILE;
    const VALIDATES: bool = true;

    fn config(&self) -> &DeepLabTrainConfig {
        self.cfg
    }

    fn data(&self) -> &Arc<DeepLabTrainSet> {
        &self.set
    }

    fn name(&self) -> &str {
        "deeplab"
    }

    fn step(&mut self, batch: &DeepLabBatch, _: usize, iteration: u64, total: u64) -> Result<f64> {
        self.sgd.set_lr_factor(self.cfg.lr_factor(iteration, total));
        step(self.cfg, &self.nets.net, &mut self.sgd, batch, &self.device)
    }

    fn message(&self, loss: &f64) -> String {
        format!("loss {loss:.4} lr {:.5}", self.sgd.lrs()[0])
    }

    fn net_vars(&self) -> &VarMap {
        &self.nets.vars
    }

    fn optimiser(&mut self) -> &mut Sgd {
        &mut self.sgd
    }

    fn weights(&self) -> Result<HashMap<String, Tensor>> {
        self.nets.weights()
    }

    fn validate(&self) -> Result<f64> {
        let (n, bs) = (self.cfg.net.num_classes, self.cfg.batch_size);
        Ok(evaluate(&self.nets.net, self.val, n, bs, &self.device)?.miou())
    }

    fn epoch_done(
        &self,
        epoch: usize,
        loss: f64,
        val: Option<f64>,
        best: Option<BestRecord>,
    ) -> EpochStats {
        // Every epoch is validated (`VALIDATES`), so `val` is always there.
        let val_miou = val.unwrap_or(f64::NAN);
        tracing::info!(
            epoch,
            loss,
            val_miou,
            best_epoch = best.map_or(0, |b| b.epoch),
            "DeepLab epoch done"
        );
        EpochStats {
            epoch,
            loss,
            val_miou,
        }
    }
}

/// Trains DeepLabV2 on `set`, validating on `val` after each epoch, and writes checkpoints,
/// `best.safetensors`/`best.json` and finally `deeplab.safetensors` under `opts.out` through
/// the shared epoch loop ([`crate::run::run`]).
///
/// With `opts.resume` and a checkpoint in `opts.out`, weights (BN statistics included),
/// optimiser state, counters and the best record are restored and training continues at the
/// next epoch, giving the same weights as an uninterrupted run (same device and threads).
pub fn train(
    cfg: &DeepLabTrainConfig,
    set: Arc<DeepLabTrainSet>,
    val: &ValSet,
    opts: &DeepLabTrainOptions,
) -> Result<(DeepLabNetwork, DeepLabTrainReport)> {
    cfg.validate()?;
    let nets = build_network(cfg, opts)?;
    let sgd = optimiser(cfg, &nets.vars)?;
    let mut run = DeepLabRun {
        cfg,
        set,
        val,
        nets,
        sgd,
        device: opts.device.clone(),
    };
    let report = crate::run::run(&mut run, opts)?;
    Ok((run.nets, report))
}

/// A trained DeepLabV2 from a weights file in the layout of [`WEIGHTS_FILE`], on the CPU.
pub fn load_deeplab(weights: &Path, cfg: &ssc_models::config::DeepLabConfig) -> Result<DeepLabV2> {
    let tensors = candle_core::safetensors::load(weights, &Device::Cpu)
        .map_err(|e| TrainError::file(weights, format!("cannot read DeepLab weights: {e}")))?;
    let vb = candle_nn::VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    DeepLabV2::new(cfg, vb).map_err(|e| TrainError::file(weights, format!("not a DeepLabV2: {e}")))
}
