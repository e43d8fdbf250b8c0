//! Writing the format: [`ModelBuilder`] collects tensors and ops and lays them out as
//! `deploy/FORMAT.md` specifies (tables, then 16-byte-aligned data, CRC-32 in the header).
//! The builder does not validate the graph; [`ModelBuilder::finish`] parses its own output,
//! so a model that would not load is never written.

use alloc::vec::Vec;

use crate::error::Error;
use crate::format::{
    Binary, ConvGeom, ConvTransposeGeom, DATA_ALIGN, Dims, HEADER_LEN, MAGIC, MAX_INPUTS, MAX_RANK,
    MeshFeatures, Model, NONE, OP_ENTRY_LEN, OP_PARAMS, Op, PadGeom, PadMode, PoolGeom, Reduce,
    ResizeGeom, TENSOR_ENTRY_LEN, Unary, VERSION, kind, opcode,
};

/// A tensor added to a builder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorId(u32);

/// A value (activation) of the graph being built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValueId(u32);

/// An op to add, with its tensors.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OpSpec {
    /// `y = W x + b`, `W` of shape `[out, in]`.
    Linear {
        /// Weight.
        weight: TensorId,
        /// Bias.
        bias: Option<TensorId>,
    },
    /// 2-D convolution, weight `[oc, ic, k, k]`.
    Conv2d {
        /// Weight.
        weight: TensorId,
        /// Bias.
        bias: Option<TensorId>,
        /// Stride.
        stride: u32,
        /// Zero padding on each side.
        padding: u32,
    },
    /// Max pooling.
    MaxPool2d {
        /// Window side.
        kernel: u32,
        /// Stride.
        stride: u32,
    },
    /// Average pooling.
    AvgPool2d {
        /// Window side.
        kernel: u32,
        /// Stride.
        stride: u32,
    },
    /// To rank 1.
    Flatten,
    /// `max(x, 0)`.
    Relu,
    /// `sin(w0 x)`.
    Sine {
        /// Frequency factor.
        w0: f32,
    },
    /// Softmax over the last axis.
    Softmax,
    /// Element-wise sum of two values.
    Add,
    /// 2-D convolution with full geometry, weight `[oc, ic / group, kh, kw]`.
    Conv {
        /// Weight.
        weight: TensorId,
        /// Bias.
        bias: Option<TensorId>,
        /// Strides, padding, dilation, groups.
        geom: ConvGeom,
    },
    /// Max pooling with full geometry.
    MaxPool(PoolGeom),
    /// Average pooling with full geometry.
    AvgPool(PoolGeom),
    /// Softmax over axes `axis..end` taken together.
    SoftmaxAxes {
        /// First axis.
        axis: usize,
        /// One past the last.
        end: usize,
    },
    /// Element-wise binary op (broadcasting).
    Binary(Binary),
    /// Element-wise function.
    Unary(Unary),
    /// Matrix product of two values.
    MatMul,
    /// Axis permutation (`perm[..rank]`).
    Transpose {
        /// Output axis `i` is input axis `perm[i]`.
        perm: [usize; MAX_RANK],
        /// Rank.
        rank: usize,
    },
    /// Concatenation of 2 to 4 values along an axis.
    Concat {
        /// The axis.
        axis: usize,
    },
    /// Same elements, new shape.
    Reshape(Dims),
    /// A constant value from a tensor.
    Const(TensorId),
    /// A mesh model's input features (reads value 0, the vertex positions).
    MeshFeatures(MeshFeatures),
    /// EMAN attention convolution (see [`crate::format::Op::EmanConv`]).
    EmanConv {
        /// Key kernel `[c_out d_out, c_in d_in]`.
        key: TensorId,
        /// Value kernel, same shape.
        value: TensorId,
        /// Query self-kernel `[1 + 2s, c_in, c_out]`.
        query: TensorId,
        /// Self-interaction kernel, same layout.
        self_kernel: TensorId,
        /// Scalar bias `[c_out]`.
        bias: TensorId,
        /// Attention heads.
        heads: u32,
        /// Output rotation order.
        order_out: u32,
    },
    /// Gate nonlinearity.
    Gate,
    /// Order-0 components.
    Scalars,
    /// A reduction over the axes of a mask (they keep extent 1).
    Reduce {
        /// Mean, sum, max or min.
        kind: Reduce,
        /// Bit `i`: axis `i` of the sample is reduced.
        axes: u8,
    },
    /// Padding of every axis of a sample of rank `rank`.
    Pad {
        /// Widths and fill.
        geom: PadGeom,
        /// The input's rank.
        rank: usize,
    },
    /// Resizing of every axis of a sample of rank `rank`.
    Resize {
        /// Output extents, scales, interpolation.
        geom: ResizeGeom,
        /// The input's rank.
        rank: usize,
    },
    /// 2-D transposed convolution, weight `[ic, oc / group, kh, kw]`.
    ConvTranspose {
        /// Weight.
        weight: TensorId,
        /// Bias.
        bias: Option<TensorId>,
        /// Strides, cropping, dilation, groups, output padding.
        geom: ConvTransposeGeom,
    },
    /// `c != 0 ? a : b` of three values (condition first).
    Where,
}

