//! Problems built on [`crate::constrained`].

pub mod classify;
pub mod fair;
pub mod gang;
pub mod matrix_game;
pub mod mesh;
pub mod nash_memory;
pub mod prune;
pub mod svm;
