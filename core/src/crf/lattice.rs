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
//! Values are processed in groups of [`LANES`] channels (a label count is padded to a
//! multiple of it): fixed-width rows compile to straight SIMD code, and different groups are
//! splatted and blurred in parallel with no shared writes. Within a group the splat adds
//! contributions in point order, as the library does, so results do not depend on the thread
//! count.

use rayon::prelude::*;

use super::hash::{KeyTable, MAX_DIM, coord, pack};
use crate::{CoreError, Result};

/// Vertices (or pixels) per rayon task: large enough to amortise scheduling, small enough to
/// balance two to sixteen threads on a 500×375 image.
pub(crate) const CHUNK: usize = 2048;

/// Channels per value group.
pub const LANES: usize = 8;

/// One lattice vertex's values for one group of channels.
pub(crate) type Row = [f32; LANES];

/// `a += w·v`. Working on copies tells the compiler that `a` and `v` do not overlap, so it
/// emits vector instructions instead of one scalar load/store per lane.
#[inline(always)]
pub(crate) fn axpy(a: &mut Row, w: f32, v: &Row) {
    let (mut t, v) = (*a, *v);
    for k in 0..LANES {
        t[k] += w * v[k];
    }
    *a = t;
}

/// `n` rounded up to a whole number of groups.
pub(crate) fn padded(n: usize) -> usize {
    n.div_ceil(LANES) * LANES
}

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
}

/// Points embedded per block before their keys are inserted.
const EMBED_BLOCK: usize = 16 * CHUNK;