struct TensorEntry {
    kind: u8,
    dims: Vec<u32>,
    nnz: u32,
    data: Vec<u8>,
}

struct OpEntry {
    code: u8,
    rank: u8,
    inputs: Vec<u32>,
    params: [u32; OP_PARAMS],
}

/// Builds model bytes.
pub struct ModelBuilder {
    input: Vec<u32>,
    tensors: Vec<TensorEntry>,
    ops: Vec<OpEntry>,
    n_inputs: u32,
    n_outputs: u32,
    flags: u32,
}

impl ModelBuilder {
    /// A model whose per-sample input has shape `input` (e.g. `[784]` or `[1, 28, 28]`).
    pub fn new(input: &[usize]) -> Self {
        Self {
            input: input.iter().map(|&d| d as u32).collect(),
            tensors: Vec::new(),
            ops: Vec::new(),
            n_inputs: 1,
            n_outputs: 1,
            flags: 0,
        }
    }

    /// Marks the model as having no batch axis: its input shape is the whole tensor (see
    /// [`crate::format::FLAG_STATIC_SHAPES`]).
    pub fn set_static_shapes(&mut self) {
        self.flags |= crate::format::FLAG_STATIC_SHAPES;
    }

    /// Adds a further model input of per-sample shape `shape` (input 1, 2, ...).
    pub fn extra_input(&mut self, shape: &[usize]) -> ValueId {
        let mut params = [0u32; OP_PARAMS];
        params[0] = self.n_inputs;
        for (p, &d) in params[1..].iter_mut().zip(shape) {
            *p = d as u32;
        }
        self.n_inputs += 1;
        self.ops.push(OpEntry {
            code: opcode::INPUT,
            rank: shape.len() as u8,
            inputs: Vec::new(),
            params,
        });
        ValueId(self.ops.len() as u32)
    }

    /// Marks `v` as a further model output (output 1, 2, ... in the order of the calls;
    /// output 0 is the one [`ModelBuilder::finish`] names).
    pub fn extra_output(&mut self, v: ValueId) -> ValueId {
        let mut params = [0u32; OP_PARAMS];
        params[0] = self.n_outputs;
        self.n_outputs += 1;
        self.ops.push(OpEntry {
            code: opcode::OUTPUT,
            rank: 0,
            inputs: alloc::vec![v.0],
            params,
        });
        ValueId(self.ops.len() as u32)
    }

    /// The model input.
    pub fn input(&self) -> ValueId {
        ValueId(0)
    }

    fn push(&mut self, kind: u8, dims: &[usize], nnz: usize, data: Vec<u8>) -> TensorId {
        self.tensors.push(TensorEntry {
            kind,
            dims: dims.iter().map(|&d| d as u32).collect(),
            nnz: nnz as u32,
            data,
        });
        TensorId(self.tensors.len() as u32 - 1)
    }

    /// A dense f32 tensor (row-major).
    pub fn dense(&mut self, dims: &[usize], values: &[f32]) -> TensorId {
        self.push(kind::F32, dims, 0, bytemuck::cast_slice(values).to_vec())
    }

    /// A dense tensor stored in half precision (half the bytes; rounds each value).
    pub fn dense_f16(&mut self, dims: &[usize], values: &[f32]) -> TensorId {
        let bits: Vec<u16> = values
            .iter()
            .map(|&v| half::f16::from_f32(v).to_bits())
            .collect();
        self.push(kind::F16, dims, 0, bytemuck::cast_slice(&bits).to_vec())
    }

