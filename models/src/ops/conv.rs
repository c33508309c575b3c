//! 2-D convolution as an im2col + matmul custom op (§10.2).
//!
//! Why not candle's built-in conv: in 0.11.1 its backward fails for stride 2 when H and W
//! differ in parity, is slow, and always computes the weight gradient, so frozen layers (the
//! §2.1 stem, the §4.2 IRN backbone, VGG in §2.5) pay for gradients nobody uses. This op
//! computes the input gradient by col2im and the weight gradient only when asked, and skips
//! the input gradient when the input does not need one (e.g. the image). On non-CPU devices
//! the built-in conv is used (same values; the custom kernels are CPU-only).

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, DType, Device, Layout, Module, Result, Shape, Tensor,
};
use candle_nn::VarBuilder;

/// Stride, zero padding and dilation, equal along H and W (as in every ssc network).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvParams {
    /// Step between output positions.
    pub stride: usize,
    /// Zero padding on each side.
    pub padding: usize,
    /// Spacing between kernel taps.
    pub dilation: usize,
}

impl Default for ConvParams {
    fn default() -> Self {
        ConvParams {
            stride: 1,
            padding: 0,
            dilation: 1,
        }
    }
}

impl ConvParams {
    /// Output length for input length `len` and kernel size `k` (PyTorch's rule).
    /// `None` when the (padded) input is shorter than the dilated kernel, or a parameter
    /// is 0.
    pub fn out_len(&self, len: usize, k: usize) -> Option<usize> {
        if k == 0 || self.stride == 0 || self.dilation == 0 {
            return None;
        }
        let span = self.dilation * (k - 1) + 1;
        (len + 2 * self.padding)
            .checked_sub(span)
            .map(|r| r / self.stride + 1)
    }
}

/// Geometry of one conv call, shared by the im2col and col2im kernels.
#[derive(Debug, Clone, Copy)]
struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    p: ConvParams,
}

impl Geom {
    fn new(x: &[usize], w: &[usize], p: ConvParams) -> Result<Self> {
        let (&[n, c, h, wd], &[_, wc, kh, kw]) = (x, w) else {
            candle_core::bail!("conv2d: expected 4-D input and weight, got {x:?} and {w:?}");
        };
        if c != wc {
            candle_core::bail!("conv2d: input has {c} channels, weight expects {wc}");
        }
        if p.stride == 0 || p.dilation == 0 || kh == 0 || kw == 0 {
            candle_core::bail!("conv2d: stride, dilation and kernel size must be > 0 ({p:?})");
        }
        let (Some(oh), Some(ow)) = (p.out_len(h, kh), p.out_len(wd, kw)) else {
            candle_core::bail!("conv2d: input {h}×{wd} too small for kernel {kh}×{kw} ({p:?})");
        };
        Ok(Geom {
            n,
            c,
            h,
            w: wd,
            kh,
            kw,
            oh,
            ow,
            p,
        })
    }

    /// Rows of the column matrix (C·kh·kw).
    fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Columns of the column matrix (output positions).
    fn l(&self) -> usize {
        self.oh * self.ow
    }

