//! IRN's class-boundary losses (§4.4–4.5, IRN `AffinityDisplacementLoss`) from edge logits.
//!
//! `B = sigmoid(edge)` on the stride-4 grid; for every (direction, source) pair of a
//! [`PathIndex`], `aff = 1 − max over the path points of B`. The max is a gather of `B` at the
//! path points followed by a gather at the arg-max, so the gradient reaches only the arg-max
//! point, as PyTorch's `max_pool2d` over the path gives it (candle's `max` reduction would
//! give every tied point the full gradient).
//!
//! Directions are processed in groups of equal path length (as IRN does, no padding) and the
//! result is put back into the [`PathIndex`] direction order, so the affinity labels of
//! `ssc_core::randomwalk::labels` apply unchanged.
//!
//! Only the edge-branch terms are built: `L = (L_pos + L_neg)/2` with
//! `L_pos = L_bgpos/2 + L_fgpos/2`. The displacement branch (instance segmentation only) and
//! its terms `L_dpfg`, `L_dpbg` of §4.5 are not part of ssc.

use candle_core::{DType, Device, Tensor};
use ssc_core::randomwalk::paths::PathIndex;

use crate::error::{Result, TrainError};

/// The 1e-5 of IRN's `−log(aff + 1e-5)`, `−log(1 + 1e-5 − aff)` and of the denominators.
pub const EPS: f64 = 1e-5;

/// Gather indices of every path on one `h×w` grid, prepared once per grid size.
#[derive(Debug, Clone)]
pub struct PathGather {
    h: usize,
    w: usize,
    n_directions: usize,
    n_sources: usize,
    /// Per path length: (flat indices `D_g·P·S`, `D_g`, `P`).
    groups: Vec<(Tensor, usize, usize)>,
    /// Position in the grouped order of each direction of the [`PathIndex`] order.
    restore: Tensor,
}

impl PathGather {
    /// Indices for the paths of `index` on an `h×w` grid (errors when the grid is too small
    /// for the radius).
    pub fn new(index: &PathIndex, h: usize, w: usize, dev: &Device) -> Result<Self> {
        let (rows, cols, col0) = index.sources(h, w)?;
        let n_sources = rows * cols;
        let nd = index.n_directions();
        let mut lengths: Vec<usize> = (0..nd).map(|d| index.path(d).len()).collect();
        lengths.sort_unstable();
        lengths.dedup();
        let mut groups = Vec::with_capacity(lengths.len());
        let mut grouped_order = Vec::with_capacity(nd);
        for &p in &lengths {
            let dirs: Vec<usize> = (0..nd).filter(|&d| index.path(d).len() == p).collect();
            let mut flat = Vec::with_capacity(dirs.len() * p * n_sources);
            for &d in &dirs {
                for &(py, px) in index.path(d) {
                    for i in 0..rows {
                        for j in 0..cols {
                            // Inside the grid by construction of the source range.
                            let y = i as isize + py;
                            let x = (col0 + j) as isize + px;
                            flat.push((y as usize * w + x as usize) as u32);
                        }
                    }
                }
            }
            groups.push((
                Tensor::from_vec(flat, dirs.len() * p * n_sources, dev)?,
                dirs.len(),
                p,
            ));
            grouped_order.extend(dirs);
        }
        let mut restore = vec![0u32; nd];
        for (pos, &d) in grouped_order.iter().enumerate() {
            restore[d] = pos as u32;
        }
        Ok(PathGather {
            h,
            w,
            n_directions: nd,
            n_sources,
            groups,
            restore: Tensor::from_vec(restore, nd, dev)?,
        })
    }

    /// `(n_directions, n_sources)` of the affinity layout.
    pub fn dims(&self) -> (usize, usize) {
        (self.n_directions, self.n_sources)
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
        let flat = b.reshape((n, self.h * self.w))?;
        let mut parts = Vec::with_capacity(self.groups.len());
        for (idx, dg, p) in &self.groups {
            let pts = flat
                .index_select(idx, 1)?
                .reshape((n, *dg, *p, self.n_sources))?;
            // Arg-max on detached values, then a differentiable gather at it.
            let arg = pts.detach().argmax_keepdim(2)?;
            parts.push(pts.gather(&arg, 2)?.squeeze(2)?);
        }
        let max = Tensor::cat(&parts, 1)?.index_select(&self.restore, 1)?;
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

/// The scalar value of a 0-dim loss tensor as f64.
pub fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}
