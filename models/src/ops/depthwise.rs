//! Depthwise 2-D convolution (`groups = channels`, one k×k filter per channel) with
//! asymmetric zero padding, as EfficientNet-Lite's MBConv blocks use it (TF "SAME" padding).
//!
//! Why a custom op: candle's grouped convolution runs one small convolution per group and its
//! backward always computes the weight gradient; a depthwise filter is a handful of
//! multiply-adds per output, so direct loops over each (sample, channel) plane are both
//! simpler and far faster. Each plane is owned by one task, so sums run in a fixed order and
//! the result does not depend on the thread count. The padding is applied inside the loops
//! (no padded copy). On non-CPU devices candle's grouped convolution is used on an explicitly
//! padded input (same values).

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};

use super::cpu::{Float, Kernel2, apply2};
use rayon::prelude::*;

/// Stride, dilation and zero padding `(top, bottom, left, right)` of a depthwise convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DepthwiseParams {
    /// Step between output positions (both axes).
    pub stride: usize,
    /// Spacing between kernel taps (both axes).
    pub dilation: usize,
    /// Zero padding `(top, bottom, left, right)`.
    pub pads: [usize; 4],
}

impl DepthwiseParams {
    /// TF "SAME" padding for an `h×w` input and a `k×k` kernel: the output is
    /// `⌈h/stride⌉×⌈w/stride⌉`, the total padding `max((⌈n/s⌉−1)·s + (k−1)·d + 1 − n, 0)` is
    /// split with the odd pixel at the bottom/right (what TensorFlow, ONNX `SAME_UPPER` and the
    /// `efficientnet-lite-pytorch` package do).
    pub fn same(h: usize, w: usize, k: usize, stride: usize, dilation: usize) -> Self {
        let (t, b) = same_pad(h, k, stride, dilation);
        let (l, r) = same_pad(w, k, stride, dilation);
        DepthwiseParams {
            stride,
            dilation,
            pads: [t, b, l, r],
        }
    }
}

/// TF "SAME" padding `(before, after)` of one axis of length `n`.
pub fn same_pad(n: usize, k: usize, stride: usize, dilation: usize) -> (usize, usize) {
    let out = n.div_ceil(stride.max(1));
    let span = (k.max(1) - 1) * dilation + 1;
    let total = ((out.max(1) - 1) * stride + span).saturating_sub(n);
    (total / 2, total - total / 2)
}

#[derive(Debug, Clone, Copy)]
struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    oh: usize,
    ow: usize,
    p: DepthwiseParams,
}

impl Geom {
    fn new(x: &[usize], w: &[usize], p: DepthwiseParams) -> Result<Self> {
        let (&[n, c, h, wd], &[wc, one, kh, kw]) = (x, w) else {
            candle_core::bail!(
                "depthwise conv: expected 4-D input [N,C,H,W] and weight [C,1,k,k], got {x:?} \
                 and {w:?}"
            );
        };
        if wc != c || one != 1 || kh != kw || kh == 0 {
            candle_core::bail!(
                "depthwise conv: weight {w:?} does not fit input {x:?} (expected [{c}, 1, k, k])"
            );
        }
        if p.stride == 0 || p.dilation == 0 {
            candle_core::bail!("depthwise conv: stride and dilation must be > 0 ({p:?})");
        }
        let span = (kh - 1) * p.dilation + 1;
        let len =
            |n: usize, a: usize, b: usize| (n + a + b).checked_sub(span).map(|r| r / p.stride + 1);
        let (Some(oh), Some(ow)) = (len(h, p.pads[0], p.pads[1]), len(wd, p.pads[2], p.pads[3]))
        else {
            candle_core::bail!("depthwise conv: input {h}×{wd} too small for kernel {kh} ({p:?})");
        };
        Ok(Geom {
            n,
            c,
            h,
            w: wd,
            k: kh,
            oh,
            ow,
            p,
        })
    }

    /// Output indices `lo..hi` whose tap `j` (offset `j·d − pad`) lands inside `0..len`, and
    /// the input index of `lo`.
    #[inline]
    fn span(&self, j: usize, pad: usize, len: usize, out: usize) -> (usize, usize, usize) {
        let (s, off) = (self.p.stride, j * self.p.dilation);
        let lo = pad.saturating_sub(off).div_ceil(s);
        let hi = if len + pad > off {
            ((len - 1 + pad - off) / s + 1).min(out)
        } else {
            0
        };
        if lo >= hi {
            return (0, 0, 0);
        }
        (lo, hi, lo * s + off - pad)
    }

