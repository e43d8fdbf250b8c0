//! What the pruning task needs from a gated network, whatever its layers.

use burn::module::ParamId;
use burn::tensor::{Tensor, backend::Backend};

use crate::l0::GateMode;

/// The gate counts of one gated layer.
pub struct LayerGates<B: Backend> {
    /// Parameters under a gate.
    pub gated: usize,
    /// Expected number of active gated parameters (differentiable).
    pub expected: Tensor<B, 1>,
    /// Active gated parameters with deterministic gates.
    pub active: Tensor<B, 1>,
}

/// A classifier of flattened images whose layers carry hard-concrete gates.
pub trait GatedNetwork<B: Backend> {
    /// Logits `[batch, classes]` for flattened images `[batch, pixels]`.
    fn forward_gated(&self, x: Tensor<B, 2>, mode: GateMode) -> Tensor<B, 2>;
    /// Per gated layer, in order.
    fn layer_gates(&self) -> Vec<LayerGates<B>>;
    /// The ids of the gate-location parameters (rank 1), for their own learning rate.
    fn gate_ids(&self) -> Vec<ParamId>;
}

impl<B: Backend> GatedNetwork<B> for crate::gated_mlp::GatedMlp<B> {
    fn forward_gated(&self, x: Tensor<B, 2>, mode: GateMode) -> Tensor<B, 2> {
        self.forward(x, mode)
    }
    fn layer_gates(&self) -> Vec<LayerGates<B>> {
        self.layers.iter().map(|l| l.layer_gates()).collect()
    }
    fn gate_ids(&self) -> Vec<ParamId> {
        self.layers.iter().map(|l| l.gates.log_alpha.id).collect()
    }
}
