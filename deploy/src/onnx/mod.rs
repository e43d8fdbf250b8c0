//! ONNX import and export (feature `onnx`).
//!
//! - [`import`]: an ONNX `ModelProto` (bytes) to a tether model (format bytes): initializers
//!   become weights, stored dense or CSR by their measured sparsity; shapes are inferred
//!   for every supported op; an unsupported op, attribute or data type is an error naming
//!   the node, the op and the opset.
//! - [`export`]: a tether model to an ONNX `ModelProto`: weights as initializers (dense,
//!   or `sparse_initializer` on request for CSR weights), standard opset-13 ops.
//!
//! The batch axis: tether values are per sample. A model whose first input has a symbolic
//! leading dimension (`N`, as PyTorch's `dynamic_axes` writes it) is imported with that
//! axis as the batch axis (ops that mix it with the others are refused); a model with
//! fully static shapes is imported whole, as one sample.
//!
//! Tensors are decoded here, not by `onnx-protobuf`'s helper (which ignores `raw_data`,
//! where most exporters put weights): every element type the ops read, from `raw_data` or
//! the typed fields, with lengths checked against the shape.

mod error;
mod export;
mod import;
mod tensor;

pub mod conformance;

pub use error::OnnxError;
pub use export::{EXPORT_OPSET, ExportOptions, export, export_bytes};
pub use import::{
    BatchAxis, ExternalData, ImportOptions, folded_only_ops, import, import_bytes, import_file,
    import_file_with, import_with, supported_ops,
};
pub use tensor::{OnnxTensor, Values, decode_tensor, encode_f32, encode_i64};
