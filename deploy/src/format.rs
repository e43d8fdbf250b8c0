//! The model format and its validating, zero-copy reader. The byte layout is specified in
//! `deploy/FORMAT.md`; the constants below are its single source of truth in code.
//!
//! Reading never trusts the bytes: every count is bounded by the file length, every offset
//! and length is checked (with overflow-checked arithmetic) against the data region, every
//! CSR index against its matrix, every weight for finiteness, every op against the values
//! defined before it, and every shape through the graph.

use alloc::vec::Vec;

use crate::error::Error;

/// `TTHR`.
pub const MAGIC: [u8; 4] = *b"TTHR";
/// The format version this runtime writes (it reads versions 1 and 2).
pub const VERSION: u16 = 2;
/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 64;
/// Bytes of one tensor-table entry.
pub const TENSOR_ENTRY_LEN: usize = 32;
/// Bytes of one op-table entry (version 2).
pub const OP_ENTRY_LEN: usize = 64;
/// Bytes of one op-table entry in version 1 (two inputs, four parameters).
pub const OP_ENTRY_LEN_V1: usize = 32;
/// Parameters of one op-table entry (version 2).
pub const OP_PARAMS: usize = 10;
/// Alignment of every tensor's data (from the start of the file).
pub const DATA_ALIGN: usize = 16;
/// "No tensor" (an absent bias).
pub const NONE: u32 = u32::MAX;
/// Most dimensions of a tensor or activation.
pub const MAX_RANK: usize = 4;
/// Header flag (u32 at offset 52): the model has no batch axis. Its input is the whole
/// tensor (an ONNX graph with static shapes was imported as one sample), so an export
/// writes those shapes as they are instead of adding a batch axis.
pub const FLAG_STATIC_SHAPES: u32 = 1;

/// Tensor kinds (the `kind` byte of a tensor entry).
pub mod kind {
    /// Dense little-endian f32.
    pub const F32: u8 = 0;
    /// Dense IEEE 754 half precision.
    pub const F16: u8 = 1;
    /// CSR: rows = `dims[0]`, columns = product of the other dims; f32 values, u32 row
    /// pointers, u16 column indices.
    pub const CSR: u8 = 2;
}

/// Opcodes (the `opcode` byte of an op entry).
pub mod opcode {
    /// `y = W x + b` over the last axis; params: weight, bias (or NONE).
    pub const LINEAR: u8 = 1;
    /// 2-D convolution; params (version 2): weight `[oc, ic/group, kh, kw]`, bias, stride
    /// h, stride w, pads top, left, bottom, right, dilation (h | w << 16), group.
    pub const CONV2D: u8 = 2;
    /// Max pooling; params (version 2): kernel h, kernel w, stride h, stride w, pads top,
    /// left, bottom, right, dilation (h | w << 16), flags (1: ceil mode).
    pub const MAX_POOL2D: u8 = 3;
    /// Average pooling; params as max pooling (flags 2: count the padding).
    pub const AVG_POOL2D: u8 = 4;
    /// To rank 1.
    pub const FLATTEN: u8 = 5;
    /// `max(x, 0)`.
    pub const RELU: u8 = 6;
    /// `sin(w0 x)`; params: w0 as f32 bits.
    pub const SINE: u8 = 7;
    /// Softmax; params: first and end axis (0, 0: the last axis).
    pub const SOFTMAX: u8 = 8;
    /// Element-wise sum, broadcasting.
    pub const ADD: u8 = 9;
    /// Element-wise product, broadcasting.
    pub const MUL: u8 = 10;
    /// Element-wise difference, broadcasting.
    pub const SUB: u8 = 11;
    /// Element-wise quotient, broadcasting.
    pub const DIV: u8 = 12;
    /// An element-wise function; params: function id, alpha and beta as f32 bits.
    pub const UNARY: u8 = 13;
    /// Matrix product of two values (numpy `matmul`).
    pub const MATMUL: u8 = 14;
    /// Axis permutation; the rank byte and params 0..rank: the permutation.
    pub const TRANSPOSE: u8 = 15;
    /// Concatenation of 2 to 4 values; params: axis.
    pub const CONCAT: u8 = 16;
    /// Same data, new shape; the rank byte and params 0..rank: the shape.
    pub const RESHAPE: u8 = 17;
    /// A constant value: a tensor; params: tensor.
    pub const CONST: u8 = 18;
    /// A further model input; params: input index (1, 2, ...), then the shape (rank byte).
    pub const INPUT: u8 = 19;
    /// A mesh model's per-vertex input features, computed from the mesh (input value 0
    /// holds each vertex's position `[3]`); params: kind (0 RelTan, 1 XYZ), then RelTan:
    /// power count `n <= 6`, `n` powers, degree power and constant at params 8, 9; XYZ:
    /// mean x, y, z and scale. All reals as f32 bits.
    pub const MESH_FEATURES: u8 = 20;
    /// EMAN attention convolution over the mesh's 1-rings; params: key weight, value
    /// weight, query kernel, self-interaction kernel, bias, heads, output order.
    pub const EMAN_CONV: u8 = 21;
    /// Gate nonlinearity of `[channels, 2m + 1]` features.
    pub const GATE: u8 = 22;
    /// The scalar (order-0) component of `[channels, 2m + 1]` features.
    pub const SCALARS: u8 = 23;
    /// A further element-wise binary op, broadcasting; params: function id (see
    /// [`super::Binary::encode`]).
    pub const BINARY: u8 = 24;
    /// A reduction over a set of axes, which keep extent 1; params: kind (0 mean, 1 sum,
    /// 2 max, 3 min), the axes as a bit mask (bit `i`: axis `i` of the sample).
    pub const REDUCE: u8 = 25;
    /// Padding of every axis of a sample; the rank byte, params 0..4: the elements added
    /// before each axis, 4..8: after, 8: mode (0 constant, 1 reflect, 2 edge), 9: the
    /// constant as f32 bits.
    pub const PAD: u8 = 26;
}

/// How [`Op::MeshFeatures`] computes a vertex's input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MeshFeatures {
    /// Relative tangential features, one order-1 feature per power: `[count, 3]`.
    RelTan {
        /// Relative powers (`powers[..count]`).
        powers: [f32; MAX_RELTAN_POWERS],
        /// How many.
        count: usize,
        /// Degree normalisation power.
        degree_power: f32,
        /// Normalisation constant.
        constant: f32,
    },
    /// Standardised coordinates `(x - mean) / scale` as three scalars: `[3, 1]`.
    Xyz {
        /// Subtracted from each coordinate.
        mean: [f32; 3],
        /// Divides each coordinate.
        scale: f32,
    },
}

/// The most RelTan powers a [`MeshFeatures::RelTan`] op carries.
pub const MAX_RELTAN_POWERS: usize = 6;

/// Element-wise functions of [`opcode::UNARY`] (the function id).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `tanh x`.
    Tanh,
    /// `e^x`.
    Exp,
    /// `ln x`.
    Log,
    /// `sqrt x`.
    Sqrt,
    /// `-x`.
    Neg,
    /// `|x|`.
    Abs,
    /// `1 / x`.
    Reciprocal,
    /// `x` for `x >= 0`, `alpha x` otherwise.
    LeakyRelu(f32),
    /// `x` for `x > 0`, `alpha (e^x - 1)` otherwise.
    Elu(f32),
    /// `max(0, min(1, alpha x + beta))`.
    HardSigmoid(f32, f32),
    /// `ln(1 + e^x)`.
    Softplus,
    /// `min(max(x, lo), hi)`.
    Clip(f32, f32),
    /// `floor x`.
    Floor,
    /// `ceil x`.
    Ceil,
    /// `x` (a copy).
    Identity,
    /// `sin x`.
    Sin,
    /// `cos x`.
    Cos,
    /// The error function `erf x` (ONNX `Erf`; PyTorch exports exact GELU through it).
    Erf,
    /// `x Phi(x) = x (1 + erf(x / sqrt 2)) / 2`, the exact GELU (ONNX `Gelu`, opset 20).
    Gelu,
    /// `x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) / 2`, GELU's tanh approximation.
    GeluTanh,
    /// `x min(max(x + 3, 0), 6) / 6` (ONNX `HardSwish`, MobileNetV3).
    HardSwish,
    /// `x^p` for a constant exponent (ONNX `Pow` with a scalar constant exponent).
    Pow(f32),
}

