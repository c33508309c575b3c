//! Felzenszwalb–Huttenlocher graph segmentation exactly as ICD's `segment_image` (§5.1).
//!
//! Every float step mirrors the C++ reference in float32 (mask construction, accumulation order
//! of the separable Gaussian, squared-distance sum order, `w + k/size` thresholds), so that the
//! edge weights and therefore the partition match it bit for bit. Edges are sorted stably by
//! weight (ties keep the enumeration order: pixels in raster order, then right, down,
//! down-right, up-right), which the fixtures were checked against.

use super::Segmentation;
use crate::{CoreError, Result};

/// Directions of the 4 edges enumerated per pixel, in the reference's order: right, down,
/// down-right, up-right, as (dx, dy).
const DIRS: [(isize, isize); 4] = [(1, 0), (0, 1), (1, 1), (1, -1)];

/// The normalised half-mask of the FH Gaussian: `len = ceil(4σ) + 1` taps
/// `exp(−½(i/σ)²)`, σ clamped to ≥ 0.01, scaled so that `g0 + 2Σ_{i≥1} gi = 1`.
pub fn gaussian_mask(sigma: f32) -> Vec<f32> {
    let sigma = sigma.max(0.01);
    // C++: `(int)ceil(sigma * 4.0) + 1` with sigma promoted to double.
    let len = (f64::from(sigma) * 4.0).ceil() as usize + 1;
    let mut mask: Vec<f32> = (0..len)
        .map(|i| {
            // C++: `exp(-0.5*square(i/sigma))`: the ratio and square in float, the rest in
            // double, stored as float.
            let r = i as f32 / sigma;
            (-0.5 * f64::from(r * r)).exp() as f32
        })
        .collect();
    let mut sum = 0f32;
    for m in &mask[1..] {
        sum += m.abs();
    }
    let sum = 2.0 * sum + mask[0].abs();
    for m in &mut mask {
        *m /= sum;
    }
    mask
}

/// One pass of the reference's `convolve_even`: filters each row of `src` (`w` wide, `h`
/// high) with the symmetric `mask`, clamping at the borders, and writes the result
/// transposed (`h` wide, `w` high), so two passes give horizontal-then-vertical smoothing.
fn convolve_even_transpose(src: &[f32], w: usize, h: usize, mask: &[f32], dst: &mut [f32]) {
    let last = w - 1;
    for y in 0..h {
        let row = &src[y * w..(y + 1) * w];
        for x in 0..w {
            let mut sum = mask[0] * row[x];
            for (i, &m) in mask.iter().enumerate().skip(1) {
                let l = row[x.saturating_sub(i)];
                let r = row[(x + i).min(last)];
                sum += m * (l + r);
            }
            dst[x * h + y] = sum;
        }
    }
}

/// Gaussian-smoothed channels of an interleaved RGB image (`height×width×3` bytes), returned
/// planar `[3][height·width]` in float32, exactly as the reference's `smooth`.
pub fn smooth(rgb: &[u8], width: usize, height: usize, sigma: f32) -> Result<Vec<Vec<f32>>> {
    check_dims(rgb, width, height)?;
    let mask = gaussian_mask(sigma);
    let n = width * height;
    let mut tmp = vec![0f32; n];
    let mut out = Vec::with_capacity(3);
    let mut plane = vec![0f32; n];
    for c in 0..3 {
        for (p, px) in plane.iter_mut().zip(rgb.chunks_exact(3)) {
            *p = f32::from(px[c]);
        }
        convolve_even_transpose(&plane, width, height, &mask, &mut tmp);
        let mut dst = vec![0f32; n];
        convolve_even_transpose(&tmp, height, width, &mask, &mut dst);
        out.push(dst);
    }
    Ok(out)
}

