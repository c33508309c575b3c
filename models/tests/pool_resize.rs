//! Max pool and bilinear resize: values against a direct reference / the torch fixture, and
//! gradients against finite differences in f64.

use candle_core::{Device, Tensor};
use ssc_core::tensors::TensorFile;
use ssc_models::ops::gradcheck::{check, random_f64};
use ssc_models::ops::{bilinear, max_pool2d};

/// Direct max pool (PyTorch semantics) for comparison.
fn naive_pool(
    x: &[f64],
    dims: (usize, usize, usize, usize),
    k: usize,
    s: usize,
    p: usize,
    ceil: bool,
) -> (Vec<f64>, usize, usize) {
    let (n, c, h, w) = dims;
    let oh = ssc_models::ops::pool::pool_out_len(h, k, s, p, ceil).unwrap();
    let ow = ssc_models::ops::pool::pool_out_len(w, k, s, p, ceil).unwrap();
    let mut out = vec![f64::NEG_INFINITY; n * c * oh * ow];
    for nc in 0..n * c {
        for oy in 0..oh {
            for ox in 0..ow {
                for ky in 0..k {
                    for kx in 0..k {
                        let y = (oy * s + ky) as isize - p as isize;
                        let xx = (ox * s + kx) as isize - p as isize;
                        if y < 0 || xx < 0 || y >= h as isize || xx >= w as isize {
                            continue;
                        }
                        let v = x[nc * h * w + y as usize * w + xx as usize];
                        let o = &mut out[nc * oh * ow + oy * ow + ox];
                        *o = o.max(v);
                    }
                }
            }
        }
    }
    (out, oh, ow)
}

const POOL_CASES: &[(usize, usize, usize, usize, usize, bool)] = &[
    // (h, w, kernel, stride, padding, ceil)
    (7, 8, 3, 2, 1, false),
    (8, 7, 3, 2, 1, true),
    (6, 9, 2, 2, 0, false),
    (5, 5, 2, 2, 0, true),
    (7, 6, 3, 1, 1, false),
    (9, 11, 3, 3, 0, true),
];

#[test]
fn max_pool_matches_direct_definition() {
    let dev = Device::Cpu;
    for (i, &(h, w, k, s, p, ceil)) in POOL_CASES.iter().enumerate() {
        let x = random_f64(&[2, 3, h, w], i as u64, &dev).unwrap();
        let got = max_pool2d(&x, k, s, p, ceil).unwrap();
        let (want, oh, ow) = naive_pool(
            &x.flatten_all().unwrap().to_vec1().unwrap(),
            (2, 3, h, w),
            k,
            s,
            p,
            ceil,
        );
        assert_eq!(got.dims(), &[2, 3, oh, ow], "case {i}");
        assert_eq!(
            got.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
            want,
            "case {i}"
        );
    }
}

#[test]
fn max_pool_torch_sizes() {
    // Known PyTorch sizes: ResNet stem on 32×40 → 16×20; ceil mode 5→3 with k2 s2.
    let x = Tensor::zeros((1, 1, 32, 40), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert_eq!(
        max_pool2d(&x, 3, 2, 1, false).unwrap().dims(),
        &[1, 1, 16, 20]
    );
    let x = Tensor::zeros((1, 1, 5, 5), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert_eq!(max_pool2d(&x, 2, 2, 0, true).unwrap().dims(), &[1, 1, 3, 3]);
    assert_eq!(
        max_pool2d(&x, 2, 2, 0, false).unwrap().dims(),
        &[1, 1, 2, 2]
    );
    assert!(max_pool2d(&x, 2, 2, 2, false).is_err());
    assert!(max_pool2d(&x, 0, 2, 0, false).is_err());
    assert!(max_pool2d(&x, 9, 2, 1, false).is_err());
    assert_eq!(ssc_models::ops::pool::pool_out_len(3, 5, 1, 0, false), None);
}

#[test]
fn max_pool_gradient_matches_finite_differences() {
    let dev = Device::Cpu;
    for (i, &(h, w, k, s, p, ceil)) in POOL_CASES.iter().enumerate() {
        let x = random_f64(&[1, 2, h, w], 100 + i as u64, &dev).unwrap();
        let r = check(|t| max_pool2d(t, k, s, p, ceil), &x, 1e-6, i as u64).unwrap();
        assert!(r.passes(1e-7, 1e-7), "case {i}: {r:?}");
        assert!(r.max_abs_grad > 0.1, "case {i}: gradient vanished {r:?}");
    }
}

#[test]
fn max_pool_tie_gradient_goes_to_first_maximum() {
    // A constant window: PyTorch sends the whole gradient to the first (top-left) element.
    let x = candle_core::Var::from_tensor(
        &Tensor::ones((1, 1, 2, 2), candle_core::DType::F64, &Device::Cpu).unwrap(),
    )
    .unwrap();
    let y = max_pool2d(x.as_tensor(), 2, 2, 0, false).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    let gx = g.get(x.as_tensor()).unwrap().flatten_all().unwrap();
    assert_eq!(gx.to_vec1::<f64>().unwrap(), vec![1.0, 0.0, 0.0, 0.0]);
}

#[test]
fn bilinear_gradient_matches_finite_differences() {
    let dev = Device::Cpu;
    for (i, &(h, w, oh, ow)) in [(7, 8, 13, 5), (8, 7, 4, 16), (5, 6, 5, 6), (3, 4, 1, 1)]
        .iter()
        .enumerate()
    {
        let x = random_f64(&[2, 2, h, w], 200 + i as u64, &dev).unwrap();
        let r = check(|t| bilinear(t, oh, ow), &x, 1e-6, i as u64).unwrap();
        assert!(r.passes(1e-8, 1e-8), "case {i}: {r:?}");
    }
}

#[test]
fn bilinear_matches_torch_fixture() {
    let Some(dir) = ssc_core::fixtures::case(env!("CARGO_MANIFEST_DIR"), "resize") else {
        return;
    };
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let tol = &cfg["tolerance"]["bilinear"];
    let (atol, rtol) = (tol["atol"].as_f64().unwrap(), tol["rtol"].as_f64().unwrap());
    let tf = TensorFile::open(dir.join("tensors.safetensors")).unwrap();
    let (v, s) = tf.f32("bilinear_input").unwrap();
    let x = Tensor::from_vec(v, s, &Device::Cpu).unwrap();
    let sizes = cfg["bilinear"]["sizes"].as_array().unwrap();
    assert!(!sizes.is_empty());
    for sz in sizes {
        let (h, w) = (
            sz[0].as_u64().unwrap() as usize,
            sz[1].as_u64().unwrap() as usize,
        );
        let (want, ws) = tf.f32(&format!("bilinear_{h}x{w}")).unwrap();
        let got = bilinear(&x, h, w).unwrap();
        assert_eq!(got.dims(), ws.as_slice());
        let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let gmax = want.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
        let err = got
            .iter()
            .zip(&want)
            .fold(0f64, |m, (a, b)| m.max((a - b).abs() as f64));
        assert!(err <= atol + rtol * gmax, "{h}x{w}: err {err}");
    }
}