impl Unary {
    /// The function id and its two parameters, as stored.
    pub fn encode(self) -> [u32; 3] {
        let (id, a, b) = match self {
            Unary::Sigmoid => (1, 0.0, 0.0),
            Unary::Tanh => (2, 0.0, 0.0),
            Unary::Exp => (3, 0.0, 0.0),
            Unary::Log => (4, 0.0, 0.0),
            Unary::Sqrt => (5, 0.0, 0.0),
            Unary::Neg => (6, 0.0, 0.0),
            Unary::Abs => (7, 0.0, 0.0),
            Unary::Reciprocal => (8, 0.0, 0.0),
            Unary::LeakyRelu(a) => (9, a, 0.0),
            Unary::Elu(a) => (10, a, 0.0),
            Unary::HardSigmoid(a, b) => (11, a, b),
            Unary::Softplus => (12, 0.0, 0.0),
            Unary::Clip(lo, hi) => (13, lo, hi),
            Unary::Floor => (14, 0.0, 0.0),
            Unary::Ceil => (15, 0.0, 0.0),
            Unary::Identity => (16, 0.0, 0.0),
            Unary::Sin => (17, 0.0, 0.0),
            Unary::Cos => (18, 0.0, 0.0),
            Unary::Erf => (19, 0.0, 0.0),
            Unary::Gelu => (20, 0.0, 0.0),
            Unary::GeluTanh => (21, 0.0, 0.0),
            Unary::HardSwish => (22, 0.0, 0.0),
            Unary::Pow(p) => (23, p, 0.0),
        };
        [id, f32::to_bits(a), f32::to_bits(b)]
    }

    /// The function of a stored id and parameters; `None` for an unknown id or a
    /// parameter that is NaN (infinite clip bounds are allowed).
    pub fn decode(id: u32, a: u32, b: u32) -> Option<Self> {
        let (a, b) = (f32::from_bits(a), f32::from_bits(b));
        let finite = a.is_finite() && b.is_finite();
        Some(match id {
            1 => Unary::Sigmoid,
            2 => Unary::Tanh,
            3 => Unary::Exp,
            4 => Unary::Log,
            5 => Unary::Sqrt,
            6 => Unary::Neg,
            7 => Unary::Abs,
            8 => Unary::Reciprocal,
            9 if finite => Unary::LeakyRelu(a),
            10 if finite => Unary::Elu(a),
            11 if finite => Unary::HardSigmoid(a, b),
            12 => Unary::Softplus,
            13 if !a.is_nan() && !b.is_nan() => Unary::Clip(a, b),
            14 => Unary::Floor,
            15 => Unary::Ceil,
            16 => Unary::Identity,
            17 => Unary::Sin,
            18 => Unary::Cos,
            19 => Unary::Erf,
            20 => Unary::Gelu,
            21 => Unary::GeluTanh,
            22 => Unary::HardSwish,
            23 if finite => Unary::Pow(a),
            _ => return None,
        })
    }
}

/// Element-wise binary ops (numpy broadcasting within a sample; see [`Op::Binary`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b`.
    Div,
    /// `a^b` (ONNX `Pow` with a tensor exponent).
    Pow,
    /// `max(a, b)`, NaN if either is NaN (ONNX `Max`).
    Max,
    /// `min(a, b)`, NaN if either is NaN (ONNX `Min`).
    Min,
    /// `a` for `a >= 0`, `b a` otherwise: a parametric ReLU whose slope `b` broadcasts
    /// (ONNX `PRelu`).
    PRelu,
}

impl Binary {
    /// The function id of an [`opcode::BINARY`] op; `None` for the four ops that have
    /// their own opcodes (add, sub, mul, div: the format's first version).
    pub fn encode(self) -> Option<u32> {
        match self {
            Binary::Add | Binary::Sub | Binary::Mul | Binary::Div => None,
            Binary::Pow => Some(1),
            Binary::Max => Some(2),
            Binary::Min => Some(3),
            Binary::PRelu => Some(4),
        }
    }

    /// The op of a stored [`opcode::BINARY`] function id.
    pub fn decode(id: u32) -> Option<Self> {
        Some(match id {
            1 => Binary::Pow,
            2 => Binary::Max,
            3 => Binary::Min,
            4 => Binary::PRelu,
            _ => return None,
        })
    }
}

/// Reductions of [`opcode::REDUCE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduce {
    /// Arithmetic mean.
    Mean,
    /// Sum.
    Sum,
    /// Largest element (NaN if any is NaN).
    Max,
    /// Smallest element (NaN if any is NaN).
    Min,
}

impl Reduce {
    /// The stored kind.
    pub fn encode(self) -> u32 {
        match self {
            Reduce::Mean => 0,
            Reduce::Sum => 1,
            Reduce::Max => 2,
            Reduce::Min => 3,
        }
    }

    /// The reduction of a stored kind.
    pub fn decode(k: u32) -> Option<Self> {
        Some(match k {
            0 => Reduce::Mean,
            1 => Reduce::Sum,
            2 => Reduce::Max,
            3 => Reduce::Min,
            _ => return None,
        })
    }
}

/// How [`opcode::PAD`] fills the new elements (ONNX `Pad`'s modes).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PadMode {
    /// A constant.
    Constant(f32),
    /// The input mirrored about the edge, the edge itself not repeated.
    Reflect,
    /// The edge element repeated.
    Edge,
}

/// Padding of every axis of a sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PadGeom {
    /// Elements added before each axis (`begin[..rank]`).
    pub begin: [usize; MAX_RANK],
    /// Elements added after each axis.
    pub end: [usize; MAX_RANK],
    /// The fill.
    pub mode: PadMode,
}

/// Geometry of a convolution over the last three axes `[c, h, w]` of a sample (ONNX
/// `Conv`'s attributes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    /// Stride (h, w).
    pub stride: [usize; 2],
    /// Zero padding: top, left, bottom, right.
    pub pads: [usize; 4],
    /// Dilation (h, w).
    pub dilation: [usize; 2],
    /// Groups: input and output channels split into this many independent convolutions.
    pub group: usize,
}

impl ConvGeom {
    /// Square stride and symmetric padding, no dilation, one group.
    pub fn simple(stride: usize, padding: usize) -> Self {
        Self {
            stride: [stride; 2],
            pads: [padding; 4],
            dilation: [1; 2],
            group: 1,
        }
    }
}

/// Geometry of a pooling window over the last two axes (ONNX `MaxPool` / `AveragePool`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeom {
    /// Window (h, w).
    pub kernel: [usize; 2],
    /// Stride (h, w).
    pub stride: [usize; 2],
    /// Padding: top, left, bottom, right (ignored by max, zeros for average).
    pub pads: [usize; 4],
    /// Dilation (h, w).
    pub dilation: [usize; 2],
    /// Output size rounded up (a last partial window is kept).
    pub ceil: bool,
    /// Average pooling divides by the whole window, padding included.
    pub count_pad: bool,
}

impl PoolGeom {
    /// Square window, no padding.
    pub fn simple(kernel: usize, stride: usize) -> Self {
        Self {
            kernel: [kernel; 2],
            stride: [stride; 2],
            pads: [0; 4],
            dilation: [1; 2],
            ceil: false,
            count_pad: false,
        }
    }

