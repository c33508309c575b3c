//! Permutohedral lattice Gaussian filtering (§4.1.1, §10.4), ported from the
//! Krähenbühl–Koltun dense CRF library that pydensecrf wraps (`permutohedral.cpp`, Adams et
//! al. 2010).
//!
//! Filtering `out_i = Σ_j exp(−½‖f_i − f_j‖²) in_j` is approximated in three steps:
//! *splat* each point's value onto the d+1 vertices of the enclosing simplex of the
//! permutohedral lattice with barycentric weights, *blur* the vertex values along each of the
//! d+1 lattice directions with the kernel [½ 1 ½], and *slice* back with the same weights,
//! scaled by the library's constant α = 1/(1 + 2^−d). We follow the library's float32
//! arithmetic (its SSE path: round-half-even to the nearest remainder-0 point, same scale
//! factors) so the results match pydensecrf to float rounding, not just to the approximation:
//! an exact Gaussian gives visibly different CRF labels.
//!
//! Unlike the library, splatting is a gather (each vertex sums its contributions, in pixel
//! order, the library's accumulation order) so that splat, blur and slice all run in parallel
//! without locks or atomics.

use rayon::prelude::*;

use super::hash::KeyTable;
use crate::{CoreError, Result};

/// Vertices (or pixels) per rayon task: large enough to amortise scheduling, small enough to
/// balance two to sixteen threads on a 500×375 image.
pub(crate) const CHUNK: usize = 2048;

/// A permutohedral lattice built from the features of `n` points.
pub struct Lattice {
    d: usize,
    n: usize,
    m: usize,
    /// Per point, its d+1 vertex rows (vertex id + 1; row 0 of every value array is zero and
    /// stands for "no such vertex").
    offsets: Vec<u32>,
    /// Per point, the barycentric weights of its d+1 vertices.
    bary: Vec<f32>,
    /// Per direction j and vertex i (index `j·m + i`): the rows of its two neighbours.
    neighbours: Vec<[u32; 2]>,
    /// Vertex i's contributions are entries `splat_start[i]..splat_start[i+1]`.
    splat_start: Vec<u32>,
    /// Per contribution: the point it comes from.
    splat_point: Vec<u32>,
    /// Per contribution: its barycentric weight.
    splat_bary: Vec<f32>,
}

/// Per-point embedding: the keys of the d+1 enclosing vertices and their weights.
struct Embedder {
    d: usize,
    scale: Vec<f32>,
    elevated: Vec<f32>,
    rem0: Vec<f32>,
    rank: Vec<i32>,
    bary: Vec<f32>,
}

impl Embedder {
    fn new(d: usize) -> Self {
        // Expected standard deviation of the lattice filter (p. 6 of Adams et al.): the
        // library computes these in double and stores them as float.
        let inv_std_dev = ((2.0f64 / 3.0).sqrt() * (d + 1) as f64) as f32;
        let scale = (0..d)
            .map(|i| (1.0 / (((i + 2) * (i + 1)) as f64).sqrt() * inv_std_dev as f64) as f32)
            .collect();
        Embedder {
            d,
            scale,
            elevated: vec![0.0; d + 1],
            rem0: vec![0.0; d + 1],
            rank: vec![0; d + 1],
            bary: vec![0.0; d + 2],
        }
    }

