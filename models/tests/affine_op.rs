//! The fused per-channel affine + activation op equals the candle composition bit for bit in
//! f32, its gradients (input, scale, shift) match central finite differences in f64 for the
//! identity, ReLU and ReLU6, and the result does not depend on the thread count.

use candle_core::{DType, Device, Tensor, Var};
use ssc_models::ops::affine::{Act, affine_act};
use ssc_models::ops::gradcheck::{check, random_f64};

fn composed(x: &Tensor, s: &Tensor, b: &Tensor, act: Act) -> Tensor {
    let c = x.dim(1).unwrap();
    let y = x
        .broadcast_mul(&s.reshape((1, c, 1, 1)).unwrap())
        .unwrap()
        .broadcast_add(&b.reshape((1, c, 1, 1)).unwrap())
        .unwrap();
    match act {
        Act::Linear => y,
        Act::Relu => y.relu().unwrap(),
        Act::Relu6 => y.clamp(0f32, 6f32).unwrap(),
    }
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

#[test]
fn forward_equals_the_candle_composition_bit_for_bit() {
    let dev = Device::Cpu;
    let x = (random_f64(&[2, 5, 7, 9], 1, &dev).unwrap() * 8.0)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    let s = random_f64(&[5], 2, &dev)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    let b = random_f64(&[5], 3, &dev)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    for act in [Act::Linear, Act::Relu, Act::Relu6] {
        assert_eq!(
            bits(&affine_act(&x, &s, &b, act).unwrap()),
            bits(&composed(&x, &s, &b, act)),
            "{act:?}"
        );
    }
}

#[test]
fn gradients_match_finite_differences() {
    let dev = Device::Cpu;
    // Values spread over (−9, 9) so ReLU6 is cut on both sides; a finite step never crosses
    // a kink for these seeds.
    let x = (random_f64(&[2, 3, 4, 5], 4, &dev).unwrap() * 9.0).unwrap();
    let s = (random_f64(&[3], 5, &dev).unwrap() + 1.5).unwrap();
    let b = random_f64(&[3], 6, &dev).unwrap();
    for act in [Act::Linear, Act::Relu, Act::Relu6] {
        let r = check(|t| affine_act(t, &s, &b, act), &x, 1e-6, 7).unwrap();
        assert!(r.passes(1e-7, 1e-6), "{act:?} input: {r:?}");
        let r = check(|t| affine_act(&x, t, &b, act), &s, 1e-6, 8).unwrap();
        assert!(r.passes(1e-7, 1e-6), "{act:?} scale: {r:?}");
        let r = check(|t| affine_act(&x, &s, t, act), &b, 1e-6, 9).unwrap();
        assert!(r.passes(1e-7, 1e-6), "{act:?} shift: {r:?}");
        assert!(r.max_abs_grad > 1e-3);
    }
}

#[test]
fn result_does_not_depend_on_the_thread_count() {
    let dev = Device::Cpu;
    let x = (random_f64(&[3, 6, 31, 17], 10, &dev).unwrap() * 8.0)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    let s = random_f64(&[6], 11, &dev)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    let b = random_f64(&[6], 12, &dev)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                let (xv, sv, bv) = (
                    Var::from_tensor(&x).unwrap(),
                    Var::from_tensor(&s).unwrap(),
                    Var::from_tensor(&b).unwrap(),
                );
                let y =
                    affine_act(xv.as_tensor(), sv.as_tensor(), bv.as_tensor(), Act::Relu6).unwrap();
                let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
                [
                    bits(&y),
                    bits(g.get(xv.as_tensor()).unwrap()),
                    bits(g.get(sv.as_tensor()).unwrap()),
                    bits(g.get(bv.as_tensor()).unwrap()),
                ]
            })
    };
    assert_eq!(run(1), run(3));
}
