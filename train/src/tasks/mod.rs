//! Problems built on [`crate::constrained`].

pub mod svm;
