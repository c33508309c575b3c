//! Differentiable operations that candle lacks or gets wrong (see `shared/notes/platform.md`),
//! each written once and checked against finite differences in the tests.

pub mod norm;
pub mod pad;
