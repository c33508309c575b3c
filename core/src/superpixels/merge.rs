//! Greedy merge of FH regions down to at most `max_regions` (§5.3).
//!
//! `sim(i, j) = cos(f_i, f_j) + (1 − (s_i + s_j)/N)` over **all** pairs (no adjacency), N the
//! pixel count. Each step merges the most similar pair (first in row-major order on ties, so the
//! lower index `i` survives), updates `f_i` to the size-weighted mean and `s_i` to the sum, and
//! recomputes the pairs of `i`. Survivors are relabelled by increasing old index.
//!
//! The similarity matrix is kept (upper triangle) together with each row's best entry, so a
//! merge costs one feature row of dot products plus rescans of only the rows whose best entry
//! involved `i` or `j`: about O(n·d + n²) per merge instead of a full O(n²·d) recomputation.
//! Arithmetic is f64 so ties are decided the same way on every platform.

use super::Segmentation;
use crate::{CoreError, Result};

/// Dead or absent entries.
const NONE: f64 = f64::NEG_INFINITY;

/// Dot product with four independent accumulators: breaks the addition dependency chain
/// (several times faster), while the fixed order keeps results reproducible.
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut acc = [0f64; 4];
    for (x, y) in ca.zip(cb) {
        for ((a, &xl), &yl) in acc.iter_mut().zip(x).zip(y) {
            *a += xl * yl;
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// [`dot`] of `a` with four vectors at once, each result bit-identical to `dot`'s: the four
/// independent accumulator chains keep the vector units busy where one dot product waits on
/// its own additions.
#[inline(always)]
fn dot4(a: &[f64], b: [&[f64]; 4]) -> [f64; 4] {
    let n4 = a.len() / 4 * 4;
    let b = b.map(|s| &s[..a.len()]);
    let mut acc = [[0f64; 4]; 4];
    for c in (0..n4).step_by(4) {
        let x: [f64; 4] = a[c..c + 4].try_into().unwrap_or_default();
        for (acc, b) in acc.iter_mut().zip(&b) {
            let y: [f64; 4] = b[c..c + 4].try_into().unwrap_or_default();
            for l in 0..4 {
                acc[l] += x[l] * y[l];
            }
        }
    }
    std::array::from_fn(|t| {
        let tail: f64 = a[n4..].iter().zip(&b[t][n4..]).map(|(x, y)| x * y).sum();
        let acc = acc[t];
        (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
    })
}

struct State {
    n: usize,
    dim: usize,
    total: f64,
    feat: Vec<f64>,
    norm: Vec<f64>,
    size: Vec<f64>,
    alive: Vec<bool>,
    /// Upper triangle (`i < j`) of the similarity matrix, row-major `n×n`.
    sim: Vec<f64>,
    /// Per row `i`: (best value over live `j > i`, smallest such `j`), or `NONE`.
    best: Vec<(f64, usize)>,
}

impl State {
    /// The similarity of `i` and `j` given the dot product of their features.
    #[inline(always)]
    fn finish(&self, i: usize, j: usize, dot: f64) -> f64 {
        let denom = self.norm[i] * self.norm[j];
        // A zero vector has no direction: count it as orthogonal to everything.
        let cos = if denom > 0.0 { dot / denom } else { 0.0 };
        cos + (1.0 - (self.size[i] + self.size[j]) / self.total)
    }

    fn row(&self, i: usize) -> &[f64] {
        &self.feat[i * self.dim..(i + 1) * self.dim]
    }

    /// `out[t]` ← the similarity of `i` and `others[t]`. With AVX2 when the CPU has it (the
    /// same operations in the same order, so the same values).
    fn similarities(&self, i: usize, others: &[usize], out: &mut [f64]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, the only requirement of `similarities_avx2`.
            unsafe { self.similarities_avx2(i, others, out) };
            return;
        }
        self.similarities_generic(i, others, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn similarities_avx2(&self, i: usize, others: &[usize], out: &mut [f64]) {
        self.similarities_generic(i, others, out);
    }

    #[inline(always)]
    fn similarities_generic(&self, i: usize, others: &[usize], out: &mut [f64]) {
        let fi = self.row(i);
        let mut groups = others.chunks_exact(4);
        let mut outs = out.chunks_exact_mut(4);
        for (g, o) in (&mut groups).zip(&mut outs) {
            let dots = dot4(
                fi,
                [
                    self.row(g[0]),
                    self.row(g[1]),
                    self.row(g[2]),
                    self.row(g[3]),
                ],
            );
            for ((o, &j), d) in o.iter_mut().zip(g).zip(dots) {
                *o = self.finish(i, j, d);
            }
        }
        for (o, &j) in outs.into_remainder().iter_mut().zip(groups.remainder()) {
            *o = self.finish(i, j, dot(fi, self.row(j)));
        }
    }

    fn rescan(&mut self, i: usize) {
        let row = &self.sim[i * self.n..(i + 1) * self.n];
        let mut best = (NONE, usize::MAX);
        for (j, (&v, &alive)) in row.iter().zip(&self.alive).enumerate().skip(i + 1) {
            // Strictly greater keeps the first (smallest j) maximum.
            if alive && (best.1 == usize::MAX || v > best.0) {
                best = (v, j);
            }
        }
        self.best[i] = best;
    }

    fn set_norm(&mut self, i: usize) {
        let f = &self.feat[i * self.dim..(i + 1) * self.dim];
        self.norm[i] = f.iter().map(|v| v * v).sum::<f64>().sqrt();
    }

    /// The live row with the best pair (smallest row on ties).
    fn pick(&self) -> Option<(usize, usize)> {
        let mut out: Option<(f64, usize, usize)> = None;
        for (i, &(v, j)) in self.best.iter().enumerate() {
            if !self.alive[i] || j == usize::MAX {
                continue;
            }
            if out.is_none_or(|(bv, _, _)| v > bv) {
                out = Some((v, i, j));
            }
        }
        out.map(|(_, i, j)| (i, j))
    }

    fn merge(&mut self, i: usize, j: usize) {
        let (si, sj) = (self.size[i], self.size[j]);
        let d = self.dim;
        for c in 0..d {
            self.feat[i * d + c] =
                (si * self.feat[i * d + c] + sj * self.feat[j * d + c]) / (si + sj);
        }
        self.size[i] = si + sj;
        self.set_norm(i);
        self.alive[j] = false;
        self.best[j] = (NONE, usize::MAX);
        let others: Vec<usize> = (0..self.n).filter(|&k| self.alive[k] && k != i).collect();
        let mut vals = vec![0.0; others.len()];
        self.similarities(i, &others, &mut vals);
        for (&k, &v) in others.iter().zip(&vals) {
            let (a, b) = if k < i { (k, i) } else { (i, k) };
            self.sim[a * self.n + b] = v;
        }
        self.rescan(i);
        for k in 0..self.n {
            if !self.alive[k] || k == i {
                continue;
            }
            let (bv, bj) = self.best[k];
            if bj == j || bj == i {
                // The best entry died or may have decreased.
                self.rescan(k);
            } else if k < i {
                let v = self.sim[k * self.n + i];
                if bj == usize::MAX || v > bv || (v == bv && i < bj) {
                    self.best[k] = (v, i);
                }
            }
        }
    }
}

/// Greedily merges `sizes.len()` regions with features `features` (row-major
/// `regions×dim`) until at most `max_regions` remain. Returns each old region's new label;
/// survivors are numbered by increasing old index.
pub fn merge_regions(
    features: &[f32],
    dim: usize,
    sizes: &[usize],
    max_regions: usize,
) -> Result<Vec<u32>> {
    let n = sizes.len();
    if max_regions == 0 {
        return Err(CoreError::Invalid("merge: max_regions must be ≥ 1".into()));
    }
    if features.len() != n * dim {
        return Err(CoreError::Invalid(format!(
            "merge: {} feature values for {n} regions of dimension {dim}",
            features.len()
        )));
    }
    if let Some(p) = features.iter().position(|v| !v.is_finite()) {
        return Err(CoreError::Invalid(format!(
            "merge: feature {} of region {} is not finite",
            p % dim.max(1),
            p / dim.max(1)
        )));
    }
    if n <= max_regions {
        return Ok((0..n as u32).collect());
    }
    let total = sizes.iter().sum::<usize>().max(1) as f64;
    let mut st = State {
        n,
        dim,
        total,
        feat: features.iter().map(|&v| f64::from(v)).collect(),
        norm: vec![0.0; n],
        size: sizes.iter().map(|&s| s as f64).collect(),
        alive: vec![true; n],
        sim: vec![NONE; n * n],
        best: vec![(NONE, usize::MAX); n],
    };
    for i in 0..n {
        st.set_norm(i);
    }
    let all: Vec<usize> = (0..n).collect();
    let mut row = vec![0.0; n];
    for i in 0..n {
        let others = &all[i + 1..];
        st.similarities(i, others, &mut row[..others.len()]);
        st.sim[i * n + i + 1..(i + 1) * n].copy_from_slice(&row[..others.len()]);
        st.rescan(i);
    }
    // parent[j] = the region j was merged into.
    let mut parent: Vec<usize> = (0..n).collect();
    let mut live = n;
    while live > max_regions {
        let (i, j) = st.pick().expect("more than one live region has a pair");
        st.merge(i, j);
        parent[j] = i;
        live -= 1;
    }
    let mut new_label = vec![u32::MAX; n];
    let mut next = 0u32;
    for (r, label) in new_label.iter_mut().enumerate() {
        if st.alive[r] {
            *label = next;
            next += 1;
        }
    }
    Ok((0..n)
        .map(|mut r| {
            while parent[r] != r {
                r = parent[r];
            }
            new_label[r]
        })
        .collect())
}

/// Merges the regions of `seg` (features row-major `seg.count×dim`) down to at most
/// `max_regions`.
pub fn merge(
    seg: &Segmentation,
    features: &[f32],
    dim: usize,
    max_regions: usize,
) -> Result<Segmentation> {
    super::validate(seg)?;
    let map = merge_regions(features, dim, &seg.sizes(), max_regions)?;
    let count = map.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
    Ok(Segmentation {
        width: seg.width,
        height: seg.height,
        labels: seg.labels.iter().map(|&l| map[l as usize]).collect(),
        count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Direct transcription of §5.3: full matrix, full argmax each step.
    fn naive(features: &[f32], dim: usize, sizes: &[usize], max: usize) -> Vec<u32> {
        let n = sizes.len();
        let mut f: Vec<Vec<f64>> = (0..n)
            .map(|i| {
                features[i * dim..(i + 1) * dim]
                    .iter()
                    .map(|&v| v.into())
                    .collect()
            })
            .collect();
        let mut s: Vec<f64> = sizes.iter().map(|&v| v as f64).collect();
        let total: f64 = s.iter().sum();
        let mut alive = vec![true; n];
        let mut parent: Vec<usize> = (0..n).collect();
        let sim = |f: &Vec<Vec<f64>>, s: &Vec<f64>, i: usize, j: usize| {
            let dot: f64 = f[i].iter().zip(&f[j]).map(|(a, b)| a * b).sum();
            let ni = f[i].iter().map(|v| v * v).sum::<f64>().sqrt();
            let nj = f[j].iter().map(|v| v * v).sum::<f64>().sqrt();
            let cos = if ni * nj > 0.0 { dot / (ni * nj) } else { 0.0 };
            cos + (1.0 - (s[i] + s[j]) / total)
        };
        while alive.iter().filter(|&&a| a).count() > max {
            let mut best: Option<(f64, usize, usize)> = None;
            for i in 0..n {
                for j in 0..n {
                    if i == j || !alive[i] || !alive[j] {
                        continue;
                    }
                    let v = sim(&f, &s, i, j);
                    if best.is_none_or(|b| v > b.0) {
                        best = Some((v, i, j));
                    }
                }
            }
            let (_, i, j) = best.unwrap();
            assert!(i < j, "row-major first maximum lies in the upper triangle");
            let fj = f[j].clone();
            for (a, b) in f[i].iter_mut().zip(&fj) {
                *a = (s[i] * *a + s[j] * b) / (s[i] + s[j]);
            }
            s[i] += s[j];
            alive[j] = false;
            parent[j] = i;
        }
        let mut label = vec![0u32; n];
        let mut next = 0;
        for r in 0..n {
            if alive[r] {
                label[r] = next;
                next += 1;
            }
        }
        (0..n)
            .map(|mut r| {
                while parent[r] != r {
                    r = parent[r];
                }
                label[r]
            })
            .collect()
    }

    #[test]
    fn matches_naive_transcription_on_random_features() {
        let mut rng = Rng::new(7);
        for (n, dim, max) in [(40, 5, 8), (90, 3, 64), (65, 16, 64), (30, 2, 1)] {
            // Coarse values make exact similarity ties likely.
            let feats: Vec<f32> = (0..n * dim).map(|_| rng.below(3) as f32).collect();
            let sizes: Vec<usize> = (0..n).map(|_| 1 + rng.below(4) as usize).collect();
            let got = merge_regions(&feats, dim, &sizes, max).unwrap();
            assert_eq!(got, naive(&feats, dim, &sizes, max), "n {n} dim {dim}");
            let k = *got.iter().max().unwrap() as usize + 1;
            assert_eq!(k, max.min(n));
        }
    }

    #[test]
    fn ties_merge_first_pair_in_row_major_order() {
        // Four identical regions of equal size: every pair ties and (0,1) goes first. Region 0
        // then carries a larger size penalty, so (2,3) is next.
        let feats = vec![1.0f32; 4];
        let got = merge_regions(&feats, 1, &[1, 1, 1, 1], 3).unwrap();
        assert_eq!(got, vec![0, 0, 1, 2]);
        let got = merge_regions(&feats, 1, &[1, 1, 1, 1], 2).unwrap();
        assert_eq!(got, vec![0, 0, 1, 1]);
    }

    #[test]
    fn similar_features_merge_regardless_of_adjacency() {
        // Regions 0 and 3 point the same way, 1 and 2 the other way.
        let feats = vec![1.0, 0.0, 0.0, 1.0, 0.1, 1.0, 1.0, 0.05];
        let got = merge_regions(&feats, 2, &[10, 10, 10, 10], 2).unwrap();
        assert_eq!(got, vec![0, 1, 1, 0]);
    }

    #[test]
    fn relabels_survivors_by_old_index_and_updates_segmentation() {
        let seg = Segmentation {
            width: 3,
            height: 1,
            labels: vec![2, 0, 1],
            count: 3,
        };
        // 1 and 2 are identical: 2 merges into 1; survivors 0 and 1 keep their order.
        let out = merge(&seg, &[0.0, 1.0, 1.0, 0.0, 1.0, 0.0], 2, 2).unwrap();
        assert_eq!(out.labels, vec![1, 0, 1]);
        assert_eq!(out.count, 2);
    }

    #[test]
    fn few_regions_unchanged_and_bad_input_rejected() {
        assert_eq!(
            merge_regions(&[1.0, 2.0], 1, &[3, 4], 64).unwrap(),
            vec![0, 1]
        );
        assert!(merge_regions(&[1.0], 1, &[3, 4], 64).is_err());
        assert!(merge_regions(&[1.0, f32::NAN], 1, &[3, 4], 1).is_err());
        assert!(merge_regions(&[1.0, 2.0], 1, &[3, 4], 0).is_err());
    }
}
