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

use std::cell::Cell;

use burn::module::AutodiffModule;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Tensor, backend::AutodiffBackend, backend::Backend};
use tether_models::gated::GatedNetwork;
use tether_models::l0::GateMode;

use crate::constrained::{CmpState, ConstrainedProblem, ConstraintId, ConstraintState};
use crate::data::batches::Batch;

/// Mean cross-entropy of logits `[batch, classes]` against class indices.
pub fn cross_entropy<B: Backend>(
    logits: Tensor<B, 2>,
    labels: Tensor<B, 1, burn::tensor::Int>,
) -> Tensor<B, 1> {
    log_softmax(logits, 1)
        .gather(1, labels.unsqueeze_dim(1))
        .mean()
        .neg()
}

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

/// The pruning problem: cross-entropy under density constraints.
pub struct PruneProblem {
    /// The density constraint: one entry (global) or one per layer.
    pub density: ConstraintId,
    /// Targets, one per entry of `density`.
    pub targets: Vec<f64>,
    /// Steps over which the constrained density falls linearly from 1 to `targets`.
    warmup_steps: usize,
    /// The training step, set by the loop (see [`PruneProblem::set_step`]).
    step: Cell<usize>,
}

impl PruneProblem {
    /// Density at most (or equal to) `targets` from the first step.
    pub fn new(density: ConstraintId, targets: Vec<f64>) -> Self {
        Self {
            density,
            targets,
            warmup_steps: 0,
            step: Cell::new(0),
        }
    }

    /// Lowers the constrained density linearly from 1 to the targets over `steps` steps.
    ///
    /// Why: with a fixed target the multiplier integrates a large violation for as long as
    /// the gates take to reach the test-time threshold, then drives them past the target
    /// faster than it can unwind; gates that fall below the threshold get no gradient and
    /// stay shut, so the density lands under the target. A slowly falling target keeps the
    /// violation, and so the multiplier, small: the density arrives at the target at the
    /// ramp's slow speed and stops there.
    pub fn with_warmup(mut self, steps: usize) -> Self {
        self.warmup_steps = steps;
        self
    }

    /// Tells the problem which training step comes next (the warm-up's clock).
    pub fn set_step(&self, step: usize) {
        self.step.set(step);
    }

    /// The targets in force at the current step.
    pub fn current_targets(&self) -> Vec<f64> {
        let step = self.step.get();
        if step >= self.warmup_steps {
            return self.targets.clone();
        }
        let frac = step as f64 / self.warmup_steps as f64;
        self.targets
            .iter()
            .map(|&t| 1.0 - (1.0 - t) * frac)
            .collect()
    }
}

impl<B: AutodiffBackend, M: AutodiffModule<B> + GatedNetwork<B>> ConstrainedProblem<B, M>
    for PruneProblem
{
    type Input = Batch<B>;

    fn compute_cmp_state(&self, model: &M, batch: &Batch<B>) -> CmpState<B> {
        let logits = model.forward_gated(batch.images.clone(), GateMode::Sample);
        let loss = cross_entropy(logits, batch.labels.clone());
        let (expected, strict) = if self.targets.len() == 1 {
            global_density(model)
        } else {
            let (e, t) = layer_densities(model);
            (Tensor::cat(e, 0), Tensor::cat(t, 0))
        };
        let device = expected.device();
        let targets: Vec<f32> = self.current_targets().iter().map(|&t| t as f32).collect();
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
    crate::tasks::classify::accuracy(batches, |x| model.forward_gated(x, GateMode::Deterministic))
}
