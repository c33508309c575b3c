//! IRN's class-boundary losses (§4.4–4.5, IRN `AffinityDisplacementLoss`) from edge logits.
//!
//! `B = sigmoid(edge)` on the stride-4 grid; for every (direction, source) pair of a
//! [`PathIndex`], `aff = 1 − max over the path points of B`.
//!
//! The max is taken in two steps: the arg-max point of every path is found on the detached
//! values (a plain parallel loop on the host), then `B` is gathered at those points with one
//! differentiable `index_select`. The value is the path max and the gradient reaches only the
//! arg-max point, as PyTorch's `max_pool2d` over the path gives it (candle's `max` reduction
//! would give every tied point the full gradient). Gathering every path point as a tensor
//! first (what IRN does on the GPU) measured 4.4× slower than the core's host loop in the forward
//! pass alone, and 14× with the backward pass, on the CPU at the reference size.
//!
//! Affinities come in the [`PathIndex`] direction order, sources row-major, so the affinity
//! labels of `ssc_core::randomwalk::labels` apply unchanged.
//!
//! Only the edge-branch terms are built: `L = (L_pos + L_neg)/2` with
//! `L_pos = L_bgpos/2 + L_fgpos/2`. The displacement branch (instance segmentation only) and
//! its terms `L_dpfg`, `L_dpbg` of §4.5 are not part of ssc.

use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;
use ssc_core::randomwalk::labels::AffinityLabels;
use ssc_core::randomwalk::paths::PathIndex;

use crate::error::{Result, TrainError};

/// The 1e-5 of IRN's `−log(aff + 1e-5)`, `−log(1 + 1e-5 − aff)` and of the denominators.
pub const EPS: f64 = 1e-5;

/// The paths of a [`PathIndex`] on one `h×w` grid, prepared once per grid size.
#[derive(Debug, Clone)]
pub struct PathGather {
    h: usize,
    w: usize,
    /// Flat position of every source (row-major source order).
    sources: Vec<u32>,
    /// Per direction, the flat offsets of its path points from the source (IRN's order).
    paths: Vec<Vec<isize>>,
}

impl PathGather {
    /// The paths of `index` on an `h×w` grid (errors when the grid is too small for the
    /// radius). `_dev` is kept for API stability: the arg-max search runs on the host.
    pub fn new(index: &PathIndex, h: usize, w: usize, _dev: &Device) -> Result<Self> {
        let (rows, cols, col0) = index.sources(h, w)?;
        let sources = (0..rows)
            .flat_map(|i| (0..cols).map(move |j| (i * w + col0 + j) as u32))
            .collect();
        let paths = (0..index.n_directions())
            .map(|d| {
                index
                    .path(d)
                    .iter()
                    .map(|&(py, px)| py * w as isize + px)
                    .collect()
            })
            .collect();
        Ok(PathGather {
            h,
            w,
            sources,
            paths,
        })
    }

    /// `(n_directions, n_sources)` of the affinity layout.
    pub fn dims(&self) -> (usize, usize) {
        (self.paths.len(), self.sources.len())
    }

    /// Flat index (into the `N·h·w` map) of the path maximum of every (sample, direction,
    /// source); ties go to the first path point in IRN's order.
    fn argmax(&self, b: &[f64], n: usize) -> Vec<u32> {
        let hw = self.h * self.w;
        let (nd, ns) = self.dims();
        let mut out = vec![0u32; n * nd * ns];
        out.par_chunks_mut(ns).enumerate().for_each(|(row, dst)| {
            let (k, d) = (row / nd, row % nd);
            let map = &b[k * hw..(k + 1) * hw];
            let path = &self.paths[d];
            for (o, &src) in dst.iter_mut().zip(&self.sources) {
                // Every path point lies inside the grid by construction of the sources.
                let at = |off: isize| (src as isize + off) as usize;
                let mut best = at(path[0]);
                let mut best_v = map[best];
                for &off in &path[1..] {
                    let (i, v) = (at(off), map[at(off)]);
                    // Strict: ties keep the earlier point. Branch-free select.
                    let take = v > best_v;
                    best = if take { i } else { best };
                    best_v = if take { v } else { best_v };
                }
                *o = (k * hw + best) as u32;
            }
        });
        out
    }