    /// A 1×1, stride-1, unpadded conv: the column matrix is the input itself.
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.p.stride == 1 && self.p.padding == 0
    }

    /// Output columns `lo..hi` whose kernel column `j` lands inside a row of length `len`,
    /// and the input column of `lo` (the rest follow at `stride`).
    #[inline]
    fn span(&self, j: usize, len: usize, out: usize) -> (usize, usize, usize) {
        let (s, off) = (self.p.stride, j * self.p.dilation);
        let lo = self.p.padding.saturating_sub(off).div_ceil(s);
        let hi = if len + self.p.padding > off {
            ((len - 1 + self.p.padding - off) / s + 1).min(out)
        } else {
            0
        };
        if lo >= hi {
            return (0, 0, 0);
        }
        (lo, hi, lo * s + off - self.p.padding)
    }

    fn im2col<T: Copy + Default>(&self, x: &[T]) -> Vec<T> {
        let (k, l, s) = (self.k(), self.l(), self.p.stride);
        let mut col = vec![T::default(); self.n * k * l];
        for n in 0..self.n {
            for c in 0..self.c {
                let plane = &x[(n * self.c + c) * self.h * self.w..][..self.h * self.w];
                for i in 0..self.kh {
                    let (ylo, yhi, iy0) = self.span(i, self.h, self.oh);
                    for j in 0..self.kw {
                        let (xlo, xhi, ix0) = self.span(j, self.w, self.ow);
                        let row = (c * self.kh + i) * self.kw + j;
                        let dst = &mut col[(n * k + row) * l..][..l];
                        for oy in ylo..yhi {
                            let iy = iy0 + (oy - ylo) * s;
                            let src_row = &plane[iy * self.w..][..self.w];
                            let dst_row = &mut dst[oy * self.ow..][xlo..xhi];
                            if s == 1 {
                                dst_row.copy_from_slice(&src_row[ix0..ix0 + (xhi - xlo)]);
                            } else {
                                for (q, d) in dst_row.iter_mut().enumerate() {
                                    *d = src_row[ix0 + q * s];
                                }
                            }
                        }
                    }
                }
            }
        }
        col
    }

    fn col2im<T: Copy + Default + std::ops::AddAssign>(&self, col: &[T]) -> Vec<T> {
        let (k, l, s) = (self.k(), self.l(), self.p.stride);
        let mut x = vec![T::default(); self.n * self.c * self.h * self.w];
        for n in 0..self.n {
            for c in 0..self.c {
                let plane = &mut x[(n * self.c + c) * self.h * self.w..][..self.h * self.w];
                for i in 0..self.kh {
                    let (ylo, yhi, iy0) = self.span(i, self.h, self.oh);
                    for j in 0..self.kw {
                        let (xlo, xhi, ix0) = self.span(j, self.w, self.ow);
                        let row = (c * self.kh + i) * self.kw + j;
                        let src = &col[(n * k + row) * l..][..l];
                        for oy in ylo..yhi {
                            let iy = iy0 + (oy - ylo) * s;
                            let dst_row = &mut plane[iy * self.w..][..self.w];
                            let src_row = &src[oy * self.ow..][xlo..xhi];
                            for (q, &v) in src_row.iter().enumerate() {
                                dst_row[ix0 + q * s] += v;
                            }
                        }
                    }
                }
            }
        }
        x
    }
}

fn contiguous<'a, T>(v: &'a [T], l: &Layout, what: &str) -> Result<&'a [T]> {
    super::cpu::contiguous(v, l, "conv2d", what)
}

/// `x [N,C,H,W]` → columns `[N, C·kh·kw, OH·OW]` (no gradient; used inside the backward).
struct Im2Col(Geom);

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "ssc-im2col"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        let shape = Shape::from((g.n, g.k(), g.l()));
        Ok(match s {
            CpuStorage::F32(v) => (CpuStorage::F32(g.im2col(contiguous(v, l, "input")?)), shape),
            CpuStorage::F64(v) => (CpuStorage::F64(g.im2col(contiguous(v, l, "input")?)), shape),
            _ => candle_core::bail!("conv2d: only f32 and f64 are supported"),
        })
    }
}

/// Columns `[N, C·kh·kw, OH·OW]` → `x`-shaped sums (the adjoint of [`Im2Col`]).
struct Col2Im(Geom);

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "ssc-col2im"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        let shape = Shape::from((g.n, g.c, g.h, g.w));
        Ok(match s {
            CpuStorage::F32(v) => (CpuStorage::F32(g.col2im(contiguous(v, l, "cols")?)), shape),
            CpuStorage::F64(v) => (CpuStorage::F64(g.col2im(contiguous(v, l, "cols")?)), shape),
            _ => candle_core::bail!("conv2d: only f32 and f64 are supported"),
        })
    }
}

/// The conv op: forward im2col + matmul; backward col2im for the input and, if
/// `weight_grad`, columns·gradᵀ for the weight.
struct ConvOp {
    p: ConvParams,
    weight_grad: bool,
}

fn columns(x: &Tensor, g: &Geom) -> Result<Tensor> {
    if g.is_pointwise() {
        x.reshape((g.n, g.c, g.l()))
    } else {
        x.apply_op1_no_bwd(&Im2Col(*g))
    }
}

