//! The im2col conv op: forward equals candle's built-in conv, input and weight gradients
//! equal finite differences (f64), frozen layers get no weight gradient.

use candle_core::{DType, Device, Module, Tensor, Var};
use ssc_models::ops::conv::{Conv2d, ConvParams, conv2d, conv2d_builtin};
use ssc_models::ops::gradcheck::{check, random_f64};

/// (h, w, c_in, c_out, k, stride, padding, dilation): odd/even and H≠W parity, stride 2,
/// dilation 2, padding, 1×1 pointwise and strided 1×1.
type Case = (usize, usize, usize, usize, usize, usize, usize, usize);

const CASES: &[Case] = &[
    (7, 8, 2, 3, 3, 2, 1, 1),
    (8, 7, 2, 3, 3, 2, 1, 1),
    (6, 9, 3, 2, 3, 1, 2, 2),
    (9, 6, 2, 2, 3, 2, 2, 2),
    (5, 6, 3, 4, 1, 1, 0, 1),
    (7, 6, 3, 2, 1, 2, 0, 1),
    (8, 9, 1, 2, 7, 2, 3, 1),
    (5, 5, 2, 2, 2, 1, 0, 1),
];

fn params(c: &Case) -> ConvParams {
    ConvParams {
        stride: c.5,
        padding: c.6,
        dilation: c.7,
    }
}

#[test]
fn forward_matches_builtin_conv() {
    let dev = Device::Cpu;
    for (i, c) in CASES.iter().enumerate() {
        let x = random_f64(&[2, c.2, c.0, c.1], i as u64, &dev).unwrap();
        let w = random_f64(&[c.3, c.2, c.4, c.4], 50 + i as u64, &dev).unwrap();
        for dt in [DType::F64, DType::F32] {
            let (x, w) = (x.to_dtype(dt).unwrap(), w.to_dtype(dt).unwrap());
            let ours = conv2d(&x, &w, params(c), true).unwrap();
            let theirs = conv2d_builtin(&x, &w, params(c)).unwrap();
            assert_eq!(ours.dims(), theirs.dims(), "case {i}");
            let err = (ours - theirs)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            let tol = if dt == DType::F64 { 1e-12 } else { 1e-5 };
            assert!(err < tol, "case {i} {dt:?}: {err}");
        }
    }
}

#[test]
fn input_gradient_matches_finite_differences() {
    let dev = Device::Cpu;
    for (i, c) in CASES.iter().enumerate() {
        let x = random_f64(&[1, c.2, c.0, c.1], 100 + i as u64, &dev).unwrap();
        let w = random_f64(&[c.3, c.2, c.4, c.4], 150 + i as u64, &dev).unwrap();
        let r = check(|t| conv2d(t, &w, params(c), true), &x, 1e-6, i as u64).unwrap();
        assert!(r.passes(1e-8, 1e-8), "case {i}: {r:?}");
        assert!(r.max_abs_grad > 0.01, "case {i}: {r:?}");
    }
}

#[test]
fn weight_gradient_matches_finite_differences() {
    let dev = Device::Cpu;
    for (i, c) in CASES.iter().enumerate() {
        let x = random_f64(&[2, c.2, c.0, c.1], 200 + i as u64, &dev).unwrap();
        let w = random_f64(&[c.3, c.2, c.4, c.4], 250 + i as u64, &dev).unwrap();
        let r = check(|t| conv2d(&x, t, params(c), true), &w, 1e-6, i as u64).unwrap();
        assert!(r.passes(1e-8, 1e-8), "case {i}: {r:?}");
        assert!(r.max_abs_grad > 0.01, "case {i}: {r:?}");
    }
}

#[test]
fn frozen_layer_gets_no_weight_gradient_but_passes_input_gradient() {
    let dev = Device::Cpu;
    let w = Var::from_tensor(&random_f64(&[3, 2, 3, 3], 1, &dev).unwrap()).unwrap();
    let x = Var::from_tensor(&random_f64(&[1, 2, 7, 8], 2, &dev).unwrap()).unwrap();
    let p = ConvParams {
        stride: 2,
        padding: 1,
        dilation: 1,
    };
    let frozen = Conv2d::from_weight(w.as_tensor().clone(), None, p, true);
    let live = Conv2d::from_weight(w.as_tensor().clone(), None, p, false);
    let g = frozen
        .forward(x.as_tensor())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(g.get(w.as_tensor()).is_none());
    let gx_frozen = g.get(x.as_tensor()).unwrap().clone();
    let g = live
        .forward(x.as_tensor())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(g.get(w.as_tensor()).is_some());
    let diff = (gx_frozen - g.get(x.as_tensor()).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert_eq!(diff, 0.0);
}

#[test]
fn bias_is_added_per_channel_and_bad_shapes_fail() {
    let dev = Device::Cpu;
    let w = Tensor::zeros((2, 1, 1, 1), DType::F32, &dev).unwrap();
    let b = Tensor::new(&[1.5f32, -2.0], &dev).unwrap();
    let conv = Conv2d::from_weight(w.clone(), Some(b), ConvParams::default(), true);
    let y = conv
        .forward(&Tensor::ones((1, 1, 2, 3), DType::F32, &dev).unwrap())
        .unwrap();
    let v = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(v, [[1.5f32; 6], [-2.0; 6]].concat());
    let bad = Tensor::ones((1, 3, 4, 4), DType::F32, &dev).unwrap();
    assert!(conv2d(&bad, &w, ConvParams::default(), true).is_err());
    let big = Tensor::zeros((2, 3, 5, 5), DType::F32, &dev).unwrap();
    assert!(conv2d(&bad, &big, ConvParams::default(), true).is_err());
}

/// (h, w, c_in, c_out, k, stride, padding): the decoder's 4×4/s2/p1, H≠W, stride 1 and 3.
const TRANSPOSED: &[(usize, usize, usize, usize, usize, usize, usize)] = &[
    (4, 5, 2, 3, 4, 2, 1),
    (3, 3, 3, 2, 3, 1, 1),
    (3, 4, 2, 2, 3, 3, 0),
    (5, 4, 1, 2, 4, 2, 2),
];

#[test]
fn transposed_conv_matches_builtin_and_finite_differences() {
    use ssc_models::ops::conv_transpose2d;
    let dev = Device::Cpu;
    for (i, &(h, w, ci, co, k, s, p)) in TRANSPOSED.iter().enumerate() {
        let x = random_f64(&[2, ci, h, w], 300 + i as u64, &dev).unwrap();
        let wt = random_f64(&[ci, co, k, k], 350 + i as u64, &dev).unwrap();
        let ours = conv_transpose2d(&x, &wt, s, p).unwrap();
        let theirs = x.conv_transpose2d(&wt, p, 0, s, 1).unwrap();
        assert_eq!(ours.dims(), theirs.dims(), "case {i}");
        let err = (ours - theirs)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(err < 1e-12, "case {i}: forward differs by {err}");
        let r = check(|t| conv_transpose2d(t, &wt, s, p), &x, 1e-6, i as u64).unwrap();
        assert!(
            r.passes(1e-8, 1e-8) && r.max_abs_grad > 0.01,
            "case {i} dx: {r:?}"
        );
        let r = check(|t| conv_transpose2d(&x, t, s, p), &wt, 1e-6, i as u64).unwrap();
        assert!(
            r.passes(1e-8, 1e-8) && r.max_abs_grad > 0.01,
            "case {i} dw: {r:?}"
        );
    }
}
