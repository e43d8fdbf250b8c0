//! The one error type of ONNX import and export.

use std::fmt;
use std::string::String;

/// An ONNX model that cannot be imported (or a tether model that cannot be exported),
/// with what and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnnxError {
    /// The node (name, or `#index` when unnamed), if one is at fault.
    pub node: Option<String>,
    /// Its op type.
    pub op: Option<String>,
    /// The model's default-domain opset.
    pub opset: Option<i64>,
    /// What is wrong.
    pub message: String,
    /// True when the model is valid ONNX that this importer does not support (an op,
    /// attribute, type or shape it does not handle), false when the model is malformed.
    pub unsupported: bool,
}

impl OnnxError {
    /// A malformed model.
    pub fn malformed(message: impl Into<String>) -> Self {
        Self {
            node: None,
            op: None,
            opset: None,
            message: message.into(),
            unsupported: false,
        }
    }

    /// A valid model outside what is supported.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self {
            unsupported: true,
            ..Self::malformed(message)
        }
    }
}

impl fmt::Display for OnnxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(node) = &self.node {
            write!(f, "node {node}")?;
            if let Some(op) = &self.op {
                write!(f, " ({op}")?;
                if let Some(v) = self.opset {
                    write!(f, ", opset {v}")?;
                }
                write!(f, ")")?;
            }
            write!(f, ": ")?;
        }
        if self.unsupported {
            write!(f, "unsupported: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for OnnxError {}
