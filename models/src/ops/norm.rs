//! Normalisation layers written from plain tensor ops so that candle differentiates them
//! (candle's fused `layer_norm` returns no gradient, see `shared/notes/platform.md`):
//! the MUNIT LayerNorm of the reconstruction decoder (§2.4), InstanceNorm (§2.4) and
//! GroupNorm (IRN, §4.2). Statistics are computed in the input's dtype.

use candle_core::{D, Result, Tensor};

/// Per-channel affine `γ_c·x + β_c` for an N×C×… tensor.
fn channel_affine(x: &Tensor, gamma: &Tensor, beta: &Tensor) -> Result<Tensor> {
    let c = x.dim(1)?;
    let mut shape = vec![1, c];
    shape.resize(x.rank(), 1);
    x.broadcast_mul(&gamma.reshape(shape.as_slice())?)?
        .broadcast_add(&beta.reshape(shape.as_slice())?)
}

/// Mean and biased variance over the last dimension (kept).
fn mean_var_last(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let var = x.broadcast_sub(&mean)?.sqr()?.mean_keepdim(D::Minus1)?;
    Ok((mean, var))
}

/// MUNIT-style "LayerNorm" (§2.4): per sample, μ and the **unbiased** σ over all C·H·W
/// elements, `y = (x − μ)/(σ + eps)·γ_c + β_c`.
///
/// # Shapes
/// `x`: N×C×H×W (any rank ≥ 2 works), `gamma`, `beta`: C. Output: as `x`.
pub fn layer_norm_munit(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let n = dims[0];
    let m: usize = dims[1..].iter().product();
    if m < 2 {
        candle_core::bail!("layer_norm_munit: needs at least 2 elements per sample, got {dims:?}");
    }
    let flat = x.reshape((n, m))?;
    let mean = flat.mean_keepdim(1)?;
    let centred = flat.broadcast_sub(&mean)?;
    // unbiased: divide by M − 1
    let std = (centred.sqr()?.sum_keepdim(1)? / (m - 1) as f64)?.sqrt()?;
    let y = centred.broadcast_div(&(std + eps)?)?.reshape(dims)?;
    channel_affine(&y, gamma, beta)
}

/// InstanceNorm2d as PyTorch's defaults (§2.4): per sample and channel over H×W, biased
/// variance, `y = (x − μ)/√(var + eps)`, no affine parameters, no running statistics.
///
/// # Shapes
/// `x`: N×C×H×W. Output: N×C×H×W.
pub fn instance_norm(x: &Tensor, eps: f64) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let flat = x.reshape((n, c, h * w))?;
    let (mean, var) = mean_var_last(&flat)?;
    flat.broadcast_sub(&mean)?
        .broadcast_div(&(var + eps)?.sqrt()?)?
        .reshape((n, c, h, w))
}

/// GroupNorm with affine parameters (§4.2): per sample and group of `C/groups` channels,
/// biased variance, `y = (x − μ)/√(var + eps)·γ_c + β_c`.
///
/// # Shapes
/// `x`: N×C×H×W with C divisible by `groups`; `gamma`, `beta`: C. Output: N×C×H×W.
pub fn group_norm(
    x: &Tensor,
    groups: usize,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    if groups == 0 || !c.is_multiple_of(groups) {
        candle_core::bail!("group_norm: {c} channels cannot be split into {groups} groups");
    }
    let flat = x.reshape((n, groups, (c / groups) * h * w))?;
    let (mean, var) = mean_var_last(&flat)?;
    let y = flat
        .broadcast_sub(&mean)?
        .broadcast_div(&(var + eps)?.sqrt()?)?
        .reshape((n, c, h, w))?;
    channel_affine(&y, gamma, beta)
}
