//! The dense baseline and the networks trained without gates.

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use tether_models::classifier::Classifier;

use super::config::Method;
use super::job::{Job, MethodState};
use super::outputs::Export;
use super::report::PruneReport;
use crate::constrained::{ConstrainedOptimizer, ConstraintSet, UpdateScheme};
use crate::io::{csv, write_atomic};
use crate::tasks::classify::ClassifyProblem;
use crate::tasks::metrics;

impl Job<'_> {
    /// The dense baseline: trains `model` (no gates, no constraints) with the same loop,
    /// optimizer and budget as the pruned runs, and writes the same outputs (density 1).
    pub(super) fn train_dense<B, M>(
        self,
        model: M,
        device: &B::Device,
        export: impl Export<M::InnerModule>,
    ) -> anyhow::Result<PruneReport>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B> + Classifier<B>,
        M::InnerModule: Classifier<B::InnerBackend>,
    {
        let c = self.config;
        let mut set = ConstraintSet::<B>::new(device);
        let primal = c.optimizer.build()?;
        let health = primal.health();
        let mut opt = ConstrainedOptimizer::new(primal, c.lr, UpdateScheme::Simultaneous);
        let (model, epochs, steps) = self.run_epochs(
            model,
            device,
            &mut opt,
            &mut set,
            &ClassifyProblem,
            health,
            MethodState::none(),
            |_, _, model| Ok(model),
            |step, info, rows| {
                if info.read {
                    rows.push(vec![step as f64, info.values.loss]);
                }
            },
            |eval, test| (metrics::accuracy(test, |x| eval.logits(x)), 1.0),
        )?;
        write_atomic(
            &c.out.join("metrics.csv"),
            csv(&["step".into(), "loss".into()], &steps).as_bytes(),
        )?;
        let test_accuracy = epochs.last().map(|e| e.test_accuracy);
        let summary = serde_json::json!({
            "model": c.model.label(), "dataset": c.dataset.name(), "dense": true,
            "optimizer": c.optimizer.optimizer,
            "target_density": 1.0, "seed": c.seed, "epochs": c.epochs,
            "final": {"test_accuracy": test_accuracy, "density": 1.0},
        });
        self.write_model(&model.valid(), export, &summary)?;
        Ok(PruneReport {
            budgets: Vec::new(),
            test_accuracy: test_accuracy.unwrap_or(f64::NAN),
            density: 1.0,
            epochs,
            layers: Vec::new(),
            summary,
            files: vec![
                "metrics.csv",
                "epochs.csv",
                "training.png",
                "model.mpk",
                "model.safetensors",
                "model.tthr",
                "summary.json",
            ],
        })
    }

    /// Trains a network without gates: the dense baseline, or the magnitude baseline of
    /// [`PruneConfig::method`] (`deploy_bytes` only serves the latter's budgets).
    pub(super) fn train_plain<B, M>(
        self,
        model: M,
        device: &B::Device,
        deploy_bytes: impl Fn(&M::InnerModule) -> anyhow::Result<Vec<u8>>,
        export: impl Export<M::InnerModule>,
    ) -> anyhow::Result<PruneReport>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B> + Classifier<B>,
        M::InnerModule: Classifier<B::InnerBackend>,
    {
        let model = self.adopt_ids(model)?;
        if self.config.method == Method::L0 {
            self.train_dense(model, device, export)
        } else {
            self.train_magnitude(model, device, deploy_bytes, export)
        }
    }
}
