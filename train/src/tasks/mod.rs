//! Problems built on [`crate::constrained`].

pub mod classify;
pub mod fair;
pub mod prune;
pub mod svm;
