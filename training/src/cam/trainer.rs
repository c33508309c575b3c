//! The SSC classifier's training step (§2.10) with the ablation switches of paper Table VII,
//! run by the shared epoch loop ([`crate::run`]: per-epoch checkpoints and exact resume).
//!
//! Per iteration: poly learning rates (§2.8) → training forward (DRS after layer2 and in
//! layer4 unless the variant is `baseline`) → `L = L_cls + β_p·L_p + β_a·L_a` (L_p with the
//! decoder when the variant has CDR, L_a after the warm-up epochs when it has ASM) → one
//! backward → SGD step (backbone lr0, classifier 10×, L2 decay; or one Adam when the config
//! sets `net_adam`) and the decoder's Adam step.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarMap;
use ssc_models::cam::{CamNet, CamTrainOutput};
use ssc_models::config::{Activation, CamNetConfig, ResNetOptions};
use ssc_models::config::{BackboneConfig, PerceptualConfig};
use ssc_models::decoder::Decoder;
use ssc_models::efficientnet::EfficientNet;
use ssc_models::import::infer_backbone;
use ssc_models::import::{check_params, load_state_dict, model_params};
use ssc_models::init::SeededInit;
use ssc_models::vgg::{FeatureNet, PerceptualLoss, Vgg};

use super::config::{CamTrainConfig, PerceptualNet, VggInit};
use super::data::{Batch, TrainSet};
use crate::checkpoint::{self, var_tensors};
use crate::error::{Result, TrainError};
use crate::losses::{alignment_loss, multilabel_soft_margin};
use crate::optim::{Adam, BackboneHead, OptimiserState, Sgd};
use crate::run::{BestRecord, LossSum, RunReport, Trainer};
pub use crate::run::{TrainOptions, device};
use crate::schedule::warmup_poly_factor;

/// Name of the final weights file in the output folder.
pub const WEIGHTS_FILE: &str = "cam_net.safetensors";

/// Loss terms of one iteration (or their epoch means).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossTerms {
    /// L_cls.
    pub cls: f64,
    /// L_p (0 without CDR).
    pub perceptual: f64,
    /// L_a (0 without ASM or during warm-up).
    pub align: f64,
    /// The weighted total.
    pub total: f64,
}

impl LossSum for LossTerms {
    const NAMES: &'static [&'static str] = &["cls", "perceptual", "align", "total"];
    fn terms(&mut self) -> Vec<&mut f64> {
        vec![
            &mut self.cls,
            &mut self.perceptual,
            &mut self.align,
            &mut self.total,
        ]
    }
}

/// Summary of a finished (or stopped) run: the mean loss terms of each epoch.
pub type TrainReport = RunReport<LossTerms>;

/// The networks of a run.
pub struct Networks {
    /// Classification / CAM network.
    pub net: CamNet,
    /// Its parameters (torchvision names + `classifier.weight`).
    pub net_vars: VarMap,
    /// Decoder and its parameters (variants with CDR).
    pub decoder: Option<(Decoder, VarMap)>,
    /// Perceptual loss (variants with CDR).
    pub perceptual: Option<PerceptualLoss>,
}

/// The CAM network of `cfg`'s variant; without DRS, layer4 ends with ReLU and the layer2 DRS
/// becomes δ = 1, which is the identity on the (post-ReLU) layer2 output.
pub fn build_cam_net(cfg: &CamTrainConfig, vb: candle_nn::VarBuilder) -> Result<CamNet> {
    if cfg.variant.drs() {
        return Ok(CamNet::new(&cfg.net, vb)?);
    }
    let net_cfg = CamNetConfig {
        drs_delta: 1.0,
        ..cfg.net.clone()
    };
    let opts = ResNetOptions {
        layer4_act: Activation::Relu,
        ..ResNetOptions::cam_for(&net_cfg)
    };
    Ok(CamNet::with_options(&net_cfg, &opts, vb)?)
}

/// torchvision's ResNet initialisation for from-scratch training: conv weights Kaiming-normal
/// (fan_out, ReLU gain), BN γ = 1, β = 0 (the model's own hints follow PyTorch's generic
/// conv default, which torchvision overrides). Inserted into `vm` before the model is built.
fn torchvision_init(cfg: &CamTrainConfig, vm: &VarMap, dev: &Device) -> Result<()> {
    crate::init::kaiming_fan_out_init(
        vm,
        cfg.seed,
        dev,
        |name| name.starts_with("classifier"),
        |vb| build_cam_net(cfg, vb).map(|_| ()),
    )
}

