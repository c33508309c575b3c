//! The DeepLabV2 training loop (§6.3 `L_ce`, §6.4) with per-epoch checkpoints, exact resume,
//! validation mIoU and best-checkpoint selection.
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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use ssc_core::metrics::Confusion;
use ssc_models::deeplab::DeepLabV2;
use ssc_models::import::{check_resnet, load_state_dict};
use ssc_models::init::SeededInit;

use super::config::DeepLabTrainConfig;
use super::data::{DeepLabBatch, DeepLabTrainSet, ValSet};
use crate::checkpoint::{
    self, CheckpointData, TrainState, epoch_bar, load_vars, save_weights, var_tensors,
};
use crate::data::load_epoch;
use crate::error::{Result, TrainError};
use crate::losses::weighted_pixel_ce;
use crate::optim::{BackboneHead, Sgd};

/// Name of the final weights file in the output folder.
pub const WEIGHTS_FILE: &str = "deeplab.safetensors";
/// Weights of the epoch with the best validation mIoU.
pub const BEST_FILE: &str = "best.safetensors";
/// Epoch and mIoU of [`BEST_FILE`].
pub const BEST_JSON: &str = "best.json";

/// Run-time choices that do not change the result.
#[derive(Debug, Clone)]
pub struct DeepLabTrainOptions {
    /// Output folder (checkpoints, weights, config).
    pub out: PathBuf,
    /// Compute device.
    pub device: Device,
    /// torchvision ResNet weights for the backbone (required by the VOC/COCO presets).
    pub backbone_weights: Option<PathBuf>,
    /// Continue from the latest checkpoint in `out`.
    pub resume: bool,
    /// Show a progress bar.
    pub progress: bool,
    /// Stop after this many completed epochs (simulates a kill; tests and time-boxed runs).
    pub stop_after_epoch: Option<usize>,
}

impl DeepLabTrainOptions {
    /// CPU, no weights, no resume, no progress bar.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        DeepLabTrainOptions {
            out: out.into(),
            device: Device::Cpu,
            backbone_weights: None,
            resume: false,
            progress: false,
            stop_after_epoch: None,
        }
    }
}

/// The best epoch so far (`best.json`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BestRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// Validation mIoU in [0, 1].
    pub miou: f64,
}

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

/// Summary of a finished (or stopped) run.
#[derive(Debug, Clone)]
pub struct DeepLabTrainReport {
    /// Completed epochs.
    pub epochs: usize,
    /// Completed iterations.
    pub iterations: u64,
    /// The epochs trained in this call.
    pub epoch_stats: Vec<EpochStats>,
    /// The best epoch of the whole run.
    pub best: Option<BestRecord>,
    /// Mean wall-clock seconds per training step in this call.
    pub seconds_per_step: f64,
    /// Where the final weights were written (`None` when stopped early).
    pub weights: Option<PathBuf>,
}

/// The network of a run and its parameters.
pub struct DeepLabNetwork {
    /// The network.
    pub net: DeepLabV2,
    /// Every tensor (`backbone.*`, `classifier.*`), BN running statistics included.
    pub vars: VarMap,
}

impl DeepLabNetwork {
    /// Every tensor in the weights-file layout.
    pub fn weights(&self) -> Result<std::collections::HashMap<String, Tensor>> {
        var_tensors(&self.vars)
    }
}

/// Fails with a clear message when `cfg` needs ImageNet weights that `opts` does not give.
pub fn require_weights(cfg: &DeepLabTrainConfig, opts: &DeepLabTrainOptions) -> Result<()> {
    crate::config::require_backbone(
        cfg.requires_pretrained,
        opts.backbone_weights.is_some(),
        &cfg.preset,
        "trains DeepLabV2 from an ImageNet backbone",
        "resnet101-cd907fc2.pth",
    )
}

