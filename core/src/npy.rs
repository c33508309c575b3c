//! NumPy `.npy` files (§1.3, §1.4): the label tables of the reference code.
//!
//! IRN/SSC ship `cls_labels.npy` (an object array holding a pickled dict, see
//! [`crate::pickle`]) and BECO ships COCO `train_labels.npy` (a plain float `[N, 80]` array).
//! This reader handles format versions 1–3, little/big-endian bool, integer and float dtypes,
//! C and Fortran order (always returned row-major) and object arrays.

use std::path::Path;

use crate::pickle::{self, PyValue};
use crate::{CoreError, Result, atomic};

/// Element type of a numeric array: kind (`b` bool, `i` int, `u` unsigned, `f` float,
/// `O` object), byte size and byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DType {
    /// NumPy kind character.
    pub kind: char,
    /// Bytes per element.
    pub size: usize,
    /// `true` for big-endian data.
    pub big_endian: bool,
}

impl DType {
    /// Parses a descriptor such as `<f4`, `|u1`, `>i2`, `|O` or (pickle form) `f4`, `O8`.
    pub fn parse(descr: &str) -> Option<DType> {
        let (big_endian, rest) = match descr.chars().next()? {
            '<' | '|' | '=' => (false, &descr[1..]),
            '>' | '!' => (true, &descr[1..]),
            _ => (false, descr),
        };
        let kind = rest.chars().next()?;
        let size: usize = if rest.len() == 1 {
            if kind == 'O' { 8 } else { return None }
        } else {
            rest[1..].parse().ok()?
        };
        let ok = match kind {
            'b' => size == 1,
            'i' | 'u' => matches!(size, 1 | 2 | 4 | 8),
            'f' => matches!(size, 4 | 8),
            'O' => true,
            _ => false,
        };
        ok.then_some(DType {
            kind,
            size,
            big_endian,
        })
    }
}

/// Decoded array elements.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyData {
    /// Booleans.
    Bool(Vec<bool>),
    /// Any integer dtype, widened.
    Int(Vec<i64>),
    /// `float32`.
    F32(Vec<f32>),
    /// `float64`.
    F64(Vec<f64>),
    /// Python objects of an object array, row-major.
    Object(Vec<PyValue>),
}

/// An n-dimensional array, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// Dimensions (empty for a 0-d array, which holds one element).
    pub shape: Vec<usize>,
    /// The elements.
    pub data: NpyData,
}

impl NpyArray {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match &self.data {
            NpyData::Bool(v) => v.len(),
            NpyData::Int(v) => v.len(),
            NpyData::F32(v) => v.len(),
            NpyData::F64(v) => v.len(),
            NpyData::Object(v) => v.len(),
        }
    }

    /// `true` when the array has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Numeric elements as `f32`, or `None` for an object array.
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        Some(match &self.data {
            NpyData::Bool(v) => v.iter().map(|&b| b as u8 as f32).collect(),
            NpyData::Int(v) => v.iter().map(|&x| x as f32).collect(),
            NpyData::F32(v) => v.clone(),
            NpyData::F64(v) => v.iter().map(|&x| x as f32).collect(),
            NpyData::Object(_) => return None,
        })
    }
}

/// Reads a `.npy` file.
pub fn read(path: &Path) -> Result<NpyArray> {
    let bytes = std::fs::read(path).map_err(|e| CoreError::io(path, e))?;
    parse(&bytes).map_err(|m| CoreError::format(path, m))
}

/// Parses `.npy` bytes; the error is a message without the file name.
pub fn parse(bytes: &[u8]) -> std::result::Result<NpyArray, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (bad magic)".into());
    }
    let (hlen, start): (usize, usize) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            12,
        ),
        v => return Err(format!("unsupported .npy format version {v}")),
    };
    let header = bytes
        .get(start..start.saturating_add(hlen))
        .ok_or("truncated .npy header")?;
    let header = std::str::from_utf8(header).map_err(|_| "header is not text")?;
    let h = parse_header(header)?;
    let body = &bytes[start + hlen..];
    if h.dtype.kind == 'O' {
        let v = pickle::load(body).map_err(|e| format!("object array: {e}"))?;
        return match v {
            PyValue::Array(a) if a.shape == h.shape => Ok(a),
            PyValue::Array(a) => Err(format!(
                "pickled array has shape {:?}, header says {:?}",
                a.shape, h.shape
            )),
            _ => Err("object array payload is not a numpy array".into()),
        };
    }
    let data = decode(h.dtype, body, &h.shape, h.fortran)?;
    Ok(NpyArray {
        shape: h.shape,
        data,
    })
}

struct Header {
    dtype: DType,
    fortran: bool,
    shape: Vec<usize>,
}

