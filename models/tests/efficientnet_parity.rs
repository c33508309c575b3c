//! EfficientNet-Lite against goldens made with the PyTorch package `efficientnet-lite-pytorch`
//! (`models/tests/goldens/efficientnet-lite/`, written by `scripts/goldens/efficientnet_lite.py`):
//! the layout is inferred from the state dict's keys and shapes and must equal the package's
//! block arguments; stem, every stage output, the head features and the ImageNet logits must
//! agree within each case's tolerance. Cases: the real Lite0 weights at the reference size
//! (static = dynamic "SAME" padding) and at an odd size (dynamic padding), and a random
//! width-0.25 Lite1 layout. Shapes, class counts and tolerances come from `config.json`; the
//! real-weights cases skip with a notice when `scripts/get-weights.sh` has not been run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Tensor};
use serde_json::Value;
use ssc_core::tensors::TensorFile;
use ssc_models::efficientnet::{EfficientNetClassifier, EfficientNetConfig};
use ssc_models::import::load_state_dict;

fn goldens() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/goldens/efficientnet-lite")
}

fn config() -> Value {
    serde_json::from_slice(&std::fs::read(goldens().join("config.json")).unwrap()).unwrap()
}

fn u(v: &Value) -> usize {
    v.as_u64()
        .unwrap_or_else(|| panic!("expected an integer, got {v}")) as usize
}

/// The case's weights file: in the goldens folder, or a downloaded one (`weights/…`).
fn weights_path(case: &Value) -> Option<PathBuf> {
    let w = case["weights"].as_str().unwrap();
    match w.strip_prefix("weights/") {
        Some(name) => ssc_core::fixtures::weights_file(env!("CARGO_MANIFEST_DIR"), name),
        None => Some(goldens().join(w)),
    }
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor, atol: f64, rtol: f64) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let g = got.to_dtype(DType::F64).unwrap();
    let w = want.to_dtype(DType::F64).unwrap();
    let err: f64 = (&g - &w)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    let scale: f64 = w.abs().unwrap().max_all().unwrap().to_scalar().unwrap();
    let bound = atol + rtol * scale;
    assert!(err <= bound, "{what}: max error {err:e} > {bound:e}");
    eprintln!("{what}: max error {err:.2e} (bound {bound:.2e})");
}

fn run_case(name: &str, case: &Value) {
    let Some(wpath) = weights_path(case) else {
        return;
    };
    let sd = load_state_dict(&wpath).unwrap();
    if let Some(n) = case["weights_num_tensors"].as_u64() {
        assert_eq!(
            sd.names().len() as u64,
            n,
            "{name}: tensors in {}",
            wpath.display()
        );
    }
    let shapes: BTreeMap<String, Vec<usize>> = sd
        .tensors()
        .iter()
        .map(|(k, t)| (k.clone(), t.dims().to_vec()))
        .collect();
    let cfg = EfficientNetConfig::infer(&shapes, 32).unwrap();
    // The inferred layout is the package's.
    let want: Vec<[usize; 6]> = case["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            [
                u(&s["repeats"]),
                u(&s["kernel"]),
                u(&s["stride"]),
                u(&s["expand_ratio"]),
                u(&s["input_filters"]),
                u(&s["output_filters"]),
            ]
        })
        .collect();
    let got: Vec<[usize; 6]> = cfg
        .stages
        .iter()
        .map(|s| {
            [
                s.repeats,
                s.kernel,
                s.stride,
                s.expand_ratio,
                s.in_channels,
                s.out_channels,
            ]
        })
        .collect();
    assert_eq!(got, want, "{name}: stages");
    assert_eq!(cfg.stem_channels, u(&case["stem_width"]));
    assert_eq!(cfg.head_channels, u(&case["head_width"]));
    assert_eq!(cfg.bn_eps, case["bn_eps"].as_f64().unwrap());

    let dev = Device::Cpu;
    let net = EfficientNetClassifier::new(
        &cfg,
        u(&case["num_classes"]),
        sd.var_builder(DType::F32, &dev),
    )
    .unwrap();
    let file = TensorFile::open(goldens().join(format!("{name}.safetensors"))).unwrap();
    let load = |t: &str| {
        let (v, s) = file.f32(t).unwrap();
        Tensor::from_vec(v, s, &dev).unwrap()
    };
    let tol = &case["tolerance"];
    let (atol, rtol) = (tol["atol"].as_f64().unwrap(), tol["rtol"].as_f64().unwrap());
    let x = load("input");
    let s = net.backbone().forward_stages_t(&x, false).unwrap();
    let mut compared = 0;
    for t in case["tensors"].as_object().unwrap().keys() {
        let got = match t.as_str() {
            "input" => continue,
            "stem" => s.stem.clone(),
            "features" => s.features.clone(),
            "logits" => net.forward(&x).unwrap(),
            other => {
                let k: usize = other
                    .strip_prefix("stage")
                    .and_then(|k| k.parse().ok())
                    .unwrap_or_else(|| panic!("unknown golden tensor {other}"));
                s.stages[k - 1].clone()
            }
        };
        assert_close(&format!("{name} {t}"), &got, &load(t), atol, rtol);
        compared += 1;
    }
    assert!(compared >= 3, "{name}: compared {compared} tensors");
    if let Some(top) = case["top5_imagenet_ids"].as_array() {
        let logits: Vec<f32> = net
            .forward(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let mut idx: Vec<usize> = (0..logits.len()).collect();
        idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        assert_eq!(
            idx[0] as u64,
            top[0].as_u64().unwrap(),
            "{name}: top-1 class"
        );
    }
}

#[test]
fn lite_matches_the_pytorch_package() {
    let cfg = config();
    let cases = cfg["cases"].as_object().unwrap();
    assert!(!cases.is_empty());
    for (name, case) in cases {
        run_case(name, case);
    }
}
