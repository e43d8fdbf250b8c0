//! Sparsity-constrained L0 pruning (Gallego-Posada, Ramirez, Erraqabi, Bengio,
//! Lacoste-Julien, "Controlled Sparsity via Constrained Optimization or: How I Learned to
//! Stop Tuning Penalties and Love Constraints", NeurIPS 2022).
//!
//! ```text
//! min_theta,phi  E_z[ CE(f(x; theta * z(phi)), y) ]
//! s.t.           E[L0(phi)] / #params - target <= 0      (globally, or per layer)
//! ```
//!
//! The expected density (differentiable in the gate locations `phi`) drives the model;
//! the density of the deterministic test-time gates, i.e. what the deployed model will
//! have, is the strict violation that drives the multiplier (the proxy-constraint pattern).

use burn::module::AutodiffModule;
use burn::tensor::{Tensor, backend::AutodiffBackend, backend::Backend};
use tether_models::gated::GatedNetwork;
use tether_models::l0::GateMode;

use crate::constrained::{CmpState, ConstrainedProblem, ConstraintId, ConstraintState};
use crate::data::batches::Batch;
use crate::tasks::metrics::cross_entropy;

/// Expected and true density of each gated layer.
pub fn layer_densities<B: Backend, M: GatedNetwork<B>>(
    model: &M,
) -> (Vec<Tensor<B, 1>>, Vec<Tensor<B, 1>>) {
    model
        .layer_gates()
        .into_iter()
        .map(|l| {
            let n = l.gated as f64;
            (l.expected.div_scalar(n), l.active.div_scalar(n))
        })
        .unzip()
}

/// Global expected and true density (over all gated parameters).
pub fn global_density<B: Backend, M: GatedNetwork<B>>(model: &M) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let layers = model.layer_gates();
    let total: usize = layers.iter().map(|l| l.gated).sum();
    let (expected, active) = layers
        .into_iter()
        .map(|l| (l.expected, l.active))
        .reduce(|(e, a), (e2, a2)| (e + e2, a + a2))
        .expect("at least one gated layer");
    (
        expected.div_scalar(total as f64),
        active.div_scalar(total as f64),
    )
}

/// The pruning problem: cross-entropy under density constraints; after
/// [`PruneProblem::freeze`], cross-entropy alone through the frozen deterministic gates
/// (fine-tuning the weights of the pruned network, its sparsity pattern fixed).
pub struct PruneProblem {
    /// The density constraint: one entry (global) or one per layer.
    pub density: ConstraintId,
    /// Targets, one per entry of `density`.
    pub targets: Vec<f64>,
    frozen: core::cell::Cell<bool>,
}

impl PruneProblem {
    /// Density at most `targets` (one global target, or one per gated layer).
    pub fn new(density: ConstraintId, targets: Vec<f64>) -> Self {
        Self {
            density,
            targets,
            frozen: core::cell::Cell::new(false),
        }
    }

    /// From now on: the gates as they will be folded (deterministic, no gradient, so they
    /// and the density stay where they are) and no constraint; the weights alone train.
    /// Why: sampled gates inject noise into every forward pass, which slows the weights'
    /// learning; once the density is where it should be, the network that will be
    /// deployed can be trained without that noise.
    pub fn freeze(&self) {
        self.frozen.set(true);
    }

    /// True after [`PruneProblem::freeze`].
    pub fn is_frozen(&self) -> bool {
        self.frozen.get()
    }
}

impl<B: AutodiffBackend, M: AutodiffModule<B> + GatedNetwork<B>> ConstrainedProblem<B, M>
    for PruneProblem
{
    type Input = Batch<B>;

    fn compute_cmp_state(&self, model: &M, batch: &Batch<B>) -> CmpState<B> {
        if self.is_frozen() {
            let logits = model.forward_gated(batch.images.clone(), GateMode::Frozen);
            return CmpState::new(cross_entropy(logits, batch.labels.clone()));
        }
        let logits = model.forward_gated(batch.images.clone(), GateMode::Sample);
        let loss = cross_entropy(logits, batch.labels.clone());
        let (expected, strict) = if self.targets.len() == 1 {
            global_density(model)
        } else {
            let (e, t) = layer_densities(model);
            (Tensor::cat(e, 0), Tensor::cat(t, 0))
        };
        let device = expected.device();
        let targets: Vec<f32> = self.targets.iter().map(|&t| t as f32).collect();
        let target = Tensor::<B, 1>::from_data(
            burn::tensor::TensorData::new(targets, [self.targets.len()]),
            &device,
        );
        let state =
            ConstraintState::new(expected - target.clone()).with_strict_violation(strict - target);
        CmpState::new(loss).with(self.density, state)
    }
}

/// Accuracy (in `[0, 1]`) of `model` with deterministic gates over `batches`.
pub fn accuracy<B: Backend, M: GatedNetwork<B>>(model: &M, batches: &[Batch<B>]) -> f64 {
    crate::tasks::metrics::accuracy(batches, |x| model.forward_gated(x, GateMode::Deterministic))
}
