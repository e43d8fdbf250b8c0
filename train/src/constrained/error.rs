//! Errors of the constrained-optimization library.
//!
//! Bad input is reported, never silently trained on: a NaN violation would otherwise
//! poison every multiplier it touches, and an index out of range would scatter a
//! multiplier update into the wrong constraint.

use thiserror::Error;

/// What went wrong while evaluating or updating a constrained problem.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ConstrainedError {
    /// The objective is NaN or infinite.
    #[error("the loss is not finite ({value}); check the learning rate and the data")]
    NonFiniteLoss {
        /// The offending value.
        value: f64,
    },
    /// Steps observed without a host read held a NaN or infinite loss or violation
    /// ([`crate::constrained::ConstraintSet::observe`]).
    #[error(
        "{values} non-finite loss or violation values in the {steps} steps since the last host read"
    )]
    NonFiniteUnread {
        /// Steps observed without a read since the last read.
        steps: usize,
        /// Non-finite values among them.
        values: usize,
    },
    /// A violation (or strict violation) contains NaN or infinity.
    #[error("constraint `{constraint}`: {which} contains a non-finite value ({value})")]
    NonFiniteViolation {
        /// Name of the constraint.
        constraint: String,
        /// `"violation"` or `"strict_violation"`.
        which: &'static str,
        /// The first offending value.
        value: f64,
    },
    /// A state refers to a constraint this set does not hold.
    #[error(
        "unknown constraint {id}: this constraint set holds {len} constraints (ids from another set are rejected)"
    )]
    UnknownConstraint {
        /// Debug rendering of the id.
        id: String,
        /// Number of constraints in the set.
        len: usize,
    },
    /// The same constraint was observed twice in one state.
    #[error("constraint `{constraint}` is observed twice in the same step")]
    DuplicateConstraint {
        /// Name of the constraint.
        constraint: String,
    },
    /// A violation tensor does not have the length the constraint was declared with.
    #[error("constraint `{constraint}`: {what} has {got} entries, expected {expected}")]
    ShapeMismatch {
        /// Name of the constraint.
        constraint: String,
        /// Which tensor (`"violation"`, `"strict_violation"`, `"indices"`).
        what: &'static str,
        /// Expected number of entries.
        expected: usize,
        /// Actual number of entries.
        got: usize,
    },
    /// An indexed constraint received an index outside `0..len`.
    #[error("constraint `{constraint}`: index {index} is out of range for {len} multipliers")]
    IndexOutOfRange {
        /// Name of the constraint.
        constraint: String,
        /// The offending index.
        index: usize,
        /// Number of multipliers.
        len: usize,
    },
    /// An indexed constraint received the same index twice (the update is not linear).
    #[error("constraint `{constraint}`: index {index} appears twice in one observation")]
    DuplicateIndex {
        /// Name of the constraint.
        constraint: String,
        /// The repeated index.
        index: usize,
    },
    /// A dense constraint received indices, or an indexed one received none.
    #[error("constraint `{constraint}`: {reason}")]
    IndexingMismatch {
        /// Name of the constraint.
        constraint: String,
        /// What was expected.
        reason: &'static str,
    },
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The primal optimizer failed (e.g. Shampoo met a non-finite gradient).
    #[error("optimizer: {0}")]
    Optimizer(String),
    /// A checkpoint does not fit this constraint set.
    #[error("checkpoint mismatch: {0}")]
    Checkpoint(String),
    /// A data-parallel collective call failed: another replica of the group stopped (its
    /// own error says why) or the transport failed ([`crate::parallel::Collective`]).
    #[error("data parallel: {0}")]
    Collective(String),
}

/// Result alias of this module.
pub type Result<T> = core::result::Result<T, ConstrainedError>;
