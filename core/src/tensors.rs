//! Named-tensor files (safetensors): reading fixtures and writing ssc's own per-image arrays
//! (CAMs, score stacks). Row-major, little-endian, as the safetensors format defines.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::{CoreError, Result, atomic};

/// An owned array with its shape, ready to be written.
#[derive(Debug, Clone, PartialEq)]
pub enum Array {
    F32(Vec<f32>, Vec<usize>),
    U8(Vec<u8>, Vec<usize>),
    I32(Vec<i32>, Vec<usize>),
    I64(Vec<i64>, Vec<usize>),
}

impl Array {
    fn dtype(&self) -> Dtype {
        match self {
            Array::F32(..) => Dtype::F32,
            Array::U8(..) => Dtype::U8,
            Array::I32(..) => Dtype::I32,
            Array::I64(..) => Dtype::I64,
        }
    }

    fn shape(&self) -> &[usize] {
        match self {
            Array::F32(_, s) | Array::U8(_, s) | Array::I32(_, s) | Array::I64(_, s) => s,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        match self {
            Array::F32(v, _) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Array::U8(v, _) => v.clone(),
            Array::I32(v, _) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Array::I64(v, _) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
}

/// A safetensors file held in memory.
pub struct TensorFile {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl TensorFile {
    /// Reads and validates `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let bytes = std::fs::read(&path).map_err(|e| CoreError::io(&path, e))?;
        Self::from_bytes(path, bytes)
    }

    /// Wraps bytes already in memory; `path` is only used in messages.
    pub fn from_bytes(path: PathBuf, bytes: Vec<u8>) -> Result<Self> {
        SafeTensors::deserialize(&bytes)
            .map_err(|e| CoreError::format(&path, format!("not a safetensors file: {e}")))?;
        Ok(TensorFile { path, bytes })
    }

    fn st(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("validated in open")
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self.st().names().into_iter().map(str::to_string).collect();
        n.sort();
        n
    }

    /// `true` if the file holds `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.st().tensor(name).is_ok()
    }

    /// The `__metadata__` map (empty when absent).
    pub fn metadata(&self) -> HashMap<String, String> {
        SafeTensors::read_metadata(&self.bytes)
            .ok()
            .and_then(|(_, m)| m.metadata().clone())
            .unwrap_or_default()
    }

    fn view(&self, name: &str, want: &[Dtype]) -> Result<(Vec<u8>, Vec<usize>, Dtype)> {
        let st = self.st();
        let t = st
            .tensor(name)
            .map_err(|_| CoreError::format(&self.path, format!("no tensor named `{name}`")))?;
        if !want.contains(&t.dtype()) {
            return Err(CoreError::format(
                &self.path,
                format!(
                    "tensor `{name}` has dtype {:?}, expected {want:?}",
                    t.dtype()
                ),
            ));
        }
        Ok((t.data().to_vec(), t.shape().to_vec(), t.dtype()))
    }

    /// Shape of tensor `name`.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        let st = self.st();
        let t = st
            .tensor(name)
            .map_err(|_| CoreError::format(&self.path, format!("no tensor named `{name}`")))?;
        Ok(t.shape().to_vec())
    }

    /// Float tensor as f32 (F32 stored as is; F64, F16 and BF16 converted).
    pub fn f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let (b, s, dt) = self.view(name, &[Dtype::F32, Dtype::F64])?;
        let v = match dt {
            Dtype::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            _ => b
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                .collect(),
        };
        Ok((v, s))
    }

    /// Unsigned byte tensor (U8 or BOOL).
    pub fn u8(&self, name: &str) -> Result<(Vec<u8>, Vec<usize>)> {
        let (b, s, _) = self.view(name, &[Dtype::U8, Dtype::BOOL])?;
        Ok((b, s))
    }

    /// Integer tensor widened to i64 (I64, I32, U8 accepted).
    pub fn i64(&self, name: &str) -> Result<(Vec<i64>, Vec<usize>)> {
        let (b, s, dt) = self.view(name, &[Dtype::I64, Dtype::I32, Dtype::U8])?;
        let v = match dt {
            Dtype::I64 => b
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            Dtype::I32 => b
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64)
                .collect(),
            _ => b.iter().map(|&x| x as i64).collect(),
        };
        Ok((v, s))
    }
}

