//! Fully connected CRF with Potts compatibility and mean-field inference (§4.1.1, §6.6), as
//! the library's `DenseCRF2D` with `DIAG_KERNEL` and `NORMALIZE_SYMMETRIC` kernels.
//!
//! `Q₀ = softmax(−U)`; each iteration `Q ← softmax(−U + Σ_m w_m · K̃_m Q)` (the library's
//! `tmp = −U; tmp −= compat·filtered` with Potts `compat = −w`). Internally marginals are
//! pixel-major (the labels of a pixel are contiguous), as in the library, so splatting and
//! slicing touch whole rows; the public API is label-major like pydensecrf.

use rayon::prelude::*;

use super::kernel::NormalizedKernel;
use super::lattice::{CHUNK, LANES, Row, ValueBuffers, padded};
use crate::{CoreError, Result};

/// A dense CRF over a `width × height` image with `n_labels` labels.
pub struct DenseCrf {
    width: usize,
    height: usize,
    n_labels: usize,
    /// Pixel-major unary energies, `padded(n_labels)` per pixel (`None`: all zero, as the
    /// library).
    unary: Option<Vec<f32>>,
    /// Kernels, each scaled by its Potts weight.
    pairwise: Vec<NormalizedKernel>,
}

impl DenseCrf {
    /// An empty CRF (no unary, no pairwise term).
    ///
    /// # Errors
    /// An empty image, or `n_labels` outside 1..=256 (labels are returned as `u8`).
    pub fn new(width: usize, height: usize, n_labels: usize) -> Result<Self> {
        if width == 0 || height == 0 {
            return Err(CoreError::Invalid(format!(
                "dense CRF: empty image {width}×{height}"
            )));
        }
        if !(1..=256).contains(&n_labels) {
            return Err(CoreError::Invalid(format!(
                "dense CRF: {n_labels} labels (1 to 256 supported)"
            )));
        }
        Ok(DenseCrf {
            width,
            height,
            n_labels,
            unary: None,
            pairwise: Vec::new(),
        })
    }

    fn n_pixels(&self) -> usize {
        self.width * self.height
    }

    /// Sets the unary energies, label-major (`n_labels × height × width`).
    ///
    /// # Errors
    /// Wrong length, or a non-finite energy.
    pub fn set_unary_energy(&mut self, unary: &[f32]) -> Result<()> {
        let n = self.n_pixels();
        if unary.len() != self.n_labels * n {
            return Err(CoreError::Invalid(format!(
                "dense CRF: unary has {} values, expected {} labels × {n} pixels",
                unary.len(),
                self.n_labels
            )));
        }
        if let Some(i) = unary
            .iter()
            .position(|u| u.is_nan() || *u == f32::NEG_INFINITY)
        {
            return Err(CoreError::Invalid(format!(
                "dense CRF: unary energy {i} is {}",
                unary[i]
            )));
        }
        let lp = padded(self.n_labels);
        // +∞ in the padding lanes makes their −U + messages −∞, out of every softmax.
        let mut pm = vec![f32::INFINITY; lp * n];
        pm.par_chunks_mut(CHUNK * lp)
            .enumerate()
            .for_each(|(c, rows)| {
                for (o, row) in rows.chunks_exact_mut(lp).enumerate() {
                    let p = c * CHUNK + o;
                    for (k, v) in row[..self.n_labels].iter_mut().enumerate() {
                        *v = unary[k * n + p];
                    }
                }
            });
        self.unary = Some(pm);
        Ok(())
    }

    /// Adds a Gaussian (smoothness) kernel on `(x/sxy, y/sxy)` with Potts weight `compat`.
    ///
    /// # Errors
    /// `sxy` not positive and finite.
    pub fn add_pairwise_gaussian(&mut self, sxy: f32, compat: f32) -> Result<()> {
        let kernel = self.gaussian_kernel(sxy, compat)?;
        self.pairwise.push(kernel);
        Ok(())
    }