fn check_dims(rgb: &[u8], width: usize, height: usize) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(CoreError::Invalid(format!(
            "superpixels: empty image ({width}×{height})"
        )));
    }
    if rgb.len() != width * height * 3 {
        return Err(CoreError::Invalid(format!(
            "superpixels: {} bytes for a {width}×{height} RGB image (expected {})",
            rgb.len(),
            width * height * 3
        )));
    }
    if width * height > (u32::MAX / 4) as usize {
        return Err(CoreError::Invalid(format!(
            "superpixels: image {width}×{height} is too large"
        )));
    }
    Ok(())
}

/// Union-find with union by rank and path compression, as the reference's `universe`
/// (`find` compresses only the queried node, like the C++).
struct Universe {
    parent: Vec<u32>,
    rank: Vec<u8>,
    size: Vec<u32>,
}

impl Universe {
    fn new(n: usize) -> Self {
        Universe {
            parent: (0..n as u32).collect(),
            rank: vec![0; n],
            size: vec![1; n],
        }
    }

    #[inline]
    fn find(&mut self, x: u32) -> u32 {
        let mut y = x;
        while self.parent[y as usize] != y {
            y = self.parent[y as usize];
        }
        self.parent[x as usize] = y;
        y
    }

    /// Joins roots `x` and `y`; returns the new root.
    #[inline]
    fn join(&mut self, x: u32, y: u32) -> u32 {
        let (xi, yi) = (x as usize, y as usize);
        if self.rank[xi] > self.rank[yi] {
            self.parent[yi] = x;
            self.size[xi] += self.size[yi];
            x
        } else {
            self.parent[xi] = y;
            self.size[yi] += self.size[xi];
            if self.rank[xi] == self.rank[yi] {
                self.rank[yi] += 1;
            }
            y
        }
    }
}

/// Stable LSD radix sort of `(key, payload)` pairs by `key` (11-bit digits; passes whose digit
/// is constant are skipped). Non-negative f32 weights sort correctly by their bit patterns.
fn radix_sort(items: &mut Vec<(u32, u32)>) {
    let mut buf = vec![(0u32, 0u32); items.len()];
    for shift in [0u32, 11, 22] {
        let mut count = [0usize; 2048];
        for &(k, _) in items.iter() {
            count[((k >> shift) & 0x7ff) as usize] += 1;
        }
        if count.iter().any(|&c| c == items.len()) {
            continue; // every key has the same digit: the pass would not move anything
        }
        let mut pos = 0;
        for c in count.iter_mut() {
            let n = *c;
            *c = pos;
            pos += n;
        }
        for &it in items.iter() {
            let d = ((it.0 >> shift) & 0x7ff) as usize;
            buf[count[d]] = it;
            count[d] += 1;
        }
        std::mem::swap(items, &mut buf);
    }
}

/// FH segmentation of an interleaved RGB image (`height×width×3` bytes) with smoothing
/// `sigma`, scale `k` and minimum component size `min_size` (§5.1). Labels are numbered in
/// raster order of first appearance.
pub fn segment(
    rgb: &[u8],
    width: usize,
    height: usize,
    sigma: f32,
    k: f32,
    min_size: usize,
) -> Result<Segmentation> {
    if !(k.is_finite() && k >= 0.0 && sigma.is_finite()) {
        return Err(CoreError::Invalid(format!(
            "superpixels: FH needs finite sigma and k ≥ 0 (got sigma {sigma}, k {k})"
        )));
    }
    let sm = smooth(rgb, width, height, sigma)?;
    Ok(segment_smoothed(&sm, width, height, k, min_size))
}

