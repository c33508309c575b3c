//! Benchmark of the sparse random walk (§4.7, §10.4), single-threaded.
//!
//! (a) VOC-size grid 125×94, K = 3, R = 5, β = 10, exp_times = 8: our time per image (operator
//!     build + 256 steps) against the 0.25 s budget.
//! (b) A 40×30 grid: the reference's dense route (n×n matrix, 8 squarings, f64) measured in
//!     the same run against ours, with the ratio and the largest score difference.
//!
//! Run: `cargo bench -p ssc-core --bench randomwalk`.

use std::time::{Duration, Instant};

use ssc_core::randomwalk::dense::dense_walk;
use ssc_core::randomwalk::{PathIndex, Transition, WalkParams, random_walk};
use ssc_core::rng::Rng;

const BUDGET: Duration = Duration::from_millis(250);

/// A boundary map with a few ridges over low noise, and K random CAMs.
fn synthetic(h: usize, w: usize, k: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = Rng::new(seed);
    let mut edge: Vec<f32> = (0..h * w).map(|_| rng.f32() * 0.2).collect();
    for i in 0..h {
        for j in 0..w {
            let (y, x) = (i as f32 / h as f32, j as f32 / w as f32);
            let ring = ((y - 0.5).powi(2) + (x - 0.4).powi(2)).sqrt();
            if (ring - 0.3).abs() < 0.02 || (x - 0.8).abs() < 0.01 {
                edge[i * w + j] = 0.9 + 0.1 * rng.f32();
            }
        }
    }
    let cam = (0..k * h * w).map(|_| rng.f32()).collect();
    (edge, cam)
}

fn median<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        last = Some(std::hint::black_box(f()));
        times.push(t.elapsed());
    }
    times.sort();
    (times[runs / 2], last.unwrap())
}

fn main() {
    let params = WalkParams::irn();

    // (a) VOC size.
    let (h, w, k) = (94, 125, 3);
    let (edge, cam) = synthetic(h, w, k, 1);
    let index = PathIndex::new(params.radius).unwrap();
    let (build, op) = median(5, || {
        Transition::new(&edge, h, w, &index, params.beta).unwrap()
    });
    let x: Vec<f32> = cam.clone();
    let steps = params.steps().unwrap();
    let (walk, _) = median(5, || op.propagate(&x, k, steps).unwrap());
    let (total, _) = median(5, || random_walk(&cam, k, h, w, &edge, &params).unwrap());
    println!(
        "(a) grid {w}×{h}, K = {k}, R = {}, β = {}, {steps} steps, 1 thread:",
        params.radius, params.beta
    );
    println!("    operator build {:>8.2} ms", build.as_secs_f64() * 1e3);
    println!(
        "    {steps} steps      {:>8.2} ms",
        walk.as_secs_f64() * 1e3
    );
    println!(
        "    per image      {:>8.2} ms  (budget {} ms: {})",
        total.as_secs_f64() * 1e3,
        BUDGET.as_millis(),
        if total <= BUDGET { "met" } else { "NOT met" }
    );

    // (b) dense reference route vs ours on a small grid.
    let (h, w, k) = (30, 40, 3);
    let (edge, cam) = synthetic(h, w, k, 2);
    let (dense_t, dense) = median(1, || dense_walk(&cam, k, h, w, &edge, &params).unwrap());
    let (ours_t, ours) = median(5, || random_walk(&cam, k, h, w, &edge, &params).unwrap());
    let max_diff = ours
        .iter()
        .zip(&dense)
        .map(|(&a, &b)| (f64::from(a) - b).abs())
        .fold(0.0, f64::max);
    let scale = dense.iter().fold(0.0f64, |m, &v| m.max(v.abs()));
    println!(
        "(b) grid {w}×{h}, K = {k}: dense route (n×n, {} squarings, f64) vs sparse",
        params.exp_times
    );
    println!("    dense   {:>10.2} ms", dense_t.as_secs_f64() * 1e3);
    println!("    sparse  {:>10.2} ms", ours_t.as_secs_f64() * 1e3);
    println!(
        "    ratio   {:>10.1}× faster",
        dense_t.as_secs_f64() / ours_t.as_secs_f64()
    );
    println!("    max |Δ| {max_diff:.2e} (max score {scale:.3})");
}
