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
    fn similarity(&self, i: usize, j: usize) -> f64 {
        let (fi, fj) = (
            &self.feat[i * self.dim..(i + 1) * self.dim],
            &self.feat[j * self.dim..(j + 1) * self.dim],
        );
        let denom = self.norm[i] * self.norm[j];
        // A zero vector has no direction: count it as orthogonal to everything.
        let cos = if denom > 0.0 {
            fi.iter().zip(fj).map(|(a, b)| a * b).sum::<f64>() / denom
        } else {
            0.0
        };
        cos + (1.0 - (self.size[i] + self.size[j]) / self.total)
    }

    fn rescan(&mut self, i: usize) {
        let row = &self.sim[i * self.n..(i + 1) * self.n];
        let mut best = (NONE, usize::MAX);
        for j in i + 1..self.n {
            // Strictly greater keeps the first (smallest j) maximum.
            if self.alive[j] && (best.1 == usize::MAX || row[j] > best.0) {
                best = (row[j], j);
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
        for k in 0..self.n {
            if !self.alive[k] || k == i {
                continue;
            }
            let v = self.similarity(i, k);
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
    for i in 0..n {
        for j in i + 1..n {
            st.sim[i * n + j] = st.similarity(i, j);
        }
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
