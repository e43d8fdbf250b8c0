//! [`Model`]: the header, the tables and the graph, validated as a whole.

use alloc::vec::Vec;

use super::bytes::{dims_at, u16_at, u32_at};
use super::dims::Dims;
use super::layout::{
    DATA_ALIGN, FLAG_STATIC_SHAPES, HEADER_LEN, MAGIC, MAX_RANK, OP_ENTRY_LEN, OP_ENTRY_LEN_V1,
    TENSOR_ENTRY_LEN, VERSION,
};
use super::op::{Node, Op};
use super::op_entry::read_node;
use super::shape::infer_shape;
use super::tensor::Tensor;
use super::tensor_entry::read_tensor;
use crate::error::Error;

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
    /// The output value (output 0).
    pub output: usize,
    /// The values holding the model's outputs, in output order (`output` first, then each
    /// [`Op::Output`]'s value).
    pub outputs: Vec<usize>,
    /// Format version of the bytes.
    pub version: u16,
    /// Total bytes.
    pub file_len: usize,
    /// The model has no batch axis ([`FLAG_STATIC_SHAPES`]).
    pub static_shapes: bool,
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
        // The magic first: a short file of something else (a text file) is not a tether
        // model, rather than a "truncated" one.
        if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
            return Err(if MAGIC.starts_with(bytes) {
                Error::Truncated {
                    needed: HEADER_LEN,
                    got: bytes.len(),
                }
            } else {
                Error::BadMagic
            });
        }
        if bytes.len() < HEADER_LEN {
            return Err(Error::Truncated {
                needed: HEADER_LEN,
                got: bytes.len(),
            });
        }
        let version = u16_at(bytes, 4);
        if version != 1 && version != VERSION {
            return Err(Error::UnsupportedVersion {
                found: version,
                newest: VERSION,
            });
        }
        let header_len = u16_at(bytes, 6);
        if usize::from(header_len) != HEADER_LEN {
            return Err(Error::BadHeaderLength {
                found: header_len,
                expected: HEADER_LEN as u16,
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
        let mut outputs = alloc::vec![output];
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
            if let Op::Output { index: k } = node.op {
                if k != outputs.len() {
                    return Err(Error::BadOp {
                        index,
                        reason: "model outputs are not numbered 1, 2, ... in order",
                    });
                }
                outputs.push(node.output);
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
        if outputs.iter().any(|&v| !batched[v]) {
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
            outputs,
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
