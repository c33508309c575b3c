//! Activation self-modulation: the alignment loss with reliable activation selection (§2.6).
//!
//! CAM features are resized to the half-resolution superpixel grid, averaged inside each
//! superpixel (the target's spatial structure), max-normalised, and the present classes'
//! maps are pulled towards `T = max(Ā, A·erode([A > T_obj]))`. The gradient reaches the
//! features only through `A` (including its max-normalisation); everything on the target side
//! is computed on detached values on the CPU, as the reference does.

use candle_core::{D, DType, Result, Tensor};
use serde::{Deserialize, Serialize};
use ssc_models::ops::resize::bilinear;

/// Hyper-parameters of the alignment loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AsmConfig {
    /// Object threshold `T_obj` of reliable activation selection.
    pub t_obj: f32,
    /// Side `r` of the square erosion kernel.
    pub erosion_kernel: usize,
    /// Epsilon of the max-normalisation.
    pub norm_eps: f32,
    /// Reliable activation selection on; off = `T = Ā` (the "ASM without RAS" ablation).
    pub reliable_selection: bool,
    /// Reproduce SSC's `alignment_loss` as it behaves when its tensors live on the CPU
    /// (`false`: as on the GPU SSC trains on, and as §2.6 specifies).
    ///
    /// The reference takes `oriv = original_value.detach().cpu().numpy()` and erodes it in
    /// place (`oriv[i] = oriv[i] * region`). On a GPU `.cpu()` copies; on the CPU it returns
    /// the same storage, so the in-place product also overwrites the prediction `A_sel` the
    /// MSE then reads: the loss becomes `mean((A_sel·M − T)²)` while autograd, which never
    /// sees the write, passes the gradient `2(A_sel·M − T)/n` on to `A_sel` unmasked. The
    /// `train-steps` fixture was generated that way (its runtime makes `.cuda()` a no-op);
    /// this switch exists to reproduce it, not to train with.
    #[serde(default)]
    pub reference_cpu_aliasing: bool,
}

impl Default for AsmConfig {
    fn default() -> Self {
        AsmConfig {
            t_obj: 0.3,
            erosion_kernel: 8,
            norm_eps: 1e-5,
            reliable_selection: true,
            reference_cpu_aliasing: false,
        }
    }
}

/// The loss and its intermediates (detached, row-major), for tests and diagnostics.
#[derive(Debug)]
pub struct AsmOutput {
    /// Scalar loss (with gradient to `F`).
    pub loss: Tensor,
    /// `(n, c)` of each selected (present) class, row-major order.
    pub sel_index: Vec<(usize, usize)>,
    /// Superpixel ids at even rows/columns, `[N, h, w]`.
    pub s_half: Vec<u32>,
    /// `Ḡ` `[N, C, h, w]`.
    pub g_bar: Vec<f32>,
    /// `Ā` `[N, C, h, w]`.
    pub a_bar: Vec<f32>,
    /// `R = [A_sel > T_obj]` `[P, h, w]`.
    pub r: Vec<u8>,
    /// `M = erode(R)` `[P, h, w]`.
    pub m: Vec<u8>,
    /// Target `T` `[P, h, w]`.
    pub t: Vec<f32>,
    /// Grid size `(h, w)`.
    pub hw: (usize, usize),
}

/// `max(Z,0) / (max_hw max(Z,0) + eps)` per (n, c) on a `[N, C, h, w]` tensor (with gradient).
///
/// The maximum's gradient is shared evenly between tied positions (PyTorch `amax`
/// semantics). Ties are structural here: bilinear up-sampling clamps at the border, so a
/// border feature is copied to several output positions, and candle's `max` would hand the
/// full gradient to each copy.
fn max_norm(z: &Tensor, eps: f64) -> Result<Tensor> {
    let z = z.relu()?;
    let m = z.detach().max_keepdim(D::Minus1)?.max_keepdim(D::Minus2)?;
    let tied = z.detach().broadcast_eq(&m)?.to_dtype(z.dtype())?;
    let count = tied.sum_keepdim(D::Minus1)?.sum_keepdim(D::Minus2)?;
    let m = (&z * &tied)?
        .sum_keepdim(D::Minus1)?
        .sum_keepdim(D::Minus2)?
        .div(&count)?;
    z.broadcast_div(&(m + eps)?)
}

