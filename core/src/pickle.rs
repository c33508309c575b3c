//! ssc's one pickle reader: what `numpy.save` writes into object arrays (§1.3) and what
//! `torch.save` writes for state dicts (§10.1), in both the zip container (torch ≥ 1.6) and
//! the legacy stream (the ImageNet `resnet50-19c8e357.pth` and `vgg19-dcbb9e9d.pth`).
//!
//! IRN's `cls_labels.npy` is a 0-d object array holding a dict `{np.int32 id → float32[20]}`.
//! Loading it means running the pickle machine far enough to rebuild dicts, lists, tuples,
//! ints, strings, bytes and the three numpy constructors involved
//! (`multiarray._reconstruct` + `ndarray.__setstate__`, `dtype` + `__setstate__`,
//! `multiarray.scalar`); a state dict adds storage persistent ids, `OrderedDict`,
//! `_rebuild_tensor(_v2)` and `_rebuild_parameter`. Protocols 2–5. Nothing is ever executed:
//! those constructors are interpreted, and what happens with any other global depends on the
//! [`Profile`]. Objects live in an arena so that `BUILD` and `APPEND` (which mutate an object
//! after it was memoised) are seen by every later `BINGET` of it.

use std::collections::HashMap;

use crate::npy::{self, DType, NpyArray, NpyData};

/// A Python value produced by [`load`] or [`load_at`].
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue {
    /// `None`.
    None,
    /// `bool`.
    Bool(bool),
    /// `int` (or a numpy integer scalar).
    Int(i64),
    /// An `int` beyond 64 bits (the legacy torch magic number): its little-endian two's
    /// complement bytes as pickled.
    BigInt(Vec<u8>),
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
    /// `dict` or `OrderedDict`, in insertion order.
    Dict(Vec<(PyValue, PyValue)>),
    /// `numpy.ndarray`.
    Array(NpyArray),
    /// A torch storage named by a persistent id.
    Storage(StorageRef),
    /// A torch tensor: a strided view of a storage.
    Tensor(TensorRef),
    /// `module.name` of a global that is referenced but not interpreted
    /// ([`Profile::Torch`] only).
    Global(String),
    /// A call that is not interpreted, as callable and arguments ([`Profile::Torch`] only).
    Opaque(Box<PyValue>, Box<PyValue>),
}

/// A storage reference from a persistent id `('storage', type, key, location, numel, …)`.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageRef {
    /// torch storage class name, e.g. `FloatStorage`.
    pub kind: String,
    /// Storage key (zip: file name under `data/`; legacy: the id in the key list).
    pub key: String,
    /// Number of elements.
    pub numel: usize,
}

/// A tensor rebuilt by `_rebuild_tensor_v2`: a strided view of a storage.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    /// The storage.
    pub storage: StorageRef,
    /// Offset in elements.
    pub offset: usize,
    /// Shape.
    pub size: Vec<usize>,
    /// Strides in elements.
    pub stride: Vec<usize>,
}

/// How strictly a pickle is read: the two writers ssc reads differ in what an unknown
/// object means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// numpy object arrays: a label table has no business calling anything else, so any
    /// other callable, a `BUILD` on an object that is not a numpy one, or a bare global is an
    /// error. Python 2 `str` is read as bytes (it may be raw array data).
    Numpy,
    /// `torch.save` state dicts: other calls are kept as [`PyValue::Opaque`] and `BUILD`
    /// states of objects that are not modelled (`OrderedDict._metadata`) are dropped, so
    /// unusual metadata cannot break loading. Python 2 `str` is text (keys and names).
    Torch,
}

#[derive(Debug, Clone)]
enum Obj {
    None,
    Bool(bool),
    Int(i64),
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    /// Python 2 `str` (BINSTRING, SHORT_BINSTRING): bytes or text depending on the profile
    /// and on where it is used.
    Py2Str(Vec<u8>),
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
    /// A call that is not interpreted: callable and arguments.
    Opaque(usize, usize),
    Value(PyValue),
}

