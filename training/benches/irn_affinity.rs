//! IRN path affinities at the reference size (§4.4–4.5: 128×128 grid, radius 10, 152
//! directions): the differentiable affinity of `irn::loss` (host arg-max + one index_select;
//! forward, and forward + loss + backward) against `ssc_core::randomwalk::affinity::path_affinity` (plain CPU loop, forward
//! only) measured in the same run, and the trainer's fused host loss (`edge_loss_fused`)
//! against the tensor route (`edge_loss`), forward + backward. Prints times and ratios.

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use ssc_core::randomwalk::affinity::path_affinity;
use ssc_core::randomwalk::labels::affinity_labels;
use ssc_core::randomwalk::paths::PathIndex;
use ssc_core::rng::Rng;
use ssc_training::irn::loss::{EdgeTargets, PathGather, edge_loss, edge_loss_fused};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn main() {
    let (n, g, r) = (4, 128, 10);
    let dev = Device::Cpu;
    let idx = PathIndex::new(r).unwrap();
    let mut rng = Rng::new(1);
    let b: Vec<f32> = (0..n * g * g).map(|_| rng.f32()).collect();
    let labels: Vec<u8> = (0..g * g).map(|i| ((i % g) * 3 / g) as u8).collect();
    let gather = PathGather::new(&idx, g, g, &dev).unwrap();
    let bt = Tensor::from_slice(&b, (n, 1, g, g), &dev).unwrap();

    let ours = time(3, || {
        gather.affinity(&bt).unwrap();
    });
    let base = time(3, || {
        for k in 0..n {
            path_affinity(&b[k * g * g..(k + 1) * g * g], g, g, &idx).unwrap();
        }
    });
    let l = affinity_labels(&labels, g, g, &idx, 21).unwrap();
    let t = EdgeTargets::from_labels(&vec![&l; n], DType::F32, &dev).unwrap();
    let z = Var::from_tensor(&bt).unwrap();
    let train = time(3, || {
        let loss = edge_loss(z.as_tensor(), &gather, &t).unwrap();
        loss.total.backward().unwrap();
    });
    let refs = vec![&l; n];
    let fused = time(3, || {
        let loss = edge_loss_fused(z.as_tensor(), &gather, &refs).unwrap();
        loss.total.backward().unwrap();
    });
    println!(
        "IRN path affinity, batch {n}, {g}×{g} grid, radius {r} ({} directions)",
        idx.n_directions()
    );
    println!(
        "  irn::loss affinity (forward):       {:8.1} ms",
        ours * 1e3
    );
    println!(
        "  core path_affinity loop (forward):  {:8.1} ms",
        base * 1e3
    );
    println!("  ratio ours/baseline:                {:8.2}", ours / base);
    println!(
        "  forward + loss + backward:          {:8.1} ms ({:.2}× the baseline forward)",
        train * 1e3,
        train / base
    );
    println!(
        "  fused host loss, forward + backward: {:8.1} ms (tensor route / fused: {:.2})",
        fused * 1e3,
        train / fused
    );
}