impl CustomOp2 for ConvOp {
    fn name(&self) -> &'static str {
        "ssc-conv2d"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geom::new(xl.dims(), wl.dims(), self.p)?;
        let cout = wl.dims()[0];
        let dev = Device::Cpu;
        // The matmul runs on candle tensors built from the raw buffers (candle's gemm).
        let (x, w) = match (xs, ws) {
            (CpuStorage::F32(x), CpuStorage::F32(w)) => (
                Tensor::from_slice(contiguous(x, xl, "input")?, xl.dims(), &dev)?,
                Tensor::from_slice(contiguous(w, wl, "weight")?, (cout, g.k()), &dev)?,
            ),
            (CpuStorage::F64(x), CpuStorage::F64(w)) => (
                Tensor::from_slice(contiguous(x, xl, "input")?, xl.dims(), &dev)?,
                Tensor::from_slice(contiguous(w, wl, "weight")?, (cout, g.k()), &dev)?,
            ),
            _ => candle_core::bail!("conv2d: input and weight must both be f32 or both f64"),
        };
        let y = w.broadcast_left(g.n)?.matmul(&columns(&x, &g)?)?;
        let shape = Shape::from((g.n, cout, g.oh, g.ow));
        let storage = match y.dtype() {
            DType::F32 => CpuStorage::F32(y.flatten_all()?.to_vec1()?),
            _ => CpuStorage::F64(y.flatten_all()?.to_vec1()?),
        };
        Ok((storage, shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = Geom::new(x.dims(), w.dims(), self.p)?;
        let cout = w.dim(0)?;
        let grad = grad.detach().contiguous()?.reshape((g.n, cout, g.l()))?;
        let w2 = w.detach().reshape((cout, g.k()))?;
        let gx = if x.track_op() {
            let gcol = w2.t()?.broadcast_left(g.n)?.matmul(&grad)?;
            Some(if g.is_pointwise() {
                gcol.reshape(x.dims())?
            } else {
                gcol.contiguous()?.apply_op1_no_bwd(&Col2Im(g))?
            })
        } else {
            None
        };
        let gw = if self.weight_grad && w.track_op() {
            let cols = columns(&x.detach().contiguous()?, &g)?;
            let gw = grad.matmul(&cols.t()?)?.sum(0)?;
            Some(gw.reshape(w.dims())?)
        } else {
            None
        };
        Ok((gx, gw))
    }
}

/// Convolution without bias, `groups = 1`, equal to `F.conv2d(x, w, None, stride, padding,
/// dilation)`. When `weight_grad` is false the backward pass leaves the weight without a
/// gradient (frozen layers); the input gradient is computed only when `x` is tracked.
///
/// # Shapes
/// `x`: `[N, C_in, H, W]`, `w`: `[C_out, C_in, kh, kw]` → `[N, C_out, OH, OW]`.
pub fn conv2d(x: &Tensor, w: &Tensor, p: ConvParams, weight_grad: bool) -> Result<Tensor> {
    Geom::new(x.dims(), w.dims(), p)?;
    if !super::cpu_kernels(x.device()) {
        let w = if weight_grad { w.clone() } else { w.detach() };
        return x.conv2d(&w, p.padding, p.stride, p.dilation, 1);
    }
    x.contiguous()?
        .apply_op2(&w.contiguous()?, ConvOp { p, weight_grad })
}

/// candle's built-in conv with the same signature, the baseline of the bench and tests.
pub fn conv2d_builtin(x: &Tensor, w: &Tensor, p: ConvParams) -> Result<Tensor> {
    x.conv2d(w, p.padding, p.stride, p.dilation, 1)
}

/// A conv layer (PyTorch `nn.Conv2d`, groups = 1) that can be frozen.
///
/// A frozen layer holds its weight as a plain (detached) tensor and its backward computes
/// only the input gradient.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    params: ConvParams,
    frozen: bool,
}

impl Conv2d {
    /// Loads `weight` `[out, in, k, k]` (and `bias` `[out]` when `bias` is true) from `vb`.
    pub fn new(
        in_c: usize,
        out_c: usize,
        k: usize,
        params: ConvParams,
        bias: bool,
        frozen: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let fan_in = (in_c * k * k) as f64;
        // PyTorch's default init (Kaiming-uniform, a = √5): U(±1/√fan_in) for weight and bias.
        let bound = 1.0 / fan_in.sqrt();
        let init = candle_nn::Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let weight = vb.get_with_hints((out_c, in_c, k, k), "weight", init)?;
        let bias = if bias {
            Some(vb.get_with_hints(out_c, "bias", init)?)
        } else {
            None
        };
        Ok(Self::from_weight(weight, bias, params, frozen))
    }

    /// Wraps existing tensors.
    pub fn from_weight(
        weight: Tensor,
        bias: Option<Tensor>,
        params: ConvParams,
        frozen: bool,
    ) -> Self {
        let (weight, bias) = if frozen {
            (weight.detach(), bias.map(|b| b.detach()))
        } else {
            (weight, bias)
        };
        Conv2d {
            weight,
            bias,
            params,
            frozen,
        }
    }

    /// The weight `[out, in, kh, kw]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// `true` when the layer gets no gradients.
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }
}

impl Module for Conv2d {
    /// # Shapes
    /// `[N, C_in, H, W]` → `[N, C_out, OH, OW]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = conv2d(x, &self.weight, self.params, !self.frozen)?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
            None => Ok(y),
        }
    }
}

/// The transposed conv op: forward `col2im(Wᵀ·x)` in the geometry of the convolution it is
/// the adjoint of; backward: the input gradient is that convolution of the output gradient,
/// the weight gradient `x·im2col(grad)ᵀ`.
struct ConvTransposeOp {
    stride: usize,
    padding: usize,
}

