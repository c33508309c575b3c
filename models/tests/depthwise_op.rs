//! The depthwise convolution op: forward and both gradients equal candle's grouped
//! convolution on an explicitly padded input, and its gradients match central finite
//! differences (f64) for strides 1 and 2, dilations 1 and 2, kernels 3 and 5 and asymmetric
//! ("SAME") padding; a frozen weight gets no gradient; the result does not depend on the
//! thread count; TF "SAME" padding gives ⌈n/s⌉ outputs.

use candle_core::{DType, Device, Tensor, Var};
use ssc_models::ops::depthwise::{
    DepthwiseParams, depthwise_conv2d, depthwise_conv2d_builtin, same_pad,
};
use ssc_models::ops::gradcheck::{check, random_f64};

fn cases() -> Vec<(Vec<usize>, usize, DepthwiseParams)> {
    let p = |stride, dilation, pads| DepthwiseParams {
        stride,
        dilation,
        pads,
    };
    vec![
        (vec![2, 3, 7, 8], 3, p(1, 1, [1, 1, 1, 1])),
        (vec![2, 3, 8, 7], 3, p(2, 1, [0, 1, 0, 1])),
        (vec![1, 4, 9, 6], 5, p(2, 1, [1, 2, 2, 2])),
        (vec![2, 2, 9, 10], 3, p(1, 2, [2, 2, 2, 2])),
        (vec![1, 3, 11, 9], 5, p(1, 2, [4, 4, 4, 4])),
        (vec![1, 2, 6, 5], 3, p(1, 1, [0, 0, 0, 0])),
        (vec![1, 2, 7, 7], 5, DepthwiseParams::same(7, 7, 5, 2, 1)),
    ]
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar()
        .unwrap()
}

#[test]
fn forward_and_gradients_equal_candles_grouped_conv() {
    let dev = Device::Cpu;
    for (shape, k, p) in cases() {
        let c = shape[1];
        let x = Var::from_tensor(&random_f64(&shape, 1, &dev).unwrap()).unwrap();
        let w = Var::from_tensor(&random_f64(&[c, 1, k, k], 2, &dev).unwrap()).unwrap();
        let ours = depthwise_conv2d(x.as_tensor(), w.as_tensor(), p, true).unwrap();
        let theirs = depthwise_conv2d_builtin(x.as_tensor(), w.as_tensor(), p).unwrap();
        assert_eq!(ours.dims(), theirs.dims(), "{shape:?} {p:?}");
        assert!(max_diff(&ours, &theirs) < 1e-12, "forward {shape:?} {p:?}");
        let u = random_f64(ours.dims(), 3, &dev).unwrap();
        let g1 = (ours * &u).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs * &u)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (v, what) in [(&x, "input"), (&w, "weight")] {
            let d = max_diff(
                g1.get(v.as_tensor()).unwrap(),
                g2.get(v.as_tensor()).unwrap(),
            );
            assert!(d < 1e-12, "{what} gradient {shape:?} {p:?}: {d}");
        }
    }
}

#[test]
fn gradients_match_finite_differences() {
    let dev = Device::Cpu;
    for (shape, k, p) in cases() {
        let c = shape[1];
        let x = random_f64(&shape, 4, &dev).unwrap();
        let w = random_f64(&[c, 1, k, k], 5, &dev).unwrap();
        let wrt_x = check(|t| depthwise_conv2d(t, &w, p, true), &x, 1e-6, 6).unwrap();
        assert!(wrt_x.passes(1e-8, 1e-6), "input {shape:?} {p:?}: {wrt_x:?}");
        let wrt_w = check(|t| depthwise_conv2d(&x, t, p, true), &w, 1e-6, 7).unwrap();
        assert!(
            wrt_w.passes(1e-8, 1e-6),
            "weight {shape:?} {p:?}: {wrt_w:?}"
        );
        assert!(wrt_w.max_abs_grad > 1e-3);
    }
}

#[test]
fn frozen_weight_gets_no_gradient() {
    let dev = Device::Cpu;
    let x = Var::from_tensor(&random_f64(&[1, 2, 6, 6], 1, &dev).unwrap()).unwrap();
    let w = Var::from_tensor(&random_f64(&[2, 1, 3, 3], 2, &dev).unwrap()).unwrap();
    let p = DepthwiseParams::same(6, 6, 3, 1, 1);
    let y = depthwise_conv2d(x.as_tensor(), w.as_tensor(), p, false).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    assert!(g.get(w.as_tensor()).is_none());
    assert!(g.get(x.as_tensor()).is_some());
}

#[test]
fn same_padding_gives_ceil_outputs() {
    for n in 1..40 {
        for (k, s, d) in [(3, 1, 1), (3, 2, 1), (5, 2, 1), (5, 1, 2), (3, 1, 4)] {
            let (a, b) = same_pad(n, k, s, d);
            assert!(b == a || b == a + 1, "odd pixel at the end");
            let span = (k - 1) * d + 1;
            let out = (n + a + b - span) / s + 1;
            assert_eq!(out, n.div_ceil(s), "n {n} k {k} s {s} d {d}");
        }
    }
    // TF/the package at its reference sizes: 224 → (0, 1) for 3×3/s2, (1, 2) for 5×5/s2.
    assert_eq!(same_pad(224, 3, 2, 1), (0, 1));
    assert_eq!(same_pad(14, 5, 2, 1), (1, 2));
    assert_eq!(same_pad(15, 5, 2, 1), (2, 2));
}

#[test]
fn result_does_not_depend_on_the_thread_count() {
    let dev = Device::Cpu;
    let x = random_f64(&[3, 8, 23, 17], 8, &dev)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    let w = random_f64(&[8, 1, 5, 5], 9, &dev)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    let p = DepthwiseParams::same(23, 17, 5, 2, 1);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let xv = Var::from_tensor(&x).unwrap();
            let wv = Var::from_tensor(&w).unwrap();
            let y = depthwise_conv2d(xv.as_tensor(), wv.as_tensor(), p, true).unwrap();
            let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            (
                flat(&y),
                flat(g.get(xv.as_tensor()).unwrap()),
                flat(g.get(wv.as_tensor()).unwrap()),
            )
        })
    };
    let (a, b) = (run(1), run(3));
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a.0), bits(&b.0));
    assert_eq!(bits(&a.1), bits(&b.1));
    assert_eq!(bits(&a.2), bits(&b.2));
}