/// Maximum nesting depth when converting the result (guards against cyclic pickles).
const MAX_DEPTH: usize = 64;

/// Most value nodes one pickle may expand to.
const MAX_NODES: usize = 10_000_000;

type R<T> = std::result::Result<T, String>;

struct Vm<'a> {
    b: &'a [u8],
    pos: usize,
    profile: Profile,
    heap: Vec<Obj>,
    stack: Vec<usize>,
    marks: Vec<usize>,
    memo: HashMap<u32, usize>,
    /// Remaining value nodes [`Vm::convert`] may produce: shared memo references can make the
    /// converted tree exponentially larger than the pickle ("billion laughs").
    budget: std::cell::Cell<usize>,
}

/// Runs the numpy pickle in `bytes` ([`Profile::Numpy`]) and returns the unpickled value.
pub fn load(bytes: &[u8]) -> R<PyValue> {
    load_at(bytes, &mut 0, Profile::Numpy)
}

/// Runs the pickle that starts at `bytes[*pos]` and advances `pos` past its STOP (a legacy
/// torch file is several pickles in a row).
pub fn load_at(bytes: &[u8], pos: &mut usize, profile: Profile) -> R<PyValue> {
    let mut vm = Vm {
        b: bytes,
        pos: *pos,
        profile,
        heap: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        budget: std::cell::Cell::new(MAX_NODES),
    };
    let top = vm.run()?;
    *pos = vm.pos;
    vm.convert(top, 0)
}