    /// `out[oy, ox] = Σ w[i, j]·x[oy·s − pt + i·d, ox·s − pl + j·d]` on one plane.
    fn forward_plane<T: Float>(&self, x: &[T], w: &[T], out: &mut [T]) {
        let s = self.p.stride;
        for i in 0..self.k {
            let (ylo, yhi, iy0) = self.span(i, self.p.pads[0], self.h, self.oh);
            for j in 0..self.k {
                let (xlo, xhi, ix0) = self.span(j, self.p.pads[2], self.w, self.ow);
                let wv = w[i * self.k + j];
                for oy in ylo..yhi {
                    let src = &x[(iy0 + (oy - ylo) * s) * self.w..][..self.w];
                    let dst = &mut out[oy * self.ow..][xlo..xhi];
                    if s == 1 {
                        for (d, &v) in dst.iter_mut().zip(&src[ix0..ix0 + (xhi - xlo)]) {
                            *d += wv * v;
                        }
                    } else {
                        for (q, d) in dst.iter_mut().enumerate() {
                            *d += wv * src[ix0 + q * s];
                        }
                    }
                }
            }
        }
    }

    /// The adjoint of [`Geom::forward_plane`] in `x`: scatters `g` back through the taps.
    fn input_grad_plane<T: Float>(&self, g: &[T], w: &[T], gx: &mut [T]) {
        let s = self.p.stride;
        for i in 0..self.k {
            let (ylo, yhi, iy0) = self.span(i, self.p.pads[0], self.h, self.oh);
            for j in 0..self.k {
                let (xlo, xhi, ix0) = self.span(j, self.p.pads[2], self.w, self.ow);
                let wv = w[i * self.k + j];
                for oy in ylo..yhi {
                    let dst = &mut gx[(iy0 + (oy - ylo) * s) * self.w..][..self.w];
                    let src = &g[oy * self.ow..][xlo..xhi];
                    if s == 1 {
                        for (d, &v) in dst[ix0..ix0 + (xhi - xlo)].iter_mut().zip(src) {
                            *d += wv * v;
                        }
                    } else {
                        for (q, &v) in src.iter().enumerate() {
                            dst[ix0 + q * s] += wv * v;
                        }
                    }
                }
            }
        }
    }

    /// `gw[i, j] += Σ g[oy, ox]·x[…]` for one plane (accumulated into `gw`).
    fn weight_grad_plane<T: Float>(&self, g: &[T], x: &[T], gw: &mut [T]) {
        let s = self.p.stride;
        for i in 0..self.k {
            let (ylo, yhi, iy0) = self.span(i, self.p.pads[0], self.h, self.oh);
            for j in 0..self.k {
                let (xlo, xhi, ix0) = self.span(j, self.p.pads[2], self.w, self.ow);
                let mut acc = T::zero();
                for oy in ylo..yhi {
                    let src = &x[(iy0 + (oy - ylo) * s) * self.w..][..self.w];
                    let gr = &g[oy * self.ow..][xlo..xhi];
                    if s == 1 {
                        for (&a, &b) in gr.iter().zip(&src[ix0..ix0 + (xhi - xlo)]) {
                            acc += a * b;
                        }
                    } else {
                        for (q, &a) in gr.iter().enumerate() {
                            acc += a * src[ix0 + q * s];
                        }
                    }
                }
                gw[i * self.k + j] += acc;
            }
        }
    }

    fn forward<T: Float>(&self, x: &[T], w: &[T]) -> Vec<T> {
        let (hw, ohw, kk) = (self.h * self.w, self.oh * self.ow, self.k * self.k);
        let mut out = vec![T::zero(); self.n * self.c * ohw];
        out.par_chunks_mut(ohw).enumerate().for_each(|(p, dst)| {
            let c = p % self.c;
            self.forward_plane(&x[p * hw..][..hw], &w[c * kk..][..kk], dst);
        });
        out
    }

    fn input_grad<T: Float>(&self, g: &[T], w: &[T]) -> Vec<T> {
        let (hw, ohw, kk) = (self.h * self.w, self.oh * self.ow, self.k * self.k);
        let mut gx = vec![T::zero(); self.n * self.c * hw];
        gx.par_chunks_mut(hw).enumerate().for_each(|(p, dst)| {
            let c = p % self.c;
            self.input_grad_plane(&g[p * ohw..][..ohw], &w[c * kk..][..kk], dst);
        });
        gx
    }

    fn weight_grad<T: Float>(&self, g: &[T], x: &[T]) -> Vec<T> {
        let (hw, ohw, kk) = (self.h * self.w, self.oh * self.ow, self.k * self.k);
        let mut gw = vec![T::zero(); self.c * kk];
        // One task per channel, samples summed in order: deterministic at any thread count.
        gw.par_chunks_mut(kk).enumerate().for_each(|(c, dst)| {
            for n in 0..self.n {
                let p = n * self.c + c;
                self.weight_grad_plane(&g[p * ohw..][..ohw], &x[p * hw..][..hw], dst);
            }
        });
        gw
    }
}