    /// A CSR tensor from dense row-major values: rows = `dims[0]`, columns = the product
    /// of the rest; exact zeros are dropped.
    pub fn csr(&mut self, dims: &[usize], values: &[f32]) -> TensorId {
        let rows = dims.first().copied().unwrap_or(0).max(1);
        let cols = values.len() / rows;
        let (ptr, idx, vals) = crate::kernels::sparse::csr_from_dense(rows, cols, values);
        let mut data = Vec::with_capacity(10 * vals.len() + 4 * ptr.len());
        data.extend_from_slice(bytemuck::cast_slice(&vals));
        data.extend_from_slice(bytemuck::cast_slice(&ptr));
        data.extend_from_slice(bytemuck::cast_slice(&idx));
        self.push(kind::CSR, dims, vals.len(), data)
    }

    /// A weight stored in the smaller of CSR and dense f32 (CSR costs 6 bytes a nonzero
    /// and 4 a row, dense 4 bytes a weight): below a density of about 2/3, CSR.
    pub fn smallest(&mut self, dims: &[usize], values: &[f32]) -> TensorId {
        let rows = dims.first().copied().unwrap_or(1);
        let nnz = values.iter().filter(|&&v| v != 0.0).count();
        let cols = values.len() / rows.max(1);
        if dims.len() >= 2 && cols <= 1 << 16 && 6 * nnz + 4 * (rows + 1) < 4 * values.len() {
            self.csr(dims, values)
        } else {
            self.dense(dims, values)
        }
    }