impl Vm<'_> {
    fn lenient(&self) -> bool {
        self.profile == Profile::Torch
    }

    fn take(&mut self, n: usize) -> R<&[u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len());
        let end = end.ok_or_else(|| format!("pickle truncated at byte {}", self.pos))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self) -> R<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("length checked"))
    }
    fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> R<u32> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    fn u64(&mut self) -> R<usize> {
        let v = u64::from_le_bytes(self.arr()?);
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
                    let v = i32::from_le_bytes(self.arr()?);
                    self.push(Obj::Int(v as i64))
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Obj::Int(v as i64))
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.arr()?);
                    self.push(Obj::Int(v as i64))
                }
                0x8a => {
                    // LONG1: little-endian two's complement of n bytes.
                    let n = self.u8()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.push(long1(b))
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.arr()?);
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
                b'U' => {
                    // SHORT_BINSTRING
                    let n = self.u8()? as usize;
                    let v = self.take(n)?.to_vec();
                    self.push(Obj::Py2Str(v))
                }
                b'T' => {
                    // BINSTRING
                    let n = self.u32()? as usize;
                    let v = self.take(n)?.to_vec();
                    self.push(Obj::Py2Str(v))
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    let v = self.take(n)?.to_vec();
                    self.push(Obj::Bytes(v))
                }
                b'B' => {
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
                    let g = Obj::Global(self.str_of(m)?.into(), self.str_of(n)?.into());
                    self.push(g)
                }
                b'Q' => {
                    // BINPERSID: torch's storages.
                    let pid = self.pop()?;
                    let s = self.storage(pid)?;
                    self.push(Obj::Value(PyValue::Storage(s)))
                }
                b'R' | 0x81 => {
                    // REDUCE, NEWOBJ (`cls.__new__(cls, *args)`): both only build data here.
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

    /// Text: a `str`, or a Python 2 `str` that is UTF-8.
    fn str_of(&self, id: usize) -> R<&str> {
        match &self.heap[id] {
            Obj::Str(s) => Ok(s),
            Obj::Py2Str(b) => std::str::from_utf8(b).map_err(|_| "invalid UTF-8 string".into()),
            _ => Err("expected a string".into()),
        }
    }

    /// Raw bytes: `bytes`, or a Python 2 `str` (how Python 2 pickled binary data).
    fn bytes_of(&self, id: usize) -> Option<&[u8]> {
        match &self.heap[id] {
            Obj::Bytes(b) | Obj::Py2Str(b) => Some(b),
            _ => None,
        }
    }

    fn int_of(&self, id: usize) -> R<usize> {
        match self.heap[id] {
            Obj::Int(v) if v >= 0 => Ok(v as usize),
            _ => Err(format!(
                "expected a non-negative integer, found {:?}",
                self.heap[id]
            )),
        }
    }

    fn ints_of(&self, id: usize) -> R<Vec<usize>> {
        match &self.heap[id] {
            Obj::Tuple(v) | Obj::List(v) => v.iter().map(|&i| self.int_of(i)).collect(),
            o => Err(format!("expected a tuple of integers, found {o:?}")),
        }
    }

    /// A torch persistent id `('storage', StorageType, key, location, numel, …)`.
    fn storage(&self, pid: usize) -> R<StorageRef> {
        let t = match &self.heap[pid] {
            Obj::Tuple(t) if t.len() >= 5 => t.clone(),
            o => return Err(format!("unsupported persistent id {o:?}")),
        };
        if self.str_of(t[0]).ok() != Some("storage") {
            return Err(format!("unsupported persistent id {:?}", self.heap[t[0]]));
        }
        let Obj::Global(_, kind) = &self.heap[t[1]] else {
            return Err(format!("bad storage type {:?}", self.heap[t[1]]));
        };
        let key = match &self.heap[t[2]] {
            Obj::Int(i) => i.to_string(),
            _ => self
                .str_of(t[2])
                .map_err(|_| format!("bad storage key {:?}", self.heap[t[2]]))?
                .to_string(),
        };
        Ok(StorageRef {
            kind: kind.clone(),
            key,
            numel: self.int_of(t[4])?,
        })
    }

    /// Interprets one of the few known globals; anything else is kept opaque
    /// ([`Profile::Torch`]) or refused ([`Profile::Numpy`]).
    fn reduce(&mut self, f: usize, args: usize) -> R<Obj> {
        let Obj::Global(module, name) = self.heap[f].clone() else {
            return match self.lenient() {
                true => Ok(Obj::Opaque(f, args)),
                false => Err("REDUCE on a non-callable".into()),
            };
        };
        let numpy_core = module.starts_with("numpy") && module.ends_with("multiarray");
        let known = match (module.as_str(), name.as_str()) {
            (_, "_reconstruct" | "scalar") => numpy_core,
            ("numpy", "dtype") | ("_codecs", "encode") | ("collections", "OrderedDict") => true,
            ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor" | "_rebuild_parameter") => {
                true
            }
            _ => false,
        };
        if !known {
            return match self.lenient() {
                true => Ok(Obj::Opaque(f, args)),
                false => Err(format!("refusing to call {module}.{name}")),
            };
        }
        let a = self.tuple(args)?;
        match name.as_str() {
            "_reconstruct" => Ok(Obj::ArrayStub),
            "dtype" => {
                let s = self.str_of(*a.first().ok_or("dtype() without arguments")?)?;
                DType::parse(s)
                    .map(Obj::Dtype)
                    .ok_or(format!("unsupported numpy dtype '{s}'"))
            }
            "scalar" => {
                let (Some(&dt), Some(&raw)) = (a.first(), a.get(1)) else {
                    return Err("scalar() needs a dtype and bytes".into());
                };
                let (Obj::Dtype(dt), Some(raw)) = (&self.heap[dt], self.bytes_of(raw)) else {
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
            "encode" => {
                // Protocol 2 spells bytes as _codecs.encode(str, 'latin1').
                let s = self.str_of(*a.first().ok_or("encode() without arguments")?)?;
                let bytes = s
                    .chars()
                    .map(|c| u8::try_from(c as u32).map_err(|_| "non-latin1 character"))
                    .collect::<std::result::Result<Vec<u8>, _>>()?;
                Ok(Obj::Bytes(bytes))
            }
            "OrderedDict" if a.is_empty() => Ok(Obj::Dict(vec![])),
            "_rebuild_tensor_v2" | "_rebuild_tensor" if a.len() >= 4 => {
                let Obj::Value(PyValue::Storage(storage)) = &self.heap[a[0]] else {
                    return Err(format!("{name} without a storage"));
                };
                Ok(Obj::Value(PyValue::Tensor(TensorRef {
                    storage: storage.clone(),
                    offset: self.int_of(a[1])?,
                    size: self.ints_of(a[2])?,
                    stride: self.ints_of(a[3])?,
                })))
            }
            "_rebuild_parameter"
                if a.first()
                    .is_some_and(|&t| matches!(self.heap[t], Obj::Value(PyValue::Tensor(_)))) =>
            {
                Ok(self.heap[a[0]].clone())
            }
            _ if self.lenient() => Ok(Obj::Opaque(f, args)),
            _ => Err(format!("unexpected arguments to {module}.{name}")),
        }
    }

    /// `__setstate__` of ndarray and dtype; the state of anything else is dropped
    /// ([`Profile::Torch`]) or refused ([`Profile::Numpy`]).
    fn build(&mut self, target: usize, state: usize) -> R<()> {
        match &self.heap[target] {
            Obj::Dtype(dt) => {
                let mut dt = *dt;
                let st = self.tuple(state)?;
                if let Some(&order) = st.get(1) {
                    dt.big_endian = self.str_of(order)? == ">";
                }
                self.heap[target] = Obj::Dtype(dt);
                Ok(())
            }
            Obj::ArrayStub => {
                let st = self.tuple(state)?;
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
            _ if self.lenient() => Ok(()),
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
            Obj::BigInt(b) => PyValue::BigInt(b.clone()),
            Obj::Float(v) => PyValue::Float(*v),
            Obj::Str(s) => PyValue::Str(s.clone()),
            Obj::Bytes(b) => PyValue::Bytes(b.clone()),
            Obj::Py2Str(b) => match self.profile {
                Profile::Numpy => PyValue::Bytes(b.clone()),
                Profile::Torch => PyValue::Str(self.str_of(id)?.to_string()),
            },
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
                let data = match (self.bytes_of(*data), &self.heap[*data]) {
                    (Some(raw), _) => npy::decode(*dtype, raw, shape, *fortran)?,
                    (None, Obj::List(items)) if dtype.kind == 'O' => NpyData::Object(list(items)?),
                    _ => return Err("unsupported ndarray payload".into()),
                };
                PyValue::Array(NpyArray {
                    shape: shape.clone(),
                    data,
                })
            }
            Obj::Global(m, n) if self.lenient() => PyValue::Global(format!("{m}.{n}")),
            Obj::Global(m, n) => return Err(format!("unsupported object {m}.{n}")),
            Obj::Opaque(f, a) => PyValue::Opaque(
                Box::new(self.convert(*f, depth + 1)?),
                Box::new(self.convert(*a, depth + 1)?),
            ),
            Obj::Dtype(_) | Obj::ArrayStub => {
                return Err("incomplete numpy object in pickle".into());
            }
        })
    }
}