    /// Affinities `1 − max_path B` from a boundary map `b` in [0, 1].
    ///
    /// # Shapes
    /// `b`: N×1×h×w (or N×h×w) → N×D×S (directions in [`PathIndex`] order, sources row-major).
    pub fn affinity(&self, b: &Tensor) -> Result<Tensor> {
        let n = b.dim(0)?;
        if b.elem_count() != n * self.h * self.w {
            return Err(TrainError::Config(format!(
                "boundary map {:?} does not fit the {}×{} path grid",
                b.dims(),
                self.h,
                self.w
            )));
        }
        let (nd, ns) = self.dims();
        let flat = b.flatten_all()?;
        // f64 holds f32 and f64 maps exactly, so the arg-max is that of the tensor's own values.
        let host: Vec<f64> = flat.detach().to_dtype(DType::F64)?.to_vec1()?;
        let idx = self.argmax(&host, n);
        let idx = Tensor::from_vec(idx, n * nd * ns, b.device())?;
        let max = flat.index_select(&idx, 0)?.reshape((n, nd, ns))?;
        Ok(max.affine(-1.0, 1.0)?)
    }
}

/// The per-pair 0/1 targets of a batch (§4.5), each N×D×S in the loss dtype.
#[derive(Debug, Clone)]
pub struct EdgeTargets {
    /// Both ends background.
    pub bg_pos: Tensor,
    /// Both ends the same foreground class.
    pub fg_pos: Tensor,
    /// Both ends valid with different labels.
    pub neg: Tensor,
}

impl EdgeTargets {
    /// Targets from per-sample `ssc_core` affinity labels (all of one grid size).
    pub fn from_labels(
        labels: &[&ssc_core::randomwalk::labels::AffinityLabels],
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        let first = labels
            .first()
            .ok_or_else(|| TrainError::Config("empty batch of affinity labels".into()))?;
        let (d, s) = (first.n_directions, first.n_sources);
        if labels
            .iter()
            .any(|l| (l.n_directions, l.n_sources) != (d, s))
        {
            return Err(TrainError::Config(
                "affinity labels of one batch differ in size".into(),
            ));
        }
        let stack = |f: fn(&ssc_core::randomwalk::labels::AffinityLabels) -> &Vec<u8>| {
            let v: Vec<u8> = labels.iter().flat_map(|l| f(l).iter().copied()).collect();
            Tensor::from_vec(v, (labels.len(), d, s), dev)?.to_dtype(dtype)
        };
        Ok(EdgeTargets {
            bg_pos: stack(|l| &l.bg_pos)?,
            fg_pos: stack(|l| &l.fg_pos)?,
            neg: stack(|l| &l.neg)?,
        })
    }
}

/// The loss and its terms (0-dim tensors; `total` carries the graph).
#[derive(Debug, Clone)]
pub struct EdgeLoss {
    /// `(L_pos + L_neg)/2`.
    pub total: Tensor,
    /// L_bgpos.
    pub bg_pos: Tensor,
    /// L_fgpos.
    pub fg_pos: Tensor,
    /// L_neg.
    pub neg: Tensor,
}

/// Weighted mean `Σ mask·term / (Σ mask + 1e-5)`.
fn masked_mean(term: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let num = (term * mask)?.sum_all()?;
    let den = mask.sum_all()?.affine(1.0, EPS)?;
    Ok(num.div(&den)?)
}

/// The §4.5 edge loss from affinities `aff` (N×D×S, from [`PathGather::affinity`]).
pub fn affinity_loss(aff: &Tensor, t: &EdgeTargets) -> Result<EdgeLoss> {
    if aff.dims() != t.bg_pos.dims() {
        return Err(TrainError::Config(format!(
            "affinities {:?} and targets {:?} differ in shape",
            aff.dims(),
            t.bg_pos.dims()
        )));
    }
    let pos_term = aff.affine(1.0, EPS)?.log()?.neg()?;
    let neg_term = aff.affine(-1.0, 1.0 + EPS)?.log()?.neg()?;
    let bg_pos = masked_mean(&pos_term, &t.bg_pos)?;
    let fg_pos = masked_mean(&pos_term, &t.fg_pos)?;
    let neg = masked_mean(&neg_term, &t.neg)?;
    let pos = ((&bg_pos + &fg_pos)? * 0.5)?;
    let total = ((pos + &neg)? * 0.5)?;
    Ok(EdgeLoss {
        total,
        bg_pos,
        fg_pos,
        neg,
    })
}

/// The §4.5 edge loss from edge logits (N×1×h×w): sigmoid, path affinities, loss.
pub fn edge_loss(edge_logits: &Tensor, gather: &PathGather, t: &EdgeTargets) -> Result<EdgeLoss> {
    let b = candle_nn::ops::sigmoid(edge_logits)?;
    affinity_loss(&gather.affinity(&b)?, t)
}