    /// Adds an op reading `inputs`; returns the value it defines.
    pub fn op(&mut self, op: OpSpec, inputs: &[ValueId]) -> ValueId {
        let t = |t: TensorId| t.0;
        let opt = |t: Option<TensorId>| t.map_or(NONE, |t| t.0);
        let mut rank = 0u8;
        let mut p = [0u32; OP_PARAMS];
        let mut set = |vals: &[u32]| p[..vals.len()].copy_from_slice(vals);
        let pair = |a: [usize; 2]| a[0] as u32 | (a[1] as u32) << 16;
        let code = match op {
            OpSpec::Linear { weight, bias } => {
                set(&[t(weight), opt(bias)]);
                opcode::LINEAR
            }
            OpSpec::Conv2d {
                weight,
                bias,
                stride,
                padding,
            } => {
                set(&[t(weight), opt(bias), stride, stride]);
                set_pads(&mut p, [padding as usize; 4]);
                p[8] = pair([1, 1]);
                p[9] = 1;
                opcode::CONV2D
            }
            OpSpec::Conv { weight, bias, geom } => {
                set(&[
                    t(weight),
                    opt(bias),
                    geom.stride[0] as u32,
                    geom.stride[1] as u32,
                ]);
                set_pads(&mut p, geom.pads);
                p[8] = pair(geom.dilation);
                p[9] = geom.group as u32;
                opcode::CONV2D
            }
            OpSpec::MaxPool2d { kernel, stride } => {
                pool_params(&mut p, &PoolGeom::simple(kernel as usize, stride as usize));
                opcode::MAX_POOL2D
            }
            OpSpec::AvgPool2d { kernel, stride } => {
                pool_params(&mut p, &PoolGeom::simple(kernel as usize, stride as usize));
                opcode::AVG_POOL2D
            }
            OpSpec::MaxPool(g) => {
                pool_params(&mut p, &g);
                opcode::MAX_POOL2D
            }
            OpSpec::AvgPool(g) => {
                pool_params(&mut p, &g);
                opcode::AVG_POOL2D
            }
            OpSpec::Flatten => opcode::FLATTEN,
            OpSpec::Relu => opcode::RELU,
            OpSpec::Sine { w0 } => {
                set(&[w0.to_bits()]);
                opcode::SINE
            }
            OpSpec::Softmax => opcode::SOFTMAX,
            OpSpec::SoftmaxAxes { axis, end } => {
                set(&[axis as u32, end as u32]);
                opcode::SOFTMAX
            }
            OpSpec::Add | OpSpec::Binary(Binary::Add) => opcode::ADD,
            OpSpec::Binary(Binary::Sub) => opcode::SUB,
            OpSpec::Binary(Binary::Mul) => opcode::MUL,
            OpSpec::Binary(Binary::Div) => opcode::DIV,
            OpSpec::Binary(b) => {
                set(&[b.encode().expect("add, sub, mul and div are matched above")]);
                opcode::BINARY
            }
            OpSpec::Reduce { kind, axes } => {
                set(&[kind.encode(), u32::from(axes)]);
                opcode::REDUCE
            }
            OpSpec::Pad { geom: g, rank: r } => {
                rank = r as u8;
                for i in 0..MAX_RANK {
                    p[i] = g.begin[i] as u32;
                    p[4 + i] = g.end[i] as u32;
                }
                let (mode, value) = match g.mode {
                    PadMode::Constant(v) => (0, v),
                    PadMode::Reflect => (1, 0.0),
                    PadMode::Edge => (2, 0.0),
                };
                p[8] = mode;
                p[9] = value.to_bits();
                opcode::PAD
            }
            OpSpec::Unary(f) => {
                set(&f.encode());
                opcode::UNARY
            }
            OpSpec::MatMul => opcode::MATMUL,
            OpSpec::Transpose { perm, rank: r } => {
                rank = r as u8;
                for (q, &a) in p.iter_mut().zip(&perm[..r.min(MAX_RANK)]) {
                    *q = a as u32;
                }
                opcode::TRANSPOSE
            }
            OpSpec::Concat { axis } => {
                set(&[axis as u32]);
                opcode::CONCAT
            }
            OpSpec::Reshape(d) => {
                rank = d.as_slice().len() as u8;
                for (q, &a) in p.iter_mut().zip(d.as_slice()) {
                    *q = a as u32;
                }
                opcode::RESHAPE
            }
            OpSpec::Const(tensor) => {
                set(&[t(tensor)]);
                opcode::CONST
            }
            OpSpec::MeshFeatures(MeshFeatures::RelTan {
                powers,
                count,
                degree_power,
                constant,
            }) => {
                set(&[0, count as u32]);
                for (q, w) in p[2..].iter_mut().zip(&powers[..count.min(powers.len())]) {
                    *q = w.to_bits();
                }
                p[8] = degree_power.to_bits();
                p[9] = constant.to_bits();
                opcode::MESH_FEATURES
            }
            OpSpec::MeshFeatures(MeshFeatures::Xyz { mean, scale }) => {
                set(&[
                    1,
                    mean[0].to_bits(),
                    mean[1].to_bits(),
                    mean[2].to_bits(),
                    scale.to_bits(),
                ]);
                opcode::MESH_FEATURES
            }
            OpSpec::EmanConv {
                key,
                value,
                query,
                self_kernel,
                bias,
                heads,
                order_out,
            } => {
                set(&[
                    t(key),
                    t(value),
                    t(query),
                    t(self_kernel),
                    t(bias),
                    heads,
                    order_out,
                ]);
                opcode::EMAN_CONV
            }
            OpSpec::Gate => opcode::GATE,
            OpSpec::Scalars => opcode::SCALARS,
            OpSpec::Resize { geom: g, rank: r } => {
                rank = r as u8;
                for i in 0..MAX_RANK {
                    p[i] = g.out[i] as u32;
                    p[4 + i] = g.scales[i].to_bits();
                }
                p[8] = g.encode_mode();
                opcode::RESIZE
            }
            OpSpec::ConvTranspose { weight, bias, geom } => {
                set(&[t(weight), opt(bias), pair(geom.stride)]);
                for (q, v) in p[3..7].iter_mut().zip(geom.pads) {
                    *q = v as u32;
                }
                p[7] = pair(geom.dilation);
                p[8] = geom.group as u32;
                p[9] = pair(geom.output_padding);
                opcode::CONV_TRANSPOSE2D
            }
            OpSpec::Where => opcode::WHERE,
        };
        self.ops.push(OpEntry {
            code,
            rank,
            inputs: inputs.iter().map(|v| v.0).collect(),
            params: p,
        });
        ValueId(self.ops.len() as u32)
    }

