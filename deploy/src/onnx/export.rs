//! tether -> ONNX: one or a few standard opset-13 nodes per op, weights as initializers.
//! The batch axis is a symbolic leading dimension `N` on the inputs and the output.

use std::string::{String, ToString};
use std::vec::Vec;
use std::{format, vec};

use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::tensor_shape_proto::{Dimension, dimension};
use onnx_protobuf::type_proto::{self, Tensor as TypeTensor};
use onnx_protobuf::{
    AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto,
    SparseTensorProto, TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto,
};

use super::error::OnnxError;
use super::tensor::{encode_f32, encode_i64};
use crate::format::{
    Binary, CoordMode, Model, NearestRound, Op, PadMode, Reduce, ResizeMode, TensorData, Unary,
};
use crate::kernels::sparse;

/// The opset the exporter writes.
pub const EXPORT_OPSET: i64 = 13;

/// Export options.
#[derive(Clone, Copy, Debug)]
pub struct ExportOptions {
    /// Write CSR-stored weights sparse, as `Constant` nodes with a `sparse_value` (smaller
    /// files; not every runtime reads them). Off: every weight is a dense initializer, which any runtime loads.
    pub sparse_initializers: bool,
    /// Give inputs and output a symbolic leading batch axis `N` (tether values are per
    /// sample). A model imported with static shapes (its sample is the whole tensor,
    /// [`Model::static_shapes`]) is exported without one whatever this says, so that its
    /// shapes come back as they went in.
    pub batch_axis: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            sparse_initializers: false,
            batch_axis: true,
        }
    }
}

/// Exports a model as serialized ONNX bytes.
pub fn export_bytes(model: &Model, options: &ExportOptions) -> Result<Vec<u8>, OnnxError> {
    export(model, options)?
        .write_to_bytes()
        .map_err(|e| OnnxError::malformed(format!("serializing ONNX: {e}")))
}

fn attr_int(name: &str, v: i64) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.to_string();
    a.type_ = attribute_proto::AttributeType::INT.into();
    a.i = v;
    a
}

fn attr_float(name: &str, v: f32) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.to_string();
    a.type_ = attribute_proto::AttributeType::FLOAT.into();
    a.f = v;
    a
}

fn attr_ints(name: &str, v: &[usize]) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.to_string();
    a.type_ = attribute_proto::AttributeType::INTS.into();
    a.ints = v.iter().map(|&x| x as i64).collect();
    a
}

fn value_info(name: &str, dims: &[usize], batch: bool) -> ValueInfoProto {
    let mut shape = TensorShapeProto::new();
    let mut dim = |v: dimension::Value| {
        let mut d = Dimension::new();
        d.value = Some(v);
        shape.dim.push(d);
    };
    if batch {
        dim(dimension::Value::DimParam("N".to_string()));
    }
    for &d in dims {
        dim(dimension::Value::DimValue(d as i64));
    }
    let mut tt = TypeTensor::new();
    tt.elem_type = DataType::FLOAT as i32;
    tt.shape = Some(shape).into();
    let mut t = TypeProto::new();
    t.value = Some(type_proto::Value::TensorType(tt));
    let mut v = ValueInfoProto::new();
    v.name = name.to_string();
    v.type_ = Some(t).into();
    v
}

struct Graph<'m, 'a> {
    model: &'m Model<'a>,
    g: GraphProto,
    options: ExportOptions,
    counter: usize,
}

impl Graph<'_, '_> {
    fn name(&self, v: usize) -> String {
        if v == self.model.output {
            "output".to_string()
        } else if let Some(k) = self.model.outputs.iter().position(|&o| o == v) {
            format!("output{k}")
        } else if let Some(k) = self.model.inputs.iter().position(|&i| i == v) {
            if k == 0 {
                "input".to_string()
            } else {
                format!("input{k}")
            }
        } else {
            format!("v{v}")
        }
    }

    fn fresh(&mut self, stem: &str) -> String {
        self.counter += 1;
        format!("{stem}_{}", self.counter)
    }

