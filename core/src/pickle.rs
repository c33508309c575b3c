//! A minimal, safe pickle reader for what `numpy.save` writes into object arrays (§1.3).
//!
//! IRN's `cls_labels.npy` is a 0-d object array holding a dict `{np.int32 id → float32[20]}`.
//! Loading it means running the pickle machine far enough to rebuild dicts, lists, tuples,
//! ints, strings, bytes and the three numpy constructors involved
//! (`multiarray._reconstruct` + `ndarray.__setstate__`, `dtype` + `__setstate__`,
//! `multiarray.scalar`), for protocols 2–5. No arbitrary callable is ever invoked: any other
//! global is an error. Objects live in an arena so that `BUILD` (which mutates an object after
//! it was memoised) is seen by every later `BINGET` of it.

use std::collections::HashMap;

use crate::npy::{self, DType, NpyArray, NpyData};

/// A Python value produced by [`load`].
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue {
    /// `None`.
    None,
    /// `bool`.
    Bool(bool),
    /// `int` (or a numpy integer scalar).
    Int(i64),
    /// `float` (or a numpy float scalar).
    Float(f64),
    /// `str`.
    Str(String),
    /// `bytes`.
    Bytes(Vec<u8>),
    /// `tuple`.
    Tuple(Vec<PyValue>),
    /// `list`.
    List(Vec<PyValue>),
    /// `dict`, in insertion order.
    Dict(Vec<(PyValue, PyValue)>),
    /// `numpy.ndarray`.
    Array(NpyArray),
}

#[derive(Debug, Clone)]
enum Obj {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<usize>),
    List(Vec<usize>),
    Dict(Vec<(usize, usize)>),
    Global(String, String),
    /// `numpy.dtype(...)` before/after its `__setstate__`.
    Dtype(DType),
    /// `_reconstruct(ndarray, ...)` awaiting its `__setstate__`.
    ArrayStub,
    Array {
        shape: Vec<usize>,
        dtype: DType,
        fortran: bool,
        data: usize,
    },
    Value(PyValue),
}

/// Maximum nesting depth when converting the result (guards against cyclic pickles).
const MAX_DEPTH: usize = 64;

struct Vm<'a> {
    b: &'a [u8],
    pos: usize,
    heap: Vec<Obj>,
    stack: Vec<usize>,
    marks: Vec<usize>,
    memo: HashMap<u32, usize>,
    /// Remaining value nodes [`Vm::convert`] may produce: shared memo references can make the
    /// converted tree exponentially larger than the pickle ("billion laughs").
    budget: std::cell::Cell<usize>,
}

/// Most value nodes one pickle may expand to.
const MAX_NODES: usize = 10_000_000;

type R<T> = std::result::Result<T, String>;

/// Runs the pickle in `bytes` and returns the unpickled value.
pub fn load(bytes: &[u8]) -> R<PyValue> {
    let mut vm = Vm {
        b: bytes,
        pos: 0,
        heap: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        budget: std::cell::Cell::new(MAX_NODES),
    };
    let top = vm.run()?;
    vm.convert(top, 0)
}

