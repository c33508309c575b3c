//! The IRN random walk (§4.7 step 4, §10.4) by the sparse route.
//!
//! The reference builds the dense `n×n` transition matrix and squares it `exp_times` times.
//! Here the row-stochastic `P = D⁻¹A^{∘β}` is applied `2^exp_times` times as a fixed stencil:
//! the self-loop plus, for every direction `d` of the [`PathIndex`], the pair `(p, p+d)` and
//! its mirror `(p, p−d)` (≤ 69 neighbours for R = 5). Only pairs with both ends inside the
//! `h×w` grid exist, exactly those that survive the reference's pad-then-crop (§4.7a–c): the
//! padding only decides which pairs are kept, and a kept pair's path lies in the grid.
//!
//! Layout, chosen for speed on one core: scores and weights live on a grid padded by
//! `r_f = R − 1` zero cells on every side, so every stencil access is in bounds and the inner
//! loop is one branch-free pass per (direction, class) over a contiguous range that the
//! compiler vectorises across pixels. Only the `A^β` weights of the forward directions are
//! stored (the mirror pair reads the same plane shifted back by `d`), halving memory; `D⁻¹`
//! is applied once per step. Memory is `(n_directions + 1 + 2K)` floats per padded pixel.
//!
//! With many classes (from [`INTERLEAVE_MIN`]) a second layout wins: each cell holds all its
//! classes side by side (padded to a multiple of 8), so one weight serves every class of a
//! pixel and each neighbour read is whole, aligned vectors. The planar layout reloads the
//! weights once per class and reads neighbours at unaligned offsets. At 21 classes on the VOC
//! grid the interleaved layout takes 0.6–0.7 of the planar time; with 3 it takes twice as
//! long (`cargo bench --bench randomwalk -- routes`). Both sum each output's terms in the same
//! order, so the choice never changes a bit of the result.
//!
//! Precision: weights and scores are f32 and so is the accumulation. On the fixture the walk's
//! output differs from the f64 golden by 1.8e-5 (PyTorch's own f32 path: 1.5e-5), well inside
//! the 1e-4 tolerance, so f64 accumulation (half the SIMD width) is not needed.

use std::sync::OnceLock;

use super::affinity::{check_len, path_max};
use super::paths::PathIndex;
use crate::{CoreError, Result};

/// Parameters of the walk (§4.7 step 4).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WalkParams {
    /// Path radius `R` (IRN: 5).
    pub radius: usize,
    /// Exponent applied element-wise to the affinities (IRN: 10).
    pub beta: f32,
    /// The walk takes `2^exp_times` steps (IRN: 8 → 256).
    pub exp_times: u32,
}

impl WalkParams {
    /// IRN's inference setting: R = 5, β = 10, exp_times = 8.
    pub fn irn() -> Self {
        WalkParams {
            radius: 5,
            beta: 10.0,
            exp_times: 8,
        }
    }

    /// Number of applications of `P`: `2^exp_times`.
    pub fn steps(&self) -> Result<usize> {
        if self.exp_times > 30 {
            return Err(CoreError::Invalid(format!(
                "exp_times {} is too large (at most 30)",
                self.exp_times
            )));
        }
        Ok(1usize << self.exp_times)
    }
}

impl Default for WalkParams {
    fn default() -> Self {
        Self::irn()
    }
}

/// Pixels per chunk of [`Transition::step`]: 32 sums fit in the vector registers (two AVX-512
/// or four AVX2 registers).
const WALK_CHUNK: usize = 32;

/// Lanes of the class-interleaved route: classes are padded to a multiple of one AVX2
/// register.
pub const LANES: usize = 8;

/// Classes from which a group takes the class-interleaved route: below it the padding to
/// [`LANES`] wastes more than the route saves (measured by `cargo bench --bench randomwalk`).
pub const INTERLEAVE_MIN: usize = 7;

/// The most classes walked together (four registers of sums per pixel); more are walked in
/// groups of this many and a last, smaller one.
pub const MAX_GROUP: usize = 32;

/// How [`Transition::propagate_by`] lays out the classes (the results are the same bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkRoute {
    /// Planar below [`INTERLEAVE_MIN`] classes per group, interleaved from there.
    Auto,
    /// One padded plane per class.
    Planar,
    /// Each pixel's classes side by side.
    Interleaved,
}

