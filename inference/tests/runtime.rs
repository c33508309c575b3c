//! `ssc_inference::runtime`: a missing library, a bad model and bad input give typed errors
//! with actionable messages, never an ort panic.

mod common;

use std::path::Path;

use ssc_inference::InferenceError;
use ssc_inference::runtime::{Device, Model, SessionConfig, find_library};
use ssc_models::onnx::Graph;
use ssc_models::onnx::proto::Dim;

fn bogus() -> &'static Path {
    Path::new("/nonexistent/ssc-test/libonnxruntime.so.1.31.1")
}

#[test]
fn a_missing_library_says_how_to_install_it() {
    let e = find_library(Some(bogus())).unwrap_err();
    assert!(matches!(e, InferenceError::RuntimeNotFound(_)), "{e:?}");
    let msg = e.to_string();
    for part in [
        "/nonexistent/ssc-test/libonnxruntime.so.1.31.1",
        "bash scripts/setup-ort.sh",
        "pip install onnxruntime==1.31.1",
        "ORT_DYLIB_PATH=",
        "onnxruntime/capi/libonnxruntime.so.1.31.1",
    ] {
        assert!(msg.contains(part), "message lacks `{part}`: {msg}");
    }
    // Opening a model with that library fails the same way, before ort is touched.
    let cfg = SessionConfig {
        library: Some(bogus().to_path_buf()),
        ..SessionConfig::default()
    };
    let e = Model::from_bytes(b"irrelevant", "m.onnx", &cfg).unwrap_err();
    assert!(matches!(e, InferenceError::RuntimeNotFound(_)), "{e:?}");
}

/// A graph with one input and an identity output, optionally without ssc metadata.
fn tiny_model(with_meta: bool) -> Vec<u8> {
    let mut g = Graph::new("t");
    let d = |s: &str| Dim::Param(s.into());
    let x = g.input("image", &[d("N"), Dim::Fixed(3), d("H"), d("W")]);
    let y = g.relu(&x);
    g.output(&y, "out", &[d("N"), Dim::Fixed(3), d("H"), d("W")]);
    let meta: Vec<(String, String)> = if with_meta {
        [
            ("ssc.arch", "backbone"),
            ("ssc.class_names", "[]"),
            ("ssc.mean", "[0.5,0.5,0.5]"),
            ("ssc.std", "[1,1,1]"),
            ("ssc.output_stride", "1"),
            ("ssc.config", "{}"),
            ("ssc.version", "0"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    } else {
        vec![]
    };
    g.to_model_bytes(&meta)
}

#[test]
fn bad_models_and_inputs_are_typed_errors() {
    if !common::ort_available() {
        return;
    }
    let cfg = SessionConfig::default();
    let e = Model::open(Path::new("/nonexistent/m.onnx"), &cfg).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/m.onnx"), "{e}");

    let e = Model::from_bytes(b"not a protobuf", "garbage.onnx", &cfg).unwrap_err();
    assert!(matches!(e, InferenceError::Model { .. }), "{e:?}");
    assert!(e.to_string().starts_with("garbage.onnx: "), "{e}");

    let e = Model::from_bytes(&tiny_model(false), "foreign.onnx", &cfg).unwrap_err();
    assert!(e.to_string().contains("ssc.arch"), "{e}");

    let mut m = Model::from_bytes(&tiny_model(true), "relu.onnx", &cfg).unwrap();
    let x = [-1.0f32, 2.0, -3.0, 4.0, 0.5, -0.5];
    let out = m.run(&x, [1, 3, 1, 2]).unwrap();
    assert_eq!(out[0].name, "out");
    assert_eq!(out[0].shape, [1, 3, 1, 2]);
    assert_eq!(out[0].data, [0.0, 2.0, 0.0, 4.0, 0.5, 0.0]);
    let e = m.run(&x, [1, 3, 2, 2]).unwrap_err();
    assert!(matches!(e, InferenceError::Invalid(_)), "{e:?}");
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_without_the_feature_is_an_error() {
    if !common::ort_available() {
        return;
    }
    let cfg = SessionConfig {
        device: Device::Cuda(0),
        ..SessionConfig::default()
    };
    let e = Model::from_bytes(&tiny_model(true), "relu.onnx", &cfg).unwrap_err();
    assert!(matches!(e, InferenceError::NoCudaSupport(0)), "{e:?}");
    assert!(e.to_string().contains("without CUDA support"), "{e}");
}
