//! # tether-models
//!
//! The burn modules that tether's training, compression and deployment share. Each
//! module follows burn-nn's pattern: a `XConfig` (`#[derive(Config)]`, a doc line and a
//! default per field) whose `init(&device)` builds the `#[derive(Module)]` `X`.
//!
//! - [`classifier`]: the `Classifier` trait (logits of flattened images) of plain networks.
//! - [`conv`]: the 2-D convolution every network here trains through (im2col + GEMM
//!   forward and backward as one autodiff operation on the CPU backend).
//! - [`eman`]: equivariant mesh attention networks (EMAN) and their mesh graphs.
//! - [`export`]: safetensors export (PyTorch layout) of trained networks.
//! - [`gated_mlp`]: an MLP of gated layers (LeNet-300-100 for L0 pruning).
//! - [`gated`]: the `GatedNetwork` trait the pruning task works through.
//! - [`graph`]: a trainable, gated network interpreting a `tether-deploy` model graph
//!   (a user's ONNX export, imported).
//! - [`graph_masks`]: fixed magnitude-pruning masks on a [`graph::GraphNet`]'s weights.
//! - [`host`]: the host/device boundary of training: whether a step's computations run
//!   in host loops or as device tensor ops, and every host read of a tensor, counted.
//! - [`lenet5`]: LeNet-5 (Caffe variant), gated and plain.
//! - [`l0`]: hard-concrete gates (Louizos et al. 2018) for L0-constrained pruning.
//! - [`to_deploy`]: export to `tether-deploy`'s model format (pruned weights as CSR).
//! - [`resnet`]: a small ResNet (basic blocks, no batch norm), gated and plain.
//! - [`siren`]: SIREN (sine layers, SIREN init) and its gated L0onie form, for COIN.
//! - [`mlp`]: a ReLU multi-layer perceptron (LeNet-300-100 is `[784, 300, 100, 10]`).
//! - [`trainable`]: which parameters one training step gives a gradient (benchmark and
//!   test checks that a timed or folded network trains all of its parameters).
#![warn(missing_docs)]
// Every host read of a tensor goes through `tether_models::host::read`, which counts it
// (clippy.toml lists the methods; Cargo.toml allows them outside the library).
#![warn(clippy::disallowed_methods)]

pub mod classifier;
#[allow(
    clippy::disallowed_methods,
    reason = "not yet audited for per-step host reads (issue 34): reads here are not counted"
)]
pub mod conv;
#[allow(
    clippy::disallowed_methods,
    reason = "not yet audited for per-step host reads (issue 34): reads here are not counted"
)]
pub mod eman;
#[allow(
    clippy::disallowed_methods,
    reason = "not yet audited for per-step host reads (issue 34): reads here are not counted"
)]
pub mod export;
pub mod gated;
pub mod gated_mlp;
#[allow(
    clippy::disallowed_methods,
    reason = "not yet audited for per-step host reads (issue 34): reads here are not counted"
)]
pub mod graph;
#[allow(
    clippy::disallowed_methods,
    reason = "not yet audited for per-step host reads (issue 34): reads here are not counted"
)]
pub mod graph_masks;
pub mod host;
pub mod l0;
#[allow(
    clippy::disallowed_methods,
    reason = "not yet audited for per-step host reads (issue 34): reads here are not counted"
)]
pub mod lenet5;
#[allow(
    clippy::disallowed_methods,
    reason = "not yet audited for per-step host reads (issue 34): reads here are not counted"
)]
pub mod masked;
pub mod mlp;
#[allow(
    clippy::disallowed_methods,
    reason = "not yet audited for per-step host reads (issue 34): reads here are not counted"
)]
pub mod resnet;
#[allow(
    clippy::disallowed_methods,
    reason = "not yet audited for per-step host reads (issue 34): reads here are not counted"
)]
pub mod siren;
#[allow(
    clippy::disallowed_methods,
    reason = "not yet audited for per-step host reads (issue 34): reads here are not counted"
)]
pub mod to_deploy;
#[allow(
    clippy::disallowed_methods,
    reason = "not yet audited for per-step host reads (issue 34): reads here are not counted"
)]
pub mod trainable;
