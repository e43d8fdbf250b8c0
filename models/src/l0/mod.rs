//! L0 regularisation with hard-concrete gates (Louizos, Welling & Kingma, "Learning Sparse
//! Neural Networks through L0 Regularization", ICLR 2018,
//! <https://arxiv.org/abs/1712.01312>).
//!
//! A gate `z` in `[0, 1]` multiplies a weight (unstructured) or a whole output unit
//! (structured). Its distribution puts real mass on exactly 0 and exactly 1, so sampled
//! networks are truly sparse, and the probability that a gate is non-zero (its expected L0
//! contribution) has a closed form that is differentiable in the gate's parameter: the
//! quantity a density constraint is written on.

mod gated_conv2d;
mod gated_linear;
mod hard_concrete;

pub use gated_conv2d::{GatedConv2d, GatedConv2dConfig};
pub use gated_linear::{BLOCK_INPUTS, GateStructure, GatedLinear, GatedLinearConfig};
pub use hard_concrete::{GateMode, HardConcrete, HardConcreteConfig};