/// Fails with a clear message when `cfg` needs ImageNet weights that `opts` does not give
/// (checked before any data is loaded).
pub fn require_weights(cfg: &CamTrainConfig, opts: &TrainOptions) -> Result<()> {
    crate::config::require_backbone(
        cfg.requires_pretrained,
        opts.backbone_weights.is_some(),
        &cfg.preset,
        "trains from ImageNet weights",
        "resnet50-19c8e357.pth",
        &cfg.net.backbone,
    )?;
    if cfg.requires_pretrained
        && cfg.variant.cdr()
        && opts.vgg_weights.is_none()
        && cfg.perceptual_net != PerceptualNet::EfficientNetLite
    {
        return Err(TrainError::Config(format!(
            "the `{}` preset needs the ImageNet VGG-19 for its perceptual loss: pass \
             --vgg-weights (torchvision vgg19-dcbb9e9d.pth)",
            cfg.preset
        )));
    }
    Ok(())
}

/// Builds the networks: ImageNet weights when given (required when the preset says so),
/// otherwise seeded initialisation.
pub fn build_networks(cfg: &CamTrainConfig, opts: &TrainOptions) -> Result<Networks> {
    require_weights(cfg, opts)?;
    let dev = &opts.device;
    let net_vars = match &opts.backbone_weights {
        Some(p) => {
            let sd = load_state_dict(p)?;
            // An ImageNet checkpoint has no classifier (it is initialised here); a saved CAM
            // network has one, and then it must fit.
            let expected = model_params(|vb| {
                build_cam_net(cfg, vb).map_err(|e| candle_core::Error::Msg(e.to_string()))
            })?
            .into_iter()
            .filter(|(k, _)| !k.starts_with("classifier.") || sd.get(k).is_some())
            .collect();
            check_params(&sd, &expected, &["fc.", "_fc."])?;
            crate::init::imagenet_vars(&sd, dev, "")?
        }
        None => {
            let vm = VarMap::new();
            torchvision_init(cfg, &vm, dev)?;
            vm
        }
    };
    let vb = SeededInit::var_builder(&net_vars, cfg.seed, DType::F32, dev);
    let net = build_cam_net(cfg, vb)?;
    let (decoder, perceptual) = if cfg.variant.cdr() {
        let dvm = VarMap::new();
        let dvb = SeededInit::var_builder(&dvm, cfg.seed ^ 0xDEC0, DType::F32, dev);
        let dec = Decoder::new(&cfg.decoder, dvb)?;
        let features = perceptual_features(cfg, opts)?;
        (Some((dec, dvm)), Some(features))
    } else {
        (None, None)
    };
    Ok(Networks {
        net,
        net_vars,
        decoder,
        perceptual,
    })
}

/// CDR's perceptual loss (§2.5): the ImageNet VGG-19 when `--vgg-weights` is given; else, by
/// `cfg.perceptual_net`, a random VGG (`vgg_init`) or the ImageNet EfficientNet-Lite's
/// features.
fn perceptual_features(cfg: &CamTrainConfig, opts: &TrainOptions) -> Result<PerceptualLoss> {
    let dev = &opts.device;
    if let Some(p) = &opts.vgg_weights {
        let vgg = Vgg::new(&cfg.vgg, load_state_dict(p)?.var_builder(DType::F32, dev))?;
        return Ok(PerceptualLoss::new(vgg, cfg.perceptual.clone())?);
    }
    match cfg.perceptual_net {
        PerceptualNet::Vgg => {
            // Random-feature perceptual loss (see the config docs): seeded, frozen.
            let vvm = VarMap::new();
            let seed = cfg.seed ^ 0x7667;
            if cfg.vgg_init == VggInit::Torchvision {
                crate::init::kaiming_fan_out_init_with(
                    &vvm,
                    seed,
                    dev,
                    |_| false,
                    true,
                    |vb| Vgg::new(&cfg.vgg, vb).map(|_| ()).map_err(Into::into),
                )?;
            }
            let vvb = SeededInit::var_builder(&vvm, seed, DType::F32, dev);
            Ok(PerceptualLoss::new(
                Vgg::new(&cfg.vgg, vvb)?,
                cfg.perceptual.clone(),
            )?)
        }
        PerceptualNet::EfficientNetLite => {
            let path = opts
                .perceptual_weights
                .as_ref()
                .or(opts.backbone_weights.as_ref())
                .ok_or_else(|| {
                    TrainError::Config(
                        "the EfficientNet-Lite perceptual loss needs ImageNet weights: pass \
                         --backbone-weights or --perceptual-weights \
                         (weights/efficientnet-lite0.safetensors, scripts/get-weights.sh)"
                            .into(),
                    )
                })?;
            let sd = load_state_dict(path)?;
            let BackboneConfig::EfficientNetLite(eff) =
                infer_backbone(&sd, "", [1, 2, 2, 1], [1; 4], 32)?
            else {
                return Err(TrainError::file(
                    path,
                    "the EfficientNet-Lite perceptual loss needs an EfficientNet-Lite \
                     checkpoint (package names `_conv_stem.weight`, …)",
                ));
            };
            let frozen = ResNetOptions {
                frozen_stages: usize::MAX,
                ..ResNetOptions::default()
            };
            let net = EfficientNet::new(&eff, &frozen, sd.var_builder(DType::F32, dev))?;
            Ok(PerceptualLoss::with_features(
                FeatureNet::EfficientNet(Box::new(net)),
                PerceptualConfig::efficientnet_lite(),
            )?)
        }
    }
}

