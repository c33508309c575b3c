//! PyTorch resize semantics (spec §0.2): `F.interpolate(mode="bilinear",
//! align_corners=False)` without antialiasing, and nearest with scale factor 0.5.

use super::{check_len, check_nonzero};
use crate::Result;

/// One output index of a bilinear resize: the two source indices and their weights.
#[derive(Clone, Copy)]
struct Tap {
    i0: usize,
    i1: usize,
    w0: f64,
    w1: f64,
}

/// PyTorch's `area_pixel_compute_source_index` for `align_corners=False`, in f64 (the
/// fixtures are computed in f64 from f32 inputs): `x = (o + 0.5)·in/out − 0.5` clamped at 0,
/// neighbours `floor(x)` and `floor(x) + 1` clamped to the last index.
fn taps(in_len: usize, out_len: usize) -> Vec<Tap> {
    if in_len == 0 {
        return Vec::new();
    }
    let scale = in_len as f64 / out_len as f64;
    (0..out_len)
        .map(|o| {
            let x = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (x as usize).min(in_len - 1);
            let i1 = (i0 + 1).min(in_len - 1);
            let w1 = x - i0 as f64;
            Tap {
                i0,
                i1,
                w0: 1.0 - w1,
                w1,
            }
        })
        .collect()
}

/// Interpolation matrix `R` (`out_len × in_len`, row-major) of PyTorch bilinear
/// `align_corners=False` along one axis, in f64: `resize(X) = R_h · X · R_wᵀ`.
///
/// Each row has at most two non-zero entries summing to 1. `in_len == 0` gives an empty
/// matrix.
pub fn bilinear_matrix_f64(in_len: usize, out_len: usize) -> Vec<f64> {
    let mut m = vec![0.0; out_len * in_len];
    for (o, t) in taps(in_len, out_len).into_iter().enumerate() {
        m[o * in_len + t.i0] += t.w0;
        m[o * in_len + t.i1] += t.w1;
    }
    m
}

/// [`bilinear_matrix_f64`] rounded to f32, for candle matmuls.
pub fn bilinear_matrix(in_len: usize, out_len: usize) -> Vec<f32> {
    bilinear_matrix_f64(in_len, out_len)
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

/// Bilinear (`align_corners=False`) resize of `c` planes of `h×w` (`src` is `C×H×W`) to
/// `c×out_h×out_w`. Separable and accumulated in f64, so the result is PyTorch's float64
/// result rounded once to f32.
pub fn bilinear_chw(
    src: &[f32],
    c: usize,
    h: usize,
    w: usize,
    out_h: usize,
    out_w: usize,
) -> Result<Vec<f32>> {
    check_len(src.len(), &[c, h, w], "bilinear_chw input")?;
    check_nonzero(&[h, w, out_h, out_w], "bilinear_chw")?;
    let tx = taps(w, out_w);
    let ty = taps(h, out_h);
    let mut out = Vec::with_capacity(c * out_h * out_w);
    // Horizontal pass of one plane into an f64 buffer, then the vertical pass.
    let mut rows = vec![0.0f64; h * out_w];
    for plane in src.chunks_exact(h * w) {
        for (row, dst) in plane.chunks_exact(w).zip(rows.chunks_exact_mut(out_w)) {
            for (d, t) in dst.iter_mut().zip(&tx) {
                *d = t.w0 * row[t.i0] as f64 + t.w1 * row[t.i1] as f64;
            }
        }
        for t in &ty {
            let r0 = &rows[t.i0 * out_w..(t.i0 + 1) * out_w];
            let r1 = &rows[t.i1 * out_w..(t.i1 + 1) * out_w];
            out.extend(r0.iter().zip(r1).map(|(a, b)| (t.w0 * a + t.w1 * b) as f32));
        }
    }
    Ok(out)
}

/// PyTorch nearest with `scale_factor=0.5` on `c` planes of `h×w`: keeps rows and columns
/// 0, 2, 4, … and gives `c × floor(h/2) × floor(w/2)` (used on superpixel id maps, §2.6).
pub fn torch_nearest_half<T: Copy>(src: &[T], c: usize, h: usize, w: usize) -> Result<Vec<T>> {
    check_len(src.len(), &[c, h, w], "torch_nearest_half input")?;
    let (oh, ow) = (h / 2, w / 2);
    let mut out = Vec::with_capacity(c * oh * ow);
    if w == 0 || h == 0 {
        return Ok(out);
    }
    for plane in src.chunks_exact(h * w) {
        for y in 0..oh {
            let row = &plane[2 * y * w..(2 * y + 1) * w];
            out.extend((0..ow).map(|x| row[2 * x]));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_rows_sum_to_one_and_identity_is_identity() {
        for (i, o) in [(7, 13), (9, 4), (5, 1), (1, 6)] {
            let m = bilinear_matrix_f64(i, o);
            for r in m.chunks_exact(i) {
                assert!((r.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            }
        }
        let m = bilinear_matrix(3, 3);
        assert_eq!(m, vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn upsample_by_two_matches_hand_values() {
        // in 2 → out 4: x = -0.25→0, 0.25, 0.75, 1.25→clamped neighbour.
        let out = bilinear_chw(&[0.0, 4.0], 1, 1, 2, 1, 4).unwrap();
        assert_eq!(out, vec![0.0, 1.0, 3.0, 4.0]);
    }

    #[test]
    fn nearest_half_takes_even_indices() {
        let src: Vec<i32> = (0..2 * 5 * 5).collect();
        let out = torch_nearest_half(&src, 2, 5, 5).unwrap();
        assert_eq!(out, vec![0, 2, 10, 12, 25, 27, 35, 37]);
        assert!(torch_nearest_half(&src, 2, 5, 4).is_err());
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(bilinear_chw(&[0.0; 5], 1, 2, 3, 4, 4).is_err());
        assert!(bilinear_chw(&[0.0; 6], 1, 2, 3, 0, 4).is_err());
    }
}