/// FH on already smoothed planar channels (see [`smooth`]).
fn segment_smoothed(
    sm: &[Vec<f32>],
    width: usize,
    height: usize,
    k: f32,
    min_size: usize,
) -> Segmentation {
    let n = width * height;
    let (r, g, b) = (&sm[0], &sm[1], &sm[2]);
    // The edge is encoded in the payload as pixel·4 + direction, so no per-edge struct is needed.
    let mut edges: Vec<(u32, u32)> = Vec::with_capacity(4 * n);
    for y in 0..height {
        for x in 0..width {
            let a = y * width + x;
            for (d, &(dx, dy)) in DIRS.iter().enumerate() {
                let (nx, ny) = (x as isize + dx, y as isize + dy);
                if nx as usize >= width || ny < 0 || ny as usize >= height {
                    continue;
                }
                let bi = ny as usize * width + nx as usize;
                let dr = r[a] - r[bi];
                let dg = g[a] - g[bi];
                let db = b[a] - b[bi];
                let w = (dr * dr + dg * dg + db * db).sqrt();
                edges.push((w.to_bits(), (a * 4 + d) as u32));
            }
        }
    }
    radix_sort(&mut edges);
    let other = |p: u32| -> (u32, u32) {
        let a = (p >> 2) as usize;
        let (dx, dy) = DIRS[(p & 3) as usize];
        let bi = (a as isize + dy * width as isize + dx) as u32;
        (a as u32, bi)
    };

    let mut u = Universe::new(n);
    let mut thr = vec![k; n];
    for &(wb, p) in &edges {
        let w = f32::from_bits(wb);
        let (a, b) = other(p);
        let ra = u.find(a);
        let rb = u.find(b);
        if ra != rb && w <= thr[ra as usize] && w <= thr[rb as usize] {
            let root = u.join(ra, rb);
            thr[root as usize] = w + k / u.size[root as usize] as f32;
        }
    }
    for &(_, p) in &edges {
        let (a, b) = other(p);
        let ra = u.find(a);
        let rb = u.find(b);
        if ra != rb
            && ((u.size[ra as usize] as usize) < min_size
                || (u.size[rb as usize] as usize) < min_size)
        {
            u.join(ra, rb);
        }
    }

    let mut map = vec![u32::MAX; n];
    let mut labels = vec![0u32; n];
    let mut count = 0u32;
    for (i, l) in labels.iter_mut().enumerate() {
        let root = u.find(i as u32) as usize;
        if map[root] == u32::MAX {
            map[root] = count;
            count += 1;
        }
        *l = map[root];
    }
    Segmentation {
        width,
        height,
        labels,
        count: count as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_is_normalised_with_five_taps() {
        let m = gaussian_mask(0.8);
        assert_eq!(m.len(), 5);
        let total: f32 = m[0] + 2.0 * m[1..].iter().sum::<f32>();
        assert!((total - 1.0).abs() < 1e-6);
        assert!(m.windows(2).all(|w| w[0] > w[1]));
    }

    #[test]
    fn radix_sort_is_stable() {
        let mut v: Vec<(u32, u32)> = (0..5000u32).map(|i| ((i * 7919) % 13 << 20, i)).collect();
        let mut want = v.clone();
        want.sort_by_key(|e| e.0);
        radix_sort(&mut v);
        assert_eq!(v, want);
    }

    #[test]
    fn two_flat_halves_give_two_regions() {
        let (w, h) = (20, 10);
        let mut rgb = vec![0u8; w * h * 3];
        for y in 0..h {
            for x in w / 2..w {
                rgb[(y * w + x) * 3..][..3].copy_from_slice(&[200, 30, 30]);
            }
        }
        let s = segment(&rgb, w, h, 0.8, 75.0, 20).unwrap();
        assert_eq!(s.count, 2);
        assert_eq!(s.labels[0], 0);
        assert_eq!(s.labels[w - 1], 1);
        assert!(
            s.labels
                .iter()
                .enumerate()
                .all(|(i, &l)| l == u32::from(i % w >= w / 2))
        );
    }

    #[test]
    fn bad_dimensions_are_errors() {
        assert!(segment(&[0; 5], 2, 1, 0.8, 75.0, 1).is_err());
        assert!(segment(&[], 0, 0, 0.8, 75.0, 1).is_err());
    }
}