/// Builds the network: the backbone from torchvision weights when given (required when the
/// preset says so), otherwise torchvision's from-scratch initialisation (seeded); the head
/// N(0, 0.01²) with zero bias (seeded).
pub fn build_network(
    cfg: &DeepLabTrainConfig,
    opts: &DeepLabTrainOptions,
) -> Result<DeepLabNetwork> {
    require_weights(cfg, opts)?;
    let dev = &opts.device;
    let vm = match &opts.backbone_weights {
        Some(p) => {
            let sd = load_state_dict(p)?;
            check_resnet(&sd, &cfg.net.backbone, true)?;
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

fn read_best(out: &Path) -> Result<Option<BestRecord>> {
    let p = out.join(BEST_JSON);
    if !p.is_file() {
        return Ok(None);
    }
    let s = std::fs::read_to_string(&p).map_err(|e| TrainError::file(&p, e.to_string()))?;
    Ok(Some(
        serde_json::from_str(&s).map_err(|e| TrainError::file(&p, e.to_string()))?,
    ))
}

/// Writes `best.safetensors` then `best.json` when `miou` beats `best` (the first epoch
/// always does).
fn update_best(
    out: &Path,
    net: &DeepLabNetwork,
    best: &mut Option<BestRecord>,
    epoch: usize,
    miou: f64,
) -> Result<()> {
    if best.is_some_and(|b| miou <= b.miou) {
        return Ok(());
    }
    let b = BestRecord { epoch, miou };
    save_weights(&out.join(BEST_FILE), &net.weights()?)?;
    let json = serde_json::to_string_pretty(&b).map_err(|e| TrainError::State(e.to_string()))?;
    ssc_core::atomic::write(&out.join(BEST_JSON), json.as_bytes())?;
    *best = Some(b);
    Ok(())
}

/// Trains DeepLabV2 on `set`, validating on `val` after each epoch, and writes checkpoints,
/// `best.safetensors`/`best.json` and finally `deeplab.safetensors` under `opts.out`.
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
    let dev = &opts.device;
    let nets = build_network(cfg, opts)?;
    let mut sgd = optimiser(cfg, &nets.vars)?;
    let mut state = TrainState {
        epoch: 0,
        iteration: 0,
        seed: cfg.seed,
    };
    let mut best = None;
    if opts.resume
        && let Some(dir) = checkpoint::latest(&opts.out)?
    {
        let ck = checkpoint::load(&dir, dev)?;
        load_vars(&nets.vars, &ck.net, &dir.join("net.safetensors"))?;
        sgd.load_state(&ck.optim)?;
        state = ck.state;
        best = read_best(&opts.out)?.filter(|b| b.epoch <= state.epoch);
        tracing::info!(checkpoint = %dir.display(), epoch = state.epoch, "resumed");
        if best.is_none_or(|b| b.epoch < state.epoch) {
            // Killed between the checkpoint and the best files: judge that epoch now.
            let miou = evaluate(&nets.net, val, cfg.net.num_classes, cfg.batch_size, dev)?;
            update_best(&opts.out, &nets, &mut best, state.epoch, miou.miou())?;
        }
    }
    let config_json = checkpoint::write_run_config(&opts.out, cfg)?;
    let per_epoch = crate::data::batches_per_epoch(&*set, cfg.batch_size)?;
    let total = (per_epoch * cfg.epochs) as u64;
    let mut report = DeepLabTrainReport {
        epochs: state.epoch,
        iterations: state.iteration,
        epoch_stats: Vec::new(),
        best,
        seconds_per_step: 0.0,
        weights: None,
    };
    let (mut steps, mut step_time) = (0u64, 0.0f64);
    while state.epoch < cfg.epochs {
        if opts.stop_after_epoch.is_some_and(|s| state.epoch >= s) {
            return Ok((nets, report));
        }
        let epoch = state.epoch;
        let pb = epoch_bar(
            opts.progress,
            per_epoch,
            format!("deeplab epoch {}/{}", epoch + 1, cfg.epochs),
        );
        let mut sum = 0.0;
        for batch in load_epoch(set.clone(), cfg.seed, epoch, cfg.batch_size, 0) {
            let batch = batch?;
            let t0 = Instant::now();
            sgd.set_lr_factor(cfg.lr_factor(state.iteration, total));
            let loss = step(cfg, &nets.net, &mut sgd, &batch, dev)?;
            step_time += t0.elapsed().as_secs_f64();
            steps += 1;
            state.iteration += 1;
            sum += loss;
            pb.inc(1);
            pb.set_message(format!("loss {loss:.4} lr {:.5}", sgd.lrs()[0]));
        }
        pb.finish_and_clear();
        state.epoch += 1;
        let miou = evaluate(&nets.net, val, cfg.net.num_classes, cfg.batch_size, dev)?.miou();
        checkpoint::save(
            &opts.out,
            &CheckpointData {
                state,
                config: config_json.clone(),
                net: nets.weights()?,
                decoder: Default::default(),
                optim: sgd.state(),
            },
        )?;
        let stats = EpochStats {
            epoch: state.epoch,
            loss: sum / per_epoch as f64,
            val_miou: miou,
        };
        // After the checkpoint: a kill in between is repaired on resume (see below).
        update_best(&opts.out, &nets, &mut best, state.epoch, miou)?;
        tracing::info!(
            epoch = state.epoch,
            loss = stats.loss,
            val_miou = miou,
            best_epoch = best.map_or(0, |b| b.epoch),
            "DeepLab epoch done"
        );
        report.epoch_stats.push(stats);
        report.best = best;
        report.epochs = state.epoch;
        report.iterations = state.iteration;
        report.seconds_per_step = step_time / steps.max(1) as f64;
    }
    let weights = opts.out.join(WEIGHTS_FILE);
    save_weights(&weights, &nets.weights()?)?;
    report.weights = Some(weights);
    Ok((nets, report))
}

/// A trained DeepLabV2 from a weights file in the layout of [`WEIGHTS_FILE`], on the CPU.
pub fn load_deeplab(weights: &Path, cfg: &ssc_models::config::DeepLabConfig) -> Result<DeepLabV2> {
    let tensors = candle_core::safetensors::load(weights, &Device::Cpu)
        .map_err(|e| TrainError::file(weights, format!("cannot read DeepLab weights: {e}")))?;
    let vb = candle_nn::VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    DeepLabV2::new(cfg, vb).map_err(|e| TrainError::file(weights, format!("not a DeepLabV2: {e}")))
}
