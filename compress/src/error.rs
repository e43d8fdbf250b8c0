//! The codec's errors: every bad input is one of these, with a message a user can act on.

use std::path::Path;

/// What can go wrong when encoding, decoding or evaluating.
#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Image bytes that do not decode.
    #[error("cannot decode the image: {0}")]
    Decode(String),
    /// An image with a zero dimension.
    #[error("the image has no pixels (a zero dimension)")]
    EmptyImage,
    /// A compressed file that is truncated, corrupt or of another format.
    #[error("corrupt compressed file: {0}")]
    Corrupt(String),
    /// A bit budget no network of the family fits in.
    #[error("{0}")]
    BudgetTooSmall(String),
    /// Training failed (a NaN loss, an invalid configuration).
    #[error("training failed: {0}")]
    Training(String),
    /// An invalid argument or configuration.
    #[error("{0}")]
    Invalid(String),
    /// The fit was stopped on request (a signal) with its checkpoint written.
    #[error(transparent)]
    Interrupted(tether_train::resume::Interrupted),
}

impl CompressError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
