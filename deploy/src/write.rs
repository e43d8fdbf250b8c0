//! Writing the format: [`ModelBuilder`] collects tensors and ops and lays them out as
//! `deploy/FORMAT.md` specifies (tables, then 16-byte-aligned data, CRC-32 in the header).
//! The builder does not validate the graph; [`ModelBuilder::finish`] parses its own output,
//! so a model that would not load is never written.

use alloc::vec::Vec;

use crate::error::Error;
use crate::format::{
    DATA_ALIGN, HEADER_LEN, MAGIC, Model, NONE, OP_ENTRY_LEN, TENSOR_ENTRY_LEN, VERSION, kind,
    opcode,
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
}

struct TensorEntry {
    kind: u8,
    dims: Vec<u32>,
    nnz: u32,
    data: Vec<u8>,
}

struct OpEntry {
    code: u8,
    inputs: Vec<u32>,
    params: [u32; 4],
}

/// Builds model bytes.
pub struct ModelBuilder {
    input: Vec<u32>,
    tensors: Vec<TensorEntry>,
    ops: Vec<OpEntry>,
}

impl ModelBuilder {
    /// A model whose per-sample input has shape `input` (e.g. `[784]` or `[1, 28, 28]`).
    pub fn new(input: &[usize]) -> Self {
        Self {
            input: input.iter().map(|&d| d as u32).collect(),
            tensors: Vec::new(),
            ops: Vec::new(),
        }
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

    /// Adds an op reading `inputs`; returns the value it defines.
    pub fn op(&mut self, op: OpSpec, inputs: &[ValueId]) -> ValueId {
        let t = |t: TensorId| t.0;
        let opt = |t: Option<TensorId>| t.map_or(NONE, |t| t.0);
        let (code, params) = match op {
            OpSpec::Linear { weight, bias } => (opcode::LINEAR, [t(weight), opt(bias), 0, 0]),
            OpSpec::Conv2d {
                weight,
                bias,
                stride,
                padding,
            } => (opcode::CONV2D, [t(weight), opt(bias), stride, padding]),
            OpSpec::MaxPool2d { kernel, stride } => (opcode::MAX_POOL2D, [kernel, stride, 0, 0]),
            OpSpec::AvgPool2d { kernel, stride } => (opcode::AVG_POOL2D, [kernel, stride, 0, 0]),
            OpSpec::Flatten => (opcode::FLATTEN, [0; 4]),
            OpSpec::Relu => (opcode::RELU, [0; 4]),
            OpSpec::Sine { w0 } => (opcode::SINE, [w0.to_bits(), 0, 0, 0]),
            OpSpec::Softmax => (opcode::SOFTMAX, [0; 4]),
            OpSpec::Add => (opcode::ADD, [0; 4]),
        };
        self.ops.push(OpEntry {
            code,
            inputs: inputs.iter().map(|v| v.0).collect(),
            params,
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
            for (j, &v) in o.inputs.iter().take(2).enumerate() {
                put(&mut out, at + 4 + 4 * j, v);
            }
            put(&mut out, at + 12, i as u32 + 1);
            for (j, &p) in o.params.iter().enumerate() {
                put(&mut out, at + 16 + 4 * j, p);
            }
        }
        while !out.len().is_multiple_of(DATA_ALIGN) {
            out.push(0);
        }
        let len = out.len() as u32;
        put(&mut out, 8, len);
        let crc = crc32fast::hash(&out[16..]);
        put(&mut out, 12, crc);
        Model::parse(&crate::AlignedBytes::from_slice(&out))?;
        Ok(out)
    }
}