    /// Lays the model out with `output` as its result, and checks that it loads.
    pub fn finish(self, output: ValueId) -> Result<Vec<u8>, Error> {
        let tables =
            HEADER_LEN + TENSOR_ENTRY_LEN * self.tensors.len() + OP_ENTRY_LEN * self.ops.len();
        let mut out = alloc::vec![0u8; tables];
        out[..4].copy_from_slice(&MAGIC);
        out[4..6].copy_from_slice(&VERSION.to_le_bytes());
        out[6..8].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
        let put = |out: &mut Vec<u8>, at: usize, v: u32| {
            out[at..at + 4].copy_from_slice(&v.to_le_bytes())
        };
        put(&mut out, 16, self.tensors.len() as u32);
        put(&mut out, 20, self.ops.len() as u32);
        put(&mut out, 24, self.ops.len() as u32 + 1);
        put(&mut out, 28, output.0);
        put(&mut out, 32, self.input.len() as u32);
        put(&mut out, 52, self.flags);
        for (i, &d) in self.input.iter().take(4).enumerate() {
            put(&mut out, 36 + 4 * i, d);
        }
        for (i, t) in self.tensors.iter().enumerate() {
            while !out.len().is_multiple_of(DATA_ALIGN) {
                out.push(0);
            }
            let offset = out.len() as u32;
            out.extend_from_slice(&t.data);
            let at = HEADER_LEN + i * TENSOR_ENTRY_LEN;
            out[at] = t.kind;
            out[at + 1] = t.dims.len() as u8;
            for (j, &d) in t.dims.iter().take(4).enumerate() {
                put(&mut out, at + 4 + 4 * j, d);
            }
            put(&mut out, at + 20, t.nnz);
            put(&mut out, at + 24, offset);
            put(&mut out, at + 28, t.data.len() as u32);
        }
        let ops_at = HEADER_LEN + TENSOR_ENTRY_LEN * self.tensors.len();
        for (i, o) in self.ops.iter().enumerate() {
            let at = ops_at + i * OP_ENTRY_LEN;
            out[at] = o.code;
            out[at + 1] = o.inputs.len() as u8;
            out[at + 2] = o.rank;
            for (j, &v) in o.inputs.iter().take(MAX_INPUTS).enumerate() {
                put(&mut out, at + 4 + 4 * j, v);
            }
            put(&mut out, at + 20, i as u32 + 1);
            for (j, &p) in o.params.iter().enumerate() {
                put(&mut out, at + 24 + 4 * j, p);
            }
        }
        while !out.len().is_multiple_of(DATA_ALIGN) {
            out.push(0);
        }
        let len = out.len() as u32;
        put(&mut out, 8, len);
        let crc = crc32fast::hash(&out[16..]);
        put(&mut out, 12, crc);
        Model::parse(&crate::aligned::AlignedBytes::from_slice(&out))?;
        Ok(out)
    }
}

/// A copy of `model` in which tensor `i` holds `replace(i)`'s values where that is `Some`
/// (dense row-major, the tensor's own shape; stored in the smaller of CSR and dense f32),
/// and its own values otherwise (stored as they were: f32, f16 or CSR). The graph is the
/// same op for op. This is how a network trained from an imported model (its weights
/// pruned, the gates folded in) is written back without a second description of it.
///
/// # Errors
/// A replacement of another length than its tensor, or a model the writer refuses.
pub fn rebuild(
    model: &Model,
    mut replace: impl FnMut(usize) -> Option<Vec<f32>>,
) -> Result<Vec<u8>, Error> {
    rebuild_resized(model, |i| {
        let Some(v) = replace(i) else {
            return Ok(None);
        };
        let dims = model.tensors[i].dims.as_slice();
        if v.len() != model.tensors[i].dims.numel() {
            return Err(Error::BadOptions("a replaced tensor changed its length"));
        }
        Ok(Some((dims.to_vec(), v)))
    })
}

