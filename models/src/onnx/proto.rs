//! A minimal protobuf *encoder* for the ONNX messages ssc writes (§10.3): no prost, no
//! protoc, no build script. Only encoding is needed — the files are read by ONNX Runtime.
//!
//! Field numbers and enum values are those of `onnx.proto3` (ONNX IR version 8). Repeated
//! scalars are written packed, as proto3 does by default; every protobuf parser accepts
//! that. Fields holding their default value are omitted, except the attribute `type`,
//! which ONNX requires.

/// Protobuf wire types.
const VARINT: u32 = 0;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// ONNX `TensorProto.DataType` values used here.
pub mod data_type {
    /// `FLOAT` (f32).
    pub const FLOAT: i32 = 1;
    /// `INT64`.
    pub const INT64: i32 = 7;
}

/// ONNX `AttributeProto.AttributeType` values used here.
pub mod attr_type {
    /// One f32.
    pub const FLOAT: i32 = 1;
    /// One i64.
    pub const INT: i32 = 2;
    /// One byte string.
    pub const STRING: i32 = 3;
    /// One tensor.
    pub const TENSOR: i32 = 4;
    /// Repeated f32.
    pub const FLOATS: i32 = 6;
    /// Repeated i64.
    pub const INTS: i32 = 7;
}

/// Appends a base-128 varint.
pub fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_key(buf: &mut Vec<u8>, field: u32, wire: u32) {
    put_varint(buf, ((field << 3) | wire) as u64);
}

/// `int64`/`int32` field: negative values are sign-extended to 10 bytes, as protobuf does.
fn put_int(buf: &mut Vec<u8>, field: u32, v: i64) {
    if v != 0 {
        put_key(buf, field, VARINT);
        put_varint(buf, v as u64);
    }
}

fn put_bytes(buf: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(buf, field, LEN);
    put_varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

fn put_str(buf: &mut Vec<u8>, field: u32, s: &str) {
    if !s.is_empty() {
        put_bytes(buf, field, s.as_bytes());
    }
}

/// A nested message (always written, even when empty: presence matters for messages).
fn put_msg(buf: &mut Vec<u8>, field: u32, encode: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    encode(&mut inner);
    put_bytes(buf, field, &inner);
}

fn put_packed_ints(buf: &mut Vec<u8>, field: u32, vs: &[i64]) {
    if !vs.is_empty() {
        let mut inner = Vec::new();
        for &v in vs {
            put_varint(&mut inner, v as u64);
        }
        put_bytes(buf, field, &inner);
    }
}

fn put_packed_floats(buf: &mut Vec<u8>, field: u32, vs: &[f32]) {
    if !vs.is_empty() {
        let inner: Vec<u8> = vs.iter().flat_map(|v| v.to_le_bytes()).collect();
        put_bytes(buf, field, &inner);
    }
}

/// `TensorProto`: a constant (initializer or attribute value) with raw little-endian data.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorProto {
    /// Name (the graph value it defines when used as an initializer).
    pub name: String,
    /// Shape.
    pub dims: Vec<i64>,
    /// [`data_type`] value.
    pub data_type: i32,
    /// Little-endian element bytes.
    pub raw_data: Vec<u8>,
}