impl ConvTransposeOp {
    /// The geometry of the forward convolution `[N, C_out, OH, OW] → [N, C_in, H, W]` whose
    /// adjoint this is.
    fn geom(&self, x: &[usize], w: &[usize]) -> Result<Geom> {
        let (&[n, ci, h, wd], &[wci, co, k, k2]) = (x, w) else {
            candle_core::bail!(
                "conv_transpose2d: expected 4-D input and weight, got {x:?} and {w:?}"
            );
        };
        if ci != wci || k != k2 || self.stride == 0 || self.padding + 1 > k {
            candle_core::bail!(
                "conv_transpose2d: input {x:?}, kernel {w:?}, stride {}, padding {} unsupported \
                 (square kernel, padding < k)",
                self.stride,
                self.padding
            );
        }
        let out = |l: usize| (l - 1) * self.stride + k - 2 * self.padding;
        let g = Geom::new(
            &[n, co, out(h), out(wd)],
            &[ci, co, k, k],
            ConvParams {
                stride: self.stride,
                padding: self.padding,
                dilation: 1,
            },
        )?;
        if (g.oh, g.ow) != (h, wd) {
            candle_core::bail!("conv_transpose2d: inconsistent geometry for input {x:?}");
        }
        Ok(g)
    }
}

impl CustomOp2 for ConvTransposeOp {
    fn name(&self) -> &'static str {
        "ssc-conv-transpose2d"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.geom(xl.dims(), wl.dims())?;
        let ci = wl.dims()[0];
        let dev = Device::Cpu;
        let (x, w) = match (xs, ws) {
            (CpuStorage::F32(x), CpuStorage::F32(w)) => (
                Tensor::from_slice(contiguous(x, xl, "input")?, (g.n, ci, g.l()), &dev)?,
                Tensor::from_slice(contiguous(w, wl, "weight")?, (ci, g.k()), &dev)?,
            ),
            (CpuStorage::F64(x), CpuStorage::F64(w)) => (
                Tensor::from_slice(contiguous(x, xl, "input")?, (g.n, ci, g.l()), &dev)?,
                Tensor::from_slice(contiguous(w, wl, "weight")?, (ci, g.k()), &dev)?,
            ),
            _ => candle_core::bail!("conv_transpose2d: input and weight must both be f32 or f64"),
        };
        let cols = w.t()?.broadcast_left(g.n)?.matmul(&x)?.contiguous()?;
        let shape = Shape::from((g.n, g.c, g.h, g.w));
        Ok(match cols.dtype() {
            DType::F32 => {
                let v: Vec<f32> = cols.flatten_all()?.to_vec1()?;
                (CpuStorage::F32(g.col2im(&v)), shape)
            }
            _ => {
                let v: Vec<f64> = cols.flatten_all()?.to_vec1()?;
                (CpuStorage::F64(g.col2im(&v)), shape)
            }
        })
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = self.geom(x.dims(), w.dims())?;
        let ci = w.dim(0)?;
        let cols = columns(&grad.detach().contiguous()?, &g)?; // [N, C_out·k·k, H·W]
        let gx = if x.track_op() {
            let w2 = w.detach().reshape((ci, g.k()))?;
            Some(w2.broadcast_left(g.n)?.matmul(&cols)?.reshape(x.dims())?)
        } else {
            None
        };
        let gw = if w.track_op() {
            let x2 = x.detach().contiguous()?.reshape((g.n, ci, g.l()))?;
            Some(x2.matmul(&cols.t()?)?.sum(0)?.reshape(w.dims())?)
        } else {
            None
        };
        Ok((gx, gw))
    }
}

/// Transposed convolution without bias (`groups = 1`, `output_padding = 0`), equal to
/// `F.conv_transpose2d(x, w, None, stride, padding)`, differentiable in `x` and `w`.
///
/// Why not candle's `conv_transpose2d`: its CPU kernel is a direct loop that made the §2.4
/// decoder cost more than the whole classifier step. Here it is the adjoint of a convolution:
/// one matmul `Wᵀ·x` at the input resolution and a col2im scatter (4× fewer multiplies than
/// convolving a zero-stuffed input at stride 2), with the convolution itself as the input
/// gradient.
///
/// # Shapes
/// `x`: `[N, C_in, H, W]`, `w`: `[C_in, C_out, k, k]` → `[N, C_out, (H−1)·s − 2p + k, …]`.
pub fn conv_transpose2d(x: &Tensor, w: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    let op = ConvTransposeOp { stride, padding };
    op.geom(x.dims(), w.dims())?;
    if !super::cpu_kernels(x.device()) {
        return x.conv_transpose2d(w, padding, 0, stride, 1);
    }
    x.contiguous()?.apply_op2(&w.contiguous()?, op)
}
