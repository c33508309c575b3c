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

/// Horizontal pass of the reference's `convolve_even` on one row: `sum = g0·v[x]`, then
/// `sum += gi·(v[x−i] + v[x+i])` for i = 1… with clamped indices. The row is padded with its
/// border values so the loop has no branches and vectorises; every output sees exactly the
/// reference's operations in the reference's order, so results are bit-identical.
fn smooth_row(row: &[f32], mask: &[f32], pad: &mut Vec<f32>, out: &mut [f32]) {
    let l = mask.len() - 1;
    let (first, last) = (row[0], row[row.len() - 1]);
    pad.clear();
    pad.extend(std::iter::repeat_n(first, l));
    pad.extend_from_slice(row);
    pad.extend(std::iter::repeat_n(last, l));
    for (o, &v) in out.iter_mut().zip(row) {
        *o = mask[0] * v;
    }
    for (i, &m) in mask.iter().enumerate().skip(1) {
        let (left, right) = (&pad[l - i..], &pad[l + i..]);
        for ((o, &a), &b) in out.iter_mut().zip(left).zip(right) {
            *o += m * (a + b);
        }
    }
}

/// Vertical pass: output row `y` from rows `y±i` (clamped), same operation order as above.
fn smooth_cols(src: &[f32], w: usize, h: usize, mask: &[f32], dst: &mut [f32]) {
    for y in 0..h {
        let out = &mut dst[y * w..(y + 1) * w];
        for (o, &v) in out.iter_mut().zip(&src[y * w..(y + 1) * w]) {
            *o = mask[0] * v;
        }
        for (i, &m) in mask.iter().enumerate().skip(1) {
            let (yu, yd) = (y.saturating_sub(i), (y + i).min(h - 1));
            let (up, down) = (&src[yu * w..(yu + 1) * w], &src[yd * w..(yd + 1) * w]);
            for ((o, &a), &b) in out.iter_mut().zip(up).zip(down) {
                *o += m * (a + b);
            }
        }
    }
}

