//! Helpers shared by the heads' tests (decoder, VGG, IRN, DeepLab): fixture loading, the
//! fixture tolerance rule and a finite-difference gradient check.
#![allow(dead_code)]

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use ssc_core::tensors::TensorFile;

/// Parsed `config.json` of a fixture case.
pub fn config(case: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(case.join("config.json")).expect("config.json");
    serde_json::from_str(&text).expect("config.json is JSON")
}

/// Tensor `name` of a fixture file as an f32 candle tensor.
pub fn load(file: &TensorFile, name: &str) -> Tensor {
    let (v, s) = file.f32(name).unwrap();
    Tensor::from_vec(v, s, &Device::Cpu).unwrap()
}

/// The fixture rule `max|a − g| ≤ atol + rtol·max|g|`; panics with the numbers otherwise.
pub fn assert_close(what: &str, actual: &Tensor, golden: &Tensor, atol: f64, rtol: f64) {
    assert_eq!(actual.dims(), golden.dims(), "{what}: shape");
    let a = actual.to_dtype(DType::F64).unwrap();
    let g = golden.to_dtype(DType::F64).unwrap();
    let err = (&a - &g)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    let gmax = g
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    let bound = atol + rtol * gmax;
    assert!(
        err <= bound,
        "{what}: max abs err {err:e} > {bound:e} (max |golden| {gmax})"
    );
    eprintln!("{what}: max abs err {err:.3e} (bound {bound:.3e})");
}

/// Deterministic f64 test input in [−1, 1).
pub fn rand_f64(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = ssc_core::rng::Rng::new(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Checks the gradient of `f` at the f64 tensor `x` against central differences (through
/// `ssc_models::ops::gradcheck`, objective Σ f(x)·U with a fixed random U); fails when
/// `max|analytic − numeric| > tol·(1 + max|numeric|)`.
pub fn gradcheck(x: &Tensor, f: impl Fn(&Tensor) -> Tensor, tol: f64) {
    let r = ssc_models::ops::gradcheck::check(|t| Ok(f(t)), x, 1e-6, 17).unwrap();
    assert!(r.passes(tol, tol), "gradient check failed: {r:?}");
    assert!(r.max_abs_grad > 0.0, "gradient is identically zero: {r:?}");
    eprintln!("gradcheck: {r:?}");
}
