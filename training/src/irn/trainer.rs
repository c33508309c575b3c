//! The IRN training loop (§4.6) with per-epoch checkpoints and exact resume.
//!
//! Per iteration: poly learning rate → frozen backbone features (detached) → edge branch →
//! `sigmoid` → path affinities → §4.5 loss → backward → SGD step (edge branch only:
//! lr0 0.1, L2 decay 1e-4, momentum per the config switch).
//!
//! Weights files (checkpoint `net.safetensors` and the final `irn.safetensors`) hold the
//! whole network: the frozen backbone under `backbone.` (torchvision names) and the edge
//! branch at the root (`fc_edge1.0.weight`, …), the layout [`Irn::new`] reads.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::VarMap;
use indicatif::ProgressBar;
use ssc_models::import::{StateDict, check_resnet, load_state_dict};
use ssc_models::init::SeededInit;
use ssc_models::irn::Irn;

use super::config::IrnTrainConfig;
use super::data::{IrnBatch, IrnTrainSet};
use super::loss::{PathGather, edge_loss_fused, scalar};
use crate::checkpoint::{self, CheckpointData, TrainState, load_vars, var_tensors};
use crate::data::load_epoch;
use crate::error::{Result, TrainError};
use crate::optim::{ParamGroup, Sgd, SgdConfig};
use crate::schedule::poly_factor;

/// Name of the final weights file in the output folder.
pub const WEIGHTS_FILE: &str = "irn.safetensors";

/// Prefix of the backbone's tensors in IRN weights files.
pub const BACKBONE_PREFIX: &str = "backbone.";

/// Run-time choices that do not change the result.
#[derive(Debug, Clone)]
pub struct IrnTrainOptions {
    /// Output folder (checkpoints, final weights, config).
    pub out: PathBuf,
    /// Compute device.
    pub device: Device,
    /// torchvision ResNet weights for the frozen backbone (required by the VOC/COCO presets).
    pub backbone_weights: Option<PathBuf>,
    /// Continue from the latest checkpoint in `out`.
    pub resume: bool,
    /// Show a progress bar.
    pub progress: bool,
    /// Stop after this many completed epochs (simulates a kill; tests and time-boxed runs).
    pub stop_after_epoch: Option<usize>,
}

impl IrnTrainOptions {
    /// CPU, no weights, no resume, no progress bar.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        IrnTrainOptions {
            out: out.into(),
            device: Device::Cpu,
            backbone_weights: None,
            resume: false,
            progress: false,
            stop_after_epoch: None,
        }
    }
}

/// Loss terms of one iteration (or their epoch means).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct IrnLossTerms {
    /// L_bgpos.
    pub bg_pos: f64,
    /// L_fgpos.
    pub fg_pos: f64,
    /// L_neg.
    pub neg: f64,
    /// `(L_pos + L_neg)/2`.
    pub total: f64,
}

/// Summary of a finished (or stopped) run.
#[derive(Debug, Clone)]
pub struct IrnTrainReport {
    /// Completed epochs.
    pub epochs: usize,
    /// Completed iterations.
    pub iterations: u64,
    /// Mean loss terms of each epoch trained in this call.
    pub epoch_losses: Vec<IrnLossTerms>,
    /// Mean wall-clock seconds per training step in this call.
    pub seconds_per_step: f64,
    /// Where the final weights were written (`None` when stopped early).
    pub weights: Option<PathBuf>,
}

/// The network of a run.
pub struct IrnNetworks {
    /// Frozen backbone + edge branch.
    pub net: Irn,
    /// The backbone's tensors, named with [`BACKBONE_PREFIX`].
    pub backbone: HashMap<String, Tensor>,
    /// The trainable edge-branch parameters (`fc_edge*`).
    pub edge_vars: VarMap,
}