/// Gaussian-smoothed channels of an interleaved RGB image (`height×width×3` bytes), returned
/// planar `[3][height·width]` in float32, exactly as the reference's `smooth` (horizontal,
/// then vertical).
pub fn smooth(rgb: &[u8], width: usize, height: usize, sigma: f32) -> Result<Vec<Vec<f32>>> {
    check_dims(rgb, width, height)?;
    let mask = gaussian_mask(sigma);
    let n = width * height;
    let mut plane = vec![0f32; width];
    let mut pad = Vec::with_capacity(width + 2 * mask.len());
    let mut tmp = vec![0f32; n];
    let mut out = Vec::with_capacity(3);
    for c in 0..3 {
        for (y, t) in tmp.chunks_exact_mut(width).enumerate() {
            let px = &rgb[y * width * 3..(y + 1) * width * 3];
            for (p, v) in plane.iter_mut().zip(px.chunks_exact(3)) {
                *p = f32::from(v[c]);
            }
            smooth_row(&plane, &mask, &mut pad, t);
        }
        let mut dst = vec![0f32; n];
        smooth_cols(&tmp, width, height, &mask, &mut dst);
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

/// Marks a root in [`Forest`]'s parent words; the other 31 bits then hold the tree's size.
const ROOT: u32 = 1 << 31;

/// Union-find with path halving and union by size. Each element has one word, its parent or
/// for a root `ROOT | size`, and a payload `T` that only roots use (FH keeps the component's
/// merge threshold there, next to the word a lookup ends on). The reference's `universe`
/// unites by rank and compresses differently, which changes which element is a root but never
/// the partition: every merge decision depends only on components (sizes and thresholds).
/// Eight bytes per pixel keep the forest of a 500×375 image in L2 cache; the random lookups
/// of the sorted-edge loop are much of FH's time.
struct Forest<T> {
    nodes: Vec<(u32, T)>,
}

impl<T: Copy> Forest<T> {
    /// Singletons with payload `init`.
    fn new(n: usize, init: T) -> Self {
        Forest {
            nodes: vec![(ROOT | 1, init); n],
        }
    }

    #[inline]
    fn find(&mut self, mut x: u32) -> u32 {
        loop {
            let p = self.nodes[x as usize].0;
            if p & ROOT != 0 {
                return x;
            }
            let gp = self.nodes[p as usize].0;
            if gp & ROOT != 0 {
                return p;
            }
            self.nodes[x as usize].0 = gp;
            x = gp;
        }
    }

    /// Size of the tree rooted at `root`.
    #[inline]
    fn size(&self, root: u32) -> u32 {
        self.nodes[root as usize].0 & !ROOT
    }

    /// The payload of `root`.
    #[inline]
    fn get(&self, root: u32) -> T {
        self.nodes[root as usize].1
    }

    /// Joins roots `x ≠ y`, giving the new root payload `value`; returns the new root.
    #[inline]
    fn join(&mut self, x: u32, y: u32, value: impl FnOnce(u32) -> T) -> u32 {
        let (sx, sy) = (self.size(x), self.size(y));
        let (child, root) = if sx > sy { (y, x) } else { (x, y) };
        self.nodes[child as usize].0 = root;
        self.nodes[root as usize] = (ROOT | (sx + sy), value(sx + sy));
        root
    }
}

/// Stable LSD radix sort of `(key, payload)` pairs by `key` (11-bit digits; passes whose digit
/// is constant are skipped). Non-negative f32 weights sort correctly by their bit patterns.
fn radix_sort(items: &mut Vec<(u32, u32)>, buf: &mut Vec<(u32, u32)>) {
    const SHIFTS: [u32; 3] = [0, 11, 22];
    // All three digit histograms in one read pass.
    let mut count = vec![[0usize; 2048]; 3];
    for &(k, _) in items.iter() {
        for (c, s) in count.iter_mut().zip(SHIFTS) {
            c[((k >> s) & 0x7ff) as usize] += 1;
        }
    }
    buf.clear();
    buf.resize(items.len(), (0, 0));
    for (count, shift) in count.iter_mut().zip(SHIFTS) {
        if count.contains(&items.len()) {
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
        std::mem::swap(items, buf);
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

thread_local! {
    /// The edge array and the sort's buffer, kept per thread between images: fresh 6 MB
    /// arrays for every image cost page faults and zeroing worth about a tenth of FH's time.
    static EDGE_BUFFERS: std::cell::Cell<[Vec<(u32, u32)>; 2]> = const {
        std::cell::Cell::new([Vec::new(), Vec::new()])
    };
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
    // Slot `pixel·4 + direction` holds that edge, keyed by its weight's bits; the payload is
    // the slot itself, so the array starts in enumeration order (what the stable sort keeps
    // among ties) and each direction fills in a branch-free loop. Missing edges (off the
    // image) keep the key u32::MAX, sort last and are cut off.
    let [mut edges, mut buf] = EDGE_BUFFERS.take();
    edges.clear();
    edges.extend((0..4 * n as u32).map(|p| (u32::MAX, p)));
    let mut valid = 0usize;
    for (d, &(dx, dy)) in DIRS.iter().enumerate() {
        let (ys, ye) = (usize::from(dy < 0), height - usize::from(dy > 0));
        let xe = width - dx as usize;
        for y in ys..ye {
            let row = y * width;
            let nrow = (y as isize + dy) as usize * width + dx as usize;
            let (ra, ga, ba) = (&r[row..row + xe], &g[row..row + xe], &b[row..row + xe]);
            let (rb, gb, bb) = (
                &r[nrow..nrow + xe],
                &g[nrow..nrow + xe],
                &b[nrow..nrow + xe],
            );
            let slots = &mut edges[row * 4..(row + xe) * 4];
            for x in 0..xe {
                let dr = ra[x] - rb[x];
                let dg = ga[x] - gb[x];
                let db = ba[x] - bb[x];
                let w = (dr * dr + dg * dg + db * db).sqrt();
                slots[x * 4 + d].0 = w.to_bits();
            }
            valid += xe;
        }
    }
    radix_sort(&mut edges, &mut buf);
    edges.truncate(valid);
    let other = |p: u32| -> (u32, u32) {
        let a = (p >> 2) as usize;
        let (dx, dy) = DIRS[(p & 3) as usize];
        let bi = (a as isize + dy * width as isize + dx) as u32;
        (a as u32, bi)
    };

    // Roots carry their component's threshold (`w + k/size` after its last merge).
    let mut u = Forest::new(n, k);
    // Edges whose ends were in different components when they were rejected: the only ones
    // the cleanup can still use (components only grow), in sorted order.
    let mut rest: Vec<u32> = Vec::new();
    for &(wb, p) in &edges {
        let w = f32::from_bits(wb);
        let (a, b) = other(p);
        let ra = u.find(a);
        let rb = u.find(b);
        if ra == rb {
            continue;
        }
        if w <= u.get(ra) && w <= u.get(rb) {
            u.join(ra, rb, |size| w + k / size as f32);
        } else {
            rest.push(p);
        }
    }
    EDGE_BUFFERS.set([edges, buf]);

    // Components, numbered in raster order of first appearance, and their sizes.
    let mut comp = vec![0u32; n];
    let mut id = vec![u32::MAX; n];
    let mut sizes: Vec<u32> = Vec::new();
    for (i, c) in comp.iter_mut().enumerate() {
        let root = u.find(i as u32);
        let slot = &mut id[root as usize];
        if *slot == u32::MAX {
            *slot = sizes.len() as u32;
            sizes.push(u.size(root));
        }
        *c = *slot;
    }
    drop(id);

    // Cleanup on the component graph: the same decisions as on pixels (they depend only on
    // component sizes), on a forest small enough for L1. It stops once no component is below
    // min_size: no later edge could join anything.
    let small = |s: u32| usize::from((s as usize) < min_size);
    let mut n_small: usize = sizes.iter().map(|&s| small(s)).sum();
    let mut cu = Forest {
        nodes: sizes.iter().map(|&s| (ROOT | s, ())).collect(),
    };
    for &p in &rest {
        if n_small == 0 {
            break;
        }
        let (a, b) = other(p);
        let ra = cu.find(comp[a as usize]);
        let rb = cu.find(comp[b as usize]);
        let (sa, sb) = (cu.size(ra), cu.size(rb));
        if ra != rb && (small(sa) + small(sb)) > 0 {
            let root = cu.join(ra, rb, |_| ());
            n_small = n_small + small(cu.size(root)) - small(sa) - small(sb);
        }
    }

    // Final labels in raster order of first appearance. Component ids already are in that
    // order, so a merged component takes the label of its first-seen member.
    let mut map = vec![u32::MAX; sizes.len()];
    let mut count = 0u32;
    for c in comp.iter_mut() {
        let root = cu.find(*c) as usize;
        if map[root] == u32::MAX {
            map[root] = count;
            count += 1;
        }
        *c = map[root];
    }
    Segmentation {
        width,
        height,
        labels: comp,
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
        let mut v: Vec<(u32, u32)> = (0..5000u32).map(|i| (((i * 7919) % 13) << 20, i)).collect();
        let mut want = v.clone();
        want.sort_by_key(|e| e.0);
        radix_sort(&mut v, &mut Vec::new());
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
