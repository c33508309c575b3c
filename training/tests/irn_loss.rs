//! IRN edge loss (§4.4–4.5): a hand-computed example, agreement with the core affinity
//! routine, and a finite-difference gradient check in f64.

use candle_core::{DType, Device, Tensor, Var};
use ssc_core::randomwalk::affinity::path_affinity;
use ssc_core::randomwalk::labels::affinity_labels;
use ssc_core::randomwalk::paths::PathIndex;
use ssc_core::rng::Rng;
use ssc_training::irn::loss::{EPS, EdgeTargets, PathGather, edge_loss, edge_loss_fused, scalar};

fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

fn targets(label: &[u8], h: usize, w: usize, idx: &PathIndex, k: usize, dt: DType) -> EdgeTargets {
    let l = affinity_labels(label, h, w, idx, k).unwrap();
    EdgeTargets::from_labels(&[&l], dt, &Device::Cpu).unwrap()
}

/// R = 2 on a 2×4 grid: sources (0,1) and (0,2), directions (0,1), (1,−1), (1,0), (1,1).
/// Path maxima worked out by hand from the boundary map below.
#[test]
fn hand_computed_example() {
    let dev = Device::Cpu;
    let idx = PathIndex::new(2).unwrap();
    #[rustfmt::skip]
    let b = [
        0.1, 0.2, 0.9, 0.3,
        0.1, 0.1, 0.8, 0.2,
    ];
    #[rustfmt::skip]
    let label = [
        0, 0, 1, 1,
        0, 0, 1, 255,
    ];
    let z: Vec<f64> = b.iter().map(|&p| logit(p)).collect();
    let z = Tensor::from_vec(z, (1, 1, 2, 4), &dev).unwrap();
    let g = PathGather::new(&idx, 2, 4, &dev).unwrap();
    let t = targets(&label, 2, 4, &idx, 21, DType::F64);
    let l = edge_loss(&z, &g, &t).unwrap();
    // source (0,1)=0: →(0,2) neg aff 0.1; →(1,0) bg aff 0.8; →(1,1) bg aff 0.8; →(1,2) neg 0.1
    // source (0,2)=1: →(0,3) fg aff 0.1; →(1,1) neg aff 0.1; →(1,2) fg aff 0.1; →(1,3) ignored
    let pos = |a: f64| -(a + EPS).ln();
    let neg = |a: f64| -(1.0 + EPS - a).ln();
    let bg = 2.0 * pos(0.8) / (2.0 + EPS);
    let fg = 2.0 * pos(0.1) / (2.0 + EPS);
    let ng = 3.0 * neg(0.1) / (3.0 + EPS);
    let total = ((bg + fg) / 2.0 + ng) / 2.0;
    for (got, want) in [
        (scalar(&l.bg_pos).unwrap(), bg),
        (scalar(&l.fg_pos).unwrap(), fg),
        (scalar(&l.neg).unwrap(), ng),
        (scalar(&l.total).unwrap(), total),
    ] {
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }
}

#[test]
fn affinity_matches_core_routine() {
    let dev = Device::Cpu;
    let (h, w) = (12, 15);
    let idx = PathIndex::new(4).unwrap();
    let mut rng = Rng::new(5);
    let b: Vec<f32> = (0..2 * h * w).map(|_| rng.f32()).collect();
    let g = PathGather::new(&idx, h, w, &dev).unwrap();
    let aff = g
        .affinity(&Tensor::from_slice(&b, (2, 1, h, w), &dev).unwrap())
        .unwrap();
    let (d, s) = g.dims();
    assert_eq!(aff.dims(), [2, d, s]);
    for n in 0..2 {
        let want = path_affinity(&b[n * h * w..(n + 1) * h * w], h, w, &idx).unwrap();
        let got: Vec<f32> = aff
            .get(n)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(got, want, "sample {n}");
    }
    // A map of the wrong size is an error, not a panic.
    let bad = Tensor::zeros((1, 1, h, w + 1), DType::F32, &dev).unwrap();
    assert!(g.affinity(&bad).is_err());
}

