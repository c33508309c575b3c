//! Pretrained weight import (§10.1): state dicts from safetensors, PyTorch zip `.pth` and
//! legacy (pre-1.6) `.pth`; ResNet and EfficientNet-Lite layout inference; checking a state dict against a model
//! with every missing, unexpected or mis-shaped key named; conversion to safetensors.
//!
//! The pickles inside `.pth` files are read by ssc's one pickle reader, [`ssc_core::pickle`]
//! (its [`Profile::Torch`]).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

use crate::backbone::{Backbone, BackboneConfig};
use crate::config::{EfficientNetConfig, ResNetConfig, ResNetOptions};
use crate::error::{ModelError, Result, ShapeMismatch};
use crate::resnet::ResNet;
use ssc_core::pickle::{self, Profile, PyValue as Value, TensorRef};

/// Named tensors loaded from one weight file (on the CPU, in the file's dtypes).
#[derive(Debug, Clone)]
pub struct StateDict {
    path: PathBuf,
    tensors: HashMap<String, Tensor>,
}

impl StateDict {
    /// Wraps tensors; `path` is used in messages.
    pub fn from_tensors(path: impl Into<PathBuf>, tensors: HashMap<String, Tensor>) -> Self {
        StateDict {
            path: path.into(),
            tensors,
        }
    }

    /// The file the tensors came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All tensors by name.
    pub fn tensors(&self) -> &HashMap<String, Tensor> {
        &self.tensors
    }

    /// Consumes the dict.
    pub fn into_tensors(self) -> HashMap<String, Tensor> {
        self.tensors
    }

    /// Tensor `name`, if present.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.get(name)
    }

    /// Names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut n: Vec<&str> = self.tensors.keys().map(String::as_str).collect();
        n.sort_unstable();
        n
    }

    /// A read-only `VarBuilder` (inference; frozen training parts).
    pub fn var_builder(&self, dtype: DType, dev: &Device) -> VarBuilder<'static> {
        VarBuilder::from_tensors(self.tensors.clone(), dtype, dev)
    }

    /// A `VarMap` holding every tensor as a trainable variable (converted to `dtype` on
    /// `dev`); build the model with `VarBuilder::from_varmap` and optimise `all_vars()`.
    pub fn var_map(&self, dtype: DType, dev: &Device) -> Result<VarMap> {
        let vm = VarMap::new();
        {
            let mut data = vm
                .data()
                .lock()
                .map_err(|_| ModelError::Invalid("poisoned VarMap lock".into()))?;
            for (name, t) in &self.tensors {
                let t = t.to_dtype(dtype)?.to_device(dev)?;
                data.insert(name.clone(), Var::from_tensor(&t)?);
            }
        }
        Ok(vm)
    }

    /// Writes the dict as safetensors, atomically.
    pub fn save_safetensors(&self, dst: &Path) -> Result<()> {
        let mut items: Vec<(&String, &Tensor)> = self.tensors.iter().collect();
        items.sort_by(|a, b| a.0.cmp(b.0));
        let bytes = safetensors::serialize(items, None)
            .map_err(|e| ModelError::format(dst, format!("cannot serialise: {e}")))?;
        ssc_core::atomic::write(dst, &bytes).map_err(|e| ModelError::format(dst, e.to_string()))
    }
}

/// Loads a state dict, detecting the container from its bytes: zip `.pth`, legacy `.pth`
/// or safetensors. `*.num_batches_tracked` entries are skipped; a dict nested under
/// `state_dict` or `model` is unwrapped.
pub fn load_state_dict(path: impl AsRef<Path>) -> Result<StateDict> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    let tensors = if bytes.starts_with(b"PK\x03\x04") {
        load_zip(path, &bytes)?
    } else if bytes.starts_with(&[0x80, 0x02, 0x8a, 0x0a]) {
        load_legacy(path, &bytes)?
    } else if bytes.len() > 8 && bytes[8] == b'{' {
        candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| ModelError::format(path, format!("bad safetensors file: {e}")))?
    } else {
        return Err(ModelError::format(
            path,
            "not a safetensors, PyTorch zip or legacy PyTorch weight file",
        ));
    };
    let tensors = tensors
        .into_iter()
        .filter(|(k, _)| !k.ends_with("num_batches_tracked"))
        .collect();
    Ok(StateDict::from_tensors(path, tensors))
}

/// Converts a PyTorch state dict (zip or legacy `.pth`, or safetensors) to safetensors.
/// Returns the number of tensors written.
pub fn convert_pth_to_safetensors(src: &Path, dst: &Path) -> Result<usize> {
    let sd = load_state_dict(src)?;
    sd.save_safetensors(dst)?;
    Ok(sd.tensors.len())
}