    /// Adds a bilateral (appearance) kernel on `(x/sxy, y/sxy, r/srgb, g/srgb, b/srgb)` with
    /// Potts weight `compat`; `rgb` is the `height × width × 3` uint8 image.
    ///
    /// # Errors
    /// Wrong image size, or a scale not positive and finite.
    pub fn add_pairwise_bilateral(
        &mut self,
        sxy: f32,
        srgb: f32,
        rgb: &[u8],
        compat: f32,
    ) -> Result<()> {
        let kernel = self.bilateral_kernel(sxy, srgb, rgb, compat)?;
        self.pairwise.push(kernel);
        Ok(())
    }

    /// Adds both kernels (either may be absent), building them side by side: a lattice
    /// build inserts its vertices sequentially, so two builds keep two threads busy.
    ///
    /// # Errors
    /// As [`Self::add_pairwise_gaussian`] and [`Self::add_pairwise_bilateral`].
    pub(super) fn add_pairwise_pair(
        &mut self,
        gaussian: Option<(f32, f32)>,
        bilateral: Option<(f32, f32, &[u8], f32)>,
    ) -> Result<()> {
        let this = &*self;
        let (g, b) = rayon::join(
            || gaussian.map(|(sxy, compat)| this.gaussian_kernel(sxy, compat)),
            || {
                bilateral
                    .map(|(sxy, srgb, rgb, compat)| this.bilateral_kernel(sxy, srgb, rgb, compat))
            },
        );
        let (g, b) = (g.transpose()?, b.transpose()?);
        self.pairwise.extend(g.into_iter().chain(b));
        Ok(())
    }

    fn gaussian_kernel(&self, sxy: f32, compat: f32) -> Result<NormalizedKernel> {
        check_scale("sxy", sxy)?;
        let w = self.width;
        let features: Vec<f32> = (0..self.height)
            .flat_map(|y| (0..w).flat_map(move |x| [x as f32 / sxy, y as f32 / sxy]))
            .collect();
        NormalizedKernel::new(&features, 2, compat)
    }

    fn bilateral_kernel(
        &self,
        sxy: f32,
        srgb: f32,
        rgb: &[u8],
        compat: f32,
    ) -> Result<NormalizedKernel> {
        check_scale("sxy", sxy)?;
        check_scale("srgb", srgb)?;
        if rgb.len() != 3 * self.n_pixels() {
            return Err(CoreError::Invalid(format!(
                "dense CRF: image has {} bytes, expected {}×{}×3",
                rgb.len(),
                self.height,
                self.width
            )));
        }
        let w = self.width;
        let features: Vec<f32> = (0..self.n_pixels())
            .flat_map(|p| {
                let c = &rgb[3 * p..3 * p + 3];
                [
                    (p % w) as f32 / sxy,
                    (p / w) as f32 / sxy,
                    c[0] as f32 / srgb,
                    c[1] as f32 / srgb,
                    c[2] as f32 / srgb,
                ]
            })
            .collect();
        NormalizedKernel::new(&features, 5, compat)
    }

    /// Mean-field marginals after `n_iter` iterations, label-major (`n_labels × H × W`).
    pub fn inference(&self, n_iter: usize) -> Vec<f32> {
        let q = self.inference_padded(n_iter);
        let (n, lp) = (self.n_pixels(), padded(self.n_labels));
        let mut out = vec![0f32; self.n_labels * n];
        // Block by block, so that the label planes are written from rows still in cache
        // instead of each plane streaming through all of `q`.
        const BLOCK: usize = 512;
        for (b, rows) in q.chunks(BLOCK * lp).enumerate() {
            for (k, plane) in out.chunks_exact_mut(n).enumerate() {
                let plane = &mut plane[b * BLOCK..];
                for (v, row) in plane.iter_mut().zip(rows.chunks_exact(lp)) {
                    *v = row[k];
                }
            }
        }
        out
    }

    /// The most probable label per pixel after `n_iter` iterations (`H × W`; the first label
    /// wins ties, as Eigen's `maxCoeff` and numpy's `argmax`).
    pub fn map(&self, n_iter: usize) -> Vec<u8> {
        let q = self.inference_padded(n_iter);
        q.chunks_exact(padded(self.n_labels))
            .map(|row| argmax(&row[..self.n_labels]) as u8)
            .collect()
    }

