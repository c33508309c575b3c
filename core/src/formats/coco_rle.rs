//! COCO run-length encoding, bit-exact with pycocotools 2.0.x (`maskApi.c`), for the COCO JSON
//! writer and reader (annotation-tool integration, §1.4 masks).
//!
//! A mask of `h × w` is read in column-major (Fortran) order, because that is how pycocotools
//! stores masks; the runs alternate starting with zeros (a mask whose first pixel is set starts
//! with a zero-length run). The compressed `counts` string is pycocotools' `rleToString`: each
//! count (after the third, minus the count two places before it, so alternating runs of similar
//! length become small numbers) is written as signed 5-bit groups, least significant first,
//! bit 0x20 meaning "more groups follow", each group offset by 48 into printable ASCII.

use serde::{Deserialize, Serialize};

use crate::{CoreError, Result};

/// A compressed COCO RLE, the JSON object `{"size": [h, w], "counts": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rle {
    /// `[height, width]` of the mask.
    pub size: [u32; 2],
    /// The compressed counts string of pycocotools `rleToString`.
    pub counts: String,
}

/// Column-major run lengths of a binary row-major mask (`mask[y * w + x]`, non-zero = set),
/// starting with a run of zeros. This is pycocotools' uncompressed RLE `counts` list.
///
/// Fails when `mask.len() != h * w`.
pub fn uncompressed_counts(mask: &[u8], h: usize, w: usize) -> Result<Vec<u32>> {
    check_len(mask.len(), h, w)?;
    let mut counts = Vec::new();
    let (mut prev, mut run) = (false, 0u32);
    for x in 0..w {
        for y in 0..h {
            let v = mask[y * w + x] != 0;
            if v != prev {
                counts.push(run);
                run = 0;
                prev = v;
            }
            run += 1;
        }
    }
    counts.push(run);
    Ok(counts)
}

/// Encodes a binary row-major mask (non-zero = set) of `h × w` as compressed COCO RLE, exactly
/// as `pycocotools.mask.encode` does on the Fortran-ordered mask.
pub fn encode(mask: &[u8], h: usize, w: usize) -> Result<Rle> {
    let counts = uncompressed_counts(mask, h, w)?;
    Ok(Rle {
        size: [to_u32(h)?, to_u32(w)?],
        counts: counts_to_string(&counts),
    })
}

/// pycocotools `rleToString`: compresses run lengths into the COCO counts string.
pub fn counts_to_string(counts: &[u32]) -> String {
    let mut s = String::with_capacity(counts.len() * 2);
    for (i, &c) in counts.iter().enumerate() {
        let mut x = i64::from(c);
        if i > 2 {
            x -= i64::from(counts[i - 2]);
        }
        loop {
            let mut c = (x & 0x1f) as u8;
            x >>= 5; // arithmetic shift, as on C `long`
            let more = if c & 0x10 != 0 { x != -1 } else { x != 0 };
            if more {
                c |= 0x20;
            }
            s.push(char::from(c + 48));
            if !more {
                break;
            }
        }
    }
    s
}

/// pycocotools `rleFrString`: the run lengths of a compressed counts string.
///
/// Fails on characters outside the alphabet, a truncated last number, or a count that is
/// negative or does not fit 32 bits.
pub fn counts_from_string(s: &str) -> Result<Vec<u32>> {
    let bytes = s.as_bytes();
    let mut counts: Vec<u32> = Vec::new();
    let mut p = 0;
    while p < bytes.len() {
        let (mut x, mut k, mut more) = (0i64, 0u32, true);
        while more {
            let Some(&b) = bytes.get(p) else {
                return Err(bad_counts("the last number is truncated"));
            };
            if !(48..48 + 64).contains(&b) || k > 12 {
                return Err(bad_counts(format!("invalid character {:?}", b as char)));
            }
            let c = i64::from(b - 48);
            x |= (c & 0x1f) << (5 * k);
            more = c & 0x20 != 0;
            p += 1;
            k += 1;
            if !more && c & 0x10 != 0 {
                x |= -1i64 << (5 * k); // sign extension
            }
        }
        if counts.len() > 2 {
            x += i64::from(counts[counts.len() - 2]);
        }
        let c = u32::try_from(x).map_err(|_| bad_counts(format!("count {x} out of range")))?;
        counts.push(c);
    }
    Ok(counts)
}

impl Rle {
    /// The run lengths (uncompressed counts) of this RLE.
    pub fn uncompressed(&self) -> Result<Vec<u32>> {
        counts_from_string(&self.counts)
    }

    /// Height of the mask.
    pub fn height(&self) -> usize {
        self.size[0] as usize
    }

    /// Width of the mask.
    pub fn width(&self) -> usize {
        self.size[1] as usize
    }
}