/// Parses the Python dict literal of the header, e.g.
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 80), }`.
fn parse_header(s: &str) -> std::result::Result<Header, String> {
    let field = |key: &str| -> std::result::Result<&str, String> {
        let k = format!("'{key}'");
        let i = s.find(&k).ok_or(format!("header lacks '{key}': {s}"))?;
        let rest = s[i + k.len()..].trim_start();
        Ok(rest.strip_prefix(':').ok_or("bad header")?.trim_start())
    };
    let d = field("descr")?;
    let descr = d
        .strip_prefix('\'')
        .and_then(|r| r.split('\'').next())
        .ok_or(format!("unsupported descr in header: {s}"))?;
    let dtype = DType::parse(descr).ok_or(format!("unsupported dtype '{descr}'"))?;
    let fortran = field("fortran_order")?.starts_with("True");
    let sh = field("shape")?;
    let inner = sh
        .strip_prefix('(')
        .and_then(|r| r.split(')').next())
        .ok_or(format!("bad shape in header: {s}"))?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| t.trim_end_matches('L').parse::<usize>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| format!("bad shape in header: {s}"))?;
    Ok(Header {
        dtype,
        fortran,
        shape,
    })
}

/// Decodes raw numeric elements into row-major order.
pub(crate) fn decode(
    dt: DType,
    raw: &[u8],
    shape: &[usize],
    fortran: bool,
) -> std::result::Result<NpyData, String> {
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("shape overflows")?;
    let need = n.checked_mul(dt.size).ok_or("shape overflows")?;
    if raw.len() < need {
        return Err(format!(
            "data truncated: {n} elements of {} bytes need {need} bytes, found {}",
            dt.size,
            raw.len()
        ));
    }
    let word = |i: usize| -> u64 {
        let b = &raw[i * dt.size..(i + 1) * dt.size];
        let mut v = 0u64;
        if dt.big_endian {
            for &x in b {
                v = (v << 8) | x as u64;
            }
        } else {
            for &x in b.iter().rev() {
                v = (v << 8) | x as u64;
            }
        }
        v
    };
    // Fortran order: element i of the row-major output lives at the column-major offset.
    let order: Vec<usize> = if fortran && shape.len() > 1 {
        (0..n).map(|i| fortran_offset(i, shape)).collect()
    } else {
        (0..n).collect()
    };
    let bits = dt.size * 8;
    Ok(match dt.kind {
        'b' => NpyData::Bool(order.iter().map(|&i| word(i) != 0).collect()),
        'i' => NpyData::Int(
            order
                .iter()
                .map(|&i| ((word(i) << (64 - bits)) as i64) >> (64 - bits))
                .collect(),
        ),
        'u' => NpyData::Int(
            order
                .iter()
                .map(|&i| i64::try_from(word(i)).map_err(|_| "uint64 value above i64::MAX"))
                .collect::<std::result::Result<_, _>>()?,
        ),
        'f' if dt.size == 4 => NpyData::F32(
            order
                .iter()
                .map(|&i| f32::from_bits(word(i) as u32))
                .collect(),
        ),
        'f' => NpyData::F64(order.iter().map(|&i| f64::from_bits(word(i))).collect()),
        k => return Err(format!("cannot decode dtype kind '{k}' as numbers")),
    })
}

/// Column-major offset of the row-major flat index `i`.
fn fortran_offset(mut i: usize, shape: &[usize]) -> usize {
    let mut off = 0;
    let mut stride = 1;
    let mut idx = vec![0; shape.len()];
    for (k, &d) in shape.iter().enumerate().rev() {
        idx[k] = i % d;
        i /= d;
    }
    for (k, &d) in shape.iter().enumerate() {
        off += idx[k] * stride;
        stride *= d;
    }
    off
}

/// Writes a little-endian `float32` array (format 1.0, C order) atomically, readable by
/// `numpy.load`.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let n: usize = shape.iter().product();
    if n != data.len() {
        return Err(CoreError::Invalid(format!(
            "{}: shape {shape:?} needs {n} values, got {}",
            path.display(),
            data.len()
        )));
    }
    let dims: String = match shape {
        [d] => format!("({d},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}").into_bytes();
    // Pad with spaces so that magic + length + header + '\n' is a multiple of 64 bytes.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * n);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    let hlen = u16::try_from(header.len())
        .map_err(|_| CoreError::Invalid(format!("{}: shape too long", path.display())))?;
    out.extend_from_slice(&hlen.to_le_bytes());
    out.extend_from_slice(&header);
    for x in data {
        out.extend_from_slice(&x.to_le_bytes());
    }
    atomic::write(path, &out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_descriptors() {
        assert_eq!(
            DType::parse("<f4"),
            Some(DType {
                kind: 'f',
                size: 4,
                big_endian: false
            })
        );
        assert!(DType::parse(">i2").unwrap().big_endian);
        assert_eq!(DType::parse("|O").unwrap().kind, 'O');
        assert_eq!(DType::parse("O8").unwrap().size, 8);
        assert!(DType::parse("<c8").is_none());
        assert!(DType::parse("<f2").is_none());
    }

    #[test]
    fn write_then_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        write_f32(&p, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, -6.5]).unwrap();
        let a = read(&p).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data, NpyData::F32(vec![1.0, 2.0, 3.0, 4.0, 5.0, -6.5]));
        // The data starts 64-byte aligned, as numpy requires.
        assert_eq!((std::fs::read(&p).unwrap().len() - 24) % 64, 0);
        write_f32(&p, &[4], &[0.0; 4]).unwrap();
        assert_eq!(read(&p).unwrap().shape, vec![4]);
        assert!(write_f32(&p, &[3], &[0.0; 4]).is_err());
    }

    #[test]
    fn fortran_order_is_transposed() {
        // shape (2,3) column-major storage of [[0,1,2],[3,4,5]] is 0,3,1,4,2,5.
        let raw: Vec<u8> = [0.0f64, 3.0, 1.0, 4.0, 2.0, 5.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let dt = DType::parse("<f8").unwrap();
        let d = decode(dt, &raw, &[2, 3], true).unwrap();
        assert_eq!(d, NpyData::F64(vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]));
        assert!(decode(dt, &raw[..40], &[2, 3], false).is_err());
    }
}