#[test]
fn gradient_matches_finite_differences() {
    let dev = Device::Cpu;
    let (h, w) = (5, 7);
    let idx = PathIndex::new(3).unwrap();
    let mut rng = Rng::new(11);
    let z0: Vec<f64> = (0..2 * h * w).map(|_| rng.normal() * 2.0).collect();
    let labels: Vec<u8> = (0..2 * h * w)
        .map(|_| [0u8, 0, 1, 2, 255][rng.below(5) as usize])
        .collect();
    let g = PathGather::new(&idx, h, w, &dev).unwrap();
    let ls: Vec<_> = (0..2)
        .map(|n| affinity_labels(&labels[n * h * w..(n + 1) * h * w], h, w, &idx, 21).unwrap())
        .collect();
    let t = EdgeTargets::from_labels(&[&ls[0], &ls[1]], DType::F64, &dev).unwrap();
    let (a, b) = (ls[0].counts(), ls[1].counts());
    assert!(
        a.0 + b.0 > 0 && a.1 + b.1 > 0 && a.2 + b.2 > 0,
        "all terms present"
    );
    let loss = |z: &[f64]| -> f64 {
        let zt = Tensor::from_slice(z, (2, 1, h, w), &dev).unwrap();
        scalar(&edge_loss(&zt, &g, &t).unwrap().total).unwrap()
    };
    let var = Var::from_tensor(&Tensor::from_slice(&z0, (2, 1, h, w), &dev).unwrap()).unwrap();
    let l = edge_loss(var.as_tensor(), &g, &t).unwrap();
    let grads = l.total.backward().unwrap();
    let analytic: Vec<f64> = grads
        .get(var.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let step = 1e-6;
    let mut nonzero = 0;
    for i in 0..z0.len() {
        let (mut zp, mut zm) = (z0.clone(), z0.clone());
        zp[i] += step;
        zm[i] -= step;
        let fd = (loss(&zp) - loss(&zm)) / (2.0 * step);
        assert!(
            (fd - analytic[i]).abs() <= 1e-6 + 1e-5 * fd.abs(),
            "logit {i}: finite difference {fd}, autograd {}",
            analytic[i]
        );
        nonzero += (analytic[i].abs() > 1e-9) as usize;
    }
    // Only path maxima get gradient, but a good share of the map is some path's maximum.
    assert!(nonzero > z0.len() / 4, "{nonzero} non-zero gradients");
}

/// The fused host loss equals the tensor route in value, terms and gradient.
#[test]
fn fused_loss_matches_tensor_route() {
    let dev = Device::Cpu;
    let (h, w) = (9, 12);
    let idx = PathIndex::new(4).unwrap();
    let mut rng = Rng::new(21);
    let z0: Vec<f64> = (0..3 * h * w).map(|_| rng.normal() * 2.0).collect();
    let labels: Vec<u8> = (0..3 * h * w)
        .map(|_| [0u8, 0, 1, 2, 255][rng.below(5) as usize])
        .collect();
    let g = PathGather::new(&idx, h, w, &dev).unwrap();
    let ls: Vec<_> = (0..3)
        .map(|n| affinity_labels(&labels[n * h * w..(n + 1) * h * w], h, w, &idx, 21).unwrap())
        .collect();
    let refs: Vec<_> = ls.iter().collect();
    let t = EdgeTargets::from_labels(&refs, DType::F64, &dev).unwrap();
    let var = Var::from_tensor(&Tensor::from_slice(&z0, (3, 1, h, w), &dev).unwrap()).unwrap();
    let a = edge_loss(var.as_tensor(), &g, &t).unwrap();
    let b = edge_loss_fused(var.as_tensor(), &g, &refs).unwrap();
    for (x, y) in [
        (&a.total, &b.total),
        (&a.bg_pos, &b.bg_pos),
        (&a.fg_pos, &b.fg_pos),
        (&a.neg, &b.neg),
    ] {
        let (x, y) = (scalar(x).unwrap(), scalar(y).unwrap());
        assert!((x - y).abs() < 1e-12, "{x} vs {y}");
    }
    let grad = |l: &Tensor| -> Vec<f64> {
        let gs = l.backward().unwrap();
        gs.get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    let (ga, gb) = (grad(&a.total), grad(&b.total));
    let max = ga
        .iter()
        .zip(&gb)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    assert!(max < 1e-12, "gradients differ by {max}");
    assert!(ga.iter().any(|v| v.abs() > 1e-6));
    // Label sets that do not fit the batch are an error.
    assert!(edge_loss_fused(var.as_tensor(), &g, &refs[..2]).is_err());
}