    /// Marginals, pixel-major with `padded(n_labels)` entries per pixel (padding is 0).
    fn inference_padded(&self, n_iter: usize) -> Vec<f32> {
        self.inference_padded_with(n_iter, true)
    }

    fn inference_padded_with(&self, n_iter: usize, allow_avx2: bool) -> Vec<f32> {
        let l = self.n_labels;
        let lp = padded(l);
        let n = self.n_pixels();
        let zeros;
        let unary = match &self.unary {
            Some(u) => u.as_slice(),
            None => {
                zeros = (0..n * lp)
                    .map(|i| if i % lp < l { 0.0 } else { f32::INFINITY })
                    .collect::<Vec<f32>>();
                &zeros
            }
        };
        // Q₀ = softmax(−U): an update with no kernel's messages yet.
        let mut q = vec![0f32; n * lp];
        q.par_chunks_mut(CHUNK * lp)
            .zip(unary.par_chunks(CHUNK * lp))
            .enumerate()
            .for_each(|(c, (q, u))| self.update_chunk(c * CHUNK, q, u, &[], allow_avx2));

        let mut buffers: Vec<ValueBuffers> = self
            .pairwise
            .iter()
            .map(|_| ValueBuffers::default())
            .collect();
        for _ in 0..n_iter {
            // The kernels' splats are sequential in point order; running the kernels side by
            // side is what keeps two threads busy.
            self.pairwise
                .par_iter()
                .zip(buffers.par_iter_mut())
                .for_each(|(kernel, buffers)| kernel.prepare(&q, lp, buffers));
            q.par_chunks_mut(CHUNK * lp)
                .zip(unary.par_chunks(CHUNK * lp))
                .enumerate()
                .for_each(|(c, (q, u))| self.update_chunk(c * CHUNK, q, u, &buffers, allow_avx2));
        }
        q
    }

    /// One mean-field update of the pixels from `first` on (`q`, `u`: their rows): with AVX2
    /// when allowed and the CPU has it (about 10 % faster overall; the same operations in the
    /// same order, so the same results).
    fn update_chunk(
        &self,
        first: usize,
        q: &mut [f32],
        u: &[f32],
        buffers: &[ValueBuffers],
        allow_avx2: bool,
    ) {
        #[cfg(target_arch = "x86_64")]
        if allow_avx2 && std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, the only requirement of `update_chunk_avx2`.
            unsafe { self.update_chunk_avx2(first, q, u, buffers) };
            return;
        }
        self.update_chunk_generic(first, q, u, buffers);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn update_chunk_avx2(&self, first: usize, q: &mut [f32], u: &[f32], buffers: &[ValueBuffers]) {
        self.update_chunk_generic(first, q, u, buffers);
    }

    /// `q ← softmax(−U + Σ_m w_m·K̃_m Q)` for each pixel of the chunk (the weights are folded
    /// into the kernels). Up to four channel groups (32 labels) the sums stay in registers.
    #[inline(always)]
    fn update_chunk_generic(
        &self,
        first: usize,
        q: &mut [f32],
        u: &[f32],
        buffers: &[ValueBuffers],
    ) {
        match padded(self.n_labels) / LANES {
            1 => self.update_chunk_fixed::<1>(first, q, u, buffers),
            2 => self.update_chunk_fixed::<2>(first, q, u, buffers),
            3 => self.update_chunk_fixed::<3>(first, q, u, buffers),
            4 => self.update_chunk_fixed::<4>(first, q, u, buffers),
            g => {
                let l = self.n_labels;
                let mut acc: Vec<Row> = vec![[0.0; LANES]; g];
                let rows = q.chunks_exact_mut(g * LANES).zip(u.chunks_exact(g * LANES));
                for (o, (q, u)) in rows.enumerate() {
                    for (a, u) in acc.iter_mut().zip(u.chunks_exact(LANES)) {
                        for k in 0..LANES {
                            a[k] = -u[k];
                        }
                    }
                    for (kernel, buffers) in self.pairwise.iter().zip(buffers) {
                        kernel.slice_add(first + o, buffers, &mut acc);
                    }
                    softmax_rows(&mut acc, l, &mut q[..l]);
                }
            }
        }
    }

