//! The IRN pair/path index (§4.3, IRN `misc/indexing.py`, `PathIndex`).
//!
//! For a radius `R` the index lists the directions `d = (dy, dx)` that pair a source pixel
//! with a destination pixel, and for each direction the integer points of the path whose
//! boundary values decide the pair's affinity (§4.4). Directions are stored in IRN's
//! *concatenation* order (by path length, then by search order), the order in which IRN lays
//! out affinities, affinity labels and displacement targets; the walk, the affinity and the
//! training labels all use this one order.

use crate::{CoreError, Result};

/// A direction or path point `(dy, dx)` in grid cells.
pub type Offset = (isize, isize);

/// IRN's pair/path index for one radius.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathIndex {
    radius: usize,
    directions: Vec<Offset>,
    paths: Vec<Vec<Offset>>,
}

impl PathIndex {
    /// Builds the index for radius `radius` (IRN uses 10 for training, 5 for the walk).
    ///
    /// Errors for `radius < 2`, which has no directions at all.
    pub fn new(radius: usize) -> Result<Self> {
        if radius < 2 {
            return Err(CoreError::Invalid(format!(
                "path radius must be at least 2 (got {radius})"
            )));
        }
        let r = radius as isize;
        // Search order of §4.3: the horizontal ray first, then the lower half-disc row by row.
        let mut search = Vec::new();
        search.extend((1..r).map(|x| (0, x)));
        for y in 1..r {
            for x in -(r - 1)..r {
                if x * x + y * y < r * r {
                    search.push((y, x));
                }
            }
        }
        let mut with_paths: Vec<(Offset, Vec<Offset>)> =
            search.into_iter().map(|d| (d, path_points(d))).collect();
        // IRN buckets directions by path length and concatenates the buckets in increasing
        // length; a stable sort on the length reproduces that exactly.
        with_paths.sort_by_key(|(_, p)| p.len());
        let (directions, paths) = with_paths.into_iter().unzip();
        Ok(PathIndex {
            radius,
            directions,
            paths,
        })
    }

    /// The radius `R`.
    pub fn radius(&self) -> usize {
        self.radius
    }

    /// `r_f = ceil(R) − 1`: the margin a source keeps from the left, right and bottom edges.
    pub fn r_f(&self) -> usize {
        self.radius - 1
    }

    /// Number of directions (34 for R = 5, 152 for R = 10).
    pub fn n_directions(&self) -> usize {
        self.directions.len()
    }

    /// Directions `(dy, dx)` in concatenation order.
    pub fn directions(&self) -> &[Offset] {
        &self.directions
    }

    /// Path points of direction `i` (destination first, origin last, as IRN sorts them).
    pub fn path(&self, i: usize) -> &[Offset] {
        &self.paths[i]
    }

    /// Source range on an `h×w` grid: rows `0..rows`, columns `col0..col0 + cols`, returned as
    /// `(rows, cols, col0)`. Every source plus every direction stays inside the grid.
    ///
    /// Errors when the grid is too small to hold one source.
    pub fn sources(&self, h: usize, w: usize) -> Result<(usize, usize, usize)> {
        let rf = self.r_f();
        if h <= rf || w <= 2 * rf {
            return Err(CoreError::Invalid(format!(
                "grid {h}×{w} too small for path radius {} (needs more than {rf} rows and {} columns)",
                self.radius,
                2 * rf
            )));
        }
        Ok((h - rf, w - 2 * rf, rf))
    }
}

/// Path of direction `d`: points of the bounding box of the origin and `d` whose squared
/// distance to the line through them is below 1, sorted by decreasing `|y| + |x|` (stable).
fn path_points(d: Offset) -> Vec<Offset> {
    let (dy, dx) = d;
    let len_sq = dy * dy + dx * dx;
    let mut pts = Vec::new();
    for y in dy.min(0)..=dy.max(0) {
        for x in dx.min(0)..=dx.max(0) {
            let cross = dy * x - dx * y;
            // Integer form of `cross² / len_sq < 1`, exact where IRN's float division is.
            if cross * cross < len_sq {
                pts.push((y, x));
            }
        }
    }
    pts.sort_by_key(|&(y, x)| -(y.abs() + x.abs()));
    pts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direction_counts_match_irn() {
        assert_eq!(PathIndex::new(5).unwrap().n_directions(), 34);
        assert_eq!(PathIndex::new(10).unwrap().n_directions(), 152);
        assert!(PathIndex::new(1).is_err());
    }

    #[test]
    fn paths_run_from_destination_to_origin() {
        let idx = PathIndex::new(5).unwrap();
        for (i, &d) in idx.directions().iter().enumerate() {
            let p = idx.path(i);
            assert_eq!(p[0], d);
            assert_eq!(*p.last().unwrap(), (0, 0));
        }
        // Sorted by path length, the shortest being the 4-neighbours (0,1) and (1,0).
        assert_eq!(&idx.directions()[..2], &[(0, 1), (1, 0)]);
        let lens: Vec<usize> = (0..idx.n_directions()).map(|i| idx.path(i).len()).collect();
        assert!(lens.windows(2).all(|w| w[0] <= w[1]));
        // A diagonal step: both corners lie at distance² 1/2 < 1 from the line.
        let diag = idx.directions().iter().position(|&d| d == (1, 1)).unwrap();
        assert_eq!(idx.path(diag), &[(1, 1), (0, 1), (1, 0), (0, 0)]);
        // (2, 1): every box point lies within distance² 4/5; ties keep raster order.
        let k = idx.directions().iter().position(|&d| d == (2, 1)).unwrap();
        let want = [(2, 1), (1, 1), (2, 0), (0, 1), (1, 0), (0, 0)];
        assert_eq!(idx.path(k), &want);
        // (0, 3): a straight ray keeps only the points on it.
        let k = idx.directions().iter().position(|&d| d == (0, 3)).unwrap();
        assert_eq!(idx.path(k), &[(0, 3), (0, 2), (0, 1), (0, 0)]);
    }

    #[test]
    fn sources_keep_the_margin() {
        let idx = PathIndex::new(5).unwrap();
        assert_eq!(idx.sources(29, 41).unwrap(), (25, 33, 4));
        assert!(idx.sources(4, 41).is_err());
        assert!(idx.sources(29, 8).is_err());
    }
}
