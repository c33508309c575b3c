//! Benchmark of the sparse random walk (§4.7, §10.4).
//!
//! (a) VOC-size grid 125×94, R = 5, β = 10, exp_times = 8, K = 3 and 21: our time per image
//!     (operator build + 256 steps) on one thread, and per image over a batch on two threads
//!     (images in parallel, as `ssc-label` runs them), against the 0.25 s budget and against
//!     PyTorch's CSR sparse product on the same operator and thread count.
//! (b) A 40×30 grid: the reference's dense route (n×n matrix, 8 squarings) in PyTorch (float32,
//!     as IRN) and in our own f64 port, against ours, with the largest score difference.
//! (c) `-- routes`: the planar and the class-interleaved layout against each other (also run
//!     at the end).
//!
//! The PyTorch peers (`scripts/peers/randomwalk_peer.py`) run in the same run when `python3`
//! imports torch; each pair is also appended to `$SSC_BENCH_JSON`
//! (`scripts/bench-vs-reference.sh`). The peers start from our finished operator, so their time
//! leaves out the path-affinity computation that ours includes.
//!
//! Run: `cargo bench -p ssc-core --bench randomwalk`.

use std::time::{Duration, Instant};

use std::path::Path;
use std::process::Command;

use rayon::prelude::*;
use ssc_core::bench_report::BenchRow;
use ssc_core::randomwalk::dense::dense_walk;
use ssc_core::randomwalk::walk::INTERLEAVE_MIN;
use ssc_core::randomwalk::{PathIndex, Transition, WalkParams, WalkRoute, random_walk};
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