/// Defines a method that runs `$plain` compiled for AVX-512F or AVX2 when the CPU has them
/// (checked at run time), else as the crate was built. The wrappers only widen the instruction
/// set: the same operations run in the same order (no fused multiply-add is introduced), so
/// every dispatch target gives the same bits.
macro_rules! simd_dispatch {
    ($(#[$doc:meta])* fn $name:ident$(<$($g:ident),*>)?(&self, $($arg:ident: $ty:ty),*) => $plain:ident) => {
        $(#[$doc])*
        fn $name$(<$(const $g: usize),*>)?(&self, $($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512$(<$(const $g: usize),*>)?(t: &Transition, $($arg: $ty),*) {
                    t.$plain$(::<$($g),*>)?($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                fn avx2$(<$(const $g: usize),*>)?(t: &Transition, $($arg: $ty),*) {
                    t.$plain$(::<$($g),*>)?($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports AVX-512F, the only requirement of `avx512`.
                    unsafe { avx512$(::<$($g),*>)?(self, $($arg),*) };
                    return;
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2, the only requirement of `avx2`.
                    unsafe { avx2$(::<$($g),*>)?(self, $($arg),*) };
                    return;
                }
            }
            self.$plain$(::<$($g),*>)?($($arg),*);
        }
    };
}

/// The sparse transition operator `P = D⁻¹A^{∘β}` of one `h×w` boundary map.
///
/// Immutable once built, so one operator can be shared across threads; each
/// [`propagate`](Self::propagate) call owns its buffers.
#[derive(Debug, Clone)]
pub struct Transition {
    h: usize,
    w: usize,
    margin: usize,
    wp: usize,
    np: usize,
    /// Flat padded offset of each forward direction.
    offsets: Vec<usize>,
    /// Each forward direction as (dy, dx).
    dirs: Vec<(isize, isize)>,
    /// `[n_directions × np]`: `aff(p, p+d)^β` at `p`, 0 where `p` or `p+d` is off the grid.
    weights: Vec<f32>,
    /// The weights again, chunk by chunk for [`Self::step`]: for every full chunk of
    /// [`WALK_CHUNK`] pixels from `lo` and every direction, its forward weights then its
    /// mirror weights, so that one chunk's weights are one contiguous run. Built on first use
    /// (walks whose every class group takes the interleaved route never need it).
    chunked: OnceLock<Vec<f32>>,
    /// The weights pixel by pixel for the class-interleaved route ([`Self::walk_interleaved`]):
    /// for every pixel from `lo` to `hi` and every direction, its forward then its mirror
    /// weight. Built on first use (only walks of many classes take that route).
    interleaved: OnceLock<Vec<f32>>,
    /// `1 / D[p]` on the grid, 0 on the padding (keeps the padding at exactly 0).
    inv_deg: Vec<f32>,
    /// Processed flat range: first to one past the last grid pixel.
    lo: usize,
    hi: usize,
}

impl Transition {
    /// Builds `P` from the boundary map `edge` (`h×w`, row-major, values in [0, 1]).
    pub fn new(edge: &[f32], h: usize, w: usize, index: &PathIndex, beta: f32) -> Result<Self> {
        check_len(edge, h, w)?;
        if let Some(v) = edge.iter().find(|v| !(0.0..=1.0).contains(*v)) {
            return Err(CoreError::Invalid(format!(
                "boundary map value {v} outside [0, 1]"
            )));
        }
        if !(beta.is_finite() && beta > 0.0) {
            return Err(CoreError::Invalid(format!(
                "beta must be positive, got {beta}"
            )));
        }
        let m = index.r_f();
        let (wp, hp) = (w + 2 * m, h + 2 * m);
        let np = wp * hp;
        let at = |i: usize, j: usize| (i + m) * wp + j + m;
        let nd = index.n_directions();
        // IRN's β is a small integer (10): repeated multiplication in f64 is within an f64
        // rounding or two of `powf` (invisible after the cast to f32) at a fraction of its cost,
        // which was most of the operator build.
        let int_beta = (beta.fract() == 0.0 && beta <= 64.0).then_some(beta as i32);
        let pow = |a: f64| match int_beta {
            Some(b) => a.powi(b),
            None => a.powf(f64::from(beta)),
        };
        let mut offsets = Vec::with_capacity(nd);
        let mut weights = vec![0.0f32; nd * np];
        let mut deg = vec![0.0f64; np];
        for (k, &(dy, dx)) in index.directions().iter().enumerate() {
            // dy ≥ 0 and (dy, dx) > (0, 0) for every IRN direction, so the offset is positive.
            offsets.push((dy * wp as isize + dx) as usize);
            let plane = &mut weights[k * np..(k + 1) * np];
            for i in 0..h {
                let y = i as isize + dy;
                if y >= h as isize {
                    break;
                }
                for j in 0..w {
                    let x = j as isize + dx;
                    if x < 0 || x >= w as isize {
                        continue;
                    }
                    let aff = 1.0 - f64::from(path_max(edge, w, i, j, index.path(k)));
                    let a = pow(aff);
                    plane[at(i, j)] = a as f32;
                    deg[at(i, j)] += a;
                    deg[at(y as usize, x as usize)] += a;
                }
            }
        }
        let mut inv_deg = vec![0.0f32; np];
        for i in 0..h {
            for j in 0..w {
                // The self-loop (A[p,p] = 1) makes every degree ≥ 1.
                inv_deg[at(i, j)] = (1.0 / (1.0 + deg[at(i, j)])) as f32;
            }
        }
        let (lo, hi) = (at(0, 0), at(h - 1, w - 1) + 1);
        Ok(Transition {
            h,
            w,
            margin: m,
            wp,
            np,
            offsets,
            dirs: index.directions().to_vec(),
            weights,
            chunked: OnceLock::new(),
            interleaved: OnceLock::new(),
            inv_deg,
            lo,
            hi,
        })
    }

    /// The weights chunk by chunk (see the `chunked` field), built on first use.
    fn chunked(&self) -> &[f32] {
        self.chunked.get_or_init(|| {
            let nd = self.offsets.len();
            let full = (self.hi - self.lo) / WALK_CHUNK;
            let mut chunked = Vec::with_capacity(full * nd * 2 * WALK_CHUNK);
            for ci in 0..full {
                let p0 = self.lo + ci * WALK_CHUNK;
                for (d, &off) in self.offsets.iter().enumerate() {
                    let plane = &self.weights[d * self.np..(d + 1) * self.np];
                    chunked.extend_from_slice(&plane[p0..p0 + WALK_CHUNK]);
                    chunked.extend_from_slice(&plane[p0 - off..p0 - off + WALK_CHUNK]);
                }
            }
            chunked
        })
    }

    /// Grid size `(h, w)`.
    pub fn size(&self) -> (usize, usize) {
        (self.h, self.w)
    }

    /// `P` as (row, column, value) triplets over the `h×w` grid's row-major pixel ids, the
    /// self-loops included: the same operator for a general sparse library (the PyTorch peer
    /// of `cargo bench --bench randomwalk`).
    pub fn triplets(&self) -> (Vec<u32>, Vec<u32>, Vec<f32>) {
        let (h, w, m) = (self.h, self.w, self.margin);
        let at = |i: usize, j: usize| (i + m) * self.wp + j + m;
        let (mut rows, mut cols, mut vals) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..h {
            for j in 0..w {
                let p = (i * w + j) as u32;
                rows.push(p);
                cols.push(p);
                vals.push(self.inv_deg[at(i, j)]);
            }
        }
        for (d, &(dy, dx)) in self.dirs.iter().enumerate() {
            let plane = &self.weights[d * self.np..(d + 1) * self.np];
            for i in 0..h {
                let y = i as isize + dy;
                if y >= h as isize {
                    break;
                }
                for j in 0..w {
                    let x = j as isize + dx;
                    if x < 0 || x >= w as isize {
                        continue;
                    }
                    let (y, x) = (y as usize, x as usize);
                    let a = plane[at(i, j)];
                    let (p, q) = ((i * w + j) as u32, (y * w + x) as u32);
                    rows.extend([p, q]);
                    cols.extend([q, p]);
                    vals.extend([self.inv_deg[at(i, j)] * a, self.inv_deg[at(y, x)] * a]);
                }
            }
        }
        (rows, cols, vals)
    }

    /// Applies `P` `steps` times to the `k` score maps `scores` (`k×h×w`, row-major), all
    /// classes at once; returns `k×h×w`.
    ///
    /// The classes never mix, so they are walked in groups of at most [`MAX_GROUP`], each by
    /// the route that suits its size: below [`INTERLEAVE_MIN`] classes the planar route (one
    /// plane per class), from there the class-interleaved one (each pixel's classes side by
    /// side). Both sum every output's terms in the same order, so the result does not depend
    /// on the route or the grouping (bit-identical, tested).
    pub fn propagate(&self, scores: &[f32], k: usize, steps: usize) -> Result<Vec<f32>> {
        self.propagate_by(scores, k, steps, WalkRoute::Auto)
    }

    /// [`Self::propagate`] by a chosen route (for benchmarks and tests: every route gives the
    /// same bits).
    pub fn propagate_by(
        &self,
        scores: &[f32],
        k: usize,
        steps: usize,
        route: WalkRoute,
    ) -> Result<Vec<f32>> {
        let n = self.h * self.w;
        if scores.len() != k * n {
            return Err(CoreError::Invalid(format!(
                "score maps have {} values, expected {k}×{}×{}",
                scores.len(),
                self.h,
                self.w
            )));
        }
        let mut out = vec![0.0f32; k * n];
        // Wider groups amortise each weight over more classes, so full groups first.
        for (part, res) in scores
            .chunks(MAX_GROUP * n.max(1))
            .zip(out.chunks_mut(MAX_GROUP * n.max(1)))
        {
            let g = part.len() / n.max(1);
            let interleave = match route {
                WalkRoute::Auto => g >= INTERLEAVE_MIN,
                WalkRoute::Planar => false,
                WalkRoute::Interleaved => true,
            };
            if interleave {
                self.walk_interleaved(part, g, steps, res);
            } else {
                self.walk_planar(part, g, steps, res);
            }
        }
        Ok(out)
    }

    /// The planar route: `k` padded planes, stepped by [`Self::step`].
    fn walk_planar(&self, scores: &[f32], k: usize, steps: usize, out: &mut [f32]) {
        let n = self.h * self.w;
        let mut cur = vec![0.0f32; k * self.np];
        let mut next = vec![0.0f32; k * self.np];
        for c in 0..k {
            for i in 0..self.h {
                let dst = c * self.np + (i + self.margin) * self.wp + self.margin;
                let src = c * n + i * self.w;
                cur[dst..dst + self.w].copy_from_slice(&scores[src..src + self.w]);
            }
        }
        let chunked = self.chunked();
        for _ in 0..steps {
            self.step(&cur, &mut next, k, chunked);
            std::mem::swap(&mut cur, &mut next);
        }
        for c in 0..k {
            for i in 0..self.h {
                let src = c * self.np + (i + self.margin) * self.wp + self.margin;
                let dst = c * n + i * self.w;
                out[dst..dst + self.w].copy_from_slice(&cur[src..src + self.w]);
            }
        }
    }

    /// The class-interleaved route: one padded plane whose every cell holds the `k` classes
    /// side by side, padded with zeros to a multiple of [`LANES`].
    ///
    /// With many classes the planar route reloads each weight once per class and reads every
    /// neighbour at an unaligned offset; here one weight serves all the classes of a pixel
    /// and each neighbour's classes are whole, aligned vectors: about half the loads per term.
    fn walk_interleaved(&self, scores: &[f32], k: usize, steps: usize, out: &mut [f32]) {
        match k.div_ceil(LANES) * LANES {
            8 => self.walk_il::<8>(scores, k, steps, out),
            16 => self.walk_il::<16>(scores, k, steps, out),
            24 => self.walk_il::<24>(scores, k, steps, out),
            32 => self.walk_il::<32>(scores, k, steps, out),
            kp => unreachable!("a group of {kp} lanes (at most MAX_GROUP classes)"),
        }
    }

    fn walk_il<const KP: usize>(&self, scores: &[f32], k: usize, steps: usize, out: &mut [f32]) {
        let n = self.h * self.w;
        let weights = self.interleaved.get_or_init(|| {
            let nd = self.offsets.len();
            let mut v = Vec::with_capacity((self.hi - self.lo) * nd * 2);
            for p in self.lo..self.hi {
                for (d, &off) in self.offsets.iter().enumerate() {
                    let plane = &self.weights[d * self.np..(d + 1) * self.np];
                    v.extend([plane[p], plane[p - off]]);
                }
            }
            v
        });
        let mut cur = vec![0.0f32; KP * self.np];
        let mut next = vec![0.0f32; KP * self.np];
        for c in 0..k {
            for i in 0..self.h {
                let row = (i + self.margin) * self.wp + self.margin;
                for j in 0..self.w {
                    cur[(row + j) * KP + c] = scores[c * n + i * self.w + j];
                }
            }
        }
        for _ in 0..steps {
            self.step_il::<KP>(&cur, &mut next, weights);
            std::mem::swap(&mut cur, &mut next);
        }
        for c in 0..k {
            for i in 0..self.h {
                let row = (i + self.margin) * self.wp + self.margin;
                for j in 0..self.w {
                    out[c * n + i * self.w + j] = cur[(row + j) * KP + c];
                }
            }
        }
    }

    simd_dispatch! {
        /// One application of `P` on the interleaved layout (dispatch as [`Self::step`]).
        fn step_il<KP>(&self, src: &[f32], dst: &mut [f32], weights: &[f32]) => step_il_plain
    }

    #[inline(always)]
    fn step_il_plain<const KP: usize>(&self, src: &[f32], dst: &mut [f32], weights: &[f32]) {
        let row = 2 * self.offsets.len();
        let reach = self.offsets.iter().copied().max().unwrap_or(0);
        // What makes the unchecked reads below sound: the margin puts every neighbour p ± d
        // of a processed pixel inside the padded plane.
        assert!(self.lo >= reach && self.hi + reach <= self.np);
        assert!(src.len() == KP * self.np && dst.len() == KP * self.np);
        assert!(weights.len() == (self.hi - self.lo) * row);
        let mut p = self.lo;
        // Two pixels at a time: their sums stay in registers, and their chains of dependent
        // additions overlap. (Four pixels at 8 lanes, and column strips that keep the rows
        // within reach in the first-level cache, measured no faster.)
        while p + 2 <= self.hi {
            // SAFETY: p, p + 1 ∈ [lo, hi) and the asserts above.
            unsafe { self.pixels_il::<KP, 2>(src, dst, p, weights) };
            p += 2;
        }
        if p < self.hi {
            // SAFETY: as above.
            unsafe { self.pixels_il::<KP, 1>(src, dst, p, weights) };
        }
    }

    /// The `B` pixels from `p0` on the interleaved layout, every class at once:
    /// `o = inv_deg · (s + Σ_d a·x + b·y)`, the terms in [`Self::chunk`]'s order.
    ///
    /// Reads are unchecked: at a few instructions per pixel and direction, index arithmetic
    /// and bounds checks cost as much as the arithmetic itself.
    ///
    /// # Safety
    /// `lo ≤ p0`, `p0 + B ≤ hi`, and the conditions [`Self::step_il_plain`] asserts.
    #[inline(always)]
    unsafe fn pixels_il<const KP: usize, const B: usize>(
        &self,
        src: &[f32],
        dst: &mut [f32],
        p0: usize,
        weights: &[f32],
    ) {
        let row = 2 * self.offsets.len();
        let s = src.as_ptr();
        let mut acc = [[0.0f32; KP]; B];
        // SAFETY (all reads): every index is p·KP + l or (p ± d)·KP + l with p ∈ [lo, hi),
        // l < KP and p ± d ∈ [0, np) (the caller's conditions), or a weight of a pixel in
        // [lo, hi).
        unsafe {
            let wp = weights.as_ptr().add((p0 - self.lo) * row);
            for (b, acc) in acc.iter_mut().enumerate() {
                let x = s.add((p0 + b) * KP);
                for (l, a) in acc.iter_mut().enumerate() {
                    *a = *x.add(l);
                }
            }
            for (d, &off) in self.offsets.iter().enumerate() {
                let offk = off * KP;
                for (b, acc) in acc.iter_mut().enumerate() {
                    let x = s.add((p0 + b) * KP);
                    let (xf, xb) = (x.add(offk), x.sub(offk));
                    let wf = *wp.add(b * row + 2 * d);
                    let wb = *wp.add(b * row + 2 * d + 1);
                    for (l, a) in acc.iter_mut().enumerate() {
                        *a += wf * *xf.add(l) + wb * *xb.add(l);
                    }
                }
            }
        }
        for (b, acc) in acc.iter().enumerate() {
            let inv = self.inv_deg[p0 + b];
            let o = &mut dst[(p0 + b) * KP..(p0 + b + 1) * KP];
            for (o, a) in o.iter_mut().zip(acc) {
                *o = a * inv;
            }
        }
    }

    simd_dispatch! {
        /// One application `dst = P·src` on the padded planar layout.
        ///
        /// The pixels go in chunks of [`WALK_CHUNK`]: for each class, a chunk's sums stay in
        /// registers while every direction adds its two terms, and are written once; the chunk's
        /// weights (all directions, a few KB) stay in the first-level cache across the classes.
        /// A pass direction by direction over whole planes read and wrote every output once per
        /// direction, which bounded the walk. Each output still sums its terms in the same order
        /// (self, then the directions in order, `a·x + b·y` each, no fused multiply-add), so the
        /// result is bit-identical to that pass.
        fn step(&self, src: &[f32], dst: &mut [f32], k: usize, chunked: &[f32]) => step_plain
    }

    #[inline(always)]
    fn step_plain(&self, src: &[f32], dst: &mut [f32], k: usize, chunked: &[f32]) {
        let (lo, hi, np) = (self.lo, self.hi, self.np);
        let mut p0 = lo;
        while p0 < hi {
            let len = WALK_CHUNK.min(hi - p0);
            for c in 0..k {
                let s = &src[c * np..(c + 1) * np];
                let o = &mut dst[c * np + p0..c * np + p0 + len];
                if len == WALK_CHUNK {
                    self.chunk::<WALK_CHUNK>(
                        s,
                        p0,
                        &chunked[(p0 - lo) / WALK_CHUNK * self.offsets.len() * 2 * WALK_CHUNK..],
                        o,
                    );
                } else {
                    self.chunk_tail(s, p0, o);
                }
            }
            p0 += len;
        }
    }

    /// The `N` outputs from `p0` (a full chunk whose weights begin `wc`) of one class:
    /// `o = inv_deg · (s + Σ_d a·x + b·y)`.
    #[inline(always)]
    fn chunk<const N: usize>(&self, s: &[f32], p0: usize, wc: &[f32], o: &mut [f32]) {
        let wc = &wc[..self.offsets.len() * 2 * N];
        let mut acc: [f32; N] = s[p0..p0 + N].try_into().expect("a full chunk");
        for (w, &off) in wc.chunks_exact(2 * N).zip(&self.offsets) {
            // Forward pair (p, p+d) uses the weight stored at p; the mirror pair (p, p−d)
            // the weight stored at p−d. The margin keeps p ± d inside the padded plane.
            let (wf, wb) = (&w[..N], &w[N..]);
            let (xf, xb) = (&s[p0 + off..p0 + off + N], &s[p0 - off..p0 - off + N]);
            for l in 0..N {
                acc[l] += wf[l] * xf[l] + wb[l] * xb[l];
            }
        }
        let inv = &self.inv_deg[p0..p0 + N];
        for l in 0..N {
            o[l] = acc[l] * inv[l];
        }
    }

    /// [`Self::chunk`] for the last, shorter chunk.
    fn chunk_tail(&self, s: &[f32], p0: usize, o: &mut [f32]) {
        let n = o.len();
        o.copy_from_slice(&s[p0..p0 + n]);
        for (d, &off) in self.offsets.iter().enumerate() {
            let plane = &self.weights[d * self.np..(d + 1) * self.np];
            for (l, o) in o.iter_mut().enumerate() {
                let p = p0 + l;
                *o += plane[p] * s[p + off] + plane[p - off] * s[p - off];
            }
        }
        for (o, &inv) in o.iter_mut().zip(&self.inv_deg[p0..p0 + n]) {
            *o *= inv;
        }
    }
}

/// The walk of §4.7 step 4: `x̃ = cam ⊙ (1 − B)`, then `P^{2^exp_times} x̃`.
///
/// `cam` is `k×h×w` (the present classes' stride-4 CAMs), `edge` the boundary map `B`
/// (`h×w`). Returns `rw` (`k×h×w`), not yet upsampled or normalised.
pub fn random_walk(
    cam: &[f32],
    k: usize,
    h: usize,
    w: usize,
    edge: &[f32],
    params: &WalkParams,
) -> Result<Vec<f32>> {
    let index = PathIndex::new(params.radius)?;
    let op = Transition::new(edge, h, w, &index, params.beta)?;
    if cam.len() != k * h * w {
        return Err(CoreError::Invalid(format!(
            "CAM has {} values, expected {k}×{h}×{w}",
            cam.len()
        )));
    }
    let x: Vec<f32> = cam
        .chunks_exact(h * w)
        .flat_map(|plane| plane.iter().zip(edge).map(|(&c, &b)| c * (1.0 - b)))
        .collect();
    op.propagate(&x, k, params.steps()?)
}

#[cfg(test)]
mod tests {
    use super::super::dense::dense_walk;
    use super::*;
    use crate::rng::Rng;

    fn random_case(h: usize, w: usize, k: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let mut rng = Rng::new(seed);
        let mut edge: Vec<f32> = (0..h * w).map(|_| rng.f32() * 0.3).collect();
        // A vertical ridge so the walk has a boundary to respect.
        for i in 0..h {
            edge[i * w + w / 2] = 0.95;
        }
        let cam = (0..k * h * w).map(|_| rng.f32()).collect();
        (edge, cam)
    }

    /// The chunked step against a pixel-by-pixel pass in the same summation order, over full
    /// chunks and a short last one: bit-identical.
    #[test]
    fn tiled_step_is_bit_identical_to_a_plain_pass() {
        let (h, w, k) = (47, 63, 3);
        let (edge, cam) = random_case(h, w, k, 5);
        let index = PathIndex::new(5).unwrap();
        let op = Transition::new(&edge, h, w, &index, 10.0).unwrap();
        assert!(
            !(op.hi - op.lo).is_multiple_of(WALK_CHUNK),
            "the grid ends in a short chunk"
        );
        let got = op.propagate(&cam, k, 3).unwrap();
        let np = op.np;
        let mut cur = vec![0.0f32; k * np];
        for c in 0..k {
            for i in 0..h {
                for j in 0..w {
                    cur[c * np + (i + op.margin) * op.wp + j + op.margin] =
                        cam[(c * h + i) * w + j];
                }
            }
        }
        for _ in 0..3 {
            let mut next = vec![0.0f32; k * np];
            for c in 0..k {
                for p in op.lo..op.hi {
                    let mut o = cur[c * np + p];
                    for (d, &off) in op.offsets.iter().enumerate() {
                        let plane = &op.weights[d * np..(d + 1) * np];
                        o += plane[p] * cur[c * np + p + off]
                            + plane[p - off] * cur[c * np + p - off];
                    }
                    next[c * np + p] = o * op.inv_deg[p];
                }
            }
            cur = next;
        }
        for c in 0..k {
            for i in 0..h {
                for j in 0..w {
                    let want = cur[c * np + (i + op.margin) * op.wp + j + op.margin];
                    assert_eq!(
                        got[(c * h + i) * w + j].to_bits(),
                        want.to_bits(),
                        "{c} {i} {j}"
                    );
                }
            }
        }
    }

    /// The class-interleaved route, the planar one and the automatic choice give the same
    /// bits for every class count and grouping (one lane group, padded lanes, several groups
    /// with a planar remainder), on a grid that ends in a short chunk and an odd pixel count.
    #[test]
    fn routes_are_bit_identical() {
        let (h, w) = (23, 31);
        let index = PathIndex::new(5).unwrap();
        for k in [
            1,
            3,
            INTERLEAVE_MIN,
            8,
            13,
            21,
            MAX_GROUP,
            MAX_GROUP + 2,
            2 * MAX_GROUP + 9,
        ] {
            let (edge, cam) = random_case(h, w, k, 40 + k as u64);
            let op = Transition::new(&edge, h, w, &index, 10.0).unwrap();
            let planar = op.propagate_by(&cam, k, 5, WalkRoute::Planar).unwrap();
            let il = op.propagate_by(&cam, k, 5, WalkRoute::Interleaved).unwrap();
            let auto = op.propagate(&cam, k, 5).unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&planar), bits(&il), "K {k}: planar vs interleaved");
            assert_eq!(bits(&planar), bits(&auto), "K {k}: planar vs auto");
            // Walking a class alone gives the same bits as walking it among others.
            let n = h * w;
            let last = op.propagate(&cam[(k - 1) * n..], 1, 5).unwrap();
            assert_eq!(
                bits(&last),
                bits(&auto[(k - 1) * n..]),
                "K {k}: last class alone"
            );
        }
    }

    #[test]
    fn triplets_are_the_operator_propagate_applies() {
        let (h, w, k) = (9, 11, 2);
        let (edge, cam) = random_case(h, w, k, 3);
        let index = PathIndex::new(5).unwrap();
        let op = Transition::new(&edge, h, w, &index, 10.0).unwrap();
        let (rows, cols, vals) = op.triplets();
        let n = h * w;
        let mut want = vec![0.0f64; k * n];
        for ((&r, &c), &v) in rows.iter().zip(&cols).zip(&vals) {
            for ch in 0..k {
                want[ch * n + r as usize] += f64::from(v) * f64::from(cam[ch * n + c as usize]);
            }
        }
        let got = op.propagate(&cam, k, 1).unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert!((f64::from(*g) - w).abs() < 1e-5, "{g} vs {w}");
        }
        // Each row of P sums to 1.
        let mut sums = vec![0.0f64; n];
        for (&r, &v) in rows.iter().zip(&vals) {
            sums[r as usize] += f64::from(v);
        }
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
    }

    #[test]
    fn sparse_walk_equals_the_dense_reference() {
        for &(h, w, k, radius, exp_times) in &[
            (7, 9, 2, 5, 4),
            (11, 6, 3, 5, 8),
            (3, 4, 1, 5, 3),
            (9, 8, 2, 3, 5),
        ] {
            let (edge, cam) = random_case(h, w, k, 7 + h as u64);
            let params = WalkParams {
                radius,
                beta: 10.0,
                exp_times,
            };
            let ours = random_walk(&cam, k, h, w, &edge, &params).unwrap();
            let want = dense_walk(&cam, k, h, w, &edge, &params).unwrap();
            let scale = want.iter().fold(0.0f64, |m, &v| m.max(v.abs()));
            let err = ours
                .iter()
                .zip(&want)
                .map(|(&a, &b)| (f64::from(a) - b).abs())
                .fold(0.0, f64::max);
            assert!(scale > 0.0);
            assert!(
                err <= 1e-5 * scale,
                "{h}×{w} R={radius}: err {err}, scale {scale}"
            );
        }
    }

    #[test]
    fn walk_preserves_constants_and_stays_in_range() {
        // P is row-stochastic: a constant map is a fixed point.
        let (h, w) = (6, 8);
        let (edge, _) = random_case(h, w, 1, 3);
        let idx = PathIndex::new(5).unwrap();
        let op = Transition::new(&edge, h, w, &idx, 10.0).unwrap();
        let out = op.propagate(&vec![0.5; h * w], 1, 64).unwrap();
        assert!(out.iter().all(|&v| (v - 0.5).abs() < 1e-5), "{out:?}");
    }

    #[test]
    fn operator_can_be_shared_across_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Transition>();
        let (h, w) = (5, 7);
        let (edge, cam) = random_case(h, w, 2, 11);
        let op = Transition::new(&edge, h, w, &PathIndex::new(5).unwrap(), 10.0).unwrap();
        let one = op.propagate(&cam, 2, 16).unwrap();
        let two = std::thread::scope(|s| s.spawn(|| op.propagate(&cam, 2, 16).unwrap()).join());
        assert_eq!(two.unwrap(), one);
    }

    #[test]
    fn bad_input_is_an_error() {
        let idx = PathIndex::new(5).unwrap();
        assert!(Transition::new(&[0.5; 5], 2, 3, &idx, 10.0).is_err());
        assert!(Transition::new(&[1.5; 6], 2, 3, &idx, 10.0).is_err());
        assert!(Transition::new(&[f32::NAN; 6], 2, 3, &idx, 10.0).is_err());
        let op = Transition::new(&[0.5; 6], 2, 3, &idx, 10.0).unwrap();
        assert!(op.propagate(&[0.0; 7], 1, 1).is_err());
        let params = WalkParams {
            exp_times: 40,
            ..WalkParams::irn()
        };
        assert!(random_walk(&[0.0; 6], 1, 2, 3, &[0.5; 6], &params).is_err());
    }
}
