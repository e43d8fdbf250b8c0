//! Problems built on [`crate::constrained`].

pub mod classify;
pub mod fair;
pub mod matrix_game;
pub mod prune;
pub mod svm;
