//! Max pooling with padding and ceil mode (§2.1 stem max-pool 3×3/s2/p1, VGG 2×2/s2).
//!
//! candle 0.11.1's `max_pool2d` has no padding and its backward is scaled by 1/k² (see
//! `shared/notes/platform.md`), so pooling is built here from differentiable primitives:
//! −∞ padding, then a separable running maximum over shifted, strided views. The running
//! maximum uses `where_cond(v > m, v, m)`, whose gradient goes to exactly one element per
//! window, the first maximum in row-major order — the element PyTorch picks.

use candle_core::{D, DType, Result, Tensor};

/// Output length of a pooling window sweep, PyTorch's rule (dilation 1); `None` when the
/// padded input is shorter than the kernel or the stride is 0.
pub fn pool_out_len(
    len: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    ceil_mode: bool,
) -> Option<usize> {
    if stride == 0 {
        return None;
    }
    let span = (len + 2 * padding).checked_sub(kernel)?;
    let mut out = if ceil_mode {
        span.div_ceil(stride) + 1
    } else {
        span / stride + 1
    };
    // PyTorch: the last window must start inside the input or the left padding.
    if ceil_mode && (out - 1) * stride >= len + padding {
        out -= 1;
    }
    Some(out)
}

/// 2-D max pooling of an NCHW tensor, equal to `torch.nn.functional.max_pool2d(x, kernel,
/// stride, padding, ceil_mode=ceil_mode)` in value and gradient.
///
/// # Shapes
/// `x`: `[N, C, H, W]` → `[N, C, H_out, W_out]` with PyTorch's output-size rule.
///
/// # Errors
/// When `x` is not 4-D, `kernel` or `stride` is 0, `padding > kernel / 2` (PyTorch's limit)
/// or the padded input is smaller than the kernel.
pub fn max_pool2d(
    x: &Tensor,
    kernel: usize,
    stride: usize,
    padding: usize,
    ceil_mode: bool,
) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if kernel == 0 || stride == 0 {
        candle_core::bail!("max_pool2d: kernel ({kernel}) and stride ({stride}) must be > 0");
    }
    if 2 * padding > kernel {
        candle_core::bail!("max_pool2d: padding {padding} exceeds half the kernel {kernel}");
    }
    let (Some(oh), Some(ow)) = (
        pool_out_len(h, kernel, stride, padding, ceil_mode),
        pool_out_len(w, kernel, stride, padding, ceil_mode),
    ) else {
        candle_core::bail!(
            "max_pool2d: input {h}×{w} with padding {padding} is smaller than kernel {kernel}"
        );
    };
    let x = pool_axis(x, 3, kernel, stride, padding, ow)?;
    pool_axis(&x, 2, kernel, stride, padding, oh)
}

/// Max over windows along one axis: pads with −∞ to `out·stride + kernel − 1`, then keeps the
/// running maximum of the `kernel` shifted views, each subsampled by `stride`.
fn pool_axis(
    x: &Tensor,
    axis: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    out: usize,
) -> Result<Tensor> {
    let len = x.dim(axis)?;
    let total = out * stride + kernel - 1;
    let right = total - len - padding;
    let x = pad_neg_inf(x, axis, padding, right)?;
    let mut best: Option<Tensor> = None;
    for k in 0..kernel {
        let v = strided(&x.narrow(axis, k, out * stride)?, axis, stride, out)?;
        best = Some(match best {
            None => v,
            Some(m) => v.gt(&m)?.where_cond(&v, &m)?,
        });
    }
    best.ok_or_else(|| candle_core::Error::Msg("max_pool2d: empty kernel".into()))
}

/// Every `stride`-th element along `axis` of a tensor whose `axis` length is `out·stride`.
fn strided(x: &Tensor, axis: usize, stride: usize, out: usize) -> Result<Tensor> {
    if stride == 1 {
        return Ok(x.clone());
    }
    let mut dims = x.dims().to_vec();
    dims[axis] = out;
    dims.insert(axis + 1, stride);
    x.contiguous()?
        .reshape(dims)?
        .narrow(axis + 1, 0, 1)?
        .squeeze(axis + 1)
}

fn pad_neg_inf(x: &Tensor, axis: usize, left: usize, right: usize) -> Result<Tensor> {
    if left == 0 && right == 0 {
        return Ok(x.clone());
    }
    let block = |n: usize| -> Result<Tensor> {
        let mut dims = x.dims().to_vec();
        dims[axis] = n;
        Tensor::full(f64::NEG_INFINITY, dims, x.device())?.to_dtype(x.dtype())
    };
    let mut parts = Vec::with_capacity(3);
    if left > 0 {
        parts.push(block(left)?);
    }
    parts.push(x.clone());
    if right > 0 {
        parts.push(block(right)?);
    }
    Tensor::cat(&parts, axis)
}

/// Global max over H×W per (n, c), keeping dims: `[N, C, H, W]` → `[N, C, 1, 1]`.
/// Its gradient goes to the maxima (candle's reduction rule).
pub fn global_max_pool(x: &Tensor) -> Result<Tensor> {
    x.max_keepdim(D::Minus1)?.max_keepdim(D::Minus2)
}

/// Global mean over H×W per (n, c): `[N, C, H, W]` → `[N, C]`.
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    let x = if x.dtype() == DType::F16 || x.dtype() == DType::BF16 {
        x.to_dtype(DType::F32)?
    } else {
        x.clone()
    };
    x.mean(D::Minus1)?.mean(D::Minus1)
}