    /// Output extent along axis `a` (0: h, 1: w) of an input extent `n`; `None` when the
    /// window does not fit.
    pub fn out(&self, a: usize, n: usize) -> Option<usize> {
        let span = self.dilation[a]
            .checked_mul(self.kernel[a] - 1)?
            .checked_add(1)?;
        let padded = n.checked_add(self.pads[a])?.checked_add(self.pads[a + 2])?;
        if padded < span {
            return None;
        }
        let s = self.stride[a];
        let mut o = if self.ceil {
            (padded - span).div_ceil(s) + 1
        } else {
            (padded - span) / s + 1
        };
        // A window must start inside the input or its leading padding.
        if self.ceil && (o - 1) * s >= n + self.pads[a] {
            o -= 1;
        }
        Some(o)
    }
}

/// A shape of rank 1 to 4 (activations exclude the batch dimension).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    rank: usize,
    dims: [usize; MAX_RANK],
}

impl Dims {
    /// A shape from its dimensions; `None` for rank 0 or above 4, or a zero dimension.
    pub fn new(dims: &[usize]) -> Option<Self> {
        if dims.is_empty() || dims.len() > MAX_RANK || dims.contains(&0) {
            return None;
        }
        let mut d = [0; MAX_RANK];
        d[..dims.len()].copy_from_slice(dims);
        let s = Self {
            rank: dims.len(),
            dims: d,
        };
        s.checked_numel().map(|_| s)
    }

    /// The dimensions.
    pub fn as_slice(&self) -> &[usize] {
        &self.dims[..self.rank]
    }

    /// Number of elements (validated not to overflow at construction).
    pub fn numel(&self) -> usize {
        self.as_slice().iter().product()
    }

    fn checked_numel(&self) -> Option<usize> {
        self.as_slice()
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&n| n <= u32::MAX as usize)
    }
}

/// A weight tensor, borrowed from the model bytes.
#[derive(Clone, Copy, Debug)]
pub enum TensorData<'a> {
    /// Dense f32, row-major.
    F32(&'a [f32]),
    /// Dense f16 bits, row-major.
    F16(&'a [u16]),
    /// Compressed sparse rows.
    Csr(Csr<'a>),
}

/// A validated CSR matrix view: `row_ptr` has `rows + 1` entries, starts at 0, never
/// decreases and ends at the number of nonzeros; every column index is below `cols`. Only
/// [`Csr::new`] builds one, so the kernels may index activations by its columns without
/// bounds checks.
#[derive(Clone, Copy, Debug)]
pub struct Csr<'a> {
    rows: usize,
    cols: usize,
    row_ptr: &'a [u32],
    col_idx: &'a [u16],
    values: &'a [f32],
}

impl<'a> Csr<'a> {
    /// Validates the arrays (O(rows + nonzeros)); `None` when they do not form a CSR
    /// matrix of `rows x cols`.
    pub fn new(
        rows: usize,
        cols: usize,
        row_ptr: &'a [u32],
        col_idx: &'a [u16],
        values: &'a [f32],
    ) -> Option<Self> {
        let nnz = values.len();
        let ok = row_ptr.len() == rows.checked_add(1)?
            && col_idx.len() == nnz
            && row_ptr[0] == 0
            && row_ptr[rows] as usize == nnz
            && row_ptr.windows(2).all(|w| w[0] <= w[1])
            && col_idx.iter().all(|&c| (c as usize) < cols);
        ok.then_some(Self {
            rows,
            cols,
            row_ptr,
            col_idx,
            values,
        })
    }

    /// A view of arrays known to be valid (built from a validated view, or by code that
    /// produces valid arrays); checked in debug builds only.
    pub(crate) fn trusted(
        rows: usize,
        cols: usize,
        row_ptr: &'a [u32],
        col_idx: &'a [u16],
        values: &'a [f32],
    ) -> Self {
        debug_assert!(Self::new(rows, cols, row_ptr, col_idx, values).is_some());
        Self {
            rows,
            cols,
            row_ptr,
            col_idx,
            values,
        }
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// `rows + 1` offsets into `col_idx` / `values`.
    pub fn row_ptr(&self) -> &'a [u32] {
        self.row_ptr
    }

    /// Column of each nonzero.
    pub fn col_idx(&self) -> &'a [u16] {
        self.col_idx
    }

    /// Value of each nonzero.
    pub fn values(&self) -> &'a [f32] {
        self.values
    }

    /// The column indices and values of row `r`.
    #[inline]
    pub fn row(&self, r: usize) -> (&'a [u16], &'a [f32]) {
        let (s, e) = (self.row_ptr[r] as usize, self.row_ptr[r + 1] as usize);
        (&self.col_idx[s..e], &self.values[s..e])
    }
}

/// One tensor: shape and data.
#[derive(Clone, Copy, Debug)]
pub struct Tensor<'a> {
    /// Shape.
    pub dims: Dims,
    /// Data.
    pub data: TensorData<'a>,
}

impl Tensor<'_> {
    /// The elements as dense row-major f32 (half precision widened exactly, CSR expanded).
    pub fn to_dense(&self) -> Vec<f32> {
        match self.data {
            TensorData::F32(d) => d.to_vec(),
            TensorData::F16(d) => d
                .iter()
                .map(|&h| half::f16::from_bits(h).to_f32())
                .collect(),
            TensorData::Csr(c) => {
                let mut out = alloc::vec![0.0; c.rows() * c.cols()];
                for r in 0..c.rows() {
                    let (idx, vals) = c.row(r);
                    for (&k, &v) in idx.iter().zip(vals) {
                        out[r * c.cols() + k as usize] = v;
                    }
                }
                out
            }
        }
    }

    /// Stored nonzeros / elements (1 for dense tensors).
    pub fn stored_density(&self) -> f64 {
        match &self.data {
            TensorData::Csr(c) => c.values().len() as f64 / self.dims.numel() as f64,
            _ => 1.0,
        }
    }

    /// Bytes of its data in the file.
    pub fn bytes(&self) -> usize {
        match &self.data {
            TensorData::F32(d) => 4 * d.len(),
            TensorData::F16(d) => 2 * d.len(),
            TensorData::Csr(c) => {
                4 * c.values().len() + 4 * c.row_ptr().len() + 2 * c.col_idx().len()
            }
        }
    }
}

