//! Optimisers with PyTorch semantics (§2.8, §10.2): SGD with momentum and L2 weight decay in
//! parameter groups, and Adam with bias correction.
//!
//! candle-nn's `SGD` has neither momentum nor weight decay and its `AdamW` decouples the decay,
//! so both are written here. As in PyTorch, a parameter without a gradient in the
//! `GradStore` is skipped entirely (no decay, no momentum update): the frozen-by-detach parts of
//! the SSC backbone (§2.1) therefore stay bit-identical.
//!
//! Both optimisers expose their state as named tensors ([`Sgd::state`], [`Adam::state`]) plus
//! a step counter, so a checkpoint can restore them exactly.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// A set of parameters sharing a learning rate and weight decay.
#[derive(Debug, Clone)]
pub struct ParamGroup {
    /// Name used in logs and state keys (e.g. `backbone`, `classifier`).
    pub name: String,
    /// The parameters, in a fixed order (the state keys use the index).
    pub vars: Vec<Var>,
    /// Initial learning rate `lr0` (the schedule scales it).
    pub lr: f64,
    /// L2 weight decay added to the gradient (`g += wd·θ`).
    pub weight_decay: f64,
}

/// The learning rates of a network trained in two SGD groups (§2.8, §6.4): the backbone at
/// `lr0`, the head (`classifier.*`) at `lr0 · head_mult`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackboneHead {
    /// The backbone's `lr0`.
    pub lr: f64,
    /// The head's learning-rate multiplier.
    pub head_mult: f64,
    /// L2 weight decay of both groups.
    pub weight_decay: f64,
    /// Momentum of both groups.
    pub momentum: f64,
}

impl BackboneHead {
    /// SGD over the parameters of `vm` that `trainable` accepts, in the groups `backbone` and
    /// `classifier`, each sorted by name (the stable order of the optimiser state).
    pub fn sgd(&self, vm: &candle_nn::VarMap, trainable: impl Fn(&str) -> bool) -> Result<Sgd> {
        let group = |name: &str, head: bool, lr: f64| -> Result<ParamGroup> {
            Ok(ParamGroup {
                name: name.into(),
                vars: crate::checkpoint::sorted_vars(vm, |n| {
                    trainable(n) && n.starts_with("classifier.") == head
                })?,
                lr,
                weight_decay: self.weight_decay,
            })
        };
        Sgd::new(
            vec![
                group("backbone", false, self.lr)?,
                group("classifier", true, self.lr * self.head_mult)?,
            ],
            SgdConfig {
                momentum: self.momentum,
            },
        )
    }
}

/// SGD hyper-parameters shared by all groups.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SgdConfig {
    /// Momentum μ (0 = plain SGD). Dampening is 0, no Nesterov.
    pub momentum: f64,
}

/// SGD with momentum (dampening 0) and L2 weight decay, PyTorch semantics:
/// `g ← g + wd·θ; b ← μ·b + g` (first step `b ← g`); `θ ← θ − lr·b`.
#[derive(Debug)]
pub struct Sgd {
    groups: Vec<ParamGroup>,
    cfg: SgdConfig,
    /// Current learning rate of each group.
    lrs: Vec<f64>,
    /// Momentum buffers, `None` until the parameter first had a gradient.
    bufs: Vec<Vec<Option<Tensor>>>,
}

impl Sgd {
    /// An optimiser over `groups`; each group starts at its `lr`.
    pub fn new(groups: Vec<ParamGroup>, cfg: SgdConfig) -> Result<Self> {
        if !(0.0..1.0).contains(&cfg.momentum) {
            return Err(TrainError::Config(format!(
                "SGD momentum {} outside [0, 1)",
                cfg.momentum
            )));
        }
        let lrs = groups.iter().map(|g| g.lr).collect();
        let bufs = groups.iter().map(|g| vec![None; g.vars.len()]).collect();
        Ok(Sgd {
            groups,
            cfg,
            lrs,
            bufs,
        })
    }

    /// The parameter groups.
    pub fn groups(&self) -> &[ParamGroup] {
        &self.groups
    }