fn load_zip(path: &Path, bytes: &[u8]) -> Result<HashMap<String, Tensor>> {
    let fmt = |m: String| ModelError::format(path, m);
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| fmt(format!("bad zip archive: {e}")))?;
    let pkl = zip
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.to_string()))
        .find(|n| n.ends_with("data.pkl"))
        .ok_or_else(|| fmt("zip archive without data.pkl".into()))?;
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    let mut read = |name: &str| -> Result<Vec<u8>> {
        let mut f = zip
            .by_name(name)
            .map_err(|e| fmt(format!("missing archive entry {name}: {e}")))?;
        let mut v = Vec::new();
        f.read_to_end(&mut v).map_err(|e| ModelError::io(path, e))?;
        Ok(v)
    };
    if let Ok(order) = read(&format!("{prefix}byteorder"))
        && order != b"little"
    {
        return Err(fmt("big-endian checkpoints are not supported".into()));
    }
    let pickle_bytes = read(&pkl)?;
    let root = pickle::load_at(&pickle_bytes, &mut 0, Profile::Torch)
        .map_err(|e| fmt(format!("{pkl}: {e}")))?;
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    tensors_from(path, root, |key| {
        if !storages.contains_key(key) {
            storages.insert(key.to_string(), read(&format!("{prefix}data/{key}"))?);
        }
        Ok(storages[key].clone())
    })
}

/// Legacy stream: magic, protocol, sys-info, the main pickle, the storage-key list, then
/// each storage as an 8-byte element count and raw little-endian data.
fn load_legacy(path: &Path, bytes: &[u8]) -> Result<HashMap<String, Tensor>> {
    const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
    let fmt = |m: String| ModelError::format(path, m);
    if bytes.get(4..14) != Some(&MAGIC[..]) {
        return Err(fmt("not a legacy PyTorch file (bad magic number)".into()));
    }
    let mut pos = 0;
    let next = |what: &str, pos: &mut usize| {
        pickle::load_at(bytes, pos, Profile::Torch)
            .map_err(|e| fmt(format!("legacy {what} pickle: {e}")))
    };
    next("magic", &mut pos)?;
    match next("protocol", &mut pos)? {
        Value::Int(1001) => {}
        v => return Err(fmt(format!("unsupported legacy protocol {v:?}"))),
    }
    if let Value::Dict(info) = next("sys-info", &mut pos)? {
        let little = info.iter().any(
            |(k, v)| matches!((k, v), (Value::Str(k), Value::Bool(true)) if k == "little_endian"),
        );
        if !little {
            return Err(fmt("big-endian checkpoints are not supported".into()));
        }
    }
    let root = next("main", &mut pos)?;
    let Value::List(keys) = next("storage-key", &mut pos)? else {
        return Err(fmt("legacy storage-key list missing".into()));
    };
    let sizes = storage_elem_sizes(&root);
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    for key in keys {
        let Value::Str(key) = key else {
            return Err(fmt(format!("bad storage key {key:?}")));
        };
        let count = bytes
            .get(pos..pos + 8)
            .ok_or_else(|| fmt(format!("truncated before storage {key}")))?;
        let count = u64::from_le_bytes(count.try_into().expect("8 bytes")) as usize;
        let elem = *sizes
            .get(&key)
            .ok_or_else(|| fmt(format!("storage {key} is not used by any tensor")))?;
        let end = count
            .checked_mul(elem)
            .and_then(|n| n.checked_add(pos + 8))
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| fmt(format!("truncated storage {key}")))?;
        storages.insert(key, bytes[pos + 8..end].to_vec());
        pos = end;
    }
    tensors_from(path, root, |key| {
        storages
            .get(key)
            .cloned()
            .ok_or_else(|| ModelError::format(path, format!("storage {key} missing")))
    })
}

/// Element size of each storage referenced in `v` (legacy storages are sized by type).
fn storage_elem_sizes(v: &Value) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    fn walk(v: &Value, out: &mut HashMap<String, usize>) {
        match v {
            Value::Tensor(t) => {
                if let Some((_, size)) = storage_dtype(&t.storage.kind) {
                    out.insert(t.storage.key.clone(), size);
                }
            }
            Value::Tuple(items) | Value::List(items) => items.iter().for_each(|i| walk(i, out)),
            Value::Dict(items) => items.iter().for_each(|(_, i)| walk(i, out)),
            _ => {}
        }
    }
    walk(v, &mut out);
    out
}

fn storage_dtype(kind: &str) -> Option<(DType, usize)> {
    Some(match kind {
        "FloatStorage" => (DType::F32, 4),
        "DoubleStorage" => (DType::F64, 8),
        "HalfStorage" => (DType::F16, 2),
        "BFloat16Storage" => (DType::BF16, 2),
        "LongStorage" => (DType::I64, 8),
        "IntStorage" => (DType::I32, 4),
        "ByteStorage" | "BoolStorage" => (DType::U8, 1),
        _ => return None,
    })
}

