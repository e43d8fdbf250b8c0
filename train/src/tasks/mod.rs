//! Problems built on [`crate::constrained`].

pub mod classify;
pub mod prune;
pub mod svm;