/// A validated op.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    /// `y = W x + b` over the last axis, `W` of shape `[out, in]` (leading axes are
    /// independent rows).
    Linear {
        /// Weight tensor index.
        weight: usize,
        /// Bias tensor index.
        bias: Option<usize>,
    },
    /// 2-D convolution of `[.., c, h, w]`.
    Conv2d {
        /// Weight tensor index, `[oc, ic / group, kh, kw]`.
        weight: usize,
        /// Bias tensor index, `[oc]`.
        bias: Option<usize>,
        /// Strides, padding, dilation, groups.
        geom: ConvGeom,
    },
    /// Max pooling of `[.., c, h, w]`.
    MaxPool2d(PoolGeom),
    /// Average pooling of `[.., c, h, w]`.
    AvgPool2d(PoolGeom),
    /// To rank 1.
    Flatten,
    /// `max(x, 0)`.
    Relu,
    /// `sin(w0 x)` (SIREN).
    Sine {
        /// Frequency factor.
        w0: f32,
    },
    /// Softmax over the axes `axis..end` taken together (ONNX before opset 13 flattens the
    /// axes from `axis` on; opset 13 takes one axis: `end = axis + 1`).
    Softmax {
        /// First axis.
        axis: usize,
        /// One past the last axis.
        end: usize,
    },
    /// Element-wise `a op b`, broadcasting as numpy does within a sample; a constant
    /// operand is shared by every sample of the batch.
    Binary(Binary),
    /// An element-wise function.
    Unary(Unary),
    /// Matrix product of two values, as numpy's `matmul` within a sample.
    MatMul,
    /// Axis permutation: output axis `i` is input axis `perm[i]`.
    Transpose {
        /// The permutation (`perm[..rank]`).
        perm: [usize; MAX_RANK],
        /// Rank of the input.
        rank: usize,
    },
    /// Concatenation along an axis.
    Concat {
        /// The axis.
        axis: usize,
    },
    /// Same elements, another shape.
    Reshape(Dims),
    /// A constant: a tensor of the model, the same for every sample.
    Const {
        /// Tensor index.
        tensor: usize,
    },
    /// A mesh model's input features (see [`MeshFeatures`]); its input is value 0, each
    /// vertex's position.
    MeshFeatures(MeshFeatures),
    /// EMAN attention convolution (`tether_models::eman`): per vertex `[c_in, 2 m_in + 1]`
    /// to `[c_out, 2 m_out + 1]`, reading the 1-ring. Run by `mesh::MeshPlan`.
    EmanConv {
        /// Key kernel `A_k`, `[c_out (2 m_out + 1), c_in (2 m_in + 1)]`.
        key: usize,
        /// Value kernel `A_v`, same shape.
        value: usize,
        /// Query self-kernel, `[1 + 2 s, c_in, c_out]` (`s = min(m_in, m_out)`): the scalar
        /// matrix, then the real and imaginary matrices of each shared order.
        query: usize,
        /// Self-interaction kernel, same layout.
        self_kernel: usize,
        /// Bias of the scalar outputs, `[c_out]`.
        bias: usize,
        /// Attention heads.
        heads: usize,
        /// Output rotation order `m_out`.
        order_out: usize,
    },
    /// Gate nonlinearity of `[c, 2m + 1]`: ReLU on scalars, the rest scaled by the
    /// sigmoid of their channel's scalar.
    Gate,
    /// `[c, 2m + 1] -> [c]`: the order-0 components.
    Scalars,
    /// A reduction over the axes in the mask `axes` (bit `i`: axis `i`), which keep
    /// extent 1.
    Reduce {
        /// Mean, sum, max or min.
        kind: Reduce,
        /// Bit mask of the reduced axes.
        axes: u8,
    },
    /// Padding of every axis (ONNX `Pad` without the batch axis).
    Pad(PadGeom),
    /// A further input of the model (input 0 is value 0).
    Input {
        /// Input index (1, 2, ...).
        index: usize,
        /// Per-sample shape.
        shape: Dims,
    },
}

impl Op {
    /// A short name (for reports and errors).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Linear { .. } => "linear",
            Op::Conv2d { .. } => "conv2d",
            Op::MaxPool2d(_) => "maxpool2d",
            Op::AvgPool2d(_) => "avgpool2d",
            Op::Flatten => "flatten",
            Op::Relu => "relu",
            Op::Sine { .. } => "sine",
            Op::Softmax { .. } => "softmax",
            Op::Binary(Binary::Add) => "add",
            Op::Binary(Binary::Sub) => "sub",
            Op::Binary(Binary::Mul) => "mul",
            Op::Binary(Binary::Div) => "div",
            Op::Binary(Binary::Pow) => "pow",
            Op::Binary(Binary::Max) => "max",
            Op::Binary(Binary::Min) => "min",
            Op::Binary(Binary::PRelu) => "prelu",
            Op::Reduce { .. } => "reduce",
            Op::Pad(_) => "pad",
            Op::Unary(_) => "unary",
            Op::MatMul => "matmul",
            Op::Transpose { .. } => "transpose",
            Op::Concat { .. } => "concat",
            Op::Reshape(_) => "reshape",
            Op::Const { .. } => "const",
            Op::Input { .. } => "input",
            Op::MeshFeatures(_) => "mesh_features",
            Op::EmanConv { .. } => "eman_conv",
            Op::Gate => "gate",
            Op::Scalars => "scalars",
        }
    }
}

/// Most inputs of one op.
pub const MAX_INPUTS: usize = 4;

/// One node of the graph: an op, the values it reads and the value it defines.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Node {
    /// The op.
    pub op: Op,
    /// Input value ids (`inputs[..n_inputs]`).
    pub inputs: [usize; MAX_INPUTS],
    /// Number of inputs.
    pub n_inputs: usize,
    /// Output value id.
    pub output: usize,
}

impl Node {
    /// The input value ids.
    pub fn inputs(&self) -> &[usize] {
        &self.inputs[..self.n_inputs]
    }
}

/// A validated model, borrowing its weights from the bytes it was parsed from.
#[derive(Clone, Debug)]
pub struct Model<'a> {
    /// Weight tensors.
    pub tensors: Vec<Tensor<'a>>,
    /// The graph, in execution order.
    pub nodes: Vec<Node>,
    /// Per-sample shape of every value (value 0 is the input).
    pub shapes: Vec<Dims>,
    /// Per value: true when it differs between the samples of a batch (it depends on an
    /// input), false for a constant.
    pub batched: Vec<bool>,
    /// The values holding the model's inputs, in input order (value 0 first).
    pub inputs: Vec<usize>,
    /// The output value.
    pub output: usize,
    /// Format version of the bytes.
    pub version: u16,
    /// Total bytes.
    pub file_len: usize,
    /// The model has no batch axis ([`FLAG_STATIC_SHAPES`]).
    pub static_shapes: bool,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The header's input shape, or what is wrong with it (no op is involved, so not a
/// [`Error::ShapeMismatch`]).
fn input_shape(bytes: &[u8], rank: usize) -> Result<Dims, Error> {
    let bad = |reason| Err(Error::BadInputShape { reason });
    if rank == 0 || rank > MAX_RANK {
        return bad("its rank is not 1 to 4");
    }
    if (0..rank).any(|i| u32_at(bytes, 36 + 4 * i) == 0) {
        return bad("a dimension is 0");
    }
    match dims_at(bytes, 36, rank) {
        Some(d) => Ok(d),
        None => bad("too large: more than 2^32 - 1 values per sample"),
    }
}

fn dims_at(b: &[u8], at: usize, rank: usize) -> Option<Dims> {
    if rank == 0 || rank > MAX_RANK {
        return None;
    }
    let mut d = [0usize; MAX_RANK];
    for (i, v) in d.iter_mut().enumerate().take(rank) {
        *v = u32_at(b, at + 4 * i) as usize;
    }
    Dims::new(&d[..rank])
}

/// The error for a header whose file length is not the number of bytes given: a file cut
/// short ([`Error::Truncated`]), bytes after the model ([`Error::LengthMismatch`]), or a
/// damaged length field ([`Error::CorruptHeader`]). A flipped bit in the length field
/// would otherwise read as a file "truncated" to a fraction of a length it never had.
/// The field is taken as damaged when the bytes given are the whole model by the other
/// evidence: the checksum (of bytes `16..`, which does not cover the length field) matches
/// them, or the tables describe tensors that all lie inside them, padded to
/// [`DATA_ALIGN`] as the writer pads the end, which a file cut short cannot satisfy.
fn length_error(bytes: &[u8], file_len: usize, op_len: usize) -> Error {
    let actual = bytes.len();
    let corrupt = Error::CorruptHeader {
        field: "file length",
        claims: file_len,
        actual,
    };
    if crc32fast::hash(&bytes[16..]) == u32_at(bytes, 12) {
        return corrupt;
    }
    if file_len < actual {
        return Error::LengthMismatch {
            header: file_len,
            actual,
        };
    }
    // The end of the tables and of the furthest tensor data, where all of them lie in
    // `bytes` (none when a count or an entry points past the end: truncated).
    let layout_end = || -> Option<usize> {
        let n_tensors = u32_at(bytes, 16) as usize;
        let n_ops = u32_at(bytes, 20) as usize;
        let tables = n_tensors
            .checked_mul(TENSOR_ENTRY_LEN)?
            .checked_add(n_ops.checked_mul(op_len)?)?
            .checked_add(HEADER_LEN)?;
        if tables > actual {
            return None;
        }
        let mut end = tables;
        for i in 0..n_tensors {
            let at = HEADER_LEN + i * TENSOR_ENTRY_LEN;
            let data_end =
                (u32_at(bytes, at + 24) as usize).checked_add(u32_at(bytes, at + 28) as usize)?;
            end = end.max(data_end);
        }
        end.checked_next_multiple_of(DATA_ALIGN)
    };
    match layout_end() {
        Some(end) if end <= actual => corrupt,
        _ => Error::Truncated {
            needed: file_len,
            got: actual,
        },
    }
}

