//! Per-channel affine map followed by an activation, in one pass:
//! `y = act(x·scale_c + shift_c)` on `[N, C, H, W]` — a BatchNorm with fixed statistics
//! (`scale = γ/√(σ²+ε)`, `shift = β − μ·scale`) and its ReLU / ReLU6.
//!
//! Why: written as candle ops this is four to six passes over the activation (broadcast mul,
//! broadcast add, and `clamp` as maximum then minimum, whose backward builds comparison masks
//! on both sides); EfficientNet-Lite has three such layers per block at high resolution. Here
//! the forward is one pass and the backward one pass per output (input gradient) plus one
//! per-channel reduction (scale and shift gradients). Values equal the candle composition bit
//! for bit (the same two roundings, no fused multiply-add). Each channel is reduced by one
//! task in a fixed order, so gradients do not depend on the thread count. Non-CPU devices (and
//! `SSC_GENERIC_OPS=1`) use the candle composition, with the activation written as masks so
//! that its gradient stops at the boundaries as here.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::cpu::{Float, Kernel2, Kernel3, apply2, apply3};

/// The activation after the affine map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// None (the identity).
    Linear,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
}

impl Act {
    #[inline]
    fn apply(self, v: f64) -> f64 {
        match self {
            Act::Linear => v,
            Act::Relu => v.max(0.0),
            Act::Relu6 => v.clamp(0.0, 6.0),
        }
    }

    /// Whether the gradient passes at an output value `y` (PyTorch: ReLU at y > 0, ReLU6
    /// (hardtanh) strictly inside (0, 6)).
    #[inline]
    fn passes(self, y: f64) -> bool {
        match self {
            Act::Linear => true,
            Act::Relu => y > 0.0,
            Act::Relu6 => y > 0.0 && y < 6.0,
        }
    }
}

fn dims(l: &Layout) -> Result<(usize, usize, usize)> {
    match l.dims() {
        &[n, c, h, w] => Ok((n, c, h * w)),
        d => candle_core::bail!("affine_act: expected [N, C, H, W], got {d:?}"),
    }
}

/// The forward kernel over `(x, scale, shift)`.
struct Forward {
    c: usize,
    hw: usize,
    act: Act,
}

impl Kernel3 for Forward {
    const OP: &'static str = "affine_act";
    fn run<T: Float>(&self, x: &[T], s: &[T], b: &[T]) -> Vec<T> {
        let (c, hw, act) = (self.c, self.hw, self.act);
        let mut out = vec![T::zero(); x.len()];
        out.par_chunks_mut(hw).enumerate().for_each(|(p, dst)| {
            let ch = p % c;
            let (sc, sh) = (s[ch], b[ch]);
            for (d, &v) in dst.iter_mut().zip(&x[p * hw..(p + 1) * hw]) {
                // Two roundings (no fused multiply-add), as candle's broadcast mul then add.
                *d = T::from64(act.apply((v * sc + sh).to64()));
            }
        });
        out
    }
}

struct AffineAct(Act);

impl CustomOp3 for AffineAct {
    fn name(&self) -> &'static str {
        "ssc-affine-act"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ss: &CpuStorage,
        sl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, c, hw) = dims(xl)?;
        if sl.shape().elem_count() != c || bl.shape().elem_count() != c {
            candle_core::bail!("affine_act: scale and shift need {c} values");
        }
        let k = Forward { c, hw, act: self.0 };
        Ok((
            apply3(&k, (xs, xl), (ss, sl), (bs, bl))?,
            xl.shape().clone(),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        scale: &Tensor,
        shift: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let c = x.dim(1)?;
        // g' = g where the activation passes, else 0 (read from the output).
        let g = match self.0 {
            Act::Linear => grad.contiguous()?,
            act => grad
                .contiguous()?
                .apply_op2_no_bwd(&res.contiguous()?, &MaskGrad(act))?,
        };
        let gx = if x.track_op() {
            Some(g.broadcast_mul(&scale.detach().reshape((1, c, 1, 1))?)?)
        } else {
            None
        };
        let (gs, gb) = if scale.track_op() || shift.track_op() {
            let sums = g.apply_op2_no_bwd(&x.detach().contiguous()?, &ChannelSums)?;
            (
                scale
                    .track_op()
                    .then(|| sums.narrow(0, 0, c)?.reshape(scale.dims()))
                    .transpose()?,
                shift
                    .track_op()
                    .then(|| sums.narrow(0, c, c)?.reshape(shift.dims()))
                    .transpose()?,
            )
        } else {
            (None, None)
        };
        Ok((gx, gs, gb))
    }
}

