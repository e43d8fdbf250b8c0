//! Unconstrained image classification: the dense baseline the pruning benchmark compares a
//! pruned network against ("within 0.5 points of the dense model trained with the same
//! budget"). It runs through the same loop and optimizer as the constrained tasks, with an
//! empty constraint set.

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use tether_models::classifier::Classifier;

use crate::constrained::{CmpState, ConstrainedProblem};
use crate::data::batches::Batch;
use crate::tasks::metrics::cross_entropy;

/// Mean cross-entropy of a plain classifier, no constraints.
pub struct ClassifyProblem;

impl<B: AutodiffBackend, M: AutodiffModule<B> + Classifier<B>> ConstrainedProblem<B, M>
    for ClassifyProblem
{
    type Input = Batch<B>;

    fn compute_cmp_state(&self, model: &M, batch: &Batch<B>) -> CmpState<B> {
        CmpState::new(cross_entropy(
            model.logits(batch.images.clone()),
            batch.labels.clone(),
        ))
    }
}
