//! A small pickle reader for PyTorch checkpoints (§10.1): enough of the protocol-2 opcode set
//! that `torch.save` emits for state dicts, in both the zip container (torch ≥ 1.6) and the
//! legacy stream (the ImageNet `resnet50-19c8e357.pth` and `vgg19-dcbb9e9d.pth`).
//!
//! Only the few callables a state dict uses are interpreted (`OrderedDict`,
//! `_rebuild_tensor_v2`, `_rebuild_tensor`, `_rebuild_parameter`); any other call is kept as
//! an opaque value, so unusual metadata cannot break loading. Nothing is ever executed.

use std::collections::HashMap;

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

/// A decoded pickle value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// Dict or OrderedDict, in insertion order.
    Dict(Vec<(Value, Value)>),
    /// `module.name` from GLOBAL / STACK_GLOBAL.
    Global(String),
    /// A storage persistent id.
    Storage(StorageRef),
    /// A rebuilt tensor.
    Tensor(TensorRef),
    /// A call we do not interpret: callable and arguments.
    Opaque(Box<Value>, Box<Value>),
    /// Internal stack marker.
    Mark,
}

/// Parses one pickle starting at `data[*pos]`, advancing `pos` past its STOP.
pub fn parse(data: &[u8], pos: &mut usize) -> Result<Value, String> {
    let mut r = Reader { data, pos };
    let mut stack: Vec<Value> = Vec::new();
    let mut memo: HashMap<u32, Value> = HashMap::new();
    loop {
        let op = r.u8()?;
        match op {
            0x80 => {
                r.u8()?; // PROTO n
            }
            0x95 => {
                r.take(8)?; // FRAME length
            }
            b'.' => return stack.pop().ok_or_else(|| "empty stack at STOP".to_string()),
            b'(' => stack.push(Value::Mark),
            b'N' => stack.push(Value::None),
            0x88 => stack.push(Value::Bool(true)),
            0x89 => stack.push(Value::Bool(false)),
            b'J' => stack.push(Value::Int(i32::from_le_bytes(r.arr()?) as i64)),
            b'K' => stack.push(Value::Int(r.u8()? as i64)),
            b'M' => stack.push(Value::Int(u16::from_le_bytes(r.arr()?) as i64)),
            0x8a => {
                let n = r.u8()? as usize;
                stack.push(Value::Int(long1(r.take(n)?)));
            }
            b'G' => stack.push(Value::Float(f64::from_be_bytes(r.arr()?))),
            b'X' => {
                let n = u32::from_le_bytes(r.arr()?) as usize;
                stack.push(Value::Str(r.string(n)?));
            }
            0x8c => {
                let n = r.u8()? as usize;
                stack.push(Value::Str(r.string(n)?));
            }
            b'T' => {
                let n = u32::from_le_bytes(r.arr()?) as usize;
                stack.push(Value::Str(r.string(n)?));
            }
            b'U' => {
                let n = r.u8()? as usize;
                stack.push(Value::Str(r.string(n)?));
            }
            b'B' => {
                let n = u32::from_le_bytes(r.arr()?) as usize;
                stack.push(Value::Bytes(r.take(n)?.to_vec()));
            }
            b'C' => {
                let n = r.u8()? as usize;
                stack.push(Value::Bytes(r.take(n)?.to_vec()));
            }
            b')' => stack.push(Value::Tuple(vec![])),
            b']' => stack.push(Value::List(vec![])),
            b'}' => stack.push(Value::Dict(vec![])),
            b't' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Value::Tuple(items));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if stack.len() < n {
                    return Err("stack underflow in TUPLEn".into());
                }
                let items = stack.split_off(stack.len() - n);
                stack.push(Value::Tuple(items));
            }
            b'l' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Value::List(items));
            }
            b'd' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Value::Dict(pairs(items)?));
            }
            b'a' => {
                let v = pop(&mut stack)?;
                match stack.last_mut() {
                    Some(Value::List(l)) => l.push(v),
                    _ => return Err("APPEND to a non-list".into()),
                }
            }
            b'e' => {
                let items = pop_mark(&mut stack)?;
                match stack.last_mut() {
                    Some(Value::List(l)) => l.extend(items),
                    _ => return Err("APPENDS to a non-list".into()),
                }
            }
            b's' => {
                let v = pop(&mut stack)?;
                let k = pop(&mut stack)?;
                match stack.last_mut() {
                    Some(Value::Dict(d)) => d.push((k, v)),
                    _ => return Err("SETITEM on a non-dict".into()),
                }
            }
            b'u' => {
                let items = pairs(pop_mark(&mut stack)?)?;
                match stack.last_mut() {
                    Some(Value::Dict(d)) => d.extend(items),
                    _ => return Err("SETITEMS on a non-dict".into()),
                }
            }
            b'c' => {
                let module = r.line()?;
                let name = r.line()?;
                stack.push(Value::Global(format!("{module}.{name}")));
            }
            0x93 => {
                let name = pop(&mut stack)?;
                let module = pop(&mut stack)?;
                match (module, name) {
                    (Value::Str(m), Value::Str(n)) => stack.push(Value::Global(format!("{m}.{n}"))),
                    _ => return Err("STACK_GLOBAL needs two strings".into()),
                }
            }
            b'q' => {
                let i = r.u8()? as u32;
                memo.insert(i, top(&stack)?);
            }
            b'r' => {
                let i = u32::from_le_bytes(r.arr()?);
                memo.insert(i, top(&stack)?);
            }
            0x94 => {
                let i = memo.len() as u32;
                memo.insert(i, top(&stack)?);
            }
            b'h' => {
                let i = r.u8()? as u32;
                stack.push(memo.get(&i).cloned().ok_or("BINGET of unknown memo")?);
            }
            b'j' => {
                let i = u32::from_le_bytes(r.arr()?);
                stack.push(memo.get(&i).cloned().ok_or("LONG_BINGET of unknown memo")?);
            }
            b'Q' => {
                let pid = pop(&mut stack)?;
                stack.push(persistent(pid)?);
            }
            b'R' | 0x81 => {
                let args = pop(&mut stack)?;
                let callable = pop(&mut stack)?;
                stack.push(reduce(callable, args)?);
            }
            b'b' => {
                // BUILD: state for the object below; state dicts only carry `_metadata` here.
                pop(&mut stack)?;
            }
            _ => {
                return Err(format!(
                    "unsupported pickle opcode 0x{op:02x} at byte {}",
                    *r.pos - 1
                ));
            }
        }
    }
}