impl<'a> Model<'a> {
    /// Parses and validates model bytes (4-byte aligned: see [`crate::AlignedBytes`]).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        if cfg!(target_endian = "big") {
            return Err(Error::BigEndianHost);
        }
        if bytes.len() < HEADER_LEN {
            return Err(Error::Truncated {
                needed: HEADER_LEN,
                got: bytes.len(),
            });
        }
        if bytes[..4] != MAGIC {
            return Err(Error::BadMagic);
        }
        let version = u16_at(bytes, 4);
        if version != 1 && version != VERSION {
            return Err(Error::UnsupportedVersion {
                found: version,
                newest: VERSION,
            });
        }
        let op_len = if version == 1 {
            OP_ENTRY_LEN_V1
        } else {
            OP_ENTRY_LEN
        };
        let file_len = u32_at(bytes, 8) as usize;
        if file_len != bytes.len() {
            return Err(length_error(bytes, file_len, op_len));
        }
        let stored = u32_at(bytes, 12);
        let computed = crc32fast::hash(&bytes[16..]);
        if stored != computed {
            return Err(Error::BadChecksum { stored, computed });
        }
        if !(bytes.as_ptr() as usize).is_multiple_of(4) {
            return Err(Error::Misaligned);
        }
        let n_tensors = u32_at(bytes, 16) as usize;
        let n_ops = u32_at(bytes, 20) as usize;
        let n_values = u32_at(bytes, 24) as usize;
        let output = u32_at(bytes, 28) as usize;
        let input_rank = u32_at(bytes, 32) as usize;
        let flags = u32_at(bytes, 52);
        if flags & !FLAG_STATIC_SHAPES != 0 {
            return Err(Error::UnknownFlags(flags));
        }
        let tables = n_tensors
            .checked_mul(TENSOR_ENTRY_LEN)
            .and_then(|t| n_ops.checked_mul(op_len).and_then(|o| t.checked_add(o)))
            .and_then(|t| t.checked_add(HEADER_LEN))
            .ok_or(Error::Truncated {
                needed: usize::MAX,
                got: bytes.len(),
            })?;
        if tables > bytes.len() {
            return Err(Error::Truncated {
                needed: tables,
                got: bytes.len(),
            });
        }
        // Every value but the input is defined by exactly one op.
        if n_values != n_ops + 1 {
            return Err(Error::BadOp {
                index: n_ops,
                reason: "value count is not op count + 1",
            });
        }
        if output >= n_values {
            return Err(Error::BadOp {
                index: n_ops,
                reason: "output value out of range",
            });
        }
        let input = input_shape(bytes, input_rank)?;

        let mut tensors = Vec::with_capacity(n_tensors);
        for index in 0..n_tensors {
            let at = HEADER_LEN + index * TENSOR_ENTRY_LEN;
            tensors.push(read_tensor(bytes, at, index, tables)?);
        }
        let ops_at = HEADER_LEN + n_tensors * TENSOR_ENTRY_LEN;
        let mut nodes = Vec::with_capacity(n_ops);
        let mut shapes = Vec::with_capacity(n_values);
        let mut batched = Vec::with_capacity(n_values);
        let mut inputs = alloc::vec![0];
        shapes.push(input);
        batched.push(true);
        for index in 0..n_ops {
            let at = ops_at + index * op_len;
            let node = read_node(bytes, at, index, version, &tensors)?;
            if node.inputs().iter().any(|&v| v >= shapes.len()) {
                return Err(Error::BadOp {
                    index,
                    reason: "reads a value not defined before it",
                });
            }
            if node.output != shapes.len() {
                return Err(Error::BadOp {
                    index,
                    reason: "output value id is not the next value",
                });
            }
            if let Op::Input { index: k, .. } = node.op {
                if k != inputs.len() {
                    return Err(Error::BadOp {
                        index,
                        reason: "model inputs are not numbered 1, 2, ... in order",
                    });
                }
                inputs.push(node.output);
            }
            let out = infer_shape(&node, &shapes, &tensors, index)?;
            shapes.push(out);
            batched.push(match node.op {
                Op::Const { .. } => false,
                Op::Input { .. } => true,
                _ => node.inputs().iter().any(|&v| batched[v]),
            });
            nodes.push(node);
        }
        if !batched[output] {
            return Err(Error::BadOp {
                index: n_ops,
                reason: "the output is a constant (it depends on no input)",
            });
        }
        Ok(Self {
            tensors,
            nodes,
            shapes,
            batched,
            inputs,
            output,
            version,
            file_len,
            static_shapes: flags & FLAG_STATIC_SHAPES != 0,
        })
    }

    /// Per-sample input shape.
    pub fn input_shape(&self) -> Dims {
        self.shapes[0]
    }

    /// Per-sample output shape.
    pub fn output_shape(&self) -> Dims {
        self.shapes[self.output]
    }
}

fn read_tensor<'a>(
    bytes: &'a [u8],
    at: usize,
    index: usize,
    data_start: usize,
) -> Result<Tensor<'a>, Error> {
    let bad = |reason| Error::BadTensor { index, reason };
    let kind = bytes[at];
    let rank = bytes[at + 1] as usize;
    let dims = dims_at(bytes, at + 4, rank).ok_or(bad("bad rank or dimensions"))?;
    let nnz = u32_at(bytes, at + 20) as usize;
    let offset = u32_at(bytes, at + 24) as usize;
    let len = u32_at(bytes, at + 28) as usize;
    if !offset.is_multiple_of(DATA_ALIGN) || offset < data_start {
        return Err(bad("data offset not aligned or inside the tables"));
    }
    let end = offset
        .checked_add(len)
        .filter(|&e| e <= bytes.len())
        .ok_or(bad("data past the end of the file"))?;
    let raw = &bytes[offset..end];
    let numel = dims.numel();
    let data = match kind {
        kind::F32 => {
            if len != 4 * numel || nnz != 0 {
                return Err(bad("f32 data length does not match the shape"));
            }
            let v: &[f32] = bytemuck::try_cast_slice(raw).map_err(|_| bad("misaligned data"))?;
            if v.iter().any(|x| !x.is_finite()) {
                return Err(bad("non-finite weight"));
            }
            TensorData::F32(v)
        }
        kind::F16 => {
            if len != 2 * numel || nnz != 0 {
                return Err(bad("f16 data length does not match the shape"));
            }
            let v: &[u16] = bytemuck::try_cast_slice(raw).map_err(|_| bad("misaligned data"))?;
            if v.iter().any(|&h| !half::f16::from_bits(h).is_finite()) {
                return Err(bad("non-finite weight"));
            }
            TensorData::F16(v)
        }
        kind::CSR => {
            let rows = dims.as_slice()[0];
            let cols = numel / rows;
            if rank < 2 || cols > u16::MAX as usize + 1 {
                return Err(bad("CSR needs rank >= 2 and at most 65536 columns"));
            }
            if nnz > numel {
                return Err(bad("more nonzeros than elements"));
            }
            let vals = 4 * nnz;
            let ptrs = 4 * (rows + 1);
            if len != vals + ptrs + 2 * nnz {
                return Err(bad("CSR data length does not match rows and nonzeros"));
            }
            let values: &[f32] =
                bytemuck::try_cast_slice(&raw[..vals]).map_err(|_| bad("misaligned data"))?;
            let row_ptr: &[u32] = bytemuck::try_cast_slice(&raw[vals..vals + ptrs])
                .map_err(|_| bad("misaligned data"))?;
            let col_idx: &[u16] = bytemuck::try_cast_slice(&raw[vals + ptrs..])
                .map_err(|_| bad("misaligned data"))?;
            if values.iter().any(|x| !x.is_finite()) {
                return Err(bad("non-finite weight"));
            }
            TensorData::Csr(Csr::new(rows, cols, row_ptr, col_idx, values).ok_or(bad(
                "CSR row pointers not monotonic from 0 to nnz, or a column index out of range",
            ))?)
        }
        _ => return Err(bad("unknown tensor kind")),
    };
    Ok(Tensor { dims, data })
}

