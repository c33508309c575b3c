//! Helpers shared by the heads' tests (decoder, VGG, IRN, DeepLab): fixture loading, the
//! fixture tolerance rule and a finite-difference gradient check.
#![allow(dead_code)]

use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
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

/// Checks ∂f/∂x from candle's backprop against central differences of f (f64), where
/// `f(x)` must return a scalar. Fails when any component differs by more than
/// `tol·(1 + |numeric|)`.
pub fn gradcheck(x: &Tensor, f: impl Fn(&Tensor) -> Tensor, tol: f64) {
    let var = Var::from_tensor(x).unwrap();
    let y = f(var.as_tensor());
    let grads = y.backward().unwrap();
    let analytic: Vec<f64> = grads
        .get(var.as_tensor())
        .expect("no gradient reached the input")
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let base: Vec<f64> = x.flatten_all().unwrap().to_vec1().unwrap();
    let h = 1e-6;
    let eval = |v: &[f64]| -> f64 {
        let t = Tensor::from_vec(v.to_vec(), x.dims(), &Device::Cpu).unwrap();
        f(&t).to_scalar::<f64>().unwrap()
    };
    let mut worst = 0f64;
    for i in 0..base.len() {
        let mut p = base.clone();
        p[i] += h;
        let fp = eval(&p);
        p[i] -= 2.0 * h;
        let fm = eval(&p);
        let numeric = (fp - fm) / (2.0 * h);
        let err = (numeric - analytic[i]).abs() / (1.0 + numeric.abs());
        worst = worst.max(err);
        assert!(
            err <= tol,
            "gradient {i}: analytic {} vs numeric {numeric}",
            analytic[i]
        );
    }
    eprintln!(
        "gradcheck: {} components, worst rel err {worst:.2e}",
        base.len()
    );
}

/// Σ(y·w) with fixed pseudo-random weights, so every output element matters to the gradient.
pub fn weighted_sum(y: &Tensor, seed: u64) -> Tensor {
    let w = rand_f64(y.dims(), seed);
    (y * w).unwrap().sum_all().unwrap()
}
