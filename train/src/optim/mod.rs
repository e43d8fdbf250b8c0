//! Optimizers and optimizer combinators for the primal step.

mod param_groups;
pub mod shampoo;

pub use param_groups::{DecayStart, TwoGroups};
