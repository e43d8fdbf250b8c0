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
/// The format version this runtime reads and writes.
pub const VERSION: u16 = 1;
/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 64;
/// Bytes of one tensor-table entry.
pub const TENSOR_ENTRY_LEN: usize = 32;
/// Bytes of one op-table entry.
pub const OP_ENTRY_LEN: usize = 32;
/// Alignment of every tensor's data (from the start of the file).
pub const DATA_ALIGN: usize = 16;
/// "No tensor" (an absent bias).
pub const NONE: u32 = u32::MAX;
/// Most dimensions of a tensor or activation.
pub const MAX_RANK: usize = 4;

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
    /// `y = W x + b`; params: weight, bias (or NONE).
    pub const LINEAR: u8 = 1;
    /// 2-D convolution; params: weight `[oc, ic, kh, kw]`, bias, stride, padding.
    pub const CONV2D: u8 = 2;
    /// Max pooling; params: kernel, stride.
    pub const MAX_POOL2D: u8 = 3;
    /// Average pooling; params: kernel, stride.
    pub const AVG_POOL2D: u8 = 4;
    /// To rank 1.
    pub const FLATTEN: u8 = 5;
    /// `max(x, 0)`.
    pub const RELU: u8 = 6;
    /// `sin(w0 x)`; params: w0 as f32 bits.
    pub const SINE: u8 = 7;
    /// Softmax over the last axis.
    pub const SOFTMAX: u8 = 8;
    /// Element-wise sum of two inputs of one shape.
    pub const ADD: u8 = 9;
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
    /// `y = W x + b`, `W` of shape `[out, in]`.
    Linear {
        /// Weight tensor index.
        weight: usize,
        /// Bias tensor index.
        bias: Option<usize>,
    },
    /// 2-D convolution (square kernel, symmetric zero padding).
    Conv2d {
        /// Weight tensor index, `[oc, ic, kh, kw]`.
        weight: usize,
        /// Bias tensor index, `[oc]`.
        bias: Option<usize>,
        /// Stride (both axes).
        stride: usize,
        /// Zero padding (each side, both axes).
        padding: usize,
    },
    /// Max pooling (square window, no padding).
    MaxPool2d {
        /// Window side.
        kernel: usize,
        /// Stride.
        stride: usize,
    },
    /// Average pooling (square window, no padding).
    AvgPool2d {
        /// Window side.
        kernel: usize,
        /// Stride.
        stride: usize,
    },
    /// To rank 1.
    Flatten,
    /// `max(x, 0)`.
    Relu,
    /// `sin(w0 x)` (SIREN).
    Sine {
        /// Frequency factor.
        w0: f32,
    },
    /// Softmax over the last axis.
    Softmax,
    /// Element-wise sum.
    Add,
}

