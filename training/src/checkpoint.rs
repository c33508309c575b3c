//! Training checkpoints: weights, optimiser state, progress counters and the resolved config,
//! written so that a killed run never leaves a half-written checkpoint and resumes exactly.
//!
//! Layout under the run folder:
//! ```text
//! <out>/checkpoint/epoch-0003/{net,decoder,optim}.safetensors, state.json, config.json
//! <out>/checkpoint/latest        name of the newest complete epoch folder
//! ```
//! An epoch folder is written as `epoch-NNNN.tmp` and renamed when complete; `latest` is then
//! replaced atomically, and only after that are older folders removed. A crash at any point
//! leaves `latest` naming a complete folder.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// Progress counters saved with each checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainState {
    /// Completed epochs.
    pub epoch: usize,
    /// Completed optimiser steps (the poly schedule's `t`).
    pub iteration: u64,
    /// The run's seed (data order and augmentation derive from it and the epoch).
    pub seed: u64,
}

/// What a checkpoint holds, in memory.
#[derive(Debug)]
pub struct CheckpointData {
    /// Counters.
    pub state: TrainState,
    /// The resolved config as JSON.
    pub config: serde_json::Value,
    /// Classifier network weights.
    pub net: HashMap<String, Tensor>,
    /// Decoder weights (empty when the run has none).
    pub decoder: HashMap<String, Tensor>,
    /// Optimiser state.
    pub optim: HashMap<String, Tensor>,
}

/// The folder holding a run's checkpoints.
pub fn checkpoint_dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

fn io(path: &Path, e: std::io::Error) -> TrainError {
    TrainError::Core(ssc_core::CoreError::io(path, e))
}

/// All tensors of a `VarMap`, by name.
pub fn var_tensors(vm: &VarMap) -> Result<HashMap<String, Tensor>> {
    let data = vm
        .data()
        .lock()
        .map_err(|_| TrainError::State("parameter map lock poisoned".into()))?;
    Ok(data
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect())
}

/// Sets every variable of `vm` from `tensors`; each must be present with the same shape.
pub fn load_vars(vm: &VarMap, tensors: &HashMap<String, Tensor>, what: &Path) -> Result<()> {
    let data = vm
        .data()
        .lock()
        .map_err(|_| TrainError::State("parameter map lock poisoned".into()))?;
    for (name, var) in data.iter() {
        let t = tensors
            .get(name)
            .ok_or_else(|| TrainError::file(what, format!("missing tensor `{name}`")))?;
        if t.dims() != var.dims() {
            return Err(TrainError::file(
                what,
                format!(
                    "`{name}` has shape {:?}, model has {:?}",
                    t.dims(),
                    var.dims()
                ),
            ));
        }
        var.set(&t.to_device(var.device())?.to_dtype(var.dtype())?)?;
    }
    Ok(())
}

fn save_map(path: &Path, m: &HashMap<String, Tensor>) -> Result<()> {
    // safetensors needs CPU tensors.
    let cpu: HashMap<String, Tensor> = m
        .iter()
        .map(|(k, v)| Ok((k.clone(), v.to_device(&Device::Cpu)?)))
        .collect::<Result<_>>()?;
    candle_core::safetensors::save(&cpu, path)?;
    Ok(())
}

fn load_map(path: &Path, dev: &Device) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load(path, dev)
        .map_err(|e| TrainError::file(path, format!("cannot read checkpoint tensors: {e}")))
}

