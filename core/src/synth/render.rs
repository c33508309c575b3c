//! Rasterising a [`Scene`] into an RGB image and its label map.

use super::scene::{Clutter, Object, Scene};
use crate::classes::IGNORE;

/// Saturated, class-specific colours of the discriminative parts.
const PART_COLORS: [[f64; 3]; 10] = [
    [225.0, 40.0, 40.0],
    [235.0, 210.0, 30.0],
    [205.0, 40.0, 205.0],
    [40.0, 215.0, 225.0],
    [245.0, 140.0, 20.0],
    [120.0, 235.0, 40.0],
    [95.0, 70.0, 235.0],
    [250.0, 120.0, 170.0],
    [245.0, 245.0, 245.0],
    [15.0, 15.0, 15.0],
];

/// Muted body appearances shared by all classes.
const BODY_COLORS: [[f64; 3]; super::scene::BODY_POOL] = [
    [120.0, 82.0, 60.0],
    [92.0, 95.0, 128.0],
    [132.0, 122.0, 62.0],
    [162.0, 96.0, 86.0],
    [62.0, 62.0, 64.0],
    [200.0, 200.0, 206.0],
];

const BACKGROUND_COLORS: [[f64; 3]; 4] = [
    [72.0, 122.0, 52.0],
    [42.0, 82.0, 150.0],
    [192.0, 172.0, 122.0],
    [150.0, 140.0, 130.0],
];

