//! A small ONNX graph builder (opset 17) for the exporters (§10.3).
//!
//! Values are referred to by name (`String`); every helper appends one or a few nodes and
//! returns the name of its result, so a network reads like its forward pass. Names are made
//! unique by a counter. Shape-dependent sizes (resize targets, crops) are computed in-graph
//! from `Shape`, so the exported graphs accept any N, H, W.

use super::proto::{
    AttrValue, AttributeProto, Dim, GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto,
    data_type,
};
use super::{OnnxError, Result};

/// Spatial parameters of a 2-D convolution (square kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvSpec {
    /// Kernel size k (k×k).
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on every side.
    pub pad: usize,
    /// Dilation.
    pub dilation: usize,
}

impl ConvSpec {
    /// A k×k convolution with stride 1, no padding, no dilation.
    pub fn k(kernel: usize) -> Self {
        ConvSpec {
            kernel,
            stride: 1,
            pad: 0,
            dilation: 1,
        }
    }
}

/// Builds one ONNX graph.
#[derive(Debug, Clone)]
pub struct Graph {
    proto: GraphProto,
    counter: usize,
}

fn attr(name: &str, value: AttrValue) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        value,
    }
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    attr(name, AttrValue::Ints(v.to_vec()))
}

impl Graph {
    /// An empty graph named `name`.
    pub fn new(name: &str) -> Self {
        Graph {
            proto: GraphProto {
                name: name.to_string(),
                ..GraphProto::default()
            },
            counter: 0,
        }
    }

    /// A fresh value name starting with `hint`.
    pub fn fresh(&mut self, hint: &str) -> String {
        self.counter += 1;
        format!("{hint}_{}", self.counter)
    }

    /// Declares an f32 graph input named `name` (used verbatim) with the given shape.
    pub fn input(&mut self, name: &str, dims: &[Dim]) -> String {
        self.proto.input.push(ValueInfoProto {
            name: name.to_string(),
            elem_type: data_type::FLOAT,
            shape: dims.to_vec(),
        });
        name.to_string()
    }

    /// Declares an f32 graph output `name` carrying `value` (an `Identity` renames it).
    pub fn output(&mut self, value: &str, name: &str, dims: &[Dim]) {
        if value != name {
            self.push_node("Identity", &[value], vec![name.to_string()], vec![]);
        }
        self.proto.output.push(ValueInfoProto {
            name: name.to_string(),
            elem_type: data_type::FLOAT,
            shape: dims.to_vec(),
        });
    }

    /// An f32 initializer (weight) named after `hint`; checks `values` against `dims`.
    pub fn initializer(&mut self, hint: &str, dims: &[usize], values: &[f32]) -> Result<String> {
        if values.len() != dims.iter().product::<usize>() {
            return Err(OnnxError::Invalid(format!(
                "initializer `{hint}`: {} values for shape {dims:?}",
                values.len()
            )));
        }
        let name = self.fresh(hint);
        self.proto
            .initializer
            .push(TensorProto::f32(&name, dims, values));
        Ok(name)
    }

    /// A 1-D int64 constant (shapes, axes, slice bounds).
    pub fn const_i64(&mut self, hint: &str, values: &[i64]) -> String {
        let name = self.fresh(hint);
        self.proto
            .initializer
            .push(TensorProto::i64(&name, &[values.len()], values));
        name
    }

    /// A 0-d f32 constant (broadcasts against anything).
    pub fn scalar(&mut self, hint: &str, v: f32) -> String {
        let name = self.fresh(hint);
        self.proto
            .initializer
            .push(TensorProto::f32(&name, &[], &[v]));
        name
    }