/// The forward kernel.
struct Forward(Geom);

impl Kernel2 for Forward {
    const OP: &'static str = "depthwise conv";
    fn run<T: Float>(&self, x: &[T], w: &[T]) -> Vec<T> {
        self.0.forward(x, w)
    }
}

/// The adjoint producing the input gradient from `(grad, weight)` (no backward of its own).
struct InputGrad(Geom);

impl Kernel2 for InputGrad {
    const OP: &'static str = "depthwise conv input gradient";
    fn run<T: Float>(&self, g: &[T], w: &[T]) -> Vec<T> {
        self.0.input_grad(g, w)
    }
}

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "ssc-depthwise-input-grad"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        Ok((
            apply2(self, gs, gl, ws, wl)?,
            Shape::from((g.n, g.c, g.h, g.w)),
        ))
    }
}

/// The adjoint producing the weight gradient from `(grad, input)` (no backward of its own).
struct WeightGrad(Geom);

impl Kernel2 for WeightGrad {
    const OP: &'static str = "depthwise conv weight gradient";
    fn run<T: Float>(&self, g: &[T], x: &[T]) -> Vec<T> {
        self.0.weight_grad(g, x)
    }
}

impl CustomOp2 for WeightGrad {
    fn name(&self) -> &'static str {
        "ssc-depthwise-weight-grad"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        xs: &CpuStorage,
        xl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        Ok((
            apply2(self, gs, gl, xs, xl)?,
            Shape::from((g.c, 1, g.k, g.k)),
        ))
    }
}

struct DepthwiseOp {
    p: DepthwiseParams,
    weight_grad: bool,
}

impl CustomOp2 for DepthwiseOp {
    fn name(&self) -> &'static str {
        "ssc-depthwise-conv2d"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geom::new(xl.dims(), wl.dims(), self.p)?;
        let shape = Shape::from((g.n, g.c, g.oh, g.ow));
        Ok((apply2(&Forward(g), xs, xl, ws, wl)?, shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = Geom::new(x.dims(), w.dims(), self.p)?;
        let grad = grad.detach().contiguous()?;
        let gx = if x.track_op() {
            Some(grad.apply_op2_no_bwd(&w.detach().contiguous()?, &InputGrad(g))?)
        } else {
            None
        };
        let gw = if self.weight_grad && w.track_op() {
            Some(grad.apply_op2_no_bwd(&x.detach().contiguous()?, &WeightGrad(g))?)
        } else {
            None
        };
        Ok((gx, gw))
    }
}

/// Depthwise convolution: `x` `[N, C, H, W]`, `w` `[C, 1, k, k]` → `[N, C, OH, OW]`, equal to
/// `F.conv2d(F.pad(x, (l, r, t, b)), w, None, stride, 0, dilation, groups=C)`. When
/// `weight_grad` is false the weight gets no gradient (frozen layers).
///
/// # Shapes
/// `OH = ⌊(H + t + b − (k−1)·d − 1)/s⌋ + 1`, likewise `OW`.
pub fn depthwise_conv2d(
    x: &Tensor,
    w: &Tensor,
    p: DepthwiseParams,
    weight_grad: bool,
) -> Result<Tensor> {
    Geom::new(x.dims(), w.dims(), p)?;
    if !super::cpu_kernels(x.device()) {
        return depthwise_conv2d_builtin(x, &if weight_grad { w.clone() } else { w.detach() }, p);
    }
    if !matches!(x.dtype(), DType::F32 | DType::F64) {
        candle_core::bail!("depthwise conv: f32 or f64 expected, got {:?}", x.dtype());
    }
    x.contiguous()?
        .apply_op2(&w.contiguous()?, DepthwiseOp { p, weight_grad })
}

/// candle's grouped convolution on an explicitly padded input: the same function, the
/// baseline of the bench and the path on non-CPU devices.
pub fn depthwise_conv2d_builtin(x: &Tensor, w: &Tensor, p: DepthwiseParams) -> Result<Tensor> {
    let g = Geom::new(x.dims(), w.dims(), p)?;
    let [t, b, l, r] = p.pads;
    // Trimmed to exactly the rows and columns the outputs read: candle's conv backward fails
    // on a stride remainder (platform notes), and the trimmed pixels never reach an output.
    let span = (g.k - 1) * p.dilation + 1;
    let xp = x
        .pad_with_zeros(2, t, b)?
        .pad_with_zeros(3, l, r)?
        .narrow(2, 0, (g.oh - 1) * p.stride + span)?
        .narrow(3, 0, (g.ow - 1) * p.stride + span)?;
    xp.conv2d(w, 0, p.stride, p.dilation, g.c)
}