impl Vm<'_> {
    fn take(&mut self, n: usize) -> R<&[u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len());
        let end = end.ok_or_else(|| format!("pickle truncated at byte {}", self.pos))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> R<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> R<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> R<usize> {
        let v = u64::from_le_bytes(self.take(8)?.try_into().unwrap());
        usize::try_from(v).map_err(|_| "length too large".to_string())
    }
    fn line(&mut self) -> R<String> {
        let rest = &self.b[self.pos..];
        let n = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or("unterminated text argument")?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }
    fn string(&mut self, n: usize) -> R<String> {
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "invalid UTF-8 string".into())
    }
    fn push(&mut self, o: Obj) {
        self.heap.push(o);
        self.stack.push(self.heap.len() - 1);
    }
    fn pop(&mut self) -> R<usize> {
        self.stack
            .pop()
            .ok_or_else(|| "pickle stack underflow".into())
    }
    fn top(&self) -> R<usize> {
        self.stack
            .last()
            .copied()
            .ok_or_else(|| "pickle stack underflow".into())
    }
    fn pop_mark(&mut self) -> R<Vec<usize>> {
        let m = self.marks.pop().ok_or("MARK missing")?;
        if m > self.stack.len() {
            return Err("corrupt MARK".into());
        }
        Ok(self.stack.split_off(m))
    }
    fn memo_get(&mut self, k: u32) -> R<()> {
        let id = *self.memo.get(&k).ok_or(format!("memo key {k} unset"))?;
        self.stack.push(id);
        Ok(())
    }
    fn memo_put(&mut self, k: u32) -> R<()> {
        let t = self.top()?;
        self.memo.insert(k, t);
        Ok(())
    }

    fn run(&mut self) -> R<usize> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    let p = self.u8()?; // PROTO
                    if p > 5 {
                        return Err(format!("unsupported pickle protocol {p}"));
                    }
                }
                0x95 => {
                    self.take(8)?; // FRAME: framing is only an I/O hint
                }
                b'.' => return self.pop(), // STOP
                b'(' => self.marks.push(self.stack.len()),
                b'N' => self.push(Obj::None),
                0x88 => self.push(Obj::Bool(true)),
                0x89 => self.push(Obj::Bool(false)),
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(Obj::Int(v as i64))
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Obj::Int(v as i64))
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Obj::Int(v as i64))
                }
                0x8a => {
                    // LONG1: little-endian two's complement of n bytes.
                    let n = self.u8()? as usize;
                    let b = self.take(n)?.to_vec();
                    if n > 8 {
                        return Err("integer wider than 64 bits".into());
                    }
                    let mut v: i64 = 0;
                    for (i, &x) in b.iter().enumerate() {
                        v |= (x as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.push(Obj::Int(v))
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().unwrap());
                    self.push(Obj::Float(v))
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let s = self.string(n)?;
                    self.push(Obj::Str(s))
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let s = self.string(n)?;
                    self.push(Obj::Str(s))
                }
                0x8d => {
                    let n = self.u64()?;
                    let s = self.string(n)?;
                    self.push(Obj::Str(s))
                }
                b'C' | b'U' => {
                    // SHORT_BINBYTES, SHORT_BINSTRING (Python 2 str read as bytes)
                    let n = self.u8()? as usize;
                    let v = self.take(n)?.to_vec();
                    self.push(Obj::Bytes(v))
                }
                b'B' | b'T' => {
                    let n = self.u32()? as usize;
                    let v = self.take(n)?.to_vec();
                    self.push(Obj::Bytes(v))
                }
                0x8e => {
                    let n = self.u64()?;
                    let v = self.take(n)?.to_vec();
                    self.push(Obj::Bytes(v))
                }
                b')' => self.push(Obj::Tuple(vec![])),
                b']' => self.push(Obj::List(vec![])),
                b'}' => self.push(Obj::Dict(vec![])),
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err("pickle stack underflow".into());
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.push(Obj::Tuple(items))
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Obj::Tuple(items))
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Obj::List(items))
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = pairs(&items)?;
                    self.push(Obj::Dict(pairs))
                }
                b'a' => {
                    let v = self.pop()?;
                    let l = self.top()?;
                    self.extend_list(l, vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let l = self.top()?;
                    self.extend_list(l, items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let d = self.top()?;
                    self.extend_dict(d, vec![(k, v)])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let d = self.top()?;
                    self.extend_dict(d, pairs(&items)?)?;
                }
                b'q' => {
                    let k = self.u8()? as u32;
                    self.memo_put(k)?
                }
                b'r' => {
                    let k = self.u32()?;
                    self.memo_put(k)?
                }
                0x94 => {
                    let k = self.memo.len() as u32; // MEMOIZE
                    self.memo_put(k)?
                }
                b'h' => {
                    let k = self.u8()? as u32;
                    self.memo_get(k)?
                }
                b'j' => {
                    let k = self.u32()?;
                    self.memo_get(k)?
                }
                b'c' => {
                    let m = self.line()?;
                    let n = self.line()?;
                    self.push(Obj::Global(m, n))
                }
                0x93 => {
                    let n = self.pop()?;
                    let m = self.pop()?;
                    match (&self.heap[m], &self.heap[n]) {
                        (Obj::Str(m), Obj::Str(n)) => {
                            let g = Obj::Global(m.clone(), n.clone());
                            self.push(g)
                        }
                        _ => return Err("STACK_GLOBAL needs two strings".into()),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let o = self.reduce(f, args)?;
                    self.push(o)
                }
                b'b' => {
                    let state = self.pop()?;
                    let target = self.top()?;
                    self.build(target, state)?;
                }
                b'0' => {
                    self.pop()?;
                }
                b'2' => {
                    let t = self.top()?;
                    self.stack.push(t)
                }
                _ => {
                    return Err(format!(
                        "unsupported pickle opcode 0x{op:02x} at byte {}",
                        self.pos - 1
                    ));
                }
            }
        }
    }

    fn extend_list(&mut self, l: usize, items: Vec<usize>) -> R<()> {
        match &mut self.heap[l] {
            Obj::List(v) => {
                v.extend(items);
                Ok(())
            }
            _ => Err("APPEND to a non-list".into()),
        }
    }

    fn extend_dict(&mut self, d: usize, items: Vec<(usize, usize)>) -> R<()> {
        match &mut self.heap[d] {
            Obj::Dict(v) => {
                v.extend(items);
                Ok(())
            }
            _ => Err("SETITEM on a non-dict".into()),
        }
    }

    fn tuple(&self, id: usize) -> R<Vec<usize>> {
        match &self.heap[id] {
            Obj::Tuple(v) => Ok(v.clone()),
            _ => Err("expected a tuple".into()),
        }
    }

    fn str_of(&self, id: usize) -> R<&str> {
        match &self.heap[id] {
            Obj::Str(s) => Ok(s),
            _ => Err("expected a string".into()),
        }
    }

    /// Calls one of the few allowed globals.
    fn reduce(&mut self, f: usize, args: usize) -> R<Obj> {
        let Obj::Global(module, name) = self.heap[f].clone() else {
            return Err("REDUCE on a non-callable".into());
        };
        let a = self.tuple(args)?;
        let numpy_core = module.starts_with("numpy") && module.ends_with("multiarray");
        match (module.as_str(), name.as_str()) {
            (_, "_reconstruct") if numpy_core => Ok(Obj::ArrayStub),
            ("numpy", "dtype") => {
                let s = self.str_of(*a.first().ok_or("dtype() without arguments")?)?;
                DType::parse(s)
                    .map(Obj::Dtype)
                    .ok_or(format!("unsupported numpy dtype '{s}'"))
            }
            (_, "scalar") if numpy_core => {
                let (Some(&dt), Some(&raw)) = (a.first(), a.get(1)) else {
                    return Err("scalar() needs a dtype and bytes".into());
                };
                let (Obj::Dtype(dt), Obj::Bytes(raw)) = (&self.heap[dt], &self.heap[raw]) else {
                    return Err("unsupported numpy scalar".into());
                };
                let v = match npy::decode(*dt, raw, &[], false)? {
                    NpyData::Bool(v) => PyValue::Bool(v[0]),
                    NpyData::Int(v) => PyValue::Int(v[0]),
                    NpyData::F32(v) => PyValue::Float(v[0] as f64),
                    NpyData::F64(v) => PyValue::Float(v[0]),
                    NpyData::Object(_) => return Err("object scalar".into()),
                };
                Ok(Obj::Value(v))
            }
            ("_codecs", "encode") => {
                // Protocol 2 spells bytes as _codecs.encode(str, 'latin1').
                let s = self.str_of(*a.first().ok_or("encode() without arguments")?)?;
                let bytes = s
                    .chars()
                    .map(|c| u8::try_from(c as u32).map_err(|_| "non-latin1 character"))
                    .collect::<std::result::Result<Vec<u8>, _>>()?;
                Ok(Obj::Bytes(bytes))
            }
            _ => Err(format!("refusing to call {module}.{name}")),
        }
    }

    /// `__setstate__` of ndarray and dtype.
    fn build(&mut self, target: usize, state: usize) -> R<()> {
        let st = self.tuple(state)?;
        match &self.heap[target] {
            Obj::Dtype(dt) => {
                let mut dt = *dt;
                if let Some(&order) = st.get(1) {
                    dt.big_endian = self.str_of(order)? == ">";
                }
                self.heap[target] = Obj::Dtype(dt);
                Ok(())
            }
            Obj::ArrayStub => {
                let [_, shape, dtype, fortran, data] = st[..] else {
                    return Err("unexpected ndarray state".into());
                };
                let shape = self
                    .tuple(shape)?
                    .iter()
                    .map(|&i| match self.heap[i] {
                        Obj::Int(d) if d >= 0 => Ok(d as usize),
                        _ => Err("bad array shape".to_string()),
                    })
                    .collect::<R<Vec<_>>>()?;
                let Obj::Dtype(dtype) = self.heap[dtype] else {
                    return Err("ndarray state without dtype".into());
                };
                let fortran = matches!(self.heap[fortran], Obj::Bool(true));
                self.heap[target] = Obj::Array {
                    shape,
                    dtype,
                    fortran,
                    data,
                };
                Ok(())
            }
            _ => Err("BUILD on an unsupported object".into()),
        }
    }

    fn convert(&self, id: usize, depth: usize) -> R<PyValue> {
        if depth > MAX_DEPTH {
            return Err("pickle nested too deeply (or cyclic)".into());
        }
        let left = self.budget.get();
        if left == 0 {
            return Err(format!("pickle expands to more than {MAX_NODES} values"));
        }
        self.budget.set(left - 1);
        let list = |v: &[usize]| {
            v.iter()
                .map(|&i| self.convert(i, depth + 1))
                .collect::<R<Vec<_>>>()
        };
        Ok(match &self.heap[id] {
            Obj::None => PyValue::None,
            Obj::Bool(b) => PyValue::Bool(*b),
            Obj::Int(v) => PyValue::Int(*v),
            Obj::Float(v) => PyValue::Float(*v),
            Obj::Str(s) => PyValue::Str(s.clone()),
            Obj::Bytes(b) => PyValue::Bytes(b.clone()),
            Obj::Tuple(v) => PyValue::Tuple(list(v)?),
            Obj::List(v) => PyValue::List(list(v)?),
            Obj::Dict(v) => PyValue::Dict(
                v.iter()
                    .map(|&(k, x)| Ok((self.convert(k, depth + 1)?, self.convert(x, depth + 1)?)))
                    .collect::<R<Vec<_>>>()?,
            ),
            Obj::Value(v) => v.clone(),
            Obj::Array {
                shape,
                dtype,
                fortran,
                data,
            } => {
                let data = match &self.heap[*data] {
                    Obj::Bytes(raw) => npy::decode(*dtype, raw, shape, *fortran)?,
                    Obj::List(items) if dtype.kind == 'O' => NpyData::Object(list(items)?),
                    _ => return Err("unsupported ndarray payload".into()),
                };
                PyValue::Array(NpyArray {
                    shape: shape.clone(),
                    data,
                })
            }
            Obj::Global(m, n) => return Err(format!("unsupported object {m}.{n}")),
            Obj::Dtype(_) | Obj::ArrayStub => {
                return Err("incomplete numpy object in pickle".into());
            }
        })
    }
}