struct Reader<'a> {
    data: &'a [u8],
    pos: &'a mut usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| format!("truncated pickle at byte {}", *self.pos))?;
        let s = &self.data[*self.pos..end];
        *self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("length checked"))
    }
    fn string(&mut self, n: usize) -> Result<String, String> {
        String::from_utf8(self.take(n)?.to_vec()).map_err(|e| format!("bad UTF-8 string: {e}"))
    }
    fn line(&mut self) -> Result<String, String> {
        let rest = &self.data[*self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("unterminated GLOBAL")?;
        let s = self.string(n)?;
        *self.pos += 1;
        Ok(s)
    }
}

/// LONG1 payload: little-endian two's complement; values beyond i64 saturate (only the
/// legacy magic number is that large, and it is compared as such).
fn long1(b: &[u8]) -> i64 {
    if b.len() > 8 {
        return if b.last().is_some_and(|&x| x & 0x80 != 0) {
            i64::MIN
        } else {
            i64::MAX
        };
    }
    let neg = b.last().is_some_and(|&x| x & 0x80 != 0);
    let mut buf = [if neg { 0xff } else { 0 }; 8];
    buf[..b.len()].copy_from_slice(b);
    i64::from_le_bytes(buf)
}

fn pop(stack: &mut Vec<Value>) -> Result<Value, String> {
    stack
        .pop()
        .ok_or_else(|| "pickle stack underflow".to_string())
}

fn top(stack: &[Value]) -> Result<Value, String> {
    stack
        .last()
        .cloned()
        .ok_or_else(|| "memo of empty stack".to_string())
}

fn pop_mark(stack: &mut Vec<Value>) -> Result<Vec<Value>, String> {
    let i = stack
        .iter()
        .rposition(|v| matches!(v, Value::Mark))
        .ok_or("MARK not found")?;
    let items = stack.split_off(i + 1);
    stack.pop();
    Ok(items)
}

