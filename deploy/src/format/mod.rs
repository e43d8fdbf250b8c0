//! The model format and its validating, zero-copy reader. The byte layout is specified in
//! `deploy/FORMAT.md`; the constants here are its single source of truth in code.
//!
//! Reading never trusts the bytes: every count is bounded by the file length, every offset
//! and length is checked (with overflow-checked arithmetic) against the data region, every
//! CSR index against its matrix, every weight for finiteness, every op against the values
//! defined before it, and every shape through the graph.

mod bytes;
mod dims;
mod functions;
mod geometry;
pub mod kind;
mod layout;
mod model;
mod op;
mod op_entry;
pub mod opcode;
mod resize;
mod shape;
mod tensor;
mod tensor_entry;

pub use dims::{Dims, broadcast};
pub use functions::{Binary, Reduce, Unary};
pub use geometry::{ConvGeom, ConvTransposeGeom, PadGeom, PadMode, PoolGeom, conv_out};
pub use layout::{
    DATA_ALIGN, FLAG_STATIC_SHAPES, HEADER_LEN, MAGIC, MAX_RANK, NONE, OP_ENTRY_LEN,
    OP_ENTRY_LEN_V1, OP_PARAMS, TENSOR_ENTRY_LEN, VERSION,
};
pub use model::Model;
pub use op::{MAX_INPUTS, MAX_RELTAN_POWERS, MeshFeatures, Node, Op};
pub use resize::{CoordMode, NearestRound, ResizeGeom, ResizeMode};
pub use tensor::{Csr, Tensor, TensorData};