/// One node of the graph: an op, the values it reads and the value it defines.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Node {
    /// The op.
    pub op: Op,
    /// Input value ids (`inputs[..n_inputs]`).
    pub inputs: [usize; 2],
    /// Number of inputs (1 or 2).
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
    /// The output value.
    pub output: usize,
    /// Total bytes.
    pub file_len: usize,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
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
        if version != VERSION {
            return Err(Error::UnsupportedVersion(version));
        }
        let file_len = u32_at(bytes, 8) as usize;
        if file_len > bytes.len() {
            return Err(Error::Truncated {
                needed: file_len,
                got: bytes.len(),
            });
        }
        if file_len != bytes.len() {
            return Err(Error::LengthMismatch {
                header: file_len,
                actual: bytes.len(),
            });
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
        let tables = n_tensors
            .checked_mul(TENSOR_ENTRY_LEN)
            .and_then(|t| {
                n_ops
                    .checked_mul(OP_ENTRY_LEN)
                    .and_then(|o| t.checked_add(o))
            })
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
        let input = dims_at(bytes, 36, input_rank).ok_or(Error::ShapeMismatch {
            index: 0,
            reason: "bad model input shape",
        })?;

        let mut tensors = Vec::with_capacity(n_tensors);
        for index in 0..n_tensors {
            let at = HEADER_LEN + index * TENSOR_ENTRY_LEN;
            tensors.push(read_tensor(bytes, at, index, tables)?);
        }
        let ops_at = HEADER_LEN + n_tensors * TENSOR_ENTRY_LEN;
        let mut nodes = Vec::with_capacity(n_ops);
        let mut shapes = Vec::with_capacity(n_values);
        shapes.push(input);
        for index in 0..n_ops {
            let at = ops_at + index * OP_ENTRY_LEN;
            let node = read_node(bytes, at, index, &tensors)?;
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
            let out = infer_shape(&node, &shapes, &tensors, index)?;
            shapes.push(out);
            nodes.push(node);
        }
        Ok(Self {
            tensors,
            nodes,
            shapes,
            output,
            file_len,
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

fn read_node(bytes: &[u8], at: usize, index: usize, tensors: &[Tensor]) -> Result<Node, Error> {
    let bad = |reason| Error::BadOp { index, reason };
    let code = bytes[at];
    let n_inputs = bytes[at + 1] as usize;
    let inputs = [
        u32_at(bytes, at + 4) as usize,
        u32_at(bytes, at + 8) as usize,
    ];
    let output = u32_at(bytes, at + 12) as usize;
    let p = |i: usize| u32_at(bytes, at + 16 + 4 * i);
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
        if v == 0 || v > 1 << 16 {
            Err(bad(what))
        } else {
            Ok(v as usize)
        }
    };
    let op = match code {
        opcode::LINEAR => Op::Linear {
            weight: tensor(p(0))?,
            bias: optional(p(1))?,
        },
        opcode::CONV2D => Op::Conv2d {
            weight: tensor(p(0))?,
            bias: optional(p(1))?,
            stride: positive(p(2), "conv stride must be in 1..=65536")?,
            padding: if p(3) <= 1 << 16 {
                p(3) as usize
            } else {
                return Err(bad("conv padding too large"));
            },
        },
        opcode::MAX_POOL2D | opcode::AVG_POOL2D => {
            let kernel = positive(p(0), "pool kernel must be in 1..=65536")?;
            let stride = positive(p(1), "pool stride must be in 1..=65536")?;
            if code == opcode::MAX_POOL2D {
                Op::MaxPool2d { kernel, stride }
            } else {
                Op::AvgPool2d { kernel, stride }
            }
        }
        opcode::FLATTEN => Op::Flatten,
        opcode::RELU => Op::Relu,
        opcode::SINE => {
            let w0 = f32::from_bits(p(0));
            if !w0.is_finite() {
                return Err(bad("sine w0 is not finite"));
            }
            Op::Sine { w0 }
        }
        opcode::SOFTMAX => Op::Softmax,
        opcode::ADD => Op::Add,
        _ => return Err(bad("unknown opcode")),
    };
    let expected_inputs = if op == Op::Add { 2 } else { 1 };
    if n_inputs != expected_inputs {
        return Err(bad("wrong number of inputs for the opcode"));
    }
    Ok(Node {
        op,
        inputs,
        n_inputs,
        output,
    })
}

fn infer_shape(
    node: &Node,
    shapes: &[Dims],
    tensors: &[Tensor],
    index: usize,
) -> Result<Dims, Error> {
    let bad = |reason| Error::ShapeMismatch { index, reason };
    let x = shapes[node.inputs[0]];
    let xs = x.as_slice();
    let check_bias = |bias: Option<usize>, n: usize| -> Result<(), Error> {
        if let Some(b) = bias {
            let t = &tensors[b];
            if matches!(t.data, TensorData::Csr(_)) || t.dims.as_slice() != [n] {
                return Err(bad("bias is not a dense vector of the output size"));
            }
        }
        Ok(())
    };
    let window = |h: usize, k: usize, s: usize, pad: usize| -> Result<usize, Error> {
        let padded = h + 2 * pad;
        if padded < k {
            return Err(bad("window larger than the (padded) input"));
        }
        Ok((padded - k) / s + 1)
    };
    let out = match node.op {
        Op::Linear { weight, bias } => {
            let w = tensors[weight].dims.as_slice();
            if w.len() != 2 {
                return Err(bad("linear weight must be [out, in]"));
            }
            if xs.len() != 1 || xs[0] != w[1] {
                return Err(bad("linear input is not a vector of the weight's width"));
            }
            check_bias(bias, w[0])?;
            Dims::new(&[w[0]])
        }
        Op::Conv2d {
            weight,
            bias,
            stride,
            padding,
        } => {
            let w = tensors[weight].dims.as_slice();
            if w.len() != 4 || w[2] != w[3] {
                return Err(bad("conv weight must be [oc, ic, k, k]"));
            }
            if xs.len() != 3 || xs[0] != w[1] {
                return Err(bad(
                    "conv input is not [ic, h, w] with the weight's channels",
                ));
            }
            check_bias(bias, w[0])?;
            let oh = window(xs[1], w[2], stride, padding)?;
            let ow = window(xs[2], w[3], stride, padding)?;
            Dims::new(&[w[0], oh, ow])
        }
        Op::MaxPool2d { kernel, stride } | Op::AvgPool2d { kernel, stride } => {
            if xs.len() != 3 {
                return Err(bad("pooling input is not [c, h, w]"));
            }
            let oh = window(xs[1], kernel, stride, 0)?;
            let ow = window(xs[2], kernel, stride, 0)?;
            Dims::new(&[xs[0], oh, ow])
        }
        Op::Flatten => Dims::new(&[x.numel()]),
        Op::Relu | Op::Sine { .. } | Op::Softmax => Some(x),
        Op::Add => {
            if shapes[node.inputs[1]] != x {
                return Err(bad("add inputs differ in shape"));
            }
            Some(x)
        }
    };
    out.ok_or(bad("output shape too large"))
}
