//! Problems built on [`crate::constrained`].

pub mod prune;
pub mod svm;