/// Decodes to a row-major 0/1 mask of `size[0] × size[1]`. Fails when the runs do not cover
/// the mask exactly (pycocotools would read or write out of bounds).
pub fn decode(rle: &Rle) -> Result<Vec<u8>> {
    decode_counts(&rle.uncompressed()?, rle.height(), rle.width())
}

/// Decodes column-major run lengths to a row-major 0/1 mask of `h × w`.
pub fn decode_counts(counts: &[u32], h: usize, w: usize) -> Result<Vec<u8>> {
    let n = h
        .checked_mul(w)
        .ok_or_else(|| CoreError::Invalid(format!("RLE size {h}x{w} is too large")))?;
    let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
    if total != n as u64 {
        return Err(bad_counts(format!(
            "runs cover {total} pixels, the mask {h}x{w} has {n}"
        )));
    }
    let mut mask = vec![0u8; n];
    let (mut i, mut v) = (0usize, 0u8);
    for &c in counts {
        if v == 1 {
            for k in i..i + c as usize {
                // column-major index k → row-major (y, x)
                mask[(k % h) * w + k / h] = 1;
            }
        }
        i += c as usize;
        v ^= 1;
    }
    Ok(mask)
}

/// Number of set pixels (pycocotools `area`).
pub fn area(rle: &Rle) -> Result<u64> {
    Ok(area_counts(&rle.uncompressed()?))
}

/// Number of set pixels from run lengths (the odd-indexed runs).
pub fn area_counts(counts: &[u32]) -> u64 {
    counts
        .iter()
        .skip(1)
        .step_by(2)
        .map(|&c| u64::from(c))
        .sum()
}

/// Bounding box `[x, y, w, h]` (pycocotools `toBbox`); all zeros for an empty mask.
pub fn to_bbox(rle: &Rle) -> Result<[f64; 4]> {
    Ok(bbox_counts(&rle.uncompressed()?, rle.height(), rle.width()))
}

/// pycocotools `rleToBbox` on run lengths of an `h × w` mask. Mirrors its unsigned 32-bit
/// arithmetic so odd (hand-made) inputs give the same box instead of a panic.
pub fn bbox_counts(counts: &[u32], h: usize, w: usize) -> [f64; 4] {
    let (h, w) = (h as u32, w as u32);
    let m = counts.len() / 2 * 2;
    if m == 0 || h == 0 {
        return [0.0; 4];
    }
    let (mut xs, mut ys, mut xe, mut ye) = (w, h, 0u32, 0u32);
    let (mut cc, mut xp) = (0u32, 0u32);
    for (j, &c) in counts[..m].iter().enumerate() {
        cc = cc.wrapping_add(c);
        let t = cc.wrapping_sub((j % 2) as u32);
        let y = t % h;
        let x = (t - y) / h;
        if j % 2 == 0 {
            xp = x;
        } else if xp < x {
            // the run wraps to a later column, so it spans every row
            ys = 0;
            ye = h - 1;
        }
        xs = xs.min(x);
        xe = xe.max(x);
        ys = ys.min(y);
        ye = ye.max(y);
    }
    [
        f64::from(xs),
        f64::from(ys),
        f64::from(xe.wrapping_sub(xs).wrapping_add(1)),
        f64::from(ye.wrapping_sub(ys).wrapping_add(1)),
    ]
}

fn check_len(len: usize, h: usize, w: usize) -> Result<()> {
    if h.checked_mul(w) != Some(len) {
        return Err(CoreError::Invalid(format!(
            "mask has {len} pixels, expected {h}x{w}"
        )));
    }
    Ok(())
}

fn to_u32(v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| CoreError::Invalid(format!("mask side {v} is too large")))
}

fn bad_counts(msg: impl std::fmt::Display) -> CoreError {
    CoreError::Invalid(format!("invalid COCO RLE counts: {msg}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_major_runs() {
        // 2x3, row-major: [1 0 0; 1 1 0] → columns (1,1),(0,1),(0,0)
        let m = [1, 0, 0, 1, 1, 0];
        assert_eq!(uncompressed_counts(&m, 2, 3).unwrap(), vec![0, 2, 1, 1, 2]);
        let rle = encode(&m, 2, 3).unwrap();
        assert_eq!(decode(&rle).unwrap(), m.to_vec());
        assert_eq!(area(&rle).unwrap(), 3);
        assert_eq!(to_bbox(&rle).unwrap(), [0.0, 0.0, 2.0, 2.0]);
    }

    #[test]
    fn large_and_negative_deltas_round_trip() {
        let counts = vec![70_000, 3, 5, 100_000, 1, 2, 40_000, 7];
        let s = counts_to_string(&counts);
        assert_eq!(counts_from_string(&s).unwrap(), counts);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(counts_from_string("0 ").is_err());
        assert!(counts_from_string("o").is_err(), "truncated (more bit set)");
        assert!(decode_counts(&[3, 2], 2, 3).is_err());
        assert!(encode(&[0; 5], 2, 3).is_err());
    }
}
