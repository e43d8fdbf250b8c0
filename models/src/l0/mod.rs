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
pub mod noise;

pub use gated_conv2d::{GatedConv2d, GatedConv2dConfig};
pub use gated_linear::{BLOCK_INPUTS, GateStructure, GatedLinear, GatedLinearConfig};
pub use hard_concrete::{GateMode, HardConcrete, HardConcreteConfig};

use burn::module::Param;
use burn::tensor::{Tensor, backend::Backend};

/// `value` (computed from `like` and gates, say) as a parameter in `like`'s place: a new
/// leaf, detached from the computation that produced it and tracked for gradients when
/// `like` is, with `like`'s id. A folded network trains like the one it came from;
/// `Param::map` over a computed tensor would leave a non-leaf that `backward` gives no
/// gradient, so the optimizer would skip it.
pub(crate) fn folded_param<B: Backend, const D: usize>(
    like: &Param<Tensor<B, D>>,
    value: Tensor<B, D>,
) -> Param<Tensor<B, D>> {
    let require_grad = like.is_require_grad();
    Param::initialized(like.id, value.detach().set_require_grad(require_grad))
}
