//! What a pruning run measured: [`PruneReport`], per epoch and per layer.

use serde::{Deserialize, Serialize};

use crate::tasks::budget::BudgetResult;

/// One epoch's measurement on the test set.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochResult {
    /// 1-based epoch.
    pub epoch: usize,
    /// Accuracy in `[0, 1]` on the first [`TRAIN_EVAL_SAMPLES`](super::TRAIN_EVAL_SAMPLES) training samples, with
    /// deterministic gates (beside the test accuracy: how far the two part).
    pub train_accuracy: f64,
    /// Accuracy in `[0, 1]`, with deterministic gates.
    pub test_accuracy: f64,
    /// Fraction of gated parameters kept (1 for the dense baseline).
    pub density: f64,
}

/// One gated layer of the pruned network.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerResult {
    /// Parameters under a gate.
    pub gated_params: usize,
    /// Of those, kept by the deterministic gates.
    pub kept: usize,
    /// `kept / gated_params`.
    pub density: f64,
}

/// What a run measured (the same numbers as its `summary.json`).
#[derive(Clone, Debug)]
pub struct PruneReport {
    /// Each budget the run was given: budget, achieved by the written model, met.
    pub budgets: Vec<BudgetResult>,
    /// Test accuracy after the last epoch.
    pub test_accuracy: f64,
    /// Density after the last epoch.
    pub density: f64,
    /// Every epoch, in order.
    pub epochs: Vec<EpochResult>,
    /// Per gated layer (empty for the dense baseline).
    pub layers: Vec<LayerResult>,
    /// `summary.json`'s contents.
    pub summary: serde_json::Value,
    /// The files written, by name, under [`PruneConfig::out`](super::PruneConfig::out).
    pub files: Vec<&'static str>,
}

/// `summary.json`'s `layers`: each pruned layer's counts.
pub(super) fn layers_json(layers: &[LayerResult]) -> Vec<serde_json::Value> {
    layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            serde_json::json!({"layer": i, "gated_params": l.gated_params,
                "kept": l.kept as f64, "density": l.density as f32})
        })
        .collect()
}
