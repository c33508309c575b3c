//! IRN training targets (§4.5, IRN `GetAffinityLabelFromIndices`): for every (direction,
//! source) pair of a label map, whether it is a background-positive, foreground-positive or
//! negative pair. Pairs touching a label `≥ n_classes` (the 255 ignore band of §4.1) are in
//! none of the three.

use super::paths::PathIndex;
use crate::{CoreError, Result};

/// Affinity targets of one label map, each `[n_directions × n_sources]` with values 0/1, in
/// the direction order of [`PathIndex`] and the source order of [`PathIndex::sources`]
/// (IRN's `(bg_pos, fg_pos, neg)` layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffinityLabels {
    /// Number of directions (rows).
    pub n_directions: usize,
    /// Number of sources (columns).
    pub n_sources: usize,
    /// Both ends background (label 0).
    pub bg_pos: Vec<u8>,
    /// Both ends the same foreground class.
    pub fg_pos: Vec<u8>,
    /// Both ends valid, labels differ.
    pub neg: Vec<u8>,
}

impl AffinityLabels {
    /// Number of pairs in each set: `(bg_pos, fg_pos, neg)` (the loss denominators of §4.5).
    pub fn counts(&self) -> (usize, usize, usize) {
        let count = |v: &[u8]| v.iter().map(|&b| b as usize).sum();
        (count(&self.bg_pos), count(&self.fg_pos), count(&self.neg))
    }
}

/// Computes the targets of `label` (`h×w`, row-major; 128×128 in IRN training) with
/// `n_classes` valid labels (21 for VOC, 81 for COCO; every larger value is ignored).
pub fn affinity_labels(
    label: &[u8],
    h: usize,
    w: usize,
    index: &PathIndex,
    n_classes: usize,
) -> Result<AffinityLabels> {
    if label.len() != h * w {
        return Err(CoreError::Invalid(format!(
            "label map has {} values, expected {h}×{w}",
            label.len()
        )));
    }
    if !(1..=255).contains(&n_classes) {
        return Err(CoreError::Invalid(format!(
            "number of classes must be in 1..=255 (got {n_classes})"
        )));
    }
    let (rows, cols, col0) = index.sources(h, w)?;
    let n_sources = rows * cols;
    let n = index.n_directions() * n_sources;
    let (mut bg_pos, mut fg_pos, mut neg) = (vec![0u8; n], vec![0u8; n], vec![0u8; n]);
    let valid = |v: u8| usize::from(v) < n_classes;
    for (d, &(dy, dx)) in index.directions().iter().enumerate() {
        for i in 0..rows {
            for j in 0..cols {
                let (y, x) = (i, col0 + j);
                let a = label[y * w + x];
                let b = label[(y as isize + dy) as usize * w + (x as isize + dx) as usize];
                if !(valid(a) && valid(b)) {
                    continue;
                }
                let at = d * n_sources + i * cols + j;
                match (a == b, a == 0) {
                    (true, true) => bg_pos[at] = 1,
                    (true, false) => fg_pos[at] = 1,
                    (false, _) => neg[at] = 1,
                }
            }
        }
    }
    Ok(AffinityLabels {
        n_directions: index.n_directions(),
        n_sources,
        bg_pos,
        fg_pos,
        neg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_on_a_tiny_map() {
        // R = 2 → r_f = 1; a 2×4 map has sources at row 0, columns 1..3.
        let idx = PathIndex::new(2).unwrap();
        #[rustfmt::skip]
        let label = [
            0, 0, 3, 255,
            0, 3, 3, 7,
        ];
        let l = affinity_labels(&label, 2, 4, &idx, 21).unwrap();
        assert_eq!((l.n_directions, l.n_sources), (4, 2));
        let at = |d: (isize, isize), src: usize| {
            let k = idx.directions().iter().position(|&x| x == d).unwrap();
            let i = k * l.n_sources + src;
            (l.bg_pos[i], l.fg_pos[i], l.neg[i])
        };
        // Source 0 is pixel (0,1) = 0, source 1 is pixel (0,2) = 3.
        assert_eq!(at((0, 1), 0), (0, 0, 1)); // 0 → 3
        assert_eq!(at((0, 1), 1), (0, 0, 0)); // 3 → 255: ignored
        assert_eq!(at((1, 0), 0), (0, 0, 1)); // 0 → 3
        assert_eq!(at((1, 0), 1), (0, 1, 0)); // 3 → 3
        assert_eq!(at((1, -1), 0), (1, 0, 0)); // 0 → 0
        assert_eq!(at((1, -1), 1), (0, 1, 0)); // 3 → 3
        assert_eq!(at((1, 1), 0), (0, 0, 1)); // 0 → 3
        assert_eq!(at((1, 1), 1), (0, 0, 1)); // 3 → 7
        assert_eq!(l.counts(), (1, 2, 4));
        // With 5 valid classes, label 7 is ignored too.
        let l5 = affinity_labels(&label, 2, 4, &idx, 5).unwrap();
        assert_eq!(l5.counts(), (1, 2, 3));
    }

    #[test]
    fn bad_input_is_an_error() {
        let idx = PathIndex::new(2).unwrap();
        assert!(affinity_labels(&[0; 7], 2, 4, &idx, 21).is_err());
        assert!(affinity_labels(&[0; 8], 2, 4, &idx, 0).is_err());
        assert!(affinity_labels(&[0; 2], 1, 2, &idx, 21).is_err());
    }
}
