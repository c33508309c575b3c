//! Helpers shared by the parity tests.
#![allow(dead_code)]

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde_json::Value;
use ssc_core::tensors::TensorFile;

/// The case's `config.json`.
pub fn config(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

/// Float tensor `name` of `file` as an f32 CPU tensor.
pub fn tensor(file: &TensorFile, name: &str) -> Tensor {
    let (v, s) = file.f32(name).unwrap();
    Tensor::from_vec(v, s, &Device::Cpu).unwrap()
}

/// max |a − b| (shapes must agree).
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    (a.to_dtype(DType::F64).unwrap() - b.to_dtype(DType::F64).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// max |a|.
pub fn max_abs(a: &Tensor) -> f64 {
    a.to_dtype(DType::F64)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// Asserts the fixture tolerance rule `max|actual − golden| ≤ atol + rtol·max|golden|`.
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor, atol: f64, rtol: f64) {
    let err = max_abs_diff(got, want);
    let bound = atol + rtol * max_abs(want);
    assert!(err <= bound, "{what}: max error {err} > {bound}");
}
