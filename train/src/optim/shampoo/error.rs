//! What Shampoo reports instead of training on garbage.

use super::inverse_root::RootError;

/// A Shampoo failure: a bad setting, a parameter it cannot precondition, a non-finite
/// gradient or statistic, or inverse roots that keep failing.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ShampooError {
    /// A setting is out of range.
    #[error("invalid Shampoo configuration: {0}")]
    InvalidConfig(String),
    /// A parameter has no elements (a zero dimension).
    #[error("Shampoo cannot precondition a parameter of shape {shape:?}: it has no elements")]
    ZeroSizeParameter {
        /// The parameter's shape.
        shape: Vec<usize>,
    },
    /// A gradient holds NaN or infinity; the parameter was left unchanged.
    #[error(
        "step {step}: the gradient of a parameter of shape {shape:?} is not finite; lower the learning rate or check the loss"
    )]
    NonFiniteGradient {
        /// The parameter's shape.
        shape: Vec<usize>,
        /// The step (1-based).
        step: usize,
    },
    /// A Kronecker factor holds NaN or infinity.
    #[error(
        "step {step}: factor {factor} of block {block} of a parameter of shape {shape:?}: {cause}"
    )]
    NonFiniteFactor {
        /// The parameter's shape.
        shape: Vec<usize>,
        /// Block index.
        block: usize,
        /// Factor (dimension) index.
        factor: usize,
        /// The step (1-based).
        step: usize,
        /// What was not finite.
        cause: RootError,
    },
    /// A block's inverse roots failed more times in a row than tolerated.
    #[error(
        "step {step}: the inverse roots of block {block} of a parameter of shape {shape:?} failed {failures} times in a row (last: {cause})"
    )]
    PersistentRootFailure {
        /// The parameter's shape.
        shape: Vec<usize>,
        /// Block index.
        block: usize,
        /// Consecutive failures.
        failures: usize,
        /// The step (1-based).
        step: usize,
        /// The last failure.
        cause: RootError,
    },
    /// Another data-parallel worker failed at this step (its own error is on its handle).
    #[error("another data-parallel worker failed at this step")]
    PeerFailed,
    /// A collective operation failed.
    #[error("collective operation failed: {0}")]
    Collective(String),
}