/// Adding and subtracting this rounds an f32 below 2²² to the nearest integer (ties to even).
const ROUND: f32 = 12_582_912.0;

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

    /// Embeds feature `f`, writing the packed key of each of its d+1 vertices into `keys` and
    /// their weights into `weights`. Returns false when a coordinate leaves the i16 range (or
    /// is NaN).
    fn embed(&mut self, f: &[f32], keys: &mut [u128], weights: &mut [f32]) -> bool {
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
            // Round half to even, as the library's SSE path (rounding mode "nearest"): adding
            // and subtracting 1.5·2²³ does it without a libm call for |v| < 2²²; larger or
            // NaN values fail the key range check below.
            let v = (down * elevated[i] + ROUND) - ROUND;
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
        let mut key = [0i16; MAX_DIM];
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
                key[i] = k as i16;
            }
            keys[remainder] = pack(&key[..d]);
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
    /// `dim` is 0 or above 8, the length is not a multiple of `dim`, or a feature is not
    /// finite or so large that lattice coordinates overflow.
    pub fn new(features: &[f32], dim: usize) -> Result<Self> {
        if !(1..=MAX_DIM).contains(&dim) || !features.len().is_multiple_of(dim) {
            return Err(CoreError::Invalid(format!(
                "lattice features: length {} with dimension {dim} (1 to {MAX_DIM}, dividing \
                 the length)",
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

        // Embedding is independent per point: do it in parallel, one block at a time, then
        // insert the block's keys sequentially so that vertex ids (and thus results) do not
        // depend on the thread count. Blocks keep the key buffer small and in cache.
        let mut bary = vec![0f32; n * d1];
        let mut offsets = vec![0u32; n * d1];
        let mut keys = vec![0u128; EMBED_BLOCK.min(n) * d1];
        let mut table = KeyTable::new();
        // The previous point's vertices: neighbouring points mostly share them.
        let (mut recent, mut n_recent) = ([(0u128, 0u32); MAX_DIM + 1], 0);
        for ((feats, bary), offsets) in features
            .chunks(EMBED_BLOCK * d)
            .zip(bary.chunks_mut(EMBED_BLOCK * d1))
            .zip(offsets.chunks_mut(EMBED_BLOCK * d1))
        {
            let keys = &mut keys[..bary.len()];
            let ok = keys
                .par_chunks_mut(CHUNK * d1)
                .zip(bary.par_chunks_mut(CHUNK * d1))
                .zip(feats.par_chunks(CHUNK * d))
                .all(|((keys, bary), feats)| {
                    let mut emb = Embedder::new(d);
                    feats
                        .chunks_exact(d)
                        .zip(keys.chunks_exact_mut(d1))
                        .zip(bary.chunks_exact_mut(d1))
                        .all(|((f, k), b)| emb.embed(f, k, b))
                });
            if !ok {
                return Err(CoreError::Invalid(
                    "lattice features are not finite or too large (coordinates overflow i16)"
                        .into(),
                ));
            }
            for (keys, offsets) in keys.chunks_exact(d1).zip(offsets.chunks_exact_mut(d1)) {
                let mut next = recent;
                for (r, (&k, o)) in keys.iter().zip(offsets.iter_mut()).enumerate() {
                    let id = match recent[..n_recent].iter().find(|(rk, _)| *rk == k) {
                        Some(&(_, id)) => id,
                        None => table.find_or_insert(k),
                    };
                    *o = id + 1;
                    next[r] = (k, id);
                }
                (recent, n_recent) = (next, d1);
            }
        }
        let m = table.len();

        let neighbours = Self::find_neighbours(&table, d, m);
        Ok(Lattice {
            d,
            n,
            m,
            offsets,
            bary,
            neighbours,
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
                let (mut n1, mut n2) = ([0i16; MAX_DIM], [0i16; MAX_DIM]);
                for (o, slot) in out.iter_mut().enumerate() {
                    let idx = c * CHUNK + o;
                    let (j, i) = (idx / m, idx % m);
                    let key = table.key(i);
                    for k in 0..d {
                        n1[k] = coord(key, k).wrapping_sub(1);
                        n2[k] = coord(key, k).wrapping_add(1);
                    }
                    if j < d {
                        n1[j] = coord(key, j).wrapping_add(d as i16);
                        n2[j] = coord(key, j).wrapping_sub(d as i16);
                    }
                    let row = |k: &[i16]| table.find(pack(k)).map_or(0, |e| e + 1);
                    *slot = [row(&n1[..d]), row(&n2[..d])];
                }
            });
        neighbours
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
        let vp = padded(value_size);
        let mut q = vec![0f32; self.n * vp];
        for (dst, src) in q.chunks_exact_mut(vp).zip(input.chunks_exact(value_size)) {
            dst[..value_size].copy_from_slice(src);
        }
        let mut buffers = ValueBuffers::default();
        self.splat_blur(&self.bary, &q, vp, &mut buffers);
        let alpha = self.alpha();
        let weights: Vec<f32> = self.bary.iter().map(|b| b * alpha).collect();
        let mut out = vec![0f32; input.len()];
        out.par_chunks_mut(CHUNK * value_size)
            .enumerate()
            .for_each(|(c, out)| {
                let mut acc = vec![[0f32; LANES]; vp / LANES];
                for (o, out) in out.chunks_exact_mut(value_size).enumerate() {
                    acc.iter_mut().for_each(|a| *a = [0.0; LANES]);
                    self.slice_point(c * CHUNK + o, &weights, &buffers, &mut acc);
                    out.copy_from_slice(&acc.as_flattened()[..value_size]);
                }
            });
        Ok(out)
    }

    /// Per point and vertex (point-major): the barycentric weights.
    pub(crate) fn barycentric(&self) -> &[f32] {
        &self.bary
    }

    /// Splats point-major `q` (`vp` = a multiple of [`LANES`] values per point) with
    /// per-(point, vertex) `weights` and blurs the result, leaving it vertex-major in
    /// `buffers` (each vertex's channel groups contiguous) for [`Self::slice_point`].
    ///
    /// One pass over the points carries every channel group: a point's values, vertices and
    /// weights are read once, not once per group. The splat adds in point order and the blur
    /// is per vertex, so results do not depend on the thread count.
    pub(crate) fn splat_blur(
        &self,
        weights: &[f32],
        q: &[f32],
        vp: usize,
        buffers: &mut ValueBuffers,
    ) {
        let g = vp / LANES;
        let rows = (self.m + 1) * g;
        buffers.values.clear();
        buffers.values.resize(rows, [0.0; LANES]);
        buffers.scratch.resize(rows, [0.0; LANES]);
        self.splat_dispatch(weights, q, g, &mut buffers.values);
        self.blur_dispatch(g, &mut buffers.values, &mut buffers.scratch);
    }

    /// [`Self::splat`] with AVX2 when the CPU has it (the same operations in the same order,
    /// so the same results).
    fn splat_dispatch(&self, weights: &[f32], q: &[f32], g: usize, values: &mut [Row]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, the only requirement of `splat_avx2`.
            unsafe { self.splat_avx2(weights, q, g, values) };
            return;
        }
        self.splat(weights, q, g, values);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn splat_avx2(&self, weights: &[f32], q: &[f32], g: usize, values: &mut [Row]) {
        self.splat(weights, q, g, values);
    }

    /// Adds every point's `g` value rows, weighted, to its vertices' rows, in point order.
    /// Up to four groups (32 labels) the rows live in registers.
    #[inline(always)]
    fn splat(&self, weights: &[f32], q: &[f32], g: usize, values: &mut [Row]) {
        match g {
            1 => self.splat_fixed::<1>(weights, q, values),
            2 => self.splat_fixed::<2>(weights, q, values),
            3 => self.splat_fixed::<3>(weights, q, values),
            4 => self.splat_fixed::<4>(weights, q, values),
            _ => {
                let d1 = self.d + 1;
                let points = q
                    .chunks_exact(g * LANES)
                    .zip(self.offsets.chunks_exact(d1))
                    .zip(weights.chunks_exact(d1));
                for ((src, offsets), weights) in points {
                    for (&o, &w) in offsets.iter().zip(weights) {
                        let o = o as usize * g;
                        for (a, v) in values[o..o + g].iter_mut().zip(src.chunks_exact(LANES)) {
                            axpy(a, w, &row(v));
                        }
                    }
                }
            }
        }
    }

    #[inline(always)]
    fn splat_fixed<const G: usize>(&self, weights: &[f32], q: &[f32], values: &mut [Row]) {
        let d1 = self.d + 1;
        let points = q
            .chunks_exact(G * LANES)
            .zip(self.offsets.chunks_exact(d1))
            .zip(weights.chunks_exact(d1));
        for ((src, offsets), weights) in points {
            let mut v = [[0f32; LANES]; G];
            for (r, s) in v.iter_mut().zip(src.chunks_exact(LANES)) {
                *r = row(s);
            }
            for (&o, &w) in offsets.iter().zip(weights) {
                let o = o as usize * G;
                for (a, v) in values[o..o + G].iter_mut().zip(&v) {
                    axpy(a, w, v);
                }
            }
        }
    }

    /// [`Self::blur`] with AVX2 when the CPU has it (same operations, same results).
    fn blur_dispatch(&self, g: usize, values: &mut Vec<Row>, scratch: &mut Vec<Row>) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, the only requirement of `blur_avx2`.
            unsafe { self.blur_avx2(g, values, scratch) };
            return;
        }
        self.blur(g, values, scratch);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn blur_avx2(&self, g: usize, values: &mut Vec<Row>, scratch: &mut Vec<Row>) {
        self.blur(g, values, scratch);
    }

    /// Blurs the vertex values (`g` rows per vertex) along the d+1 lattice directions in
    /// order 0..=d with [½ 1 ½]; `scratch` is a buffer of the same size. The result is left
    /// in `values`.
    #[inline(always)]
    fn blur(&self, g: usize, values: &mut Vec<Row>, scratch: &mut Vec<Row>) {
        for j in 0..=self.d {
            let nb = &self.neighbours[j * self.m..(j + 1) * self.m];
            let old: &[Row] = values;
            scratch[..g].fill([0.0; LANES]);
            scratch[g..]
                .par_chunks_mut(CHUNK * g)
                .zip(nb.par_chunks(CHUNK))
                .enumerate()
                .for_each(|(c, (rows, nb))| {
                    for (r, (rows, &[n1, n2])) in rows.chunks_exact_mut(g).zip(nb).enumerate() {
                        if let Some(&[p1, p2]) = nb.get(r + BLUR_PREFETCH) {
                            prefetch(&old[p1 as usize * g..][..g]);
                            prefetch(&old[p2 as usize * g..][..g]);
                        }
                        let i = (c * CHUNK + r + 1) * g;
                        let (a, b) = (n1 as usize * g, n2 as usize * g);
                        for (k, out) in rows.iter_mut().enumerate() {
                            let (o, a, b) = (old[i + k], old[a + k], old[b + k]);
                            let mut t = [0.0; LANES];
                            for l in 0..LANES {
                                t[l] = o[l] + 0.5 * (a[l] + b[l]);
                            }
                            *out = t;
                        }
                    }
                });
            std::mem::swap(values, scratch);
        }
    }

    /// Adds point `p`'s slice of the prepared `buffers`, with per-(point, vertex) `weights`,
    /// to `acc` (one row per channel group).
    #[inline(always)]
    pub(crate) fn slice_point(
        &self,
        p: usize,
        weights: &[f32],
        buffers: &ValueBuffers,
        acc: &mut [Row],
    ) {
        let d1 = self.d + 1;
        let g = acc.len();
        let slots = p * d1..(p + 1) * d1;
        for (&o, &w) in self.offsets[slots.clone()].iter().zip(&weights[slots]) {
            let o = o as usize * g;
            for (a, v) in acc.iter_mut().zip(&buffers.values[o..o + g]) {
                axpy(a, w, v);
            }
        }
    }

    /// [`Self::slice_point`] for a fixed number of groups, so that `acc` can stay in
    /// registers.
    #[inline(always)]
    pub(crate) fn slice_point_fixed<const G: usize>(
        &self,
        p: usize,
        weights: &[f32],
        buffers: &ValueBuffers,
        acc: &mut [Row; G],
    ) {
        let d1 = self.d + 1;
        let slots = p * d1..(p + 1) * d1;
        for (&o, &w) in self.offsets[slots.clone()].iter().zip(&weights[slots]) {
            let o = o as usize * G;
            for (a, v) in acc.iter_mut().zip(&buffers.values[o..o + G]) {
                axpy(a, w, v);
            }
        }
    }
}

/// How many vertices ahead the blur asks for its neighbours' rows: they are scattered over
/// the whole vertex array, which outgrows the caches on real photographs.
const BLUR_PREFETCH: usize = 16;

/// Asks the CPU to bring `rows` into the cache (a hint: it never faults).
#[inline(always)]
fn prefetch(rows: &[Row]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let (first, last) = (
            rows.as_ptr().cast::<i8>(),
            rows.as_ptr_range().end.cast::<i8>(),
        );
        // SAFETY: prefetching reads nothing architecturally; both addresses lie within or
        // one past `rows`.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(first);
            _mm_prefetch::<_MM_HINT_T0>(last.wrapping_sub(1));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = rows;
}

/// `LANES` values as a row.
#[inline(always)]
fn row(s: &[f32]) -> Row {
    let mut r = [0.0; LANES];
    r.copy_from_slice(s);
    r
}

/// Working memory of one filtering, reused across mean-field iterations: the vertex values,
/// vertex-major ((m + 1) vertices × groups rows; vertex 0 is the zero "missing vertex"), and
/// a blur buffer of the same size.
#[derive(Default)]
pub(crate) struct ValueBuffers {
    values: Vec<Row>,
    scratch: Vec<Row>,
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
    fn channels_are_filtered_independently() {
        // Ten channels (two groups) of scaled copies of one signal give scaled copies of its
        // filtered signal.
        let (w, h) = (13, 11);
        let lat = Lattice::new(&grid_features(w, h, 2.0), 2).unwrap();
        let sig: Vec<f32> = (0..w * h).map(|i| ((i * 31) % 7) as f32).collect();
        let one = lat.filter(&sig, 1).unwrap();
        let many: Vec<f32> = sig
            .iter()
            .flat_map(|&v| (1..=10).map(move |c| v * c as f32))
            .collect();
        let out = lat.filter(&many, 10).unwrap();
        for (p, row) in out.chunks_exact(10).enumerate() {
            for (c, v) in row.iter().enumerate() {
                let want = one[p] * (c + 1) as f32;
                assert!(
                    (v - want).abs() <= 1e-5 * want.abs().max(1.0),
                    "{v} vs {want}"
                );
            }
        }
    }

    #[test]
    fn rejects_bad_input() {
        assert!(Lattice::new(&[1.0, 2.0, 3.0], 2).is_err());
        assert!(Lattice::new(&[0.0; 9], 9).is_err());
        assert!(Lattice::new(&[f32::NAN, 0.0], 2).is_err());
        assert!(Lattice::new(&[1e9, 0.0], 2).is_err());
        let lat = Lattice::new(&grid_features(4, 4, 1.0), 2).unwrap();
        assert!(lat.filter(&[1.0; 15], 1).is_err());
    }
}