fn hash(x: i64, y: i64, seed: u64) -> f64 {
    let mut h = seed
        ^ (x as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (y as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^= h >> 33;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Smooth value noise in [0, 1) with feature size `scale` pixels.
fn value_noise(x: f64, y: f64, scale: f64, seed: u64) -> f64 {
    let (fx, fy) = (x / scale, y / scale);
    let (ix, iy) = (fx.floor() as i64, fy.floor() as i64);
    let (tx, ty) = (fx - ix as f64, fy - iy as f64);
    let (sx, sy) = (tx * tx * (3.0 - 2.0 * tx), ty * ty * (3.0 - 2.0 * ty));
    let a = hash(ix, iy, seed) * (1.0 - sx) + hash(ix + 1, iy, seed) * sx;
    let b = hash(ix, iy + 1, seed) * (1.0 - sx) + hash(ix + 1, iy + 1, seed) * sx;
    a * (1.0 - sy) + b * sy
}

fn fbm(x: f64, y: f64, scale: f64, seed: u64) -> f64 {
    (value_noise(x, y, scale, seed) * 0.57
        + value_noise(x, y, scale / 2.0, seed ^ 1) * 0.29
        + value_noise(x, y, scale / 4.0, seed ^ 2) * 0.14)
        - 0.5
}

fn background(kind: usize, x: f64, y: f64, seed: u64) -> [f64; 3] {
    let base = BACKGROUND_COLORS[kind];
    let n = fbm(x, y, 10.0, seed);
    let d = match kind {
        // Meadow: blotchy greens with vertical grass strokes.
        0 => {
            let grass = ((x * 1.7 + 6.0 * fbm(x, y, 6.0, seed ^ 7)).sin() * 0.5 + 0.5) * 18.0;
            [n * 40.0 - grass * 0.3, n * 55.0 + grass, n * 30.0]
        }
        // Water: horizontal waves.
        1 => {
            let wave = (y * 0.55 + 2.5 * (x * 0.09).sin()).sin() * 22.0;
            [
                wave * 0.5 + n * 15.0,
                wave * 0.8 + n * 20.0,
                wave + n * 25.0,
            ]
        }
        // Sand: diagonal dunes and grain.
        2 => {
            let dune = ((x + 0.6 * y) * 0.08).sin() * 16.0;
            let grain = (hash(x as i64, y as i64, seed ^ 3) - 0.5) * 26.0;
            [
                dune + grain + n * 20.0,
                dune + grain + n * 18.0,
                dune * 0.7 + grain + n * 15.0,
            ]
        }
        // Wall: bricks with dark mortar.
        _ => {
            let row = (y / 10.0).floor();
            let shift = if row as i64 % 2 == 0 { 0.0 } else { 10.0 };
            let mortar = y.rem_euclid(10.0) < 1.5 || (x + shift).rem_euclid(20.0) < 1.5;
            let m = if mortar { -45.0 } else { 0.0 };
            let brick = (hash((x + shift).div_euclid(20.0) as i64, row as i64, seed) - 0.5) * 30.0;
            [
                m + brick + n * 15.0,
                m + brick * 0.8 + n * 15.0,
                m + brick * 0.6 + n * 15.0,
            ]
        }
    };
    [base[0] + d[0], base[1] + d[1], base[2] + d[2]]
}

fn body(kind: usize, brightness: f64, x: f64, y: f64, seed: u64) -> [f64; 3] {
    let c = BODY_COLORS[kind];
    let t = match kind % 3 {
        0 => fbm(x, y, 5.0, seed ^ 11) * 50.0,
        1 => {
            if value_noise(x, y, 3.0, seed ^ 12) > 0.62 {
                -35.0
            } else {
                0.0
            }
        }
        _ => ((x - y) * 0.9).sin() * 12.0 + fbm(x, y, 3.0, seed ^ 13) * 25.0,
    };
    [
        c[0] * brightness + t,
        c[1] * brightness + t,
        c[2] * brightness + t,
    ]
}

fn part(class: usize, o: &Object, x: f64, y: f64) -> [f64; 3] {
    let c = PART_COLORS[class];
    let (u, v) = o.local(x, y);
    // Class-specific stripe orientation and frequency, in the object frame.
    let angle = class as f64 * std::f64::consts::PI / 10.0;
    let freq = (3 + class % 3) as f64 * 2.2;
    let s = ((u * angle.cos() + v * angle.sin()) * freq * std::f64::consts::TAU).sin();
    let k = 0.72 + 0.28 * s;
    [c[0] * k, c[1] * k, c[2] * k]
}

fn clutter_contains(c: &Clutter, x: f64, y: f64) -> bool {
    let (s, co) = c.rotation.sin_cos();
    let (dx, dy) = (x - c.cx, y - c.cy);
    let u = (dx * co + dy * s) / c.rx;
    let v = (-dx * s + dy * co) / c.ry;
    u * u + v * v <= 1.0
}

/// Renders `scene`: returns the RGB8 pixels (row-major, interleaved) and the label map
/// (0 = background, `class + 1` = object, 255 = ignore band when `ignore_band`).
pub fn render(scene: &Scene, ignore_band: bool) -> (Vec<u8>, Vec<u8>) {
    let (w, h) = (scene.width, scene.height);
    let seed = scene.texture_seed;
    let mut rgb = vec![0u8; w * h * 3];
    let mut labels = vec![0u8; w * h];
    let light_dir = (seed % 628) as f64 / 100.0;
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f64 + 0.5, y as f64 + 0.5);
            let mut c = background(scene.background, fx, fy, seed);
            for cl in &scene.clutter {
                if clutter_contains(cl, fx, fy) {
                    c = match cl.offset {
                        Some(o) => {
                            let b = background(scene.background, cl.cx, cl.cy, seed ^ 5);
                            [b[0] + o[0], b[1] + o[1], b[2] + o[2]]
                        }
                        None => body(cl.body, 1.0, fx, fy, seed),
                    };
                }
            }
            let mut label = 0u8;
            for o in &scene.objects {
                if o.contains(fx, fy) {
                    label = o.class as u8 + 1;
                    c = if o.in_part(fx, fy) {
                        part(o.class, o, fx, fy)
                    } else {
                        body(o.body, o.brightness, fx, fy, seed)
                    };
                }
            }
            // Smooth illumination gradient and sensor noise.
            let light = 1.0
                + 0.12
                    * ((fx / w as f64 - 0.5) * light_dir.cos()
                        + (fy / h as f64 - 0.5) * light_dir.sin());
            let i = (y * w + x) * 3;
            for ch in 0..3 {
                let noise = (hash(x as i64, y as i64, seed ^ (100 + ch as u64)) - 0.5) * 14.0;
                rgb[i + ch] = (c[ch] * light + noise).round().clamp(0.0, 255.0) as u8;
            }
            labels[y * w + x] = label;
        }
    }
    if ignore_band {
        mark_ignore_band(&mut labels, w, h);
    }
    (rgb, labels)
}

/// Marks object pixels that touch a different label (4-neighbourhood) as ignore: a one-pixel
/// void band on the inside of every object boundary, like VOC's annotation border.
fn mark_ignore_band(labels: &mut [u8], w: usize, h: usize) {
    let src = labels.to_vec();
    for y in 0..h {
        for x in 0..w {
            let l = src[y * w + x];
            if l == 0 {
                continue;
            }
            let differs = (x > 0 && src[y * w + x - 1] != l)
                || (x + 1 < w && src[y * w + x + 1] != l)
                || (y > 0 && src[(y - 1) * w + x] != l)
                || (y + 1 < h && src[(y + 1) * w + x] != l);
            if differs {
                labels[y * w + x] = IGNORE;
            }
        }
    }
}