    /// Embeds feature `f`, writing d keys per vertex into `keys` and d+1 weights into
    /// `weights`. Returns false when a coordinate leaves the i16 range (or is NaN).
    fn embed(&mut self, f: &[f32], keys: &mut [i16], weights: &mut [f32]) -> bool {
        let d = self.d;
        let (elevated, rem0, rank, bary) = (
            &mut self.elevated,
            &mut self.rem0,
            &mut self.rank,
            &mut self.bary,
        );
        // Elevate onto the hyperplane Σ = 0 of R^{d+1} (y = E·p).
        let mut sm = 0.0f32;
        for j in (1..=d).rev() {
            let cf = f[j - 1] * self.scale[j - 1];
            elevated[j] = sm - j as f32 * cf;
            sm += cf;
        }
        elevated[0] = sm;
        // Nearest remainder-0 lattice point, by rounding each coordinate to a multiple of d+1.
        let down = 1.0f32 / (d + 1) as f32;
        let up = (d + 1) as f32;
        let mut sum = 0.0f32;
        for i in 0..=d {
            let v = (down * elevated[i]).round_ties_even();
            rem0[i] = v * up;
            sum += v;
        }
        // Rank of each coordinate's residual: which simplex the point lies in.
        rank.iter_mut().for_each(|r| *r = 0);
        for i in 0..d {
            let di = elevated[i] - rem0[i];
            for j in i + 1..=d {
                if di < elevated[j] - rem0[j] {
                    rank[i] += 1;
                } else {
                    rank[j] += 1;
                }
            }
        }
        // Bring the point back onto the plane when the rounded coordinates do not sum to 0.
        let sum = sum as i32;
        let d1 = (d + 1) as i32;
        for i in 0..=d {
            rank[i] += sum;
            if rank[i] < 0 {
                rank[i] += d1;
                rem0[i] += up;
            } else if rank[i] >= d1 {
                rank[i] -= d1;
                rem0[i] -= up;
            }
        }
        // Barycentric coordinates (p. 10 of Adams et al.).
        bary.iter_mut().for_each(|b| *b = 0.0);
        for i in 0..=d {
            let v = (elevated[i] - rem0[i]) * down;
            let p = (d as i32 - rank[i]) as usize;
            bary[p] += v;
            bary[p + 1] -= v;
        }
        bary[0] += 1.0 + bary[d + 1];
        // Vertex `remainder` of the simplex: rem0 plus the canonical simplex's column.
        for remainder in 0..=d {
            for i in 0..d {
                let canonical = if rank[i] <= (d - remainder) as i32 {
                    remainder as f32
                } else {
                    remainder as f32 - up
                };
                let k = rem0[i] + canonical;
                if !(-32768.0..=32767.0).contains(&k) {
                    return false;
                }
                keys[remainder * d + i] = k as i16;
            }
            weights[remainder] = bary[remainder];
        }
        true
    }
}

impl Lattice {
    /// Builds the lattice for `features`: `n` points × `dim` coordinates, point-major, already
    /// divided by the kernel's standard deviations.
    ///
    /// # Errors
    /// `dim` is 0, the length is not a multiple of `dim`, or a feature is not finite or so
    /// large that lattice coordinates overflow.
    pub fn new(features: &[f32], dim: usize) -> Result<Self> {
        if dim == 0 || features.len() % dim != 0 {
            return Err(CoreError::Invalid(format!(
                "lattice features: length {} is not a multiple of dimension {dim}",
                features.len()
            )));
        }
        let d = dim;
        let d1 = d + 1;
        let n = features.len() / d;
        if n >= u32::MAX as usize / d1 {
            return Err(CoreError::Invalid(format!(
                "lattice: too many points ({n})"
            )));
        }

        // Embedding is independent per point: do it in parallel, then insert sequentially so
        // vertex ids (and thus results) do not depend on the thread count.
        let mut keys = vec![0i16; n * d1 * d];
        let mut bary = vec![0f32; n * d1];
        let ok = keys
            .par_chunks_mut(CHUNK * d1 * d)
            .zip(bary.par_chunks_mut(CHUNK * d1))
            .zip(features.par_chunks(CHUNK * d))
            .all(|((keys, bary), feats)| {
                let mut emb = Embedder::new(d);
                feats
                    .chunks_exact(d)
                    .zip(keys.chunks_exact_mut(d1 * d))
                    .zip(bary.chunks_exact_mut(d1))
                    .all(|((f, k), b)| emb.embed(f, k, b))
            });
        if !ok {
            return Err(CoreError::Invalid(
                "lattice features are not finite or too large (coordinates overflow i16)".into(),
            ));
        }

        let mut table = KeyTable::new(d, n);
        let offsets: Vec<u32> = keys
            .chunks_exact(d)
            .map(|k| table.find_or_insert(k) + 1)
            .collect();
        drop(keys);
        let m = table.len();

        let neighbours = Self::find_neighbours(&table, d, m);
        let (splat_start, splat_point, splat_bary) = Self::splat_lists(&offsets, &bary, d1, m);
        Ok(Lattice {
            d,
            n,
            m,
            offsets,
            bary,
            neighbours,
            splat_start,
            splat_point,
            splat_bary,
        })
    }