impl TensorProto {
    /// An f32 tensor.
    pub fn f32(name: impl Into<String>, dims: &[usize], values: &[f32]) -> Self {
        TensorProto {
            name: name.into(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: data_type::FLOAT,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// An i64 tensor.
    pub fn i64(name: impl Into<String>, dims: &[usize], values: &[i64]) -> Self {
        TensorProto {
            name: name.into(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: data_type::INT64,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// Encodes the message body.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        put_packed_ints(buf, 1, &self.dims);
        put_int(buf, 2, self.data_type as i64);
        put_str(buf, 8, &self.name);
        // raw_data is written even when empty: a 0-element tensor still needs it.
        put_bytes(buf, 9, &self.raw_data);
    }
}

/// The value of an `AttributeProto`.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    /// `f` (field 2).
    Float(f32),
    /// `i` (field 3).
    Int(i64),
    /// `s` (field 4).
    String(String),
    /// `t` (field 5).
    Tensor(TensorProto),
    /// `floats` (field 7).
    Floats(Vec<f32>),
    /// `ints` (field 8).
    Ints(Vec<i64>),
}

/// `AttributeProto`.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeProto {
    /// Attribute name (`kernel_shape`, `axes`, …).
    pub name: String,
    /// Its value; also decides the `type` field.
    pub value: AttrValue,
}

impl AttributeProto {
    /// Encodes the message body.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        put_str(buf, 1, &self.name);
        let ty = match &self.value {
            AttrValue::Float(f) => {
                // Written even when 0.0: `type` says a float is present.
                put_key(buf, 2, FIXED32);
                buf.extend_from_slice(&f.to_le_bytes());
                attr_type::FLOAT
            }
            AttrValue::Int(i) => {
                put_key(buf, 3, VARINT);
                put_varint(buf, *i as u64);
                attr_type::INT
            }
            AttrValue::String(s) => {
                put_bytes(buf, 4, s.as_bytes());
                attr_type::STRING
            }
            AttrValue::Tensor(t) => {
                put_msg(buf, 5, |b| t.encode(b));
                attr_type::TENSOR
            }
            AttrValue::Floats(v) => {
                put_packed_floats(buf, 7, v);
                attr_type::FLOATS
            }
            AttrValue::Ints(v) => {
                put_packed_ints(buf, 8, v);
                attr_type::INTS
            }
        };
        put_int(buf, 20, ty as i64);
    }
}

/// `NodeProto`: one operator application.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeProto {
    /// Input value names (`""` for an omitted optional input).
    pub input: Vec<String>,
    /// Output value names.
    pub output: Vec<String>,
    /// Node name (unique, for diagnostics).
    pub name: String,
    /// Operator (`Conv`, `Relu`, …) of the default domain.
    pub op_type: String,
    /// Attributes.
    pub attribute: Vec<AttributeProto>,
}

impl NodeProto {
    /// Encodes the message body.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        for s in &self.input {
            // Empty names are meaningful here (skipped optional inputs): always write.
            put_bytes(buf, 1, s.as_bytes());
        }
        for s in &self.output {
            put_bytes(buf, 2, s.as_bytes());
        }
        put_str(buf, 3, &self.name);
        put_str(buf, 4, &self.op_type);
        for a in &self.attribute {
            put_msg(buf, 5, |b| a.encode(b));
        }
    }
}

/// One dimension of a value's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    /// `dim_value`: a fixed size.
    Fixed(i64),
    /// `dim_param`: a named dynamic size (`N`, `H`, …).
    Param(String),
}

/// `ValueInfoProto` of a float/int tensor: a graph input or output.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueInfoProto {
    /// Value name.
    pub name: String,
    /// `TypeProto.Tensor.elem_type` ([`data_type`]).
    pub elem_type: i32,
    /// Shape (`TensorShapeProto`).
    pub shape: Vec<Dim>,
}

impl ValueInfoProto {
    /// Encodes the message body.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        put_str(buf, 1, &self.name);
        // type (2) → TypeProto.tensor_type (1) → {elem_type (1), shape (2) → dim (1)*}
        put_msg(buf, 2, |ty| {
            put_msg(ty, 1, |t| {
                put_int(t, 1, self.elem_type as i64);
                put_msg(t, 2, |shape| {
                    for d in &self.shape {
                        put_msg(shape, 1, |dim| match d {
                            Dim::Fixed(v) => {
                                put_key(dim, 1, VARINT);
                                put_varint(dim, *v as u64);
                            }
                            Dim::Param(p) => put_bytes(dim, 2, p.as_bytes()),
                        });
                    }
                });
            });
        });
    }
}

/// `GraphProto`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GraphProto {
    /// Nodes in topological order.
    pub node: Vec<NodeProto>,
    /// Graph name.
    pub name: String,
    /// Constant tensors (weights).
    pub initializer: Vec<TensorProto>,
    /// Graph inputs (initializers are not listed here).
    pub input: Vec<ValueInfoProto>,
    /// Graph outputs.
    pub output: Vec<ValueInfoProto>,
}

impl GraphProto {
    /// Encodes the message body.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        for n in &self.node {
            put_msg(buf, 1, |b| n.encode(b));
        }
        put_str(buf, 2, &self.name);
        for t in &self.initializer {
            put_msg(buf, 5, |b| t.encode(b));
        }
        for v in &self.input {
            put_msg(buf, 11, |b| v.encode(b));
        }
        for v in &self.output {
            put_msg(buf, 12, |b| v.encode(b));
        }
    }
}