    fn node(&mut self, op: &str, inputs: &[String], output: &str, attrs: Vec<AttributeProto>) {
        let mut n = NodeProto::new();
        n.op_type = op.to_string();
        n.name = format!("{}_{}", op.to_lowercase(), self.g.node.len());
        n.input = inputs.to_vec();
        n.output = vec![output.to_string()];
        n.attribute = attrs;
        self.g.node.push(n);
    }

    fn init_f32(&mut self, stem: &str, dims: &[usize], v: &[f32]) -> String {
        let name = self.fresh(stem);
        self.g.initializer.push(encode_f32(&name, dims, v));
        name
    }

    fn init_i64(&mut self, stem: &str, v: &[i64]) -> String {
        let name = self.fresh(stem);
        self.g.initializer.push(encode_i64(&name, &[v.len()], v));
        name
    }

    /// A weight tensor as an initializer: dense, or sparse when asked and stored CSR.
    fn weight(&mut self, t: usize, transpose: bool) -> String {
        let tensor = &self.model.tensors[t];
        let d = tensor.dims.as_slice().to_vec();
        let name = self.fresh(&format!("w{t}"));
        if let (TensorData::Csr(c), true, false) =
            (tensor.data, self.options.sparse_initializers, transpose)
        {
            let mut idx = Vec::with_capacity(c.values().len());
            for r in 0..c.rows() {
                let (cols, _) = c.row(r);
                idx.extend(cols.iter().map(|&k| (r * c.cols() + k as usize) as i64));
            }
            let mut s = SparseTensorProto::new();
            s.values = Some(encode_f32(&name, &[c.values().len()], c.values())).into();
            s.indices = Some(encode_i64(&format!("{name}_indices"), &[idx.len()], &idx)).into();
            s.dims = d.iter().map(|&x| x as i64).collect();
            // A Constant node whose `sparse_value` is the CSR weight: its output is a dense
            // tensor, so the graph type-checks (onnx.checker's full check refuses a
            // `sparse_initializer` read by Conv or Gemm, whose inputs are dense tensors),
            // and runtimes densify it at load as they do sparse initializers.
            let mut a = AttributeProto::new();
            a.name = "sparse_value".to_string();
            a.type_ = attribute_proto::AttributeType::SPARSE_TENSOR.into();
            a.sparse_tensor = Some(s).into();
            self.node("Constant", &[], &name, vec![a]);
            return name;
        }
        let dense = tensor.to_dense();
        if transpose {
            let (r, c) = (d[0], d[1..].iter().product::<usize>());
            let mut t = vec![0.0; dense.len()];
            sparse::transpose(&dense, r, c, &mut t);
            self.g.initializer.push(encode_f32(&name, &[c, r], &t));
        } else {
            self.g.initializer.push(encode_f32(&name, &d, &dense));
        }
        name
    }

    fn batched(&self, v: usize) -> bool {
        self.options.batch_axis && self.model.batched[v]
    }

    /// A batched operand of per-sample rank below `rank`, reshaped to `[N, 1.., dims]` so
    /// that ONNX's broadcast (aligned at the last axis, batch included) is the runtime's.
    fn lift(&mut self, v: usize, rank: usize) -> String {
        let d = self.model.shapes[v].as_slice();
        let name = self.name(v);
        if !self.batched(v) || d.len() >= rank {
            return name;
        }
        let mut t = vec![0i64];
        t.extend(std::iter::repeat_n(1, rank - d.len()));
        t.extend(d.iter().map(|&x| x as i64));
        let shape = self.init_i64("shape", &t);
        let out = self.fresh("lifted");
        self.node("Reshape", &[name, shape], &out, vec![]);
        out
    }
}