/// The trainable parameters: BN running statistics are buffers.
fn is_param(name: &str) -> bool {
    !name.contains("running_") && !name.ends_with("num_batches_tracked")
}

/// The classification network's optimiser: the SGD groups of §2.8, or one Adam when the
/// config asks for it (`net_adam`).
#[derive(Debug)]
pub enum NetOptimiser {
    /// Backbone lr0 and classifier lr0 × `classifier_lr_mult`, momentum, L2 decay.
    Sgd(Sgd),
    /// Adam over every parameter (state keys `net_adam.*`).
    Adam(Adam),
}

/// The optimisers of one run: the network's and, with CDR, the decoder's Adam.
#[derive(Debug)]
pub struct Optimisers {
    /// The classification network's.
    pub net: NetOptimiser,
    /// The reconstruction decoder's (variants with CDR).
    pub decoder: Option<Adam>,
}

impl Optimisers {
    /// Scales every initial learning rate by `factor` (schedule and warm-up).
    pub fn set_lr_factor(&mut self, factor: f64) {
        match &mut self.net {
            NetOptimiser::Sgd(o) => o.set_lr_factor(factor),
            NetOptimiser::Adam(o) => o.set_lr_factor(factor),
        }
        if let Some(a) = self.decoder.as_mut() {
            a.set_lr_factor(factor);
        }
    }

    /// The network's current (backbone) learning rate, for the progress bar.
    pub fn net_lr(&self) -> f64 {
        match &self.net {
            NetOptimiser::Sgd(o) => o.lrs()[0],
            NetOptimiser::Adam(o) => o.lr(),
        }
    }

    /// One update of every optimiser.
    pub fn step(&mut self, grads: &candle_core::backprop::GradStore) -> Result<()> {
        match &mut self.net {
            NetOptimiser::Sgd(o) => o.step(grads)?,
            NetOptimiser::Adam(o) => o.step(grads)?,
        }
        if let Some(a) = self.decoder.as_mut() {
            a.step(grads)?;
        }
        Ok(())
    }

    /// All optimiser state in one map, for a checkpoint.
    pub fn state(&self) -> Result<std::collections::HashMap<String, Tensor>> {
        let mut m = match &self.net {
            NetOptimiser::Sgd(o) => o.state(),
            NetOptimiser::Adam(o) => o.state()?,
        };
        if let Some(a) = &self.decoder {
            m.extend(a.state()?);
        }
        Ok(m)
    }

    /// Restores the state written by [`Optimisers::state`].
    pub fn load_state(&mut self, state: &std::collections::HashMap<String, Tensor>) -> Result<()> {
        match &mut self.net {
            NetOptimiser::Sgd(o) => o.load_state(state)?,
            NetOptimiser::Adam(o) => o.load_state(state)?,
        }
        if let Some(a) = self.decoder.as_mut() {
            a.load_state(state)?;
        }
        Ok(())
    }
}

impl OptimiserState for Optimisers {
    fn save(&self) -> Result<HashMap<String, Tensor>> {
        self.state()
    }
    fn restore(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        self.load_state(state)
    }
}

