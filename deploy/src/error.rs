//! Everything that can go wrong loading or running a model. Each malformation has its own
//! variant, so callers (and tests) can tell a truncated file from a bad checksum.

use core::fmt;

/// A load or run failure.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Fewer bytes than the header or a table needs.
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes present.
        got: usize,
    },
    /// The first four bytes are not `TTHR`.
    BadMagic,
    /// A format version this runtime does not read.
    UnsupportedVersion {
        /// The file's version.
        found: u16,
        /// The newest version this reader takes (carried here so that this module needs
        /// nothing from the format's).
        newest: u16,
    },
    /// The header's file length disagrees with the bytes given.
    LengthMismatch {
        /// Length the header records.
        header: usize,
        /// Bytes given.
        actual: usize,
    },
    /// A header field that cannot be right for the bytes given, which are the whole model
    /// by the other evidence (the checksum, the tables): the header is damaged, the file
    /// is not truncated.
    CorruptHeader {
        /// The field.
        field: &'static str,
        /// The length the field claims, in bytes.
        claims: usize,
        /// Bytes given.
        actual: usize,
    },
    /// The header's header-length field is not the format's 64 (the field is outside the
    /// checksum, so a damaged one is caught here).
    BadHeaderLength {
        /// The field's value.
        found: u16,
        /// The format's header length.
        expected: u16,
    },
    /// The CRC-32 of the body does not match the header's.
    BadChecksum {
        /// Checksum in the header.
        stored: u32,
        /// Checksum of the bytes.
        computed: u32,
    },
    /// The bytes do not start at a 4-byte-aligned address (use `AlignedBytes` or
    /// `include_model!`).
    Misaligned,
    /// A big-endian host (the format is little-endian and read zero-copy).
    BigEndianHost,
    /// A tensor entry is malformed.
    BadTensor {
        /// Index in the tensor table.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// An op entry is malformed (unknown opcode, bad value or tensor reference, bad
    /// parameter).
    BadOp {
        /// Index in the op table.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The model's input shape (in the header) is not one the runtime takes.
    BadInputShape {
        /// What is wrong.
        reason: &'static str,
    },
    /// An op's input shape does not fit it (shapes that do not chain).
    ShapeMismatch {
        /// Index in the op table.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// An input whose length is not the model's input size times a batch in
    /// `1..=plan batch`.
    InputLength {
        /// Values per sample.
        per_sample: usize,
        /// Largest batch of the plan.
        max_batch: usize,
        /// Values given.
        got: usize,
    },
    /// The plan would need more memory than allowed.
    TooLarge {
        /// Bytes the plan would need.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// Invalid plan or builder options.
    BadOptions(&'static str),
    /// Header flag bits this reader does not know (a newer writer's).
    UnknownFlags(u32),
    /// A mesh model (EMAN) given to the per-sample [`crate::Plan`]: it runs on a mesh,
    /// through [`crate::mesh::MeshPlan`] (CLI: `tether-deploy run MODEL MESH`).
    NeedsMesh,
    /// A mesh a mesh model cannot run on.
    Mesh(crate::mesh::MeshError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated { needed, got } => {
                write!(f, "truncated model: needs {needed} bytes, has {got}")
            }
            Error::BadMagic => write!(f, "not a tether model (bad magic; expected \"TTHR\")"),
            Error::UnsupportedVersion { found, newest } => write!(
                f,
                "unsupported model format version {found} (this runtime reads versions 1 to \
                 {newest})"
            ),
            Error::LengthMismatch { header, actual } => write!(
                f,
                "model length mismatch: header says {header} bytes, got {actual}"
            ),
            Error::CorruptHeader {
                field,
                claims,
                actual,
            } => write!(
                f,
                "corrupt model header: its {field} field says {claims} bytes, but the file \
                 holds a complete model of {actual} bytes (the header is damaged, the file is \
                 not truncated)"
            ),
            Error::BadHeaderLength { found, expected } => write!(
                f,
                "corrupt model header: its header length field says {found} bytes, the \
                 format's header is {expected} (the header is damaged)"
            ),
            Error::BadChecksum { stored, computed } => write!(
                f,
                "model checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): the file is corrupt"
            ),
            Error::Misaligned => write!(
                f,
                "model bytes are not 4-byte aligned (load them through AlignedBytes)"
            ),
            Error::BigEndianHost => write!(f, "big-endian hosts cannot read the format zero-copy"),
            Error::BadTensor { index, reason } => write!(f, "tensor {index}: {reason}"),
            Error::BadOp { index, reason } => write!(f, "op {index}: {reason}"),
            Error::BadInputShape { reason } => {
                write!(f, "invalid model input shape: {reason}")
            }
            Error::ShapeMismatch { index, reason } => {
                write!(f, "op {index}: shapes do not chain: {reason}")
            }
            Error::InputLength {
                per_sample,
                max_batch,
                got,
            } => write!(
                f,
                "input of {got} values: expected a multiple of {per_sample} (one sample), at most {max_batch} samples"
            ),
            Error::TooLarge { bytes, limit } => write!(
                f,
                "the plan needs {bytes} bytes of buffers, over the limit of {limit}"
            ),
            Error::BadOptions(why) => write!(f, "invalid options: {why}"),
            Error::UnknownFlags(bits) => write!(
                f,
                "unknown header flags {bits:#x} (a newer tether wrote this model?)"
            ),
            Error::NeedsMesh => write!(
                f,
                "a mesh model (EMAN): it runs on a mesh (mesh::MeshPlan; CLI: run MODEL MESH)"
            ),
            Error::Mesh(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for Error {}