/// The same normalisation on plain rows of length `hw`.
fn max_norm_rows(z: &[f32], hw: usize, eps: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(z.len());
    for row in z.chunks(hw) {
        let m = row.iter().fold(0f32, |a, &b| a.max(b.max(0.0)));
        out.extend(row.iter().map(|&v| v.max(0.0) / (m + eps)));
    }
    out
}

/// OpenCV-style erosion with a `k×k` all-ones kernel anchored at `(k/2, k/2)`: the window
/// covers offsets `−k/2 … k−1−k/2`; positions outside the image never erode.
pub fn erode(mask: &[u8], h: usize, w: usize, k: usize) -> Vec<u8> {
    let before = (k / 2) as isize;
    let after = k as isize - 1 - before;
    // Separable min filter: rows then columns.
    let mut tmp = vec![0u8; h * w];
    for y in 0..h {
        for x in 0..w {
            let lo = (x as isize - before).max(0) as usize;
            let hi = (x as isize + after).min(w as isize - 1) as usize;
            tmp[y * w + x] = (lo..=hi).map(|i| mask[y * w + i]).min().unwrap_or(1);
        }
    }
    let mut out = vec![0u8; h * w];
    for y in 0..h {
        let lo = (y as isize - before).max(0) as usize;
        let hi = (y as isize + after).min(h as isize - 1) as usize;
        for x in 0..w {
            out[y * w + x] = (lo..=hi).map(|j| tmp[j * w + x]).min().unwrap_or(1);
        }
    }
    out
}