/// The network's optimiser (SGD groups of §2.8, or `net_adam`) and the decoder's Adam.
pub fn optimisers(cfg: &CamTrainConfig, nets: &Networks) -> Result<Optimisers> {
    let net = match cfg.net_adam {
        Some(a) => NetOptimiser::Adam(Adam::with_prefix(
            checkpoint::sorted_vars(&nets.net_vars, is_param)?,
            a,
            "net_adam",
        )),
        None => NetOptimiser::Sgd(
            BackboneHead {
                lr: cfg.lr,
                head_mult: cfg.classifier_lr_mult,
                weight_decay: cfg.weight_decay,
                momentum: cfg.effective_momentum(),
            }
            .sgd(&nets.net_vars, is_param)?,
        ),
    };
    let decoder = match &nets.decoder {
        Some((_, vm)) => Some(Adam::new(checkpoint::sorted_vars(vm, is_param)?, cfg.adam)),
        None => None,
    };
    Ok(Optimisers { net, decoder })
}

/// The forward pass and loss terms of one iteration, before the backward pass.
#[derive(Debug)]
pub struct StepForward {
    /// The weighted total `L_cls + β_p·L_p + β_a·L_a` (with autograd history).
    pub loss: Tensor,
    /// Its terms as numbers.
    pub terms: LossTerms,
    /// The classifier's outputs: pre-ReLU CAM features F and class scores.
    pub out: CamTrainOutput,
    /// The decoder's reconstruction (variants with CDR).
    pub reconstruction: Option<Tensor>,
}

/// Forward pass and losses of one iteration (§2.10): the variant's terms, the alignment term
/// only from epoch `asm_warmup_epochs` on.
pub fn forward_losses(
    cfg: &CamTrainConfig,
    nets: &Networks,
    batch: &Batch,
    epoch: usize,
    dev: &Device,
) -> Result<StepForward> {
    let (n, (h, w)) = (batch.len, batch.size);
    let x = Tensor::from_slice(&batch.images, (n, 3, h, w), dev)?;
    let out = nets.net.forward_train(&x)?;
    losses_from_outputs(cfg, nets, &x, out, batch, epoch)
}

/// The loss terms of an iteration from the classifier's outputs `out` on the images `x` of
/// `batch` (the part of [`forward_losses`] after the backbone; separate so that gradients
/// with respect to F can be taken).
pub fn losses_from_outputs(
    cfg: &CamTrainConfig,
    nets: &Networks,
    x: &Tensor,
    out: CamTrainOutput,
    batch: &Batch,
    epoch: usize,
) -> Result<StepForward> {
    let y = Tensor::from_slice(&batch.labels, (batch.len, cfg.net.num_classes), x.device())?;
    let l_cls = multilabel_soft_margin(&out.scores, &y)?;
    let mut terms = LossTerms {
        cls: l_cls.to_scalar::<f32>()? as f64,
        ..LossTerms::default()
    };
    let mut loss = l_cls;
    let mut reconstruction = None;
    if let (Some((dec, _)), Some(perc)) = (&nets.decoder, &nets.perceptual) {
        let x_hat = dec.forward(&out.features)?;
        let l_p = perc.forward(&x_hat, x)?;
        terms.perceptual = l_p.to_scalar::<f32>()? as f64;
        loss = (loss + (l_p * cfg.beta_p)?)?;
        reconstruction = Some(x_hat);
    }
    if cfg.variant.asm() && epoch >= cfg.asm_warmup_epochs {
        let asm = alignment_loss(
            &out.features,
            &batch.labels,
            &batch.superpixels,
            batch.size,
            &cfg.asm_config(),
        )?;
        terms.align = asm.loss.to_scalar::<f32>()? as f64;
        loss = (loss + (asm.loss * cfg.beta_a)?)?;
    }
    terms.total = loss.to_scalar::<f32>()? as f64;
    if !terms.total.is_finite() {
        return Err(TrainError::State(format!(
            "loss became {} at epoch {epoch}: {terms:?}",
            terms.total
        )));
    }
    Ok(StepForward {
        loss,
        terms,
        out,
        reconstruction,
    })
}