/// `ModelProto`: the file.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelProto {
    /// IR version (8: ONNX 1.10+, understood by every current runtime).
    pub ir_version: i64,
    /// `(domain, version)` operator sets; `""` is the default ONNX domain.
    pub opset_import: Vec<(String, i64)>,
    /// Producer name.
    pub producer_name: String,
    /// Producer version.
    pub producer_version: String,
    /// The graph.
    pub graph: GraphProto,
    /// `metadata_props` key/value pairs (`StringStringEntryProto`).
    pub metadata_props: Vec<(String, String)>,
}

impl ModelProto {
    /// Encodes the message body.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        put_int(buf, 1, self.ir_version);
        put_str(buf, 2, &self.producer_name);
        put_str(buf, 3, &self.producer_version);
        put_msg(buf, 7, |b| self.graph.encode(b));
        for (domain, version) in &self.opset_import {
            put_msg(buf, 8, |b| {
                put_str(b, 1, domain);
                put_int(b, 2, *version);
            });
        }
        for (k, v) in &self.metadata_props {
            put_msg(buf, 14, |b| {
                put_str(b, 1, k);
                put_str(b, 2, v);
            });
        }
    }

    /// The serialized file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        self.encode(&mut buf);
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_the_protobuf_spec() {
        let enc = |v: u64| {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            b
        };
        assert_eq!(enc(0), [0]);
        assert_eq!(enc(1), [1]);
        assert_eq!(enc(127), [0x7f]);
        // the example of the protobuf encoding guide
        assert_eq!(enc(150), [0x96, 0x01]);
        assert_eq!(enc(300), [0xac, 0x02]);
        // negative int64: ten bytes, two's complement
        assert_eq!(
            enc(-1i64 as u64),
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
    }

    #[test]
    fn attribute_bytes_are_exact() {
        let a = AttributeProto {
            name: "axes".into(),
            value: AttrValue::Ints(vec![2, -1]),
        };
        let mut b = Vec::new();
        a.encode(&mut b);
        let mut want = vec![0x0a, 4, b'a', b'x', b'e', b's'];
        // field 8, wire 2: key 0x42, 11 bytes: 2, then -1 as 10 bytes
        want.extend([0x42, 11, 2]);
        want.extend([0xff; 9]);
        want.push(0x01);
        // type (field 20, varint) = INTS (7): key 20<<3 = 160 → 0xa0 0x01
        want.extend([0xa0, 0x01, 7]);
        assert_eq!(b, want);

        let f = AttributeProto {
            name: "alpha".into(),
            value: AttrValue::Float(0.0),
        };
        let mut b = Vec::new();
        f.encode(&mut b);
        // zero floats are still written (key 0x15 = field 2, fixed32)
        assert_eq!(&b[7..12], &[0x15, 0, 0, 0, 0]);
        assert_eq!(&b[12..], &[0xa0, 0x01, 1]);
    }

    #[test]
    fn tensor_and_value_info_bytes_are_exact() {
        let t = TensorProto::f32("w", &[2], &[1.0, -2.0]);
        let mut b = Vec::new();
        t.encode(&mut b);
        let mut want = vec![0x0a, 1, 2, 0x10, 1, 0x42, 1, b'w', 0x4a, 8];
        want.extend(1.0f32.to_le_bytes());
        want.extend((-2.0f32).to_le_bytes());
        assert_eq!(b, want);

        let v = ValueInfoProto {
            name: "x".into(),
            elem_type: data_type::FLOAT,
            shape: vec![Dim::Param("N".into()), Dim::Fixed(3)],
        };
        let mut b = Vec::new();
        v.encode(&mut b);
        let dims = [0x0a, 3, 0x12, 1, b'N', 0x0a, 2, 0x08, 3];
        let shape = [&[0x12, dims.len() as u8][..], &dims].concat();
        let tensor = [&[0x08, 1][..], &shape].concat();
        let ty = [&[0x0a, tensor.len() as u8][..], &tensor].concat();
        let want = [&[0x0a, 1, b'x', 0x12, ty.len() as u8][..], &ty].concat();
        assert_eq!(b, want);
    }
}
