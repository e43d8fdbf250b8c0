//! The networks the `gate_overhead` bench times and the losses of its steps, shared with
//! `tests/timed_networks.rs`, which checks that one step of each gives every parameter a
//! non-zero gradient (the bench checks it too before timing).
//!
//! The ungated twin is built fresh, not folded out of the gated network: it must train
//! every weight, as the gated step does, or the ratio compares a whole training step with
//! one that updates the biases alone.

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor};
use tether_models::gated::GatedNetwork;
use tether_models::gated_mlp::{GatedMlp, GatedMlpConfig};
use tether_models::l0::{GateMode, GateStructure};
use tether_models::lenet5::{GatedLenet5, GatedLenet5Config, Lenet5, Lenet5Config};
use tether_models::mlp::{Mlp, MlpConfig};
use tether_models::trainable::untrained_params;
use tether_train::tasks::metrics::cross_entropy;
use tether_train::tasks::prune::global_density;

/// LeNet-300-100's widths.
pub const LENET300: [usize; 4] = [784, 300, 100, 10];

/// LeNet-300-100 with a gate on every weight, and the same network without gates.
pub fn lenet300<B: AutodiffBackend>(device: &B::Device) -> (GatedMlp<B>, Mlp<B>) {
    (
        GatedMlpConfig::new(LENET300.to_vec(), GateStructure::Weight).init(device),
        MlpConfig::new(LENET300.to_vec()).init(device),
    )
}

/// LeNet-5 with a gate on every weight, and the same network without gates.
pub fn lenet5<B: AutodiffBackend>(device: &B::Device) -> (GatedLenet5<B>, Lenet5<B>) {
    (
        GatedLenet5Config::new(GateStructure::Weight).init(device),
        Lenet5Config::new().init(device),
    )
}

/// The gated step's loss: cross-entropy with sampled gates plus 0.1 times the expected
/// density (the pruning task's penalty form).
pub fn gated_loss<B: AutodiffBackend, M: GatedNetwork<B>>(
    model: &M,
    x: Tensor<B, 2>,
    y: Tensor<B, 1, Int>,
) -> Tensor<B, 1> {
    cross_entropy(model.forward_gated(x, GateMode::Sample), y)
        + global_density(model).0.mul_scalar(0.1)
}

/// The ungated step's loss: cross-entropy.
pub fn plain_loss<B: AutodiffBackend>(logits: Tensor<B, 2>, y: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    cross_entropy(logits, y)
}

/// Panics, naming them, if one step of `loss` leaves any parameter of `model` without a
/// non-zero gradient.
pub fn assert_trains_every_parameter<B: AutodiffBackend, M: AutodiffModule<B>>(
    what: &str,
    model: &M,
    loss: Tensor<B, 1>,
) {
    let missing = untrained_params(model, loss);
    assert!(
        missing.is_empty(),
        "{what}: parameters one step leaves without a gradient: {missing:?}"
    );
}
