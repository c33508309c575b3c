//! Bilinear resize, `align_corners=False` (spec §0.2; §3.2, §4.2, §6.1), as separable
//! interpolation-matrix products `R_h · X · R_wᵀ`. candle's `upsample_bilinear2d` has no
//! gradient; matmuls have an exact one, and the matrices mirror PyTorch's index arithmetic.

use candle_core::{Result, Tensor};

/// The `[out, in]` interpolation matrix of PyTorch's 1-D linear resize with
/// `align_corners=False` (source coordinate `(o + 0.5)·in/out − 0.5`, clamped at 0; upper
/// neighbour clamped to `in − 1`). One definition serves both sides: `ssc_core::resize`.
pub fn bilinear_matrix(input: usize, output: usize) -> Vec<f64> {
    ssc_core::resize::bilinear_matrix_f64(input, output)
}

fn matrix(input: usize, output: usize, like: &Tensor) -> Result<Tensor> {
    Tensor::from_vec(
        bilinear_matrix(input, output),
        (output, input),
        like.device(),
    )?
    .to_dtype(like.dtype())
}

/// Bilinear resize of an NCHW tensor to `out_h × out_w`, equal to
/// `F.interpolate(x, size, mode="bilinear", align_corners=False)`; differentiable.
///
/// # Shapes
/// `x`: `[N, C, H, W]` → `[N, C, out_h, out_w]`.
///
/// # Errors
/// When `x` is not 4-D or a size is 0.
pub fn bilinear(x: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    if out_h == 0 || out_w == 0 || h == 0 || w == 0 {
        candle_core::bail!("bilinear: cannot resize {h}×{w} to {out_h}×{out_w}");
    }
    if (h, w) == (out_h, out_w) {
        return Ok(x.clone());
    }
    let rw_t = matrix(w, out_w, x)?.t()?;
    let rh_t = matrix(h, out_h, x)?.t()?;
    // Both products as plain 2-D matmuls (no batched broadcast): X·R_wᵀ over rows, then the
    // same along H on the transposed planes, (R_h·Y)ᵀ = Yᵀ·R_hᵀ.
    let y = x.contiguous()?.reshape((n * c * h, w))?.matmul(&rw_t)?;
    let y = y
        .reshape((n * c, h, out_w))?
        .transpose(1, 2)?
        .contiguous()?;
    let y = y.reshape((n * c * out_w, h))?.matmul(&rh_t)?;
    y.reshape((n, c, out_w, out_h))?
        .transpose(2, 3)?
        .contiguous()
}
