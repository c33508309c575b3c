//! Differentiable operations that candle lacks or gets wrong (see `shared/notes/platform.md`),
//! each written once and checked against finite differences in the tests.

pub mod affine;
mod cpu;
pub mod depthwise;
pub mod gradcheck;
pub mod norm;
pub mod pad;
pub mod pool;
pub mod resize;

pub use pool::max_pool2d;

pub use resize::bilinear;
pub mod conv;

pub use conv::{Conv2d, ConvParams, conv_transpose2d, conv2d};
pub use depthwise::{DepthwiseParams, depthwise_conv2d};

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::Device;

/// Set by [`set_generic_ops`].
static GENERIC: AtomicBool = AtomicBool::new(false);

/// Whether the custom ops run their hand-written CPU kernels for tensors on `dev`: on the CPU,
/// unless the generic path is forced. Elsewhere (CUDA) they run the candle ops the kernels
/// were checked against, and `SSC_GENERIC_OPS=1` (or [`set_generic_ops`]) makes a CPU run take
/// exactly that path, so that what a GPU run executes is tested where no GPU is.
pub fn cpu_kernels(dev: &Device) -> bool {
    static ENV: OnceLock<bool> = OnceLock::new();
    let env = *ENV.get_or_init(|| std::env::var("SSC_GENERIC_OPS").is_ok_and(|v| v == "1"));
    dev.is_cpu() && !env && !GENERIC.load(Ordering::Relaxed)
}

/// Forces (or releases) the generic, device-independent path of the custom ops for the whole
/// process (see [`cpu_kernels`]).
pub fn set_generic_ops(on: bool) {
    GENERIC.store(on, Ordering::Relaxed);
}