/// Writes a checkpoint for `data.state.epoch` and makes it the latest.
pub fn save(out: &Path, data: &CheckpointData) -> Result<PathBuf> {
    let root = checkpoint_dir(out);
    std::fs::create_dir_all(&root).map_err(|e| io(&root, e))?;
    let name = format!("epoch-{:04}", data.state.epoch);
    let tmp = root.join(format!("{name}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    save_map(&tmp.join("net.safetensors"), &data.net)?;
    save_map(&tmp.join("decoder.safetensors"), &data.decoder)?;
    save_map(&tmp.join("optim.safetensors"), &data.optim)?;
    let state =
        serde_json::to_string_pretty(&data.state).map_err(|e| TrainError::State(e.to_string()))?;
    let config =
        serde_json::to_string_pretty(&data.config).map_err(|e| TrainError::State(e.to_string()))?;
    std::fs::write(tmp.join("state.json"), state).map_err(|e| io(&tmp, e))?;
    std::fs::write(tmp.join("config.json"), config).map_err(|e| io(&tmp, e))?;
    let dst = root.join(&name);
    if dst.exists() {
        std::fs::remove_dir_all(&dst).map_err(|e| io(&dst, e))?;
    }
    std::fs::rename(&tmp, &dst).map_err(|e| io(&dst, e))?;
    ssc_core::atomic::write(&root.join("latest"), name.as_bytes())?;
    // Older epochs are no longer needed once `latest` points past them.
    if let Ok(rd) = std::fs::read_dir(&root) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if n.starts_with("epoch-") && n != name {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    Ok(dst)
}

/// The latest complete checkpoint folder, if any.
pub fn latest(out: &Path) -> Result<Option<PathBuf>> {
    let root = checkpoint_dir(out);
    let p = root.join("latest");
    if !p.is_file() {
        return Ok(None);
    }
    let name = std::fs::read_to_string(&p).map_err(|e| io(&p, e))?;
    let dir = root.join(name.trim());
    if !dir.is_dir() {
        return Err(TrainError::file(
            &p,
            format!("names {} which does not exist", dir.display()),
        ));
    }
    Ok(Some(dir))
}

/// Reads a checkpoint folder.
pub fn load(dir: &Path, dev: &Device) -> Result<CheckpointData> {
    let read_json = |name: &str| -> Result<serde_json::Value> {
        let p = dir.join(name);
        let s = std::fs::read_to_string(&p).map_err(|e| io(&p, e))?;
        serde_json::from_str(&s).map_err(|e| TrainError::file(&p, e.to_string()))
    };
    let state_path = dir.join("state.json");
    let state: TrainState = serde_json::from_value(read_json("state.json")?)
        .map_err(|e| TrainError::file(&state_path, e.to_string()))?;
    Ok(CheckpointData {
        state,
        config: read_json("config.json")?,
        net: load_map(&dir.join("net.safetensors"), dev)?,
        decoder: load_map(&dir.join("decoder.safetensors"), dev)?,
        optim: load_map(&dir.join("optim.safetensors"), dev)?,
    })
}

/// Creates the run folder `out` and writes the resolved config beside the checkpoints
/// (`out/config.json`), so every artifact of a run carries the settings that made it.
/// Returns the config as JSON (stored again in each checkpoint).
pub fn write_run_config<C: Serialize>(out: &Path, cfg: &C) -> Result<serde_json::Value> {
    std::fs::create_dir_all(out).map_err(|e| TrainError::file(out, e.to_string()))?;
    let value = serde_json::to_value(cfg).map_err(|e| TrainError::Config(e.to_string()))?;
    let json =
        serde_json::to_string_pretty(&value).map_err(|e| TrainError::Config(e.to_string()))?;
    ssc_core::atomic::write(&out.join("config.json"), json.as_bytes())?;
    Ok(value)
}

/// The config saved with the latest checkpoint in `out` (for `--resume`), any trainer's.
pub fn saved_config<C: serde::de::DeserializeOwned>(out: &Path) -> Result<Option<C>> {
    match latest(out)? {
        None => Ok(None),
        Some(dir) => {
            let p = dir.join("config.json");
            let s = std::fs::read_to_string(&p).map_err(|e| io(&p, e))?;
            Ok(Some(
                serde_json::from_str(&s).map_err(|e| TrainError::file(&p, e.to_string()))?,
            ))
        }
    }
}

/// Writes `tensors` (moved to the CPU) to `path` atomically.
pub fn save_weights(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    let cpu: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(k, v)| Ok((k.clone(), v.to_device(&Device::Cpu)?)))
        .collect::<Result<_>>()?;
    let tmp = ssc_core::atomic::temp_path(path);
    candle_core::safetensors::save(&cpu, &tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::file(path, e.to_string()))
}

/// The variables of `vm` accepted by `keep`, sorted by name: a stable order for the
/// optimiser state.
pub fn sorted_vars(vm: &VarMap, keep: impl Fn(&str) -> bool) -> Result<Vec<candle_core::Var>> {
    let data = vm
        .data()
        .lock()
        .map_err(|_| TrainError::State("parameter map lock poisoned".into()))?;
    let mut v: Vec<_> = data
        .iter()
        .filter(|(k, _)| keep(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(v.into_iter().map(|(_, v)| v).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_latest_and_cleanup() {
        let dir = tempfile::tempdir().unwrap();
        assert!(latest(dir.path()).unwrap().is_none());
        let t = Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap();
        for epoch in 1..=2 {
            let data = CheckpointData {
                state: TrainState {
                    epoch,
                    iteration: 10 * epoch as u64,
                    seed: 3,
                },
                config: serde_json::json!({"a": epoch}),
                net: HashMap::from([("w".to_string(), t.clone())]),
                decoder: HashMap::new(),
                optim: HashMap::new(),
            };
            save(dir.path(), &data).unwrap();
        }
        let l = latest(dir.path()).unwrap().unwrap();
        assert!(l.ends_with("epoch-0002"));
        assert!(!checkpoint_dir(dir.path()).join("epoch-0001").exists());
        let back = load(&l, &Device::Cpu).unwrap();
        assert_eq!(back.state.iteration, 20);
        assert_eq!(back.config["a"], 2);
        assert_eq!(back.net["w"].to_vec1::<f32>().unwrap(), vec![1.0, 2.0]);
    }
}
