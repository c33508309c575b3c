//! The ONNX Runtime side of §10.3: finding and loading the shared library (ort with
//! `load-dynamic`), choosing the device, and running the exported ssc networks.
//!
//! The library is searched in this order: an explicit path, `ORT_DYLIB_PATH`, then a
//! project-local `.ort/lib/libonnxruntime.so*` (what `scripts/setup-ort.sh` installs) in the
//! folder of the current executable or the current directory or any of their ancestors.
//! It is loaded once per process. Every path is checked before ort sees it, because ort
//! panics on a library it cannot load when left to find one itself.
//!
//! `Session::run` takes `&mut self`: open one [`Model`] per worker thread (e.g. with
//! `rayon`'s `map_init`) instead of sharing one behind a lock.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::Session;
use ort::value::TensorRef;

use crate::{InferenceError, Result};

/// The ONNX Runtime version ssc is tested with (the `onnxruntime` PyPI wheel).
pub const ORT_VERSION: &str = "1.31.1";

/// Environment variable naming the library file.
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// How to get the library, appended to every "not found" message.
fn install_hint() -> String {
    format!(
        "Install it with `bash scripts/setup-ort.sh` (puts libonnxruntime.so.{v} into .ort/lib \
         of the repository, where ssc finds it), or `pip install onnxruntime=={v}` and set \
         {ORT_DYLIB_ENV}=<site-packages>/onnxruntime/capi/libonnxruntime.so.{v}",
        v = ORT_VERSION
    )
}

/// Where inference runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// The CPU execution provider.
    #[default]
    Cpu,
    /// The CUDA execution provider on this device id (needs the `cuda` feature and the
    /// `onnxruntime-gpu` library); failing to register it is an error, never a silent CPU
    /// fallback.
    Cuda(i32),
}

impl FromStr for Device {
    type Err = InferenceError;

    /// `cpu`, `cuda` (device 0) or `cuda:N`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || InferenceError::Invalid(format!("device `{s}`: expected cpu, cuda or cuda:N"));
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Device::Cpu),
            "cuda" | "gpu" => Ok(Device::Cuda(0)),
            other => {
                let id = other.strip_prefix("cuda:").ok_or_else(bad)?;
                id.parse::<i32>()
                    .ok()
                    .filter(|&i| i >= 0)
                    .map(Device::Cuda)
                    .ok_or_else(bad)
            }
        }
    }
}

/// The `.ort/lib` library below `dir`, preferring the unversioned name, else the highest
/// versioned `libonnxruntime.so.*`.
fn local_install(dir: &Path) -> Option<PathBuf> {
    let lib = dir.join(".ort").join("lib");
    let plain = lib.join("libonnxruntime.so");
    if plain.is_file() {
        return Some(plain);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(&lib)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libonnxruntime.so."))
        })
        .collect();
    found.sort();
    found.pop()
}

/// Locates the ONNX Runtime shared library (see the module doc for the order). An explicit
/// path or `ORT_DYLIB_PATH` that names a missing file is an error, not skipped.
pub fn find_library(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(InferenceError::RuntimeNotFound(format!(
                "ONNX Runtime library {} does not exist. {}",
                p.display(),
                install_hint()
            )))
        };
    }
    if let Some(v) = std::env::var_os(ORT_DYLIB_ENV).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(v);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(InferenceError::RuntimeNotFound(format!(
                "{ORT_DYLIB_ENV}={} does not exist. {}",
                p.display(),
                install_hint()
            )))
        };
    }
    let mut starts = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        starts.push(dir);
    }
    if let Ok(dir) = std::env::current_dir() {
        starts.push(dir);
    }
    for start in &starts {
        if let Some(p) = start.ancestors().find_map(local_install) {
            return Ok(p);
        }
    }
    let searched: Vec<String> = starts.iter().map(|p| p.display().to_string()).collect();
    Err(InferenceError::RuntimeNotFound(format!(
        "ONNX Runtime library not found: {ORT_DYLIB_ENV} is not set and there is no \
         .ort/lib/libonnxruntime.so* in or above {}. {}",
        searched.join(" or "),
        install_hint()
    )))
}