/// One training step: learning rates at poly factor `factor`, [`forward_losses`], one
/// backward pass, both optimisers' updates. Public for the step-cost bench and the
/// trajectory parity test; [`train`] is the entry point for training.
#[allow(clippy::too_many_arguments)]
pub fn step(
    cfg: &CamTrainConfig,
    nets: &Networks,
    opt: &mut Optimisers,
    batch: &Batch,
    epoch: usize,
    factor: f64,
    dev: &Device,
) -> Result<LossTerms> {
    opt.set_lr_factor(factor);
    let fwd = forward_losses(cfg, nets, batch, epoch, dev)?;
    let grads = fwd.loss.backward()?;
    opt.step(&grads)?;
    Ok(fwd.terms)
}

/// Reads the config saved by a previous run in `out` (for `--resume`).
pub fn saved_config(out: &Path) -> Result<Option<CamTrainConfig>> {
    checkpoint::saved_config(out)
}

/// A classifier run as the epoch loop drives it.
struct CamRun<'a> {
    cfg: &'a CamTrainConfig,
    set: Arc<TrainSet>,
    nets: Networks,
    opt: Optimisers,
    device: Device,
}

impl Trainer for CamRun<'_> {
    type Config = CamTrainConfig;
    type Data = TrainSet;
    type Optimiser = Optimisers;
    type Terms = LossTerms;
    type Epoch = LossTerms;
    const WEIGHTS_FILE: &'static str = WEIGHTS_FILE;

    fn config(&self) -> &CamTrainConfig {
        self.cfg
    }

    fn data(&self) -> &Arc<TrainSet> {
        &self.set
    }

    fn name(&self) -> &str {
        self.cfg.variant.name()
    }

    fn step(
        &mut self,
        batch: &Batch,
        epoch: usize,
        iteration: u64,
        total: u64,
    ) -> Result<LossTerms> {
        let cfg = self.cfg;
        let factor = warmup_poly_factor(iteration, total, cfg.poly_power, cfg.warmup_iters as u64);
        let t = step(
            cfg,
            &self.nets,
            &mut self.opt,
            batch,
            epoch,
            factor,
            &self.device,
        )?;
        if iteration.is_multiple_of(25) {
            tracing::debug!(iteration, cls = t.cls, total = t.total, factor, "step");
        }
        Ok(t)
    }

    fn message(&self, t: &LossTerms) -> String {
        format!(
            "cls {:.4} p {:.4} a {:.4} lr {:.4}",
            t.cls,
            t.perceptual,
            t.align,
            self.opt.net_lr()
        )
    }

    fn net_vars(&self) -> &VarMap {
        &self.nets.net_vars
    }

    fn decoder_vars(&self) -> Option<&VarMap> {
        self.nets.decoder.as_ref().map(|(_, vm)| vm)
    }

    fn optimiser(&mut self) -> &mut Optimisers {
        &mut self.opt
    }

    fn weights(&self) -> Result<HashMap<String, Tensor>> {
        var_tensors(&self.nets.net_vars)
    }

    fn epoch_done(
        &self,
        epoch: usize,
        mean: LossTerms,
        _val: Option<f64>,
        _best: Option<BestRecord>,
    ) -> LossTerms {
        tracing::info!(
            variant = self.cfg.variant.name(),
            epoch,
            cls = mean.cls,
            perceptual = mean.perceptual,
            align = mean.align,
            "epoch done"
        );
        mean
    }
}

/// Trains on `set` and writes checkpoints and final weights ([`WEIGHTS_FILE`]) under
/// `opts.out` through the shared epoch loop ([`crate::run::run`]).
///
/// With `opts.resume` and a checkpoint in `opts.out`, weights, optimiser state and counters are
/// restored and training continues at the next epoch, giving the same weights as an
/// uninterrupted run (same device and thread count). Returns the networks for evaluation.
pub fn train(
    cfg: &CamTrainConfig,
    set: Arc<TrainSet>,
    opts: &TrainOptions,
) -> Result<(Networks, TrainReport)> {
    cfg.validate()?;
    if set.num_classes() != cfg.net.num_classes {
        return Err(TrainError::Config(format!(
            "the dataset has {} classes, the network {}",
            set.num_classes(),
            cfg.net.num_classes
        )));
    }
    let nets = build_networks(cfg, opts)?;
    let opt = optimisers(cfg, &nets)?;
    let mut run = CamRun {
        cfg,
        set,
        nets,
        opt,
        device: opts.device.clone(),
    };
    let report = crate::run::run(&mut run, opts)?;
    Ok((run.nets, report))
}
