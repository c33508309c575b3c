//! Unit tests of the heads' building blocks: norms and reflection padding (values against
//! hand computations, gradients against finite differences), IRN edge branch and DeepLabV2
//! ASPP.

mod heads_util;

use candle_core::{DType, Device, Tensor};

use heads_util::{gradcheck, rand_f64};
use ssc_models::ops::norm::{group_norm, instance_norm, layer_norm_munit};
use ssc_models::ops::pad::reflection_pad2d;

fn flat(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Plain-loop normalisation over contiguous blocks of `block` elements: `(x − μ)/d` where
/// `d = σ + eps` (unbiased σ) or `√(var + eps)` (biased), then `γ_c·y + β_c` with `hw`
/// elements per channel.
fn hand_norm(
    x: &[f64],
    block: usize,
    hw: usize,
    gamma: &[f64],
    beta: &[f64],
    eps: f64,
    munit: bool,
) -> Vec<f64> {
    let c = gamma.len();
    let mut out = vec![0.0; x.len()];
    for (b, chunk) in x.chunks(block).enumerate() {
        let m = chunk.len() as f64;
        let mean = chunk.iter().sum::<f64>() / m;
        let ss = chunk.iter().map(|v| (v - mean).powi(2)).sum::<f64>();
        let d = if munit {
            (ss / (m - 1.0)).sqrt() + eps
        } else {
            (ss / m + eps).sqrt()
        };
        for (i, v) in chunk.iter().enumerate() {
            let idx = b * block + i;
            let ch = (idx / hw) % c;
            out[idx] = (v - mean) / d * gamma[ch] + beta[ch];
        }
    }
    out
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn reflection_pad_values() {
    // One channel 3×4 with values 0..12; PyTorch ReflectionPad2d(1) mirrors without repeating
    // the border.
    let x = Tensor::arange(0f64, 12.0, &Device::Cpu)
        .unwrap()
        .reshape((1, 1, 3, 4))
        .unwrap();
    let y = reflection_pad2d(&x, 1).unwrap();
    let rows: Vec<Vec<f64>> = y.squeeze(0).unwrap().squeeze(0).unwrap().to_vec2().unwrap();
    assert_eq!(rows[0], vec![5.0, 4.0, 5.0, 6.0, 7.0, 6.0]);
    assert_eq!(rows[1], vec![1.0, 0.0, 1.0, 2.0, 3.0, 2.0]);
    assert_eq!(rows[4], vec![5.0, 4.0, 5.0, 6.0, 7.0, 6.0]);
    let y2 = reflection_pad2d(&x, 2).unwrap();
    assert_eq!(y2.dims(), &[1, 1, 7, 8]);
    let r0: Vec<f64> = y2
        .squeeze(0)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .get(0)
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(r0, vec![10.0, 9.0, 8.0, 9.0, 10.0, 11.0, 10.0, 9.0]);
    // Padding as large as the size has no reflection: a clear error, not a panic.
    assert!(reflection_pad2d(&x, 3).is_err());
}

#[test]
fn reflection_pad_gradient() {
    let x = rand_f64(&[1, 2, 3, 4], 1);
    gradcheck(&x, |x| reflection_pad2d(x, 2).unwrap(), 1e-6);
}

#[test]
fn norms_match_hand_computation() {
    let (n, c, h, w) = (2, 6, 3, 5);
    let x = (rand_f64(&[n, c, h, w], 4) * 3.0).unwrap();
    let gamma = rand_f64(&[c], 5);
    let beta = rand_f64(&[c], 6);
    let (xv, gv, bv) = (flat(&x), flat(&gamma), flat(&beta));
    let ones = vec![1.0; c];
    let zeros = vec![0.0; c];

    let ln = layer_norm_munit(&x, &gamma, &beta, 1e-5).unwrap();
    let want = hand_norm(&xv, c * h * w, h * w, &gv, &bv, 1e-5, true);
    assert!(max_diff(&flat(&ln), &want) < 1e-12);

    let inorm = instance_norm(&x, 1e-5).unwrap();
    let want = hand_norm(&xv, h * w, h * w, &ones, &zeros, 1e-5, false);
    assert!(max_diff(&flat(&inorm), &want) < 1e-12);

    let gn = group_norm(&x, 3, &gamma, &beta, 1e-5).unwrap();
    let want = hand_norm(&xv, 2 * h * w, h * w, &gv, &bv, 1e-5, false);
    assert!(max_diff(&flat(&gn), &want) < 1e-12);
    // GroupNorm with one group per channel is InstanceNorm with an affine part.
    let gn_c = group_norm(
        &x,
        c,
        &Tensor::ones(c, DType::F64, &Device::Cpu).unwrap(),
        &Tensor::zeros(c, DType::F64, &Device::Cpu).unwrap(),
        1e-5,
    )
    .unwrap();
    assert!(max_diff(&flat(&gn_c), &flat(&inorm)) < 1e-12);

    assert!(group_norm(&x, 4, &gamma, &beta, 1e-5).is_err());
}

#[test]
fn norm_gradients() {
    let x = rand_f64(&[2, 4, 3, 3], 7);
    let gamma = rand_f64(&[4], 8);
    let beta = rand_f64(&[4], 9);
    gradcheck(
        &x,
        |x| layer_norm_munit(x, &gamma, &beta, 1e-5).unwrap(),
        1e-6,
    );
    gradcheck(&x, |x| instance_norm(x, 1e-5).unwrap(), 1e-6);
    gradcheck(&x, |x| group_norm(x, 2, &gamma, &beta, 1e-5).unwrap(), 1e-6);
    // The affine parameters receive gradients too.
    gradcheck(
        &gamma,
        |g| layer_norm_munit(&x, g, &beta, 1e-5).unwrap(),
        1e-6,
    );
    gradcheck(&beta, |b| group_norm(&x, 2, &gamma, b, 1e-5).unwrap(), 1e-6);
}