/// The loaded library and ort's environment, once per process.
struct Runtime {
    path: PathBuf,
    env: Environment,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static INIT: Mutex<()> = Mutex::new(());

fn runtime(explicit: Option<&Path>) -> Result<&'static Runtime> {
    // Resolve first, so a bad explicit path is reported even after a successful load.
    let path = find_library(explicit)?;
    if let Some(rt) = RUNTIME.get() {
        if rt.path != path {
            tracing::warn!(
                "ONNX Runtime is already loaded from {}; ignoring {}",
                rt.path.display(),
                path.display()
            );
        }
        return Ok(rt);
    }
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let load_err = |message: String| InferenceError::RuntimeLoad {
        path: path.clone(),
        message: format!("{message}. {}", install_hint()),
    };
    let env = ort::init_from(&path)
        .map_err(|e| load_err(e.to_string()))?
        .with_name("ssc")
        .build()
        .map_err(|e| load_err(e.to_string()))?;
    tracing::info!("ONNX Runtime loaded from {}", path.display());
    Ok(RUNTIME.get_or_init(|| Runtime { path, env }))
}

/// Loads the ONNX Runtime library (once per process) and returns its path. Later calls
/// return the already loaded library; an explicit path that does not exist is still an
/// error.
pub fn init(explicit: Option<&Path>) -> Result<PathBuf> {
    runtime(explicit).map(|rt| rt.path.clone())
}

/// How to open a [`Model`].
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Execution device.
    pub device: Device,
    /// Intra-op threads of this session (1 was fastest for small models on 2 vCPUs; give
    /// each of several workers one).
    pub intra_threads: usize,
    /// Explicit library path (else the search of [`find_library`]).
    pub library: Option<PathBuf>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            device: Device::Cpu,
            intra_threads: 1,
            library: None,
        }
    }
}

/// The `ssc.*` metadata of an exported model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// `cam`, `irn`, `deeplab` or `backbone`.
    pub arch: String,
    /// Output class names.
    pub class_names: Vec<String>,
    /// Normalisation mean (RGB, [0, 1] units).
    pub mean: [f64; 3],
    /// Normalisation std.
    pub std: [f64; 3],
    /// Output stride of the main output.
    pub output_stride: usize,
    /// The resolved export configuration.
    pub config: serde_json::Value,
    /// ssc version that wrote the file.
    pub version: String,
}

impl ModelInfo {
    /// Parses the metadata map; `model` names the file in errors.
    pub fn from_map(map: &HashMap<String, String>, model: &Path) -> Result<Self> {
        let err = |message: String| InferenceError::Model {
            model: model.to_path_buf(),
            message,
        };
        let get = |k: &str| {
            map.get(k).ok_or_else(|| {
                err(format!(
                    "no `{k}` metadata: not a model exported by ssc (re-export it)"
                ))
            })
        };
        let json = |k: &str| -> Result<serde_json::Value> {
            serde_json::from_str(get(k)?).map_err(|e| err(format!("metadata `{k}`: {e}")))
        };
        fn typed<T: serde::de::DeserializeOwned>(
            k: &str,
            v: serde_json::Value,
            model: &Path,
        ) -> Result<T> {
            serde_json::from_value(v).map_err(|e| InferenceError::Model {
                model: model.to_path_buf(),
                message: format!("metadata `{k}`: {e}"),
            })
        }
        Ok(ModelInfo {
            arch: get("ssc.arch")?.clone(),
            class_names: typed("ssc.class_names", json("ssc.class_names")?, model)?,
            mean: typed("ssc.mean", json("ssc.mean")?, model)?,
            std: typed("ssc.std", json("ssc.std")?, model)?,
            output_stride: get("ssc.output_stride")?
                .parse()
                .map_err(|e| err(format!("metadata `ssc.output_stride`: {e}")))?,
            config: json("ssc.config")?,
            version: get("ssc.version")?.clone(),
        })
    }
}