/// The alignment loss of §2.6.
///
/// # Shapes
/// - `f`: `[N, C, H_f, W_f]` pre-ReLU CAM features (with gradient)
/// - `labels`: `N·C` multi-hot values (row-major `[N, C]`)
/// - `superpixels`: `N·H·W` region ids (row-major `[N, H, W]`), `(H, W)` = `sp_hw`; the grid
///   is sampled at even rows and columns (`floor(H/2) × floor(W/2)`)
/// - returns the scalar loss (0 when no class is present) and the detached intermediates
pub fn alignment_loss(
    f: &Tensor,
    labels: &[f32],
    superpixels: &[u32],
    sp_hw: (usize, usize),
    cfg: &AsmConfig,
) -> Result<AsmOutput> {
    let (n, c, _, _) = f.dims4()?;
    let (sh, sw) = sp_hw;
    let (h, w) = (sh / 2, sw / 2);
    let hw = h * w;
    assert_eq!(labels.len(), n * c, "labels must be [N, C]");
    assert_eq!(
        superpixels.len(),
        n * sh * sw,
        "superpixels must be [N, H, W]"
    );

    let s_half: Vec<u32> = (0..n)
        .flat_map(|i| {
            (0..h).flat_map(move |y| {
                (0..w).map(move |x| superpixels[i * sh * sw + 2 * y * sw + 2 * x])
            })
        })
        .collect();

    let y = Tensor::from_slice(labels, (n, c, 1, 1), f.device())?.to_dtype(f.dtype())?;
    let g = bilinear(f, h, w)?.broadcast_mul(&y)?;
    let a = max_norm(&g, cfg.norm_eps as f64)?;

    // Superpixel averages of the raw features, on detached values.
    let g_vals: Vec<f32> = g.detach().to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let mut g_bar = vec![0f32; n * c * hw];
    for i in 0..n {
        let ids = &s_half[i * hw..(i + 1) * hw];
        let k_max = ids.iter().copied().max().unwrap_or(0) as usize + 1;
        let mut counts = vec![0f32; k_max];
        for &id in ids {
            counts[id as usize] += 1.0;
        }
        for ch in 0..c {
            let base = (i * c + ch) * hw;
            let mut sums = vec![0f64; k_max];
            for (p, &id) in ids.iter().enumerate() {
                sums[id as usize] += g_vals[base + p] as f64;
            }
            let yv = labels[i * c + ch];
            for (p, &id) in ids.iter().enumerate() {
                let mean = sums[id as usize] as f32 / counts[id as usize].max(1e-5);
                g_bar[base + p] = mean * yv;
            }
        }
    }
    let a_bar = max_norm_rows(&g_bar, hw, cfg.norm_eps);

    let sel_index: Vec<(usize, usize)> = (0..n)
        .flat_map(|i| (0..c).map(move |ch| (i, ch)))
        .filter(|&(i, ch)| labels[i * c + ch] > 0.5)
        .collect();
    let p = sel_index.len();
    if p == 0 {
        let zero = (f.sum_all()? * 0.0)?;
        return Ok(AsmOutput {
            loss: zero,
            sel_index,
            s_half,
            g_bar,
            a_bar,
            r: vec![],
            m: vec![],
            t: vec![],
            hw: (h, w),
        });
    }
    let rows: Vec<u32> = sel_index
        .iter()
        .map(|&(i, ch)| (i * c + ch) as u32)
        .collect();
    let rows_t = Tensor::from_vec(rows, p, f.device())?;
    let a_sel = a.reshape((n * c, hw))?.index_select(&rows_t, 0)?;
    let a_sel_vals: Vec<f32> = a_sel
        .detach()
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1()?;

    let mut r = vec![0u8; p * hw];
    let mut m = vec![0u8; p * hw];
    let mut t = vec![0f32; p * hw];
    for (j, &(i, ch)) in sel_index.iter().enumerate() {
        let row = &a_sel_vals[j * hw..(j + 1) * hw];
        let bar = &a_bar[(i * c + ch) * hw..(i * c + ch + 1) * hw];
        let rj: Vec<u8> = row.iter().map(|&v| (v > cfg.t_obj) as u8).collect();
        let mj = erode(&rj, h, w, cfg.erosion_kernel);
        for q in 0..hw {
            let o = if cfg.reliable_selection {
                row[q] * mj[q] as f32
            } else {
                0.0
            };
            t[j * hw + q] = bar[q].max(o);
        }
        r[j * hw..(j + 1) * hw].copy_from_slice(&rj);
        m[j * hw..(j + 1) * hw].copy_from_slice(&mj);
    }
    let target = Tensor::from_slice(&t, (p, hw), f.device())?.to_dtype(a_sel.dtype())?;
    let pred = if cfg.reliable_selection && cfg.reference_cpu_aliasing {
        // The value A_sel·M with A_sel's gradient (see `reference_cpu_aliasing`).
        let eroded_away: Vec<f32> = m.iter().map(|&v| 1.0 - v as f32).collect();
        let eroded_away =
            Tensor::from_vec(eroded_away, (p, hw), f.device())?.to_dtype(a_sel.dtype())?;
        (&a_sel - (a_sel.detach() * eroded_away)?)?
    } else {
        a_sel
    };
    let loss = (pred - target)?.sqr()?.mean_all()?;
    Ok(AsmOutput {
        loss,
        sel_index,
        s_half,
        g_bar,
        a_bar,
        r,
        m,
        t,
        hw: (h, w),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erosion_window_and_border() {
        // A full mask never erodes (border ignored); a single hole erodes the window around it.
        let (h, w, k) = (12, 12, 8);
        assert!(erode(&vec![1; h * w], h, w, k).iter().all(|&v| v == 1));
        let mut m = vec![1u8; h * w];
        m[6 * w + 6] = 0;
        let e = erode(&m, h, w, k);
        for y in 0..h {
            for x in 0..w {
                // Output (y, x) sees rows y−4…y+3: it is 0 iff 6 is in that range.
                let hit = (y as isize - 4..=y as isize + 3).contains(&6)
                    && (x as isize - 4..=x as isize + 3).contains(&6);
                assert_eq!(e[y * w + x], (!hit) as u8, "({y},{x})");
            }
        }
    }
}
