//! Reflection padding (the decoder's head block, §2.4; §10.2) built from `narrow` + `cat`,
//! which candle differentiates exactly (the gradient of a mirrored border row is added back
//! onto the row it copies).

use candle_core::{Result, Tensor};

/// Reflects `x` by `pad` along dimension `dim` (PyTorch `ReflectionPad`: the border element
/// itself is not repeated). Requires `pad < size`.
fn reflect_dim(x: &Tensor, dim: usize, pad: usize) -> Result<Tensor> {
    if pad == 0 {
        return Ok(x.clone());
    }
    let size = x.dim(dim)?;
    if pad >= size {
        candle_core::bail!("reflection_pad2d: padding {pad} must be smaller than size {size}");
    }
    let mut parts = Vec::with_capacity(2 * pad + 1);
    for i in (1..=pad).rev() {
        parts.push(x.narrow(dim, i, 1)?);
    }
    parts.push(x.clone());
    for i in 1..=pad {
        parts.push(x.narrow(dim, size - 1 - i, 1)?);
    }
    Tensor::cat(&parts, dim)
}

/// `ReflectionPad2d(pad)`: pads H and W by `pad` on every side by mirroring.
///
/// # Shapes
/// `x`: N×C×H×W with `pad < H` and `pad < W`. Output: N×C×(H+2·pad)×(W+2·pad).
pub fn reflection_pad2d(x: &Tensor, pad: usize) -> Result<Tensor> {
    let rank = x.rank();
    if rank < 2 {
        candle_core::bail!(
            "reflection_pad2d: needs at least 2 dims, got {:?}",
            x.dims()
        );
    }
    let x = reflect_dim(x, rank - 2, pad)?;
    reflect_dim(&x, rank - 1, pad)
}