    #[inline(always)]
    fn update_chunk_fixed<const G: usize>(
        &self,
        first: usize,
        q: &mut [f32],
        u: &[f32],
        buffers: &[ValueBuffers],
    ) {
        // 1 for the label lanes of the last group, 0 for its padding (which stays 0 in `q`).
        let last = self.n_labels - (G - 1) * LANES;
        let keep: Row = std::array::from_fn(|k| if k < last { 1.0 } else { 0.0 });
        let rows = q.chunks_exact_mut(G * LANES).zip(u.chunks_exact(G * LANES));
        for (o, (q, u)) in rows.enumerate() {
            let mut acc = [[0f32; LANES]; G];
            for (a, u) in acc.iter_mut().zip(u.chunks_exact(LANES)) {
                for k in 0..LANES {
                    a[k] = -u[k];
                }
            }
            for (kernel, buffers) in self.pairwise.iter().zip(buffers) {
                kernel.slice_add_fixed(first + o, buffers, &mut acc);
            }
            softmax_fixed(&mut acc, &keep);
            for (dst, row) in q.chunks_exact_mut(LANES).zip(&acc) {
                dst.copy_from_slice(row);
            }
        }
    }
}

fn check_scale(name: &str, v: f32) -> Result<()> {
    if v > 0.0 && v.is_finite() {
        Ok(())
    } else {
        Err(CoreError::Invalid(format!(
            "dense CRF: {name} must be positive and finite, got {v}"
        )))
    }
}

/// `out ← softmax` of the first `out.len()` values of `rows` (which it overwrites).
#[inline(always)]
fn softmax_rows(rows: &mut [Row], l: usize, out: &mut [f32]) {
    softmax_in_place(rows);
    out.copy_from_slice(&rows.as_flattened()[..l]);
}

/// [`softmax_in_place`] on a fixed number of rows (kept in registers once inlined), with the
/// last row's padding lanes multiplied by `keep`'s zeros so that whole rows can be stored.
#[inline(always)]
fn softmax_fixed<const G: usize>(rows: &mut [Row; G], keep: &Row) {
    softmax_in_place(rows);
    for k in 0..LANES {
        rows[G - 1][k] *= keep[k];
    }
}

/// Softmax over all lanes of `rows`, in place: the library's `expAndNormalize`; the
/// exponentials run on whole fixed-width rows so that they vectorise.
#[inline(always)]
fn softmax_in_place(rows: &mut [Row]) {
    // Padding lanes hold −∞ (the unary padding is +∞), so whole rows can be used: their
    // exponentials (e⁻⁸⁷) vanish next to the row's largest term, 1.
    let mut mx = [f32::NEG_INFINITY; LANES];
    for row in rows.iter() {
        for k in 0..LANES {
            if row[k] > mx[k] {
                mx[k] = row[k];
            }
        }
    }
    let m = mx
        .iter()
        .fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a });
    let mut sums = [0f32; LANES];
    for row in rows.iter_mut() {
        for k in 0..LANES {
            let e = exp_nonpositive(row[k] - m);
            row[k] = e;
            sums[k] += e;
        }
    }
    let s: f32 = sums.iter().sum();
    for row in rows.iter_mut() {
        for v in row.iter_mut() {
            *v /= s;
        }
    }
}

/// `eˣ` for `x ≤ 0` to about 2 ulp (Cephes' `expf` polynomial), in plain arithmetic so that
/// the softmax loop vectorises; the libm call was a tenth of the CRF's time. Inputs below
/// −87 (where `eˣ` is below the smallest normal float) give `e⁻⁸⁷`, which is negligible
/// next to the row's maximum term 1; positive inputs (only in unused padding lanes) give 1.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer (|t| < 2²²).
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 0.0);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // 2ⁿ from the bits of `t`, which are those of ROUND plus n (same exponent): integer
    // operations that vectorise, unlike the saturating `n as i32`.
    let biased = t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127);
    e * f32::from_bits(biased << 23)
}