    /// For each direction j, the two neighbours of every vertex: all coordinates −1 except
    /// coordinate j +d (and the opposite); direction d changes only the implied coordinate.
    fn find_neighbours(table: &KeyTable, d: usize, m: usize) -> Vec<[u32; 2]> {
        let mut neighbours = vec![[0u32; 2]; (d + 1) * m];
        neighbours
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, out)| {
                let mut n1 = vec![0i16; d];
                let mut n2 = vec![0i16; d];
                for (o, slot) in out.iter_mut().enumerate() {
                    let idx = c * CHUNK + o;
                    let (j, i) = (idx / m, idx % m);
                    let key = table.key(i);
                    for k in 0..d {
                        n1[k] = key[k].wrapping_sub(1);
                        n2[k] = key[k].wrapping_add(1);
                    }
                    if j < d {
                        n1[j] = key[j].wrapping_add(d as i16);
                        n2[j] = key[j].wrapping_sub(d as i16);
                    }
                    let row = |k: &[i16]| table.find(k).map_or(0, |e| e + 1);
                    *slot = [row(&n1), row(&n2)];
                }
            });
        neighbours
    }

    /// Transposes point → vertex links into vertex → contributions lists (in point order).
    fn splat_lists(
        offsets: &[u32],
        bary: &[f32],
        d1: usize,
        m: usize,
    ) -> (Vec<u32>, Vec<u32>, Vec<f32>) {
        let mut start = vec![0u32; m + 2];
        for &o in offsets {
            start[o as usize + 1] += 1;
        }
        for i in 1..start.len() {
            start[i] += start[i - 1];
        }
        // start[r] is now the first entry of row r (rows are 1-based); drop row 0.
        let mut next: Vec<u32> = start[1..=m].to_vec();
        let mut point = vec![0u32; offsets.len()];
        let mut weight = vec![0f32; offsets.len()];
        for (s, &o) in offsets.iter().enumerate() {
            let e = &mut next[o as usize - 1];
            point[*e as usize] = (s / d1) as u32;
            weight[*e as usize] = bary[s];
            *e += 1;
        }
        start.remove(0);
        (start, point, weight)
    }

    /// Feature dimension d.
    pub fn dim(&self) -> usize {
        self.d
    }

    /// Number of points.
    pub fn n_points(&self) -> usize {
        self.n
    }

    /// Number of lattice vertices.
    pub fn n_vertices(&self) -> usize {
        self.m
    }

    /// The library's slicing constant α = 1/(1 + 2^−d).
    pub fn alpha(&self) -> f32 {
        1.0 / (1.0 + 2f32.powi(-(self.d as i32)))
    }

    /// Filters `input` (`n` points × `value_size`, point-major), as the library's
    /// `Permutohedral::compute` (forward direction).
    ///
    /// # Errors
    /// `input` does not hold `n × value_size` values.
    pub fn filter(&self, input: &[f32], value_size: usize) -> Result<Vec<f32>> {
        if value_size == 0 || input.len() != self.n * value_size {
            return Err(CoreError::Invalid(format!(
                "lattice filter: {} values for {} points × {value_size}",
                input.len(),
                self.n
            )));
        }
        let mut values = self.new_values(value_size);
        let mut scratch = self.new_values(value_size);
        self.splat(&self.splat_bary, input, value_size, &mut values);
        self.blur(&mut values, &mut scratch, value_size);
        let alpha = self.alpha();
        let weights: Vec<f32> = self.bary.iter().map(|b| b * alpha).collect();
        let mut out = vec![0f32; input.len()];
        out.par_chunks_mut(CHUNK * value_size)
            .enumerate()
            .for_each(|(c, out)| {
                for (o, acc) in out.chunks_exact_mut(value_size).enumerate() {
                    self.slice_point(c * CHUNK + o, &weights, &values, value_size, acc);
                }
            });
        Ok(out)
    }

    /// A zeroed vertex value array: (m + 1) rows of `value_size`, row 0 the "missing" row.
    pub(crate) fn new_values(&self, value_size: usize) -> Vec<f32> {
        vec![0f32; (self.m + 1) * value_size]
    }

    /// Per contribution (in splat-list order): its point and barycentric weight, for callers
    /// that fold a per-point scale into the splat weights.
    pub(crate) fn splat_entries(&self) -> impl Iterator<Item = (usize, f32)> + '_ {
        self.splat_point
            .iter()
            .zip(&self.splat_bary)
            .map(|(&p, &w)| (p as usize, w))
    }

    /// Per point and vertex (point-major): the barycentric weights.
    pub(crate) fn barycentric(&self) -> &[f32] {
        &self.bary
    }

    /// Splats `input` into `values` with per-contribution `weights` (splat-list order).
    pub(crate) fn splat(&self, weights: &[f32], input: &[f32], vs: usize, values: &mut [f32]) {
        values[..vs].iter_mut().for_each(|v| *v = 0.0);
        values[vs..]
            .par_chunks_mut(CHUNK * vs)
            .enumerate()
            .for_each(|(c, rows)| {
                for (r, row) in rows.chunks_exact_mut(vs).enumerate() {
                    let i = c * CHUNK + r;
                    row.iter_mut().for_each(|v| *v = 0.0);
                    let (a, b) = (
                        self.splat_start[i] as usize,
                        self.splat_start[i + 1] as usize,
                    );
                    for e in a..b {
                        let w = weights[e];
                        let p = self.splat_point[e] as usize;
                        let src = &input[p * vs..(p + 1) * vs];
                        row.iter_mut().zip(src).for_each(|(v, s)| *v += w * s);
                    }
                }
            });
    }

    /// Blurs `values` along the d+1 lattice directions in order 0..=d; `scratch` is a buffer
    /// of the same size. The result is left in `values`.
    pub(crate) fn blur(&self, values: &mut Vec<f32>, scratch: &mut Vec<f32>, vs: usize) {
        for j in 0..=self.d {
            let nb = &self.neighbours[j * self.m..(j + 1) * self.m];
            let old: &[f32] = values;
            scratch[..vs].iter_mut().for_each(|v| *v = 0.0);
            scratch[vs..]
                .par_chunks_mut(CHUNK * vs)
                .enumerate()
                .for_each(|(c, rows)| {
                    for (r, row) in rows.chunks_exact_mut(vs).enumerate() {
                        let i = c * CHUNK + r;
                        let [n1, n2] = nb[i];
                        let (n1, n2) = (n1 as usize * vs, n2 as usize * vs);
                        let o = &old[(i + 1) * vs..(i + 2) * vs];
                        let a = &old[n1..n1 + vs];
                        let b = &old[n2..n2 + vs];
                        for k in 0..vs {
                            row[k] = o[k] + 0.5 * (a[k] + b[k]);
                        }
                    }
                });
            std::mem::swap(values, scratch);
        }
    }

    /// Adds point `p`'s slice of `values`, with per-(point, vertex) `weights`, to `acc`.
    #[inline]
    pub(crate) fn slice_point(
        &self,
        p: usize,
        weights: &[f32],
        values: &[f32],
        vs: usize,
        acc: &mut [f32],
    ) {
        let d1 = self.d + 1;
        for s in p * d1..(p + 1) * d1 {
            let w = weights[s];
            let o = self.offsets[s] as usize * vs;
            acc.iter_mut()
                .zip(&values[o..o + vs])
                .for_each(|(a, v)| *a += w * v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid_features(w: usize, h: usize, s: f32) -> Vec<f32> {
        (0..h)
            .flat_map(|y| (0..w).flat_map(move |x| [x as f32 / s, y as f32 / s]))
            .collect()
    }

    #[test]
    fn barycentric_weights_sum_to_one_and_are_nonnegative() {
        let feats: Vec<f32> = (0..200)
            .flat_map(|i| {
                let t = i as f32 * 0.37;
                [t.sin() * 3.0, t.cos() * 2.0, t * 0.1, (t * 1.7).sin()]
            })
            .collect();
        let lat = Lattice::new(&feats, 4).unwrap();
        for w in lat.barycentric().chunks_exact(5) {
            let s: f32 = w.iter().sum();
            assert!((s - 1.0).abs() < 1e-5, "weights sum to {s}");
            assert!(w.iter().all(|&x| x >= -1e-6), "negative weight in {w:?}");
        }
    }

    #[test]
    fn filtering_a_constant_is_positive_and_smooth() {
        let (w, h) = (20, 15);
        let lat = Lattice::new(&grid_features(w, h, 3.0), 2).unwrap();
        let out = lat.filter(&vec![1.0; w * h], 1).unwrap();
        assert!(out.iter().all(|&v| v > 0.0));
        // Interior points see the same neighbourhood: their responses agree closely, and
        // each exceeds its own weight (the Gaussian sums over many neighbours).
        let centre = out[7 * w + 10];
        assert!(centre > 1.0);
        for y in 6..9 {
            for x in 8..12 {
                let v = out[y * w + x];
                assert!((v - centre).abs() / centre < 0.15, "{v} vs {centre}");
            }
        }
        // Corners see fewer neighbours.
        assert!(out[0] < centre);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(Lattice::new(&[1.0, 2.0, 3.0], 2).is_err());
        assert!(Lattice::new(&[f32::NAN, 0.0], 2).is_err());
        assert!(Lattice::new(&[1e9, 0.0], 2).is_err());
        let lat = Lattice::new(&grid_features(4, 4, 1.0), 2).unwrap();
        assert!(lat.filter(&[1.0; 15], 1).is_err());
    }
}