/// An op entry's fields, whichever the version.
struct RawOp {
    code: u8,
    rank: usize,
    n_inputs: usize,
    inputs: [usize; MAX_INPUTS],
    output: usize,
    p: [u32; OP_PARAMS],
}

fn raw_op(bytes: &[u8], at: usize, version: u16) -> RawOp {
    let mut inputs = [0usize; MAX_INPUTS];
    let mut p = [0u32; OP_PARAMS];
    if version == 1 {
        for (i, v) in inputs.iter_mut().take(2).enumerate() {
            *v = u32_at(bytes, at + 4 + 4 * i) as usize;
        }
        for (i, v) in p.iter_mut().take(4).enumerate() {
            *v = u32_at(bytes, at + 16 + 4 * i);
        }
        RawOp {
            code: bytes[at],
            rank: 0,
            n_inputs: bytes[at + 1] as usize,
            inputs,
            output: u32_at(bytes, at + 12) as usize,
            p,
        }
    } else {
        for (i, v) in inputs.iter_mut().enumerate() {
            *v = u32_at(bytes, at + 4 + 4 * i) as usize;
        }
        for (i, v) in p.iter_mut().enumerate() {
            *v = u32_at(bytes, at + 24 + 4 * i);
        }
        RawOp {
            code: bytes[at],
            rank: bytes[at + 2] as usize,
            n_inputs: bytes[at + 1] as usize,
            inputs,
            output: u32_at(bytes, at + 20) as usize,
            p,
        }
    }
}

/// Largest stride, padding, kernel or dilation accepted (keeps index arithmetic far from
/// overflow).
const MAX_GEOM: u32 = 1 << 16;

fn read_node(
    bytes: &[u8],
    at: usize,
    index: usize,
    version: u16,
    tensors: &[Tensor],
) -> Result<Node, Error> {
    let bad = |reason| Error::BadOp { index, reason };
    let r = raw_op(bytes, at, version);
    let p = r.p;
    let tensor = |id: u32| -> Result<usize, Error> {
        let id = id as usize;
        if id < tensors.len() {
            Ok(id)
        } else {
            Err(bad("tensor reference out of range"))
        }
    };
    let optional = |id: u32| -> Result<Option<usize>, Error> {
        if id == NONE {
            Ok(None)
        } else {
            tensor(id).map(Some)
        }
    };
    let positive = |v: u32, what| {
        if v == 0 || v > MAX_GEOM {
            Err(bad(what))
        } else {
            Ok(v as usize)
        }
    };
    let small = |v: u32, what| {
        if v > MAX_GEOM {
            Err(bad(what))
        } else {
            Ok(v as usize)
        }
    };
    let pair = |v: u32, what| -> Result<[usize; 2], Error> {
        Ok([positive(v & 0xffff, what)?, positive(v >> 16, what)?])
    };
    let pads = |from: usize| -> Result<[usize; 4], Error> {
        let mut out = [0; 4];
        for (i, o) in out.iter_mut().enumerate() {
            *o = small(p[from + i], "padding too large")?;
        }
        Ok(out)
    };
    let shape = |from: usize| -> Result<Dims, Error> {
        if r.rank == 0 || r.rank > MAX_RANK || from + r.rank > OP_PARAMS {
            return Err(bad("bad rank"));
        }
        let mut d = [0usize; MAX_RANK];
        for (i, v) in d.iter_mut().enumerate().take(r.rank) {
            *v = p[from + i] as usize;
        }
        Dims::new(&d[..r.rank]).ok_or(bad("bad shape"))
    };
    let v1 = version == 1;
    let op = match r.code {
        opcode::LINEAR => Op::Linear {
            weight: tensor(p[0])?,
            bias: optional(p[1])?,
        },
        opcode::CONV2D => Op::Conv2d {
            weight: tensor(p[0])?,
            bias: optional(p[1])?,
            geom: if v1 {
                ConvGeom::simple(
                    positive(p[2], "conv stride must be in 1..=65536")?,
                    small(p[3], "conv padding too large")?,
                )
            } else {
                ConvGeom {
                    stride: [
                        positive(p[2], "conv stride must be in 1..=65536")?,
                        positive(p[3], "conv stride must be in 1..=65536")?,
                    ],
                    pads: pads(4)?,
                    dilation: pair(p[8], "conv dilation must be in 1..=65535")?,
                    group: positive(p[9], "conv group must be in 1..=65536")?,
                }
            },
        },
        opcode::MAX_POOL2D | opcode::AVG_POOL2D => {
            let geom = if v1 {
                PoolGeom::simple(
                    positive(p[0], "pool kernel must be in 1..=65536")?,
                    positive(p[1], "pool stride must be in 1..=65536")?,
                )
            } else {
                if p[9] > 3 {
                    return Err(bad("unknown pool flags"));
                }
                PoolGeom {
                    kernel: [
                        positive(p[0], "pool kernel must be in 1..=65536")?,
                        positive(p[1], "pool kernel must be in 1..=65536")?,
                    ],
                    stride: [
                        positive(p[2], "pool stride must be in 1..=65536")?,
                        positive(p[3], "pool stride must be in 1..=65536")?,
                    ],
                    pads: pads(4)?,
                    dilation: pair(p[8], "pool dilation must be in 1..=65535")?,
                    ceil: p[9] & 1 != 0,
                    count_pad: p[9] & 2 != 0,
                }
            };
            if geom.pads[0] >= geom.kernel[0] * geom.dilation[0]
                || geom.pads[2] >= geom.kernel[0] * geom.dilation[0]
                || geom.pads[1] >= geom.kernel[1] * geom.dilation[1]
                || geom.pads[3] >= geom.kernel[1] * geom.dilation[1]
            {
                return Err(bad("pool padding must be smaller than the window"));
            }
            if r.code == opcode::MAX_POOL2D {
                Op::MaxPool2d(geom)
            } else {
                Op::AvgPool2d(geom)
            }
        }
        opcode::FLATTEN => Op::Flatten,
        opcode::RELU => Op::Relu,
        opcode::SINE => {
            let w0 = f32::from_bits(p[0]);
            if !w0.is_finite() {
                return Err(bad("sine w0 is not finite"));
            }
            Op::Sine { w0 }
        }
        opcode::SOFTMAX => Op::Softmax {
            axis: small(p[0], "bad softmax axis")?,
            end: small(p[1], "bad softmax axis")?,
        },
        opcode::ADD => Op::Binary(Binary::Add),
        opcode::MUL => Op::Binary(Binary::Mul),
        opcode::SUB => Op::Binary(Binary::Sub),
        opcode::DIV => Op::Binary(Binary::Div),
        opcode::UNARY => {
            Op::Unary(Unary::decode(p[0], p[1], p[2]).ok_or(bad("unknown unary function"))?)
        }
        opcode::MATMUL => Op::MatMul,
        opcode::TRANSPOSE => {
            let n = r.rank;
            if n == 0 || n > MAX_RANK {
                return Err(bad("bad transpose rank"));
            }
            let mut perm = [0usize; MAX_RANK];
            let mut seen = [false; MAX_RANK];
            for i in 0..n {
                let a = p[i] as usize;
                if a >= n || seen[a] {
                    return Err(bad("transpose perm is not a permutation"));
                }
                seen[a] = true;
                perm[i] = a;
            }
            Op::Transpose { perm, rank: n }
        }
        opcode::CONCAT => Op::Concat {
            axis: small(p[0], "bad concat axis")?,
        },
        opcode::RESHAPE => Op::Reshape(shape(0)?),
        opcode::CONST => Op::Const {
            tensor: tensor(p[0])?,
        },
        opcode::INPUT => Op::Input {
            index: small(p[0], "bad input index")?,
            shape: shape(1)?,
        },
        opcode::MESH_FEATURES => {
            let f = |v: u32, what| {
                let x = f32::from_bits(v);
                if x.is_finite() { Ok(x) } else { Err(bad(what)) }
            };
            Op::MeshFeatures(match p[0] {
                0 => {
                    let count = p[1] as usize;
                    if count == 0 || count > MAX_RELTAN_POWERS {
                        return Err(bad("RelTan needs 1 to 6 powers"));
                    }
                    let mut powers = [0.0; MAX_RELTAN_POWERS];
                    for (k, w) in powers.iter_mut().enumerate().take(count) {
                        *w = f(p[2 + k], "a RelTan power is not finite")?;
                    }
                    let constant = f(p[9], "the RelTan constant is not finite")?;
                    if constant <= 0.0 {
                        return Err(bad("the RelTan constant must be positive"));
                    }
                    MeshFeatures::RelTan {
                        powers,
                        count,
                        degree_power: f(p[8], "the RelTan degree power is not finite")?,
                        constant,
                    }
                }
                1 => {
                    let scale = f(p[4], "the XYZ scale is not finite")?;
                    if scale <= 0.0 {
                        return Err(bad("the XYZ scale must be positive"));
                    }
                    MeshFeatures::Xyz {
                        mean: [
                            f(p[1], "an XYZ mean is not finite")?,
                            f(p[2], "an XYZ mean is not finite")?,
                            f(p[3], "an XYZ mean is not finite")?,
                        ],
                        scale,
                    }
                }
                _ => return Err(bad("unknown mesh feature kind")),
            })
        }
        opcode::EMAN_CONV => Op::EmanConv {
            key: tensor(p[0])?,
            value: tensor(p[1])?,
            query: tensor(p[2])?,
            self_kernel: tensor(p[3])?,
            bias: tensor(p[4])?,
            heads: positive(p[5], "EMAN heads must be in 1..=65536")?,
            order_out: small(p[6], "bad EMAN output order")?,
        },
        opcode::GATE => Op::Gate,
        opcode::SCALARS => Op::Scalars,
        opcode::BINARY => Op::Binary(Binary::decode(p[0]).ok_or(bad("unknown binary function"))?),
        opcode::REDUCE => {
            let kind = Reduce::decode(p[0]).ok_or(bad("unknown reduction"))?;
            if p[1] == 0 || p[1] >= 1 << MAX_RANK {
                return Err(bad("bad reduction axes"));
            }
            Op::Reduce {
                kind,
                axes: p[1] as u8,
            }
        }
        opcode::PAD => {
            let n = r.rank;
            if n == 0 || n > MAX_RANK {
                return Err(bad("bad pad rank"));
            }
            let (mut begin, mut end) = ([0usize; MAX_RANK], [0usize; MAX_RANK]);
            for i in 0..n {
                begin[i] = small(p[i], "pad width out of range")?;
                end[i] = small(p[4 + i], "pad width out of range")?;
            }
            if p[..8]
                .iter()
                .enumerate()
                .any(|(i, &v)| i % 4 >= n && v != 0)
            {
                return Err(bad("pad widths beyond the rank"));
            }
            let value = f32::from_bits(p[9]);
            let mode = match p[8] {
                0 if !value.is_nan() => PadMode::Constant(value),
                1 => PadMode::Reflect,
                2 => PadMode::Edge,
                _ => return Err(bad("unknown pad mode")),
            };
            Op::Pad(PadGeom { begin, end, mode })
        }
        _ => return Err(bad("unknown opcode")),
    };
    let inputs_ok = match op {
        Op::Binary(_) | Op::MatMul => r.n_inputs == 2,
        Op::Concat { .. } => (2..=MAX_INPUTS).contains(&r.n_inputs),
        Op::Const { .. } | Op::Input { .. } => r.n_inputs == 0,
        _ => r.n_inputs == 1,
    };
    if !inputs_ok || (v1 && r.n_inputs > 2) {
        return Err(bad("wrong number of inputs for the opcode"));
    }
    Ok(Node {
        op,
        inputs: r.inputs,
        n_inputs: r.n_inputs,
        output: r.output,
    })
}