/// Index of the first maximum.
pub(crate) fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate().skip(1) {
        if v > row[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_pairwise_terms_q_is_the_softmax_of_the_unary() {
        let mut crf = DenseCrf::new(2, 1, 3).unwrap();
        crf.set_unary_energy(&[0.0, 1.0, 1.0, 0.0, 2.0, 2.0])
            .unwrap();
        let q = crf.inference(5);
        // Pixel 0 has energies (0, 1, 2).
        let z0 = 1.0 + (-1f32).exp() + (-2f32).exp();
        assert!((q[0] - 1.0 / z0).abs() < 1e-6);
        assert!((q[2] - (-1f32).exp() / z0).abs() < 1e-6);
        assert!((q[4] - (-2f32).exp() / z0).abs() < 1e-6);
        assert_eq!(crf.map(5), vec![0, 1]);
    }

    #[test]
    fn smoothness_removes_an_isolated_label() {
        // A 12×12 image labelled 0 with one pixel labelled 1: the Gaussian kernel pulls it
        // to its neighbours' label; without the kernel it keeps its own.
        let (w, h) = (12, 12);
        let mut labels = vec![0u8; w * h];
        labels[6 * w + 6] = 1;
        let u = super::super::unary_from_labels(&labels, 2, 0.7, false).unwrap();
        let mut crf = DenseCrf::new(w, h, 2).unwrap();
        crf.set_unary_energy(&u).unwrap();
        assert_eq!(crf.map(5)[6 * w + 6], 1);
        crf.add_pairwise_gaussian(3.0, 3.0).unwrap();
        let q = crf.inference(5);
        assert!(q.iter().all(|v| v.is_finite() && *v >= 0.0 && *v <= 1.0));
        assert_eq!(crf.map(5), vec![0u8; w * h]);
    }

    /// A 40×30 CRF with 11 labels (two channel groups) on a random image and unary.
    fn random_crf() -> DenseCrf {
        let (w, h, l) = (40, 30, 11);
        let mut rng = crate::rng::Rng::new(3);
        let rgb: Vec<u8> = (0..w * h * 3).map(|_| rng.below(256) as u8).collect();
        let unary: Vec<f32> = (0..w * h * l).map(|_| rng.f32() * 3.0).collect();
        let mut crf = DenseCrf::new(w, h, l).unwrap();
        crf.set_unary_energy(&unary).unwrap();
        crf.add_pairwise_gaussian(3.0, 3.0).unwrap();
        crf.add_pairwise_bilateral(20.0, 13.0, &rgb, 10.0).unwrap();
        crf
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| random_crf().inference(5))
        };
        let one = run(1);
        assert_eq!(one, run(3));
        // Marginals are distributions over the 11 labels.
        let n = 40 * 30;
        for p in (0..n).step_by(97) {
            let s: f32 = (0..11).map(|k| one[k * n + p]).sum();
            assert!((s - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn simd_paths_agree_exactly() {
        let crf = random_crf();
        assert_eq!(
            crf.inference_padded_with(4, true),
            crf.inference_padded_with(4, false)
        );
    }

    #[test]
    fn fast_exp_is_accurate() {
        let mut x = 0.0f32;
        while x > -100.0 {
            let (ours, exact) = (exp_nonpositive(x), (x as f64).exp());
            let err = (ours as f64 - exact).abs();
            assert!(
                err <= 4e-7 * exact || err < 1e-37,
                "exp({x}) = {ours}, exact {exact}"
            );
            x -= 0.0173;
        }
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert!(exp_nonpositive(f32::NEG_INFINITY) < 1e-37);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(DenseCrf::new(0, 3, 2).is_err());
        assert!(DenseCrf::new(3, 3, 0).is_err());
        assert!(DenseCrf::new(3, 3, 257).is_err());
        let mut crf = DenseCrf::new(3, 2, 2).unwrap();
        assert!(crf.set_unary_energy(&[0.0; 11]).is_err());
        assert!(crf.set_unary_energy(&[f32::NAN; 12]).is_err());
        assert!(crf.add_pairwise_gaussian(0.0, 3.0).is_err());
        assert!(crf.add_pairwise_bilateral(3.0, 5.0, &[0; 17], 3.0).is_err());
        assert!(
            crf.add_pairwise_bilateral(3.0, f32::NAN, &[0; 18], 3.0)
                .is_err()
        );
    }
}
