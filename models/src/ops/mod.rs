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