/// The same loss as [`edge_loss`] computed in one host pass (the trainer's path).
///
/// The loss is a fixed linear combination of per-pair terms (the 0/1 targets and their
/// counts do not depend on the network), so its gradient with respect to `B` can be summed
/// directly: pair `(p, d)` with arg-max point `q` adds `c_pos/(aff + 1e-5)` (positive pairs)
/// or `−c_neg/(1 + 1e-5 − aff)` (negative pairs) to `∂L/∂B(q)`, with `c_bg = 1/(4(Σbg + ε))`,
/// `c_fg = 1/(4(Σfg + ε))`, `c_neg = 1/(2(Σneg + ε))`. The returned `total` is
/// `Σ G ⊙ B + const` with the gradient `G` detached and the constant chosen so that its value
/// is the loss: value and first derivative are exact, and candle carries the gradient on
/// through the sigmoid into the network. About 5× faster than the tensor route on the CPU
/// at the reference size (`cargo bench -p ssc-training --bench irn_affinity`).
pub fn edge_loss_fused(
    edge_logits: &Tensor,
    gather: &PathGather,
    labels: &[&AffinityLabels],
) -> Result<EdgeLoss> {
    let n = edge_logits.dim(0)?;
    let (nd, ns) = gather.dims();
    if labels.len() != n
        || labels
            .iter()
            .any(|l| (l.n_directions, l.n_sources) != (nd, ns))
    {
        return Err(TrainError::Config(format!(
            "{} affinity label sets for a batch of {n} on a {nd}×{ns} pair grid",
            labels.len()
        )));
    }
    let b = candle_nn::ops::sigmoid(edge_logits)?;
    if b.elem_count() != n * gather.h * gather.w {
        return Err(TrainError::Config(format!(
            "edge logits {:?} do not fit the {}×{} path grid",
            b.dims(),
            gather.h,
            gather.w
        )));
    }
    let host: Vec<f64> = b.flatten_all()?.detach().to_dtype(DType::F64)?.to_vec1()?;
    let idx = gather.argmax(&host, n);
    let count = |f: fn(&AffinityLabels) -> &Vec<u8>| -> f64 {
        labels
            .iter()
            .map(|l| f(l).iter().map(|&v| v as f64).sum::<f64>())
            .sum()
    };
    let (n_bg, n_fg, n_neg) = (
        count(|l| &l.bg_pos),
        count(|l| &l.fg_pos),
        count(|l| &l.neg),
    );
    let (c_bg, c_fg, c_neg) = (
        0.25 / (n_bg + EPS),
        0.25 / (n_fg + EPS),
        0.5 / (n_neg + EPS),
    );
    let hw = gather.h * gather.w;
    // Per sample: its gradient slice and its sums of the three terms.
    let per: Vec<(Vec<f64>, [f64; 3])> = labels
        .par_iter()
        .enumerate()
        .map(|(k, l)| {
            let mut g = vec![0.0f64; hw];
            let mut sums = [0.0f64; 3];
            let ids = &idx[k * nd * ns..(k + 1) * nd * ns];
            for (i, &q) in ids.iter().enumerate() {
                let (bg, fg, ng) = (l.bg_pos[i], l.fg_pos[i], l.neg[i]);
                if bg | fg | ng == 0 {
                    continue;
                }
                let a = 1.0 - host[q as usize];
                let local = q as usize - k * hw;
                if bg | fg != 0 {
                    let c = if bg != 0 { c_bg } else { c_fg };
                    sums[(fg != 0) as usize] += -(a + EPS).ln();
                    g[local] += c / (a + EPS);
                } else {
                    sums[2] += -(1.0 + EPS - a).ln();
                    g[local] -= c_neg / (1.0 + EPS - a);
                }
            }
            (g, sums)
        })
        .collect();
    let mut grad = Vec::with_capacity(n * hw);
    let mut sums = [0.0f64; 3];
    for (g, s) in per {
        grad.extend(g);
        for (t, v) in sums.iter_mut().zip(s) {
            *t += v;
        }
    }
    let l_bg = sums[0] / (n_bg + EPS);
    let l_fg = sums[1] / (n_fg + EPS);
    let l_neg = sums[2] / (n_neg + EPS);
    let total = ((l_bg + l_fg) / 2.0 + l_neg) / 2.0;
    let linear: f64 = grad.iter().zip(&host).map(|(g, v)| g * v).sum();
    let dt = b.dtype();
    let g = Tensor::from_vec(grad, b.shape(), b.device())?.to_dtype(dt)?;
    let surrogate = (&b * &g)?.sum_all()?.affine(1.0, total - linear)?;
    let c = |v: f64| -> Result<Tensor> { Ok(Tensor::new(v, b.device())?.to_dtype(dt)?) };
    Ok(EdgeLoss {
        total: surrogate,
        bg_pos: c(l_bg)?,
        fg_pos: c(l_fg)?,
        neg: c(l_neg)?,
    })
}

/// The scalar value of a 0-dim loss tensor as f64.
pub fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}