/// Exports a model as an ONNX `ModelProto` (opset 13).
pub fn export(model: &Model, options: &ExportOptions) -> Result<ModelProto, OnnxError> {
    let options = &ExportOptions {
        batch_axis: options.batch_axis && !model.static_shapes,
        ..*options
    };
    let mut gr = Graph {
        model,
        g: GraphProto::new(),
        options: *options,
        counter: 0,
    };
    gr.g.name = "tether".to_string();
    let off = usize::from(options.batch_axis);
    for &v in &model.inputs {
        let name = gr.name(v);
        let vi = value_info(&name, model.shapes[v].as_slice(), options.batch_axis);
        gr.g.input.push(vi);
    }
    for (i, node) in model.nodes.iter().enumerate() {
        let out = gr.name(node.output);
        let ins: Vec<String> = node.inputs().iter().map(|&v| gr.name(v)).collect();
        let x = node.inputs().first().copied();
        let xs = x.map_or(&[][..], |x| model.shapes[x].as_slice());
        let batch_axis = options.batch_axis;
        let fail = |what: &str| {
            let mut what = what.to_string();
            if batch_axis && what.contains("batch") {
                what.push_str(
                    " (export without a batch axis: `tether-deploy export --no-batch-axis`, \
                     or ExportOptions::batch_axis = false)",
                );
            }
            let mut e = OnnxError::unsupported(what);
            e.node = Some(format!("#{i}"));
            e.op = Some(node.op.name().to_string());
            Err(e)
        };
        match node.op {
            Op::Linear { weight, bias } => {
                let b = bias.map(|b| gr.weight(b, false));
                if xs.len() == 1 && (gr.batched(node.inputs[0]) || !options.batch_axis) {
                    let w = gr.weight(weight, false);
                    let mut inputs = vec![ins[0].clone(), w];
                    inputs.extend(b);
                    gr.node("Gemm", &inputs, &out, vec![attr_int("transB", 1)]);
                } else {
                    let w = gr.weight(weight, true);
                    match b {
                        None => gr.node("MatMul", &[ins[0].clone(), w], &out, vec![]),
                        Some(b) => {
                            let mm = gr.fresh("matmul");
                            gr.node("MatMul", &[ins[0].clone(), w], &mm, vec![]);
                            gr.node("Add", &[mm, b], &out, vec![]);
                        }
                    }
                }
            }
            Op::Conv2d { weight, bias, geom } => {
                if xs.len() + off != 4 {
                    return fail("a convolution of other than [N, C, H, W] in ONNX");
                }
                let wd = model.tensors[weight].dims.as_slice().to_vec();
                let mut inputs = vec![ins[0].clone(), gr.weight(weight, false)];
                inputs.extend(bias.map(|b| gr.weight(b, false)));
                gr.node(
                    "Conv",
                    &inputs,
                    &out,
                    vec![
                        attr_ints("kernel_shape", &wd[2..4]),
                        attr_ints("strides", &geom.stride),
                        attr_ints("pads", &geom.pads),
                        attr_ints("dilations", &geom.dilation),
                        attr_int("group", geom.group as i64),
                    ],
                );
            }
            Op::MaxPool2d(g) | Op::AvgPool2d(g) => {
                if xs.len() + off != 4 {
                    return fail("pooling of other than [N, C, H, W] in ONNX");
                }
                let max = matches!(node.op, Op::MaxPool2d(_));
                let mut attrs = vec![
                    attr_ints("kernel_shape", &g.kernel),
                    attr_ints("strides", &g.stride),
                    attr_ints("pads", &g.pads),
                    attr_int("ceil_mode", g.ceil as i64),
                ];
                if max {
                    attrs.push(attr_ints("dilations", &g.dilation));
                } else {
                    if g.dilation != [1, 1] {
                        return fail("dilated average pooling (opset 13 has none)");
                    }
                    attrs.push(attr_int("count_include_pad", g.count_pad as i64));
                }
                let op = if max { "MaxPool" } else { "AveragePool" };
                gr.node(op, &ins, &out, attrs);
            }
            Op::Flatten | Op::Reshape(_) => {
                let target = model.shapes[node.output].as_slice();
                let mut t: Vec<i64> = if gr.batched(node.output) {
                    vec![0]
                } else {
                    vec![]
                };
                t.extend(target.iter().map(|&d| d as i64));
                let shape = gr.init_i64("shape", &t);
                gr.node("Reshape", &[ins[0].clone(), shape], &out, vec![]);
            }
            Op::Relu => gr.node("Relu", &ins, &out, vec![]),
            Op::Sine { w0 } => {
                if w0 == 1.0 {
                    gr.node("Sin", &ins, &out, vec![]);
                } else {
                    let c = gr.init_f32("w0", &[], &[w0]);
                    let t = gr.fresh("scaled");
                    gr.node("Mul", &[ins[0].clone(), c], &t, vec![]);
                    gr.node("Sin", &[t], &out, vec![]);
                }
            }
            Op::Softmax { axis, end } => {
                let (a, e) = if (axis, end) == (0, 0) {
                    (xs.len() - 1, xs.len())
                } else {
                    (axis, end)
                };
                let o = usize::from(gr.batched(node.inputs[0]));
                if e == a + 1 {
                    gr.node(
                        "Softmax",
                        &ins,
                        &out,
                        vec![attr_int("axis", (a + o) as i64)],
                    );
                } else if e == xs.len() {
                    let mut flat: Vec<i64> = if o == 1 { vec![0] } else { vec![] };
                    flat.extend(xs[..a].iter().map(|&d| d as i64));
                    flat.push(-1);
                    let mut back: Vec<i64> = if o == 1 { vec![0] } else { vec![] };
                    back.extend(xs.iter().map(|&d| d as i64));
                    let (fs, bs) = (gr.init_i64("shape", &flat), gr.init_i64("shape", &back));
                    let (t1, t2) = (gr.fresh("flat"), gr.fresh("softmax"));
                    gr.node("Reshape", &[ins[0].clone(), fs], &t1, vec![]);
                    gr.node("Softmax", &[t1], &t2, vec![attr_int("axis", -1)]);
                    gr.node("Reshape", &[t2, bs], &out, vec![]);
                } else {
                    return fail("softmax over inner axes only");
                }
            }
            Op::Binary(b) => {
                let rank = model.shapes[node.output].as_slice().len();
                let a = gr.lift(node.inputs[0], rank);
                let c = gr.lift(node.inputs[1], rank);
                let op = match b {
                    Binary::Add => "Add",
                    Binary::Sub => "Sub",
                    Binary::Mul => "Mul",
                    Binary::Div => "Div",
                    Binary::Pow => "Pow",
                    Binary::Max => "Max",
                    Binary::Min => "Min",
                    Binary::PRelu => "PRelu",
                    Binary::Equal => "Equal",
                    Binary::Greater => "Greater",
                    Binary::Less => "Less",
                    Binary::GreaterOrEqual => "GreaterOrEqual",
                    Binary::LessOrEqual => "LessOrEqual",
                };
                if matches!(
                    b,
                    Binary::Equal
                        | Binary::Greater
                        | Binary::Less
                        | Binary::GreaterOrEqual
                        | Binary::LessOrEqual
                ) {
                    // ONNX comparisons give booleans; the runtime holds them as 0 and 1.
                    let t = gr.fresh("compare");
                    gr.node(op, &[a, c], &t, vec![]);
                    gr.node("Cast", &[t], &out, vec![attr_int("to", 1)]);
                } else {
                    gr.node(op, &[a, c], &out, vec![]);
                }
            }
            Op::Unary(Unary::Gelu) => {
                // x (1 + erf(x / sqrt 2)) / 2, as PyTorch's exporter writes it at opset 13.
                let (k, one, half) = (
                    gr.init_f32("rsqrt2", &[], &[core::f32::consts::FRAC_1_SQRT_2]),
                    gr.init_f32("one", &[], &[1.0]),
                    gr.init_f32("half", &[], &[0.5]),
                );
                let t: Vec<String> = (0..4).map(|_| gr.fresh("gelu")).collect();
                gr.node("Mul", &[ins[0].clone(), k], &t[0], vec![]);
                gr.node("Erf", &[t[0].clone()], &t[1], vec![]);
                gr.node("Add", &[t[1].clone(), one], &t[2], vec![]);
                gr.node("Mul", &[ins[0].clone(), t[2].clone()], &t[3], vec![]);
                gr.node("Mul", &[t[3].clone(), half], &out, vec![]);
            }
            Op::Unary(Unary::GeluTanh) => {
                // x (1 + tanh(k (x + 0.044715 x^3))) / 2.
                let (k, c, three, one, half) = (
                    gr.init_f32("k", &[], &[0.797_884_6]),
                    gr.init_f32("c", &[], &[0.044_715]),
                    gr.init_f32("three", &[], &[3.0]),
                    gr.init_f32("one", &[], &[1.0]),
                    gr.init_f32("half", &[], &[0.5]),
                );
                let t: Vec<String> = (0..7).map(|_| gr.fresh("gelu")).collect();
                gr.node("Pow", &[ins[0].clone(), three], &t[0], vec![]);
                gr.node("Mul", &[t[0].clone(), c], &t[1], vec![]);
                gr.node("Add", &[ins[0].clone(), t[1].clone()], &t[2], vec![]);
                gr.node("Mul", &[t[2].clone(), k], &t[3], vec![]);
                gr.node("Tanh", &[t[3].clone()], &t[4], vec![]);
                gr.node("Add", &[t[4].clone(), one], &t[5], vec![]);
                gr.node("Mul", &[ins[0].clone(), t[5].clone()], &t[6], vec![]);
                gr.node("Mul", &[t[6].clone(), half], &out, vec![]);
            }
            Op::Unary(Unary::HardSwish) => {
                // HardSwish is opset 14: x HardSigmoid(x; 1/6, 1/2) is the same function.
                let t = gr.fresh("hardsigmoid");
                gr.node(
                    "HardSigmoid",
                    &ins,
                    &t,
                    vec![attr_float("alpha", 1.0 / 6.0), attr_float("beta", 0.5)],
                );
                gr.node("Mul", &[ins[0].clone(), t], &out, vec![]);
            }
            Op::Unary(f) => {
                let (op, attrs, extra): (&str, Vec<AttributeProto>, Vec<String>) = match f {
                    Unary::Sigmoid => ("Sigmoid", vec![], vec![]),
                    Unary::Tanh => ("Tanh", vec![], vec![]),
                    Unary::Exp => ("Exp", vec![], vec![]),
                    Unary::Log => ("Log", vec![], vec![]),
                    Unary::Sqrt => ("Sqrt", vec![], vec![]),
                    Unary::Neg => ("Neg", vec![], vec![]),
                    Unary::Abs => ("Abs", vec![], vec![]),
                    Unary::Reciprocal => ("Reciprocal", vec![], vec![]),
                    Unary::LeakyRelu(a) => ("LeakyRelu", vec![attr_float("alpha", a)], vec![]),
                    Unary::Elu(a) => ("Elu", vec![attr_float("alpha", a)], vec![]),
                    Unary::HardSigmoid(a, b) => (
                        "HardSigmoid",
                        vec![attr_float("alpha", a), attr_float("beta", b)],
                        vec![],
                    ),
                    Unary::Softplus => ("Softplus", vec![], vec![]),
                    Unary::Clip(lo, hi) => {
                        let l = gr.init_f32("min", &[], &[lo]);
                        let h = gr.init_f32("max", &[], &[hi]);
                        ("Clip", vec![], vec![l, h])
                    }
                    Unary::Floor => ("Floor", vec![], vec![]),
                    Unary::Ceil => ("Ceil", vec![], vec![]),
                    Unary::Identity => ("Identity", vec![], vec![]),
                    Unary::Sin => ("Sin", vec![], vec![]),
                    Unary::Cos => ("Cos", vec![], vec![]),
                    Unary::Erf => ("Erf", vec![], vec![]),
                    Unary::Pow(p) => {
                        let e = gr.init_f32("exponent", &[], &[p]);
                        ("Pow", vec![], vec![e])
                    }
                    Unary::Gelu | Unary::GeluTanh | Unary::HardSwish => {
                        unreachable!("matched above")
                    }
                };
                let mut inputs = ins.clone();
                inputs.extend(extra);
                gr.node(op, &inputs, &out, attrs);
            }
            Op::MatMul => {
                let (a, b) = (node.inputs[0], node.inputs[1]);
                let (ra, rb) = (
                    model.shapes[a].as_slice().len(),
                    model.shapes[b].as_slice().len(),
                );
                let ok = |v: usize, r: usize| if gr.batched(v) { r >= 2 } else { r <= 2 };
                let vector_by_matrix = gr.batched(a) && ra == 1 && !gr.batched(b) && rb == 2;
                if options.batch_axis
                    && !vector_by_matrix
                    && (!ok(a, ra) || !ok(b, rb) || (gr.batched(a) && gr.batched(b) && ra != rb))
                {
                    return fail("a matrix product whose ONNX broadcast would mix the batch axis");
                }
                gr.node("MatMul", &ins, &out, vec![]);
            }
            Op::Transpose { perm, rank } => {
                let o = usize::from(gr.batched(node.inputs[0]));
                let mut p: Vec<usize> = if o == 1 { vec![0] } else { vec![] };
                p.extend(perm[..rank].iter().map(|&a| a + o));
                gr.node("Transpose", &ins, &out, vec![attr_ints("perm", &p)]);
            }
            Op::Concat { axis } => {
                let any = node.inputs().iter().any(|&v| gr.batched(v));
                if any && node.inputs().iter().any(|&v| !gr.batched(v)) {
                    return fail("concatenating a constant to batched values");
                }
                let o = usize::from(any);
                gr.node(
                    "Concat",
                    &ins,
                    &out,
                    vec![attr_int("axis", (axis + o) as i64)],
                );
            }
            Op::Const { tensor } => {
                let t = &model.tensors[tensor];
                let d = t.dims.as_slice().to_vec();
                let v = t.to_dense();
                gr.g.initializer.push(encode_f32(&out, &d, &v));
            }
            Op::Input { .. } => {}
            Op::Reduce { kind, axes } => {
                let o = usize::from(gr.batched(node.inputs[0]));
                let ax: Vec<usize> = (0..xs.len())
                    .filter(|&i| axes & (1 << i) != 0)
                    .map(|i| i + o)
                    .collect();
                let keep = attr_int("keepdims", 1);
                match kind {
                    // ReduceSum takes its axes as an input since opset 13.
                    Reduce::Sum => {
                        let a: Vec<i64> = ax.iter().map(|&a| a as i64).collect();
                        let a = gr.init_i64("axes", &a);
                        gr.node("ReduceSum", &[ins[0].clone(), a], &out, vec![keep]);
                    }
                    Reduce::Mean | Reduce::Max | Reduce::Min => {
                        let op = match kind {
                            Reduce::Mean => "ReduceMean",
                            Reduce::Max => "ReduceMax",
                            _ => "ReduceMin",
                        };
                        gr.node(op, &ins, &out, vec![attr_ints("axes", &ax), keep]);
                    }
                }
            }
            Op::Pad(g) => {
                let o = usize::from(gr.batched(node.inputs[0]));
                let r = xs.len();
                let mut pads = vec![0i64; 2 * (r + o)];
                for i in 0..r {
                    pads[o + i] = g.begin[i] as i64;
                    pads[r + o + o + i] = g.end[i] as i64;
                }
                let p = gr.init_i64("pads", &pads);
                let (mode, value) = match g.mode {
                    PadMode::Constant(v) => ("constant", v),
                    PadMode::Reflect => ("reflect", 0.0),
                    PadMode::Edge => ("edge", 0.0),
                };
                let v = gr.init_f32("value", &[], &[value]);
                let mut a = AttributeProto::new();
                a.name = "mode".to_string();
                a.type_ = attribute_proto::AttributeType::STRING.into();
                a.s = mode.as_bytes().to_vec();
                gr.node("Pad", &[ins[0].clone(), p, v], &out, vec![a]);
            }
            Op::MeshFeatures(_) | Op::EmanConv { .. } | Op::Gate | Op::Scalars => {
                return fail("mesh (EMAN) ops: ONNX has no mesh operators");
            }
            Op::ConvTranspose2d { weight, bias, geom } => {
                if xs.len() + off != 4 {
                    return fail("a transposed convolution of other than [N, C, H, W] in ONNX");
                }
                let wd = model.tensors[weight].dims.as_slice().to_vec();
                let mut inputs = vec![ins[0].clone(), gr.weight(weight, false)];
                inputs.extend(bias.map(|b| gr.weight(b, false)));
                gr.node(
                    "ConvTranspose",
                    &inputs,
                    &out,
                    vec![
                        attr_ints("kernel_shape", &wd[2..4]),
                        attr_ints("strides", &geom.stride),
                        attr_ints("pads", &geom.pads),
                        attr_ints("dilations", &geom.dilation),
                        attr_int("group", geom.group as i64),
                        attr_ints("output_padding", &geom.output_padding),
                    ],
                );
            }
            Op::Where => {
                let rank = model.shapes[node.output].as_slice().len();
                let c = gr.lift(node.inputs[0], rank);
                let a = gr.lift(node.inputs[1], rank);
                let b = gr.lift(node.inputs[2], rank);
                let t = gr.fresh("condition");
                gr.node("Cast", &[c], &t, vec![attr_int("to", 9)]);
                gr.node("Where", &[t, a, b], &out, vec![]);
            }
            Op::Resize(g) => {
                // Scales per ONNX axis (1 on the batch axis); a resize to sizes (scale 0)
                // is written as the scale `out / in` where that gives the same extent.
                let mut scales = vec![1.0f32; off];
                for (a, &n) in xs.iter().enumerate() {
                    let s = if g.scales[a] == 0.0 {
                        g.out[a] as f32 / n as f32
                    } else {
                        g.scales[a]
                    };
                    if (s * n as f32).floor() as usize != g.out[a] {
                        return fail("a Resize to sizes no f32 scale reproduces");
                    }
                    scales.push(s);
                }
                let sc = gr.init_f32("scales", &[scales.len()], &scales);
                let text = |name: &str, v: &str| {
                    let mut a = AttributeProto::new();
                    a.name = name.to_string();
                    a.type_ = attribute_proto::AttributeType::STRING.into();
                    a.s = v.as_bytes().to_vec();
                    a
                };
                let (mode, nearest) = match g.mode {
                    ResizeMode::Linear => ("linear", "round_prefer_floor"),
                    ResizeMode::Nearest(NearestRound::PreferFloor) => {
                        ("nearest", "round_prefer_floor")
                    }
                    ResizeMode::Nearest(NearestRound::PreferCeil) => {
                        ("nearest", "round_prefer_ceil")
                    }
                    ResizeMode::Nearest(NearestRound::Floor) => ("nearest", "floor"),
                    ResizeMode::Nearest(NearestRound::Ceil) => ("nearest", "ceil"),
                };
                let coord = match g.coord {
                    CoordMode::HalfPixel => "half_pixel",
                    CoordMode::Asymmetric => "asymmetric",
                    CoordMode::PytorchHalfPixel => "pytorch_half_pixel",
                    CoordMode::AlignCorners => "align_corners",
                    CoordMode::TfHalfPixelForNearest => "tf_half_pixel_for_nearest",
                    CoordMode::HalfPixelSymmetric => {
                        return fail("Resize half_pixel_symmetric (opset 19; export writes 13)");
                    }
                };
                gr.node(
                    "Resize",
                    &[ins[0].clone(), String::new(), sc],
                    &out,
                    vec![
                        text("mode", mode),
                        text("coordinate_transformation_mode", coord),
                        text("nearest_mode", nearest),
                    ],
                );
            }
            Op::Output { .. } => gr.node("Identity", &ins, &out, vec![]),
        }
    }
    gr.g.output.push(value_info(
        "output",
        model.shapes[model.output].as_slice(),
        options.batch_axis,
    ));
    for &v in &model.outputs[1..] {
        let name = gr.name(v);
        let vi = value_info(&name, model.shapes[v].as_slice(), options.batch_axis);
        gr.g.output.push(vi);
    }
    if model.inputs.contains(&model.output) {
        return Err(OnnxError::unsupported("a model whose output is its input"));
    }
    let mut m = ModelProto::new();
    m.ir_version = 7;
    m.producer_name = "tether-deploy".to_string();
    m.producer_version = crate::VERSION.to_string();
    let mut o = OperatorSetIdProto::new();
    o.version = EXPORT_OPSET;
    m.opset_import.push(o);
    m.graph = Some(gr.g).into();
    Ok(m)
}