/// One output of [`Model::run`].
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// Graph output name (`cam`, `edge_logits`, `pre_logits`, `logits`, …).
    pub name: String,
    /// Row-major values.
    pub data: Vec<f32>,
    /// Shape.
    pub shape: Vec<usize>,
}

/// An exported ssc network opened in an ONNX Runtime session.
pub struct Model {
    session: Session,
    info: ModelInfo,
    source: PathBuf,
    input: String,
    outputs: Vec<String>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("source", &self.source)
            .field("info", &self.info)
            .field("input", &self.input)
            .field("outputs", &self.outputs)
            .finish()
    }
}

enum Source<'a> {
    File(&'a Path),
    Memory(&'a [u8]),
}

impl Model {
    /// Opens an ONNX file.
    pub fn open(path: &Path, cfg: &SessionConfig) -> Result<Self> {
        if !path.is_file() {
            return Err(InferenceError::Model {
                model: path.to_path_buf(),
                message: "no such model file".into(),
            });
        }
        Self::build(Source::File(path), path.to_path_buf(), cfg)
    }

    /// Opens a model held in memory (`name` is used in messages).
    pub fn from_bytes(bytes: &[u8], name: &str, cfg: &SessionConfig) -> Result<Self> {
        Self::build(Source::Memory(bytes), PathBuf::from(name), cfg)
    }

    fn build(src: Source<'_>, source: PathBuf, cfg: &SessionConfig) -> Result<Self> {
        let rt = runtime(cfg.library.as_deref())?;
        let err = |message: String| InferenceError::Model {
            model: source.clone(),
            message,
        };
        let mut builder = Session::builder(&rt.env)
            .map_err(|e| err(e.to_string()))?
            .with_intra_threads(cfg.intra_threads.max(1))
            .map_err(|e| err(e.to_string()))?;
        if let Device::Cuda(id) = cfg.device {
            builder = with_cuda(builder, id).map_err(|e| match e {
                InferenceError::Invalid(m) => err(m),
                other => other,
            })?;
        }
        let session = match src {
            Source::File(p) => builder.commit_from_file(p),
            Source::Memory(b) => builder.commit_from_memory(b),
        }
        .map_err(|e| err(e.to_string()))?;
        let meta = session.metadata().map_err(|e| err(e.to_string()))?;
        let mut map = HashMap::new();
        for k in meta.custom_keys().map_err(|e| err(e.to_string()))? {
            if let Some(v) = meta.custom(&k) {
                map.insert(k, v);
            }
        }
        drop(meta);
        let info = ModelInfo::from_map(&map, &source)?;
        let inputs: Vec<String> = session
            .inputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        let [input] = inputs.as_slice() else {
            return Err(err(format!(
                "expected one input (the image), found {inputs:?}"
            )));
        };
        let input = input.clone();
        let outputs = session
            .outputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        Ok(Model {
            session,
            info,
            source,
            input,
            outputs,
        })
    }

    /// The `ssc.*` metadata.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Graph output names, in graph order.
    pub fn output_names(&self) -> &[String] {
        &self.outputs
    }

    /// Runs the network on a normalised image batch.
    ///
    /// # Shapes
    /// `image`: `[N, 3, H, W]` row-major. Returns every graph output, in graph order.
    pub fn run(&mut self, image: &[f32], shape: [usize; 4]) -> Result<Vec<Output>> {
        if shape.iter().product::<usize>() != image.len() || shape[1] != 3 {
            return Err(InferenceError::Invalid(format!(
                "{}: input shape {shape:?} does not hold {} values of an N×3×H×W image",
                self.source.display(),
                image.len()
            )));
        }
        let err = |message: String| InferenceError::Model {
            model: self.source.clone(),
            message,
        };
        let tensor = TensorRef::from_array_view((shape, image)).map_err(|e| err(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs![self.input.as_str() => tensor])
            .map_err(|e| InferenceError::Model {
                model: self.source.clone(),
                message: e.to_string(),
            })?;
        let mut result = Vec::with_capacity(self.outputs.len());
        for name in &self.outputs {
            let (s, data) = outputs[name.as_str()]
                .try_extract_tensor::<f32>()
                .map_err(|e| InferenceError::Model {
                    model: self.source.clone(),
                    message: format!("output `{name}`: {e}"),
                })?;
            result.push(Output {
                name: name.clone(),
                data: data.to_vec(),
                shape: s.iter().map(|&d| d.max(0) as usize).collect(),
            });
        }
        Ok(result)
    }
}

#[cfg(feature = "cuda")]
fn with_cuda(
    builder: ort::session::builder::SessionBuilder,
    id: i32,
) -> Result<ort::session::builder::SessionBuilder> {
    let ep = ort::ep::CUDA::default()
        .with_device_id(id)
        .build()
        .error_on_failure();
    builder.with_execution_providers([ep]).map_err(|e| {
        InferenceError::Invalid(format!(
            "cannot use CUDA device {id}: {e} (is the onnxruntime-gpu library with CUDA 13 and \
             cuDNN 9 installed?)"
        ))
    })
}

#[cfg(not(feature = "cuda"))]
fn with_cuda(
    _builder: ort::session::builder::SessionBuilder,
    id: i32,
) -> Result<ort::session::builder::SessionBuilder> {
    Err(InferenceError::NoCudaSupport(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse() {
        assert_eq!("cpu".parse::<Device>().unwrap(), Device::Cpu);
        assert_eq!("CUDA".parse::<Device>().unwrap(), Device::Cuda(0));
        assert_eq!("cuda:3".parse::<Device>().unwrap(), Device::Cuda(3));
        assert!("cuda:-1".parse::<Device>().is_err());
        assert!("tpu".parse::<Device>().is_err());
    }

    #[test]
    fn local_install_prefers_the_plain_name_then_the_highest_version() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(local_install(dir.path()), None);
        let lib = dir.path().join(".ort/lib");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::write(lib.join("libonnxruntime.so.1.24.0"), b"").unwrap();
        std::fs::write(lib.join("libonnxruntime.so.1.31.1"), b"").unwrap();
        std::fs::write(lib.join("other.so"), b"").unwrap();
        assert_eq!(
            local_install(dir.path()),
            Some(lib.join("libonnxruntime.so.1.31.1"))
        );
        std::fs::write(lib.join("libonnxruntime.so"), b"").unwrap();
        assert_eq!(
            local_install(dir.path()),
            Some(lib.join("libonnxruntime.so"))
        );
    }

    #[test]
    fn metadata_parses_and_missing_keys_are_named() {
        let mut m: HashMap<String, String> = [
            ("ssc.arch", "cam"),
            ("ssc.class_names", r#"["a","b"]"#),
            ("ssc.mean", "[0.5,0.5,0.5]"),
            ("ssc.std", "[0.25,0.25,0.25]"),
            ("ssc.output_stride", "16"),
            ("ssc.config", r#"{"num_classes":2}"#),
            ("ssc.version", "0.1.0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let info = ModelInfo::from_map(&m, Path::new("m.onnx")).unwrap();
        assert_eq!(info.class_names, ["a", "b"]);
        assert_eq!(info.output_stride, 16);
        assert_eq!(info.config["num_classes"], 2);
        m.remove("ssc.arch");
        let e = ModelInfo::from_map(&m, Path::new("m.onnx"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("m.onnx") && e.contains("ssc.arch"), "{e}");
    }
}
