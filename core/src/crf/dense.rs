//! Fully connected CRF with Potts compatibility and mean-field inference (§4.1.1, §6.6), as
//! the library's `DenseCRF2D` with `DIAG_KERNEL` and `NORMALIZE_SYMMETRIC` kernels.
//!
//! `Q₀ = softmax(−U)`; each iteration `Q ← softmax(−U + Σ_m w_m · K̃_m Q)` (the library's
//! `tmp = −U; tmp −= compat·filtered` with Potts `compat = −w`). Internally marginals are
//! pixel-major (the labels of a pixel are contiguous), as in the library, so splatting and
//! slicing touch whole rows; the public API is label-major like pydensecrf.

use rayon::prelude::*;

use super::kernel::NormalizedKernel;
use super::lattice::CHUNK;
use crate::{CoreError, Result};

/// A dense CRF over a `width × height` image with `n_labels` labels.
pub struct DenseCrf {
    width: usize,
    height: usize,
    n_labels: usize,
    /// Pixel-major unary energies (`None`: all zero, as the library).
    unary: Option<Vec<f32>>,
    /// Kernels with their Potts weights.
    pairwise: Vec<(NormalizedKernel, f32)>,
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
    /// Wrong length, or a non-finite energy other than +∞ (which forbids a label).
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
        let l = self.n_labels;
        let mut pm = vec![0f32; unary.len()];
        pm.par_chunks_mut(CHUNK * l)
            .enumerate()
            .for_each(|(c, rows)| {
                for (o, row) in rows.chunks_exact_mut(l).enumerate() {
                    let p = c * CHUNK + o;
                    for (k, v) in row.iter_mut().enumerate() {
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
        check_scale("sxy", sxy)?;
        let w = self.width;
        let features: Vec<f32> = (0..self.height)
            .flat_map(|y| (0..w).flat_map(move |x| [x as f32 / sxy, y as f32 / sxy]))
            .collect();
        self.pairwise
            .push((NormalizedKernel::new(&features, 2)?, compat));
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
        self.pairwise
            .push((NormalizedKernel::new(&features, 5)?, compat));
        Ok(())
    }

    /// Mean-field marginals after `n_iter` iterations, label-major (`n_labels × H × W`).
    pub fn inference(&self, n_iter: usize) -> Vec<f32> {
        let q = self.inference_pixel_major(n_iter);
        let (n, l) = (self.n_pixels(), self.n_labels);
        let mut out = vec![0f32; q.len()];
        out.par_chunks_mut(n).enumerate().for_each(|(k, plane)| {
            for (p, v) in plane.iter_mut().enumerate() {
                *v = q[p * l + k];
            }
        });
        out
    }

    /// The most probable label per pixel after `n_iter` iterations (`H × W`; the first label
    /// wins ties, as Eigen's `maxCoeff` and numpy's `argmax`).
    pub fn map(&self, n_iter: usize) -> Vec<u8> {
        let q = self.inference_pixel_major(n_iter);
        q.chunks_exact(self.n_labels)
            .map(|row| argmax(row) as u8)
            .collect()
    }

    /// Marginals, pixel-major (`H × W × n_labels`).
    pub fn inference_pixel_major(&self, n_iter: usize) -> Vec<f32> {
        let l = self.n_labels;
        let n = self.n_pixels();
        let zeros;
        let unary = match &self.unary {
            Some(u) => u.as_slice(),
            None => {
                zeros = vec![0f32; n * l];
                &zeros
            }
        };
        let mut q = vec![0f32; n * l];
        q.par_chunks_mut(CHUNK * l)
            .zip(unary.par_chunks(CHUNK * l))
            .for_each(|(q, u)| {
                for (q, u) in q.chunks_exact_mut(l).zip(u.chunks_exact(l)) {
                    q.iter_mut().zip(u).for_each(|(q, u)| *q = -u);
                    exp_normalize(q);
                }
            });

        let mut values: Vec<Vec<f32>> = vec![Vec::new(); self.pairwise.len()];
        let mut scratch = Vec::new();
        for _ in 0..n_iter {
            for ((kernel, _), values) in self.pairwise.iter().zip(&mut values) {
                kernel.prepare(&q, l, values, &mut scratch);
            }
            q.par_chunks_mut(CHUNK * l)
                .zip(unary.par_chunks(CHUNK * l))
                .enumerate()
                .for_each(|(c, (q, u))| {
                    let mut acc = vec![0f32; l];
                    for (o, (q, u)) in q.chunks_exact_mut(l).zip(u.chunks_exact(l)).enumerate() {
                        let p = c * CHUNK + o;
                        q.iter_mut().zip(u).for_each(|(q, u)| *q = -u);
                        for ((kernel, compat), values) in self.pairwise.iter().zip(&values) {
                            acc.iter_mut().for_each(|a| *a = 0.0);
                            kernel.slice_add(p, values, l, &mut acc);
                            q.iter_mut().zip(&acc).for_each(|(q, a)| *q += compat * a);
                        }
                        exp_normalize(q);
                    }
                });
        }
        q
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

/// In place: `x ← exp(x − max x) / Σ exp(x − max x)` (the library's `expAndNormalize`).
#[inline]
fn exp_normalize(x: &mut [f32]) {
    let m = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut s = 0.0f32;
    for v in x.iter_mut() {
        *v = (*v - m).exp();
        s += *v;
    }
    x.iter_mut().for_each(|v| *v /= s);
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
