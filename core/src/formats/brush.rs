//! Label Studio brush RLE, bit-exact with label-studio-sdk 2.1.2 `converter.brush`
//! (`mask2rle` / `encode_rle` and `decode_rle`), for brush results in Label Studio tasks.
//!
//! The format is thi.ng `rle-pack`: a bit stream, most significant bit first, holding a 32-bit
//! value count, the word size − 1 (5 bits), four run-size field widths − 1 (4 bits each), then
//! records: `1`, a 2-bit index into the run sizes, the run length − 1 in that many bits and one
//! word (a run), or `0`, the same length header and that many literal words. The SDK encoder
//! always uses word size 8 and run sizes [3, 4, 8, 16], writes single values as a literal of
//! length 1, splits runs longer than 2^16, and pads with 1–8 zero bits (a whole zero byte when
//! the stream already ends on a byte boundary — kept, because Label Studio's lists have it).
//! A mask is flattened row-major with each pixel repeated 4 times (RGBA); decoding keeps the
//! alpha channel.

use crate::{CoreError, Result};

/// Run-size field widths the SDK encoder uses.
const RLE_SIZES: [u32; 4] = [3, 4, 8, 16];
/// Word size the SDK encoder uses.
const WORD_SIZE: u32 = 8;

/// Encodes a row-major `h × w` mask (values as stored, Label Studio expects 0/255) as the
/// SDK's `mask2rle` does: each pixel repeated 4 times, then [`encode_rle`].
pub fn mask2rle(mask: &[u8], h: usize, w: usize) -> Result<Vec<u8>> {
    if h.checked_mul(w) != Some(mask.len()) {
        return Err(CoreError::Invalid(format!(
            "mask has {} pixels, expected {h}x{w}",
            mask.len()
        )));
    }
    // Repeating every value 4 times multiplies every run by 4, so no RGBA copy is needed.
    let runs = runs(mask).map(|(len, v)| (len * 4, v));
    encode_runs(mask.len() as u64 * 4, runs)
}

/// Encodes a flat array as the SDK's `encode_rle(arr)` with its defaults (word size 8, run
/// sizes [3, 4, 8, 16]).
pub fn encode_rle(values: &[u8]) -> Result<Vec<u8>> {
    encode_runs(values.len() as u64, runs(values))
}

/// Maximal runs `(length, value)` of `values`.
fn runs(values: &[u8]) -> impl Iterator<Item = (u64, u8)> + '_ {
    values
        .chunk_by(|a, b| a == b)
        .map(|c| (c.len() as u64, c[0]))
}

fn encode_runs(num: u64, runs: impl Iterator<Item = (u64, u8)>) -> Result<Vec<u8>> {
    let num = u32::try_from(num)
        .map_err(|_| CoreError::Invalid(format!("{num} values do not fit the 32-bit header")))?;
    let mut out = BitWriter::default();
    out.write(num.into(), 32);
    out.write((WORD_SIZE - 1).into(), 5);
    for s in RLE_SIZES {
        out.write((s - 1).into(), 4);
    }
    for (len, v) in runs {
        let v = u64::from(v);
        match len {
            1 => {
                // a literal record of one word: flag 0, size index 0, length − 1 = 0
                out.write(0, 6);
                out.write(v, 8);
            }
            2..=8 => out.record(0b100, len - 1, 3, v),
            9..=16 => out.record(0b101, len - 1, 4, v),
            17..=256 => out.record(0b110, len - 1, 8, v),
            _ => {
                let mut rest = len;
                while rest > 1 << 16 {
                    out.record(0b111, (1 << 16) - 1, 16, v);
                    rest -= 1 << 16;
                }
                out.record(0b111, rest - 1, 16, v);
            }
        }
    }
    let pad = 8 - out.bits % 8; // 1..=8, as the SDK's `nzfill`
    out.write(0, pad as u32);
    Ok(out.bytes)
}

