//! Discriminative region suppression, the fixed-δ variant of §2.2:
//! `DRS(X) = min(ReLU(X), δ · max_hw ReLU(X))` per sample and channel.

use candle_core::{Result, Tensor};

use crate::config::Activation;
use crate::ops::pool::global_max_pool;

/// DRS with suppression ratio `delta`.
///
/// The gradient flows through both arguments of the minimum: to `X` where it is below the
/// cap, and through the cap to the arg-max element (candle's reduction and `minimum` rules;
/// exact ties between distinct positive maxima, which PyTorch breaks by index, do not occur
/// with real-valued activations).
///
/// # Shapes
/// `x`: `[N, K, H, W]` → `[N, K, H, W]`.
pub fn drs(x: &Tensor, delta: f64) -> Result<Tensor> {
    x.dims4()?;
    let pos = x.relu()?;
    let cap = (global_max_pool(&pos)? * delta)?;
    pos.broadcast_minimum(&cap)
}

impl Activation {
    /// Applies the activation.
    ///
    /// # Shapes
    /// `[N, K, H, W]` → `[N, K, H, W]`.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        match *self {
            Activation::Relu => x.relu(),
            Activation::Drs { delta } => drs(x, delta),
        }
    }
}