    /// Sets every group's learning rate to `lr0 · factor` (the poly schedule, §2.8).
    pub fn set_lr_factor(&mut self, factor: f64) {
        for (lr, g) in self.lrs.iter_mut().zip(&self.groups) {
            *lr = g.lr * factor;
        }
    }

    /// Current learning rate of each group.
    pub fn lrs(&self) -> &[f64] {
        &self.lrs
    }

    /// One update from the gradients in `grads`; parameters without a gradient are skipped.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        for (gi, group) in self.groups.iter().enumerate() {
            let lr = self.lrs[gi];
            for (vi, var) in group.vars.iter().enumerate() {
                let Some(g) = grads.get(var.as_tensor()) else {
                    continue;
                };
                // Detached: an expression on the variable itself is tracked by autograd, and
                // the momentum buffer would then chain every step's graph (and gradients)
                // to the next one — measured as ~10 MB more memory per step.
                let mut d = g.detach();
                if group.weight_decay != 0.0 {
                    d = (d + (var.as_tensor().detach() * group.weight_decay)?)?;
                }
                if self.cfg.momentum != 0.0 {
                    let b = match &self.bufs[gi][vi] {
                        Some(b) => ((b * self.cfg.momentum)? + &d)?,
                        None => d.copy()?,
                    };
                    self.bufs[gi][vi] = Some(b.clone());
                    d = b;
                }
                var.set(&(var.as_tensor().detach() - (d * lr)?)?)?;
            }
        }
        Ok(())
    }

    /// The momentum buffer of `var` (`None` before its first gradient or when `var` is not
    /// one of this optimiser's parameters).
    pub fn momentum_buffer(&self, var: &Var) -> Option<&Tensor> {
        let id = var.as_tensor().id();
        self.groups.iter().zip(&self.bufs).find_map(|(g, bufs)| {
            let i = g.vars.iter().position(|v| v.as_tensor().id() == id)?;
            bufs[i].as_ref()
        })
    }

    /// Momentum buffers as named tensors (`sgd.<group>.<index>`), for a checkpoint.
    pub fn state(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (gi, bufs) in self.bufs.iter().enumerate() {
            for (vi, b) in bufs.iter().enumerate() {
                if let Some(b) = b {
                    out.insert(format!("sgd.{}.{vi}", self.groups[gi].name), b.clone());
                }
            }
        }
        out
    }

    /// Restores momentum buffers written by [`Sgd::state`]; a missing entry means the
    /// parameter had no gradient yet. Shapes are checked.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        for (gi, group) in self.groups.iter().enumerate() {
            for (vi, var) in group.vars.iter().enumerate() {
                let key = format!("sgd.{}.{vi}", group.name);
                self.bufs[gi][vi] = match state.get(&key) {
                    Some(t) => {
                        check_shape(&key, t, var)?;
                        Some(t.to_device(var.device())?)
                    }
                    None => None,
                };
            }
        }
        Ok(())
    }
}

/// Adam hyper-parameters (PyTorch defaults except where the decoder's differ, §2.8).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    /// Initial learning rate.
    pub lr: f64,
    /// β₁, β₂ (the SSC decoder uses 0.5, 0.999).
    pub betas: (f64, f64),
    /// ε, added outside the square root.
    pub eps: f64,
    /// L2 weight decay added to the gradient (not decoupled).
    pub weight_decay: f64,
}

