//! Fully connected CRF (Krähenbühl & Koltun) as used by IRN's IR labels (§4.1.1) and the
//! optional stage-2 refinement (§6.6); see §10.4.
//!
//! A port of the dense CRF library that pydensecrf wraps, with the kernel type DIAG_KERNEL,
//! symmetric normalisation and Potts compatibility: permutohedral-lattice filtering
//! ([`lattice`]), normalised Gaussian kernels, mean-field inference ([`DenseCrf`]) and
//! pydensecrf's unary helpers. Parity with pydensecrf2 is tested against the `crf/` fixtures
//! (marginals agree to ~1e-8).
//!
//! Speed: labels are processed in groups of eight (fixed-width SIMD rows). One pass over the
//! pixels splats every group of a kernel into vertex-major rows; the two kernels (and their
//! lattice builds) run side by side; slice + softmax run per pixel block on rayon with the
//! sums in registers up to 32 labels. Results are identical for any thread count.
//! `cargo bench -p ssc-core --bench crf` compares with pydensecrf2.
//!
//! ```no_run
//! # fn main() -> ssc_core::Result<()> {
//! use ssc_core::crf::{CrfParams, DenseCrf, unary_from_labels};
//! let (w, h) = (4, 3);
//! let rgb = vec![128u8; w * h * 3];
//! let labels = vec![0u8; w * h];
//! let mut crf = CrfParams::ir_label().build(w, h, 2, &rgb)?;
//! crf.set_unary_energy(&unary_from_labels(&labels, 2, 0.7, false)?)?;
//! let map: Vec<u8> = crf.map(10);
//! # Ok(()) }
//! ```

mod dense;
mod hash;
mod kernel;
pub mod lattice;
mod params;
mod unary;

pub use dense::DenseCrf;
pub use lattice::Lattice;
pub use params::{BilateralParams, CrfParams, GaussianParams, SOFTMAX_CLIP, argmax_labels};
pub use unary::{unary_from_labels, unary_from_softmax};