impl IrnNetworks {
    /// Every tensor of the network in the weights-file layout (see the module docs).
    pub fn weights(&self) -> Result<HashMap<String, Tensor>> {
        let mut m = var_tensors(&self.edge_vars)?;
        m.extend(self.backbone.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(m)
    }
}

/// Builds the network: the backbone from torchvision weights when given (required when the
/// preset says so), otherwise seeded random initialisation; the edge branch seeded.
pub fn build_networks(cfg: &IrnTrainConfig, opts: &IrnTrainOptions) -> Result<IrnNetworks> {
    let dev = &opts.device;
    let bb = match &opts.backbone_weights {
        Some(p) => {
            let sd = load_state_dict(p)?;
            // A trained ssc CAM network also serves: its backbone has torchvision names and
            // its 1×1 classifier is dropped like an ImageNet `fc`.
            let path = sd.path().to_path_buf();
            let mut tensors = sd.into_tensors();
            tensors.retain(|k, _| !k.starts_with("classifier."));
            let sd = StateDict::from_tensors(path, tensors);
            check_resnet(&sd, &cfg.net.backbone, true)?;
            crate::init::imagenet_vars(&sd, dev, "")?
        }
        None => {
            crate::config::require_backbone(
                cfg.requires_pretrained,
                false,
                &cfg.preset,
                "trains IRN on a frozen ImageNet backbone",
                "resnet50-19c8e357.pth",
            )?;
            VarMap::new()
        }
    };
    let edge_vars = VarMap::new();
    let net = Irn::from_parts(
        &cfg.net,
        SeededInit::var_builder(&bb, cfg.seed ^ 0xBAC0_BB0E, DType::F32, dev),
        SeededInit::var_builder(&edge_vars, cfg.seed, DType::F32, dev),
    )?;
    let backbone = var_tensors(&bb)?
        .into_iter()
        .map(|(k, v)| (format!("{BACKBONE_PREFIX}{k}"), v.detach()))
        .collect();
    Ok(IrnNetworks {
        net,
        backbone,
        edge_vars,
    })
}

/// Edge variables sorted by name (a stable order for the optimiser state).
fn sorted_vars(vm: &VarMap) -> Result<Vec<Var>> {
    checkpoint::sorted_vars(vm, |_| true)
}

/// One training step; returns the loss terms.
fn step(
    cfg: &IrnTrainConfig,
    nets: &IrnNetworks,
    gather: &PathGather,
    sgd: &mut Sgd,
    batch: &IrnBatch,
    factor: f64,
    dev: &Device,
) -> Result<IrnLossTerms> {
    let (n, c) = (batch.len(), cfg.data.crop);
    let x = Tensor::from_slice(&batch.images, (n, 3, c, c), dev)?;
    sgd.set_lr_factor(factor);
    let logits = nets.net.forward(&x)?;
    let refs: Vec<_> = batch.targets.iter().collect();
    let l = edge_loss_fused(&logits, gather, &refs)?;
    let terms = IrnLossTerms {
        bg_pos: scalar(&l.bg_pos)?,
        fg_pos: scalar(&l.fg_pos)?,
        neg: scalar(&l.neg)?,
        total: scalar(&l.total)?,
    };
    if !terms.total.is_finite() {
        return Err(TrainError::State(format!("IRN loss became {terms:?}")));
    }
    sgd.step(&l.total.backward()?)?;
    Ok(terms)
}

/// Reads the config saved with the latest checkpoint in `out` (for `--resume`).
pub fn saved_config(out: &Path) -> Result<Option<IrnTrainConfig>> {
    checkpoint::saved_config(out)
}

pub use crate::checkpoint::save_weights;

fn bar(opts: &IrnTrainOptions, len: usize, prefix: String) -> ProgressBar {
    checkpoint::epoch_bar(opts.progress, len, prefix)
}

/// Trains the edge branch on `set` and writes checkpoints and `irn.safetensors` under
/// `opts.out`.
///
/// With `opts.resume` and a checkpoint in `opts.out`, the edge weights, optimiser state and
/// counters are restored and training continues at the next epoch, giving the same weights
/// as an uninterrupted run (same device and thread count).
pub fn train(
    cfg: &IrnTrainConfig,
    set: Arc<IrnTrainSet>,
    opts: &IrnTrainOptions,
) -> Result<(IrnNetworks, IrnTrainReport)> {
    cfg.validate()?;
    let dev = &opts.device;
    let nets = build_networks(cfg, opts)?;
    let g = cfg.grid();
    let gather = PathGather::new(set.path_index(), g, g, dev)?;
    let mut sgd = Sgd::new(
        vec![ParamGroup {
            name: "edge".into(),
            vars: sorted_vars(&nets.edge_vars)?,
            lr: cfg.lr,
            weight_decay: cfg.weight_decay,
        }],
        SgdConfig {
            momentum: cfg.effective_momentum(),
        },
    )?;
    let mut state = TrainState {
        epoch: 0,
        iteration: 0,
        seed: cfg.seed,
    };
    if opts.resume
        && let Some(dir) = checkpoint::latest(&opts.out)?
    {
        let ck = checkpoint::load(&dir, dev)?;
        load_vars(&nets.edge_vars, &ck.net, &dir.join("net.safetensors"))?;
        sgd.load_state(&ck.optim)?;
        state = ck.state;
        tracing::info!(checkpoint = %dir.display(), epoch = state.epoch, "resumed");
    }
    let config_json = checkpoint::write_run_config(&opts.out, cfg)?;
    let per_epoch = crate::data::batches_per_epoch(&*set, cfg.batch_size)?;
    let total = (per_epoch * cfg.epochs) as u64;
    let mut report = IrnTrainReport {
        epochs: state.epoch,
        iterations: state.iteration,
        epoch_losses: Vec::new(),
        seconds_per_step: 0.0,
        weights: None,
    };
    let (mut steps, mut step_time) = (0u64, 0.0f64);
    while state.epoch < cfg.epochs {
        if opts.stop_after_epoch.is_some_and(|s| state.epoch >= s) {
            return Ok((nets, report));
        }
        let epoch = state.epoch;
        let pb = bar(
            opts,
            per_epoch,
            format!("irn epoch {}/{}", epoch + 1, cfg.epochs),
        );
        let mut sum = IrnLossTerms::default();
        for batch in load_epoch(set.clone(), cfg.seed, epoch, cfg.batch_size, 0) {
            let batch = batch?;
            let t0 = Instant::now();
            let factor = poly_factor(state.iteration, total, cfg.poly_power);
            let t = step(cfg, &nets, &gather, &mut sgd, &batch, factor, dev)?;
            step_time += t0.elapsed().as_secs_f64();
            steps += 1;
            state.iteration += 1;
            sum.bg_pos += t.bg_pos;
            sum.fg_pos += t.fg_pos;
            sum.neg += t.neg;
            sum.total += t.total;
            pb.inc(1);
            pb.set_message(format!(
                "loss {:.4} (bg {:.4} fg {:.4} neg {:.4}) lr {:.4}",
                t.total,
                t.bg_pos,
                t.fg_pos,
                t.neg,
                sgd.lrs()[0]
            ));
        }
        pb.finish_and_clear();
        let d = per_epoch as f64;
        let mean = IrnLossTerms {
            bg_pos: sum.bg_pos / d,
            fg_pos: sum.fg_pos / d,
            neg: sum.neg / d,
            total: sum.total / d,
        };
        tracing::info!(
            epoch = epoch + 1,
            loss = mean.total,
            bg_pos = mean.bg_pos,
            fg_pos = mean.fg_pos,
            neg = mean.neg,
            "IRN epoch done"
        );
        report.epoch_losses.push(mean);
        state.epoch += 1;
        checkpoint::save(
            &opts.out,
            &CheckpointData {
                state,
                config: config_json.clone(),
                net: nets.weights()?,
                decoder: HashMap::new(),
                optim: sgd.state(),
            },
        )?;
        report.epochs = state.epoch;
        report.iterations = state.iteration;
        report.seconds_per_step = step_time / steps.max(1) as f64;
    }
    let weights = opts.out.join(WEIGHTS_FILE);
    save_weights(&weights, &nets.weights()?)?;
    report.weights = Some(weights);
    Ok((nets, report))
}

/// A trained IRN from a weights file in the layout of [`WEIGHTS_FILE`] (backbone under
/// [`BACKBONE_PREFIX`], edge branch at the root), on the CPU.
pub fn load_irn(weights: &Path, cfg: &ssc_models::config::IrnConfig) -> Result<Irn> {
    let tensors = candle_core::safetensors::load(weights, &Device::Cpu)
        .map_err(|e| TrainError::file(weights, format!("cannot read IRN weights: {e}")))?;
    let vb = candle_nn::VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    Irn::new(cfg, vb).map_err(|e| TrainError::file(weights, format!("not an IRN: {e}")))
}

/// Edge logits of `net` (CPU) for a normalised image batch `N×3×H×W` (row-major); returns the
/// `N×1×⌈H/4⌉×⌈W/4⌉` logits row-major.
pub fn edge_logits(net: &Irn, images: &[f32], shape: [usize; 4]) -> Result<Vec<f32>> {
    let x = Tensor::from_slice(images, &shape, &Device::Cpu)?;
    Ok(net.forward(&x)?.flatten_all()?.to_vec1()?)
}