/// Writes the operator, x̃ and our result for the peer; returns its median seconds and the
/// largest difference from ours, or `None` when python3 cannot run it.
fn peer(
    mode: &str,
    op: &Transition,
    x: &[f32],
    ours: &[f32],
    k: usize,
    threads: usize,
    reps: usize,
) -> Option<(f64, f64)> {
    let dir = std::env::temp_dir().join(format!("ssc-rw-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let (rows, cols, vals) = op.triplets();
    let bytes = |v: &[u8], name: &str| std::fs::write(dir.join(name), v);
    bytes(&le(&rows, u32::to_le_bytes), "rows.u32").ok()?;
    bytes(&le(&cols, u32::to_le_bytes), "cols.u32").ok()?;
    bytes(&le(&vals, f32::to_le_bytes), "vals.f32").ok()?;
    bytes(&le(x, f32::to_le_bytes), "x.f32").ok()?;
    bytes(&le(ours, f32::to_le_bytes), "ours.f32").ok()?;
    let (h, w) = op.size();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/peers/randomwalk_peer.py");
    let out = Command::new("python3")
        .arg(script)
        .args([mode, dir.to_str()?])
        .args(["--n", &(h * w).to_string(), "--k", &k.to_string()])
        .args([
            "--threads",
            &threads.to_string(),
            "--reps",
            &reps.to_string(),
        ])
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    let out = out.ok()?;
    if !out.status.success() {
        eprintln!(
            "peer {mode}: {}",
            String::from_utf8_lossy(&out.stderr).lines().last()?
        );
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let mut it = text.split_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn le<T: Copy, const N: usize>(v: &[T], f: fn(T) -> [u8; N]) -> Vec<u8> {
    v.iter().flat_map(|&x| f(x)).collect()
}

/// x̃ = cam ⊙ (1 − B), what the walk propagates.
fn masked(cam: &[f32], edge: &[f32]) -> Vec<f32> {
    let n = edge.len();
    cam.iter()
        .enumerate()
        .map(|(i, &c)| c * (1.0 - edge[i % n]))
        .collect()
}

/// Seconds per image with two threads walking 8 images in parallel (how `ssc-label` runs).
fn two_threads(
    cam: &[f32],
    k: usize,
    h: usize,
    w: usize,
    edge: &[f32],
    params: &WalkParams,
) -> f64 {
    let images = 8;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let (batch, _) = median(3, || {
        pool.install(|| {
            (0..images)
                .into_par_iter()
                .map(|_| random_walk(cam, k, h, w, edge, params).unwrap().len())
                .sum::<usize>()
        })
    });
    batch.as_secs_f64() / images as f64
}

fn record(row: &str, ours: f64, peer_name: &str, peer: Option<(f64, f64)>, threads: usize) {
    if let Some((_, diff)) = peer {
        println!("    {peer_name}: max |Δ| {diff:.2e}");
    }
    BenchRow::new(row, ours, peer_name, peer.map(|p| p.0), threads).record();
}

/// (c) The two layouts of the walk against each other on the VOC grid, one thread, for a
/// range of class counts: where the class-interleaved route starts to pay
/// (`INTERLEAVE_MIN`), and that both give the same bits.
fn routes(params: &WalkParams, index: &PathIndex) {
    let steps = params.steps().unwrap();
    let (h, w) = (94, 125);
    println!("(c) grid {w}×{h}, {steps} steps, 1 thread: planar vs class-interleaved route");
    for k in [1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 21, 24, 32, 40] {
        let (edge, cam) = synthetic(h, w, k, 3);
        let op = Transition::new(&edge, h, w, index, params.beta).unwrap();
        let x = masked(&cam, &edge);
        let (planar, a) = median(3, || {
            op.propagate_by(&x, k, steps, WalkRoute::Planar).unwrap()
        });
        let (il, b) = median(3, || {
            op.propagate_by(&x, k, steps, WalkRoute::Interleaved)
                .unwrap()
        });
        let same = a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits());
        println!(
            "    K {k:>2}: planar {:>8.2} ms, interleaved {:>8.2} ms, ratio {:.2}x{}{}",
            planar.as_secs_f64() * 1e3,
            il.as_secs_f64() * 1e3,
            planar.as_secs_f64() / il.as_secs_f64(),
            if k >= INTERLEAVE_MIN {
                " (auto: interleaved)"
            } else {
                ""
            },
            if same { "" } else { "  RESULTS DIFFER" }
        );
    }
}

fn main() {
    let params = WalkParams::irn();
    let steps = params.steps().unwrap();
    let index = PathIndex::new(params.radius).unwrap();
    // `cargo bench --bench randomwalk -- routes`: only the route comparison.
    if std::env::args().any(|a| a == "routes") {
        routes(&params, &index);
        return;
    }

    // (a) VOC size.
    let (h, w) = (94, 125);
    for k in [3, 21] {
        let (edge, cam) = synthetic(h, w, k, 1);
        let (build, op) = median(5, || {
            Transition::new(&edge, h, w, &index, params.beta).unwrap()
        });
        let x = masked(&cam, &edge);
        let (walk, ours) = median(5, || op.propagate(&x, k, steps).unwrap());
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
        let label = format!("IRN random walk {w}×{h}, K {k}, β 10, 2⁸ steps, per image");
        record(
            &label,
            total.as_secs_f64(),
            "PyTorch CSR",
            peer("csr", &op, &x, &ours, k, 1, 5),
            1,
        );
        // Two threads: images in parallel on our side, intra-op threads on PyTorch's.
        let per = two_threads(&cam, k, h, w, &edge, &params);
        println!("    per image, 2 threads {:>8.2} ms", per * 1e3);
        record(
            &label,
            per,
            "PyTorch CSR",
            peer("csr", &op, &x, &ours, k, 2, 5),
            2,
        );
    }

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
    let op = Transition::new(&edge, h, w, &index, params.beta).unwrap();
    let x = masked(&cam, &edge);
    let label = format!("IRN random walk {w}×{h}, K {k}: IRN's dense route");
    record(
        &label,
        ours_t.as_secs_f64(),
        "PyTorch dense (IRN)",
        peer("dense", &op, &x, &ours, k, 1, 3),
        1,
    );
    record(
        &label,
        two_threads(&cam, k, h, w, &edge, &params),
        "PyTorch dense (IRN)",
        peer("dense", &op, &x, &ours, k, 2, 3),
        2,
    );
    routes(&params, &index);
}
