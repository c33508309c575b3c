//! A plain state dict for the exporters (§10.3): parameter name → f32 values + shape, with
//! the reference (torchvision / IRN / DeepLabV2) names. Kept separate from candle so the
//! export works from any safetensors file without building a network.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ssc_core::tensors::TensorFile;

use super::{OnnxError, Result};

/// A state dict: name → (row-major f32 values, shape).
#[derive(Debug, Clone, Default)]
pub struct Weights {
    map: HashMap<String, (Vec<f32>, Vec<usize>)>,
    file: Option<PathBuf>,
}

impl Weights {
    /// An empty state dict.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads every float tensor of a safetensors file. Integer bookkeeping tensors
    /// (`*.num_batches_tracked`) are skipped; any other unreadable tensor is an error.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let f = TensorFile::open(path.as_ref())?;
        Self::from_tensor_file(&f)
    }

    /// Reads every float tensor of an opened safetensors file (see [`Weights::open`]).
    pub fn from_tensor_file(f: &TensorFile) -> Result<Self> {
        let mut w = Weights {
            map: HashMap::new(),
            file: Some(f.path().to_path_buf()),
        };
        for name in f.names() {
            if name.ends_with("num_batches_tracked") {
                continue;
            }
            let (v, s) = f.f32(&name)?;
            w.map.insert(name, (v, s));
        }
        Ok(w)
    }

    /// Adds (or replaces) one parameter. `values.len()` must equal the product of `shape`.
    pub fn insert(&mut self, name: impl Into<String>, values: Vec<f32>, shape: Vec<usize>) {
        self.map.insert(name.into(), (values, shape));
    }

    /// Adds every parameter of `other` (e.g. a classifier file on top of a backbone file),
    /// `prefix` prepended to its names.
    pub fn merge(&mut self, other: Weights, prefix: &str) {
        for (k, v) in other.map {
            self.map.insert(format!("{prefix}{k}"), v);
        }
    }

    /// The parameters whose names start with `prefix`, with the prefix removed (e.g. a
    /// checkpoint that stores the backbone under `backbone.`).
    pub fn strip_prefix(&self, prefix: &str) -> Weights {
        Weights {
            map: self
                .map
                .iter()
                .filter_map(|(k, v)| k.strip_prefix(prefix).map(|s| (s.to_string(), v.clone())))
                .collect(),
            file: self.file.clone(),
        }
    }

    /// Parameter names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.map.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Parameter `name`, checked to have shape `want`. `expected` names the naming scheme
    /// in the error message.
    pub fn get(&self, name: &str, want: &[usize], expected: &'static str) -> Result<&[f32]> {
        let (v, s) = self.map.get(name).ok_or_else(|| OnnxError::MissingWeight {
            name: name.to_string(),
            expected,
            file: self.file.clone(),
        })?;
        if s != want || v.len() != want.iter().product::<usize>() {
            return Err(OnnxError::BadShape {
                name: name.to_string(),
                got: s.clone(),
                want: want.to_vec(),
                file: self.file.clone(),
            });
        }
        Ok(v)
    }
}