impl AdamConfig {
    /// The SSC decoder's Adam: lr 5e-4, betas (0.5, 0.999), eps 1e-8, no decay (§2.8).
    pub fn decoder() -> Self {
        AdamConfig {
            lr: 5e-4,
            betas: (0.5, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// Adam with PyTorch semantics (bias correction, ε outside the square root, AMSGrad off).
/// The step counter is per parameter, as in PyTorch, so a parameter that first gets a
/// gradient late starts its own bias correction.
#[derive(Debug)]
pub struct Adam {
    vars: Vec<Var>,
    cfg: AdamConfig,
    /// First component of the state keys.
    prefix: String,
    lr: f64,
    /// (step, m, v) per parameter, `None` before its first gradient.
    state: Vec<Option<(u64, Tensor, Tensor)>>,
}

impl Adam {
    /// An optimiser over `vars`.
    pub fn new(vars: Vec<Var>, cfg: AdamConfig) -> Self {
        Self::with_prefix(vars, cfg, "adam")
    }

    /// An optimiser whose state keys start with `prefix` instead of `adam`, so that two of
    /// them fit in one checkpoint.
    pub fn with_prefix(vars: Vec<Var>, cfg: AdamConfig, prefix: &str) -> Self {
        let state = vec![None; vars.len()];
        Adam {
            vars,
            cfg,
            prefix: prefix.into(),
            lr: cfg.lr,
            state,
        }
    }

    /// Sets the learning rate to `lr0 · factor`.
    pub fn set_lr_factor(&mut self, factor: f64) {
        self.lr = self.cfg.lr * factor;
    }

    /// Current learning rate.
    pub fn lr(&self) -> f64 {
        self.lr
    }

    /// One update; parameters without a gradient are skipped.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        let (b1, b2) = self.cfg.betas;
        for (i, var) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            // Detached for the reason given in `Sgd::step`.
            let mut g = g.detach();
            if self.cfg.weight_decay != 0.0 {
                g = (g + (var.as_tensor().detach() * self.cfg.weight_decay)?)?;
            }
            let (t, m, v) = match self.state[i].take() {
                Some((t, m, v)) => (t, m, v),
                None => (0, g.zeros_like()?, g.zeros_like()?),
            };
            let t = t + 1;
            let m = ((m * b1)? + (&g * (1.0 - b1))?)?;
            let v = ((v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let bc1 = 1.0 - b1.powi(t as i32);
            let bc2 = 1.0 - b2.powi(t as i32);
            let denom = ((v.sqrt()? / bc2.sqrt())? + self.cfg.eps)?;
            let upd = ((&m / denom)? * (self.lr / bc1))?;
            var.set(&(var.as_tensor().detach() - upd)?)?;
            self.state[i] = Some((t, m, v));
        }
        Ok(())
    }

    /// The step count and first and second moments of `var` (`None` before its first
    /// gradient or when `var` is not one of this optimiser's parameters).
    pub fn moments(&self, var: &Var) -> Option<(u64, &Tensor, &Tensor)> {
        let id = var.as_tensor().id();
        let i = self.vars.iter().position(|v| v.as_tensor().id() == id)?;
        self.state[i].as_ref().map(|(t, m, v)| (*t, m, v))
    }

    /// State as named tensors (`adam.<i>.m`, `adam.<i>.v`, `adam.<i>.step` as a 1-element
    /// f64 tensor, with the optimiser's prefix in place of `adam`), for a checkpoint.
    pub fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (i, s) in self.state.iter().enumerate() {
            if let Some((t, m, v)) = s {
                let p = &self.prefix;
                out.insert(format!("{p}.{i}.m"), m.clone());
                out.insert(format!("{p}.{i}.v"), v.clone());
                let step = Tensor::new(&[*t as f64], &candle_core::Device::Cpu)?;
                out.insert(format!("{p}.{i}.step"), step);
            }
        }
        Ok(out)
    }

    /// Restores the state written by [`Adam::state`], checking shapes.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let p = &self.prefix;
        for (i, var) in self.vars.iter().enumerate() {
            let get = |k: &str| state.get(&format!("{p}.{i}.{k}"));
            self.state[i] = match (get("step"), get("m"), get("v")) {
                (Some(t), Some(m), Some(v)) => {
                    check_shape(&format!("{p}.{i}.m"), m, var)?;
                    check_shape(&format!("{p}.{i}.v"), v, var)?;
                    let t = t.flatten_all()?.to_vec1::<f64>()?;
                    let t = *t
                        .first()
                        .ok_or_else(|| TrainError::State(format!("{p}.{i}.step is empty")))?;
                    Some((
                        t as u64,
                        m.to_device(var.device())?,
                        v.to_device(var.device())?,
                    ))
                }
                (None, None, None) => None,
                _ => {
                    return Err(TrainError::State(format!(
                        "{p}.{i}: step, m and v must be all present or all absent"
                    )));
                }
            };
        }
        Ok(())
    }
}

fn check_shape(key: &str, t: &Tensor, var: &Var) -> Result<()> {
    if t.dims() != var.dims() {
        return Err(TrainError::State(format!(
            "{key} has shape {:?}, parameter has {:?}",
            t.dims(),
            var.dims()
        )));
    }
    Ok(())
}

/// An optimiser whose state a checkpoint saves and restores exactly.
pub trait OptimiserState {
    /// The state as named tensors.
    fn save(&self) -> Result<HashMap<String, Tensor>>;
    /// Restores the state written by [`OptimiserState::save`].
    fn restore(&mut self, state: &HashMap<String, Tensor>) -> Result<()>;
}

impl OptimiserState for Sgd {
    fn save(&self) -> Result<HashMap<String, Tensor>> {
        Ok(self.state())
    }
    fn restore(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        self.load_state(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn var(v: &[f64]) -> Var {
        Var::from_tensor(&Tensor::new(v, &Device::Cpu).unwrap()).unwrap()
    }

    fn vals(v: &Var) -> Vec<f64> {
        v.as_tensor().to_vec1::<f64>().unwrap()
    }

    /// SGD over `w` alone: lr 0.1, weight decay 0.1, momentum 0.9.
    fn sgd_lr01_wd01_m09(w: &Var) -> Sgd {
        Sgd::new(
            vec![ParamGroup {
                name: "g".into(),
                vars: vec![w.clone()],
                lr: 0.1,
                weight_decay: 0.1,
            }],
            SgdConfig { momentum: 0.9 },
        )
        .unwrap()
    }

    /// Loss 0.5·Σθ² ⇒ gradient θ; values below hand-computed with the PyTorch update rule.
    fn grads_of(vars: &[&Var]) -> GradStore {
        let mut total: Option<Tensor> = None;
        for v in vars {
            let l = (v.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap();
            total = Some(match total {
                Some(t) => (t + l).unwrap(),
                None => l,
            });
        }
        total.unwrap().backward().unwrap()
    }

    #[test]
    fn sgd_momentum_and_decay_match_pytorch() {
        // θ0 = 1, lr 0.1, wd 0.1, μ 0.9, grad = θ.
        // step1: d = 1 + 0.1 = 1.1, b = 1.1, θ = 1 − 0.11 = 0.89
        // step2: d = 0.89·1.1 = 0.979, b = 0.9·1.1 + 0.979 = 1.969, θ = 0.89 − 0.1969 = 0.6931
        let w = var(&[1.0]);
        let mut sgd = sgd_lr01_wd01_m09(&w);
        sgd.step(&grads_of(&[&w])).unwrap();
        assert!((vals(&w)[0] - 0.89).abs() < 1e-12);
        sgd.step(&grads_of(&[&w])).unwrap();
        let want = 0.89 - 0.1 * (0.9 * 1.1 + 0.89 * 1.1);
        assert!(
            (vals(&w)[0] - want).abs() < 1e-12,
            "{:?} vs {want}",
            vals(&w)
        );
    }

    #[test]
    fn sgd_groups_have_own_lr_and_skip_params_without_grad() {
        let a = var(&[2.0]);
        let b = var(&[2.0]);
        let frozen = var(&[5.0]);
        let mut sgd = Sgd::new(
            vec![
                ParamGroup {
                    name: "backbone".into(),
                    vars: vec![a.clone(), frozen.clone()],
                    lr: 0.1,
                    weight_decay: 1e-4,
                },
                ParamGroup {
                    name: "classifier".into(),
                    vars: vec![b.clone()],
                    lr: 1.0,
                    weight_decay: 1e-4,
                },
            ],
            SgdConfig { momentum: 1e-4 },
        )
        .unwrap();
        sgd.set_lr_factor(0.5);
        assert_eq!(sgd.lrs(), &[0.05, 0.5]);
        sgd.step(&grads_of(&[&a, &b])).unwrap();
        let d = 2.0 + 2e-4;
        assert!((vals(&a)[0] - (2.0 - 0.05 * d)).abs() < 1e-12);
        assert!((vals(&b)[0] - (2.0 - 0.5 * d)).abs() < 1e-12);
        // no gradient: no decay, no buffer
        assert_eq!(vals(&frozen), vec![5.0]);
        assert!(!sgd.state().contains_key("sgd.backbone.1"));
        assert!(sgd.state().contains_key("sgd.backbone.0"));
    }

    #[test]
    fn adam_matches_pytorch_bias_corrected_steps() {
        // θ0 = 1, grad = θ, lr 0.1, betas (0.5, 0.999), eps 1e-8.
        // step1: m = 0.5, v = 0.001; m̂ = 1, v̂ = 1 ⇒ θ = 1 − 0.1·1/(1+1e-8)
        let w = var(&[1.0]);
        let cfg = AdamConfig {
            lr: 0.1,
            ..AdamConfig::decoder()
        };
        let mut adam = Adam::new(vec![w.clone()], cfg);
        adam.step(&grads_of(&[&w])).unwrap();
        let t1 = 1.0 - 0.1 / (1.0 + 1e-8);
        assert!((vals(&w)[0] - t1).abs() < 1e-12);
        // step2 by hand
        let g = t1;
        let m = 0.5 * 0.5 + 0.5 * g;
        let v = 0.999 * 0.001 + 0.001 * g * g;
        let denom = v.sqrt() / (1.0f64 - 0.999f64.powi(2)).sqrt() + 1e-8;
        let t2 = t1 - 0.1 / (1.0 - 0.25) * m / denom;
        adam.step(&grads_of(&[&w])).unwrap();
        assert!((vals(&w)[0] - t2).abs() < 1e-12, "{} vs {t2}", vals(&w)[0]);
    }

    #[test]
    fn state_round_trip_continues_identically() {
        let run = |split: bool| {
            let w = var(&[1.0, -2.0]);
            let mk = |w: &Var| {
                (
                    Sgd::new(
                        vec![ParamGroup {
                            name: "g".into(),
                            vars: vec![w.clone()],
                            lr: 0.1,
                            weight_decay: 1e-2,
                        }],
                        SgdConfig { momentum: 0.9 },
                    )
                    .unwrap(),
                    Adam::new(vec![w.clone()], AdamConfig::decoder()),
                )
            };
            let (mut sgd, mut adam) = mk(&w);
            for i in 0..4 {
                if split && i == 2 {
                    let (s, a) = (sgd.state(), adam.state().unwrap());
                    (sgd, adam) = mk(&w);
                    sgd.load_state(&s).unwrap();
                    adam.load_state(&a).unwrap();
                }
                let g = grads_of(&[&w]);
                sgd.step(&g).unwrap();
                adam.step(&g).unwrap();
            }
            vals(&w)
        };
        assert_eq!(run(false), run(true));
    }

    #[test]
    fn load_state_rejects_wrong_shape() {
        let w = var(&[1.0, 2.0]);
        let mut adam = Adam::new(vec![w], AdamConfig::decoder());
        let bad = HashMap::from([
            (
                "adam.0.m".to_string(),
                Tensor::zeros(3, DType::F64, &Device::Cpu).unwrap(),
            ),
            (
                "adam.0.v".to_string(),
                Tensor::zeros(3, DType::F64, &Device::Cpu).unwrap(),
            ),
            (
                "adam.0.step".to_string(),
                Tensor::new(&[1.0f64], &Device::Cpu).unwrap(),
            ),
        ]);
        assert!(matches!(adam.load_state(&bad), Err(TrainError::State(_))));
    }

    /// Optimiser state must not carry an autograd graph: a tracked buffer chains every
    /// step's graph and gradients to the next, and memory grows each step.
    #[test]
    fn optimiser_state_is_detached_from_the_graph() {
        let w = var(&[1.0, 2.0]);
        let mut sgd = sgd_lr01_wd01_m09(&w);
        let u = var(&[3.0]);
        let mut adam = Adam::new(
            vec![u.clone()],
            AdamConfig {
                weight_decay: 0.1,
                ..AdamConfig::decoder()
            },
        );
        for _ in 0..3 {
            sgd.step(&grads_of(&[&w])).unwrap();
            adam.step(&grads_of(&[&u])).unwrap();
        }
        let adam_state = adam.state().unwrap();
        for (k, t) in sgd.state().iter().chain(adam_state.iter()) {
            assert!(!t.track_op(), "{k} tracks an autograd op");
        }
    }
}