/// [`rebuild`] where a replaced tensor may take another shape (`replace(i)`: its new
/// dims and dense row-major values); the writer re-derives every value's shape from the
/// ops, so the replacements must keep the graph consistent (as
/// [`crate::compact::remove_dead_channels`] does: a layer's rows and its reader's columns
/// go together).
///
/// # Errors
/// `replace`'s own, values that do not fill their dims, or a model the writer refuses
/// (shapes that no longer agree).
pub fn rebuild_resized(
    model: &Model,
    mut replace: impl FnMut(usize) -> Result<Option<(Vec<usize>, Vec<f32>)>, Error>,
) -> Result<Vec<u8>, Error> {
    let input = model.shapes[model.inputs[0]].as_slice();
    let mut b = ModelBuilder::new(input);
    if model.static_shapes {
        b.set_static_shapes();
    }
    for (i, t) in model.tensors.iter().enumerate() {
        let dims = t.dims.as_slice();
        let id = match replace(i)? {
            Some((d, v)) if v.len() == d.iter().product::<usize>() && !d.contains(&0) => {
                b.smallest(&d, &v)
            }
            Some(_) => {
                return Err(Error::BadOptions(
                    "a replaced tensor does not fill its dims",
                ));
            }
            None => match t.data {
                crate::format::TensorData::F32(_) => b.dense(dims, &t.to_dense()),
                crate::format::TensorData::F16(_) => b.dense_f16(dims, &t.to_dense()),
                crate::format::TensorData::Csr(_) => b.csr(dims, &t.to_dense()),
            },
        };
        debug_assert_eq!(id.0 as usize, i);
    }
    let t = |i: usize| TensorId(i as u32);
    // Model value ids to builder value ids (value 0, the input, is the same).
    let mut ids = alloc::vec![ValueId(0); model.shapes.len()];
    for node in &model.nodes {
        let ins: Vec<ValueId> = node.inputs().iter().map(|&v| ids[v]).collect();
        let spec = match node.op {
            Op::Input { shape, .. } => {
                ids[node.output] = b.extra_input(shape.as_slice());
                continue;
            }
            Op::Output { .. } => {
                ids[node.output] = b.extra_output(ins[0]);
                continue;
            }
            Op::Resize(geom) => OpSpec::Resize {
                geom,
                rank: model.shapes[node.inputs[0]].as_slice().len(),
            },
            Op::ConvTranspose2d { weight, bias, geom } => OpSpec::ConvTranspose {
                weight: t(weight),
                bias: bias.map(t),
                geom,
            },
            Op::Where => OpSpec::Where,
            Op::Linear { weight, bias } => OpSpec::Linear {
                weight: t(weight),
                bias: bias.map(t),
            },
            Op::Conv2d { weight, bias, geom } => OpSpec::Conv {
                weight: t(weight),
                bias: bias.map(t),
                geom,
            },
            Op::MaxPool2d(g) => OpSpec::MaxPool(g),
            Op::AvgPool2d(g) => OpSpec::AvgPool(g),
            Op::Flatten => OpSpec::Flatten,
            Op::Relu => OpSpec::Relu,
            Op::Sine { w0 } => OpSpec::Sine { w0 },
            Op::Softmax { axis, end } => OpSpec::SoftmaxAxes { axis, end },
            Op::Binary(op) => OpSpec::Binary(op),
            Op::Unary(f) => OpSpec::Unary(f),
            Op::MatMul => OpSpec::MatMul,
            Op::Transpose { perm, rank } => OpSpec::Transpose { perm, rank },
            Op::Concat { axis } => OpSpec::Concat { axis },
            Op::Reshape(d) => OpSpec::Reshape(d),
            Op::Const { tensor } => OpSpec::Const(t(tensor)),
            Op::MeshFeatures(f) => OpSpec::MeshFeatures(f),
            Op::EmanConv {
                key,
                value,
                query,
                self_kernel,
                bias,
                heads,
                order_out,
            } => OpSpec::EmanConv {
                key: t(key),
                value: t(value),
                query: t(query),
                self_kernel: t(self_kernel),
                bias: t(bias),
                heads: heads as u32,
                order_out: order_out as u32,
            },
            Op::Gate => OpSpec::Gate,
            Op::Scalars => OpSpec::Scalars,
            Op::Reduce { kind, axes } => OpSpec::Reduce { kind, axes },
            Op::Pad(geom) => OpSpec::Pad {
                geom,
                rank: model.shapes[node.inputs[0]].as_slice().len(),
            },
        };
        ids[node.output] = b.op(spec, &ins);
    }
    b.finish(ids[model.output])
}

fn set_pads(p: &mut [u32; OP_PARAMS], pads: [usize; 4]) {
    for (q, v) in p[4..8].iter_mut().zip(pads) {
        *q = v as u32;
    }
}

fn pool_params(p: &mut [u32; OP_PARAMS], g: &PoolGeom) {
    p[0] = g.kernel[0] as u32;
    p[1] = g.kernel[1] as u32;
    p[2] = g.stride[0] as u32;
    p[3] = g.stride[1] as u32;
    set_pads(p, g.pads);
    p[8] = g.dilation[0] as u32 | (g.dilation[1] as u32) << 16;
    p[9] = g.ceil as u32 | (g.count_pad as u32) << 1;
}