/// `(grad, y)` → `grad` where the activation passes at `y`, else 0.
struct MaskGrad(Act);

impl Kernel2 for MaskGrad {
    const OP: &'static str = "affine_act gradient mask";
    fn run<T: Float>(&self, g: &[T], y: &[T]) -> Vec<T> {
        let act = self.0;
        let mut out = vec![T::zero(); g.len()];
        out.par_chunks_mut(1 << 14)
            .zip(g.par_chunks(1 << 14).zip(y.par_chunks(1 << 14)))
            .for_each(|(o, (g, y))| {
                for ((o, &g), &y) in o.iter_mut().zip(g).zip(y) {
                    if act.passes(y.to64()) {
                        *o = g;
                    }
                }
            });
        out
    }
}

impl candle_core::CustomOp2 for MaskGrad {
    fn name(&self) -> &'static str {
        "ssc-affine-act-mask"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        ys: &CpuStorage,
        yl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        Ok((apply2(self, gs, gl, ys, yl)?, gl.shape().clone()))
    }
}

/// `(g', x)` → `[Σ g'·x per channel …, Σ g' per channel …]` (`2C` values), each channel
/// summed over N, H, W in a fixed order.
struct ChannelSums;

/// [`ChannelSums`] with the layout's sizes.
struct ChannelSumsKernel {
    n: usize,
    c: usize,
    hw: usize,
}

impl Kernel2 for ChannelSumsKernel {
    const OP: &'static str = "affine_act channel sums";
    fn run<T: Float>(&self, g: &[T], x: &[T]) -> Vec<T> {
        let (n, c, hw) = (self.n, self.c, self.hw);
        let per: Vec<(f64, f64)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let (mut a, mut b) = (0f64, 0f64);
                for i in 0..n {
                    let o = (i * c + ch) * hw;
                    for (&gv, &xv) in g[o..o + hw].iter().zip(&x[o..o + hw]) {
                        a += gv.to64() * xv.to64();
                        b += gv.to64();
                    }
                }
                (a, b)
            })
            .collect();
        per.iter()
            .map(|p| T::from64(p.0))
            .chain(per.iter().map(|p| T::from64(p.1)))
            .collect()
    }
}

impl candle_core::CustomOp2 for ChannelSums {
    fn name(&self) -> &'static str {
        "ssc-affine-act-channel-sums"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        xs: &CpuStorage,
        xl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, hw) = dims(gl)?;
        let k = ChannelSumsKernel { n, c, hw };
        Ok((apply2(&k, gs, gl, xs, xl)?, Shape::from(2 * c)))
    }
}

/// `act(x·scale_c + shift_c)` for `x` `[N, C, H, W]` and `scale`, `shift` of `C` values,
/// differentiable in all three (module docs).
///
/// # Shapes
/// `[N, C, H, W]` → `[N, C, H, W]`.
pub fn affine_act(x: &Tensor, scale: &Tensor, shift: &Tensor, act: Act) -> Result<Tensor> {
    let c = x.dim(1)?;
    if !super::cpu_kernels(x.device()) {
        let shape = (1, c, 1, 1);
        let y = x
            .broadcast_mul(&scale.reshape(shape)?)?
            .broadcast_add(&shift.reshape(shape)?)?;
        // Masks instead of candle's relu/clamp, whose backward passes the gradient at the
        // boundaries (y = 0, y = 6): the kernel and PyTorch stop it there, and exact zeros are
        // common (zero padding through a bias-free convolution and an untrained BN).
        let mask = |m: Tensor| m.to_dtype(y.dtype());
        return match act {
            Act::Linear => Ok(y),
            Act::Relu => y.mul(&mask(y.gt(0f64)?)?),
            Act::Relu6 => {
                let mid = mask(y.gt(0f64)?)?.mul(&mask(y.lt(6f64)?)?)?;
                let top = (mask(y.ge(6f64)?)? * 6.0)?;
                y.mul(&mid)?.add(&top)
            }
        };
    }
    x.contiguous()?.apply_op3(
        &scale.flatten_all()?.contiguous()?,
        &shift.flatten_all()?.contiguous()?,
        AffineAct(act),
    )
}