/// Writes named arrays (and string metadata) to `path` atomically.
pub fn write(
    path: &Path,
    arrays: &[(&str, Array)],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let bytes: Vec<Vec<u8>> = arrays.iter().map(|(_, a)| a.bytes()).collect();
    let mut views = Vec::with_capacity(arrays.len());
    for ((name, a), b) in arrays.iter().zip(&bytes) {
        let v = TensorView::new(a.dtype(), a.shape().to_vec(), b)
            .map_err(|e| CoreError::Invalid(format!("tensor `{name}`: {e}")))?;
        views.push((name.to_string(), v));
    }
    let mut data = safetensors::serialize(views, metadata)
        .map_err(|e| CoreError::Invalid(format!("{}: {e}", path.display())))?;
    sort_header(&mut data).map_err(|e| CoreError::Invalid(format!("{}: {e}", path.display())))?;
    atomic::write(path, &data)
}

/// Rewrites a serialised safetensors header with its JSON keys sorted: `safetensors` writes
/// the metadata map in `HashMap` order, which changes from run to run, so equal contents
/// would give different files. The header keeps its length (the same keys and values in
/// another order, padded with spaces as the format allows), so the data offsets stay valid.
fn sort_header(data: &mut [u8]) -> std::result::Result<(), String> {
    let len = data
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as usize)
        .ok_or("no header")?;
    let header = data.get(8..8 + len).ok_or("truncated header")?;
    let value: serde_json::Value = serde_json::from_slice(header).map_err(|e| e.to_string())?;
    // serde_json's map is ordered by key (no `preserve_order` feature in this workspace).
    let sorted = serde_json::to_vec(&value).map_err(|e| e.to_string())?;
    if sorted.len() > len {
        return Err("sorted header is longer than the original".into());
    }
    let dst = &mut data[8..8 + len];
    dst[..sorted.len()].copy_from_slice(&sorted);
    dst[sorted.len()..].fill(b' ');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_order_does_not_change_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let arrays = [("a", Array::F32(vec![1.0, 2.0], vec![2]))];
        let meta: Vec<(String, String)> =
            (0..20).map(|i| (format!("k{i}"), i.to_string())).collect();
        let mut files = Vec::new();
        for (i, order) in [meta.clone(), meta.iter().rev().cloned().collect()]
            .into_iter()
            .enumerate()
        {
            let p = dir.path().join(format!("{i}.safetensors"));
            write(&p, &arrays, Some(order.into_iter().collect())).unwrap();
            files.push(std::fs::read(&p).unwrap());
        }
        assert_eq!(files[0], files[1]);
        let back = TensorFile::open(dir.path().join("0.safetensors")).unwrap();
        assert_eq!(back.metadata()["k7"], "7");
        assert_eq!(back.f32("a").unwrap().0, vec![1.0, 2.0]);
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.safetensors");
        let meta = HashMap::from([("k".to_string(), "v".to_string())]);
        write(
            &p,
            &[
                ("a", Array::F32(vec![1.0, -2.5, 3.0, 4.0], vec![2, 2])),
                ("b", Array::I64(vec![4, 14], vec![2])),
                ("c", Array::U8(vec![0, 255], vec![1, 2])),
            ],
            Some(meta),
        )
        .unwrap();
        let f = TensorFile::open(&p).unwrap();
        assert_eq!(f.f32("a").unwrap(), (vec![1.0, -2.5, 3.0, 4.0], vec![2, 2]));
        assert_eq!(f.i64("b").unwrap().0, vec![4, 14]);
        assert_eq!(f.u8("c").unwrap().0, vec![0, 255]);
        assert_eq!(f.metadata()["k"], "v");
        let err = f.f32("b").unwrap_err().to_string();
        assert!(
            err.contains("t.safetensors") && err.contains("dtype"),
            "{err}"
        );
        assert!(f.f32("zzz").unwrap_err().to_string().contains("zzz"));
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.safetensors");
        std::fs::write(&p, b"hello").unwrap();
        let err = TensorFile::open(&p).err().unwrap().to_string();
        assert!(err.contains("bad.safetensors"), "{err}");
    }
}