/// Decodes a Label Studio RLE list to its flat values (the SDK's `decode_rle`). Header fields
/// are honoured as written; word sizes above 8 are rejected because the SDK decodes into
/// `uint8`. Fails on a truncated stream.
pub fn decode_rle(rle: &[u8]) -> Result<Vec<u8>> {
    let mut input = BitReader { data: rle, pos: 0 };
    let num = input.read(32)? as usize;
    let word = input.read(5)? as u32 + 1;
    if word > 8 {
        return Err(bad(format!("word size {word} exceeds 8 bits")));
    }
    let mut sizes = [0u32; 4];
    for s in &mut sizes {
        *s = input.read(4)? as u32 + 1;
    }
    // Each record takes at least 4 bits and yields at most 2^16 values: refuse absurd counts
    // before allocating.
    if num as u64 > (rle.len() as u64 * 8 / 4 + 1) << 16 {
        return Err(bad(format!(
            "{num} values cannot fit in {} bytes",
            rle.len()
        )));
    }
    let mut out = vec![0u8; num];
    let mut i = 0;
    while i < num {
        let is_run = input.read(1)? == 1;
        let size = sizes[input.read(2)? as usize];
        let j = i + 1 + input.read(size)? as usize;
        if is_run {
            let v = input.read(word)? as u8;
            // numpy slice assignment clips a run that overshoots the end
            out[i..j.min(num)].fill(v);
            i = j;
        } else {
            if j > num {
                return Err(bad(format!("literal record overruns {num} values")));
            }
            while i < j {
                out[i] = input.read(word)? as u8;
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Decodes a brush RLE to a row-major `h × w` mask: the alpha channel of the RGBA stream, as
/// the SDK's `decode_from_annotation` does. Fails when the stream does not hold `h·w·4` values.
pub fn rle2mask(rle: &[u8], h: usize, w: usize) -> Result<Vec<u8>> {
    let flat = decode_rle(rle)?;
    let n = h
        .checked_mul(w)
        .and_then(|n| n.checked_mul(4))
        .ok_or_else(|| bad(format!("size {h}x{w} is too large")))?;
    if flat.len() != n {
        return Err(bad(format!(
            "holds {} values, a {h}x{w} RGBA mask needs {n}",
            flat.len()
        )));
    }
    Ok(flat.chunks_exact(4).map(|p| p[3]).collect())
}

fn bad(msg: impl std::fmt::Display) -> CoreError {
    CoreError::Invalid(format!("invalid Label Studio brush RLE: {msg}"))
}

/// MSB-first bit sink.
#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    bits: u64,
}

impl BitWriter {
    /// Appends the low `n` bits of `v`, most significant first.
    fn write(&mut self, v: u64, n: u32) {
        for k in (0..n).rev() {
            if self.bits.is_multiple_of(8) {
                self.bytes.push(0);
            }
            if (v >> k) & 1 == 1 {
                let last = self.bytes.len() - 1;
                self.bytes[last] |= 0x80 >> (self.bits % 8);
            }
            self.bits += 1;
        }
    }

    /// A run record: 3 header bits (flag and size index), the length field, the 8-bit word.
    fn record(&mut self, head: u64, len_minus_1: u64, width: u32, v: u64) {
        self.write(head, 3);
        self.write(len_minus_1, width);
        self.write(v, WORD_SIZE);
    }
}

/// MSB-first bit source that fails instead of reading past the end.
struct BitReader<'a> {
    data: &'a [u8],
    pos: u64,
}

impl BitReader<'_> {
    fn read(&mut self, n: u32) -> Result<u64> {
        if self.pos + u64::from(n) > self.data.len() as u64 * 8 {
            return Err(bad("the stream is truncated"));
        }
        let mut v = 0u64;
        for _ in 0..n {
            let byte = self.data[(self.pos / 8) as usize];
            v = (v << 1) | u64::from((byte >> (7 - self.pos % 8)) & 1);
            self.pos += 1;
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_run_classes_round_trip() {
        // lengths 1, 2..8, 9..16, 17..256, > 256 and > 2^16 (split) runs
        let mut v = vec![7u8];
        v.extend(std::iter::repeat_n(1, 5));
        v.extend(std::iter::repeat_n(2, 12));
        v.extend(std::iter::repeat_n(3, 200));
        v.extend(std::iter::repeat_n(4, 1000));
        v.extend(std::iter::repeat_n(5, 140_000));
        v.push(9);
        let rle = encode_rle(&v).unwrap();
        assert_eq!(decode_rle(&rle).unwrap(), v);
    }

    #[test]
    fn padding_adds_a_zero_byte_on_a_boundary() {
        // header 53 bits + one 19-bit run record = 72 bits → 8 more zero bits
        let rle = encode_rle(&[0u8; 140]).unwrap();
        assert_eq!(rle.len(), 10);
        assert_eq!(rle[9], 0);
    }

    #[test]
    fn bad_streams_are_errors() {
        let rle = mask2rle(&[255, 0, 0, 255], 2, 2).unwrap();
        assert_eq!(rle2mask(&rle, 2, 2).unwrap(), vec![255, 0, 0, 255]);
        assert!(rle2mask(&rle, 3, 2).is_err());
        assert!(decode_rle(&rle[..rle.len() - 3]).is_err());
        assert!(decode_rle(&[255, 255, 255, 255, 0, 0, 0]).is_err());
        assert!(mask2rle(&[0; 3], 2, 2).is_err());
    }
}
