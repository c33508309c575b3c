//! Path affinities from a boundary map (§4.4) and the padding of the random walk (§4.7a).
//!
//! `aff(p, p+d) = 1 − max over the path points q of d of B(p + q)`: two pixels are related
//! unless a boundary crosses the straight path between them.

use super::paths::PathIndex;
use crate::{CoreError, Result};

/// Affinities of every (direction, source) pair of an `h×w` boundary map `edge` (row-major,
/// values in [0, 1]), laid out `[n_directions × n_sources]` with the sources of
/// [`PathIndex::sources`] in row-major order, as IRN's `edge_to_affinity` returns them.
pub fn path_affinity(edge: &[f32], h: usize, w: usize, index: &PathIndex) -> Result<Vec<f32>> {
    check_len(edge, h, w)?;
    let (rows, cols, col0) = index.sources(h, w)?;
    let mut out = Vec::with_capacity(index.n_directions() * rows * cols);
    for k in 0..index.n_directions() {
        let path = index.path(k);
        for i in 0..rows {
            for j in col0..col0 + cols {
                out.push(1.0 - path_max(edge, w, i, j, path));
            }
        }
    }
    Ok(out)
}

/// Pads `edge` as the walk does (§4.7a): value 1.0 (a boundary everywhere outside), no rows
/// on top, `radius` rows at the bottom, `radius` columns left and right. Returns the padded
/// map and its size `(h + radius, w + 2·radius)`.
pub fn pad_edge(
    edge: &[f32],
    h: usize,
    w: usize,
    radius: usize,
) -> Result<(Vec<f32>, usize, usize)> {
    check_len(edge, h, w)?;
    let (hp, wp) = (h + radius, w + 2 * radius);
    let mut out = vec![1.0f32; hp * wp];
    for (i, row) in edge.chunks_exact(w).enumerate() {
        out[i * wp + radius..i * wp + radius + w].copy_from_slice(row);
    }
    Ok((out, hp, wp))
}

/// [`path_affinity`] on the padded map of [`pad_edge`]: the `aff_padded` tensor of the
/// reference walk.
pub fn padded_affinity(edge: &[f32], h: usize, w: usize, index: &PathIndex) -> Result<Vec<f32>> {
    let (padded, hp, wp) = pad_edge(edge, h, w, index.radius())?;
    path_affinity(&padded, hp, wp, index)
}

/// Maximum of `edge` over `path` shifted to source `(i, j)`; the caller guarantees that every
/// shifted point lies inside the grid.
pub(crate) fn path_max(edge: &[f32], w: usize, i: usize, j: usize, path: &[(isize, isize)]) -> f32 {
    path.iter()
        .map(|&(dy, dx)| {
            let y = (i as isize + dy) as usize;
            let x = (j as isize + dx) as usize;
            edge[y * w + x]
        })
        .fold(f32::NEG_INFINITY, f32::max)
}

pub(crate) fn check_len(edge: &[f32], h: usize, w: usize) -> Result<()> {
    if h == 0 || w == 0 || edge.len() != h * w {
        return Err(CoreError::Invalid(format!(
            "boundary map has {} values, expected a non-empty {h}×{w} grid",
            edge.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_boundary_on_the_path_blocks_the_pair() {
        let idx = PathIndex::new(2).unwrap();
        // R = 2: directions (0,1), (1,-1), (1,0), (1,1) in some length order; 3×4 grid,
        // r_f = 1 → sources rows 0..2, columns 1..3.
        let (h, w) = (3, 4);
        let mut edge = vec![0.0f32; h * w];
        edge[w + 2] = 0.75; // pixel (1, 2)
        let aff = path_affinity(&edge, h, w, &idx).unwrap();
        let n_src = 2 * 2;
        for (k, &(dy, dx)) in idx.directions().iter().enumerate() {
            for s in 0..n_src {
                let (i, j) = (s / 2, 1 + s % 2);
                let path = idx.path(k);
                let touches = path
                    .iter()
                    .any(|&(py, px)| (i as isize + py, j as isize + px) == (1, 2));
                let want = if touches { 0.25 } else { 1.0 };
                assert_eq!(aff[k * n_src + s], want, "d=({dy},{dx}) src=({i},{j})");
            }
        }
    }

    #[test]
    fn padding_is_a_wall_of_ones() {
        let (p, hp, wp) = pad_edge(&[0.5, 0.25], 1, 2, 2).unwrap();
        assert_eq!((hp, wp), (3, 6));
        assert_eq!(&p[..6], &[1.0, 1.0, 0.5, 0.25, 1.0, 1.0]);
        assert!(p[6..].iter().all(|&v| v == 1.0));
        assert!(pad_edge(&[0.5], 1, 2, 2).is_err());
    }
}
