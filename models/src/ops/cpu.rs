//! What the hand-written CPU kernels of the custom ops share: the float types they run on and
//! the dispatch from candle's storages (contiguity check, f32/f64 match) to a generic kernel.

use candle_core::{CpuStorage, Layout, Result};

/// The float types the CPU kernels run on (f32 for training, f64 for gradient checks).
pub(crate) trait Float:
    Copy
    + Send
    + Sync
    + std::ops::Mul<Output = Self>
    + std::ops::Add<Output = Self>
    + std::ops::AddAssign
    + 'static
{
    /// 0.
    fn zero() -> Self;
    /// As f64 (exact).
    fn to64(self) -> f64;
    /// From f64 (rounded).
    fn from64(v: f64) -> Self;
}

impl Float for f32 {
    fn zero() -> Self {
        0.0
    }
    fn to64(self) -> f64 {
        self as f64
    }
    fn from64(v: f64) -> Self {
        v as f32
    }
}

impl Float for f64 {
    fn zero() -> Self {
        0.0
    }
    fn to64(self) -> f64 {
        self
    }
    fn from64(v: f64) -> Self {
        v
    }
}

/// The storage's elements covered by a contiguous layout; `op` and `what` name them in the
/// error otherwise.
pub(crate) fn contiguous<'a, T>(v: &'a [T], l: &Layout, op: &str, what: &str) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("{op}: {what} must be contiguous"),
    }
}

/// A kernel over two contiguous inputs of one float type.
pub(crate) trait Kernel2 {
    /// The op's name (errors).
    const OP: &'static str;
    /// Computes the output from the two inputs.
    fn run<T: Float>(&self, a: &[T], b: &[T]) -> Vec<T>;
}

/// Runs `k` on two storages (both f32 or both f64, contiguous).
pub(crate) fn apply2<K: Kernel2>(
    k: &K,
    a: &CpuStorage,
    al: &Layout,
    b: &CpuStorage,
    bl: &Layout,
) -> Result<CpuStorage> {
    let op = K::OP;
    Ok(match (a, b) {
        (CpuStorage::F32(x), CpuStorage::F32(y)) => CpuStorage::F32(k.run(
            contiguous(x, al, op, "first input")?,
            contiguous(y, bl, op, "second input")?,
        )),
        (CpuStorage::F64(x), CpuStorage::F64(y)) => CpuStorage::F64(k.run(
            contiguous(x, al, op, "first input")?,
            contiguous(y, bl, op, "second input")?,
        )),
        _ => candle_core::bail!("{op}: inputs must both be f32 or both f64"),
    })
}

/// A kernel over three contiguous inputs of one float type.
pub(crate) trait Kernel3 {
    /// The op's name (errors).
    const OP: &'static str;
    /// Computes the output from the three inputs.
    fn run<T: Float>(&self, a: &[T], b: &[T], c: &[T]) -> Vec<T>;
}

/// Runs `k` on three storages (all f32 or all f64, contiguous).
pub(crate) fn apply3<K: Kernel3>(
    k: &K,
    (a, al): (&CpuStorage, &Layout),
    (b, bl): (&CpuStorage, &Layout),
    (c, cl): (&CpuStorage, &Layout),
) -> Result<CpuStorage> {
    let op = K::OP;
    Ok(match (a, b, c) {
        (CpuStorage::F32(x), CpuStorage::F32(y), CpuStorage::F32(z)) => CpuStorage::F32(k.run(
            contiguous(x, al, op, "first input")?,
            contiguous(y, bl, op, "second input")?,
            contiguous(z, cl, op, "third input")?,
        )),
        (CpuStorage::F64(x), CpuStorage::F64(y), CpuStorage::F64(z)) => CpuStorage::F64(k.run(
            contiguous(x, al, op, "first input")?,
            contiguous(y, bl, op, "second input")?,
            contiguous(z, cl, op, "third input")?,
        )),
        _ => candle_core::bail!("{op}: inputs must all be f32 or all f64"),
    })
}
