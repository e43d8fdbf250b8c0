//! The byte layout's sizes, markers and flags (`deploy/FORMAT.md`).

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