/// Walks the unpickled root (a dict of tensors, possibly under `state_dict`/`model`) and
/// materialises each tensor from its storage bytes.
fn tensors_from(
    path: &Path,
    root: Value,
    mut storage: impl FnMut(&str) -> Result<Vec<u8>>,
) -> Result<HashMap<String, Tensor>> {
    let Value::Dict(mut items) = root else {
        return Err(ModelError::format(path, "the pickled object is not a dict"));
    };
    if !items.iter().any(|(_, v)| matches!(v, Value::Tensor(_)))
        && let Some((_, Value::Dict(inner))) = items
            .iter()
            .find(|(k, _)| matches!(k, Value::Str(s) if s == "state_dict" || s == "model"))
    {
        items = inner.clone();
    }
    let mut out = HashMap::new();
    for (k, v) in items {
        let (Value::Str(name), Value::Tensor(t)) = (k, v) else {
            continue; // non-tensor entries (metadata) are not weights
        };
        if name.ends_with("num_batches_tracked") {
            continue;
        }
        let bytes = storage(&t.storage.key)?;
        let tensor = materialise(&t, &bytes)
            .map_err(|m| ModelError::format(path, format!("tensor {name}: {m}")))?;
        out.insert(name, tensor);
    }
    Ok(out)
}

/// Copies the strided view `t` out of `bytes` into a contiguous CPU tensor.
fn materialise(t: &TensorRef, bytes: &[u8]) -> std::result::Result<Tensor, String> {
    let (dtype, elem) = storage_dtype(&t.storage.kind)
        .ok_or_else(|| format!("unsupported storage type {}", t.storage.kind))?;
    if t.size.len() != t.stride.len() {
        return Err("size and stride ranks differ".into());
    }
    let available = bytes.len() / elem;
    let numel: usize = t.size.iter().product();
    if numel == 0 {
        return Tensor::from_raw_buffer(&[], dtype, &t.size, &Device::Cpu)
            .map_err(|e| e.to_string());
    }
    // Contiguous views (every state-dict tensor in practice): one slice copy.
    let mut expect = 1;
    let contiguous = t.size.iter().zip(&t.stride).rev().all(|(&n, &s)| {
        let ok = n == 1 || s == expect;
        expect *= n;
        ok
    });
    if contiguous {
        let end = t.offset + numel;
        if end > available {
            return Err(format!(
                "view reaches element {end} of a {available}-element storage"
            ));
        }
        let data = &bytes[t.offset * elem..end * elem];
        return Tensor::from_raw_buffer(data, dtype, &t.size, &Device::Cpu)
            .map_err(|e| e.to_string());
    }
    let mut out = Vec::with_capacity(numel * elem);
    let mut idx = vec![0usize; t.size.len()];
    for _ in 0..numel {
        let off = t.offset + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
        if off >= available {
            return Err(format!(
                "view reaches element {off} of a {available}-element storage"
            ));
        }
        out.extend_from_slice(&bytes[off * elem..(off + 1) * elem]);
        for d in (0..idx.len()).rev() {
            idx[d] += 1;
            if idx[d] < t.size[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Tensor::from_raw_buffer(&out, dtype, &t.size, &Device::Cpu).map_err(|e| e.to_string())
}

/// Infers a ResNet's blocks per layer and base width from torchvision-named keys
/// (`layer{L}.{i}.conv1.weight`); strides and dilations are the caller's layout choice.
pub fn infer_resnet(
    sd: &StateDict,
    strides: [usize; 4],
    dilations: [usize; 4],
) -> Result<ResNetConfig> {
    let mut blocks = [0usize; 4];
    for (l, b) in blocks.iter_mut().enumerate() {
        while sd
            .get(&format!("layer{}.{}.conv1.weight", l + 1, *b))
            .is_some()
        {
            *b += 1;
        }
        if *b == 0 {
            return Err(ModelError::format(
                &sd.path,
                format!(
                    "not a torchvision ResNet: no key layer{}.0.conv1.weight",
                    l + 1
                ),
            ));
        }
    }
    let base_width = sd
        .get("layer1.0.conv1.weight")
        .map(|t| t.dims()[0])
        .ok_or_else(|| ModelError::format(&sd.path, "no key layer1.0.conv1.weight"))?;
    Ok(ResNetConfig {
        blocks,
        base_width,
        strides,
        dilations,
        bn_eps: 1e-5,
    })
}

/// Records the name and shape of every parameter a model requests.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<BTreeMap<String, Vec<usize>>>>);

impl candle_nn::var_builder::SimpleBackend for Recorder {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        if let Ok(mut m) = self.0.lock() {
            m.insert(name.to_string(), s.dims().to_vec());
        }
        Tensor::zeros(s, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("parameter {name} requested without a shape")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// The parameter names and shapes a model requests from its `VarBuilder` (`build` is run
/// once on zero tensors).
pub fn model_params<M>(
    build: impl FnOnce(VarBuilder) -> candle_core::Result<M>,
) -> Result<BTreeMap<String, Vec<usize>>> {
    let rec = Recorder::default();
    let vb = VarBuilder::from_backend(Box::new(rec.clone()), DType::F32, Device::Cpu);
    build(vb)?;
    let map = rec
        .0
        .lock()
        .map_err(|_| ModelError::Invalid("poisoned recorder lock".into()))?
        .clone();
    Ok(map)
}

/// Checks `sd` against `expected` names/shapes. Keys starting with one of `ignore` (e.g.
/// `"fc."`) are allowed extras. All problems are reported together, by name.
pub fn check_params(
    sd: &StateDict,
    expected: &BTreeMap<String, Vec<usize>>,
    ignore: &[&str],
) -> Result<()> {
    let mut missing = Vec::new();
    let mut shapes = Vec::new();
    for (name, want) in expected {
        match sd.get(name) {
            None => missing.push(name.clone()),
            Some(t) if t.dims() != want.as_slice() => shapes.push(ShapeMismatch {
                name: name.clone(),
                expected: want.clone(),
                found: t.dims().to_vec(),
            }),
            Some(_) => {}
        }
    }
    let mut unexpected: Vec<String> = sd
        .tensors
        .keys()
        .filter(|k| !expected.contains_key(*k) && !ignore.iter().any(|p| k.starts_with(p)))
        .cloned()
        .collect();
    unexpected.sort();
    if missing.is_empty() && unexpected.is_empty() && shapes.is_empty() {
        Ok(())
    } else {
        Err(ModelError::Mismatch {
            path: sd.path.clone(),
            missing,
            unexpected,
            shapes,
        })
    }
}

/// Checks a state dict against the backbone `cfg` (every parameter it needs, with its shape,
/// and nothing else); `ignore_head` allows an ImageNet classification head (`fc.*` of
/// torchvision, `_fc.*` of EfficientNet-Lite). Problems are reported together, by name.
pub fn check_backbone(sd: &StateDict, cfg: &BackboneConfig, ignore_head: bool) -> Result<()> {
    let expected = model_params(|vb| Backbone::new(cfg, &ResNetOptions::default(), vb))?;
    let ignore: &[&str] = if ignore_head { &["fc.", "_fc."] } else { &[] };
    check_params(sd, &expected, ignore)
}

/// The backbone of an ImageNet or ssc state dict, inferred from its names and shapes: a
/// torchvision ResNet (with `strides`/`dilations`) or an EfficientNet-Lite (at
/// `output_stride`). Names may carry `prefix` (e.g. `backbone.`).
pub fn infer_backbone(
    sd: &StateDict,
    prefix: &str,
    strides: [usize; 4],
    dilations: [usize; 4],
    output_stride: usize,
) -> Result<BackboneConfig> {
    let shapes: BTreeMap<String, Vec<usize>> = sd
        .tensors()
        .iter()
        .filter_map(|(k, t)| Some((k.strip_prefix(prefix)?.to_string(), t.dims().to_vec())))
        .collect();
    if shapes.contains_key("_conv_stem.weight") {
        return EfficientNetConfig::infer(&shapes, output_stride)
            .map(BackboneConfig::from)
            .map_err(|e| ModelError::Invalid(format!("{}: {e}", sd.path().display())));
    }
    if prefix.is_empty() {
        return infer_resnet(sd, strides, dilations).map(BackboneConfig::from);
    }
    let stripped = StateDict::from_tensors(
        sd.path(),
        sd.tensors()
            .iter()
            .filter_map(|(k, t)| Some((k.strip_prefix(prefix)?.to_string(), t.clone())))
            .collect(),
    );
    infer_resnet(&stripped, strides, dilations).map(BackboneConfig::from)
}

/// Checks a state dict against a torchvision ResNet of layout `cfg`; `ignore_fc` allows the
/// classification head `fc.*` of ImageNet checkpoints.
pub fn check_resnet(sd: &StateDict, cfg: &ResNetConfig, ignore_fc: bool) -> Result<()> {
    let expected = model_params(|vb| ResNet::new(cfg, vb))?;
    let ignore: &[&str] = if ignore_fc { &["fc."] } else { &[] };
    check_params(sd, &expected, ignore)
}
