//! Unconstrained image classification: the dense baseline the pruning benchmark compares a
//! pruned network against ("within 0.5 points of the dense model trained with the same
//! budget"). It runs through the same loop and optimizer as the constrained tasks, with an
//! empty constraint set.

use burn::module::AutodiffModule;
use burn::tensor::{ElementConversion, Tensor, backend::AutodiffBackend, backend::Backend};
use tether_models::classifier::Classifier;

use crate::constrained::{CmpState, ConstrainedProblem};
use crate::data::batches::Batch;
use crate::tasks::prune::cross_entropy;

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

/// Accuracy (in `[0, 1]`) of the classifier `logits` over `batches`.
pub fn accuracy<B: Backend>(
    batches: &[Batch<B>],
    logits: impl Fn(Tensor<B, 2>) -> Tensor<B, 2>,
) -> f64 {
    let (mut correct, mut total) = (0i64, 0usize);
    for b in batches {
        let pred = logits(b.images.clone()).argmax(1).squeeze_dim::<1>(1);
        let hits: i64 = pred
            .equal(b.labels.clone())
            .int()
            .sum()
            .into_scalar()
            .elem();
        correct += hits;
        total += b.labels.dims()[0];
    }
    correct as f64 / total.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    type B = burn::backend::Flex;

    #[test]
    fn accuracy_counts_argmax_hits() {
        let device = Default::default();
        let images = Tensor::<B, 2>::from_data(
            TensorData::new(vec![1.0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0], [4, 2]),
            &device,
        );
        let labels = Tensor::from_data(TensorData::new(vec![0i64, 1, 1, 0], [4]), &device);
        let batch = Batch { images, labels };
        // The identity "network" predicts the larger coordinate: 2 of 4 labels agree.
        assert_eq!(accuracy(std::slice::from_ref(&batch), |x| x), 0.5);
        assert_eq!(accuracy(&[batch], |x| x.neg()), 0.5);
        assert_eq!(accuracy::<B>(&[], |x| x), 0.0);
    }
}
