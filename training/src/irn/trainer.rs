//! The IRN training step (§4.6), run by the shared epoch loop ([`crate::run`]: per-epoch
//! checkpoints and exact resume).
//!
//! Per iteration: poly learning rate → frozen backbone features (detached) → edge branch →
//! `sigmoid` → path affinities → §4.5 loss → backward → SGD step (edge branch only:
//! lr0 0.1, L2 decay 1e-4, momentum per the config switch).
//!
//! Weights files (checkpoint `net.safetensors` and the final `irn.safetensors`) hold the
//! whole network: the frozen backbone under `backbone.` (torchvision names) and the edge
//! branch at the root (`fc_edge1.0.weight`, …), the layout [`Irn::new`] reads.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarMap;
use ssc_models::import::{StateDict, check_backbone, load_state_dict};
use ssc_models::init::SeededInit;
use ssc_models::irn::Irn;

use super::config::IrnTrainConfig;
use super::data::{IrnBatch, IrnTrainSet};
use super::loss::{PathGather, edge_loss_fused, scalar};
use crate::checkpoint::{self, var_tensors};
use crate::error::{Result, TrainError};
use crate::optim::{ParamGroup, Sgd, SgdConfig};
use crate::run::{BestRecord, LossSum, RunReport, TrainOptions, Trainer};
use crate::schedule::poly_factor;

/// Name of the final weights file in the output folder.
pub const WEIGHTS_FILE: &str = "irn.safetensors";

/// Prefix of the backbone's tensors in IRN weights files.
pub const BACKBONE_PREFIX: &str = "backbone.";

/// Run-time choices that do not change the result (those of every trainer).
pub type IrnTrainOptions = TrainOptions;

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

impl LossSum for IrnLossTerms {
    const NAMES: &'static [&'static str] = &["bg_pos", "fg_pos", "neg", "total"];
    fn terms(&mut self) -> Vec<&mut f64> {
        vec![
            &mut self.bg_pos,
            &mut self.fg_pos,
            &mut self.neg,
            &mut self.total,
        ]
    }
}

/// Summary of a finished (or stopped) run: the mean loss terms of each epoch.
pub type IrnTrainReport = RunReport<IrnLossTerms>;

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
            check_backbone(&sd, &cfg.net.backbone, true)?;
            crate::init::imagenet_vars(&sd, dev, "")?
        }
        None => {
            crate::config::require_backbone(
                cfg.requires_pretrained,
                false,
                &cfg.preset,
                "trains IRN on a frozen ImageNet backbone",
                "resnet50-19c8e357.pth",
                &cfg.net.backbone,
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

/// An IRN run as the epoch loop drives it.
struct IrnRun<'a> {
    cfg: &'a IrnTrainConfig,
    set: Arc<IrnTrainSet>,
    nets: IrnNetworks,
    gather: PathGather,
    sgd: Sgd,
    device: Device,
}

impl Trainer for IrnRun<'_> {
    type Config = IrnTrainConfig;
    type Data = IrnTrainSet;
    type Optimiser = Sgd;
    type Terms = IrnLossTerms;
    type Epoch = IrnLossTerms;
    const WEIGHTS_FILE: &'static str = WEIGHTS_FILE;

    fn config(&self) -> &IrnTrainConfig {
        self.cfg
    }

    fn data(&self) -> &Arc<IrnTrainSet> {
        &self.set
    }

    fn name(&self) -> &str {
        "irn"
    }

    fn step(
        &mut self,
        batch: &IrnBatch,
        _: usize,
        iteration: u64,
        total: u64,
    ) -> Result<IrnLossTerms> {
        let factor = poly_factor(iteration, total, self.cfg.poly_power);
        let (cfg, nets, gather) = (self.cfg, &self.nets, &self.gather);
        step(
            cfg,
            nets,
            gather,
            &mut self.sgd,
            batch,
            factor,
            &self.device,
        )
    }

    fn message(&self, t: &IrnLossTerms) -> String {
        format!(
            "loss {:.4} (bg {:.4} fg {:.4} neg {:.4}) lr {:.4}",
            t.total,
            t.bg_pos,
            t.fg_pos,
            t.neg,
            self.sgd.lrs()[0]
        )
    }

    fn net_vars(&self) -> &VarMap {
        // Checkpoints also hold the frozen backbone; only the edge branch is restored.
        &self.nets.edge_vars
    }

    fn optimiser(&mut self) -> &mut Sgd {
        &mut self.sgd
    }

    fn weights(&self) -> Result<HashMap<String, Tensor>> {
        self.nets.weights()
    }

    fn epoch_done(
        &self,
        epoch: usize,
        mean: IrnLossTerms,
        _val: Option<f64>,
        _best: Option<BestRecord>,
    ) -> IrnLossTerms {
        tracing::info!(
            epoch,
            loss = mean.total,
            bg_pos = mean.bg_pos,
            fg_pos = mean.fg_pos,
            neg = mean.neg,
            "IRN epoch done"
        );
        mean
    }
}

/// Trains the edge branch on `set` and writes checkpoints and `irn.safetensors` under
/// `opts.out` through the shared epoch loop ([`crate::run::run`]).
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
    let sgd = Sgd::new(
        vec![ParamGroup {
            name: "edge".into(),
            vars: checkpoint::sorted_vars(&nets.edge_vars, |_| true)?,
            lr: cfg.lr,
            weight_decay: cfg.weight_decay,
        }],
        SgdConfig {
            momentum: cfg.effective_momentum(),
        },
    )?;
    let mut run = IrnRun {
        cfg,
        set,
        nets,
        gather,
        sgd,
        device: dev.clone(),
    };
    let report = crate::run::run(&mut run, opts)?;
    Ok((run.nets, report))
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