fn pairs(items: &[usize]) -> R<Vec<(usize, usize)>> {
    if !items.len().is_multiple_of(2) {
        return Err("odd number of dict items".into());
    }
    Ok(items.chunks_exact(2).map(|c| (c[0], c[1])).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_hand_written_pickles() {
        // pickle.dumps({1: [True, None], 'a': -2}, protocol=2)
        let p = b"\x80\x02}q\x00(K\x01]q\x01(\x88Ne\x8c\x01aJ\xfe\xff\xff\xffu.";
        let v = load(p).unwrap();
        assert_eq!(
            v,
            PyValue::Dict(vec![
                (
                    PyValue::Int(1),
                    PyValue::List(vec![PyValue::Bool(true), PyValue::None])
                ),
                (PyValue::Str("a".into()), PyValue::Int(-2)),
            ])
        );
        // LONG1 with a negative value: -129 = 0x7f 0xff.
        assert_eq!(load(b"\x8a\x02\x7f\xff.").unwrap(), PyValue::Int(-129));
        assert_eq!(
            load(b"\x8a\x05\x00\x00\x00\x00\x01.").unwrap(),
            PyValue::Int(1 << 32)
        );
    }

    #[test]
    fn hostile_pickles_are_errors() {
        assert!(
            load(b"cos\nsystem\n\x8c\x02ls\x85R.")
                .unwrap_err()
                .contains("os.system")
        );
        assert!(load(b"\x80\x02").is_err()); // truncated
        assert!(load(b"a.").is_err()); // underflow
        assert!(load(b"\x8c\xff").is_err()); // length past the end
        assert!(load(b"\xff").unwrap_err().contains("opcode"));
        // A list that contains itself must not recurse forever.
        assert!(load(b"]q\x00h\x00a.").unwrap_err().contains("deep"));
    }
}
