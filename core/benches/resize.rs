//! Timing of the Pillow-exact bicubic rescale used by multi-scale CAM inference (§3.2) and
//! of the torch-bilinear CAM upsampling, each against a baseline measured in the same run:
//! - bicubic: `image::imageops::resize` with CatmullRom (the same Keys a = −0.5 kernel, in
//!   f32, not Pillow-exact), the obvious off-the-shelf alternative;
//! - bilinear: the dense interpolation-matrix product `R_h · X · R_wᵀ` (spec §0.2).
//!
//! Run: `cargo bench -p ssc-core --bench resize`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use image::RgbImage;
use image::imageops::{FilterType, resize};
use ssc_core::resize::{bilinear_chw, bilinear_matrix_f64, pil_bicubic_rgb, rescale_size};

/// Median wall time of `f` over enough runs to fill about `budget`.
fn time(budget: Duration, mut f: impl FnMut()) -> Duration {
    f();
    let start = Instant::now();
    f();
    let once = start.elapsed().max(Duration::from_micros(1));
    let runs = (budget.as_secs_f64() / once.as_secs_f64()).clamp(3.0, 200.0) as usize;
    let mut t: Vec<Duration> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    t[runs / 2]
}

fn report(name: &str, ours: Duration, base: Duration) {
    println!(
        "{name:<44} ours {:>9.3} ms   baseline {:>9.3} ms   ratio (baseline/ours) {:.2}x",
        ours.as_secs_f64() * 1e3,
        base.as_secs_f64() * 1e3,
        base.as_secs_f64() / ours.as_secs_f64()
    );
}

/// Dense `R_h · X · R_wᵀ` per plane, the matrix formulation of the same resize.
fn bilinear_dense(src: &[f32], c: usize, h: usize, w: usize, oh: usize, ow: usize) -> Vec<f32> {
    let (rh, rw) = (bilinear_matrix_f64(h, oh), bilinear_matrix_f64(w, ow));
    let mut out = Vec::with_capacity(c * oh * ow);
    let mut tmp = vec![0.0f64; h * ow];
    for plane in src.chunks_exact(h * w) {
        for y in 0..h {
            for o in 0..ow {
                tmp[y * ow + o] = (0..w)
                    .map(|x| plane[y * w + x] as f64 * rw[o * w + x])
                    .sum();
            }
        }
        for oy in 0..oh {
            for o in 0..ow {
                out.push(
                    (0..h)
                        .map(|y| rh[oy * h + y] * tmp[y * ow + o])
                        .sum::<f64>() as f32,
                );
            }
        }
    }
    out
}

fn main() {
    let budget = Duration::from_millis(1500);
    // A VOC-sized photo-like image (375×500).
    let img = RgbImage::from_fn(500, 375, |x, y| {
        image::Rgb([(x ^ y) as u8, (x * 3 + y) as u8, ((x * y) >> 4) as u8])
    });
    for s in [0.5, 1.5, 2.0] {
        let (oh, ow) = rescale_size(375, 500, s);
        let ours = time(budget, || {
            black_box(pil_bicubic_rgb(black_box(&img), oh, ow).unwrap());
        });
        let base = time(budget, || {
            black_box(resize(
                black_box(&img),
                ow as u32,
                oh as u32,
                FilterType::CatmullRom,
            ));
        });
        report(&format!("bicubic 375x500 -> {oh}x{ow}"), ours, base);
    }
    // CAM upsampling: 21 strided maps of 94×125 to the 375×500 image.
    let (c, h, w, oh, ow) = (21, 94, 125, 375, 500);
    let cams: Vec<f32> = (0..c * h * w).map(|i| (i % 97) as f32 / 97.0).collect();
    let ours = time(budget, || {
        black_box(bilinear_chw(black_box(&cams), c, h, w, oh, ow).unwrap());
    });
    let base = time(budget, || {
        black_box(bilinear_dense(black_box(&cams), c, h, w, oh, ow));
    });
    report(&format!("bilinear {c}x{h}x{w} -> {oh}x{ow}"), ours, base);
}
