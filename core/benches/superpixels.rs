//! Superpixel speed (§5): FH alone and FH + merge to 64 regions on a deterministic 500×375
//! natural-ish image, against scikit-image's `felzenszwalb` (same parameters) timed in the same
//! run through python3. When scikit-image cannot be imported, the reference time recorded in
//! `shared/notes/platform.md` is printed instead, labelled as recorded. The measured pairs are
//! also appended to `$SSC_BENCH_JSON` (`scripts/bench-vs-reference.sh`).
//!
//! Run: `cargo bench -p ssc-core --bench superpixels`.

use std::process::Command;
use std::time::Instant;

use ssc_core::bench_report::BenchRow;
use ssc_core::rng::Rng;
use ssc_core::superpixels::{self, Params, features, merge};

const W: usize = 500;
const H: usize = 375;
const RUNS: usize = 15;

/// Smooth colour gradients, a few flat and textured shapes, and pixel noise.
fn natural_image() -> Vec<u8> {
    let mut rng = Rng::new(2024);
    let shapes: Vec<(f64, f64, f64, [f64; 3], bool)> = (0..14)
        .map(|_| {
            let c = [
                rng.uniform(0.0, 255.0),
                rng.uniform(0.0, 255.0),
                rng.uniform(0.0, 255.0),
            ];
            (
                rng.uniform(0.0, W as f64),
                rng.uniform(0.0, H as f64),
                rng.uniform(15.0, 90.0),
                c,
                rng.bernoulli(0.5),
            )
        })
        .collect();
    let mut img = vec![0u8; W * H * 3];
    for y in 0..H {
        for x in 0..W {
            let (fx, fy) = (x as f64 / W as f64, y as f64 / H as f64);
            let mut v = [
                60.0 + 120.0 * fx + 20.0 * (fy * 9.0).sin(),
                90.0 + 80.0 * fy,
                150.0 - 90.0 * fx * fy + 15.0 * (fx * 13.0).cos(),
            ];
            for &(cx, cy, r, c, stripes) in &shapes {
                let (dx, dy) = (x as f64 - cx, y as f64 - cy);
                let inside = if stripes {
                    dx.abs() < r && dy.abs() < 0.6 * r
                } else {
                    dx * dx + dy * dy < r * r
                };
                if inside {
                    let t = if stripes && (x / 4) % 2 == 0 {
                        0.7
                    } else {
                        1.0
                    };
                    v = [c[0] * t, c[1] * t, c[2] * t];
                }
            }
            for (k, val) in v.iter().enumerate() {
                let n = 8.0 * rng.normal();
                img[(y * W + x) * 3 + k] = (val + n).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    img
}

fn median(mut t: Vec<f64>) -> f64 {
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn time(mut f: impl FnMut() -> usize) -> (f64, usize) {
    let mut count = f(); // warm-up
    let t = (0..RUNS)
        .map(|_| {
            let t0 = Instant::now();
            count = f();
            t0.elapsed().as_secs_f64()
        })
        .collect();
    (median(t), count)
}

const PY: &str = r#"
import sys, time
import numpy as np
from skimage.segmentation import felzenszwalb
img = np.fromfile(sys.argv[1], dtype=np.uint8).reshape(int(sys.argv[3]), int(sys.argv[2]), 3)
seg = felzenszwalb(img, scale=75, sigma=0.8, min_size=75)
ts = []
for _ in range(int(sys.argv[4])):
    t0 = time.perf_counter()
    seg = felzenszwalb(img, scale=75, sigma=0.8, min_size=75)
    ts.append(time.perf_counter() - t0)
ts.sort()
print(ts[len(ts) // 2], int(seg.max()) + 1)
"#;

/// Median seconds and segment count of scikit-image on `img`, if python3 has it.
fn skimage_time(img: &[u8]) -> Option<(f64, usize)> {
    let dir = std::env::temp_dir().join(format!("ssc-sp-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let raw = dir.join("img.rgb");
    std::fs::write(&raw, img).ok()?;
    let out = Command::new("python3")
        .args(["-c", PY])
        .arg(&raw)
        .args([W.to_string(), H.to_string(), "7".to_string()])
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    let out = out.ok().filter(|o| o.status.success())?;
    let text = String::from_utf8(out.stdout).ok()?;
    let mut it = text.split_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn main() {
    let img = natural_image();
    let p = Params::icd();
    let (t_fh, n_fh) = time(|| superpixels::fh_only(&img, W, H, &p).unwrap().count);
    let (t_all, n_all) = time(|| superpixels::superpixels(&img, W, H, &p).unwrap().count);
    let fh = superpixels::fh_only(&img, W, H, &p).unwrap();
    let (t_feat, _) = time(|| features::colour_texture(&img, &fh).unwrap().len());
    let feats = features::colour_texture(&img, &fh).unwrap();
    let dim = features::COLOUR_TEXTURE_DIM;
    let (t_merge, _) = time(|| merge::merge(&fh, &feats, dim, p.max_regions).unwrap().count);
    println!("superpixels on a {W}×{H} image (median of {RUNS}):");
    println!(
        "  ours FH           {:8.2} ms  ({n_fh} segments)",
        t_fh * 1e3
    );
    println!(
        "  ours FH + merge   {:8.2} ms  ({n_all} regions)",
        t_all * 1e3
    );
    println!(
        "    of which features {:.2} ms, merge {:.2} ms",
        t_feat * 1e3,
        t_merge * 1e3
    );
    let sk = skimage_time(&img);
    let peer = "scikit-image felzenszwalb (FH alone)";
    let row = format!("FH superpixels {W}×{H}");
    BenchRow::new(&row, t_fh, peer, sk.map(|s| s.0), 1).record();
    let row = format!("FH + merge to 64 regions {W}×{H}");
    BenchRow::new(&row, t_all, peer, sk.map(|s| s.0), 1).record();
    match sk {
        Some((t_sk, n_sk)) => {
            println!(
                "  skimage FH        {:8.2} ms  ({n_sk} segments, measured now)",
                t_sk * 1e3
            );
            println!("  ratio skimage / ours FH         {:6.1}×", t_sk / t_fh);
            println!("  ratio skimage / ours FH + merge {:6.1}×", t_sk / t_all);
        }
        None => {
            println!("  skimage FH        not importable; RECORDED reference (platform.md):");
            println!("                    0.17–0.23 s quiet, 0.36–0.40 s loaded");
            println!(
                "  ratio recorded quiet / ours FH + merge {:.1}×–{:.1}× (not measured now)",
                0.17 / t_all,
                0.23 / t_all
            );
        }
    }
}
