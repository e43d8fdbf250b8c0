//! Optimizers and optimizer combinators for the primal step.

mod choice;
mod param_groups;
pub mod shampoo;

pub use choice::{AnyOptimizer, GraftingKind, OptimizerArgs, OptimizerKind};

pub use param_groups::{DecayStart, TwoGroups};
