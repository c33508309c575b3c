//! The dense reference route of the random walk (§4.7 steps 4a–g, IRN `propagate_to_edge`),
//! kept for tests and benchmarks: it follows the reference literally (pad, path affinities on
//! the padded grid, dense symmetric matrix, crop, `A^{∘β}` column-normalised, `exp_times`
//! squarings) in f64. Memory is `n²` floats and time `exp_times·n³`, so use it on small grids
//! only; production code uses [`super::walk::random_walk`].

use super::affinity::padded_affinity;
use super::paths::PathIndex;
use super::walk::WalkParams;
use crate::{CoreError, Result};

/// Largest grid (pixels) the dense route accepts, so a mistaken call cannot exhaust memory.
pub const MAX_DENSE_PIXELS: usize = 4096;

/// `rw = x̃ · T^{2^exp_times}` computed densely in f64; inputs as for
/// [`super::walk::random_walk`]. Returns `k×h×w`.
pub fn dense_walk(
    cam: &[f32],
    k: usize,
    h: usize,
    w: usize,
    edge: &[f32],
    params: &WalkParams,
) -> Result<Vec<f64>> {
    let n = h * w;
    if n > MAX_DENSE_PIXELS || cam.len() != k * n {
        return Err(CoreError::Invalid(format!(
            "dense walk: need k×h×w CAM values and h·w ≤ {MAX_DENSE_PIXELS} (got {} for {k}×{h}×{w})",
            cam.len()
        )));
    }
    let index = PathIndex::new(params.radius)?;
    let r = params.radius;
    let aff = padded_affinity(edge, h, w, &index)?;
    let (hp, wp) = (h + r, w + 2 * r);
    let (rows, cols, col0) = index.sources(hp, wp)?;
    // Crop of §4.7c: padded rows 0..h, columns R..R+w.
    let crop = |y: usize, x: usize| (y < h && (r..r + w).contains(&x)).then(|| y * w + x - r);
    let mut t = vec![0.0f64; n * n];
    for p in 0..n {
        t[p * n + p] = 1.0;
    }
    let n_src = rows * cols;
    for (d, &(dy, dx)) in index.directions().iter().enumerate() {
        for s in 0..n_src {
            let (y, x) = (s / cols, col0 + s % cols);
            let (y2, x2) = ((y as isize + dy) as usize, (x as isize + dx) as usize);
            if let (Some(a), Some(b)) = (crop(y, x), crop(y2, x2)) {
                let v = f64::from(aff[d * n_src + s]);
                t[a * n + b] = v;
                t[b * n + a] = v;
            }
        }
    }
    let beta = f64::from(params.beta);
    t.iter_mut().for_each(|v| *v = v.powf(beta));
    let colsum: Vec<f64> = (0..n).map(|j| (0..n).map(|i| t[i * n + j]).sum()).collect();
    for row in t.chunks_exact_mut(n) {
        row.iter_mut().zip(&colsum).for_each(|(v, s)| *v /= s);
    }
    for _ in 0..params.exp_times {
        t = square(&t, n);
    }
    let mut out = vec![0.0f64; k * n];
    for c in 0..k {
        let o = &mut out[c * n..(c + 1) * n];
        for i in 0..n {
            let xi = f64::from(cam[c * n + i]) * (1.0 - f64::from(edge[i]));
            o.iter_mut()
                .zip(&t[i * n..(i + 1) * n])
                .for_each(|(o, &v)| *o += xi * v);
        }
    }
    Ok(out)
}

/// `T·T` with the cache-friendly i-k-j loop order.
fn square(t: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0.0f64; n * n];
    for i in 0..n {
        let o = &mut out[i * n..(i + 1) * n];
        for kk in 0..n {
            let a = t[i * n + kk];
            o.iter_mut()
                .zip(&t[kk * n..(kk + 1) * n])
                .for_each(|(o, &b)| *o += a * b);
        }
    }
    out
}
