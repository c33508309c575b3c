//! A symmetrically normalised Gaussian kernel on the permutohedral lattice (§4.1.1): the
//! library's `DenseKernel` with `DIAG_KERNEL` (identity feature transform) and
//! `NORMALIZE_SYMMETRIC`, i.e. `K̃ Q = N·K(N·Q)` with `N = 1/sqrt(K·1 + 1e-20)`.
//!
//! The two diagonal scalings (and the term's Potts weight) are folded into the splat and slice
//! weights once, so each mean-field iteration costs one splat, one blur and one slice.

use super::lattice::{Lattice, Row, ValueBuffers};
use crate::Result;

/// A weighted, normalised kernel ready to filter label marginals.
pub(crate) struct NormalizedKernel {
    lattice: Lattice,
    /// Splat weights (point-major, d+1 per point): barycentric · norm of the point.
    splat_w: Vec<f32>,
    /// Slice weights (point-major): barycentric · α · norm of the point · term weight.
    slice_w: Vec<f32>,
}

impl NormalizedKernel {
    /// Builds `weight · K̃` for point-major `features` of dimension `dim`.
    pub(crate) fn new(features: &[f32], dim: usize, weight: f32) -> Result<Self> {
        let lattice = Lattice::new(features, dim)?;
        let ones = vec![1.0f32; lattice.n_points()];
        let norm: Vec<f32> = lattice
            .filter(&ones, 1)?
            .into_iter()
            .map(|k| (1.0 / (k as f64 + 1e-20).sqrt()) as f32)
            .collect();
        let d1 = dim + 1;
        let alpha = lattice.alpha();
        let bary = lattice.barycentric();
        let splat_w = bary
            .iter()
            .enumerate()
            .map(|(s, &b)| b * norm[s / d1])
            .collect();
        let slice_w = bary
            .iter()
            .enumerate()
            .map(|(s, &b)| b * alpha * norm[s / d1] * weight)
            .collect();
        Ok(NormalizedKernel {
            lattice,
            splat_w,
            slice_w,
        })
    }

    /// Splats and blurs point-major `q` (`vp` values per point, a multiple of the group
    /// width) into `groups`; call [`Self::slice_add`] afterwards per point.
    pub(crate) fn prepare(&self, q: &[f32], vp: usize, buffers: &mut ValueBuffers) {
        self.lattice.splat_blur(&self.splat_w, q, vp, buffers);
    }

    /// Adds `weight · (K̃ q)_p` (from prepared `groups`) to `acc`.
    #[inline(always)]
    pub(crate) fn slice_add(&self, p: usize, buffers: &ValueBuffers, acc: &mut [Row]) {
        self.lattice.slice_point(p, &self.slice_w, buffers, acc);
    }

    /// [`Self::slice_add`] for a fixed number of channel groups.
    #[inline(always)]
    pub(crate) fn slice_add_fixed<const G: usize>(
        &self,
        p: usize,
        buffers: &ValueBuffers,
        acc: &mut [Row; G],
    ) {
        self.lattice
            .slice_point_fixed(p, &self.slice_w, buffers, acc);
    }
}

#[cfg(test)]
mod tests {
    use super::super::lattice::{LANES, padded};
    use super::*;

    impl NormalizedKernel {
        /// `weight · K̃ q` for point-major `q` with one value per point.
        fn apply(&self, q: &[f32]) -> Vec<f32> {
            let vp = padded(1);
            let padded_q: Vec<f32> = q
                .iter()
                .flat_map(|&v| std::iter::once(v).chain(std::iter::repeat_n(0.0, vp - 1)))
                .collect();
            let mut groups = ValueBuffers::default();
            self.prepare(&padded_q, vp, &mut groups);
            (0..q.len())
                .map(|p| {
                    let mut acc = vec![[0f32; LANES]; vp / LANES];
                    self.slice_add(p, &groups, &mut acc);
                    acc[0][0]
                })
                .collect()
        }
    }

    /// (x/s, y/s) features of a w×h grid.
    fn grid(w: usize, h: usize, s: f32) -> Vec<f32> {
        (0..h)
            .flat_map(|y| (0..w).flat_map(move |x| [x as f32 / s, y as f32 / s]))
            .collect()
    }

    #[test]
    fn symmetric_normalisation_makes_the_operator_symmetric() {
        // K̃ = N K N is symmetric: <e_a, K̃ e_b> = <e_b, K̃ e_a> up to the lattice's own
        // (symmetric) approximation.
        let (w, h) = (31, 31);
        let k = NormalizedKernel::new(&grid(w, h, 2.0), 2, 1.0).unwrap();
        let n = w * h;
        let unit = |i: usize| {
            let mut v = vec![0f32; n];
            v[i] = 1.0;
            v
        };
        let (a, b) = (15 * w + 15, 16 * w + 17);
        let ka = k.apply(&unit(a));
        let kb = k.apply(&unit(b));
        assert!(ka[b] > 0.0);
        assert!((ka[b] - kb[a]).abs() <= 1e-5 * ka[b].abs().max(1e-3));
        // And a constant is mapped to roughly itself where the neighbourhood is uniform:
        // K̃ 1 = N K N 1 ≈ 1 when N is locally constant.
        let k1 = k.apply(&vec![1.0; n]);
        let mid = k1[15 * w + 15];
        assert!((mid - 1.0).abs() < 0.05, "K̃·1 at the centre is {mid}");
        // The term weight scales the result.
        let k3 = NormalizedKernel::new(&grid(w, h, 2.0), 2, 3.0).unwrap();
        assert!((k3.apply(&vec![1.0; n])[15 * w + 15] - 3.0 * mid).abs() < 1e-5);
    }

    #[test]
    fn close_to_a_brute_force_normalised_gaussian() {
        let (w, h, s) = (16, 12, 2.5f32);
        let feats = grid(w, h, s);
        let n = w * h;
        let q: Vec<f32> = (0..n).map(|i| ((i * 7919) % 13) as f32 / 13.0).collect();
        let lat = NormalizedKernel::new(&feats, 2, 1.0).unwrap().apply(&q);

        let kern = |i: usize, j: usize| {
            let dx = feats[2 * i] - feats[2 * j];
            let dy = feats[2 * i + 1] - feats[2 * j + 1];
            (-0.5 * (dx * dx + dy * dy) as f64).exp()
        };
        let norm: Vec<f64> = (0..n)
            .map(|i| 1.0 / (0..n).map(|j| kern(i, j)).sum::<f64>().sqrt())
            .collect();
        let exact: Vec<f64> = (0..n)
            .map(|i| {
                norm[i]
                    * (0..n)
                        .map(|j| kern(i, j) * norm[j] * q[j] as f64)
                        .sum::<f64>()
            })
            .collect();
        let mean_abs_err = exact
            .iter()
            .zip(&lat)
            .map(|(e, l)| (e - *l as f64).abs())
            .sum::<f64>()
            / n as f64;
        let mean_abs = exact.iter().map(|e| e.abs()).sum::<f64>() / n as f64;
        // The lattice is an approximation (close, not exact).
        assert!(
            mean_abs_err < 0.1 * mean_abs,
            "mean error {mean_abs_err} vs mean value {mean_abs}"
        );
        assert!(mean_abs_err > 0.0);
    }
}