/// A LONG1 payload (little-endian two's complement); wider than 64 bits it stays bytes.
fn long1(b: Vec<u8>) -> Obj {
    if b.len() > 8 {
        return Obj::BigInt(b);
    }
    let neg = b.last().is_some_and(|&x| x & 0x80 != 0);
    let mut buf = [if neg { 0xff } else { 0 }; 8];
    buf[..b.len()].copy_from_slice(&b);
    Obj::Int(i64::from_le_bytes(buf))
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

    fn torch(bytes: &[u8]) -> R<PyValue> {
        let mut pos = 0;
        let v = load_at(bytes, &mut pos, Profile::Torch)?;
        assert_eq!(pos, bytes.len(), "stops right after STOP");
        Ok(v)
    }

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
        assert_eq!(load(b"\x8a\x01\xff.").unwrap(), PyValue::Int(-1));
        assert_eq!(load(b"\x8a\x02\x10\x27.").unwrap(), PyValue::Int(10000));
        // Wider than 64 bits (the legacy torch magic number) is kept as its bytes.
        let magic = b"\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.";
        assert_eq!(load(magic).unwrap(), PyValue::BigInt(magic[2..12].to_vec()));
    }

    #[test]
    fn python_protocol2_dict_as_torch_reads_it() {
        // pickle.dumps({'a': 1, 'b': (2, 'x'), 'c': [1.5, None, True]}, protocol=2)
        let bytes: &[u8] = &[
            128, 2, 125, 113, 0, 40, 88, 1, 0, 0, 0, 97, 113, 1, 75, 1, 88, 1, 0, 0, 0, 98, 113, 2,
            75, 2, 88, 1, 0, 0, 0, 120, 113, 3, 134, 113, 4, 88, 1, 0, 0, 0, 99, 113, 5, 93, 113,
            6, 40, 71, 63, 248, 0, 0, 0, 0, 0, 0, 78, 136, 101, 117, 46,
        ];
        let s = |x: &str| PyValue::Str(x.into());
        let expected = PyValue::Dict(vec![
            (s("a"), PyValue::Int(1)),
            (s("b"), PyValue::Tuple(vec![PyValue::Int(2), s("x")])),
            (
                s("c"),
                PyValue::List(vec![
                    PyValue::Float(1.5),
                    PyValue::None,
                    PyValue::Bool(true),
                ]),
            ),
        ]);
        assert_eq!(torch(bytes).unwrap(), expected);
        assert_eq!(load(bytes).unwrap(), expected);
    }

    #[test]
    fn python2_strings_are_bytes_for_numpy_and_text_for_torch() {
        let p = b"U\x02ab.";
        assert_eq!(load(p).unwrap(), PyValue::Bytes(b"ab".to_vec()));
        assert_eq!(torch(p).unwrap(), PyValue::Str("ab".into()));
    }

    #[test]
    fn torch_state_dict_entries() {
        // collections.OrderedDict() with one parameter rebuilt from storage '0' (4 floats,
        // shape (2, 2)), then BUILD with `_metadata` (dropped), as torch.save writes it.
        let mut p = Vec::new();
        p.extend_from_slice(b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01(X\x01\x00\x00\x00w");
        p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        p.extend_from_slice(b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000");
        p.extend_from_slice(b"X\x03\x00\x00\x00cpuK\x04tQK\x00K\x02K\x02\x86K\x02K\x01\x86\x89");
        p.extend_from_slice(b"ccollections\nOrderedDict\n)RtR");
        p.extend_from_slice(b"u}X\x09\x00\x00\x00_metadata}sb.");
        let v = torch(&p).unwrap();
        let PyValue::Dict(items) = v else {
            panic!("{v:?}")
        };
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].0, PyValue::Str("w".into()));
        assert_eq!(
            items[0].1,
            PyValue::Tensor(TensorRef {
                storage: StorageRef {
                    kind: "FloatStorage".into(),
                    key: "0".into(),
                    numel: 4,
                },
                offset: 0,
                size: vec![2, 2],
                stride: vec![2, 1],
            })
        );
        // The numpy profile refuses the same BUILD on a dict.
        assert!(load(&p).unwrap_err().contains("BUILD"));
    }

    #[test]
    fn memoised_objects_see_later_appends() {
        // l = []; memo it; append 1; then a tuple (l, l) from the memo.
        let p = b"]q\x00K\x01ah\x00\x86.";
        let l = PyValue::List(vec![PyValue::Int(1)]);
        assert_eq!(torch(p).unwrap(), PyValue::Tuple(vec![l.clone(), l]));
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
        assert!(torch(&[128, 2, 0xff]).unwrap_err().contains("0xff"));
        assert!(torch(&[128, 2, 125]).is_err());
        // A list that contains itself must not recurse forever.
        assert!(load(b"]q\x00h\x00a.").unwrap_err().contains("deep"));
    }

    #[test]
    fn torch_keeps_unknown_calls_without_running_them() {
        let v = torch(b"cos\nsystem\n\x8c\x02ls\x85R.").unwrap();
        assert_eq!(
            v,
            PyValue::Opaque(
                Box::new(PyValue::Global("os.system".into())),
                Box::new(PyValue::Tuple(vec![PyValue::Str("ls".into())]))
            )
        );
    }
}