fn pairs(items: Vec<Value>) -> Result<Vec<(Value, Value)>, String> {
    if !items.len().is_multiple_of(2) {
        return Err("odd number of dict items".into());
    }
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

fn as_usize(v: &Value) -> Result<usize, String> {
    match v {
        Value::Int(i) if *i >= 0 => Ok(*i as usize),
        _ => Err(format!("expected a non-negative integer, found {v:?}")),
    }
}

fn usizes(v: &Value) -> Result<Vec<usize>, String> {
    match v {
        Value::Tuple(items) | Value::List(items) => items.iter().map(as_usize).collect(),
        _ => Err(format!("expected a tuple of integers, found {v:?}")),
    }
}

fn persistent(pid: Value) -> Result<Value, String> {
    let Value::Tuple(t) = pid else {
        return Err(format!("unsupported persistent id {pid:?}"));
    };
    match t.as_slice() {
        [
            Value::Str(tag),
            Value::Global(kind),
            key,
            _location,
            numel,
            ..,
        ] if tag == "storage" => {
            let key = match key {
                Value::Str(s) => s.clone(),
                Value::Int(i) => i.to_string(),
                other => return Err(format!("bad storage key {other:?}")),
            };
            let kind = kind.rsplit('.').next().unwrap_or(kind).to_string();
            Ok(Value::Storage(StorageRef {
                kind,
                key,
                numel: as_usize(numel)?,
            }))
        }
        _ => Err(format!("unsupported persistent id {t:?}")),
    }
}

fn reduce(callable: Value, args: Value) -> Result<Value, String> {
    let Value::Global(name) = &callable else {
        return Ok(Value::Opaque(Box::new(callable), Box::new(args)));
    };
    let a = match &args {
        Value::Tuple(a) => a.as_slice(),
        _ => &[],
    };
    match (name.as_str(), a) {
        ("collections.OrderedDict", []) => Ok(Value::Dict(vec![])),
        (
            "torch._utils._rebuild_tensor_v2" | "torch._utils._rebuild_tensor",
            [Value::Storage(s), offset, size, stride, ..],
        ) => Ok(Value::Tensor(TensorRef {
            storage: s.clone(),
            offset: as_usize(offset)?,
            size: usizes(size)?,
            stride: usizes(stride)?,
        })),
        ("torch._utils._rebuild_parameter", [t @ Value::Tensor(_), ..]) => Ok(t.clone()),
        _ => Ok(Value::Opaque(Box::new(callable), Box::new(args))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_python_protocol2_dict() {
        // pickle.dumps({'a': 1, 'b': (2, 'x'), 'c': [1.5, None, True]}, protocol=2)
        let bytes: &[u8] = &[
            128, 2, 125, 113, 0, 40, 88, 1, 0, 0, 0, 97, 113, 1, 75, 1, 88, 1, 0, 0, 0, 98, 113, 2,
            75, 2, 88, 1, 0, 0, 0, 120, 113, 3, 134, 113, 4, 88, 1, 0, 0, 0, 99, 113, 5, 93, 113,
            6, 40, 71, 63, 248, 0, 0, 0, 0, 0, 0, 78, 136, 101, 117, 46,
        ];
        let mut pos = 0;
        let v = parse(bytes, &mut pos).unwrap();
        assert_eq!(pos, bytes.len());
        let s = |x: &str| Value::Str(x.into());
        assert_eq!(
            v,
            Value::Dict(vec![
                (s("a"), Value::Int(1)),
                (s("b"), Value::Tuple(vec![Value::Int(2), s("x")])),
                (
                    s("c"),
                    Value::List(vec![Value::Float(1.5), Value::None, Value::Bool(true)])
                ),
            ])
        );
    }

    #[test]
    fn rejects_truncated_and_unknown_input() {
        assert!(parse(&[128, 2, 125], &mut 0).is_err());
        assert!(parse(&[128, 2, 0xff], &mut 0).unwrap_err().contains("0xff"));
        assert_eq!(long1(&[0xff]), -1);
        assert_eq!(long1(&[0x10, 0x27]), 10000);
    }
}