    fn push_node(
        &mut self,
        op: &str,
        inputs: &[&str],
        output: Vec<String>,
        attribute: Vec<AttributeProto>,
    ) {
        let name = format!("{op}_{}", self.proto.node.len());
        self.proto.node.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output,
            name,
            op_type: op.to_string(),
            attribute,
        });
    }

    /// Appends a node of `op` with one output and returns the output's name.
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        let out = self.fresh(&op.to_ascii_lowercase());
        self.push_node(op, inputs, vec![out.clone()], attrs);
        out
    }

    /// `Conv` (NCHW) with weight `w` `[O, I, k, k]` and optional bias `b` `[O]`.
    pub fn conv(&mut self, x: &str, w: &str, b: Option<&str>, p: ConvSpec) -> String {
        let (k, s, d, pad) = (
            p.kernel as i64,
            p.stride as i64,
            p.dilation as i64,
            p.pad as i64,
        );
        let attrs = vec![
            ints("kernel_shape", &[k, k]),
            ints("strides", &[s, s]),
            ints("pads", &[pad, pad, pad, pad]),
            ints("dilations", &[d, d]),
        ];
        match b {
            Some(b) => self.node("Conv", &[x, w, b], attrs),
            None => self.node("Conv", &[x, w], attrs),
        }
    }

    /// `Conv` with `group` groups and either explicit pads `[top, left, bottom, right]` or,
    /// with `same_upper`, ONNX `auto_pad = SAME_UPPER` (TF "SAME": output `⌈n/stride⌉`, the odd
    /// padding pixel at the end, computed from the actual input size).
    #[allow(clippy::too_many_arguments)]
    pub fn conv_general(
        &mut self,
        x: &str,
        w: &str,
        b: Option<&str>,
        (kernel, stride, dilation): (usize, usize, usize),
        group: usize,
        pads: [usize; 4],
        same_upper: bool,
    ) -> String {
        let (k, s, d) = (kernel as i64, stride as i64, dilation as i64);
        let mut attrs = vec![
            ints("kernel_shape", &[k, k]),
            ints("strides", &[s, s]),
            ints("dilations", &[d, d]),
            attr("group", AttrValue::Int(group as i64)),
        ];
        if same_upper {
            attrs.push(attr("auto_pad", AttrValue::String("SAME_UPPER".into())));
        } else {
            attrs.push(ints("pads", &pads.map(|p| p as i64)));
        }
        match b {
            Some(b) => self.node("Conv", &[x, w, b], attrs),
            None => self.node("Conv", &[x, w], attrs),
        }
    }

    /// `Clip` to `[lo, hi]` (opset 17: the bounds are inputs); ReLU6 is `clip(x, 0, 6)`.
    pub fn clip(&mut self, x: &str, lo: f32, hi: f32) -> String {
        let lo = self.scalar("clip_min", lo);
        let hi = self.scalar("clip_max", hi);
        self.node("Clip", &[x, &lo, &hi], vec![])
    }

    /// `Slice` with steps along `axes` from `starts` to the end (`x[..., ::step]`).
    pub fn slice_steps(&mut self, x: &str, starts: &[i64], axes: &[i64], steps: &[i64]) -> String {
        let s = self.const_i64("starts", starts);
        let e = self.const_i64("ends", &vec![i64::MAX; axes.len()]);
        let a = self.const_i64("axes", axes);
        let st = self.const_i64("steps", steps);
        self.node("Slice", &[x, &s, &e, &a, &st], vec![])
    }

    /// `GlobalAveragePool` then `Flatten` then `Gemm` with `w` `[out, in]` and `b` `[out]`:
    /// an ImageNet classifier head.
    pub fn pooled_linear(&mut self, x: &str, w: &str, b: &str) -> String {
        let p = self.node("GlobalAveragePool", &[x], vec![]);
        let f = self.node("Flatten", &[&p], vec![attr("axis", AttrValue::Int(1))]);
        self.node("Gemm", &[&f, w, b], vec![attr("transB", AttrValue::Int(1))])
    }

    /// `Relu`.
    pub fn relu(&mut self, x: &str) -> String {
        self.node("Relu", &[x], vec![])
    }

    /// `Sigmoid`.
    pub fn sigmoid(&mut self, x: &str) -> String {
        self.node("Sigmoid", &[x], vec![])
    }

    /// `Add` (broadcasting).
    pub fn add(&mut self, a: &str, b: &str) -> String {
        self.node("Add", &[a, b], vec![])
    }

    /// `Mul` (broadcasting).
    pub fn mul(&mut self, a: &str, b: &str) -> String {
        self.node("Mul", &[a, b], vec![])
    }

    /// `Min` (element-wise, broadcasting).
    pub fn min(&mut self, a: &str, b: &str) -> String {
        self.node("Min", &[a, b], vec![])
    }

    /// `MaxPool` k×k with stride and symmetric padding (padding counts as −∞, as PyTorch).
    pub fn max_pool(&mut self, x: &str, kernel: usize, stride: usize, pad: usize) -> String {
        let (k, s, p) = (kernel as i64, stride as i64, pad as i64);
        self.node(
            "MaxPool",
            &[x],
            vec![
                ints("kernel_shape", &[k, k]),
                ints("strides", &[s, s]),
                ints("pads", &[p, p, p, p]),
            ],
        )
    }

    /// `ReduceMax` over `axes` (opset 17: axes is an attribute).
    pub fn reduce_max(&mut self, x: &str, axes: &[i64], keepdims: bool) -> String {
        self.node(
            "ReduceMax",
            &[x],
            vec![
                ints("axes", axes),
                attr("keepdims", AttrValue::Int(keepdims as i64)),
            ],
        )
    }

    /// `Shape` of `x` (int64 \[rank\]).
    pub fn shape(&mut self, x: &str) -> String {
        self.node("Shape", &[x], vec![])
    }

    /// `Slice` along `axes` with constant bounds.
    pub fn slice_const(&mut self, x: &str, starts: &[i64], ends: &[i64], axes: &[i64]) -> String {
        let s = self.const_i64("starts", starts);
        let e = self.const_i64("ends", ends);
        let a = self.const_i64("axes", axes);
        self.node("Slice", &[x, &s, &e, &a], vec![])
    }

    /// `Slice` along `axes` from `starts` (constant) to `ends` (an int64 graph value).
    pub fn slice(&mut self, x: &str, starts: &[i64], ends: &str, axes: &[i64]) -> String {
        let s = self.const_i64("starts", starts);
        let a = self.const_i64("axes", axes);
        self.node("Slice", &[x, &s, ends, &a], vec![])
    }

    /// The spatial size `[H, W]` (int64 \[2\]) of an NCHW value.
    pub fn spatial_size(&mut self, x: &str) -> String {
        let s = self.shape(x);
        self.slice_const(&s, &[2], &[4], &[0])
    }

    /// `Concat` along `axis`.
    pub fn concat(&mut self, xs: &[&str], axis: i64) -> String {
        self.node("Concat", xs, vec![attr("axis", AttrValue::Int(axis))])
    }

    /// `Reshape` to the int64 shape value `shape` (0 copies the input's dimension).
    pub fn reshape(&mut self, x: &str, shape: &str) -> String {
        self.node("Reshape", &[x, shape], vec![])
    }

    fn resize_attrs() -> Vec<AttributeProto> {
        // half_pixel = PyTorch bilinear with align_corners=False (also for 1-pixel outputs,
        // where pytorch_half_pixel would differ from what PyTorch computes).
        vec![
            attr("mode", AttrValue::String("linear".into())),
            attr(
                "coordinate_transformation_mode",
                AttrValue::String("half_pixel".into()),
            ),
        ]
    }

    /// Bilinear resize (align_corners=False) of an NCHW value by integer-free `factor` on H
    /// and W (output `floor(H·factor)`), as `F.interpolate(scale_factor=factor)`.
    pub fn resize_scale(&mut self, x: &str, factor: f32) -> Result<String> {
        let scales = self.initializer("scales", &[4], &[1.0, 1.0, factor, factor])?;
        Ok(self.node("Resize", &[x, "", &scales], Self::resize_attrs()))
    }

    /// Bilinear resize (align_corners=False) of an NCHW value to the spatial size `hw`
    /// (an int64 \[2\] graph value, e.g. from [`Graph::spatial_size`]).
    pub fn resize_to(&mut self, x: &str, hw: &str) -> String {
        let s = self.shape(x);
        let nc = self.slice_const(&s, &[0], &[2], &[0]);
        let sizes = self.concat(&[&nc, hw], 0);
        self.node("Resize", &[x, "", "", &sizes], Self::resize_attrs())
    }

    /// GroupNorm (PyTorch semantics: biased variance over each group's channels and pixels,
    /// then per-channel affine) from opset-17 ops: Reshape to `[N, G, −1]`,
    /// InstanceNormalization (which normalises each `[n, g]` row), Reshape back, Mul, Add.
    pub fn group_norm(
        &mut self,
        x: &str,
        groups: usize,
        gamma: &[f32],
        beta: &[f32],
        eps: f64,
    ) -> Result<String> {
        let c = gamma.len();
        if groups == 0 || !c.is_multiple_of(groups) || beta.len() != c {
            return Err(OnnxError::Invalid(format!(
                "group norm: {c} channels (bias {}) do not split into {groups} groups",
                beta.len()
            )));
        }
        let grouped = self.const_i64("gn_shape", &[0, groups as i64, -1]);
        let r = self.reshape(x, &grouped);
        let ones = self.initializer("gn_one", &[groups], &vec![1.0; groups])?;
        let zeros = self.initializer("gn_zero", &[groups], &vec![0.0; groups])?;
        let n = self.node(
            "InstanceNormalization",
            &[&r, &ones, &zeros],
            vec![attr("epsilon", AttrValue::Float(eps as f32))],
        );
        let shape = self.shape(x);
        let back = self.reshape(&n, &shape);
        let g = self.initializer("gn_weight", &[c, 1, 1], gamma)?;
        let b = self.initializer("gn_bias", &[c, 1, 1], beta)?;
        let y = self.mul(&back, &g);
        Ok(self.add(&y, &b))
    }

    /// The graph proto built so far.
    pub fn proto(&self) -> &GraphProto {
        &self.proto
    }

    /// Serialises the graph as an ONNX model (IR 8, opset 17) with `metadata` as
    /// `metadata_props`.
    pub fn to_model_bytes(self, metadata: &[(String, String)]) -> Vec<u8> {
        ModelProto {
            ir_version: 8,
            opset_import: vec![(String::new(), 17)],
            producer_name: "ssc".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: self.proto,
            metadata_props: metadata.to_vec(),
        }
        .to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_bad_arguments_are_errors() {
        let mut g = Graph::new("t");
        let x = g.input("x", &[Dim::Param("N".into()), Dim::Fixed(4)]);
        let a = g.relu(&x);
        let b = g.relu(&x);
        assert_ne!(a, b);
        assert!(matches!(
            g.initializer("w", &[2, 3], &[0.0; 5]),
            Err(OnnxError::Invalid(_))
        ));
        // 6 channels do not split into 4 groups; bias length must match
        assert!(g.group_norm(&a, 4, &[1.0; 6], &[0.0; 6], 1e-5).is_err());
        assert!(g.group_norm(&a, 3, &[1.0; 6], &[0.0; 5], 1e-5).is_err());
        assert!(g.group_norm(&a, 3, &[1.0; 6], &[0.0; 6], 1e-5).is_ok());
        let names: Vec<&String> = g.proto().node.iter().flat_map(|n| &n.output).collect();
        let mut dedup = names.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), names.len(), "every value is defined once");
    }

    #[test]
    fn resize_uses_half_pixel_linear_and_in_graph_sizes() {
        let mut g = Graph::new("t");
        let x = g.input("x", &[]);
        let r = g.input("r", &[]);
        let hw = g.spatial_size(&r);
        let y = g.resize_to(&x, &hw);
        let node = g.proto().node.last().unwrap();
        assert_eq!((node.op_type.as_str(), &node.output[0]), ("Resize", &y));
        // X, roi (omitted), scales (omitted), sizes = Concat(Shape(x)[0:2], hw)
        assert_eq!(node.input.len(), 4);
        assert_eq!((node.input[1].as_str(), node.input[2].as_str()), ("", ""));
        let mode = |name: &str| {
            node.attribute
                .iter()
                .find(|a| a.name == name)
                .map(|a| a.value.clone())
        };
        assert_eq!(mode("mode"), Some(AttrValue::String("linear".into())));
        assert_eq!(
            mode("coordinate_transformation_mode"),
            Some(AttrValue::String("half_pixel".into()))
        );
    }
}
