//! Problems built on [`crate::constrained`], each a [`ConstrainedProblem`] run by the one
//! training loop ([`crate::trainer::fit`]).
//!
//! - [`prune`]: L0 pruning under a density constraint (Controlled Sparsity);
//!   [`prune_run`]: the whole job (data, schedule, outputs) behind `tether-train prune`.
//! - [`classify`]: the dense baseline (no constraint).
//! - [`fair`]: fine-tuning a pruned model with every group's excess accuracy gap bounded
//!   (CEAG, Balancing Act).
//! - [`svm`]: a hard-margin linear SVM, checked against an exact QP solve.
//! - [`mesh`]: per-vertex labels of a mesh with an EMAN.
//! - [`gang`], [`nash_memory`], [`matrix_game`]: GANGs solved by Parallel Nash Memory.
//! - [`metrics`]: the cross-entropy and accuracy the classifying tasks share (kept apart
//!   so that no task imports them from another).
//!
//! [`ConstrainedProblem`]: crate::constrained::ConstrainedProblem

pub mod budget;
pub mod classify;
pub mod fair;
pub mod gang;
pub mod magnitude;
pub mod matrix_game;
pub mod mesh;
pub mod metrics;
pub mod nash_memory;
pub mod prune;
pub mod prune_run;
pub mod svm;
