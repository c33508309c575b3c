//! DRS (§2.2) vs `losses/drs.safetensors`: output and gradient; finite-difference check.

mod common;

use candle_core::{Device, Var};
use ssc_core::tensors::TensorFile;
use ssc_models::drs::drs;
use ssc_models::ops::gradcheck::{check, random_f64};

#[test]
fn drs_matches_fixture_output_and_gradient() {
    let Some(dir) = ssc_core::fixtures::case(env!("CARGO_MANIFEST_DIR"), "losses") else {
        return;
    };
    let cfg = common::config(&dir);
    let delta = cfg["drs"]["delta"].as_f64().unwrap();
    let tol = &cfg["tolerance"]["drs"];
    let (atol, rtol) = (tol["atol"].as_f64().unwrap(), tol["rtol"].as_f64().unwrap());
    let tf = TensorFile::open(dir.join("drs.safetensors")).unwrap();
    let x = Var::from_tensor(&common::tensor(&tf, "X")).unwrap();
    let out = drs(x.as_tensor(), delta).unwrap();
    common::assert_close("out", &out, &common::tensor(&tf, "out"), atol, rtol);
    let u = common::tensor(&tf, "upstream_grad");
    let grads = out.mul(&u).unwrap().sum_all().unwrap().backward().unwrap();
    let gx = grads.get(x.as_tensor()).unwrap();
    common::assert_close("grad_X", gx, &common::tensor(&tf, "grad_X"), atol, rtol);
}

#[test]
fn drs_gradient_matches_finite_differences() {
    let x = random_f64(&[2, 3, 5, 4], 7, &Device::Cpu).unwrap();
    let r = check(|t| drs(t, 0.55), &x, 1e-6, 3).unwrap();
    assert!(r.passes(1e-8, 1e-8), "{r:?}");
    assert!(r.max_abs_grad > 0.1);
}