/// The numpy broadcast of two shapes (aligned at the last axis), or `None`.
pub fn broadcast(a: &[usize], b: &[usize]) -> Option<Dims> {
    let n = a.len().max(b.len());
    let mut out = [0usize; MAX_RANK];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Dims::new(&out[..n])
}

/// Output extent of a convolution along one axis: `None` when the kernel does not fit.
pub fn conv_out(n: usize, k: usize, stride: usize, pad: [usize; 2], dil: usize) -> Option<usize> {
    let span = dil.checked_mul(k.checked_sub(1)?)?.checked_add(1)?;
    let padded = n.checked_add(pad[0])?.checked_add(pad[1])?;
    (padded >= span).then(|| (padded - span) / stride + 1)
}

fn infer_shape(
    node: &Node,
    shapes: &[Dims],
    tensors: &[Tensor],
    index: usize,
) -> Result<Dims, Error> {
    let bad = |reason| Error::ShapeMismatch { index, reason };
    let x = node.inputs().first().map(|&v| shapes[v]);
    let xs = x.as_ref().map_or(&[][..], |x| x.as_slice());
    let check_bias = |bias: Option<usize>, n: usize| -> Result<(), Error> {
        if let Some(b) = bias {
            let t = &tensors[b];
            if matches!(t.data, TensorData::Csr(_)) || t.dims.as_slice() != [n] {
                return Err(bad("bias is not a dense vector of the output size"));
            }
        }
        Ok(())
    };
    let with_last = |lead: &[usize], tail: &[usize]| -> Option<Dims> {
        let mut d = [0usize; MAX_RANK];
        let n = lead.len() + tail.len();
        if n > MAX_RANK {
            return None;
        }
        d[..lead.len()].copy_from_slice(lead);
        d[lead.len()..n].copy_from_slice(tail);
        Dims::new(&d[..n])
    };
    let out = match node.op {
        Op::Linear { weight, bias } => {
            let w = tensors[weight].dims.as_slice();
            if w.len() != 2 {
                return Err(bad("linear weight must be [out, in]"));
            }
            if xs.last() != Some(&w[1]) {
                return Err(bad("linear input's last axis is not the weight's width"));
            }
            check_bias(bias, w[0])?;
            with_last(&xs[..xs.len() - 1], &[w[0]])
        }
        Op::Conv2d { weight, bias, geom } => {
            let w = tensors[weight].dims.as_slice();
            if w.len() != 4 {
                return Err(bad("conv weight must be [oc, ic / group, kh, kw]"));
            }
            if xs.len() < 3 {
                return Err(bad("conv input is not [.., c, h, w]"));
            }
            let r = xs.len();
            let g = geom.group;
            if !xs[r - 3].is_multiple_of(g) || !w[0].is_multiple_of(g) || xs[r - 3] / g != w[1] {
                return Err(bad("conv channels do not match the weight and groups"));
            }
            check_bias(bias, w[0])?;
            let oh = conv_out(
                xs[r - 2],
                w[2],
                geom.stride[0],
                [geom.pads[0], geom.pads[2]],
                geom.dilation[0],
            )
            .ok_or(bad("kernel larger than the (padded) input"))?;
            let ow = conv_out(
                xs[r - 1],
                w[3],
                geom.stride[1],
                [geom.pads[1], geom.pads[3]],
                geom.dilation[1],
            )
            .ok_or(bad("kernel larger than the (padded) input"))?;
            with_last(&xs[..r - 3], &[w[0], oh, ow])
        }
        Op::MaxPool2d(g) | Op::AvgPool2d(g) => {
            if xs.len() < 3 {
                return Err(bad("pooling input is not [.., c, h, w]"));
            }
            let r = xs.len();
            let oh = g
                .out(0, xs[r - 2])
                .ok_or(bad("window larger than the (padded) input"))?;
            let ow = g
                .out(1, xs[r - 1])
                .ok_or(bad("window larger than the (padded) input"))?;
            with_last(&xs[..r - 2], &[oh, ow])
        }
        Op::Flatten => x.and_then(|x| Dims::new(&[x.numel()])),
        Op::Reduce { axes, .. } => {
            if usize::from(axes) >= 1 << xs.len() {
                return Err(bad("reduction axes beyond the input's rank"));
            }
            let mut d = [0usize; MAX_RANK];
            for (i, o) in d.iter_mut().enumerate().take(xs.len()) {
                *o = if axes & (1 << i) != 0 { 1 } else { xs[i] };
            }
            Dims::new(&d[..xs.len()])
        }
        Op::Pad(g) => {
            let rank = xs.len();
            let mut d = [0usize; MAX_RANK];
            for i in 0..rank {
                if g.mode == PadMode::Reflect && (g.begin[i] >= xs[i] || g.end[i] >= xs[i]) {
                    return Err(bad("reflect padding as wide as the axis"));
                }
                d[i] = xs[i]
                    .checked_add(g.begin[i])
                    .and_then(|v| v.checked_add(g.end[i]))
                    .filter(|&v| v <= 1 << 24)
                    .ok_or(bad("padded axis too large"))?;
            }
            if (rank..MAX_RANK).any(|i| g.begin[i] != 0 || g.end[i] != 0) {
                return Err(bad("pad widths beyond the input's rank"));
            }
            Dims::new(&d[..rank])
        }
        Op::Relu | Op::Sine { .. } | Op::Unary(_) => x,
        Op::Softmax { axis, end } => {
            let (a, e) = if (axis, end) == (0, 0) {
                (xs.len() - 1, xs.len())
            } else {
                (axis, end)
            };
            if a >= e || e > xs.len() {
                return Err(bad("softmax axes out of range"));
            }
            x
        }
        Op::Binary(_) => {
            let (a, b) = (node.inputs[0], node.inputs[1]);
            broadcast(shapes[a].as_slice(), shapes[b].as_slice())
                .ok_or(bad("operands do not broadcast"))
                .map(Some)?
        }
        Op::MatMul => {
            let a = xs;
            let b = shapes[node.inputs[1]].as_slice();
            let (m, k1) = if a.len() == 1 {
                (None, a[0])
            } else {
                (Some(a[a.len() - 2]), a[a.len() - 1])
            };
            let (k2, n) = if b.len() == 1 {
                (b[0], None)
            } else {
                (b[b.len() - 2], Some(b[b.len() - 1]))
            };
            if k1 != k2 {
                return Err(bad("matmul inner dimensions differ"));
            }
            let lead = broadcast(
                &a[..a.len().saturating_sub(2)],
                &b[..b.len().saturating_sub(2)],
            );
            let lead_s: &[usize] = match (&lead, a.len() > 2 || b.len() > 2) {
                (Some(l), true) => l.as_slice(),
                (None, true) => return Err(bad("matmul batch axes do not broadcast")),
                _ => &[],
            };
            let tail: [usize; 2] = [m.unwrap_or(0), n.unwrap_or(0)];
            let tail: &[usize] = match (m, n) {
                (Some(_), Some(_)) => &tail,
                (Some(_), None) => &tail[..1],
                (None, Some(_)) => &tail[1..],
                (None, None) => &[1],
            };
            with_last(lead_s, tail)
        }
        Op::Transpose { perm, rank } => {
            if rank != xs.len() {
                return Err(bad("transpose perm does not match the input rank"));
            }
            let mut d = [0usize; MAX_RANK];
            for (i, o) in d.iter_mut().enumerate().take(xs.len()) {
                *o = xs[perm[i]];
            }
            Dims::new(&d[..xs.len()])
        }
        Op::Concat { axis } => {
            if axis >= xs.len() {
                return Err(bad("concat axis out of range"));
            }
            let mut total = 0usize;
            for &v in node.inputs() {
                let s = shapes[v].as_slice();
                if s.len() != xs.len()
                    || s.iter()
                        .zip(xs)
                        .enumerate()
                        .any(|(i, (a, b))| i != axis && a != b)
                {
                    return Err(bad("concat inputs differ off the axis"));
                }
                total = total.checked_add(s[axis]).ok_or(bad("too large"))?;
            }
            let mut d = [0usize; MAX_RANK];
            d[..xs.len()].copy_from_slice(xs);
            d[axis] = total;
            Dims::new(&d[..xs.len()])
        }
        Op::Reshape(d) => {
            if Some(d.numel()) != x.map(|x| x.numel()) {
                return Err(bad("reshape changes the number of elements"));
            }
            Some(d)
        }
        Op::Const { tensor } => Some(tensors[tensor].dims),
        Op::Input { shape, .. } => Some(shape),
        Op::MeshFeatures(f) => {
            if node.inputs[0] != 0 || xs != [3] {
                return Err(bad(
                    "mesh features read the input value 0, a vertex position [3]",
                ));
            }
            match f {
                MeshFeatures::RelTan { count, .. } => Dims::new(&[count, 3]),
                MeshFeatures::Xyz { .. } => Dims::new(&[3, 1]),
            }
        }
        Op::EmanConv {
            key,
            value,
            query,
            self_kernel,
            bias,
            heads,
            order_out,
        } => {
            let (c_in, d_in) = match xs {
                &[c, d] if d % 2 == 1 => (c, d),
                _ => return Err(bad("EMAN input is not [channels, 2m + 1]")),
            };
            let c_out = tensors[bias].dims.as_slice()[0];
            let d_out = order_out
                .checked_mul(2)
                .and_then(|d| d.checked_add(1))
                .ok_or(bad("EMAN output order too large"))?;
            let dense = |t: usize| !matches!(tensors[t].data, TensorData::Csr(_));
            let kernel = [c_out * d_out, c_in * d_in];
            let shared = 1 + 2 * order_out.min(d_in / 2);
            if tensors[bias].dims.as_slice().len() != 1 || !dense(bias) {
                return Err(bad("EMAN bias is not a dense vector"));
            }
            if tensors[key].dims.as_slice() != kernel || tensors[value].dims.as_slice() != kernel {
                return Err(bad(
                    "EMAN key/value kernels are not [c_out d_out, c_in d_in]",
                ));
            }
            for t in [query, self_kernel] {
                if tensors[t].dims.as_slice() != [shared, c_in, c_out] || !dense(t) {
                    return Err(bad("EMAN self kernels are not dense [1 + 2s, c_in, c_out]"));
                }
            }
            if !c_out.is_multiple_of(heads) {
                return Err(bad("EMAN heads do not divide the output channels"));
            }
            Dims::new(&[c_out, d_out])
        }
        Op::Gate => match xs {
            &[_, d] if d % 2 == 1 => x,
            _ => return Err(bad("gate input is not [channels, 2m + 1]")),
        },
        Op::Scalars => match xs {
            &[c, d] if d % 2 == 1 => Dims::new(&[c]),
            _ => return Err(bad("scalars input is not [channels, 2m + 1]")),
        },
    };
    out.ok_or(bad("output shape too large or empty"))
}
